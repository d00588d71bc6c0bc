//! Measures the gossip protocol in the simulated network (`hearsay_tests::sim`) at its default
//! settings, and prints the numbers the README quotes: the size of a load report on the wire,
//! datagram sizes, gossip bandwidth per node, how many rounds an update takes to reach everyone,
//! how long a crash takes to be detected, and how long a graceful leave takes to be seen.
//!
//! ```text
//! cargo run --release -p hearsay-tests --bin gossip-sim
//! cargo run --release -p hearsay-tests --bin gossip-sim -- --seeds 10 --json results.json
//! ```
//!
//! `gossip-sim scale --nodes N --seed S --json PATH` is the scale run instead
//! ([`hearsay_tests::scale`]): N nodes joining through a few seeds, a job workload, crashes, a
//! leave, a restart, a partition and loss, summed up as a table and a JSON file.
//!
//! Every number comes from virtual time, so a run is the same on any machine; `--seeds` sets how
//! many independent runs the crash, leave and update measurements average over. The 1,000-node
//! cluster takes most of the run (about 9 minutes on 2 cores in release);
//! `--bandwidth-sizes 20 --update-sizes 100` leaves it out.

use std::collections::btree_map::{BTreeMap, Entry};
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use hearsay_shared::wire;
use hearsay_shared::{LoadVector, Verdict};
use hearsay_tests::scale::ScaleConfig;
use hearsay_tests::sim::{Sim, SimConfig, Traffic};
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(about = "Measure Hearsay's gossip in a simulated network")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Independent runs (seeds) for the crash, leave and update measurements.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
    seeds: u64,
    /// Cluster sizes for the bandwidth measurement.
    #[arg(long, value_delimiter = ',', default_values_t = [20, 1000])]
    bandwidth_sizes: Vec<usize>,
    /// Cluster sizes for the update measurement.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    update_sizes: Vec<usize>,
    /// Cluster size for the crash and leave measurements.
    #[arg(long, default_value_t = 20)]
    detect_size: usize,
    /// Loss probability on every link in the crash and leave measurements.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Also run 100 nodes at 5% loss for this many rounds and count false deaths (10,000 take
    /// about a minute and a half).
    #[arg(long, default_value_t = 0)]
    soak_rounds: u32,
    /// Also write the results as JSON to this file ("-" for standard output).
    #[arg(long)]
    json: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The scale run: N nodes joining, a job workload placed from their maps, faults.
    Scale(ScaleArgs),
}

#[derive(Debug, clap::Args)]
struct ScaleArgs {
    /// Cluster size.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Seeds every random choice of the run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Virtual seconds of workload after the join.
    #[arg(long, default_value_t = 120.0)]
    duration_s: f64,
    /// Loss probability on every link.
    #[arg(long, default_value_t = 0.01)]
    loss: f64,
    /// Load per slot of the job workload.
    #[arg(long, default_value_t = 0.9)]
    rho: f64,
    /// Slots per node.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    slots: u32,
    /// Mean service time of a job, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    service_ms: u64,
    /// Nodes crashed during the run.
    #[arg(long, default_value_t = 3)]
    crashes: usize,
    /// Leave the partition out.
    #[arg(long)]
    no_partition: bool,
    /// Write the JSON summary to this file ("-" for standard output).
    #[arg(long)]
    json: Option<String>,
}

