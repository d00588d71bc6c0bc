//! Properties of the load map and the wire format, checked on generated inputs.
//!
//! - The map's replicated state ([`LoadMap::reports`]) is a join-semilattice: merging is
//!   commutative, associative and idempotent, and the result is the greatest report of each node.
//! - Push and digest messages survive encoding and decoding unchanged.
//! - `wire::decode` never panics, whatever the bytes.
//! - A gossip core that knows 1,000 nodes with the longest ids and IPv6 addresses never emits a
//!   datagram over its budget, whatever it is doing.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use hearsay_shared::node::MAX_NODE_ID_LEN;
use hearsay_shared::wire::{self, DigestEntry, Items, Message};
use hearsay_shared::{
    DetectorConfig, Gossip, GossipConfig, JobTally, LoadMap, LoadReport, LoadVector, NodeId,
    NodeState, SojournSummary, Version,
};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

// ---- generators -----------------------------------------------------------------------------

fn any_node_id() -> impl Strategy<Value = NodeId> {
    "[A-Za-z0-9._:-]{1,64}".prop_map(|s| NodeId::new(s).expect("the pattern makes valid ids"))
}

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u16; 8]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn any_load() -> impl Strategy<Value = LoadVector> {
    (
        (0..=1000u16, any::<u32>()),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        prop_oneof![Just(NodeState::Alive), Just(NodeState::Leaving)],
        any::<u64>(),
    )
        .prop_map(
            |((cpu_permille, cpu_capacity_millicores), queued, running, slots, state, commands)| {
                LoadVector {
                    cpu_permille,
                    cpu_capacity_millicores,
                    queued,
                    running,
                    slots,
                    state,
                    commands,
                    ended: Default::default(),
                    sojourn: Default::default(),
                    cpu_outside_permille: cpu_permille / 3,
                }
            },
        )
}

/// Any report at all: for the codec.
fn any_report() -> impl Strategy<Value = LoadReport> {
    (
        any_node_id(),
        any::<u64>(),
        any::<u64>(),
        any_load(),
        any_addr(),
        any_addr(),
    )
        .prop_map(|(node, incarnation, seq, load, api, gossip)| LoadReport {
            node,
            incarnation,
            seq,
            load,
            api,
            gossip,
        })
}

/// Reports over a few nodes with few versions and loads, so that sets of them collide often:
/// the same node at the same version with different contents included.
fn clashing_report() -> impl Strategy<Value = LoadReport> {
    (
        prop::sample::select(vec!["a", "b", "c", "d"]),
        0..3u64,
        0..4u64,
        0..3u32,
        prop::bool::ANY,
        1..3u16,
    )
        .prop_map(
            |(node, incarnation, seq, queued, leaving, port)| LoadReport {
                node: NodeId::new(node).unwrap(),
                incarnation,
                seq,
                load: LoadVector {
                    queued,
                    state: if leaving {
                        NodeState::Leaving
                    } else {
                        NodeState::Alive
                    },
                    ..LoadVector::idle(2)
                },
                api: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
                gossip: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7946),
            },
        )
}

fn report_set() -> impl Strategy<Value = Vec<LoadReport>> {
    prop::collection::vec(clashing_report(), 0..12)
}

fn map_of(reports: &[LoadReport]) -> LoadMap {
    let config = DetectorConfig::default();
    let now = Instant::now();
    let mut map = LoadMap::new();
    for report in reports {
        map.merge_report(report.clone(), now, &config);
    }
    map
}

fn merged(mut a: LoadMap, b: &LoadMap) -> LoadMap {
    a.merge(b, Instant::now(), &DetectorConfig::default());
    a
}

/// The replicated state, with each node's verdict (which follows from its winning report as
/// long as the failure detector has not judged).
fn state(map: &LoadMap) -> Vec<(LoadReport, &'static str)> {
    map.iter()
        .map(|e| (e.report().clone(), e.verdict().as_str()))
        .collect()
}

// ---- the load map is a semilattice ----------------------------------------------------------

