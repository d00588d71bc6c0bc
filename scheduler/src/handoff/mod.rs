//! The hand-off core: every move of a job between nodes, as one sans-IO state machine per node,
//! in the style of the gossip core and quinn-proto.
//!
//! It holds no socket, no clock and no randomness of its own. The shell (the worker's HTTP
//! code, or the simulator in `hearsay-tests`) feeds it events with the time, an rng and a
//! [`View`] of the cluster (the gossiped [`LoadMap`] and this node's exact load), drains the
//! [`Action`]s it wants carried out with [`Handoff::poll_action`], and calls
//! [`Handoff::handle_timeout`] at [`Handoff::poll_timeout`].
//!
//! # The two sides of a move
//! - As the **entry node** of a job ([`Handoff::handle_submit`]) the core places it with the
//!   [`Placer`]: here ([`Action::Run`]), on a peer ([`Action::Send`] of an [`Offer`]), or
//!   nowhere ([`Reply::Refused`] with [`SubmitRefusal::Nowhere`]). It settles the offer (see
//!   [`moves`]), then follows the job at the peer until it ends (see [`follow`]), and reports
//!   its end exactly once ([`Action::Settled`]).
//! - As the **receiving node** it answers offers ([`Handoff::handle_offer`]: fenced ids, a later
//!   incarnation, too many moves and a full queue are refused) and asks
//!   ([`Handoff::handle_ask`]: a job it does not hold is fenced off).
//!
//! A *steal* (an idle node asks a busy peer for a queued job: [`Handoff::handle_idle`],
//! [`Handoff::handle_steal`]) is the second kind of move through the same vocabulary: the
//! victim takes the job out of its queue and makes an [`Offer`] of [`MoveKind::Steal`] to the
//! thief, settled by the same [`moves`] rules, and then answers the entry node's asks with
//! [`AskAnswer::Moved`], which the entry node follows. The bound on moves counts forwards and
//! steals together ([`HandoffConfig::max_moves`]: 1 by default, no steals; 2 for a forward and
//! a steal).
//!
//! # At most once
//! A job goes to a node only through [`Action::Run`], and a core emits it for a job only if
//! the job was submitted here and never offered, or offered here and not fenced; a job taken
//! out of a queue for a steal goes back ([`Action::Requeue`]) only when the thief said it does
//! not hold it and never will, so it is never queued in two places, and it starts once. An entry node
//! offers a job to a second node only after the first said it does not hold it and never will
//! (a refusal, a request that never left, or an ask that fenced the id off there). The argument
//! in full is in `docs/handoff.md`; the property tests below check it under every order of
//! answers, losses and verdicts.
//!
//! # Layout
//! - this file: [`Handoff`], [`HandoffConfig`], the records of the jobs the core answers for,
//!   its requests and its wake-ups.
//! - `submit`: the entry node takes a submission and places it — here, on a peer, or nowhere.
//! - `settle`: the entry node settles a move (answers, lost answers, asks), follows the job to
//!   its end and reports it once; the map's verdicts on the nodes it follows jobs at.
//! - [`message`]: the requests and answers between nodes.
//! - [`moves`]: one move as its giver settles it — offer, lost answer, ask.
//! - [`follow`]: the entry node following a job at a peer; when it gives up.
//! - [`fences`]: the ids this node must never take.
//! - [`keys`]: idempotency keys and the bodies they came with.
//! - [`held`]: the jobs this node took, which asks are answered from.
//! - [`shell`]: what goes in and comes out — [`View`], [`Submission`], [`Action`], [`Reply`].
//! - `restore`: a restarted node takes back what its store kept.
//! - `receive`: the node that runs jobs — offers taken or refused, asks answered.
//! - `steal`: an idle node asks a busy one for a queued job; the busy one gives it on.
//! - `tests/`: unit tests by topic and the property test, on a small shell of a few cores.
//!
//! [`LoadMap`]: hearsay_shared::LoadMap

pub mod fences;
pub mod follow;
pub mod held;
pub mod keys;
pub mod message;
pub mod moves;
mod receive;
mod restore;
mod settle;
pub mod shell;
mod steal;
mod submit;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearsay_shared::{JobId, NodeId};

