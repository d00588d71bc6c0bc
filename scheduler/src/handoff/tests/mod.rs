//! The core driven by hand (unit tests) and by proptest over every order of deliveries,
//! losses, timeouts, verdicts and restarts (property tests).
//!
//! [`World`] is a minimal shell: a few cores, one load map that all of them read, a bag of
//! messages in flight that the test delivers, drops or fails in any order, and an executor
//! per node that is just the list of jobs it runs. It records every [`Action::Run`] and
//! [`Action::Settled`], which is what the properties are about.
//!
//! The tests by topic: `forward.rs` (the entry node places, offers, asks and follows),
//! `receive.rs` (the node that takes offers), `keys.rs` (idempotency keys), `steal.rs`
//! (stealing) and `properties.rs` (the property test).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hearsay_shared::{
    DetectorConfig, JobId, JobStatus, LoadMap, LoadReport, LoadVector, NodeId, Verdict,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::Policy;

mod forward;
mod keys;
mod properties;
mod receive;
mod steal;

fn id(i: usize) -> NodeId {
    NodeId::new(format!("n{i}")).unwrap()
}

fn api(i: usize) -> SocketAddr {
    format!("127.0.0.{}:8080", i + 1).parse().unwrap()
}

fn report(i: usize, incarnation: u64, seq: u64) -> LoadReport {
    LoadReport {
        node: id(i),
        incarnation,
        seq,
        load: LoadVector::idle(1),
        api: api(i),
        gossip: format!("127.0.0.{}:7946", i + 1).parse().unwrap(),
    }
}

#[derive(Debug)]
enum Flight {
    Request {
        from: usize,
        /// The sender's incarnation.
        incarnation: u64,
        to: usize,
        request: RequestId,
        message: Request,
    },
    Answer {
        to: usize,
        /// The incarnation that sent the request: a restarted node never sees the answers
        /// meant for its earlier life (over HTTP they come back on a connection that died).
        incarnation: u64,
        request: RequestId,
        answer: Answer,
    },
}

#[derive(Debug)]
struct Node {
    core: Handoff,
    incarnation: u64,
    /// Jobs in its executor, not yet ended.
    running: Vec<JobId>,
    room: bool,
}

#[derive(Debug)]
struct World {
    t0: Instant,
    now: Instant,
    map: LoadMap,
    nodes: Vec<Node>,
    flight: Vec<Flight>,
    /// Long polls held by the node asked (the requests, to be asked again).
    parked: Vec<Flight>,
    rng: StdRng,
    /// Every node each job was put in the executor of, over every incarnation (a stolen job
    /// is put in two, one after the other).
    runs: HashMap<JobId, Vec<usize>>,
    /// Every node each job started running at.
    starts: HashMap<JobId, Vec<usize>>,
    /// The entry node of each job that ran, as the run said.
    entry_of: HashMap<JobId, NodeId>,
    /// Jobs accepted, and the entry node that accepted them.
    accepted: HashMap<JobId, usize>,
    settled: HashMap<JobId, Vec<JobStatus>>,
    /// Every reply: the node, its incarnation, the ticket, the reply.
    replies: Vec<(usize, u64, Ticket, Reply)>,
    /// Entry nodes that restarted: they no longer answer for their jobs.
    restarted: Vec<usize>,
    seq: u64,
    /// Every report a node was handed to merge ([`Action::News`]): the node, the report.
    news: Vec<(usize, LoadReport)>,
}

fn config(i: usize, incarnation: u64, policy: Policy) -> HandoffConfig {
    let mut c = HandoffConfig::new(id(i), incarnation);
    c.placer.policy = policy;
    // A forward and a steal.
    c.max_moves = 2;
    c
}