fn scale(args: &ScaleArgs) -> Result<()> {
    if !(0.0..1.0).contains(&args.loss) {
        bail!("--loss must be in [0, 1)");
    }
    if !(args.rho > 0.0 && args.rho < 1.0) {
        bail!("--rho must be in (0, 1)");
    }
    if !(args.duration_s.is_finite() && args.duration_s >= 10.0) {
        bail!("--duration-s must be at least 10");
    }
    if args.nodes < args.crashes + 6 || args.nodes > 64_000 {
        bail!(
            "--nodes must be between {} (3 seeds, the crashes, a leaver and two more) and 64000",
            args.crashes + 6
        );
    }
    let config = ScaleConfig {
        loss: args.loss,
        duration: Duration::from_secs_f64(args.duration_s),
        rho: args.rho,
        slots: args.slots,
        service: Duration::from_millis(args.service_ms),
        crashes: args.crashes,
        partition: !args.no_partition,
        ..ScaleConfig::new(args.nodes, args.seed)
    };
    let out = hearsay_tests::scale::run(&config);
    let f = |v: &Value| v.as_f64().map_or("-".to_owned(), |x| format!("{x:.2}"));
    println!(
        "## Scale run: {} nodes, seed {}, {}% loss",
        args.nodes,
        args.seed,
        args.loss * 100.0
    );
    let rows = [
        ("virtual time (s)", f(&out["virtual_s"])),
        ("wall time (s)", f(&out["wall_s"])),
        ("join: every node sees 99% alive (s)", f(&out["join_s"])),
        (
            "membership change to 99%, p99 (rounds)",
            f(&out["membership_rounds_p99"]),
        ),
        (
            "gossip bytes/node/s mean / max",
            format!(
                "{} / {}",
                f(&out["bytes_per_node_per_s"]["mean"]),
                f(&out["bytes_per_node_per_s"]["max"])
            ),
        ),
        (
            "kill -9 until every node has it dead (s)",
            f(&out["detect_all_s"]),
        ),
        (
            "false suspicions / false deaths",
            format!("{} / {}", out["false_suspicions"], out["false_deaths"]),
        ),
        (
            "false deaths during the join",
            out["join_false_deaths"].to_string(),
        ),
        ("partition healed in (s)", f(&out["partition_heal_s"])),
        (
            "age of reports used p50 / p99 (s)",
            format!(
                "{} / {}",
                f(&out["load_age_s"]["p50"]),
                f(&out["load_age_s"]["p99"])
            ),
        ),
        (
            "sojourn mean / p99 (service times)",
            format!(
                "{} / {}",
                f(&out["sojourn"]["mean"]),
                f(&out["sojourn"]["p99"])
            ),
        ),
        (
            "same jobs: JSQ oracle / random mean",
            format!(
                "{} / {}",
                f(&out["sojourn"]["jsq_mean"]),
                f(&out["sojourn"]["random_mean"])
            ),
        ),
        (
            "jobs / lost to crashes / forwarded",
            format!(
                "{} / {} / {}",
                out["jobs"],
                out["jobs_lost_to_crashes"],
                f(&out["forwarded_fraction"])
            ),
        ),
    ];
    for (name, value) in rows {
        println!("{name:<44} {value}");
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&out)?;
        if path == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text).with_context(|| format!("writing {path}"))?;
        }
    }
    Ok(())
}

/// Summary of a few measurements.
#[derive(Debug, Clone, Copy)]
struct Spread {
    min: f64,
    mean: f64,
    max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let mut spread = Spread {
            min: f64::INFINITY,
            mean: 0.0,
            max: f64::NEG_INFINITY,
        };
        for &v in values {
            spread.min = spread.min.min(v);
            spread.max = spread.max.max(v);
            spread.mean += v / values.len() as f64;
        }
        spread
    }
    fn json(self) -> Value {
        json!({ "min": self.min, "mean": self.mean, "max": self.max })
    }
    fn show(self, unit: &str) -> String {
        format!(
            "{:.2} / {:.2} / {:.2} {unit}",
            self.min, self.mean, self.max
        )
    }
}

/// Clusters above this size are checked once a round rather than at every instant, converge
/// when every node knows every other and believes none dead (at any moment a few of their
/// million pairs are suspect), and are built once for all the measurements that use them.
const LARGE: usize = 200;

/// Runs until the cluster has converged.
fn converge(sim: &mut Sim) -> Result<Duration> {
    let limit = Duration::from_secs(120);
    let step = sim.interval();
    let took = if sim.node_count() > LARGE {
        sim.run_until_sampled(limit, step, Sim::all_know_all)
    } else {
        sim.run_until(limit, Sim::all_see_all_alive)
    };
    took.with_context(|| format!("{} nodes did not converge in {limit:?}", sim.node_count()))
}

fn converged(nodes: usize, seed: u64, loss: f64, warm_up: Duration) -> Result<Sim> {
    let mut sim = Sim::new(SimConfig::new(nodes, seed).with_loss(loss));
    converge(&mut sim)?;
    sim.run_for(warm_up);
    Ok(sim)
}

/// Large clusters, built once (seed 1, no loss, 10 s past convergence) and shared by the
/// measurements.
#[derive(Debug, Default)]
struct LargeClusters(BTreeMap<usize, Sim>);