pub use fences::FenceLimits;
pub use follow::FollowLimits;
pub use held::Retention;
pub use keys::{BodyDigest, KeyLimits, Keyed};
pub use message::{
    Answer, AskAnswer, MoveKind, Offer, OfferAnswer, Refusal, Request, RequestId, StealAnswer,
};
pub use restore::Followed;
pub use shell::{Action, HandoffStats, Reply, Submission, SubmitRefusal, Ticket, View};

use crate::{Placer, PlacerConfig};
use follow::Follow;
use held::Held;
use keys::Keys;
use moves::Move;

/// How a node hands jobs over. The defaults are the worker's.
#[derive(Debug, Clone, PartialEq)]
pub struct HandoffConfig {
    /// This node.
    pub node: NodeId,
    /// This node's incarnation: offers meant for another are refused.
    pub incarnation: u64,
    /// How jobs are placed.
    pub placer: PlacerConfig,
    /// How long an offer may go unanswered before it is taken for lost.
    pub offer_timeout: Duration,
    /// How long an ask after a lost offer answer may take.
    pub ask_timeout: Duration,
    /// Asks after a lost offer answer before the job is followed there unconfirmed.
    pub ask_attempts: u32,
    /// The pause between those asks.
    pub ask_pause: Duration,
    /// How a job at a peer is followed.
    pub follow: FollowLimits,
    /// The most moves a job makes in all (1: it is forwarded at most once).
    pub max_moves: u32,
    /// How many times in a row an idle node asks another peer at once when a steal is
    /// answered empty (the answer's news is merged first, and that peer is not asked again
    /// in the same row); after that it waits for the shell's next [`Handoff::handle_idle`].
    pub steal_retries: u32,
    /// Fenced ids.
    pub fences: FenceLimits,
    /// Idempotency keys.
    pub keys: KeyLimits,
    /// Ended jobs remembered, to answer asks after them.
    pub retention: Retention,
}

impl HandoffConfig {
    /// The defaults for node `node` at `incarnation`: a 5 s offer timeout, three asks of 1 s
    /// 200 ms apart after a lost answer, one move per job.
    pub fn new(node: NodeId, incarnation: u64) -> Self {
        HandoffConfig {
            node,
            incarnation,
            placer: PlacerConfig::default(),
            offer_timeout: Duration::from_secs(5),
            ask_timeout: Duration::from_secs(1),
            ask_attempts: 3,
            ask_pause: Duration::from_millis(200),
            follow: FollowLimits::default(),
            max_moves: 1,
            steal_retries: 1,
            fences: FenceLimits::default(),
            keys: KeyLimits::default(),
            retention: Retention::default(),
        }
    }
}

/// The hand-off core of one node. See the [module documentation](self).
#[derive(Debug)]
pub struct Handoff {
    config: HandoffConfig,
    placer: Placer,
    leaving: bool,
    /// Jobs submitted here that have not ended.
    jobs: HashMap<JobId, Entered>,
    pub(crate) held: Held,
    fences: fences::Fences,
    keys: Keys,
    /// The job each outstanding request is about.
    requests: HashMap<RequestId, JobId>,
    /// Wake-ups: `(when, order, job)`; one is current per job (its `Entered::timer`).
    timers: BTreeSet<(Instant, u64, JobId)>,
    /// The steal this node asked for.
    steal: Option<steal::Asked>,
    counter: u64,
    actions: VecDeque<Action>,
    stats: HandoffStats,
}

/// Whose move a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// This node is the job's entry node: it answers for it and settles it.
    Entry,
    /// This node only gives the job on (a steal of a job a peer moved here): once the move is
    /// settled the record goes; the entry node learns where the job is from its asks.
    Giver,
}