proptest! {
    #[test]
    fn merge_keeps_the_greatest_report_of_each_node(reports in report_set()) {
        let mut greatest: BTreeMap<NodeId, LoadReport> = BTreeMap::new();
        for r in &reports {
            let slot = greatest.entry(r.node.clone()).or_insert_with(|| r.clone());
            if r > slot {
                *slot = r.clone();
            }
        }
        let map = map_of(&reports);
        let got: Vec<LoadReport> = map.reports().cloned().collect();
        let want: Vec<LoadReport> = greatest.into_values().collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn merge_is_commutative(
        (reports, shuffled) in report_set().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        prop_assert_eq!(state(&map_of(&reports)), state(&map_of(&shuffled)));
    }

    #[test]
    fn merging_maps_is_commutative(a in report_set(), b in report_set()) {
        let (ma, mb) = (map_of(&a), map_of(&b));
        prop_assert_eq!(state(&merged(ma.clone(), &mb)), state(&merged(mb, &ma)));
    }

    #[test]
    fn merging_maps_is_associative(a in report_set(), b in report_set(), c in report_set()) {
        let (ma, mb, mc) = (map_of(&a), map_of(&b), map_of(&c));
        let left = merged(merged(ma.clone(), &mb), &mc);
        let right = merged(ma, &merged(mb, &mc));
        prop_assert_eq!(state(&left), state(&right));
    }

    #[test]
    fn merge_is_idempotent(reports in report_set()) {
        let once = map_of(&reports);
        // The same reports again, and every report twice in a row: duplicates change nothing.
        let again = merged(once.clone(), &once);
        let doubled: Vec<LoadReport> = reports.iter().flat_map(|r| [r.clone(), r.clone()]).collect();
        prop_assert_eq!(state(&again), state(&once));
        prop_assert_eq!(state(&map_of(&doubled)), state(&once));
    }
}

// ---- the codec ------------------------------------------------------------------------------

proptest! {
    #[test]
    fn push_round_trips(
        own in any_report(),
        others in prop::collection::vec(any_report(), 0..40),
        budget in wire::MIN_BUDGET..4000usize,
    ) {
        let (bytes, carried) = wire::encode_push(&own, &others, budget).unwrap();
        prop_assert!(bytes.len() <= budget);
        // A report encodes to at most 170 bytes (a 64-byte id, six varints of u32 and four of
        // u64 at their longest, two IPv6 addresses with ports), so a push that stopped short of
        // the list had less room left than that.
        prop_assert!(carried == others.len() || bytes.len() + 170 > budget, "stopped early");
        let mut want = vec![own];
        want.extend_from_slice(&others[..carried]);
        prop_assert_eq!(wire::decode(&bytes).unwrap(), Message::Push { reports: Items(want) });
    }

    #[test]
    fn digest_round_trips(
        sender in any_report(),
        reply in any::<bool>(),
        entries in prop::collection::vec((any_node_id(), any::<u64>(), any::<u64>()), 0..200),
        budget in wire::MIN_BUDGET..4000usize,
    ) {
        let entries: Vec<DigestEntry> = entries
            .into_iter()
            .map(|(node, incarnation, seq)| DigestEntry { node, version: Version { incarnation, seq } })
            .collect();
        let (bytes, carried) = wire::encode_digest(&sender, reply, entries.clone(), budget).unwrap();
        prop_assert!(bytes.len() <= budget);
        let want = Message::Digest { sender, reply, entries: Items(entries[..carried].to_vec()) };
        prop_assert_eq!(wire::decode(&bytes).unwrap(), want);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = wire::decode(&bytes);
        // The same bytes behind a valid envelope, of each version read, reach the message parser.
        for version in wire::OLDEST_FORMAT_VERSION..=wire::FORMAT_VERSION {
            let mut enveloped = vec![b'H', b'S', version, 0];
            enveloped.extend_from_slice(&bytes);
            let _ = wire::decode(&enveloped);
        }
    }

    #[test]
    fn decode_never_panics_on_mutated_datagrams(
        own in any_report(),
        others in prop::collection::vec(any_report(), 0..8),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..4u8), 1..8),
    ) {
        let (mut bytes, _) = wire::encode_push(&own, &others, wire::DEFAULT_BUDGET).unwrap();
        for (at, byte, kind) in edits {
            let i = at.index(bytes.len() + 1);
            match kind {
                0 if i < bytes.len() => bytes[i] = byte,        // overwrite
                1 if i < bytes.len() => bytes[i] ^= 1 << (byte % 8), // flip a bit
                2 => bytes.insert(i, byte),                     // insert
                _ => bytes.truncate(i),                         // cut short
            }
        }
        let _ = wire::decode(&bytes);
    }
}

// ---- budgets hold with a thousand nodes -----------------------------------------------------

