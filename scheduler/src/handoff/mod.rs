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

pub mod fences;
pub mod follow;
pub mod held;
pub mod keys;
pub mod message;
pub mod moves;
mod receive;
mod restore;
pub mod shell;
mod steal;

#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearsay_shared::{JobId, JobStatus, LoadMap, NodeId};
use rand::Rng;

pub use fences::FenceLimits;
pub use follow::FollowLimits;
pub use held::Retention;
pub use keys::{BodyDigest, KeyLimits, Keyed};
pub use message::{
    Answer, AskAnswer, MoveKind, Offer, OfferAnswer, Refusal, Request, RequestId, StealAnswer,
};
pub use restore::Followed;
pub use shell::{Action, HandoffStats, Reply, Submission, SubmitRefusal, Ticket, View};

use crate::{PlacementRequest, Placer, PlacerConfig, Target};
use follow::{Fate, Follow, FollowStep};
use held::{Held, HeldJob};
use keys::{KeyCheck, Keys};
use moves::{Move, Step};

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

    // ---- the entry node ------------------------------------------------------------------

    /// A job is submitted here. Its [`Reply`] comes as an [`Action::Reply`] with the ticket
    /// returned, at once or once a peer answered.
    pub fn handle_submit<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        submission: Submission,
    ) -> Ticket {
        let ticket = Ticket(self.next());
        if self.leaving {
            self.reply(ticket, Reply::Refused(SubmitRefusal::Leaving));
            return ticket;
        }
        if let Some(keyed) = &submission.key {
            match self.keys.check(keyed, now) {
                KeyCheck::Fresh => {}
                KeyCheck::Reused => {
                    let key = keyed.key.clone();
                    self.reply(ticket, Reply::Refused(SubmitRefusal::KeyReused { key }));
                    return ticket;
                }
                KeyCheck::Names(id) => {
                    match self.jobs.get_mut(&id) {
                        // Still being placed: answered with the first submission.
                        Some(job) if !job.waiting.is_empty() => job.waiting.push(ticket),
                        _ => self.reply(ticket, Reply::Replayed { id }),
                    }
                    return ticket;
                }
            }
        }
        let id = loop {
            let id = JobId(rng.random());
            if !self.jobs.contains_key(&id) && self.held.get(id, now).is_none() {
                break id;
            }
        };
        if let Some(keyed) = &submission.key {
            self.keys.bind(keyed, id, now);
        }
        self.jobs.insert(
            id,
            Entered {
                role: Role::Entry,
                waiting: vec![ticket],
                key: submission.key.map(|k| k.key),
                requires: submission.requires,
                runs_here: submission.runs_here,
                here_only: submission.here_only,
                command: submission.command,
                excluded: Vec::new(),
                refusals: Vec::new(),
                offered_elsewhere: false,
                stage: Stage::Placing,
                request: None,
                timer: None,
                path: vec![self.config.node.clone()],
            },
        );
        self.place(now, rng, view, id);
        ticket
    }

    /// Places job `id` (in [`Stage::Placing`]) among the nodes not excluded.
    fn place<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R, view: &View<'_>, id: JobId) {
        let me = self.config.node.clone();
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.runs_here && !view.room && !job.excluded.contains(&me) {
            job.excluded.push(me.clone());
            job.refusals
                .push(format!("{me} (this node): its queue is full"));
        }
        let here = job.runs_here && view.room;
        let target = if job.here_only {
            if here {
                Target::Here
            } else {
                Target::Nowhere
            }
        } else {
            self.placer.choose(
                &PlacementRequest {
                    map: view.map,
                    me: &me,
                    own: view.own,
                    now,
                    hops: 0,
                    exclude: &job.excluded,
                    requires: job.requires,
                },
                here,
                rng,
            )
        };
        match target {
            Target::Here => {
                job.stage = Stage::Here;
                self.stats.placed_here += 1;
                self.held.take(
                    id,
                    HeldJob {
                        entry: me.clone(),
                        status: JobStatus::Queued,
                        path: Vec::new(),
                        moved_to: None,
                    },
                );
                self.actions.push_back(Action::Run {
                    id,
                    entry: me.clone(),
                    path: Vec::new(),
                });
                self.accepted(id, me, JobStatus::Queued);
            }
            Target::Peer { node, api } => {
                let incarnation = view.map.get(&node).map_or(0, |e| e.report().incarnation);
                let offer = Offer {
                    id,
                    entry: me,
                    incarnation,
                    kind: MoveKind::Forward,
                    path: job.path.clone(),
                };
                job.stage = Stage::Moving(Move::offered(
                    node.clone(),
                    api,
                    incarnation,
                    MoveKind::Forward,
                ));
                let timeout = self.config.offer_timeout;
                self.send(now, id, node, api, Request::Offer(offer), timeout);
            }
            Target::Nowhere => {
                let refusal = match (&job.command, job.runs_here, job.offered_elsewhere) {
                    (Some(command), false, false) => SubmitRefusal::UnknownCommand(command.clone()),
                    _ => SubmitRefusal::Nowhere {
                        refusals: std::mem::take(&mut job.refusals),
                    },
                };
                self.refuse(id, refusal);
            }
        }
    }

    /// The submission of `id` is refused: nothing runs, the key is free again.
    fn refuse(&mut self, id: JobId, refusal: SubmitRefusal) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        self.stats.refused += 1;
        if let Some(key) = &job.key {
            self.keys.free(key, id);
        }
        if let Some(request) = job.request {
            self.requests.remove(&request);
        }
        for ticket in job.waiting {
            self.reply(ticket, Reply::Refused(refusal.clone()));
        }
    }

    /// Job `id` is taken by `at`: its submitters are told.
    fn accepted(&mut self, id: JobId, at: NodeId, status: JobStatus) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let mut waiting = std::mem::take(&mut job.waiting).into_iter();
        if let Some(first) = waiting.next() {
            self.reply(first, Reply::Accepted { id, at, status });
        }
        for ticket in waiting {
            self.reply(ticket, Reply::Replayed { id });
        }
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

    /// The answer to request `request` came back (or the shell knows there will be none).
    pub fn handle_answer<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        request: RequestId,
        answer: Answer,
    ) {
        if let Some(asked) = self.steal.take_if(|s| s.request == request) {
            self.steal_answered(now, rng, view, asked, answer);
            return;
        }
        let Some(id) = self.requests.remove(&request) else {
            return; // timed out or superseded: ignored
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.request != Some(request) {
            return;
        }
        job.request = None;
        if let Some((at, order)) = job.timer.take() {
            self.timers.remove(&(at, order, id));
        }
        self.take_answer(now, rng, view, id, answer);
    }

    /// Wakes the core: requests whose time ran out are taken as unanswered, pauses end.
    pub fn handle_timeout<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R, view: &View<'_>) {
        if self.steal.as_ref().is_some_and(|s| s.until <= now) {
            self.steal = None;
        }
        while let Some(&(at, order, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, order, id));
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if job.timer != Some((at, order)) {
                continue;
            }
            job.timer = None;
            match job.request.take() {
                Some(request) => {
                    self.requests.remove(&request);
                    let answer = Answer::Unanswered(format!(
                        "no answer within {} ms",
                        self.timeout_of(id).as_millis()
                    ));
                    self.take_answer(now, rng, view, id, answer);
                }
                // A pause is over: ask.
                None => self.ask(now, id),
            }
        }
    }

    /// How long the request outstanding for `id` may take.
    fn timeout_of(&self, id: JobId) -> Duration {
        match self.jobs.get(&id).map(|j| &j.stage) {
            Some(Stage::Moving(m)) if m.phase == moves::Phase::Offered => self.config.offer_timeout,
            Some(Stage::Moving(_)) => self.config.ask_timeout,
            _ => self.config.follow.timeout,
        }
    }

    /// Sends the ask that job `id`'s stage calls for.
    fn ask(&mut self, now: Instant, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let (to, api, incarnation, wait, timeout) = match &job.stage {
            Stage::Moving(m) => (
                m.to.clone(),
                m.api,
                m.incarnation,
                false,
                self.config.ask_timeout,
            ),
            Stage::Following(f) => (
                f.at.clone(),
                f.api,
                f.incarnation,
                true,
                self.config.follow.timeout,
            ),
            Stage::Placing | Stage::Here => return,
        };
        let ask = Request::Ask {
            id,
            wait,
            incarnation,
        };
        self.send(now, id, to, api, ask, timeout);
    }

    fn take_answer<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        id: JobId,
        answer: Answer,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        match &mut job.stage {
            Stage::Moving(m) => {
                let step = m.on_answer(answer, self.config.ask_attempts, self.config.ask_pause);
                let m = m.clone();
                self.take_move_step(now, rng, view, id, m, step);
            }
            Stage::Following(f) => {
                let step = f.on_answer(answer, &self.config.follow);
                self.take_follow_step(now, view, id, step);
            }
            Stage::Placing | Stage::Here => {}
        }
    }

    fn take_move_step<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        id: JobId,
        m: Move,
        step: Step,
    ) {
        if let Step::Ask { after } = step {
            if matches!(m.phase, moves::Phase::Asking { attempt: 0, .. }) {
                self.stats.offers_unanswered += 1;
            }
            if let Some(job) = self.jobs.get_mut(&id) {
                job.stage = Stage::Moving(m);
            }
            if after.is_zero() {
                self.ask(now, id);
            } else {
                self.wake(now + after, id);
            }
            return;
        }
        // "It moved to you": the peer holds it no more (and refuses it back). Unless this node
        // took it back by a steal, the offer was not taken.
        let step = match step {
            Step::MovedOn(node)
                if node == self.config.node
                    && (m.kind == MoveKind::Steal
                        || self.held.get(id, now).is_none_or(|h| h.moved_to.is_some())) =>
            {
                Step::NotTaken {
                    reason: "it gave the job to this node before".into(),
                    counts: true,
                }
            }
            step => step,
        };
        if m.kind == MoveKind::Steal {
            self.take_steal_step(now, view, id, m, step);
            return;
        }
        match step {
            Step::Ask { .. } => unreachable!("handled above"),
            Step::Taken(status) => {
                self.stats.forwarded += 1;
                self.follow_at(
                    now,
                    id,
                    Follow::new(m.to, m.api, m.incarnation, status),
                    None,
                );
            }
            Step::Unconfirmed => {
                self.stats.forwarded += 1;
                self.stats.unconfirmed += 1;
                let follow = Follow::new(m.to, m.api, m.incarnation, JobStatus::Queued);
                self.follow_at(now, id, follow, None);
            }
            Step::Lost(reason) => {
                self.follow_at(
                    now,
                    id,
                    Follow::new(m.to, m.api, m.incarnation, JobStatus::Lost),
                    Some(reason),
                );
            }
            Step::MovedOn(node) => {
                self.stats.forwarded += 1;
                self.moved_to(now, view, id, node);
            }
            Step::NotTaken { reason, counts } => {
                self.stats.offers_not_taken += 1;
                let Some(job) = self.jobs.get_mut(&id) else {
                    return;
                };
                job.refusals.push(format!("{}: {reason}", m.to));
                job.excluded.push(m.to);
                job.offered_elsewhere |= counts;
                job.stage = Stage::Placing;
                self.place(now, rng, view, id);
            }
            Step::Invalid { field, reason } => {
                self.refuse(id, SubmitRefusal::Invalid { field, reason });
            }
        }
    }

    /// Job `id` is held by the peer in `follow`: record it, tell the submitters, ask after it
    /// (or settle it, if its status is an end; `reason` says why it was lost).
    fn follow_at(&mut self, now: Instant, id: JobId, follow: Follow, reason: Option<String>) {
        let (at, status) = (follow.at.clone(), follow.status);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.path.push(at.clone());
        job.stage = Stage::Following(follow);
        self.actions.push_back(Action::Follow {
            id,
            at: at.clone(),
            status,
        });
        self.accepted(id, at, status);
        if status.is_terminal() {
            self.settle(id, status, reason);
        } else {
            self.ask(now, id);
        }
    }

    /// The job moved on to `node`: follow it there, as the map knows it.
    fn moved_to(&mut self, now: Instant, view: &View<'_>, id: JobId, node: NodeId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        // Entry, then every node it moved to: more than the bound allows is a loop of stale
        // "moved" answers (a move whose answer was lost, taken for done), not the job.
        if job.path.len() > self.config.max_moves as usize {
            job.path.push(node.clone());
            self.accepted(id, node.clone(), JobStatus::Queued);
            let reason = format!(
                "lost track of the job: it was said to move to {node}, more often than a job may move"
            );
            self.settle(id, JobStatus::Lost, Some(reason));
            return;
        }
        if node == self.config.node {
            // It came back here (this node took it by a steal): it is held here. If this node
            // does not hold it, the peer took an unanswered move back here for done: no node
            // holds it.
            let held = self.held.get(id, now).filter(|h| h.moved_to.is_none());
            let Some(held) = held else {
                self.accepted(id, node.clone(), JobStatus::Queued);
                let reason = format!(
                    "{} moved the job back here without an answer, and it is not here",
                    job_holder(&self.jobs, id)
                );
                self.settle(id, JobStatus::Lost, Some(reason));
                return;
            };
            {
                let status = held.status;
                let job = self.jobs.get_mut(&id).expect("present");
                job.path.push(node.clone());
                job.stage = Stage::Here;
                self.accepted(id, node, status);
                if status.is_terminal() {
                    self.settle(id, status, None);
                }
                return;
            }
        }
        match view.map.get(&node) {
            Some(entry) => {
                let report = entry.report();
                let follow = Follow::new(node, report.api, report.incarnation, JobStatus::Queued);
                self.follow_at(now, id, follow, None);
            }
            None => {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.path.push(node.clone());
                }
                self.accepted(id, node.clone(), JobStatus::Queued);
                let reason = format!("the job moved to {node}, which this node does not know");
                self.settle(id, JobStatus::Lost, Some(reason));
            }
        }
    }

    fn take_follow_step(&mut self, now: Instant, view: &View<'_>, id: JobId, step: FollowStep) {
        match step {
            FollowStep::Ask { after, learned } => {
                if let Some(status) = learned {
                    self.actions.push_back(Action::Learned { id, status });
                }
                if after.is_zero() {
                    self.ask(now, id);
                } else {
                    self.wake(now + after, id);
                }
            }
            FollowStep::Ended(status) => self.settle(id, status, None),
            FollowStep::Lost(reason) => self.settle(id, JobStatus::Lost, Some(reason)),
            FollowStep::MovedTo(node) => self.moved_to(now, view, id, node),
        }
    }

    /// Job `id` has ended: the one [`Action::Settled`] of it.
    fn settle(&mut self, id: JobId, status: JobStatus, reason: Option<String>) {
        let Some(job) = self.forget(id) else {
            return;
        };
        debug_assert_eq!(job.role, Role::Entry, "only an entry node settles a job");
        if status == JobStatus::Lost {
            self.stats.lost += 1;
        }
        self.actions.push_back(Action::Settled {
            id,
            status,
            reason,
            path: job.path,
        });
    }

    /// Drops job `id`'s record, its request and its wake-up.
    fn forget(&mut self, id: JobId) -> Option<Entered> {
        let job = self.jobs.remove(&id)?;
        if let Some(request) = job.request {
            self.requests.remove(&request);
        }
        if let Some((at, order)) = job.timer {
            self.timers.remove(&(at, order, id));
        }
        Some(job)
    }

    /// The map changed for `node`: its verdict (`None`: no longer in the map) and incarnation.
    /// Jobs followed there are lost if it died or restarted.
    pub fn handle_peer(&mut self, node: &NodeId, entry: Option<(hearsay_shared::Verdict, u64)>) {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| matches!(&j.stage, Stage::Following(f) if f.at == *node))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.judge(id, entry);
        }
    }

    /// Looks at the map for every peer that holds a job followed from here (the shell may call
    /// this every gossip round instead of [`Handoff::handle_peer`] on every change).
    pub fn handle_map(&mut self, map: &LoadMap) {
        let followed: Vec<(JobId, Option<(hearsay_shared::Verdict, u64)>)> = self
            .jobs
            .iter()
            .filter_map(|(id, j)| match &j.stage {
                Stage::Following(f) => Some((
                    *id,
                    map.get(&f.at)
                        .map(|e| (e.verdict(), e.report().incarnation)),
                )),
                _ => None,
            })
            .collect();
        for (id, entry) in followed {
            self.judge(id, entry);
        }
    }

    fn judge(&mut self, id: JobId, entry: Option<(hearsay_shared::Verdict, u64)>) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Stage::Following(f) = &mut job.stage else {
            return;
        };
        if let Some(reason) = f.on_fate(Fate::of(entry, f.incarnation)) {
            self.settle(id, JobStatus::Lost, Some(reason));
        }
    }
}

/// The node job `id` was last followed at, for a reason.
fn job_holder(jobs: &HashMap<JobId, Entered>, id: JobId) -> String {
    jobs.get(&id)
        .and_then(|j| j.path.last())
        .map_or_else(|| "a peer".to_owned(), ToString::to_string)
}
