//! The gossip core's unit tests: seeds, reports handed over directly, plausible versions,
//! forgeries and their refutation.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::*;
use crate::map::News;
use crate::wire::DigestEntry;

/// A wall-clock time in ms, as a real incarnation is.
const WALL: u64 = 1_790_000_000_000;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
}

fn id(i: usize) -> NodeId {
    NodeId::new(format!("n{i}")).unwrap()
}

/// Node `i`, started at `now` with the wall clock at `wall` (its incarnation).
fn core(i: usize, wall: u64, seeds: Vec<SocketAddr>, now: Instant) -> Gossip {
    let config = GossipConfig::new(id(i), addr(i), addr(i));
    Gossip::new(config, wall, LoadVector::idle(2), seeds, now).unwrap()
}

#[test]
fn seeds_can_be_replaced_and_a_lonely_node_pushes_to_the_new_ones() {
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(3);
    let mut a = core(0, WALL, vec![addr(1)], now);
    assert_eq!(a.seeds(), [addr(1)]);
    assert!(!a.has_live_peer());
    // Its own address and repeats are left out.
    a.set_seeds([addr(0), addr(2), addr(3), addr(2)]);
    assert_eq!(a.seeds(), [addr(2), addr(3)]);
    a.handle_tick(now, &mut rng);
    let sent: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
    let to: Vec<SocketAddr> = sent.iter().map(|t| t.to).collect();
    assert!(to.contains(&addr(2)) && to.contains(&addr(3)), "{to:?}");
    assert!(!to.contains(&addr(1)), "the old seed is gone: {to:?}");
    // Once a seed hears it and answers, the node has a live peer.
    let mut b = core(2, WALL, vec![], now);
    for t in sent.iter().filter(|t| t.to == addr(2)) {
        b.handle_datagram(now, addr(0), &t.bytes).unwrap();
    }
    b.handle_tick(now, &mut rng);
    for t in std::iter::from_fn(|| b.poll_transmit()).filter(|t| t.to == addr(0)) {
        a.handle_datagram(now, addr(2), &t.bytes).unwrap();
    }
    assert!(a.has_live_peer());
}

#[test]
fn a_report_made_now_and_handed_over_directly_is_taken_as_news_once() {
    let now = Instant::now();
    let mut a = core(0, WALL, vec![], now);
    let mut b = core(1, WALL, vec![], now);
    let before = a.own_report().version();
    a.set_load(LoadVector {
        queued: 5,
        ..LoadVector::idle(2)
    });
    let report = a.report_now(now);
    assert!(report.version() > before, "a new version at once");
    assert_eq!(report.load.queued, 5);
    assert_eq!(a.map().get(&id(0)).unwrap().report(), &report);
    assert!(b.handle_report(now, report.clone()));
    let entry = b.map().get(&id(0)).unwrap();
    assert_eq!(entry.report(), &report);
    assert_eq!(entry.verdict(), Verdict::Alive);
    assert!(entry.news <= News::Load, "relayed as news");
    assert_eq!(entry.transmits, 0);
    // The same report again, or an older one, changes nothing.
    assert!(!b.handle_report(now, report.clone()));
    let older = LoadReport {
        seq: before.seq,
        ..report.clone()
    };
    assert!(!b.handle_report(now, older));
    assert_eq!(b.map().get(&id(0)).unwrap().report(), &report);
    // An implausible one is refused and counted, as from gossip.
    let forged = LoadReport {
        seq: u64::MAX,
        ..report.clone()
    };
    assert!(!b.handle_report(now, forged));
    assert_eq!(b.stats().implausible_reports, 1);
    // One of b itself, newer than its own, is refuted.
    let own = LoadReport {
        seq: b.own_report().seq + 1,
        ..b.own_report()
    };
    assert!(!b.handle_report(now, own));
    assert_eq!(b.stats().refutations, 1);
}

#[test]
fn reports_made_now_stop_at_the_plausible_rate_of_versions() {
    let now = Instant::now();
    let mut a = core(0, WALL, vec![], now);
    let mut last = a.own_report().version();
    for _ in 0..MAX_AHEAD_MS + 10 {
        last = a.report_now(now).version();
    }
    assert!(is_plausible(last, a.wall_ms(now)));
    assert_eq!(
        last.seq, MAX_AHEAD_MS,
        "one a millisecond, and the allowance"
    );
    assert_eq!(a.report_now(now).version(), last);
}

fn forged(i: usize, incarnation: u64, seq: u64, state: NodeState) -> Vec<u8> {
    let report = LoadReport {
        node: id(i),
        incarnation,
        seq,
        load: LoadVector {
            state,
            ..LoadVector::idle(2)
        },
        api: addr(i),
        gossip: addr(i),
    };
    wire::encode_push(&report, [], wire::DEFAULT_BUDGET)
        .unwrap()
        .0
}

