//! Runs a seeded job workload through the simulated cluster (`hearsay_tests::job_sim`: gossip
//! cores, hand-off cores and executor models under one virtual clock) and prints mean and p99
//! sojourn, in mean service times, for each placement policy and cluster size, beside the
//! queueing-theory reference lines (loadgen's theory module).
//!
//! ```text
//! cargo run --release -p hearsay-tests --bin handoff-sim
//! cargo run --release -p hearsay-tests --bin handoff-sim -- --sizes 8 --jobs 50000 --service-ms 100
//! ```
//!
//! Every figure comes from virtual time, so a run gives the same numbers on any machine. The
//! gossip interval is 200 ms; `--service-ms` sets the mean service times, so the map's
//! staleness is 200 ms / service in service times (1 s: 0.2, the "fresh" end; 100 ms: 2, what
//! `loadgen demo` runs).
//!
//! What a run costs is gossip rounds (at 1,000 nodes every digest exchange covers 1,000
//! entries), and a workload takes `jobs / (rho * nodes * staleness)` rounds plus its drain, so
//! clusters larger than `--fresh-limit` run only at the stalest setting: 1,000 nodes at 100 ms
//! take a few minutes, at 1 s they would take an hour. And `random` and `local` are n
//! independent M/M/1 queues whatever n is, which at rho 0.9 take hundreds of service times to
//! reach their steady state (a run of 60,000 jobs on 1,000 nodes lasts 67): they run at the
//! smallest size only; `p2c` and `least-loaded`, whose queues are short, settle within tens.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Parser;
use hearsay_scheduler::Policy;
use hearsay_tests::workload::{run_jsq, run_workloads, Stealing, Workload, WorkloadResult};