impl World {
    fn new(n: usize, policy: Policy, seed: u64) -> Self {
        let t0 = Instant::now();
        let mut map = LoadMap::new();
        for i in 0..n {
            map.merge_report(report(i, 1, 1), t0, &DetectorConfig::default());
        }
        World {
            t0,
            now: t0,
            map,
            nodes: (0..n)
                .map(|i| Node {
                    core: Handoff::new(config(i, 1, policy)),
                    incarnation: 1,
                    running: Vec::new(),
                    room: true,
                })
                .collect(),
            flight: Vec::new(),
            parked: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            runs: HashMap::new(),
            starts: HashMap::new(),
            entry_of: HashMap::new(),
            accepted: HashMap::new(),
            settled: HashMap::new(),
            replies: Vec::new(),
            restarted: Vec::new(),
            seq: 1,
            news: Vec::new(),
        }
    }

    fn index(&self, node: &NodeId) -> usize {
        (0..self.nodes.len()).find(|&i| id(i) == *node).unwrap()
    }

    fn view_of<'a>(map: &'a LoadMap, node: &Node) -> View<'a> {
        View {
            map,
            own: LoadVector {
                queued: node.running.len() as u32,
                ..LoadVector::idle(1)
            },
            room: node.room,
        }
    }

    /// Carries out what node `i` wants done.
    fn drain(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].core.poll_action() {
            match action {
                Action::Send {
                    to,
                    request,
                    message,
                    ..
                } => {
                    let to = self.index(&to);
                    self.flight.push(Flight::Request {
                        from: i,
                        incarnation: self.nodes[i].incarnation,
                        to,
                        request,
                        message,
                    });
                }
                Action::Run { id, entry, .. } => {
                    self.runs.entry(id).or_default().push(i);
                    self.entry_of.insert(id, entry);
                    self.nodes[i].running.push(id);
                }
                Action::Reply { ticket, reply } => {
                    if let Reply::Accepted { id, .. } = &reply {
                        assert!(
                            self.accepted.insert(*id, i).is_none(),
                            "{id} accepted twice"
                        );
                    }
                    let incarnation = self.nodes[i].incarnation;
                    self.replies.push((i, incarnation, ticket, reply));
                }
                Action::Settled { id, status, .. } => {
                    assert!(
                        self.accepted.contains_key(&id),
                        "{id} settled, never accepted"
                    );
                    self.settled.entry(id).or_default().push(status);
                }
                Action::Requeue { id } => self.nodes[i].running.push(id),
                Action::News { report } => {
                    self.map
                        .merge_report(report.clone(), self.now, &DetectorConfig::default());
                    self.news.push((i, report));
                }
                Action::Follow { .. } | Action::Learned { .. } | Action::Moved { .. } => {}
            }
        }
    }

    fn submit(&mut self, i: usize, submission: Submission) -> Ticket {
        let node = &mut self.nodes[i];
        let view = Self::view_of(&self.map, node);
        let ticket = node
            .core
            .handle_submit(self.now, &mut self.rng, &view, submission);
        self.drain(i);
        ticket
    }

    /// The reply to a ticket of a node that never restarted (tickets are numbered per core).
    fn reply(&self, ticket: Ticket) -> Option<&Reply> {
        self.reply_at(0, 1, ticket)
    }

    fn reply_at(&self, node: usize, incarnation: u64, ticket: Ticket) -> Option<&Reply> {
        self.replies
            .iter()
            .find(|(n, i, t, _)| (*n, *i, *t) == (node, incarnation, ticket))
            .map(|(_, _, _, r)| r)
    }

    /// Delivers flight `k`.
    fn deliver(&mut self, k: usize) {
        match self.flight.remove(k) {
            Flight::Request {
                from,
                incarnation,
                to,
                request,
                message,
            } => {
                let now = self.now;
                let node = &mut self.nodes[to];
                let answer = match &message {
                    Request::Offer(offer) => {
                        let fit = if node.room {
                            Ok(())
                        } else {
                            Err(Refusal::Full)
                        };
                        Answer::Offer(node.core.handle_offer(now, offer, fit))
                    }
                    Request::Ask {
                        id, incarnation, ..
                    } => Answer::Ask(node.core.handle_ask(now, *id, *incarnation)),
                    Request::Steal { incarnation } => {
                        // The newest queued job, out of the queue.
                        let newest = node.running.pop();
                        let view = Self::view_of(&self.map, node);
                        let answer =
                            node.core
                                .handle_steal(now, &view, &id(from), *incarnation, newest);
                        // The shell's part: its own report as it answers, newer than any.
                        let answer = match answer {
                            StealAnswer::Empty { load: None } => {
                                self.seq += 1;
                                let mut r = report(to, node.incarnation, self.seq);
                                r.load.queued = node.running.len() as u32;
                                StealAnswer::Empty {
                                    load: Some(Box::new(r)),
                                }
                            }
                            answer => answer,
                        };
                        Answer::Steal(answer)
                    }
                };
                self.drain(to);
                if matches!(message, Request::Ask { wait: true, .. })
                    && matches!(answer, Answer::Ask(AskAnswer::Held(s)) if !s.is_terminal())
                {
                    // A long poll: held until time passes (then asked again), as a real node
                    // holds it until the job ends.
                    self.parked.push(Flight::Request {
                        from,
                        incarnation,
                        to,
                        request,
                        message,
                    });
                    return;
                }
                self.flight.push(Flight::Answer {
                    to: from,
                    incarnation,
                    request,
                    answer,
                });
            }
            Flight::Answer {
                to,
                incarnation,
                request,
                answer,
            } => {
                if incarnation == self.nodes[to].incarnation {
                    self.answer(to, request, answer);
                }
            }
        }
    }

    fn answer(&mut self, to: usize, request: RequestId, answer: Answer) {
        let node = &mut self.nodes[to];
        let view = Self::view_of(&self.map, node);
        node.core
            .handle_answer(self.now, &mut self.rng, &view, request, answer);
        self.drain(to);
    }

    /// Flight `k`, a request, never left: its sender is told so. An answer is dropped.
    fn not_sent(&mut self, k: usize) {
        match self.flight.remove(k) {
            // (A request from an earlier life of its sender is dropped: nobody waits for it.)
            Flight::Request {
                from,
                incarnation,
                request,
                ..
            } if incarnation == self.nodes[from].incarnation => {
                self.answer(from, request, Answer::NotSent("connection refused".into()));
            }
            Flight::Request { .. } => {}
            Flight::Answer { .. } => {}
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.flight.append(&mut self.parked);
        for i in 0..self.nodes.len() {
            let node = &mut self.nodes[i];
            let view = Self::view_of(&self.map, node);
            node.core.handle_timeout(self.now, &mut self.rng, &view);
            self.drain(i);
        }
    }

    /// Every node reports its queue in the (one, shared) map.
    fn publish(&mut self) {
        self.seq += 1;
        for i in 0..self.nodes.len() {
            let mut r = report(i, self.nodes[i].incarnation, self.seq);
            r.load.queued = self.nodes[i].running.len() as u32;
            self.map
                .merge_report(r, self.now, &DetectorConfig::default());
        }
    }

    /// Node `i` has a free slot and nothing queued (or so it says): it may ask for a job.
    fn idle(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let view = Self::view_of(&self.map, node);
        node.core.handle_idle(self.now, &mut self.rng, &view);
        self.drain(i);
    }

    /// Node `i`'s executor starts or ends its `k`-th job.
    fn end(&mut self, i: usize, k: usize, status: JobStatus) {
        let node = &mut self.nodes[i];
        if node.running.is_empty() {
            return;
        }
        let job = node.running.remove(k % node.running.len());
        self.starts.entry(job).or_default().push(i);
        node.core.handle_started(self.now, job);
        node.core.handle_ended(self.now, job, status);
        self.drain(i);
    }

    fn verdict(&mut self, observer: usize, subject: usize, verdict: Verdict) {
        let incarnation = self.nodes[subject].incarnation;
        self.nodes[observer]
            .core
            .handle_peer(&id(subject), Some((verdict, incarnation)));
        self.drain(observer);
    }

    /// Node `i` crashes and starts again: a fresh core, a later incarnation, an empty executor.
    fn restart(&mut self, i: usize, policy: Policy) {
        let node = &mut self.nodes[i];
        node.incarnation += 1;
        node.core = Handoff::new(config(i, node.incarnation, policy));
        node.running.clear();
        self.restarted.push(i);
        self.seq += 1;
        self.map.merge_report(
            report(i, self.nodes[i].incarnation, self.seq),
            self.now,
            &DetectorConfig::default(),
        );
        for o in 0..self.nodes.len() {
            if o != i {
                self.verdict(o, i, Verdict::Alive);
            }
        }
    }

    /// At most once, checked at any moment: no job ever went to two executors (or twice to
    /// one), and no job settled twice.
    fn check_safety(&self) {
        for (job, nodes) in &self.starts {
            assert!(nodes.len() <= 1, "job {job} ran on {nodes:?}");
        }
        for (job, nodes) in &self.runs {
            // The bound is 2 moves: 3 executors, one after the other.
            assert!(
                nodes.len() <= 3,
                "job {job} moved more than the bound: {nodes:?}"
            );
        }
        let mut queued = std::collections::HashSet::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for job in &node.running {
                assert!(
                    queued.insert(*job),
                    "job {job} queued at two nodes (one is n{i})"
                );
            }
        }
        for (job, ends) in &self.settled {
            assert!(ends.len() <= 1, "job {job} settled {ends:?}");
        }
    }

    /// Delivers everything, ends every job, fires every timer, until nothing is left to do.
    fn quiesce(&mut self) {
        for _ in 0..10_000 {
            for i in 0..self.nodes.len() {
                while !self.nodes[i].running.is_empty() {
                    self.end(i, 0, JobStatus::Succeeded);
                }
            }
            if !self.flight.is_empty() {
                self.deliver(0);
                continue;
            }
            if self.nodes.iter().all(|n| n.core.unsettled() == 0) {
                return;
            }
            self.advance(Duration::from_secs(1));
        }
        let held: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                n.core.held.jobs.iter().map(move |(id, j)| {
                    format!(
                        "n{i} {id}: {:?} moved to {:?} path {:?}",
                        j.status, j.moved_to, j.path
                    )
                })
            })
            .collect();
        let stuck: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                n.core.jobs.iter().map(move |(id, j)| {
                    format!(
                        "n{i} {id}: {:?} {:?} path {:?} in its executor: {}",
                        j.role,
                        j.stage,
                        j.path,
                        n.running.contains(id)
                    )
                })
            })
            .collect();
        panic!(
            "the cores did not settle; stuck {stuck:#?} in flight {:?}, parked {:?}; held {held:#?}; runs {:?}",
            self.flight, self.parked, self.runs
        );
    }

    /// Liveness, checked once everything was delivered: every job accepted by an entry node
    /// that did not restart settled exactly once, and every job that ran was accepted.
    fn check_settled(&self) {
        self.check_safety();
        for (job, entry) in &self.accepted {
            if self.restarted.contains(entry) {
                continue;
            }
            let ends = self.settled.get(job).map_or(0, Vec::len);
            assert_eq!(
                ends, 1,
                "job {job} accepted at n{entry} settled {ends} times"
            );
        }
        for job in self.runs.keys() {
            let entry = self.index(&self.entry_of[job]);
            if !self.restarted.contains(&entry) {
                assert!(
                    self.accepted.contains_key(job),
                    "job {job} ran, never accepted"
                );
            }
        }
    }
}

fn plain() -> Submission {
    Submission {
        runs_here: true,
        ..Submission::default()
    }
}

/// Node 0 full, so that its jobs go to a peer.
fn forwarding(n: usize, seed: u64) -> World {
    let mut w = World::new(n, Policy::Random, seed);
    w.nodes[0].room = false;
    w
}

fn only_offer(w: &World) -> (usize, RequestId) {
    match w.flight.as_slice() {
        [Flight::Request {
            to,
            request,
            message: Request::Offer(_),
            ..
        }] => (*to, *request),
        other => panic!("expected one offer in flight, got {other:?}"),
    }
}

fn keyed(key: &str, body: u8) -> Submission {
    Submission {
        key: Some(Keyed {
            key: key.into(),
            digest: BodyDigest([body; 32]),
        }),
        ..plain()
    }
}
