//! The placement policies under seeded randomness.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hearsay_scheduler::{Placement, PlacementRequest, Placer, PlacerConfig, Policy, Target};
use hearsay_shared::{DetectorConfig, LoadMap, LoadReport, LoadVector, NodeId, NodeState, Verdict};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn id(i: usize) -> NodeId {
    NodeId::new(format!("n{i:02}")).unwrap()
}

fn report(i: usize, seq: u64, queued: u32, state: NodeState) -> LoadReport {
    LoadReport {
        node: id(i),
        incarnation: 1,
        seq,
        load: LoadVector {
            cpu_permille: 0,
            cpu_capacity_millicores: 0,
            queued,
            running: 0,
            slots: 1,
            state,
            commands: 0,
            ended: Default::default(),
            sojourn: Default::default(),
            cpu_outside_permille: 0,
        },
        api: format!("127.0.0.{}:8080", i + 1).parse().unwrap(),
        gossip: format!("127.0.0.{}:7946", i + 1).parse().unwrap(),
    }
}

/// A map of `n` alive nodes with the given queue lengths, all reported at `now`.
fn map_with(queues: &[u32], now: Instant) -> LoadMap {
    let cfg = DetectorConfig::default();
    let mut map = LoadMap::new();
    for (i, &q) in queues.iter().enumerate() {
        map.merge_report(report(i, 1, q, NodeState::Alive), now, &cfg);
    }
    map
}

fn own(queued: u32) -> LoadVector {
    LoadVector {
        queued,
        ..LoadVector::idle(1)
    }
}

fn placer(policy: Policy) -> Placer {
    Placer::new(PlacerConfig {
        policy,
        ..PlacerConfig::default()
    })
}

fn target(p: &Placement, me: usize) -> NodeId {
    match p {
        Placement::Local => id(me),
        Placement::Forward { node, .. } => node.clone(),
    }
}

#[test]
fn no_policy_ever_chooses_a_suspect_dead_left_or_leaving_node() {
    let cfg = DetectorConfig::default();
    let t0 = Instant::now();
    let mut map = LoadMap::new();
    // n00 is this node; n01..n03 alive; n04 will go dead, n05 suspect, n06 left, n07 leaving
    // by its own word (the same thing seen from here).
    for i in 0..8 {
        map.merge_report(report(i, 1, 0, NodeState::Alive), t0, &cfg);
    }
    map.merge_report(report(6, 2, 0, NodeState::Leaving), t0, &cfg);
    // Keep n00..n03 and n05 fresh while n04 falls silent until it is dead; then let n05 fall
    // silent too, in small steps, until it is suspect (and not yet dead).
    let v = |map: &LoadMap, i| map.get(&id(i)).unwrap().verdict();
    let mut t = t0;
    let mut seq = 2;
    while v(&map, 4) != Verdict::Dead {
        t += Duration::from_millis(100);
        seq += 1;
        for i in [0, 1, 2, 3, 5] {
            map.merge_report(report(i, seq, 0, NodeState::Alive), t, &cfg);
        }
        map.judge(t, &cfg, &id(0));
        assert!(t < t0 + Duration::from_secs(60), "n04 never died");
    }
    while v(&map, 5) != Verdict::Suspect {
        t += Duration::from_millis(10);
        seq += 1;
        for i in [0, 1, 2, 3] {
            map.merge_report(report(i, seq, 0, NodeState::Alive), t, &cfg);
        }
        map.judge(t, &cfg, &id(0));
        assert!(
            t < t0 + Duration::from_secs(120),
            "n05 never became suspect"
        );
    }
    assert_eq!(map.get(&id(4)).unwrap().verdict(), Verdict::Dead);
    assert_eq!(map.get(&id(5)).unwrap().verdict(), Verdict::Suspect);
    assert_eq!(map.get(&id(6)).unwrap().verdict(), Verdict::Left);
    // n07 is alive to the detector but its report says... make it leaving.
    map.merge_report(report(7, 99, 0, NodeState::Leaving), t, &cfg);

    let mut rng = StdRng::seed_from_u64(7);
    for policy in Policy::ALL {
        let mut placer = placer(policy);
        for _ in 0..2000 {
            // This node looks full so that every policy is tempted to forward.
            let req = PlacementRequest {
                map: &map,
                me: &id(0),
                own: own(50),
                now: t,
                hops: 0,
                exclude: &[],
                requires: 0,
            };
            let chosen = target(&placer.place(&req, &mut rng), 0);
            assert!(
                [id(0), id(1), id(2), id(3)].contains(&chosen),
                "{policy} chose {chosen}"
            );
        }
    }
}

#[test]
fn a_forwarded_job_is_never_forwarded_again() {
    let now = Instant::now();
    let map = map_with(&[0, 0, 0, 0], now);
    let mut rng = StdRng::seed_from_u64(1);
    for policy in Policy::ALL {
        let mut placer = placer(policy);
        for _ in 0..200 {
            let req = PlacementRequest {
                map: &map,
                me: &id(0),
                own: own(100),
                now,
                hops: 1,
                exclude: &[],
                requires: 0,
            };
            assert_eq!(placer.place(&req, &mut rng), Placement::Local, "{policy}");
        }
    }
}

