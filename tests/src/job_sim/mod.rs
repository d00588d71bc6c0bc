//! Gossip cores, hand-off cores and a model of each node's executor, together under the
//! virtual clock of [`Sim`]: where jobs go, what happens to them when messages are lost, nodes
//! crash, freeze or are cut off, and how well a placement policy balances — deterministic for a
//! seed, and fast (a thousand nodes run thousands of jobs in seconds).
//!
//! # How it is driven
//! [`JobSim`] owns a [`Sim`] (the gossip cores and their network) and a queue of its own, of
//! job events: submissions, hand-off messages in flight, hand-off wake-ups, job ends, long
//! polls running out, map checks. Every run method ([`JobSim::run_for`], [`JobSim::run_until`])
//! runs the gossip simulation up to the earliest job event, then performs it, so both share one
//! clock; at equal times gossip goes first. Each node's [`Handoff`] is driven as the worker would drive it:
//! 1. every call gets the time, the node's rng and a [`View`]: its gossip core's map, its
//!    executor's exact load, and whether the queue has room;
//! 2. after every call, its actions are carried out: [`Action::Send`] puts a message on the
//!    network, [`Action::Run`] puts the job in the executor, replies and settlements are logged;
//! 3. it is woken at [`Handoff::poll_timeout`], and shown its map every gossip interval
//!    ([`Handoff::handle_map`]);
//! 4. with stealing on, an idle node (a free slot, nothing queued) is told so
//!    ([`Handoff::handle_idle`]) when a job ends and every [`JobSimConfig::steal_interval`];
//!    a node that answers a steal empty sends its report of itself, made at once
//!    ([`Gossip::report_now`](hearsay_shared::Gossip::report_now)), and the thief's gossip
//!    core takes it in as news ([`Action::News`],
//!    [`Gossip::handle_report`](hearsay_shared::Gossip::handle_report)).
//!
//! # The executor
//! `slots` jobs run at once, the rest wait in a FIFO queue of at most `queue_limit`; a job runs
//! for the service time it was submitted with. Its load (queued, running, slots) is what the
//! node's gossip reports.
//!
//! # The network of job messages
//! A request or an answer takes [`SimConfig::min_delay`]`..=`[`SimConfig::max_delay`], and is
//! lost with probability [`JobSimConfig::job_loss`] (worse than TCP, which would retransmit:
//! here every loss is a lost answer or a request that may or may not have arrived, which is
//! what the hand-off must survive). A message between partitioned nodes is dropped; a request
//! to a crashed node is answered [`Answer::NotSent`] (connection refused); an answer to a node
//! that restarted since it asked is dropped (its connection died). A frozen node
//! ([`JobSim::freeze`], `SIGSTOP`) hears and says nothing, gossip included, and its jobs stop
//! where they are; what arrived meanwhile waits, and on [`JobSim::thaw`] is handled in a random
//! order, as a thawed process reads its sockets.
//!
//! # The truth
//! The simulation knows every executor every job was put in ([`JobSim::double_runs`]), every
//! settlement an entry node made ([`JobSim::settled`]), and each job's submission, start and
//! end in virtual time ([`JobSim::sojourns`]).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hearsay_scheduler::handoff::{
    Action, Answer, AskAnswer, Handoff, HandoffConfig, Refusal, Reply, Request, RequestId,
    StealAnswer, Submission, View,
};
use hearsay_scheduler::Policy;
use hearsay_shared::{JobId, JobStatus, LoadVector, NodeState};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

use crate::sim::{node_id, Sim, SimConfig};
use crate::timeline::Timeline;

mod faults;
mod network;
mod observe;
mod submit;

/// How to build a job simulation.
#[derive(Debug, Clone)]
pub struct JobSimConfig {
    /// The gossip simulation: nodes, seed, gossip loss and delays.
    pub gossip: SimConfig,
    /// Job slots per node.
    pub slots: u32,
    /// The most jobs a node's queue holds.
    pub queue_limit: usize,
    /// The placement policy of every node.
    pub policy: Policy,
    /// Probability that a job message (request or answer) is lost.
    pub job_loss: f64,
    /// How long a node holds a waiting ask (a long poll) before answering how the job stands.
    pub long_poll: Duration,
    /// Whether idle nodes steal queued jobs (then a job moves at most twice: a forward and a
    /// steal).
    pub steal: bool,
    /// Whether a node that answers a steal empty sends its report of itself with the answer
    /// (published at once), which the thief's gossip core takes in as news
    /// ([`Action::News`]). On by default; off to measure what it brings.
    pub steal_news: bool,
    /// How often a node that stays idle asks for work again, besides when a job ends (the
    /// worker's `--steal-interval`, 200 ms by default).
    pub steal_interval: Duration,
    /// The hand-off settings of every node (its `node`, `incarnation`, and the placer's policy
    /// and report interval are replaced by each node's own).
    pub handoff: HandoffConfig,
}

