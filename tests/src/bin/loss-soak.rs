//! Measures false suspicions and false deaths on real `worker` processes over a long run with
//! real packet loss: the workers run in a network namespace of their own, where an nftables
//! rule drops a set share of the gossip datagrams at random as they arrive. No node is ever
//! stopped, so every death declared is a false one.
//!
//! ```text
//! cargo build --release -p hearsay-worker -p hearsay-tests
//! sudo target/release/loss-soak --nodes 10 --loss-percent 10 --seconds 600
//! ```
//!
//! Needs root, `ip` (iproute2) and `nft` (nftables).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use hearsay_tests::cluster::{split_args, start_cluster, WorkerProcess};
use hearsay_tests::netns::{drop_udp, dropped_udp, run_inside, Namespace};

/// Set in the run inside the namespace.
const INSIDE: &str = "HEARSAY_LOSS_SOAK_NS";
/// The gossip port of every worker (see `hearsay_tests::cluster`).
const GOSSIP_PORT: u16 = 17946;

#[derive(Debug, Parser)]
#[command(about = "Count false suspicions and deaths among real workers over a lossy network")]
struct Args {
    /// Workers to start.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(2..=100))]
    nodes: u16,
    /// Share of gossip datagrams dropped on arrival, in percent (0 to 90).
    #[arg(long, default_value_t = 10.0)]
    loss_percent: f64,
    /// How long to run under loss once the cluster has formed.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Extra flags for every worker, e.g. "--gossip-interval 100".
    #[arg(long, allow_hyphen_values = true)]
    worker_args: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !(0.0..=90.0).contains(&args.loss_percent) {
        bail!(
            "--loss-percent must be between 0 and 90, not {}",
            args.loss_percent
        );
    }
    if std::env::var_os(INSIDE).is_some() {
        return soak(&args);
    }
    let namespace = Namespace::create("hearsay-soak")
        .context("loss-soak needs root and `ip netns` (iproute2)")?;
    let exe = std::env::current_exe()?;
    let forwarded: Vec<String> = std::env::args().skip(1).collect();
    let forwarded: Vec<&str> = forwarded.iter().map(String::as_str).collect();
    let limit = Duration::from_secs(args.seconds + 300);
    let status = run_inside(
        &namespace,
        &exe,
        &forwarded,
        (INSIDE, &namespace.name),
        limit,
    )?;
    if !status.success() {
        bail!("the run inside {} failed: {status}", namespace.name);
    }
    Ok(())
}

/// Per node: (suspicions, deaths, datagrams received) as its own counters say.
fn counters(node: &WorkerProcess) -> Result<(u64, u64, u64)> {
    let view = node.cluster()?;
    let gossip = &view["gossip"];
    let field = |name: &str| {
        gossip[name]
            .as_u64()
            .with_context(|| format!("no gossip.{name} in /v1/cluster: {gossip}"))
    };
    Ok((
        field("suspicions")?,
        field("deaths")?,
        field("datagrams_received")?,
    ))
}

fn totals(nodes: &[WorkerProcess]) -> Result<(u64, u64, u64)> {
    let mut sum = (0, 0, 0);
    for node in nodes {
        let (s, d, r) = counters(node)?;
        sum = (sum.0 + s, sum.1 + d, sum.2 + r);
    }
    Ok(sum)
}

fn soak(args: &Args) -> Result<()> {
    let extra = split_args(args.worker_args.as_deref());
    let nodes = start_cluster(
        usize::from(args.nodes),
        "s",
        &extra,
        Duration::from_secs(60),
    )?;
    let n = nodes.len();
    // Let the detectors learn the rhythm before the loss starts.
    std::thread::sleep(Duration::from_secs(5));
    let permille = (args.loss_percent * 10.0).round() as u32;
    drop_udp(GOSSIP_PORT, permille)?;
    let before = totals(&nodes)?;
    let start = Instant::now();
    let total = Duration::from_secs(args.seconds);
    let mut next_report = Duration::from_secs(60).min(total);
    while start.elapsed() < total {
        std::thread::sleep(Duration::from_millis(500));
        if start.elapsed() >= next_report {
            let (s, d, _) = totals(&nodes)?;
            println!(
                "{:>5.0} s: false suspicions {}, false deaths {}",
                start.elapsed().as_secs_f64(),
                s - before.0,
                d - before.1
            );
            next_report += Duration::from_secs(60);
        }
    }
    let (s, d, received) = totals(&nodes)?;
    let dropped = dropped_udp()?;
    let received = received - before.2;
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "{n} workers, {seconds:.0} s at {}% loss: {dropped} gossip datagrams dropped, {received} delivered ({:.1}% lost)",
        args.loss_percent,
        100.0 * dropped as f64 / (dropped + received).max(1) as f64
    );
    println!(
        "false suspicions: {} (over {} observer-peer pairs), false deaths: {}",
        s - before.0,
        n * (n - 1),
        d - before.1
    );
    Ok(())
}
