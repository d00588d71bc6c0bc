//! `loadgen demo`: one command that starts a local cluster and compares placement policies on
//! one seeded workload.
//!
//! The workers' policy is a start-up flag, so each worker policy gets a fresh cluster
//! (`--policy X`). loadgen's own baselines (`random`, `jsq`) send every job straight to the
//! worker they choose, marked as already forwarded so that the worker never forwards it; they run
//! on a cluster whose workers run `local` (which never forwards either), reusing the `local` run's
//! cluster when it is the one running.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hearsay_scheduler::Policy;

use crate::bench::{self, Dispatch, RunOptions};
use crate::cli::{self, OutputArgs, WorkloadArgs};
use crate::client::Http;
use crate::cluster::{find_worker_bin, ClusterSpec, LocalCluster};
use crate::moves;
use crate::report::RunSummary;

/// One run of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoRun {
    /// Jobs enter at the workers, which place them with this policy, and steal (`true`: the
    /// workers run `--steal on`) or not.
    Workers(Policy, bool),
    /// loadgen places every job itself, forwarding off.
    Loadgen(Dispatch),
}

impl DemoRun {
    /// The run's name in the table.
    pub fn label(self) -> String {
        match self {
            DemoRun::Workers(Policy::Random, steal) => {
                format!("worker-random{}", if steal { "+steal" } else { "" })
            }
            DemoRun::Workers(p, true) => format!("{}+steal", p.as_str()),
            DemoRun::Workers(p, false) => p.as_str().into(),
            DemoRun::Loadgen(d) => format!("{} (loadgen)", d.as_str()),
        }
    }

    /// The policy the workers must run, and whether they steal.
    fn worker_policy(self) -> (Policy, bool) {
        match self {
            DemoRun::Workers(p, steal) => (p, steal),
            DemoRun::Loadgen(_) => (Policy::Local, false),
        }
    }
}

impl fmt::Display for DemoRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// The names `--runs` takes.
const RUN_NAMES: &str = "p2c, least-loaded, local, round-robin, worker-random (worker policies, \
     each also with +steal, e.g. p2c+steal), random, jsq (loadgen)";

impl FromStr for DemoRun {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, steal) = match s.strip_suffix("+steal") {
            Some(name) => (name, true),
            None => (s, false),
        };
        match (name, steal) {
            ("random", false) => Ok(DemoRun::Loadgen(Dispatch::Random)),
            ("jsq", false) => Ok(DemoRun::Loadgen(Dispatch::Jsq)),
            ("worker-random", _) => Ok(DemoRun::Workers(Policy::Random, steal)),
            // "random" as a worker policy is spelt worker-random, to tell it from loadgen's.
            (other, _) => match other.parse::<Policy>() {
                Ok(Policy::Random) | Err(_) => {
                    Err(format!("unknown run {s:?}; expected one of {RUN_NAMES}"))
                }
                Ok(policy) => Ok(DemoRun::Workers(policy, steal)),
            },
        }
    }
}

/// `loadgen demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// The workload [demo defaults: --rho 0.9 --jobs 2000; service exp:100, entry spread].
    #[command(flatten)]
    pub workload: WorkloadArgs,

    /// The runs to compare, in order, comma-separated: p2c, least-loaded, local, round-robin,
    /// worker-random (the workers' policies, with --steal off; NAME+steal with --steal on),
    /// random, jsq (placed by loadgen).
    #[arg(
        long,
        value_name = "RUN,...",
        value_delimiter = ',',
        default_value = "p2c+steal,p2c,local+steal,least-loaded,local,random,jsq"
    )]
    pub runs: Vec<DemoRun>,

    /// How many workers.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub workers: usize,

    /// Job slots per worker.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub slots: u32,

    /// The `worker` executable [default: the one beside loadgen].
    #[arg(long, value_name = "PATH")]
    pub worker_bin: Option<PathBuf>,

    /// The first worker's HTTP port on 127.0.0.1; the others follow it, and the gossip ports
    /// start 1000 above.
    #[arg(long, value_name = "PORT", default_value_t = 18400)]
    pub base_port: u16,

    /// The workers' gossip interval in milliseconds [default: the workers' own, 200].
    #[arg(long, value_name = "MS")]
    pub gossip_interval: Option<u64>,

    /// How long to wait for every worker to see every other alive, in seconds.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    pub converge_timeout: f64,

    /// Where the report, the chart and the workers' logs go.
    #[arg(long, value_name = "DIR", default_value = "loadgen-demo")]
    pub out_dir: PathBuf,

    /// Leave the last cluster running, for watching its dashboard, until ctrl-c.
    #[arg(long)]
    pub keep: bool,

    /// Request settings and the progress bar.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Runs the demo.