#[test]
fn only_nodes_offering_the_required_command_are_chosen() {
    use hearsay_shared::offers::{command_bits, command_set};
    let cfg = DetectorConfig::default();
    let now = Instant::now();
    let mut map = LoadMap::new();
    // n00 is this node; n02 and n04 offer `convert` (n04 among others), the rest offer other
    // commands or none. Every peer is idle, this node busy, so every policy wants to forward.
    let offers = [
        command_set([]),
        command_set(["wc"]),
        command_set(["convert"]),
        0,
        command_set(["wc", "convert", "date"]),
        command_set(["date"]),
    ];
    for (i, &commands) in offers.iter().enumerate() {
        let mut r = report(i, 1, 0, NodeState::Alive);
        r.load.commands = commands;
        map.merge_report(r, now, &cfg);
    }
    let wanted = command_bits("convert");
    assert_ne!(
        offers[1] & wanted,
        wanted,
        "the test's sets hold no false positive"
    );
    assert_ne!(
        offers[5] & wanted,
        wanted,
        "the test's sets hold no false positive"
    );
    let mut rng = StdRng::seed_from_u64(11);
    for policy in Policy::ALL.into_iter().filter(|p| *p != Policy::Local) {
        let mut placer = placer(policy);
        let mut seen = HashMap::new();
        for _ in 0..500 {
            let req = PlacementRequest {
                map: &map,
                me: &id(0),
                own: own(50),
                now,
                hops: 0,
                exclude: &[],
                requires: wanted,
            };
            let chosen = target(&placer.place(&req, &mut rng), 0);
            *seen.entry(chosen).or_insert(0) += 1;
        }
        let mut chosen: Vec<_> = seen.keys().cloned().collect();
        chosen.sort();
        assert_eq!(chosen, [id(2), id(4)], "{policy}: {seen:?}");
    }

    // This node qualifies only when its own set holds the command; an unmet requirement leaves
    // no candidate, and the answer is Local (the caller knows this node cannot run it).
    let mut placer = placer(Policy::P2c);
    let own_offering = LoadVector {
        commands: wanted,
        ..own(0)
    };
    let req = PlacementRequest {
        map: &map,
        me: &id(0),
        own: own_offering,
        now,
        hops: 0,
        exclude: &[id(2), id(4)],
        requires: wanted,
    };
    assert_eq!(placer.place(&req, &mut rng), Placement::Local);
    let nowhere = PlacementRequest {
        own: own(0),
        requires: command_bits("nowhere-declared") | wanted,
        exclude: &[],
        ..req
    };
    assert_eq!(placer.place(&nowhere, &mut rng), Placement::Local);
    // With no requirement every idle peer is a candidate again.
    let mut anyone = HashMap::new();
    for _ in 0..500 {
        let req = PlacementRequest {
            requires: 0,
            own: own(50),
            exclude: &[],
            ..req
        };
        *anyone
            .entry(target(&placer.place(&req, &mut rng), 0))
            .or_insert(0) += 1;
    }
    assert!(anyone.len() >= 5, "{anyone:?}");
}

#[test]
fn excluded_peers_are_not_chosen() {
    let now = Instant::now();
    let map = map_with(&[9, 0, 0, 9], now);
    let exclude = [id(1), id(2)];
    let mut rng = StdRng::seed_from_u64(3);
    for policy in Policy::ALL {
        let mut placer = placer(policy);
        for _ in 0..500 {
            let req = PlacementRequest {
                map: &map,
                me: &id(0),
                own: own(9),
                now,
                hops: 0,
                exclude: &exclude,
                requires: 0,
            };
            let chosen = target(&placer.place(&req, &mut rng), 0);
            assert!(
                !exclude.contains(&chosen),
                "{policy} chose excluded {chosen}"
            );
        }
    }
}

/// One entry node places a burst of 8,000 jobs over 8 idle nodes whose reports do not change
/// meanwhile: its own queue grows exactly, and the ledger counts what it forwarded. p2c, random
/// and round-robin each give every node close to 1,000 (within 15%).
#[test]
fn a_burst_from_one_entry_node_spreads_near_uniformly() {
    let now = Instant::now();
    let map = map_with(&[0; 8], now);
    for policy in [
        Policy::P2c,
        Policy::Random,
        Policy::RoundRobin,
        Policy::LeastLoaded,
    ] {
        let mut rng = StdRng::seed_from_u64(11);
        let mut placer = placer(policy);
        let mut counts: HashMap<NodeId, u32> = HashMap::new();
        for _ in 0..8000 {
            let mine = counts.get(&id(0)).copied().unwrap_or(0);
            let req = PlacementRequest {
                map: &map,
                me: &id(0),
                own: own(mine),
                now,
                hops: 0,
                exclude: &[],
                requires: 0,
            };
            *counts
                .entry(target(&placer.place(&req, &mut rng), 0))
                .or_default() += 1;
        }
        for i in 0..8 {
            let c = counts.get(&id(i)).copied().unwrap_or(0);
            assert!(
                (850..=1150).contains(&c),
                "{policy}: node {i} got {c} of 8000"
            );
        }
    }
}