impl LargeClusters {
    fn get(&mut self, nodes: usize) -> Result<&mut Sim> {
        Ok(match self.0.entry(nodes) {
            Entry::Occupied(built) => built.into_mut(),
            Entry::Vacant(slot) => slot.insert(converged(nodes, 1, 0.0, Duration::from_secs(10))?),
        })
    }
}

/// What one load report costs on the wire, measured on the reports a converged cluster holds.
fn report_sizes(out: &mut String, results: &mut Value) -> Result<()> {
    let sim = converged(20, 1, 0.0, Duration::from_secs(10))?;
    let core = sim.core(0).context("node 0 runs")?;
    let own = core.own_report();
    let others: Vec<_> = core
        .map()
        .reports()
        .filter(|r| r.node != own.node)
        .cloned()
        .collect();
    let (alone, _) = wire::encode_push(&own, [], wire::DEFAULT_BUDGET)?;
    let (full, carried) = wire::encode_push(&own, &others, wire::DEFAULT_BUDGET)?;
    let per_report = (full.len() - alone.len()) as f64 / carried as f64;
    let (digest, listed) = wire::encode_digest(
        &own,
        false,
        others.iter().map(|r| wire::DigestEntry {
            node: r.node.clone(),
            version: r.version(),
        }),
        wire::DEFAULT_BUDGET,
    )?;
    let per_entry = (digest.len() - alone.len()) as f64 / listed as f64;
    writeln!(out, "## Wire")?;
    writeln!(
        out,
        "load report (a relayed one, in a push):  {per_report:.1} bytes   (node id {:?}, IPv4 addresses, incarnation = start time in ms)",
        own.node.as_str()
    )?;
    writeln!(
        out,
        "push with only the sender's report:      {} bytes (4 of envelope)",
        alone.len()
    )?;
    writeln!(
        out,
        "digest entry (node id and version):      {per_entry:.1} bytes"
    )?;
    writeln!(
        out,
        "reports per {}-byte datagram:          {}",
        wire::DEFAULT_BUDGET,
        ((wire::DEFAULT_BUDGET - alone.len()) as f64 / per_report) as usize + 1
    )?;
    results["wire"] = json!({
        "bytes_per_report": per_report,
        "bytes_push_own_report_only": alone.len(),
        "bytes_per_digest_entry": per_entry,
    });
    Ok(())
}

/// Gossip bandwidth per node in steady state.
fn bandwidth(
    sizes: &[usize],
    large: &mut LargeClusters,
    out: &mut String,
    results: &mut Value,
) -> Result<()> {
    writeln!(
        out,
        "\n## Bandwidth at the defaults (200 ms rounds, fanout 3, 1400-byte budget)"
    )?;
    writeln!(
        out,
        "{:>6}  {:>14}  {:>14}  {:>12}  {:>14}  {:>10}",
        "nodes", "sent B/s/node", "recv B/s/node", "max sent", "datagrams/s", "size mean/max"
    )?;
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for &n in sizes {
        let mut small = None;
        let sim = if n > LARGE {
            large.get(n)?
        } else {
            small.insert(converged(n, 1, 0.0, Duration::from_secs(10))?)
        };
        sim.reset_counters();
        let window = if n > LARGE {
            Duration::from_secs(20)
        } else {
            Duration::from_secs(60)
        };
        sim.run_for(window);
        let secs = window.as_secs_f64();
        let total: Traffic = sim.total_traffic();
        let max_sent = (0..n).map(|i| sim.traffic(i).bytes_sent).max().unwrap_or(0) as f64 / secs;
        let sent = total.bytes_sent as f64 / secs / n as f64;
        let received = total.bytes_received as f64 / secs / n as f64;
        let datagrams = total.datagrams_sent as f64 / secs / n as f64;
        let mean_size = total.bytes_sent as f64 / total.datagrams_sent as f64;
        writeln!(
            out,
            "{n:>6}  {sent:>14.0}  {received:>14.0}  {max_sent:>12.0}  {datagrams:>14.1}  {mean_size:>5.0} / {}",
            total.largest_sent
        )?;
        let deaths = sim.false_deaths().len();
        let suspicions = sim
            .events()
            .iter()
            .filter(|e| e.is_false_suspicion())
            .count();
        notes.push(format!(
            "{n} nodes: {deaths} false deaths and {suspicions} false suspicions in the {:.0} s simulated",
            sim.now().as_secs_f64()
        ));
        rows.push(json!({
            "nodes": n,
            "false_deaths": deaths,
            "false_suspicions": suspicions,
            "window_s": secs,
            "bytes_sent_per_s_per_node": sent,
            "bytes_received_per_s_per_node": received,
            "max_bytes_sent_per_s_one_node": max_sent,
            "datagrams_sent_per_s_per_node": datagrams,
            "datagram_bytes_mean": mean_size,
            "datagram_bytes_max": total.largest_sent,
        }));
    }
    for note in notes {
        writeln!(out, "{note}")?;
    }
    results["bandwidth"] = Value::Array(rows);
    Ok(())
}

