//! Placement decisions per second, and the datagram codec, at small and large cluster sizes.
//!
//! `cargo bench -p hearsay-scheduler`. The `random` policy is the baseline measured in the same
//! run: report p2c as a ratio to it, since absolute times vary with the machine's other load.
//! `p2c-full-pass` is the p2c decision as it was made before the placer sampled the map's index
//! of nodes taking work (a pass over the whole map, see `full_pass.rs`): the ratio of `p2c` to
//! it is what sampling saves.

mod full_pass;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hearsay_scheduler::{PlacementRequest, Placer, PlacerConfig, Policy};
use hearsay_shared::wire::{decode, encode_push, DEFAULT_BUDGET};
use hearsay_shared::{DetectorConfig, LoadMap, LoadReport, LoadVector, NodeId, NodeState};
use rand::rngs::StdRng;
use rand::SeedableRng;

fn report(i: usize) -> LoadReport {
    LoadReport {
        node: NodeId::new(format!("worker-{i:04}.example")).expect("valid id"),
        incarnation: 1_790_000_000_000 + i as u64,
        seq: 100_000 + i as u64,
        load: LoadVector {
            cpu_permille: (i % 1000) as u16,
            cpu_capacity_millicores: 0,
            queued: (i % 7) as u32,
            running: 1,
            slots: 2,
            state: NodeState::Alive,
            commands: 0,
            ended: Default::default(),
            sojourn: Default::default(),
            cpu_outside_permille: 0,
        },
        api: format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)
            .parse()
            .expect("valid address"),
        gossip: format!("10.0.{}.{}:7946", i / 250, i % 250 + 1)
            .parse()
            .expect("valid address"),
    }
}

fn map_of(n: usize, now: Instant) -> LoadMap {
    let cfg = DetectorConfig::default();
    let mut map = LoadMap::new();
    for i in 0..n {
        map.merge_report(
            report(i),
            now - Duration::from_millis((i % 5) as u64 * 50),
            &cfg,
        );
    }
    map
}

fn placement(c: &mut Criterion) {
    let mut group = c.benchmark_group("place");
    let now = Instant::now();
    for n in [8, 1000, 10_000] {
        let map = map_of(n, now);
        let me = report(0).node;
        for policy in [Policy::Random, Policy::P2c, Policy::LeastLoaded] {
            let mut placer = Placer::new(PlacerConfig {
                policy,
                ..PlacerConfig::default()
            });
            let mut rng = StdRng::seed_from_u64(1);
            group.bench_with_input(BenchmarkId::new(policy.as_str(), n), &n, |b, _| {
                b.iter(|| {
                    let req = PlacementRequest {
                        map: &map,
                        me: &me,
                        own: LoadVector::idle(2),
                        now,
                        hops: 0,
                        exclude: &[],
                        requires: 0,
                    };
                    black_box(placer.place(&req, &mut rng))
                })
            });
        }
        let mut old = full_pass::FullPassP2c::default();
        let mut rng = StdRng::seed_from_u64(1);
        group.bench_with_input(BenchmarkId::new("p2c-full-pass", n), &n, |b, _| {
            b.iter(|| {
                let req = PlacementRequest {
                    map: &map,
                    me: &me,
                    own: LoadVector::idle(2),
                    now,
                    hops: 0,
                    exclude: &[],
                    requires: 0,
                };
                black_box(old.place(&req, &mut rng))
            })
        });
    }
    group.finish();
}

fn codec(c: &mut Criterion) {
    let own = report(0);
    let others: Vec<LoadReport> = (1..100).map(report).collect();
    let (bytes, carried) = encode_push(&own, &others, DEFAULT_BUDGET).expect("fits");
    let mut group = c.benchmark_group("datagram");
    group.bench_function(
        format!("encode_full_{}B_{}reports", bytes.len(), carried + 1),
        |b| b.iter(|| black_box(encode_push(&own, &others, DEFAULT_BUDGET).expect("fits"))),
    );
    group.bench_function(
        format!("decode_full_{}B_{}reports", bytes.len(), carried + 1),
        |b| b.iter(|| black_box(decode(&bytes).expect("valid"))),
    );
    group.finish();
}

criterion_group!(benches, placement, codec);
criterion_main!(benches);
