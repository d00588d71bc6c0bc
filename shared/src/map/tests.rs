//! The load map's unit tests: newest wins, silence and death, the bound, the work index.

use super::*;
use crate::LoadVector;

fn report(node: &str, incarnation: u64, seq: u64, state: NodeState) -> LoadReport {
    LoadReport {
        node: NodeId::new(node).unwrap(),
        incarnation,
        seq,
        load: LoadVector {
            state,
            ..LoadVector::idle(1)
        },
        api: "127.0.0.1:1".parse().unwrap(),
        gossip: "127.0.0.1:2".parse().unwrap(),
    }
}

#[test]
fn newer_wins_and_older_is_ignored() {
    let cfg = DetectorConfig::default();
    let now = Instant::now();
    let mut map = LoadMap::new();
    assert!(
        map.merge_report(report("a", 1, 5, NodeState::Alive), now, &cfg)
            .newer
    );
    assert!(
        !map.merge_report(report("a", 1, 4, NodeState::Alive), now, &cfg)
            .newer
    );
    assert!(
        map.merge_report(report("a", 2, 0, NodeState::Alive), now, &cfg)
            .newer
    );
    assert_eq!(
        map.get(&NodeId::new("a").unwrap())
            .unwrap()
            .report()
            .incarnation,
        2
    );
}

#[test]
fn silence_leads_to_suspect_then_dead_then_removal() {
    let cfg = DetectorConfig::default();
    let me = NodeId::new("me").unwrap();
    let t0 = Instant::now();
    let mut map = LoadMap::new();
    for seq in 0..20 {
        let t = t0 + Duration::from_millis(200 * seq);
        map.merge_report(report("a", 1, seq, NodeState::Alive), t, &cfg);
    }
    let last = t0 + Duration::from_millis(200 * 19);
    let id = NodeId::new("a").unwrap();
    let mut seen = Vec::new();
    for step in 1..=1000 {
        let t = last + Duration::from_millis(100 * step);
        for c in map.judge(t, &cfg, &me) {
            seen.push(c.to);
        }
    }
    assert_eq!(
        seen,
        vec![Some(Verdict::Suspect), Some(Verdict::Dead), None],
        "verdicts in order"
    );
    assert!(map.get(&id).is_none());
}

#[test]
fn stale_gossip_does_not_revive_the_dead_but_a_newer_report_does() {
    let cfg = DetectorConfig::default();
    let me = NodeId::new("me").unwrap();
    let t0 = Instant::now();
    let mut map = LoadMap::new();
    map.merge_report(report("a", 1, 7, NodeState::Alive), t0, &cfg);
    map.judge(t0 + Duration::from_secs(10), &cfg, &me);
    let id = NodeId::new("a").unwrap();
    assert_eq!(map.get(&id).unwrap().verdict(), Verdict::Dead);
    let t1 = t0 + Duration::from_secs(11);
    map.merge_report(report("a", 1, 7, NodeState::Alive), t1, &cfg);
    map.merge_report(report("a", 1, 3, NodeState::Alive), t1, &cfg);
    assert_eq!(map.get(&id).unwrap().verdict(), Verdict::Dead);
    map.merge_report(report("a", 2, 0, NodeState::Alive), t1, &cfg);
    assert_eq!(map.get(&id).unwrap().verdict(), Verdict::Alive);
}

#[test]
fn a_full_map_evicts_the_longest_dead_then_suspect_and_never_a_live_node() {
    let cfg = DetectorConfig::default();
    let me = NodeId::new("me").unwrap();
    let t0 = Instant::now();
    let mut map = LoadMap::bounded(4, me.clone());
    map.merge_report(report("me", 1, 1, NodeState::Leaving), t0, &cfg);
    for node in ["a", "b", "c"] {
        map.merge_report(report(node, 1, 1, NodeState::Alive), t0, &cfg);
    }
    // Full of live nodes (the owner is leaving, but is never evicted): a newcomer is refused.
    let out = map.merge_report(report("x", 1, 1, NodeState::Alive), t0, &cfg);
    assert!(out.refused && !out.newer && out.evicted.is_none());
    assert_eq!(map.len(), 4);
    // a goes silent until it is dead; then c goes silent until it is suspected. b (like
    // the owner) keeps reporting.
    let verdict = |map: &LoadMap, n: &str| map.get(&NodeId::new(n).unwrap()).map(|e| e.verdict());
    let mut t = t0;
    let mut seq = 1;
    let mut silent = vec!["a"];
    for _ in 0..200 {
        t += Duration::from_millis(200);
        seq += 1;
        for node in ["b", "c", "a"] {
            if !silent.contains(&node) {
                map.merge_report(report(node, 1, seq, NodeState::Alive), t, &cfg);
            }
        }
        map.judge(t, &cfg, &me);
        if verdict(&map, "a") == Some(Verdict::Dead) && silent.len() == 1 {
            silent.push("c");
        }
        if verdict(&map, "c") == Some(Verdict::Suspect) {
            break;
        }
    }
    assert_eq!(verdict(&map, "a"), Some(Verdict::Dead));
    assert_eq!(verdict(&map, "c"), Some(Verdict::Suspect));
    assert_eq!(verdict(&map, "b"), Some(Verdict::Alive));
    let out = map.merge_report(report("x", 1, 1, NodeState::Alive), t, &cfg);
    assert_eq!(out.evicted.map(|c| c.node.to_string()), Some("a".into()));
    assert!(out.newer);
    let out = map.merge_report(report("y", 1, 1, NodeState::Alive), t, &cfg);
    assert_eq!(out.evicted.map(|c| c.node.to_string()), Some("c".into()));
    let out = map.merge_report(report("z", 1, 1, NodeState::Alive), t, &cfg);
    assert!(out.refused);
    assert_eq!(map.len(), 4);
    assert!(verdict(&map, "me").is_some() && verdict(&map, "b").is_some());
}

