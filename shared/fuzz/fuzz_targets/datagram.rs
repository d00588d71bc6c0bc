//! The datagram decoder and the gossip core behind it: any bytes as a received datagram. The
//! decoder must return a message or an error, never panic; a live core fed the datagram must
//! count it and never answer with a datagram over its budget.
#![no_main]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use hearsay_shared::{wire, Gossip, GossipConfig, LoadVector, NodeId};
use libfuzzer_sys::fuzz_target;
use rand::rngs::SmallRng;
use rand::SeedableRng;

struct Node {
    gossip: Gossip,
    now: Instant,
    rng: SmallRng,
}

static NODE: Mutex<Option<Node>> = Mutex::new(None);

fuzz_target!(|input: &[u8]| {
    // Most inputs get a valid envelope in front, so that the fuzzer spends its time in the
    // message decoder rather than on guessing the magic bytes; an input starting with 0 is
    // taken as it is, envelope and all.
    let bytes = match input.split_first() {
        Some((0, raw)) => raw.to_vec(),
        _ => [&[b'H', b'S', wire::FORMAT_VERSION, 0][..], input].concat(),
    };
    let bytes = &bytes[..];
    let decoded = wire::decode(bytes);
    let mut node = NODE.lock().unwrap_or_else(|e| e.into_inner());
    let node = node.get_or_insert_with(|| {
        let config = GossipConfig {
            max_nodes: 64,
            ..GossipConfig::new(
                NodeId::new("fuzz").unwrap(),
                "127.0.0.1:8080".parse().unwrap(),
                "127.0.0.1:7946".parse().unwrap(),
            )
        };
        let now = Instant::now();
        let gossip = Gossip::new(config, 1, LoadVector::idle(2), Vec::new(), now).unwrap();
        Node { gossip, now, rng: SmallRng::seed_from_u64(7) }
    });
    node.now += Duration::from_millis(10);
    let before = node.gossip.stats().decode_errors;
    let handled = node.gossip.handle_datagram(node.now, "127.0.0.2:7946".parse().unwrap(), bytes);
    assert_eq!(handled.is_ok(), decoded.is_ok(), "the core decodes as the decoder does");
    assert_eq!(node.gossip.stats().decode_errors - before, u64::from(decoded.is_err()));
    let now = node.now;
    node.gossip.handle_tick(now, &mut node.rng);
    let budget = node.gossip.config().budget;
    while let Some(transmit) = node.gossip.poll_transmit() {
        assert!(transmit.bytes.len() <= budget, "over budget");
        wire::decode(&transmit.bytes).expect("what a node sends decodes");
    }
    while node.gossip.poll_event().is_some() {}
    assert!(node.gossip.map().len() <= 64, "the map stays within its cap");
});