impl JobSimConfig {
    /// `nodes` nodes of one slot each, placing by `policy`, with the default gossip, hand-off
    /// and network settings and no loss.
    pub fn new(nodes: usize, seed: u64, policy: Policy) -> Self {
        JobSimConfig {
            gossip: SimConfig::new(nodes, seed),
            slots: 1,
            queue_limit: 1024,
            policy,
            job_loss: 0.0,
            long_poll: Duration::from_secs(10),
            steal: false,
            steal_news: true,
            steal_interval: Duration::from_millis(200),
            handoff: HandoffConfig::new(node_id(0), 0),
        }
    }
}

/// What the simulation knows of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTruth {
    /// Its entry node.
    pub entry: usize,
    /// When it was submitted.
    pub submitted: Duration,
    /// How long it runs.
    pub service: Duration,
    /// Every node whose executor it was put in, in order.
    pub runs: Vec<usize>,
    /// Every node it started running at: at most once says one.
    pub starts: Vec<usize>,
    /// When it started running (the last start, if it somehow ran twice).
    pub started: Option<Duration>,
    /// When it finished running.
    pub ended: Option<Duration>,
}

#[derive(Debug)]
enum Msg {
    Request {
        request: RequestId,
        message: Request,
    },
    Answer {
        request: RequestId,
        answer: Answer,
    },
}

#[derive(Debug)]
enum Event {
    Submit {
        node: usize,
        service: Duration,
        /// An oracle's placement: to whichever node has the fewest jobs when it comes
        /// (`node` if none runs).
        shortest: bool,
    },
    Deliver {
        from: usize,
        /// The life of the node that sent the request (or that an answer is for).
        asker: u64,
        to: usize,
        msg: Msg,
    },
    Wake {
        node: usize,
    },
    JobEnd {
        node: usize,
        life: u64,
        id: JobId,
    },
    PollExpire {
        node: usize,
        life: u64,
        request: RequestId,
    },
    MapCheck {
        node: usize,
    },
    /// Every [`JobSimConfig::steal_interval`]: an idle node asks for work.
    StealCheck {
        node: usize,
    },
}

impl Event {
    /// The node the event happens at.
    fn node(&self) -> usize {
        match self {
            Event::Submit { node, .. }
            | Event::Wake { node }
            | Event::JobEnd { node, .. }
            | Event::PollExpire { node, .. }
            | Event::MapCheck { node }
            | Event::StealCheck { node } => *node,
            Event::Deliver { to, .. } => *to,
        }
    }
}

/// A long poll held by a node: answered when the job ends or the hold runs out.
#[derive(Debug)]
struct HeldPoll {
    from: usize,
    asker: u64,
    request: RequestId,
    id: JobId,
}

#[derive(Debug)]
struct JobNode {
    /// `None` while crashed.
    core: Option<Handoff>,
    life: u64,
    rng: StdRng,
    running: Vec<JobId>,
    queue: VecDeque<JobId>,
    polls: Vec<HeldPoll>,
    /// The wake-up queued; any other is stale.
    wake: Option<Duration>,
    frozen: bool,
    /// Events that arrived while frozen.
    backlog: Vec<Event>,
    /// Whether it ever crashed (it answers for nothing it accepted before).
    crashed: bool,
}

/// Counts of what the simulation's network did with job messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobDrops {
    /// Lost to [`JobSimConfig::job_loss`].
    pub lost: u64,
    /// Dropped between partitioned nodes.
    pub partitioned: u64,
    /// Requests to crashed nodes (answered `NotSent`).
    pub refused: u64,
}