/// The herd effect: 20 entry nodes act on the same stale map, in which n19 looks idle and the
/// others have two jobs queued. Always-least-loaded sends n19 a share from every entry node;
/// the power of two choices sends it far fewer.
#[test]
fn least_loaded_herds_on_a_stale_map_while_p2c_spreads() {
    let now = Instant::now();
    let mut queues = [2u32; 20];
    queues[19] = 0;
    let map = map_with(&queues, now);
    let stale = now + Duration::from_millis(400);
    let mut received = HashMap::new();
    for policy in [Policy::LeastLoaded, Policy::P2c] {
        let mut rng = StdRng::seed_from_u64(5);
        let mut to_n19 = 0;
        for entry in 0..19 {
            let mut placer = placer(policy);
            let mut mine = 2;
            for _ in 0..5 {
                let req = PlacementRequest {
                    map: &map,
                    me: &id(entry),
                    own: own(mine),
                    now: stale,
                    hops: 0,
                    exclude: &[],
                    requires: 0,
                };
                match target(&placer.place(&req, &mut rng), entry) {
                    n if n == id(19) => to_n19 += 1,
                    n if n == id(entry) => mine += 1,
                    _ => {}
                }
            }
        }
        received.insert(policy, to_n19);
    }
    let herd = received[&Policy::LeastLoaded];
    let p2c = received[&Policy::P2c];
    assert!(herd >= 38, "least-loaded sent n19 only {herd} jobs");
    assert!(
        p2c * 2 < herd,
        "p2c sent n19 {p2c} jobs, least-loaded {herd}"
    );
}

#[test]
fn p2c_prefers_the_less_loaded_and_breaks_ties_locally() {
    let now = Instant::now();
    // Two nodes: p2c always compares both. The peer is idle, this node is not: forward.
    let map = map_with(&[3, 0], now);
    let mut rng = StdRng::seed_from_u64(2);
    let mut p = placer(Policy::P2c);
    let me = id(0);
    let req = |own_q| PlacementRequest {
        map: &map,
        me: &me,
        own: own(own_q),
        now,
        hops: 0,
        exclude: &[],
        requires: 0,
    };
    assert_eq!(target(&p.place(&req(3), &mut rng), 0), id(1));
    // Equal load (the peer's idle report plus the one job just forwarded to it): stay here.
    let mut p = placer(Policy::P2c);
    assert_eq!(target(&p.place(&req(0), &mut rng), 0), id(0));
}

#[test]
fn the_same_seed_gives_the_same_decisions() {
    let now = Instant::now();
    let map = map_with(&[1, 0, 2, 0, 1, 3, 0, 1], now);
    let run = || {
        let mut rng = StdRng::seed_from_u64(42);
        let mut placer = placer(Policy::P2c);
        (0..500)
            .map(|i| {
                let req = PlacementRequest {
                    map: &map,
                    me: &id(0),
                    own: own(i % 4),
                    now,
                    hops: 0,
                    exclude: &[],
                    requires: 0,
                };
                target(&placer.place(&req, &mut rng), 0)
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn choose_says_nowhere_when_this_node_may_not_take_the_job_and_no_peer_qualifies() {
    let now = Instant::now();
    let map = map_with(&[0, 0, 0], now);
    let me = id(0);
    let peers = [id(1), id(2)];
    let req = |exclude| PlacementRequest {
        map: &map,
        me: &me,
        own: own(0),
        now,
        hops: 0,
        exclude,
        requires: 0,
    };
    let mut rng = StdRng::seed_from_u64(3);
    for policy in Policy::ALL {
        let mut placer = placer(policy);
        // Every peer excluded: here if this node may take the job, otherwise nowhere — where
        // `place` says Local for both.
        assert_eq!(
            placer.choose(&req(&peers), true, &mut rng),
            Target::Here,
            "{policy}"
        );
        assert_eq!(
            placer.choose(&req(&peers), false, &mut rng),
            Target::Nowhere,
            "{policy}"
        );
        assert_eq!(
            placer.place(&req(&peers), &mut rng),
            Placement::Local,
            "{policy}"
        );
        // This node may not take it: a peer, never here (local never forwards: nowhere).
        let target = placer.choose(&req(&[]), false, &mut rng);
        match policy {
            Policy::Local => assert_eq!(target, Target::Nowhere),
            _ => assert!(
                matches!(target, Target::Peer { .. }),
                "{policy}: {target:?}"
            ),
        }
    }
}