#[derive(Debug, Parser)]
#[command(about = "Measure Hearsay's placement policies in the simulated cluster")]
struct Args {
    /// Cluster sizes.
    #[arg(long, value_delimiter = ',', default_values_t = [8, 100, 1000])]
    sizes: Vec<usize>,
    /// Policies: a placement policy, with `+steal` for idle nodes stealing too, or `jsq`,
    /// the oracle that puts every job on the node with the fewest jobs at that instant.
    #[arg(long, value_delimiter = ',', default_values_t = ["p2c".to_owned(), "p2c+steal".to_owned(), "local+steal".to_owned(), "jsq".to_owned(), "random".to_owned(), "least-loaded".to_owned(), "local".to_owned()])]
    policies: Vec<String>,
    /// Load per slot.
    #[arg(long, default_value_t = 0.9)]
    rho: f64,
    /// Mean service times in milliseconds.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 100])]
    service_ms: Vec<u64>,
    /// Clusters larger than this run only at the shortest service time.
    #[arg(long, default_value_t = 100)]
    fresh_limit: usize,
    /// Jobs per node per run (at least 20,000 jobs and at most 60,000 in all).
    #[arg(long, default_value_t = 2500)]
    jobs_per_node: usize,
    /// Jobs per run, overriding --jobs-per-node.
    #[arg(long)]
    jobs: Option<usize>,
    /// Slots per node.
    #[arg(long, default_value_t = 1)]
    slots: u32,
    /// Seed of the cluster and the workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// With stealing: how often an idle node asks again, in milliseconds (the worker's
    /// `--steal-interval`).
    #[arg(long, default_value_t = 200)]
    steal_interval_ms: u64,
    /// With stealing: asks of another peer at once after an empty answer.
    #[arg(long, default_value_t = 1)]
    steal_retries: u32,
    /// With stealing: whether an empty answer carries the victim's load for the thief's map.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    steal_news: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.sizes.contains(&0) {
        bail!("--sizes: a cluster has at least one node");
    }
    if !(args.rho > 0.0 && args.rho < 1.0) {
        bail!("--rho must be between 0 and 1, not {}", args.rho);
    }
    // A policy, with "+steal" for idle nodes stealing queued jobs too; "jsq" the oracle.
    let jsq = args.policies.iter().any(|p| p == "jsq");
    let policies: Vec<(Policy, bool)> = args
        .policies
        .iter()
        .filter(|p| *p != "jsq")
        .map(|p| match p.strip_suffix("+steal") {
            Some(p) => p.parse().map(|p| (p, true)),
            None => p.parse().map(|p| (p, false)),
        })
        .collect::<Result<_, _>>()?;
    if policies.is_empty() && !jsq {
        bail!("--policies: name at least one");
    }
    let rho = args.rho;
    if args.service_ms.is_empty() || args.service_ms.contains(&0) {
        bail!("--service-ms needs service times above 0 ms");
    }
    if args.steal_interval_ms == 0 {
        bail!("--steal-interval-ms must be above 0");
    }
    let stealing = Stealing {
        interval: Duration::from_millis(args.steal_interval_ms),
        retries: args.steal_retries,
        news: args.steal_news == "on",
    };
    let stalest = *args.service_ms.iter().min().expect("not empty");
    let smallest = *args.sizes.iter().min().expect("clap gives at least one");
    println!(
        "rho {rho}, exponential service, {} slot(s) a node, gossip every 200 ms, seed {}",
        args.slots, args.seed
    );
    println!(
        "stealing: an idle node asks every {} ms and when a job ends, {} ask(s) again at once after an empty answer, victim's load with it {}",
        args.steal_interval_ms, args.steal_retries, args.steal_news
    );
    println!(
        "theory: random M/M/1 mean {:.2} p99 {:.1}; two choices n=inf mean {:.2}; times in mean service times",
        1.0 / (1.0 - rho),
        100f64.ln() / (1.0 - rho),
        supermarket(rho)
    );
    println!(
        "{:>6} {:>8} {:>10} {:>13} {:>8} {:>8} {:>10} {:>8} {:>9} {:>8} {:>7} {:>9} {:>9}",
        "nodes",
        "service",
        "staleness",
        "policy",
        "mean",
        "p99",
        "forwarded",
        "jobs",
        "virtual",
        "wall",
        "stolen",
        "asks/job",
        "empty/job"
    );
    for &nodes in &args.sizes {
        let jobs = args
            .jobs
            .unwrap_or_else(|| (nodes * args.jobs_per_node).clamp(20_000, 60_000));
        for &service_ms in &args.service_ms {
            if nodes > args.fresh_limit && service_ms != stalest {
                continue;
            }
            // Independent M/M/1 queues whatever the size: measured at the smallest only.
            let run: Vec<(Policy, bool)> = policies
                .iter()
                .copied()
                .filter(|(p, steal)| {
                    nodes == smallest || *steal || !matches!(p, Policy::Random | Policy::Local)
                })
                .collect();
            let workload = Workload {
                nodes,
                slots: args.slots,
                policy: Policy::P2c,
                steal: false,
                stealing,
                rho,
                service: Duration::from_millis(service_ms),
                jobs,
                warm_up: jobs / 10,
                seed: args.seed,
            };
            let mut rows: Vec<(String, f64, WorkloadResult)> = Vec::new();
            if !run.is_empty() {
                let started = Instant::now();
                let results = run_workloads(&workload, &run);
                let wall = started.elapsed().as_secs_f64() / run.len() as f64;
                for (&(policy, steal), r) in run.iter().zip(results) {
                    let name = format!("{policy}{}", if steal { "+steal" } else { "" });
                    rows.push((name, wall, r));
                }
            }
            if jsq {
                let started = Instant::now();
                let r = run_jsq(&workload);
                rows.push(("jsq".into(), started.elapsed().as_secs_f64(), r));
            }
            for (name, wall, r) in rows {
                println!(
                    "{nodes:>6} {:>6}ms {:>10.2} {:>13} {:>8.2} {:>8.2} {:>9.0}% {:>8} {:>8.0}s {:>7.1}s {:>6.0}% {:>9.2} {:>9.2}",
                    service_ms,
                    200.0 / service_ms as f64,
                    name,
                    r.mean,
                    r.p99,
                    r.forwarded * 100.0,
                    r.measured,
                    r.virtual_time.as_secs_f64(),
                    wall,
                    r.stolen * 100.0,
                    r.steals_per_job,
                    r.empty_per_job
                );
            }
        }
    }
    Ok(())
}

/// Mean sojourn of the power of two choices as n goes to infinity (Mitzenmacher).
fn supermarket(rho: f64) -> f64 {
    (1..64)
        .map(|i| rho.powf((2f64.powi(i) - 2.0) / 1.0))
        .take_while(|t| *t > 1e-12)
        .sum()
}