/// Gossip, hand-off and executors of a cluster under one virtual clock. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct JobSim {
    config: JobSimConfig,
    gossip: Sim,
    nodes: Vec<JobNode>,
    queue: Timeline<Event>,
    /// The job network's randomness.
    rng: StdRng,
    group: Vec<usize>,
    /// Job-message loss of single directed links, overriding [`JobSimConfig::job_loss`].
    link_loss: HashMap<(usize, usize), f64>,
    jobs: HashMap<JobId, JobTruth>,
    /// The service time of the submission being handled (the spec the shell keeps).
    submitting: Option<(usize, Duration)>,
    accepted: HashMap<JobId, usize>,
    settled: HashMap<JobId, Vec<(JobStatus, Option<String>)>>,
    refused: u64,
    drops: JobDrops,
}

impl JobSim {
    /// Builds the cluster; nodes start as in [`Sim::new`], and their hand-off cores with them.
    pub fn new(config: JobSimConfig) -> Self {
        let mut gossip = Sim::new(config.gossip.clone());
        let mut rng = StdRng::seed_from_u64(config.gossip.seed ^ 0x6a6f_6273);
        let n = config.gossip.nodes;
        let nodes = (0..n)
            .map(|_| JobNode {
                core: None,
                life: 0,
                rng: StdRng::seed_from_u64(rng.random()),
                running: Vec::new(),
                queue: VecDeque::new(),
                polls: Vec::new(),
                wake: None,
                frozen: false,
                backlog: Vec::new(),
                crashed: false,
            })
            .collect();
        // Every node is up once the gossip simulation's start spread is over.
        gossip.run_for(config.gossip.start_spread);
        let mut sim = JobSim {
            gossip,
            nodes,
            queue: Timeline::default(),
            rng,
            group: vec![0; n],
            link_loss: HashMap::new(),
            jobs: HashMap::new(),
            submitting: None,
            accepted: HashMap::new(),
            settled: HashMap::new(),
            refused: 0,
            drops: JobDrops::default(),
            config,
        };
        for i in 0..n {
            sim.boot(i);
            let offset = Duration::from_micros(
                sim.rng
                    .random_range(0..sim.gossip.interval().as_micros() as u64),
            );
            sim.schedule(sim.now() + offset, Event::MapCheck { node: i });
            let offset = Duration::from_micros(
                sim.rng
                    .random_range(0..sim.config.steal_interval.as_micros().max(1) as u64),
            );
            sim.schedule(sim.now() + offset, Event::StealCheck { node: i });
        }
        sim
    }

    fn boot(&mut self, i: usize) {
        let incarnation = self
            .gossip
            .core(i)
            .expect("the gossip core runs")
            .incarnation();
        let mut config = self.config.handoff.clone();
        config.node = node_id(i);
        config.incarnation = incarnation;
        config.placer.policy = self.config.policy;
        config.placer.report_interval = self.gossip.interval();
        if self.config.steal {
            config.max_moves = config.max_moves.max(2);
        }
        let node = &mut self.nodes[i];
        node.core = Some(Handoff::new(config));
        node.life += 1;
        node.running.clear();
        node.queue.clear();
        node.polls.clear();
        node.wake = None;
        node.frozen = false;
        node.backlog.clear();
        self.publish(i);
    }