pub async fn demo(args: DemoArgs) -> Result<()> {
    // Everything that needs no process is checked first.
    cli::check_workload(&args.workload)?;
    let timeout = cli::request_timeout(&args.output)?;
    let converge = Duration::try_from_secs_f64(args.converge_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--converge-timeout must be a positive number of seconds")?;
    if args.runs.is_empty() {
        bail!("--runs names no run");
    }
    let worker_bin = find_worker_bin(args.worker_bin.as_deref())?;
    let seed = cli::seed_or_random(args.workload.seed);
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let spec = ClusterSpec {
        worker_bin,
        workers: args.workers,
        slots: args.slots,
        base_port: args.base_port,
        gossip_interval_ms: args.gossip_interval,
        seed,
        log_dir: args.out_dir.join("logs"),
    };
    spec.validate()?;
    let http = Http::default();

    let mut cluster: Option<LocalCluster> = None;
    let mut plan = None;
    let mut summaries: Vec<RunSummary> = Vec::new();
    for (i, run) in args.runs.iter().copied().enumerate() {
        let (policy, steal) = run.worker_policy();
        let reuse = cluster
            .as_ref()
            .is_some_and(|c| c.policy() == policy.as_str() && c.steals() == steal);
        if !reuse {
            if let Some(old) = cluster.take() {
                old.stop().await;
            }
            println!(
                "starting {} workers ({} slot{} each, policy {policy}, steal {}) on 127.0.0.1:{}..",
                spec.workers,
                spec.slots,
                if spec.slots == 1 { "" } else { "s" },
                if steal { "on" } else { "off" },
                spec.base_port
            );
            let tag = format!("{}-{}", i + 1, run.label().replace(' ', "-"));
            let mut started = LocalCluster::start(&spec, policy.as_str(), steal, &tag)?;
            let took = started.wait_converged(&http, converge).await?;
            println!(
                "  every worker sees all {} alive after {:.1} s",
                spec.workers,
                took.as_secs_f64()
            );
            cluster = Some(started);
        }
        let Some(running) = cluster.as_mut() else {
            bail!("no cluster is running");
        };
        let targets = bench::discover(&http, &running.targets()).await?;
        let plan = match &plan {
            Some(plan) => plan,
            None => {
                let made = cli::plan(&args.workload, seed, &targets, 0.9, 2000)?;
                println!(
                    "seed {seed} (repeat with --seed {seed}); {} jobs of {} ({}) at {:.1} jobs/s = rho \
                     {:.2} over {} slots, entry {}; about {:.0} s per run",
                    made.jobs.len(),
                    made.spec.service,
                    made.spec.kind.as_str(),
                    made.spec.rate_per_s,
                    made.rho,
                    made.slots,
                    made.spec.entry.as_str(),
                    made.jobs.last().map_or(0.0, |j| j.at.as_secs_f64())
                );
                plan.insert(made)
            }
        };
        let options = RunOptions {
            label: run.label(),
            dispatch: match run {
                DemoRun::Workers(..) => Dispatch::Cluster,
                DemoRun::Loadgen(d) => d,
            },
            worker_policy: Some(match steal {
                true => format!("{policy}+steal"),
                false => policy.as_str().into(),
            }),
            kind: plan.spec.kind,
            request_timeout: timeout,
            progress: !args.output.no_progress,
        };
        println!("run {}/{}: {}", i + 1, args.runs.len(), run.label());
        let bases = running.targets();
        let before = moves::read(&http, &bases).await;
        let records = bench::run(&http, &targets, &plan.jobs, &options).await;
        running.check_running()?;
        let mut summary = RunSummary::of(&records, plan.spec.service.mean_ms());
        if steal && matches!(run, DemoRun::Workers(..)) {
            let after = moves::read(&http, &bases).await;
            summary.steals = Some(moves::between(&before, &after));
        }
        println!(
            "  {} of {} jobs succeeded in {:.1} s; mean sojourn {} service times",
            summary.succeeded,
            summary.sent,
            summary.wall_s,
            summary
                .sojourn_units
                .map_or("-".into(), |s| format!("{:.2}", s.mean))
        );
        summaries.push(summary);
    }
    let Some(plan) = plan else {
        bail!("no run was made");
    };
    let report = cli::build_report(&plan, summaries);
    let json = args.out_dir.join("report.json");
    let svg = args.out_dir.join("chart.svg");
    cli::publish(&report, Some(&json), Some(&svg))?;
    let dashboard = format!("http://127.0.0.1:{}/", spec.base_port);
    if args.keep {
        if let Some(running) = cluster.as_ref() {
            println!(
                "dashboard: {dashboard} (the {} cluster is left running; ctrl-c stops it)",
                running.policy()
            );
            crate::signals::interrupted().await;
        }
    } else {
        println!(
            "dashboard: {dashboard} while a cluster runs (--keep leaves the last one running)"
        );
    }
    if let Some(running) = cluster.take() {
        running.stop().await;
    }
    cli::check_any_success(&report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_parse_and_random_is_loadgens() {
        assert_eq!("p2c".parse(), Ok(DemoRun::Workers(Policy::P2c, false)));
        assert_eq!("p2c+steal".parse(), Ok(DemoRun::Workers(Policy::P2c, true)));
        assert_eq!(
            "local+steal".parse(),
            Ok(DemoRun::Workers(Policy::Local, true))
        );
        assert_eq!(DemoRun::Workers(Policy::P2c, true).label(), "p2c+steal");
        assert!("jsq+steal".parse::<DemoRun>().is_err());
        assert_eq!(
            "least-loaded".parse(),
            Ok(DemoRun::Workers(Policy::LeastLoaded, false))
        );
        assert_eq!("random".parse(), Ok(DemoRun::Loadgen(Dispatch::Random)));
        assert_eq!("jsq".parse(), Ok(DemoRun::Loadgen(Dispatch::Jsq)));
        assert_eq!(
            "worker-random".parse(),
            Ok(DemoRun::Workers(Policy::Random, false))
        );
        assert!("fastest".parse::<DemoRun>().unwrap_err().contains("jsq"));
        assert_eq!(
            DemoRun::Loadgen(Dispatch::Jsq).worker_policy(),
            (Policy::Local, false)
        );
    }
}