/// Node `i` with the longest id allowed and IPv6 addresses: the largest reports there are that
/// a core takes in. (A plausible version's incarnation and seq add up to at most the wall clock
/// and its allowance, so only one of them can take the longest varint, 10 bytes; the other
/// takes 9.)
fn big_report(i: u64) -> LoadReport {
    let prefix = format!("node-{i:05}-");
    let id = format!("{prefix}{}", "x".repeat(MAX_NODE_ID_LEN - prefix.len()));
    let ip = IpAddr::V6(Ipv6Addr::new(
        0xfd00, 0xbeef, 0xcafe, 0xf00d, 0xffff, 0xffff, 0xffff, i as u16,
    ));
    LoadReport {
        node: NodeId::new(id).unwrap(),
        incarnation: (1 << 63) + i,
        seq: (1 << 63) - 100_000 + i,
        load: LoadVector {
            cpu_permille: 1000,
            cpu_capacity_millicores: u32::MAX,
            queued: u32::MAX,
            running: u32::MAX,
            slots: u32::MAX,
            state: NodeState::Alive,
            // Every bit set: the longest varint.
            commands: u64::MAX,
            ended: JobTally {
                completed: u64::MAX,
                failed: u64::MAX,
                lost: u64::MAX,
            },
            sojourn: SojournSummary {
                jobs: u32::MAX,
                p50_ms: u32::MAX,
                p99_ms: u32::MAX,
            },
            cpu_outside_permille: 1000,
        },
        api: SocketAddr::new(ip, 65535),
        gossip: SocketAddr::new(ip, 65534),
    }
}

fn check_budget(core: &mut Gossip, budget: usize, sent: &mut usize) {
    while let Some(t) = core.poll_transmit() {
        assert!(
            t.bytes.len() <= budget,
            "a datagram of {} bytes with a budget of {budget}",
            t.bytes.len()
        );
        assert!(
            wire::decode(&t.bytes).is_ok(),
            "the core sent what it cannot read"
        );
        *sent += 1;
    }
}

#[test]
fn a_thousand_node_map_never_yields_a_datagram_over_budget() {
    let t0 = Instant::now();
    let feeder = big_report(5000).gossip;
    let reports: Vec<LoadReport> = (0..1000).map(big_report).collect();
    for budget in [wire::MIN_BUDGET, 512, wire::DEFAULT_BUDGET] {
        let me = big_report(9999);
        let mut config = GossipConfig::new(me.node.clone(), me.api, me.gossip);
        config.budget = budget;
        let mut rng = StdRng::seed_from_u64(budget as u64);
        // A clock at the end of time, so that those versions are plausible.
        let mut core = Gossip::new(config, me.incarnation, me.load, vec![feeder], t0)
            .unwrap()
            .with_wall_clock(u64::MAX);
        let mut sent = 0;

        // Teach it the thousand reports, in jumbo datagrams that only a test would send.
        let mut rest = &reports[..];
        while let Some((first, others)) = rest.split_first() {
            let (bytes, carried) = wire::encode_push(first, others, wire::MAX_DATAGRAM).unwrap();
            core.handle_datagram(t0, feeder, &bytes).unwrap();
            rest = &others[carried..];
        }
        assert_eq!(core.map().len(), 1001);

        // Answer a digest from a peer that holds an old version of everyone and lists them all,
        // and one that lists no one: both ask for far more than fits.
        let old: Vec<DigestEntry> = reports
            .iter()
            .map(|r| DigestEntry {
                node: r.node.clone(),
                version: Version {
                    incarnation: r.incarnation,
                    seq: r.seq - 1,
                },
            })
            .collect();
        let (bytes, _) =
            wire::encode_digest(&big_report(5000), false, old, wire::MAX_DATAGRAM).unwrap();
        core.handle_datagram(t0, feeder, &bytes).unwrap();
        check_budget(&mut core, budget, &mut sent);
        let (bytes, _) =
            wire::encode_digest(&big_report(5001), false, [], wire::MAX_DATAGRAM).unwrap();
        core.handle_datagram(t0, feeder, &bytes).unwrap();
        check_budget(&mut core, budget, &mut sent);

        // Leave, which writes to every peer at once, and go on with rounds as a leaving node:
        // pushes, digests, and (after a long silence) probes of the dead.
        core.leave(t0);
        check_budget(&mut core, budget, &mut sent);
        for round in 0..12u32 {
            let now = t0 + Duration::from_millis(200) * round;
            core.handle_tick(now, &mut rng);
            check_budget(&mut core, budget, &mut sent);
        }
        core.handle_tick(t0 + Duration::from_secs(30), &mut rng);
        check_budget(&mut core, budget, &mut sent);

        assert!(
            sent > 1000,
            "budget {budget}: only {sent} datagrams were checked"
        );
        assert_eq!(core.stats().encode_errors, 0);
    }
}
