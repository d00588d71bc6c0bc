//! A flood of made-up node ids, as a rogue peer (one holding the cluster key) could send: the
//! map stays within its cap, the real members are never pushed out, and once the fakes fall
//! silent their places go to newcomers again.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearsay_shared::wire::encode_push;
use hearsay_shared::{Gossip, GossipConfig, LoadReport, LoadVector, NodeId, Verdict};
use rand::rngs::StdRng;
use rand::SeedableRng;

const CAP: usize = 50;
const REAL: usize = 10;

fn report(name: &str, seq: u64, port: u16) -> LoadReport {
    let addr: SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    LoadReport {
        node: NodeId::new(name).unwrap(),
        incarnation: 1,
        seq,
        load: LoadVector::idle(2),
        api: addr,
        gossip: addr,
    }
}

fn deliver(core: &mut Gossip, now: Instant, reports: &[LoadReport]) {
    for chunk in reports.chunks(8) {
        let (bytes, carried) = encode_push(&chunk[0], &chunk[1..], 1400).unwrap();
        assert_eq!(carried, chunk.len() - 1);
        let from = chunk[0].gossip;
        core.handle_datagram(now, from, &bytes).unwrap();
    }
}

#[test]
fn a_flood_of_fake_nodes_cannot_grow_the_map_or_push_out_members() {
    let me = NodeId::new("me").unwrap();
    let addr: SocketAddr = "127.0.0.1:7946".parse().unwrap();
    let config = GossipConfig {
        max_nodes: CAP,
        ..GossipConfig::new(me.clone(), addr, addr)
    };
    let mut rng = StdRng::seed_from_u64(1);
    let mut now = Instant::now();
    let mut core = Gossip::new(config, 1, LoadVector::idle(2), Vec::new(), now).unwrap();
    let real: Vec<String> = (0..REAL).map(|i| format!("real-{i}")).collect();
    let mut fake = 0u64;
    // 30 s of 200 ms rounds: the real nodes report every round; for the first 10 s a rogue
    // peer also sends 100 new made-up ids a round (5,000 in all), then stops.
    for round in 0..150u64 {
        now += Duration::from_millis(200);
        let seq = round + 1;
        let beats: Vec<LoadReport> = real
            .iter()
            .enumerate()
            .map(|(i, name)| report(name, seq, 10_000 + i as u16))
            .collect();
        deliver(&mut core, now, &beats);
        if round < 50 {
            let flood: Vec<LoadReport> = (0..100)
                .map(|_| {
                    fake += 1;
                    report(&format!("fake-{fake}"), 1, 20_000)
                })
                .collect();
            deliver(&mut core, now, &flood);
        }
        core.handle_tick(now, &mut rng);
        while core.poll_transmit().is_some() {}
        while core.poll_event().is_some() {}
        assert!(
            core.map().len() <= CAP,
            "round {round}: {}",
            core.map().len()
        );
        for name in &real {
            let entry = core.map().get(&NodeId::new(name).unwrap());
            assert!(entry.is_some(), "round {round}: {name} was pushed out");
        }
    }
    let stats = core.stats();
    assert!(stats.map_refusals > 0, "the cap never refused: {stats:?}");
    assert!(
        stats.map_evictions > 0,
        "silent fakes were never evicted: {stats:?}"
    );
    for name in &real {
        let entry = core.map().get(&NodeId::new(name).unwrap()).unwrap();
        assert_eq!(entry.verdict(), Verdict::Alive, "{name}");
    }
    // The flood is over and its ids have gone silent: a real newcomer gets in.
    now += Duration::from_millis(200);
    deliver(&mut core, now, &[report("late-joiner", 1, 30_000)]);
    assert!(core
        .map()
        .get(&NodeId::new("late-joiner").unwrap())
        .is_some());
    assert!(core.map().len() <= CAP);
}