/// Rounds until a fresh load report reaches 99% and 100% of the other nodes.
fn updates(
    sizes: &[usize],
    seeds: u64,
    large: &mut LargeClusters,
    out: &mut String,
    results: &mut Value,
) -> Result<()> {
    writeln!(
        out,
        "\n## Rounds for an update to reach the cluster (min / mean / max)"
    )?;
    let mut rows = Vec::new();
    for &n in sizes {
        let (mut to_99, mut to_all) = (Vec::new(), Vec::new());
        let step = Duration::from_millis(if n > LARGE { 10 } else { 1 });
        // A large cluster is measured once, with more updates.
        let (seeds, updates_per_seed) = if n > LARGE { (1, 5) } else { (seeds, 5) };
        for seed in 0..seeds {
            let mut small = None;
            let sim = if n > LARGE {
                large.get(n)?
            } else {
                small.insert(converged(n, seed, 0.0, Duration::from_secs(5))?)
            };
            for k in 0..updates_per_seed {
                let node = (seed as usize * 7 + k * 13) % n;
                let load = LoadVector {
                    queued: 1 + k as u32,
                    ..LoadVector::idle(4)
                };
                let version = sim.publish_load(node, load);
                let needed = (((n - 1) as f64 * 0.99) as usize).max(1);
                let limit = Duration::from_secs(30);
                let t99 = sim
                    .run_until_sampled(limit, step, |s| s.count_holding(node, version) >= needed)
                    .context("an update did not reach 99%")?;
                let rest = sim
                    .run_until_sampled(limit, step, |s| s.all_hold(node, version))
                    .context("an update did not reach everyone")?;
                to_99.push(sim.rounds(t99));
                to_all.push(sim.rounds(t99 + rest));
            }
        }
        let (s99, sall) = (Spread::of(&to_99), Spread::of(&to_all));
        writeln!(
            out,
            "{n:>6} nodes: 99% in {}, 100% in {}   ({} updates; log2 n = {:.1})",
            s99.show("rounds"),
            sall.show("rounds"),
            to_all.len(),
            (n as f64).log2()
        )?;
        rows.push(json!({
            "nodes": n,
            "updates": to_all.len(),
            "rounds_to_99_percent": s99.json(),
            "rounds_to_all": sall.json(),
        }));
    }
    results["updates"] = Value::Array(rows);
    Ok(())
}