    // ---- running -------------------------------------------------------------------------

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.gossip.now()
    }

    fn instant(&self) -> Instant {
        self.gossip.instant()
    }

    /// The gossip simulation.
    pub fn gossip(&self) -> &Sim {
        &self.gossip
    }

    /// The gossip simulation, to run it alone (until it converges, say) or change its network.
    pub fn gossip_mut(&mut self) -> &mut Sim {
        &mut self.gossip
    }

    fn schedule(&mut self, at: Duration, event: Event) {
        self.queue.push(at, event);
    }

    /// Runs gossip up to the earliest job event and performs it; `false` if there is none
    /// before `end`.
    fn step_until(&mut self, end: Duration) -> bool {
        let Some(at) = self.queue.next_at().filter(|at| *at <= end) else {
            return false;
        };
        let now = self.now();
        if at > now {
            self.gossip.run_for(at - now);
        }
        let (_, event) = self.queue.pop().expect("peeked");
        self.perform(event);
        true
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now() + duration;
        while self.step_until(end) {}
        let now = self.now();
        self.gossip.run_for(end.saturating_sub(now));
    }

    /// Runs until `done` holds (checked after every job event), for at most `limit`; returns
    /// how long that took.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&JobSim) -> bool,
    ) -> Option<Duration> {
        let start = self.now();
        let end = start + limit;
        loop {
            if done(self) {
                return Some(self.now() - start);
            }
            if !self.step_until(end) {
                let now = self.now();
                self.gossip.run_for(end.saturating_sub(now));
                return done(self).then(|| self.now() - start);
            }
        }
    }

    fn perform(&mut self, event: Event) {
        let event = match event {
            Event::Submit {
                node,
                service,
                shortest: true,
            } => Event::Submit {
                node: self.shortest().unwrap_or(node),
                service,
                shortest: false,
            },
            event => event,
        };
        let i = event.node();
        if self.nodes[i].frozen {
            // Submissions are the outside world's: a frozen node cannot be submitted to
            // either (a client would time out); they are dropped, not kept.
            if !matches!(event, Event::Submit { .. }) {
                self.nodes[i].backlog.push(event);
            }
            return;
        }
        match event {
            Event::Submit { node, service, .. } => self.submit(node, service),
            Event::Deliver {
                from,
                asker,
                to,
                msg,
            } => self.deliver(from, asker, to, msg),
            Event::Wake { node } => {
                if self.nodes[node].wake == Some(self.now()) {
                    self.nodes[node].wake = None;
                    self.call(node, |core, now, rng, view| {
                        core.handle_timeout(now, rng, view)
                    });
                }
            }
            Event::JobEnd { node, life, id } => self.job_end(node, life, id),
            Event::PollExpire {
                node,
                life,
                request,
            } => {
                if self.nodes[node].life == life {
                    if let Some(k) = self.nodes[node]
                        .polls
                        .iter()
                        .position(|p| p.request == request)
                    {
                        let poll = self.nodes[node].polls.remove(k);
                        self.answer_poll(node, poll);
                    }
                }
            }
            Event::MapCheck { node } => {
                let next = self.now() + self.gossip.interval();
                self.schedule(next, Event::MapCheck { node });
                if let (Some(gossip), Some(core)) =
                    (self.gossip.core(node), self.nodes[node].core.as_mut())
                {
                    core.handle_map(gossip.map());
                    self.drain(node);
                }
            }
            Event::StealCheck { node } => {
                let next = self.now() + self.config.steal_interval;
                self.schedule(next, Event::StealCheck { node });
                self.idle(node);
            }
        }
    }

    /// This node's executor load.
    fn load(&self, i: usize) -> LoadVector {
        let node = &self.nodes[i];
        LoadVector {
            queued: node.queue.len() as u32,
            running: node.running.len() as u32,
            state: if node.core.as_ref().is_some_and(Handoff::is_leaving) {
                NodeState::Leaving
            } else {
                NodeState::Alive
            },
            ..LoadVector::idle(self.config.slots)
        }
    }

    fn publish(&mut self, i: usize) {
        let load = self.load(i);
        self.gossip.set_load(i, load);
    }

    /// Calls node `i`'s core with the time, its rng and its view, then carries out its actions.
    fn call(&mut self, i: usize, f: impl FnOnce(&mut Handoff, Instant, &mut StdRng, &View<'_>)) {
        let now = self.instant();
        let own = self.load(i);
        let room = self.nodes[i].queue.len() < self.config.queue_limit;
        let Some(gossip) = self.gossip.core(i) else {
            return;
        };
        let node = &mut self.nodes[i];
        let Some(core) = node.core.as_mut() else {
            return;
        };
        let view = View {
            map: gossip.map(),
            own,
            room,
        };
        f(core, now, &mut node.rng, &view);
        self.drain(i);
    }

    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].core.as_mut().and_then(Handoff::poll_action) {
            match action {
                Action::Send {
                    to,
                    request,
                    message,
                    ..
                } => {
                    if let (Request::Offer(offer), Some((entry, service))) =
                        (&message, self.submitting)
                    {
                        let submitted = self.now();
                        self.jobs.entry(offer.id).or_insert(JobTruth {
                            entry,
                            submitted,
                            service,
                            runs: Vec::new(),
                            starts: Vec::new(),
                            started: None,
                            ended: None,
                        });
                    }
                    let to = self.gossip.index_of(&to).expect("a simulated node");
                    let asker = self.nodes[i].life;
                    self.send(i, asker, to, Msg::Request { request, message });
                }
                Action::Run { id, .. } => {
                    if let Some((entry, service)) = self.submitting {
                        let submitted = self.now();
                        self.jobs.entry(id).or_insert(JobTruth {
                            entry,
                            submitted,
                            service,
                            runs: Vec::new(),
                            starts: Vec::new(),
                            started: None,
                            ended: None,
                        });
                    }
                    self.jobs
                        .get_mut(&id)
                        .expect("a job runs after it was submitted")
                        .runs
                        .push(i);
                    self.nodes[i].queue.push_back(id);
                    self.start_jobs(i);
                }
                Action::Reply { reply, .. } => match reply {
                    Reply::Accepted { id, .. } => {
                        self.accepted.insert(id, i);
                    }
                    Reply::Replayed { .. } => {}
                    Reply::Refused(_) => self.refused += 1,
                },
                Action::Settled {
                    id, status, reason, ..
                } => {
                    self.settled.entry(id).or_default().push((status, reason));
                }
                Action::Requeue { id } => {
                    self.nodes[i].queue.push_back(id);
                    self.start_jobs(i);
                }
                Action::Moved { id, .. } => self.answer_polls(i, id),
                Action::News { report } => {
                    let now = self.instant();
                    if let Some(gossip) = self.gossip.core_mut(i) {
                        gossip.handle_report(now, report);
                    }
                }
                Action::Follow { .. } | Action::Learned { .. } => {}
            }
        }
        self.rewake(i);
    }

    fn rewake(&mut self, i: usize) {
        let base = self.instant() - self.now();
        let Some(at) = self.nodes[i].core.as_ref().and_then(Handoff::poll_timeout) else {
            return;
        };
        let at = at.saturating_duration_since(base).max(self.now());
        if self.nodes[i].wake.is_none_or(|w| at < w || w < self.now()) {
            self.nodes[i].wake = Some(at);
            self.schedule(at, Event::Wake { node: i });
        }
    }

    fn start_jobs(&mut self, i: usize) {
        let now = self.now();
        let instant = self.instant();
        while self.nodes[i].running.len() < self.config.slots as usize {
            let Some(id) = self.nodes[i].queue.pop_front() else {
                break;
            };
            self.nodes[i].running.push(id);
            let job = self.jobs.get_mut(&id).expect("known");
            job.started = Some(now);
            job.starts.push(i);
            let end = now + job.service;
            let life = self.nodes[i].life;
            if let Some(core) = self.nodes[i].core.as_mut() {
                core.handle_started(instant, id);
            }
            self.schedule(end, Event::JobEnd { node: i, life, id });
        }
        self.publish(i);
    }

    fn job_end(&mut self, i: usize, life: u64, id: JobId) {
        if self.nodes[i].life != life || self.nodes[i].core.is_none() {
            return;
        }
        let Some(k) = self.nodes[i].running.iter().position(|r| *r == id) else {
            return;
        };
        self.nodes[i].running.swap_remove(k);
        let now = self.now();
        if let Some(job) = self.jobs.get_mut(&id) {
            job.ended = Some(now);
        }
        let instant = self.instant();
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.handle_ended(instant, id, JobStatus::Succeeded);
        }
        self.drain(i);
        self.answer_polls(i, id);
        self.start_jobs(i);
        self.idle(i);
    }

    /// Answers the long polls node `i` holds for job `id` (it ended, or moved on).
    fn answer_polls(&mut self, i: usize, id: JobId) {
        let (done, waiting): (Vec<HeldPoll>, Vec<HeldPoll>) =
            std::mem::take(&mut self.nodes[i].polls)
                .into_iter()
                .partition(|p| p.id == id);
        self.nodes[i].polls = waiting;
        for poll in done {
            self.answer_poll(i, poll);
        }
    }

    /// With stealing on, a node with a free slot and an empty queue asks for work.
    fn idle(&mut self, i: usize) {
        let node = &self.nodes[i];
        if !self.config.steal
            || !node.queue.is_empty()
            || node.running.len() >= self.config.slots as usize
        {
            return;
        }
        self.call(i, |core, now, rng, view| core.handle_idle(now, rng, view));
    }

    fn answer_poll(&mut self, i: usize, poll: HeldPoll) {
        let instant = self.instant();
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        // Held here (or moved on from here): answered without fencing anything.
        let incarnation = core.config().incarnation;
        let answer = core.handle_ask(instant, poll.id, incarnation);
        self.send(
            i,
            poll.asker,
            poll.from,
            Msg::Answer {
                request: poll.request,
                answer: Answer::Ask(answer),
            },
        );
    }
}
