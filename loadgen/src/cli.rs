//! The command line (`loadgen bench`, `loadgen demo`, `loadgen watch`) and what the two commands share: turning
//! the workload flags into a plan, and writing the table, the JSON and the chart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::bench::{self, Dispatch, RunOptions, Target};
use crate::chart::{self, Series};
use crate::client::{normalise_target, Http};
use crate::report::{self, Report, RunSummary};
use crate::theory::Reference;
use crate::workload::{
    rate_for_rho, EntryPattern, JobKindChoice, Length, PlannedJob, ServiceDist, WorkloadSpec,
};

/// `loadgen`: drive a Hearsay cluster with a reproducible workload and see how well it balances.
#[derive(Debug, Parser)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Drive an existing cluster and report how the jobs were balanced.
    Bench(BenchArgs),
    /// Start a local cluster of `worker` processes and compare placement policies on it.
    Demo(crate::demo::DemoArgs),
    /// Show a worker's load map in the terminal, refreshing in place.
    Watch(crate::watch::WatchArgs),
}

/// The workload: a seed and a shape.
#[derive(Debug, Clone, Args)]
pub struct WorkloadArgs {
    /// Seed of every random draw of the workload [default: from the OS, printed so the run can
    /// be repeated].
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,

    /// Mean arrivals per second (Poisson).
    #[arg(long, value_name = "JOBS_PER_S", conflicts_with = "rho")]
    pub rate: Option<f64>,

    /// Target load per slot, below 1: the arrival rate is rho x slots / mean service time,
    /// with the slots read from the targets' /v1/cluster.
    #[arg(long, value_name = "RHO")]
    pub rho: Option<f64>,

    /// Service times: exp:MEAN_MS (exponential), const:MS, or bimodal:P:A_MS:B_MS (A_MS with
    /// probability P, else B_MS; bimodal:0.9:50:500 is 90% 50 ms and 10% 500 ms).
    #[arg(long, value_name = "DIST", default_value = "exp:100")]
    pub service: ServiceDist,

    /// What the jobs do: sleep (hold a slot) or spin (also burn a CPU).
    #[arg(long, value_enum, default_value_t = JobKindChoice::Sleep)]
    pub kind: JobKindChoice,

    /// How many jobs.
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub jobs: Option<usize>,

    /// Send jobs for this many seconds instead of a fixed number.
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,

    /// Where jobs enter the cluster: spread (a random worker each) or hot (all at the first).
    #[arg(long, value_enum, default_value_t = EntryPattern::Spread)]
    pub entry: EntryPattern,
}

/// Where results go, and how requests are made.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// How long one job may take from submission to its outcome, in seconds.
    #[arg(long, value_name = "S", default_value_t = 120.0)]
    pub request_timeout: f64,

    /// No progress bar (there is none anyway when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// `loadgen bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The workers' HTTP addresses, comma-separated (http://127.0.0.1:8080 or 127.0.0.1:8080).
    #[arg(long, value_name = "URL,...", value_delimiter = ',', required = true)]
    pub targets: Vec<String>,

    /// How jobs are placed, comma-separated to compare several in one invocation: cluster
    /// (sent to the entry worker, which places it), random or jsq (placed by loadgen, not
    /// forwarded).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "cluster")]
    pub dispatch: Vec<Dispatch>,

    /// The workload.
    #[command(flatten)]
    pub workload: WorkloadArgs,

    /// Request settings and the progress bar.
    #[command(flatten)]
    pub output: OutputArgs,

    /// Write the report as JSON here.
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,

    /// Draw the sojourn-time distributions, with the theory, as SVG here.
    #[arg(long, value_name = "PATH")]
    pub chart: Option<PathBuf>,

    /// The workers' API token file (their `--api-token-file`): sent as `Authorization: Bearer`.
    #[arg(long, value_name = "PATH", env = "HEARSAY_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
}

/// A workload expanded for a set of targets.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The workload.
    pub spec: WorkloadSpec,
    /// Its jobs.
    pub jobs: Vec<PlannedJob>,
    /// Slots across the targets.
    pub slots: u32,
    /// Each target's slots, in the targets' order.
    pub node_slots: Vec<u32>,
    /// The load per slot it asks for.
    pub rho: f64,
}

