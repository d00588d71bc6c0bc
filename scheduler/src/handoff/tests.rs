//! The core driven by hand (unit tests) and by proptest over every order of deliveries,
//! losses, timeouts, verdicts and restarts (property tests).
//!
//! [`World`] is a minimal shell: a few cores, one load map that all of them read, a bag of
//! messages in flight that the test delivers, drops or fails in any order, and an executor
//! per node that is just the list of jobs it runs. It records every [`Action::Run`] and
//! [`Action::Settled`], which is what the properties are about.

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

#[test]
fn a_job_runs_here_when_there_is_room() {
    let mut w = World::new(1, Policy::P2c, 1);
    let t = w.submit(0, plain());
    let Some(Reply::Accepted {
        id: job,
        at,
        status,
    }) = w.reply(t).cloned()
    else {
        panic!("{:?}", w.reply(t));
    };
    assert_eq!((at, status), (id(0), JobStatus::Queued));
    assert_eq!(w.runs[&job], vec![0]);
    w.end(0, 0, JobStatus::Succeeded);
    assert_eq!(w.settled[&job], vec![JobStatus::Succeeded]);
    assert_eq!(w.nodes[0].core.unsettled(), 0);
}

#[test]
fn no_node_qualifying_is_nowhere_not_here() {
    // A full node alone: nowhere, saying why.
    let mut w = World::new(1, Policy::P2c, 1);
    w.nodes[0].room = false;
    let t = w.submit(0, plain());
    match w.reply(t) {
        Some(Reply::Refused(SubmitRefusal::Nowhere { refusals })) => {
            assert_eq!(refusals, &["n0 (this node): its queue is full".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    // A command no node declares: said so, and nothing runs.
    let t = w.submit(
        0,
        Submission {
            requires: 0b11,
            runs_here: false,
            command: Some("thumbnail".into()),
            ..Submission::default()
        },
    );
    assert_eq!(
        w.reply(t),
        Some(&Reply::Refused(SubmitRefusal::UnknownCommand(
            "thumbnail".into()
        )))
    );
    assert!(w.runs.is_empty() && w.flight.is_empty());
}

#[test]
fn a_refused_offer_is_placed_elsewhere_until_no_node_is_left() {
    let mut w = forwarding(3, 7);
    for i in 1..3 {
        w.nodes[i].room = false;
    }
    let t = w.submit(0, plain());
    // Both peers refuse in turn; then nowhere, with both reasons.
    w.deliver(0);
    w.deliver(0);
    w.deliver(0);
    w.deliver(0);
    match w.reply(t) {
        Some(Reply::Refused(SubmitRefusal::Nowhere { refusals })) => {
            assert_eq!(refusals.len(), 3, "{refusals:?}");
            assert!(
                refusals
                    .iter()
                    .any(|r| r.starts_with("n1: its queue is full")),
                "{refusals:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(w.runs.is_empty());
}

#[test]
fn a_lost_offer_answer_is_asked_after_and_the_job_followed_where_it_is() {
    let mut w = forwarding(2, 3);
    let t = w.submit(0, plain());
    let (to, _) = only_offer(&w);
    assert_eq!(to, 1);
    // The peer takes the job; its answer is lost.
    w.deliver(0);
    w.flight.clear();
    assert!(
        w.reply(t).is_none(),
        "not answered before the peer is heard"
    );
    w.advance(Duration::from_secs(5));
    // The ask: the peer holds it.
    assert!(matches!(
        &w.flight[..],
        [Flight::Request {
            message: Request::Ask { wait: false, .. },
            ..
        }]
    ));
    w.deliver(0);
    w.deliver(0);
    assert!(matches!(w.reply(t), Some(Reply::Accepted { at, .. }) if *at == id(1)));
    assert_eq!(w.nodes[0].core.stats().offers_unanswered, 1);
    w.quiesce();
    w.check_settled();
    assert_eq!(
        w.settled.values().next().unwrap(),
        &vec![JobStatus::Succeeded]
    );
}

#[test]
fn an_offer_that_arrives_after_the_ask_is_fenced_and_the_job_goes_elsewhere() {
    let mut w = forwarding(3, 11);
    let t = w.submit(0, plain());
    let (first, _) = only_offer(&w);
    // The offer is held up in the network; its time runs out; the ask overtakes it.
    w.advance(Duration::from_secs(5));
    let ask = w.flight.len() - 1;
    w.deliver(ask); // fenced there, answer in flight
    let answer = w.flight.len() - 1;
    w.deliver(answer); // placed on the other peer
    w.deliver(0); // the late offer: refused
    assert!(matches!(
        w.flight.last(),
        Some(Flight::Answer {
            answer: Answer::Offer(OfferAnswer::Refused(Refusal::Fenced)),
            ..
        })
    ));
    w.quiesce();
    w.check_settled();
    let Some(Reply::Accepted { at, .. }) = w.reply(t) else {
        panic!("{:?}", w.reply(t));
    };
    assert_ne!(w.index(at), first);
    assert_eq!(w.runs.values().next().unwrap(), &vec![w.index(at)]);
}

#[test]
fn when_no_ask_is_answered_the_job_is_followed_there_never_placed_again() {
    let mut w = forwarding(3, 5);
    let t = w.submit(0, plain());
    let (to, _) = only_offer(&w);
    w.flight.clear();
    // Three asks, each lost, then polls of 15 s each, lost too.
    for _ in 0..150 {
        w.advance(Duration::from_millis(500));
        w.flight.clear();
    }
    assert!(matches!(w.reply(t), Some(Reply::Accepted { at, .. }) if *at == id(to)));
    assert_eq!(w.nodes[0].core.stats().unconfirmed, 1);
    // Its polls unanswered too: lost, with the reason; it ran nowhere.
    let (job, ends) = w.settled.iter().next().expect("settled");
    assert_eq!(ends, &vec![JobStatus::Lost]);
    assert!(!w.runs.contains_key(job));
}

#[test]
fn a_followed_job_is_lost_when_its_node_dies_or_restarts() {
    for restart in [false, true] {
        let mut w = forwarding(2, 9);
        w.submit(0, plain());
        w.deliver(0);
        w.deliver(0); // accepted: now followed, a poll in flight
        if restart {
            w.restart(1, Policy::Random);
        } else {
            w.verdict(0, 1, Verdict::Dead);
        }
        let ends: Vec<_> = w.settled.values().flatten().copied().collect();
        assert_eq!(ends, vec![JobStatus::Lost], "restart: {restart}");
        w.quiesce();
        w.check_settled();
    }
}

#[test]
fn a_node_refuses_fenced_ids_earlier_incarnations_and_too_many_moves() {
    let now = Instant::now();
    let mut core = Handoff::new(HandoffConfig::new(id(1), 2));
    let offer = |job: u64, incarnation: u64, path: usize| Offer {
        id: JobId(job),
        entry: id(0),
        incarnation,
        kind: MoveKind::Forward,
        path: (0..path).map(id).collect(),
    };
    assert_eq!(core.handle_ask(now, JobId(1), 2), AskAnswer::Unknown);
    assert_eq!(
        core.handle_ask(now, JobId(9), 1),
        AskAnswer::Restarted,
        "asked after an earlier life"
    );
    assert_eq!(
        core.handle_offer(now, &offer(1, 2, 1), Ok(())),
        OfferAnswer::Refused(Refusal::Fenced)
    );
    assert_eq!(
        core.handle_offer(now, &offer(2, 1, 1), Ok(())),
        OfferAnswer::Refused(Refusal::WrongIncarnation)
    );
    assert_eq!(
        core.handle_offer(now, &offer(3, 2, 2), Ok(())),
        OfferAnswer::Refused(Refusal::TooManyMoves)
    );
    assert_eq!(
        core.handle_offer(now, &offer(4, 2, 1), Err(Refusal::Full)),
        OfferAnswer::Refused(Refusal::Full)
    );
    assert!(core.poll_action().is_none(), "nothing runs");
    assert_eq!(
        core.handle_offer(now, &offer(5, 2, 1), Ok(())),
        OfferAnswer::Accepted(JobStatus::Queued)
    );
    assert!(matches!(
        core.poll_action(),
        Some(Action::Run { id: JobId(5), .. })
    ));
    // The same offer again: the job as it stands, nothing new runs.
    core.handle_started(now, JobId(5));
    assert_eq!(
        core.handle_offer(now, &offer(5, 2, 1), Ok(())),
        OfferAnswer::Accepted(JobStatus::Running)
    );
    assert!(core.poll_action().is_none());
    assert_eq!(
        core.handle_ask(now, JobId(5), 2),
        AskAnswer::Held(JobStatus::Running)
    );
    core.leave();
    assert_eq!(
        core.handle_offer(now, &offer(6, 2, 1), Ok(())),
        OfferAnswer::Refused(Refusal::Leaving)
    );
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

#[test]
fn an_idempotency_key_names_one_job_and_refuses_another_body() {
    let mut w = World::new(1, Policy::P2c, 1);
    let first = w.submit(0, keyed("order-42", 1));
    let Some(Reply::Accepted { id: job, .. }) = w.reply(first).cloned() else {
        panic!();
    };
    let again = w.submit(0, keyed("order-42", 1));
    assert_eq!(w.reply(again), Some(&Reply::Replayed { id: job }));
    let other = w.submit(0, keyed("order-42", 2));
    assert_eq!(
        w.reply(other),
        Some(&Reply::Refused(SubmitRefusal::KeyReused {
            key: "order-42".into()
        }))
    );
    assert_eq!(w.runs.len(), 1, "one job ran");
    assert!(SubmitRefusal::KeyReused { key: "k".into() }
        .to_string()
        .contains("Idempotency-Key"));
}

#[test]
fn a_key_submitted_again_while_its_job_is_placed_gets_that_job_and_a_refusal_frees_it() {
    let mut w = forwarding(2, 4);
    let first = w.submit(0, keyed("k", 1));
    let second = w.submit(0, keyed("k", 1));
    assert!(
        w.reply(first).is_none() && w.reply(second).is_none(),
        "both wait for the peer"
    );
    w.deliver(0);
    w.deliver(0);
    let Some(Reply::Accepted { id: job, .. }) = w.reply(first).cloned() else {
        panic!();
    };
    assert_eq!(w.reply(second), Some(&Reply::Replayed { id: job }));
    // A key whose submission was refused is free again.
    w.nodes[1].room = false;
    let refused = w.submit(0, keyed("j", 1));
    w.deliver(w.flight.len() - 1);
    let last = w.flight.len() - 1;
    w.deliver(last);
    assert!(matches!(
        w.reply(refused),
        Some(Reply::Refused(SubmitRefusal::Nowhere { .. }))
    ));
    w.nodes[1].room = true;
    let retried = w.submit(0, keyed("j", 2));
    w.deliver(w.flight.len() - 1);
    let last = w.flight.len() - 1;
    w.deliver(last);
    assert!(matches!(w.reply(retried), Some(Reply::Accepted { .. })));
}

#[test]
fn an_idle_node_steals_the_newest_queued_job_and_its_entry_node_follows_it_there() {
    let mut w = World::new(2, Policy::Local, 2);
    for _ in 0..3 {
        w.submit(0, plain());
    }
    let newest = *w.nodes[0].running.last().unwrap();
    w.publish();
    w.idle(1);
    assert!(matches!(
        &w.flight[..],
        [Flight::Request {
            message: Request::Steal { .. },
            ..
        }]
    ));
    w.deliver(0); // n0 takes its newest queued job out, answers, and offers it
    assert_eq!(w.nodes[0].running.len(), 2, "out of n0's queue");
    w.deliver(0); // the answer "coming"
    w.deliver(0); // the offer: n1 takes it
    assert_eq!(w.runs[&newest], vec![0, 1]);
    assert_eq!(w.nodes[1].running, vec![newest]);
    w.quiesce();
    w.check_settled();
    assert_eq!(w.starts[&newest], vec![1], "it ran at n1 only");
    assert_eq!(w.settled[&newest], vec![JobStatus::Succeeded]);
    let stats = (w.nodes[0].core.stats(), w.nodes[1].core.stats());
    assert_eq!((stats.0.stolen_out, stats.1.steals_granted), (1, 1));
}

#[test]
fn a_steal_the_thief_refuses_puts_the_job_back_in_the_victims_queue() {
    let mut w = World::new(2, Policy::Local, 2);
    for _ in 0..2 {
        w.submit(0, plain());
    }
    let order = w.nodes[0].running.clone();
    w.publish();
    w.idle(1);
    w.nodes[1].room = false; // full by the time the offer comes
    w.deliver(0);
    w.deliver(0);
    w.deliver(0); // the offer: refused
    w.deliver(0); // its answer: back in n0's queue, at the end as before
    assert_eq!(w.nodes[0].running, order);
    assert!(!w.runs.values().any(|r| r.contains(&1)));
    w.quiesce();
    w.check_settled();
}

/// n0 shows three queued jobs in the map but has run them all since; n2 shows one and has it.
/// An idle n1 asks n0 (the longer queue of the two).
fn stale_victim(seed: u64) -> World {
    let mut w = World::new(3, Policy::Local, seed);
    for _ in 0..3 {
        w.submit(0, plain());
    }
    w.submit(2, plain());
    w.publish();
    while !w.nodes[0].running.is_empty() {
        w.end(0, 0, JobStatus::Succeeded);
    }
    w.idle(1);
    assert!(matches!(
        &w.flight[..],
        [Flight::Request {
            to: 0,
            message: Request::Steal { .. },
            ..
        }]
    ));
    w
}

fn steals_to(w: &World) -> Vec<usize> {
    w.flight
        .iter()
        .filter_map(|f| match f {
            Flight::Request {
                to,
                message: Request::Steal { .. },
                ..
            } => Some(*to),
            _ => None,
        })
        .collect()
}

#[test]
fn an_empty_answer_brings_the_victims_load_as_news_and_the_thief_asks_another_peer_at_once() {
    let mut w = stale_victim(3);
    w.deliver(0); // n0 has none: it answers empty, with its report
    assert!(matches!(
        &w.flight[..],
        [Flight::Answer {
            answer: Answer::Steal(StealAnswer::Empty { load: Some(r) }),
            ..
        }] if r.node == id(0) && r.load.queued == 0
    ));
    w.deliver(0);
    assert_eq!(w.news.len(), 1, "n1 merges n0's report");
    assert_eq!((w.news[0].0, w.news[0].1.node.clone()), (1, id(0)));
    assert_eq!(w.map.get(&id(0)).unwrap().report().load.queued, 0);
    assert_eq!(steals_to(&w), vec![2], "asked n2 at once");
    let stats = w.nodes[1].core.stats();
    assert_eq!(
        (
            stats.steals_asked,
            stats.steals_empty,
            stats.steals_again,
            stats.steal_news
        ),
        (2, 1, 1, 1)
    );
    w.deliver(0); // n2 gives its job
    w.deliver(0);
    w.deliver(0);
    assert_eq!(w.nodes[1].running.len(), 1);
    w.quiesce();
    w.check_settled();
}

#[test]
fn a_thief_asks_again_at_most_steal_retries_times_in_a_row_and_never_the_same_peer() {
    let mut w = stale_victim(4);
    // n2's job has run too: both answers are empty.
    w.end(2, 0, JobStatus::Succeeded);
    w.deliver(0);
    w.deliver(0);
    assert_eq!(steals_to(&w), vec![2]);
    w.deliver(0);
    w.deliver(0);
    assert!(
        w.flight.is_empty(),
        "one retry, then it waits: {:?}",
        w.flight
    );
    assert_eq!(w.nodes[1].core.stats().steals_asked, 2);
    // The next idle call is a new row: the map shows no queue anywhere now, so no ask.
    w.idle(1);
    assert!(w.flight.is_empty());
    assert_eq!(w.news.len(), 2);
}

#[test]
fn a_thief_that_got_work_meanwhile_does_not_ask_again() {
    let mut w = stale_victim(5);
    w.deliver(0);
    w.submit(1, plain()); // n1 is busy by the time the empty answer comes
    w.deliver(0);
    assert!(steals_to(&w).is_empty());
    assert_eq!(w.news.len(), 1, "the news is merged all the same");
}

#[test]
fn a_report_of_another_node_than_the_one_asked_is_not_taken_as_news() {
    let mut w = stale_victim(6);
    let Flight::Request { request, .. } = w.flight.remove(0) else {
        unreachable!("the steal");
    };
    let mut forged = report(2, 1, 99);
    forged.load.queued = 7;
    w.answer(
        1,
        request,
        Answer::Steal(StealAnswer::Empty {
            load: Some(Box::new(forged)),
        }),
    );
    assert!(w.news.is_empty());
    assert_eq!(w.nodes[1].core.stats().steal_news, 0);
}

// ---- properties ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Submit(usize),
    /// A submission to a node with one of a few keys and one of two bodies.
    Keyed(usize, u8, u8),
    Deliver(usize),
    Drop(usize),
    NotSent(usize),
    Advance(u64),
    End(usize, usize),
    Room(usize, bool),
    Idle(usize),
    Verdict(usize, usize, u8),
    Restart(usize),
}

const NODES: usize = 4;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..NODES).prop_map(Op::Submit),
        1 => (0..NODES, 0u8..3, 0u8..2).prop_map(|(n, k, b)| Op::Keyed(n, k, b)),
        6 => any::<usize>().prop_map(Op::Deliver),
        2 => any::<usize>().prop_map(Op::Drop),
        1 => any::<usize>().prop_map(Op::NotSent),
        2 => (1u64..3_000).prop_map(Op::Advance),
        2 => (0..NODES, any::<usize>()).prop_map(|(n, k)| Op::End(n, k)),
        1 => (0..NODES, any::<bool>()).prop_map(|(n, b)| Op::Room(n, b)),
        2 => (0..NODES).prop_map(Op::Idle),
        1 => (0..NODES, 0..NODES, 0u8..3).prop_map(|(o, s, v)| Op::Verdict(o, s, v)),
        1 => (0..NODES).prop_map(Op::Restart),
    ]
}

/// A keyed submission: its node, that node's incarnation, the key, the body, the ticket.
type KeyedSubmission = (usize, u64, u8, u8, Ticket);

fn run(ops: &[Op], policy: Policy, seed: u64) -> World {
    let mut w = World::new(NODES, policy, seed);
    let mut keys: Vec<KeyedSubmission> = Vec::new();
    for op in ops {
        match *op {
            Op::Submit(i) => {
                w.submit(i, plain());
            }
            Op::Keyed(i, key, body) => {
                let ticket = w.submit(i, keyed(&format!("key-{key}"), body));
                keys.push((i, w.nodes[i].incarnation, key, body, ticket));
            }
            Op::Deliver(k) if !w.flight.is_empty() => w.deliver(k % w.flight.len()),
            Op::Drop(k) if !w.flight.is_empty() => {
                w.flight.remove(k % w.flight.len());
            }
            Op::NotSent(k) if !w.flight.is_empty() => w.not_sent(k % w.flight.len()),
            Op::Advance(ms) => w.advance(Duration::from_millis(ms)),
            Op::End(i, k) => w.end(i, k, JobStatus::Succeeded),
            Op::Room(i, room) => w.nodes[i].room = room,
            Op::Idle(i) => w.idle(i),
            Op::Verdict(o, s, v) if o != s => {
                let verdict = [Verdict::Dead, Verdict::Left, Verdict::Alive][usize::from(v)];
                w.verdict(o, s, verdict);
            }
            Op::Restart(i) => w.restart(i, policy),
            _ => {}
        }
        w.publish();
        w.check_safety();
    }
    w.quiesce();
    check_keys(&w, &keys);
    w
}

/// Within one life of a node, a key names one job: every submission with it that was not
/// refused is answered with that job and came with its body; a submission refused as reused
/// came after one with the other body.
fn check_keys(w: &World, keys: &[KeyedSubmission]) {
    let mut named: HashMap<(usize, u64, u8), (u8, JobId)> = HashMap::new();
    for (k, &(node, incarnation, key, body, ticket)) in keys.iter().enumerate() {
        let Some(reply) = w.reply_at(node, incarnation, ticket) else {
            continue; // its node restarted before answering
        };
        let id = match reply {
            Reply::Accepted { id, .. } | Reply::Replayed { id } => *id,
            Reply::Refused(SubmitRefusal::KeyReused { .. }) => {
                // The key was bound to an earlier submission of the other body (which may
                // have been refused since, freeing the key).
                let earlier = keys[..k]
                    .iter()
                    .any(|&(n, i, kk, b, _)| (n, i, kk) == (node, incarnation, key) && b != body);
                assert!(
                    earlier,
                    "key-{key} refused as reused, never used with another body"
                );
                continue;
            }
            Reply::Refused(_) => continue,
        };
        match named.get(&(node, incarnation, key)) {
            Some(&(b, first)) => {
                assert_eq!(b, body, "key-{key}: another body got a job");
                assert_eq!(first, id, "key-{key} named two jobs");
            }
            None => {
                named.insert((node, incarnation, key), (body, id));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whatever order answers, losses, timeouts, verdicts and restarts come in, no job is ever
    /// put in two executors, and once everything is delivered every job accepted reaches
    /// exactly one terminal state at its entry node; an idempotency key names one job.
    #[test]
    fn no_job_runs_twice_and_every_accepted_job_ends_once(
        ops in proptest::collection::vec(op(), 1..120),
        seed in any::<u64>(),
        random in any::<bool>(),
    ) {
        let policy = if random { Policy::Random } else { Policy::P2c };
        let w = run(&ops, policy, seed);
        w.check_settled();
        prop_assert!(w.t0 <= w.now);
    }
}