/// Cores that hear each other at once, driven in steps of 10 ms.
struct Net {
    cores: Vec<Gossip>,
    now: Instant,
    rng: StdRng,
}

impl Net {
    fn new(n: usize, wall: u64) -> Self {
        let now = Instant::now();
        let cores = (0..n).map(|i| core(i, wall, vec![addr(0)], now)).collect();
        Net {
            cores,
            now,
            rng: StdRng::seed_from_u64(7),
        }
    }

    /// Hands `bytes` to core `to` as if a rogue at `from` had sent them, and delivers what
    /// follows.
    fn inject(&mut self, to: usize, bytes: &[u8]) {
        let rogue = SocketAddr::from(([127, 0, 0, 9], 9));
        let _ = self.cores[to].handle_datagram(self.now, rogue, bytes);
        self.deliver();
    }

    fn deliver(&mut self) {
        loop {
            let mut sent = Vec::new();
            for core in &mut self.cores {
                let from = core.config().gossip;
                sent.extend(std::iter::from_fn(|| core.poll_transmit()).map(|t| (from, t)));
            }
            if sent.is_empty() {
                return;
            }
            for (from, t) in sent {
                if let Some(core) = self.cores.iter_mut().find(|c| c.config().gossip == t.to) {
                    core.handle_datagram(self.now, from, &t.bytes).unwrap();
                }
            }
        }
    }

    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now += Duration::from_millis(10);
            for core in &mut self.cores {
                core.handle_tick(self.now, &mut self.rng);
            }
            self.deliver();
        }
    }

    /// Whether every other core holds node `i` alive, taking work, at a version newer
    /// than `than`.
    fn all_hold_alive(&self, i: usize, than: Version) -> bool {
        self.cores
            .iter()
            .enumerate()
            .filter(|(o, _)| *o != i)
            .all(|(_, c)| {
                c.map()
                    .get(&id(i))
                    .is_some_and(|e| e.takes_work() && e.report().version() > than)
            })
    }
}

#[test]
fn plausibility_allows_the_clock_skew_and_one_sample_a_millisecond() {
    let v = |incarnation, seq| Version { incarnation, seq };
    assert!(is_plausible(v(WALL, 0), WALL));
    assert!(is_plausible(v(WALL + MAX_AHEAD_MS, 0), WALL));
    assert!(!is_plausible(v(WALL + MAX_AHEAD_MS + 1, 0), WALL));
    // Started a second ago: a thousand samples and the allowance, no more.
    assert!(is_plausible(v(WALL - 1000, 1000 + MAX_AHEAD_MS), WALL));
    assert!(!is_plausible(v(WALL - 1000, 1001 + MAX_AHEAD_MS), WALL));
    assert!(!is_plausible(v(u64::MAX, u64::MAX), WALL));
    assert!(!is_plausible(v(0, u64::MAX), WALL));
    // At the end of time nothing wraps: the horizon stops at u64::MAX.
    assert!(is_plausible(v(u64::MAX, 0), u64::MAX));
    assert!(!is_plausible(v(u64::MAX, 1), u64::MAX));
}

#[test]
fn a_report_at_the_top_of_u64_is_refused_and_counted_whoever_it_names() {
    let t0 = Instant::now();
    let mut me = core(0, WALL, vec![], t0);
    // A peer, heard honestly, then forged at the top of u64.
    me.handle_datagram(t0, addr(3), &forged(3, WALL, 5, NodeState::Alive))
        .unwrap();
    let t1 = t0 + Duration::from_millis(100);
    me.handle_datagram(
        t1,
        addr(9),
        &forged(3, u64::MAX, u64::MAX, NodeState::Alive),
    )
    .unwrap();
    let entry = me.map().get(&id(3)).unwrap();
    assert_eq!(
        entry.report().version(),
        Version {
            incarnation: WALL,
            seq: 5
        }
    );
    assert!(entry.takes_work());
    // This node itself: refused too, not refuted (a refutation could not be believed).
    me.handle_datagram(
        t1,
        addr(9),
        &forged(0, u64::MAX, u64::MAX, NodeState::Leaving),
    )
    .unwrap();
    assert_eq!(me.incarnation(), WALL);
    assert_eq!(me.stats().refutations, 0);
    assert_eq!(me.stats().implausible_reports, 2);
    // The same in a digest: its sender and its entries.
    let sender = LoadReport {
        node: id(4),
        incarnation: u64::MAX,
        seq: 0,
        load: LoadVector::idle(1),
        api: addr(4),
        gossip: addr(4),
    };
    let entries = [DigestEntry {
        node: id(3),
        version: Version {
            incarnation: WALL,
            seq: u64::MAX,
        },
    }];
    let (bytes, _) = wire::encode_digest(&sender, false, entries, 1400).unwrap();
    me.handle_datagram(t1, addr(4), &bytes).unwrap();
    assert_eq!(me.stats().implausible_reports, 4);
    assert!(me.map().get(&id(4)).is_none());
    // Left out of the digest, the entry counts as unlisted: this node's report of n3 is
    // pushed back, and nothing is asked for.
    let answers: Vec<Message> = std::iter::from_fn(|| me.poll_transmit())
        .map(|t| wire::decode(&t.bytes).unwrap())
        .collect();
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        matches!(&answers[0], Message::Push { reports } if reports.0.iter().any(|r| r.node == id(3))),
        "{answers:?}"
    );
}

