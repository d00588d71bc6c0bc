//! Measures the memory one node's load map takes at a given cluster size: builds `--copies`
//! maps of `--nodes` members, each member heard `--heartbeats` times (so that the failure
//! detector's history of every entry is as full as a long-lived node's), and reports the growth
//! of the process's resident memory divided by the number of maps.
//!
//! ```text
//! cargo run --release -p hearsay-tests --bin map-memory -- --nodes 10000
//! ```
//!
//! Resident memory is read from `/proc/self/statm` (Linux), so the figure includes what the
//! allocator keeps around each block: what a node's process would really pay.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hearsay_shared::{DetectorConfig, LoadMap, LoadReport, LoadVector, NodeId};

#[derive(Debug, Parser)]
#[command(about = "Measure the memory of one node's load map")]
struct Args {
    /// Members of the map.
    #[arg(long, default_value_t = 10_000)]
    nodes: usize,
    /// Reports merged per member (heartbeats), 200 ms apart.
    #[arg(long, default_value_t = 1_100)]
    heartbeats: u64,
    /// Maps built side by side; the growth is divided by this.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    copies: u64,
}

fn report(i: usize, seq: u64) -> LoadReport {
    LoadReport {
        // Shaped like the simulation's and a real default id: host name and API port.
        node: NodeId::new(format!("host-{i:05}:8080")).expect("valid id"),
        incarnation: 1_760_000_000_000 + i as u64,
        seq,
        load: LoadVector {
            queued: (i % 5) as u32,
            ..LoadVector::idle(4)
        },
        api: format!("10.0.{}.{}:8080", i / 250, i % 250 + 1)
            .parse()
            .expect("valid address"),
        gossip: format!("10.0.{}.{}:7946", i / 250, i % 250 + 1)
            .parse()
            .expect("valid address"),
    }
}

fn resident_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("statm has no resident field")?
        .parse()
        .context("statm's resident field")?;
    Ok(pages * 4096)
}

fn build(reports: &[LoadReport], heartbeats: u64) -> LoadMap {
    let cfg = DetectorConfig::default();
    let t0 = Instant::now();
    let mut map = LoadMap::new();
    for seq in 1..=heartbeats {
        // Jittered intervals, as gossip delivers them.
        let t = t0 + Duration::from_millis(200 * seq);
        for (i, base) in reports.iter().enumerate() {
            let jitter = Duration::from_millis((i as u64 * 7 + seq * 13) % 90);
            let r = LoadReport {
                seq,
                node: base.node.clone(),
                ..*base
            };
            map.merge_report(r, t + jitter, &cfg);
        }
    }
    map
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.nodes == 0 || args.nodes > 10_000 {
        bail!("--nodes must be between 1 and 10000 (the map's default bound)");
    }
    let reports: Vec<LoadReport> = (0..args.nodes).map(|i| report(i, 0)).collect();
    let before = resident_bytes()?;
    let maps: Vec<LoadMap> = (0..args.copies)
        .map(|_| build(&reports, args.heartbeats))
        .collect();
    let after = resident_bytes()?;
    let per_map = after.saturating_sub(before) / args.copies;
    let members = maps.first().map_or(0, LoadMap::len);
    println!(
        "{members} members, {} heartbeats each: {:.2} MB per map ({:.0} bytes per member), {} maps measured",
        args.heartbeats,
        per_map as f64 / 1e6,
        per_map as f64 / members.max(1) as f64,
        maps.len()
    );
    Ok(())
}