/// Checks a load per slot.
pub fn check_rho(rho: f64) -> Result<()> {
    if !(rho.is_finite() && rho > 0.0) {
        bail!("--rho must be a number between 0 and 1, not {rho}");
    }
    if rho >= 1.0 {
        bail!(
            "--rho {rho} is at or above 1: the cluster cannot take that rate (the queues would \
             grow without bound); use a value below 1, e.g. 0.9"
        );
    }
    Ok(())
}

/// Checks the flags that need no cluster, so that a mistake is reported before anything starts.
pub fn check_workload(args: &WorkloadArgs) -> Result<()> {
    if let Some(rho) = args.rho {
        check_rho(rho)?;
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of jobs per second, not {rate}");
        }
    }
    if args.jobs == Some(0) {
        bail!("--jobs must be at least 1");
    }
    if let Some(s) = args.duration {
        if !(s.is_finite() && s > 0.0) {
            bail!("--duration must be a positive number of seconds, not {s}");
        }
    }
    Ok(())
}

/// Expands the workload for `targets`; `default_rho` and `default_jobs` apply when the flags
/// do not say.
pub fn plan(
    args: &WorkloadArgs,
    seed: u64,
    targets: &[Target],
    default_rho: f64,
    default_jobs: usize,
) -> Result<Plan> {
    check_workload(args)?;
    let slots: u32 = targets.iter().map(|t| t.slots).sum();
    if slots == 0 {
        bail!("the targets report no job slots");
    }
    let mean_ms = args.service.mean_ms();
    let (rate, rho) = match (args.rate, args.rho) {
        (Some(rate), _) => {
            let rho = rate * mean_ms / 1000.0 / f64::from(slots);
            if rho >= 1.0 {
                bail!(
                    "--rate {rate} jobs/s with a mean service time of {mean_ms} ms is rho = \
                     {rho:.2} over {slots} slots: the cluster cannot take that rate (at most \
                     {:.1} jobs/s); lower --rate",
                    rate_for_rho(1.0, slots, mean_ms)
                );
            }
            (rate, rho)
        }
        (None, rho) => {
            let rho = rho.unwrap_or(default_rho);
            check_rho(rho)?;
            (rate_for_rho(rho, slots, mean_ms), rho)
        }
    };
    let length = match (args.jobs, args.duration) {
        (Some(n), _) => Length::Jobs(n),
        (None, Some(s)) => Length::Seconds(s),
        (None, None) => Length::Jobs(default_jobs),
    };
    let spec = WorkloadSpec {
        seed,
        rate_per_s: rate,
        service: args.service,
        kind: args.kind,
        entry: args.entry,
        targets: targets.len(),
        length,
    };
    let jobs = spec.generate()?;
    if jobs.is_empty() {
        bail!("the workload has no jobs (is --duration shorter than one arrival?)");
    }
    Ok(Plan {
        spec,
        jobs,
        slots,
        node_slots: targets.iter().map(|t| t.slots).collect(),
        rho,
    })
}

/// The seed to use: the one given, or a fresh one from the OS.
pub fn seed_or_random(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(rand::random)
}

