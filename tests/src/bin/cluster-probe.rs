//! Measures failure detection on real `worker` processes on loopback: how long from a `kill -9`
//! until every peer marks the node dead, how long a graceful leave takes to be seen by all, and
//! whether any live node was ever judged suspect or dead meanwhile.
//!
//! ```text
//! cargo build --release -p hearsay-worker -p hearsay-tests
//! target/release/cluster-probe --nodes 20 --kills 3
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;
use hearsay_tests::cluster::{split_args, start_cluster, state_of, WorkerProcess};

#[derive(Debug, Parser)]
#[command(about = "Measure failure detection and leave propagation on real worker processes")]
struct Args {
    /// Workers to start.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(3..=200))]
    nodes: u16,
    /// Nodes to kill with SIGKILL, one after the other (each restarted before the next).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    kills: u16,
    /// Extra flags for every worker, e.g. "--gossip-interval 200".
    #[arg(long, allow_hyphen_values = true)]
    worker_args: Option<String>,
}

/// Polls every live node's map until `node` is in `state` everywhere, and returns, for each
/// observer, when it first saw that state. Also records any other live node seen as anything
/// but alive (a false suspicion or death).
fn time_until_all(
    nodes: &[WorkerProcess],
    node: &str,
    state: &str,
    since: Instant,
    false_alarms: &mut BTreeMap<String, u32>,
) -> Result<Vec<Duration>> {
    let observers: Vec<&WorkerProcess> = nodes
        .iter()
        .filter(|n| n.pid().is_some() && n.spec.node_id != node)
        .collect();
    let mut seen: BTreeMap<String, Duration> = BTreeMap::new();
    let deadline = since + Duration::from_secs(30);
    while seen.len() < observers.len() {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} peers saw {node} {state} within 30 s",
                seen.len(),
                observers.len()
            );
        }
        for observer in &observers {
            let Ok(view) = observer.cluster() else {
                continue;
            };
            let id = &observer.spec.node_id;
            if !seen.contains_key(id) && state_of(&view, node).as_deref() == Some(state) {
                seen.insert(id.clone(), since.elapsed());
            }
            for other in observers.iter().filter(|o| o.spec.node_id != *id) {
                let s = state_of(&view, &other.spec.node_id);
                if matches!(s.as_deref(), Some("suspect") | Some("dead")) {
                    *false_alarms
                        .entry(format!(
                            "{id} saw {} {}",
                            other.spec.node_id,
                            s.unwrap_or_default()
                        ))
                        .or_default() += 1;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(seen.into_values().collect())
}

fn summary(times: &[Duration]) -> String {
    let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    let min = ms.iter().min().copied().unwrap_or(0);
    let max = ms.iter().max().copied().unwrap_or(0);
    let mean = ms.iter().sum::<u128>() / ms.len().max(1) as u128;
    format!("first {min} ms, mean {mean} ms, last {max} ms")
}

fn main() -> Result<()> {
    let args = Args::parse();
    let extra = split_args(args.worker_args.as_deref());
    let mut nodes = start_cluster(
        usize::from(args.nodes),
        "p",
        &extra,
        Duration::from_secs(60),
    )?;
    let n = nodes.len();

    let mut false_alarms = BTreeMap::new();
    let mut last_peer = Vec::new();
    for k in 0..usize::from(args.kills) {
        // Let the detectors learn the rhythm again after the previous round.
        std::thread::sleep(Duration::from_secs(3));
        let victim = 1 + k % (n - 1);
        let id = nodes[victim].spec.node_id.clone();
        let t = Instant::now();
        nodes[victim].kill();
        let times = time_until_all(&nodes, &id, "dead", t, &mut false_alarms)?;
        println!(
            "kill -9 {id}: seen dead by {} peers: {}",
            times.len(),
            summary(&times)
        );
        last_peer.extend(times.iter().max().copied());
        let respec = nodes[victim].spec.clone();
        nodes[victim] = WorkerProcess::start(respec)?;
        time_until_all(&nodes, &id, "alive", Instant::now(), &mut false_alarms)?;
    }
    std::thread::sleep(Duration::from_secs(3));
    let leaver = n - 1;
    let id = nodes[leaver].spec.node_id.clone();
    let t = Instant::now();
    nodes[leaver].terminate()?;
    let times = time_until_all(&nodes, &id, "left", t, &mut false_alarms)?;
    println!(
        "SIGTERM {id}: seen left by {} peers: {}",
        times.len(),
        summary(&times)
    );
    println!(
        "kill -9 to the last peer marking it dead, over {} kills: {}",
        last_peer.len(),
        summary(&last_peer)
    );
    if false_alarms.is_empty() {
        println!("false alarms: none (no live node seen suspect or dead)");
    } else {
        println!("false alarms (observations while polling):");
        for (what, count) in &false_alarms {
            println!("  {what}: {count}");
        }
    }
    Ok(())
}