/// Time from a crash until every peer marks the node dead (and suspect or dead), time for a
/// graceful leave to be seen by all, and false deaths meanwhile.
fn detection(n: usize, seeds: u64, loss: f64, out: &mut String, results: &mut Value) -> Result<()> {
    let (mut dead, mut suspected, mut left) = (Vec::new(), Vec::new(), Vec::new());
    let (mut false_deaths, mut false_suspicions) = (0, 0);
    let mut watched = Duration::ZERO;
    for seed in 0..seeds {
        let mut sim = converged(n, seed, loss, Duration::from_secs(30))?;
        let limit = Duration::from_secs(30);
        let victim = (seed as usize * 5 + 3) % n;
        sim.crash(victim);
        let t_suspect = sim
            .run_until(limit, |s| {
                s.running()
                    .filter(|&o| o != victim)
                    .all(|o| matches!(s.verdict(o, victim), Some(Verdict::Suspect | Verdict::Dead)))
            })
            .context("a crash was never suspected by all")?;
        let t_dead = sim
            .run_until(limit, |s| s.all_see(victim, Verdict::Dead))
            .context("a crash was never detected by all")?;
        suspected.push(t_suspect.as_secs_f64());
        dead.push((t_suspect + t_dead).as_secs_f64());
        sim.run_for(Duration::from_secs(5));
        let leaver = (victim + n / 2) % n;
        sim.leave(leaver);
        let t_left = sim
            .run_until(limit, |s| s.all_see(leaver, Verdict::Left))
            .context("a leave was never seen by all")?;
        left.push(t_left.as_secs_f64() * 1000.0);
        sim.run_for(Duration::from_secs(5));
        false_deaths += sim.false_deaths().len();
        false_suspicions += sim
            .events()
            .iter()
            .filter(|e| e.is_false_suspicion())
            .count();
        watched += sim.now();
    }
    let (d, s, l) = (Spread::of(&dead), Spread::of(&suspected), Spread::of(&left));
    writeln!(
        out,
        "\n## Failure detection and leave, {n} nodes, {}% loss, {seeds} seeds (min / mean / max)",
        loss * 100.0
    )?;
    writeln!(
        out,
        "kill -9 until every peer marks it dead:     {}",
        d.show("s")
    )?;
    writeln!(
        out,
        "kill -9 until every peer suspects it:       {}",
        s.show("s")
    )?;
    writeln!(
        out,
        "graceful leave until every peer has it left: {}",
        l.show("ms")
    )?;
    writeln!(
        out,
        "live nodes declared dead: {false_deaths}; suspected: {false_suspicions}  (over {:.0} s of virtual time)",
        watched.as_secs_f64()
    )?;
    results["detection"] = json!({
        "nodes": n,
        "loss": loss,
        "seeds": seeds,
        "crash_to_all_dead_s": d.json(),
        "crash_to_all_suspect_s": s.json(),
        "leave_to_all_left_ms": l.json(),
        "false_deaths": false_deaths,
        "false_suspicions": false_suspicions,
        "virtual_seconds_watched": watched.as_secs_f64(),
    });
    Ok(())
}

/// False suspicions and deaths of 100 nodes at 5% loss over `rounds` rounds.
fn soak(rounds: u32, out: &mut String, results: &mut Value) -> Result<()> {
    let mut sim = Sim::new(SimConfig::new(100, 4).with_loss(0.05));
    sim.run_rounds(rounds);
    let deaths = sim.false_deaths().len();
    let suspicions = sim
        .events()
        .iter()
        .filter(|e| e.is_false_suspicion())
        .count();
    writeln!(out, "\n## Soak: 100 nodes, 5% loss, {rounds} rounds")?;
    writeln!(
        out,
        "live nodes declared dead: {deaths}; suspected: {suspicions}; lost datagrams: {}",
        sim.drops().lost
    )?;
    results["soak"] = json!({
        "nodes": 100,
        "loss": 0.05,
        "rounds": rounds,
        "false_deaths": deaths,
        "false_suspicions": suspicions,
    });
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Command::Scale(scale_args)) = &args.command {
        return scale(scale_args);
    }
    if !(0.0..1.0).contains(&args.loss) {
        bail!("--loss must be in [0, 1)");
    }
    let mut out = String::new();
    let mut results = json!({});
    report_sizes(&mut out, &mut results)?;
    print!("{out}");
    out.clear();
    let mut large = LargeClusters::default();
    bandwidth(&args.bandwidth_sizes, &mut large, &mut out, &mut results)?;
    print!("{out}");
    out.clear();
    updates(
        &args.update_sizes,
        args.seeds,
        &mut large,
        &mut out,
        &mut results,
    )?;
    drop(large);
    print!("{out}");
    out.clear();
    detection(
        args.detect_size,
        args.seeds,
        args.loss,
        &mut out,
        &mut results,
    )?;
    print!("{out}");
    if args.soak_rounds > 0 {
        out.clear();
        soak(args.soak_rounds, &mut out, &mut results)?;
        print!("{out}");
    }
    if let Some(path) = args.json {
        let text = serde_json::to_string_pretty(&results)?;
        if path == "-" {
            println!("{text}");
        } else {
            std::fs::write(&path, text).with_context(|| format!("writing {path}"))?;
        }
    }
    Ok(())
}