#[test]
fn a_leaving_node_is_left_not_dead() {
    let cfg = DetectorConfig::default();
    let t0 = Instant::now();
    let mut map = LoadMap::new();
    map.merge_report(report("a", 1, 1, NodeState::Alive), t0, &cfg);
    let out = map.merge_report(report("a", 1, 2, NodeState::Leaving), t0, &cfg);
    assert_eq!(out.change.unwrap().to, Some(Verdict::Left));
    let me = NodeId::new("me").unwrap();
    let changes = map.judge(t0 + Duration::from_secs(5), &cfg, &me);
    assert!(changes.is_empty(), "a left node is not judged: {changes:?}");
}

/// The work index and the running load sum agree with a pass over the map, whatever
/// happens: nodes joining, reporting loads, leaving, falling silent, expiring, evicted.
#[test]
fn the_work_index_and_load_sum_follow_every_change() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let cfg = DetectorConfig {
        grace: Duration::from_secs(3),
        ..DetectorConfig::default()
    };
    let me = NodeId::new("n0").unwrap();
    let mut map = LoadMap::bounded(24, me.clone());
    let mut rng = StdRng::seed_from_u64(3);
    let t0 = Instant::now();
    let mut seqs = [0u64; 32];
    for step in 0..4000u64 {
        let t = t0 + Duration::from_millis(50 * step);
        let n = rng.random_range(0..32usize);
        match rng.random_range(0..10) {
            0 => {
                map.judge(t, &cfg, &me);
            }
            1 => {
                map.remove(&NodeId::new(format!("n{n}")).unwrap());
            }
            _ if n % 4 == 3 && step > 2000 => {} // a quarter fall silent halfway
            k => {
                seqs[n] += 1;
                let state = if k == 2 {
                    NodeState::Leaving
                } else {
                    NodeState::Alive
                };
                let mut r = report(&format!("n{n}"), 1 + seqs[n] / 50, seqs[n], state);
                r.load.queued = rng.random_range(0..5);
                r.load.slots = rng.random_range(0..3);
                map.merge_report(r, t, &cfg);
            }
        }
        let working: Vec<&Entry> = map.iter().filter(|e| e.takes_work()).collect();
        assert_eq!(map.taking_work(), working.len(), "step {step}");
        let mut indexed: Vec<&NodeId> = (0..map.taking_work())
            .map(|k| &map.taking_work_at(k).unwrap().report().node)
            .collect();
        indexed.sort();
        let listed: Vec<&NodeId> = working.iter().map(|e| &e.report().node).collect();
        assert_eq!(indexed, listed, "step {step}");
        let loads: Vec<f64> = working
            .iter()
            .filter(|e| e.report().load.slots > 0)
            .map(|e| {
                let l = e.report().load;
                f64::from(l.queued + l.running) / f64::from(l.slots)
            })
            .collect();
        let mean = (!loads.is_empty()).then(|| loads.iter().sum::<f64>() / loads.len() as f64);
        match (map.mean_load_per_slot(), mean) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4, "step {step}: {a} {b}"),
            (a, b) => assert_eq!(a, b, "step {step}"),
        }
        for e in map.iter() {
            assert_eq!(
                map.get(&e.report().node).map(|g| g.report()),
                Some(e.report())
            );
        }
    }
    assert!(map.len() > 4, "the run left a map to speak of");
}