#[test]
fn a_refutation_at_the_top_of_u64_saturates_and_never_wraps() {
    let t0 = Instant::now();
    let start = u64::MAX - 1000;
    let mut me = core(0, start, vec![], t0);
    let mut rng = StdRng::seed_from_u64(1);
    let forgery = forged(0, u64::MAX, 0, NodeState::Leaving);
    me.handle_datagram(t0, addr(9), &forgery).unwrap();
    assert_eq!(me.stats().refutations, 1);
    assert_eq!(me.incarnation(), u64::MAX, "wrapped");
    assert!(
        me.own_report().version()
            > Version {
                incarnation: u64::MAX,
                seq: 0
            }
    );
    assert!(!me.is_leaving());
    // And the samples that follow saturate as well.
    for round in 1..=3 {
        me.handle_tick(t0 + me.config().interval * round, &mut rng);
    }
    assert_eq!(me.incarnation(), u64::MAX);
    assert!(me.own_report().seq >= 1);
    assert_eq!(me.wall_ms(t0 + Duration::from_secs(2000)), u64::MAX);
}

#[test]
fn word_of_a_leave_goes_to_the_leaver_at_its_known_address_only() {
    let t0 = Instant::now();
    let mut me = core(0, WALL, vec![], t0);
    me.handle_datagram(t0, addr(3), &forged(3, WALL, 5, NodeState::Alive))
        .unwrap();
    assert!(me.poll_transmit().is_none());
    // A forged leave of node 3 that names another address, and one of a node never seen.
    let mut leave = LoadReport {
        node: id(3),
        incarnation: WALL,
        seq: 6,
        load: LoadVector {
            state: NodeState::Leaving,
            ..LoadVector::idle(2)
        },
        api: addr(8),
        gossip: addr(8),
    };
    let ghost = LoadReport {
        node: id(7),
        ..leave.clone()
    };
    let (bytes, _) = wire::encode_push(&leave, [&ghost], 1400).unwrap();
    me.handle_datagram(t0, addr(9), &bytes).unwrap();
    let sent: Vec<Transmit> = std::iter::from_fn(|| me.poll_transmit()).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].to, addr(3));
    let Ok(Message::Push { reports }) = wire::decode(&sent[0].bytes) else {
        panic!("not a push");
    };
    assert!(reports.0.contains(&leave), "{reports:?}");
    // Heard again, or newer while still leaving: no change of verdict, nothing sent.
    leave.seq = 7;
    let (bytes, _) = wire::encode_push(&leave, [], 1400).unwrap();
    me.handle_datagram(t0, addr(9), &bytes).unwrap();
    assert!(me.poll_transmit().is_none());
}

#[test]
fn a_plausible_forgery_of_a_node_is_refuted_and_the_refutation_supersedes_it_everywhere() {
    let mut net = Net::new(4, WALL);
    net.run(Duration::from_secs(10));
    assert!(net.all_hold_alive(
        3,
        Version {
            incarnation: 0,
            seq: 0
        }
    ));
    let life = net.cores[3].incarnation();
    // A rogue tells node 1 that node 3 is leaving, at node 3's own incarnation with as
    // many samples as 1 can believe: what a member holding the key could forge.
    let wall = net.cores[1].wall_ms(net.now);
    let seq = wall + MAX_AHEAD_MS - life;
    net.inject(1, &forged(3, life, seq, NodeState::Leaving));
    let forgery = Version {
        incarnation: life,
        seq,
    };
    assert_eq!(
        net.cores[1].map().get(&id(3)).unwrap().verdict(),
        Verdict::Left,
        "a plausible report is taken"
    );
    let mut rounds = 0;
    while !net.all_hold_alive(3, forgery) {
        assert!(rounds < 10, "not refuted everywhere within 10 rounds");
        net.run(Duration::from_millis(200));
        rounds += 1;
    }
    let core3 = &net.cores[3];
    assert_eq!(core3.stats().refutations, 1);
    // The new life starts at the wall clock, not just above the forgery's incarnation.
    assert!(
        core3.incarnation() >= WALL + 10_000,
        "{}",
        core3.incarnation()
    );
    assert!(!core3.is_leaving());
    for core in &net.cores {
        assert_eq!(core.stats().implausible_reports, 0);
        assert_eq!(core.stats().deaths, 0);
    }
}
