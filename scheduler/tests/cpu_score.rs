//! The `cpu` load score against the `slots` one, under seeded randomness.

use std::time::{Duration, Instant};

use hearsay_scheduler::{LoadScore, Placement, PlacementRequest, Placer, PlacerConfig, Policy};
use hearsay_shared::{DetectorConfig, LoadMap, LoadReport, LoadVector, NodeId, NodeState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn id(i: usize) -> NodeId {
    NodeId::new(format!("n{i:02}")).unwrap()
}

fn load(queued: u32, running: u32, cpu_permille: u16, capacity: u32) -> LoadVector {
    LoadVector {
        cpu_permille,
        cpu_capacity_millicores: capacity,
        queued,
        running,
        slots: 2,
        state: NodeState::Alive,
        commands: 0,
        ended: Default::default(),
        sojourn: Default::default(),
        cpu_outside_permille: 0,
    }
}

fn map_of(loads: &[LoadVector], seq: u64, now: Instant) -> LoadMap {
    let cfg = DetectorConfig::default();
    let mut map = LoadMap::new();
    for (i, l) in loads.iter().enumerate() {
        let report = LoadReport {
            node: id(i),
            incarnation: 1,
            seq,
            load: *l,
            api: format!("127.0.0.{}:8080", i + 1).parse().unwrap(),
            gossip: format!("127.0.0.{}:7946", i + 1).parse().unwrap(),
        };
        map.merge_report(report, now, &cfg);
    }
    map
}

fn placer(policy: Policy, load_score: LoadScore) -> Placer {
    Placer::new(PlacerConfig {
        policy,
        load_score,
        ..PlacerConfig::default()
    })
}

fn target(p: &Placement) -> NodeId {
    match p {
        Placement::Local => id(0),
        Placement::Forward { node, .. } => node.clone(),
    }
}

/// `sleep` jobs on equal machines whose CPU is not saturated: every policy makes the same
/// choice, decision after decision, whichever score it uses (same seed, same loads, aged
/// reports included).
#[test]
fn sleep_jobs_on_equal_machines_are_placed_as_by_the_slot_score() {
    let t0 = Instant::now();
    for policy in Policy::ALL {
        let mut slots = placer(policy, LoadScore::Slots);
        let mut cpu = placer(policy, LoadScore::Cpu);
        let (mut rng_s, mut rng_c) = (StdRng::seed_from_u64(17), StdRng::seed_from_u64(17));
        let mut loads_rng = StdRng::seed_from_u64(4);
        for step in 0..500u64 {
            let loads: Vec<LoadVector> = (0..6)
                .map(|_| {
                    load(
                        loads_rng.random_range(0..4),
                        loads_rng.random_range(0..3),
                        loads_rng.random_range(0..900),
                        2000,
                    )
                })
                .collect();
            let map = map_of(&loads, step + 1, t0);
            let now = t0 + Duration::from_millis(loads_rng.random_range(0..1500));
            let req = PlacementRequest {
                map: &map,
                me: &id(0),
                own: loads[0],
                now,
                hops: 0,
                exclude: &[],
                requires: 0,
            };
            let a = slots.place(&req, &mut rng_s);
            let b = cpu.place(&req, &mut rng_c);
            assert_eq!(target(&a), target(&b), "{policy} at step {step}");
        }
    }
}

/// How often, in 200 placements from node 0 with a fresh ledger each time (so that every
/// choice is the one from these reports), `score` sends the job to node 1.
fn times_node_1_is_chosen(loads: &[LoadVector], score: LoadScore, seed: u64) -> usize {
    let t0 = Instant::now();
    let map = map_of(loads, 1, t0);
    let req = PlacementRequest {
        map: &map,
        me: &id(0),
        own: loads[0],
        now: t0,
        hops: 0,
        exclude: &[],
        requires: 0,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    (0..200)
        .filter(|_| {
            let mut p = placer(Policy::LeastLoaded, score);
            target(&p.place(&req, &mut rng)) == id(1)
        })
        .count()
}

/// Two idle peers with the same slots, one sharing its half CPU with a busy loop: the slot
/// score cannot tell them apart, the CPU score never chooses the saturated one.
#[test]
fn the_cpu_score_avoids_a_saturated_idle_peer() {
    let hogged = LoadVector {
        cpu_outside_permille: 1000,
        ..load(0, 0, 1000, 500)
    };
    let loads = [load(3, 2, 100, 500), hogged, load(0, 0, 50, 500)];
    let slots = times_node_1_is_chosen(&loads, LoadScore::Slots, 3);
    assert!(slots > 50, "{slots}");
    assert_eq!(times_node_1_is_chosen(&loads, LoadScore::Cpu, 3), 0);
}

/// Two peers with one spin each on half a CPU, one of them beside a busy loop that takes half
/// of it: the slot score cannot tell them apart, the CPU score always sends the job to the other.
#[test]
fn the_cpu_score_avoids_a_peer_whose_jobs_share_their_cpu_with_others() {
    let hogged = LoadVector {
        cpu_outside_permille: 500,
        ..load(0, 1, 1000, 500)
    };
    let loads = [load(3, 2, 1000, 500), hogged, load(0, 1, 1000, 500)];
    let slots = times_node_1_is_chosen(&loads, LoadScore::Slots, 5);
    assert!(slots > 50, "{slots}");
    assert_eq!(times_node_1_is_chosen(&loads, LoadScore::Cpu, 5), 0);
}