/// A job submitted here, until it ends; or a job held here that is being given on.
#[derive(Debug)]
struct Entered {
    role: Role,
    /// Submitters waiting for the placement: the first, and any that came with its key.
    /// Empty once answered.
    waiting: Vec<Ticket>,
    key: Option<String>,
    requires: u64,
    runs_here: bool,
    here_only: bool,
    command: Option<String>,
    /// Nodes that did not take it.
    excluded: Vec<NodeId>,
    refusals: Vec<String>,
    /// Whether a node that could run it refused or could not be reached.
    offered_elsewhere: bool,
    stage: Stage,
    /// The request outstanding.
    request: Option<RequestId>,
    /// The current wake-up.
    timer: Option<(Instant, u64)>,
    /// Entry first; the node that holds it last.
    path: Vec<NodeId>,
}

impl Entered {
    /// The record of a job placed already (nobody waits for its placement): one given on from
    /// here, or one a restart took back.
    fn placed(role: Role, stage: Stage, path: Vec<NodeId>) -> Self {
        Entered {
            role,
            waiting: Vec::new(),
            key: None,
            requires: 0,
            runs_here: true,
            here_only: false,
            command: None,
            excluded: Vec::new(),
            refusals: Vec::new(),
            offered_elsewhere: false,
            stage,
            request: None,
            timer: None,
            path,
        }
    }
}

#[derive(Debug)]
enum Stage {
    /// Being placed (only within a call).
    Placing,
    /// Offered to a peer.
    Moving(Move),
    /// Held here.
    Here,
    /// Held by a peer.
    Following(Follow),
}

impl Handoff {
    /// A core with nothing held, nothing fenced.
    pub fn new(config: HandoffConfig) -> Self {
        Handoff {
            placer: Placer::new(config.placer.clone()),
            fences: fences::Fences::new(config.fences),
            keys: Keys::new(config.keys),
            held: Held::new(config.retention),
            config,
            leaving: false,
            jobs: HashMap::new(),
            requests: HashMap::new(),
            timers: BTreeSet::new(),
            steal: None,
            counter: 0,
            actions: VecDeque::new(),
            stats: HandoffStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &HandoffConfig {
        &self.config
    }

    /// What the core did so far.
    pub fn stats(&self) -> HandoffStats {
        self.stats
    }

    /// The placer (its ledger of recent forwards).
    pub fn placer(&self) -> &Placer {
        &self.placer
    }

    /// Jobs submitted here that have not ended.
    pub fn unsettled(&self) -> usize {
        self.jobs.len()
    }

    /// Jobs held here that have not ended.
    pub fn held(&self) -> usize {
        self.held.unfinished()
    }

    /// Ids fenced off here now.
    pub fn fenced(&self) -> usize {
        self.fences.len()
    }

    /// Whether the node is leaving.
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the core next wants [`Handoff::handle_timeout`] (perhaps for nothing: a wake-up
    /// superseded since is not withdrawn).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let job = self.timers.first().map(|&(at, _, _)| at);
        let steal = self.steal.as_ref().map(|s| s.until);
        job.into_iter().chain(steal).min()
    }

    /// The node leaves: submissions and offers are refused from now on. Jobs held and followed
    /// stay so.
    pub fn leave(&mut self) {
        self.leaving = true;
    }

    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn reply(&mut self, ticket: Ticket, reply: Reply) {
        self.actions.push_back(Action::Reply { ticket, reply });
    }

    fn send(
        &mut self,
        now: Instant,
        id: JobId,
        to: NodeId,
        api: SocketAddr,
        message: Request,
        timeout: Duration,
    ) {
        let request = RequestId(self.next());
        self.requests.insert(request, id);
        if let Some(job) = self.jobs.get_mut(&id) {
            job.request = Some(request);
        }
        self.wake(now + timeout, id);
        self.actions.push_back(Action::Send {
            to,
            api,
            request,
            message,
        });
    }

    /// Sets job `id`'s wake-up, replacing any other.
    fn wake(&mut self, at: Instant, id: JobId) {
        let order = self.next();
        if let Some(job) = self.jobs.get_mut(&id) {
            if let Some((old, old_order)) = job.timer.replace((at, order)) {
                self.timers.remove(&(old, old_order, id));
            }
            self.timers.insert((at, order, id));
        }
    }
}