/// The request timeout as a duration.
pub fn request_timeout(output: &OutputArgs) -> Result<Duration> {
    let s = output.request_timeout;
    if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
        bail!("--request-timeout must be a number of seconds above 0 (at most a day), not {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

/// The report of a set of runs over one plan.
pub fn build_report(plan: &Plan, runs: Vec<RunSummary>) -> Report {
    let theory = plan
        .spec
        .service
        .is_exponential()
        .then(|| Reference::at(plan.rho, &plan.node_slots));
    Report {
        tool: "hearsay-loadgen",
        version: env!("CARGO_PKG_VERSION"),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        workload: plan.spec.clone(),
        mean_service_ms: plan.spec.service.mean_ms(),
        slots: plan.slots,
        rho: plan.rho,
        theory,
        runs,
    }
}

/// Prints the table and the warnings, and writes the JSON and the chart where asked.
pub fn publish(report: &Report, json: Option<&Path>, svg: Option<&Path>) -> Result<()> {
    println!();
    print!("{}", report::table(report));
    match &report.theory {
        Some(t) => println!("\n{}", t.note()),
        None => println!(
            "\nno theory rows: they assume exponential service, and {} is not",
            report.workload.service
        ),
    }
    for warning in report.runs.iter().flat_map(RunSummary::warnings) {
        eprintln!("warning: {warning}");
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report).context("cannot encode the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("report: {}", path.display());
    }
    if let Some(path) = svg {
        let series: Vec<Series<'_>> = report
            .runs
            .iter()
            .map(|r| Series {
                label: &r.label,
                sorted: &r.sorted_sojourn_units,
            })
            .collect();
        let title = format!(
            "Sojourn time, {} jobs of {} at rho {:.2} over {} slots",
            report.runs.first().map_or(0, |r| r.planned),
            report.workload.service,
            report.rho,
            report.slots
        );
        std::fs::write(path, chart::render(&title, &series, report.theory.as_ref()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("chart: {}", path.display());
    }
    Ok(())
}

/// Fails when no run had a single job succeed: the numbers would mean nothing.
pub fn check_any_success(report: &Report) -> Result<()> {
    if report.runs.iter().all(|r| r.succeeded == 0) {
        bail!("no job succeeded in any run; see the warnings above");
    }
    Ok(())
}

/// `loadgen bench`.
pub async fn bench(args: BenchArgs) -> Result<()> {
    check_workload(&args.workload)?;
    let timeout = request_timeout(&args.output)?;
    if args.workload.rate.is_none() && args.workload.rho.is_none() {
        bail!("give the load as --rho (e.g. 0.8) or --rate (jobs per second)");
    }
    let bases = args
        .targets
        .iter()
        .map(|t| normalise_target(t).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()
        .context("--targets")?;
    let http = Http::default()
        .with_token_file(args.api_token_file.as_deref())
        .map_err(anyhow::Error::msg)
        .context("--api-token-file")?;
    let targets = bench::discover(&http, &bases).await?;
    let seed = seed_or_random(args.workload.seed);
    let plan = plan(&args.workload, seed, &targets, 0.8, 1000)?;
    println!(
        "seed {seed} (repeat with --seed {seed}); {} jobs of {} at {:.1} jobs/s = rho {:.2} over \
         {} slots on {} workers",
        plan.jobs.len(),
        plan.spec.service,
        plan.spec.rate_per_s,
        plan.rho,
        plan.slots,
        targets.len()
    );
    let mut dispatches: Vec<Dispatch> = Vec::new();
    for d in &args.dispatch {
        if !dispatches.contains(d) {
            dispatches.push(*d);
        }
    }
    let mut summaries = Vec::new();
    for dispatch in dispatches {
        let options = RunOptions {
            label: match dispatch {
                Dispatch::Cluster => "cluster".into(),
                other => format!("{} (loadgen)", other.as_str()),
            },
            dispatch,
            worker_policy: None,
            kind: args.workload.kind,
            request_timeout: timeout,
            progress: !args.output.no_progress,
        };
        // Only the workers' own placement steals; loadgen's baselines send `?place=here`.
        let bases: Vec<String> = targets.iter().map(|t| t.base.clone()).collect();
        let counting = dispatch == Dispatch::Cluster;
        let before = match counting {
            true => crate::moves::read(&http, &bases).await,
            false => Vec::new(),
        };
        let records = bench::run(&http, &targets, &plan.jobs, &options).await;
        let mut summary = RunSummary::of(&records, plan.spec.service.mean_ms());
        if counting {
            let steals = crate::moves::between(&before, &crate::moves::read(&http, &bases).await);
            summary.steals = (steals.asked > 0).then_some(steals);
        }
        println!(
            "{}: {} of {} jobs succeeded in {:.1} s",
            summary.label, summary.succeeded, summary.sent, summary.wall_s
        );
        summaries.push(summary);
    }
    let report = build_report(&plan, summaries);
    publish(&report, args.out.as_deref(), args.chart.as_deref())?;
    check_any_success(&report)
}
