//! The benchmark of unequal machines (issue 17, part 3): four workers with `--slots 2`, each in
//! a cgroup v1 pair (`cpu` and `cpuacct`) limited to half a CPU, two of them sharing their group
//! with an outside CPU hog. The same seeded workload of `spin` jobs (which count CPU time, so a
//! throttled node takes longer) runs three times: through the cluster with `--load-score slots`,
//! through the cluster with `--load-score cpu`, and by loadgen's `jsq` oracle (workers with
//! `--steal off`, as `loadgen demo` runs it). It prints the sojourn figures and their ratios;
//! docs/measurements.md keeps them.
//!
//! It asserts what must hold whatever the machine's speed: every job of every run succeeded, each
//! worker reports the capacity of its quota (500 millicores), and the quota binds (a hogged
//! group used more than a hog's share of a CPU and not more than its half). It asserts no
//! sojourn: that is the measurement, and this machine is shared.
//!
//! Needs root and the cgroup v1 `cpu` and `cpuacct` controllers (mounted at
//! `/sys/fs/cgroup/cpu` and `/sys/fs/cgroup/cpuacct`, separate or together); without them it
//! says so and passes, unless `HEARSAY_REQUIRE_CGROUP=1` (as in CI), when it fails. Every
//! process it starts is killed and every group removed when it ends, passing or failing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hearsay_loadgen::bench::{self, Dispatch, RunOptions};
use hearsay_loadgen::client::Http;
use hearsay_loadgen::report::RunSummary;
use hearsay_loadgen::workload::{EntryPattern, JobKindChoice, Length, ServiceDist, WorkloadSpec};
use hearsay_testkit::PATIENCE;
use hearsay_tests::cluster::{all_alive, await_rounds, wait_until, WorkerProcess, WorkerSpec};

/// Set to `1` to make this test fail, rather than be skipped, without root and cgroup v1.
const REQUIRE_CGROUP: &str = "HEARSAY_REQUIRE_CGROUP";
const CPU_ROOT: &str = "/sys/fs/cgroup/cpu";
const CPUACCT_ROOT: &str = "/sys/fs/cgroup/cpuacct";

const NODES: usize = 4;
const SLOTS: u32 = 2;
/// Half a CPU per group: 50 ms of CPU in every 100 ms.
const PERIOD_US: u64 = 100_000;
const QUOTA_US: u64 = 50_000;
/// The groups that also hold a hog.
const HOGGED: [usize; 2] = [2, 3];
/// CPU time each `spin` job asks for.
const SPIN_MS: f64 = 40.0;
const JOBS: usize = 300;
const SEED: u64 = 17;
/// The capacity left for jobs, in CPUs. The two groups without a hog give their whole half CPU:
/// 0.5 + 0.5. In a hogged group CFS shares the half CPU between the hog and the spinning
/// threads, thread by thread: one spin gets 0.25 (two get 1/3 between them); count 0.25 each.
/// 0.5 + 0.5 + 0.25 + 0.25 = 1.5 CPUs, i.e. 1.5 / 0.040 s = 37.5 jobs/s at most.
const CAPACITY_LEFT_CPUS: f64 = 0.5 + 0.5 + 0.25 + 0.25;
/// About 70% of that: 0.7 x 37.5 = 26.25 jobs/s, a run of 300 jobs in about 11.5 s.
const LOAD: f64 = 0.7;

/// A cgroup v1 group in the `cpu` and the `cpuacct` hierarchies (one directory when the two
/// are mounted together), limited to `QUOTA_US` per `PERIOD_US`. Dropped: its processes are
/// moved to the root groups and the directories removed.
struct CgroupPair {
    cpu: PathBuf,
    /// `None` when `cpuacct` is the same hierarchy as `cpu`.
    cpuacct: Option<PathBuf>,
}

impl CgroupPair {
    fn create(name: &str) -> Result<Self> {
        for (root, file) in [
            (CPU_ROOT, "cpu.cfs_quota_us"),
            (CPUACCT_ROOT, "cpuacct.usage"),
        ] {
            ensure!(
                Path::new(root).join(file).is_file(),
                "no cgroup v1 {root}/{file}"
            );
        }
        let together = std::fs::canonicalize(CPU_ROOT)? == std::fs::canonicalize(CPUACCT_ROOT)?;
        let cpu = Path::new(CPU_ROOT).join(name);
        std::fs::create_dir(&cpu).with_context(|| format!("cannot create {}", cpu.display()))?;
        // From here on, Drop removes what was made.
        let mut pair = CgroupPair { cpu, cpuacct: None };
        if !together {
            let acct = Path::new(CPUACCT_ROOT).join(name);
            std::fs::create_dir(&acct)
                .with_context(|| format!("cannot create {}", acct.display()))?;
            pair.cpuacct = Some(acct);
        }
        write(&pair.cpu.join("cpu.cfs_period_us"), &PERIOD_US.to_string())?;
        write(&pair.cpu.join("cpu.cfs_quota_us"), &QUOTA_US.to_string())?;
        Ok(pair)
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.cpu).chain(self.cpuacct.as_ref())
    }

    /// The `cgroup.procs` files a process is written into to join the pair.
    fn procs(&self) -> Vec<PathBuf> {
        self.dirs().map(|d| d.join("cgroup.procs")).collect()
    }

    /// CPU time the group has used, in nanoseconds.
    fn usage_ns(&self) -> Result<u64> {
        let path = self
            .cpuacct
            .as_ref()
            .unwrap_or(&self.cpu)
            .join("cpuacct.usage");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        text.trim()
            .parse()
            .with_context(|| format!("{}: {text:?}", path.display()))
    }
}

impl Drop for CgroupPair {
    fn drop(&mut self) {
        for dir in self.dirs() {
            let root = dir.parent().unwrap_or(Path::new("/")).join("cgroup.procs");
            // A process killed a moment ago may still be listed: try for a while.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    std::fs::write(&root, pid).ok();
                }
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if Instant::now() >= deadline => {
                        eprintln!("cannot remove {}: {e}", dir.display());
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value)
        .with_context(|| format!("cannot write {value} to {}", path.display()))
}

/// A busy loop in a group: the outside software a machine is shared with. Killed on drop.
struct Hog(Child);

impl Hog {
    fn start(group: &CgroupPair) -> Result<Self> {
        let mut script = String::new();
        for procs in group.procs() {
            script.push_str(&format!("echo $$ > '{}' || exit 125; ", procs.display()));
        }
        script.push_str("while :; do :; done");
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start the hog")?;
        Ok(Hog(child))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// One of the three runs.
struct Run {
    label: &'static str,
    load_score: &'static str,
    steal: &'static str,
    dispatch: Dispatch,
}

const RUNS: [Run; 3] = [
    Run {
        label: "cluster, --load-score slots",
        load_score: "slots",
        steal: "on",
        dispatch: Dispatch::Cluster,
    },
    Run {
        label: "cluster, --load-score cpu",
        load_score: "cpu",
        steal: "on",
        dispatch: Dispatch::Cluster,
    },
    Run {
        label: "jsq (loadgen's oracle)",
        load_score: "slots",
        steal: "off",
        dispatch: Dispatch::Jsq,
    },
];

/// Four workers, worker `i` in `groups[i]`, seeded with the first; returns once every one sees
/// every one alive with the capacity of its quota.
fn start_workers(run: usize, groups: &[CgroupPair]) -> Result<Vec<WorkerProcess>> {
    let mut nodes: Vec<WorkerProcess> = Vec::new();
    for (i, group) in groups.iter().enumerate() {
        let seeds = nodes
            .first()
            .map(|n| vec![n.spec.gossip()])
            .unwrap_or_default();
        let mut spec = WorkerSpec::new(format!("cg{run}-{i}"), seeds);
        spec.args = [
            "--slots",
            &SLOTS.to_string(),
            "--load-score",
            RUNS[run].load_score,
            "--steal",
            RUNS[run].steal,
        ]
        .map(str::to_owned)
        .to_vec();
        spec.cgroup_procs = group.procs();
        nodes.push(WorkerProcess::start(spec)?);
    }
    wait_until(PATIENCE, || all_alive(&nodes.iter().collect::<Vec<_>>()))?;
    // The quota is what each node reports and what every node sees of every node: the cgroup is
    // the one the worker read.
    wait_until(PATIENCE, || {
        for observer in &nodes {
            let view = observer.cluster()?;
            let capacities: Vec<u64> = view["nodes"]
                .as_array()
                .context("no nodes in /v1/cluster")?
                .iter()
                .filter_map(|n| n["load"]["cpu_capacity_millicores"].as_u64())
                .collect();
            if capacities.len() != NODES || capacities.iter().any(|&c| c != 500) {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .context("the workers do not all report 500 millicores")?;
    // A few rounds more, so that the load vectors carry a measured CPU use.
    await_rounds(&nodes.iter().collect::<Vec<_>>(), 5, PATIENCE)?;
    Ok(nodes)
}

fn workload() -> WorkloadSpec {
    WorkloadSpec {
        seed: SEED,
        rate_per_s: LOAD * CAPACITY_LEFT_CPUS * 1000.0 / SPIN_MS,
        service: ServiceDist::Const { ms: SPIN_MS },
        kind: JobKindChoice::Spin,
        entry: EntryPattern::Spread,
        targets: NODES,
        length: Length::Jobs(JOBS),
    }
}

fn bench_once(
    runtime: &tokio::runtime::Runtime,
    run: usize,
    nodes: &[WorkerProcess],
) -> Result<RunSummary> {
    let jobs = workload().generate()?;
    let bases: Vec<String> = nodes
        .iter()
        .map(|n| format!("http://{}", n.spec.api()))
        .collect();
    let options = RunOptions {
        label: RUNS[run].label.to_owned(),
        dispatch: RUNS[run].dispatch,
        worker_policy: Some(format!("p2c, --load-score {}", RUNS[run].load_score)),
        kind: JobKindChoice::Spin,
        request_timeout: Duration::from_secs(60),
        progress: false,
    };
    runtime.block_on(async {
        let http = Http::default();
        let targets = bench::discover(&http, &bases).await?;
        let records = bench::run(&http, &targets, &jobs, &options).await;
        Ok(RunSummary::of(&records, SPIN_MS))
    })
}

#[test]
fn cpu_aware_placement_on_unequal_machines() -> Result<()> {
    let required = std::env::var(REQUIRE_CGROUP).is_ok_and(|v| v == "1");
    let pid = std::process::id();
    let groups = match (0..NODES)
        .map(|i| CgroupPair::create(&format!("hearsay-bench-{pid}-{i}")))
        .collect::<Result<Vec<_>>>()
    {
        Ok(groups) => groups,
        Err(e) if !required => {
            eprintln!(
                "SKIPPED: the benchmark of unequal machines needs root and a writable cgroup v1 \
                 cpu controller ({e:#}); set {REQUIRE_CGROUP}=1 to require it"
            );
            return Ok(());
        }
        Err(e) => {
            return Err(e.context(format!(
                "{REQUIRE_CGROUP}=1 but no cgroup v1 cpu controller"
            )))
        }
    };
    // Dropped before the groups (declared after them), so the groups are empty when removed.
    let _hogs: Vec<Hog> = HOGGED
        .iter()
        .map(|&i| Hog::start(&groups[i]))
        .collect::<Result<_>>()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let spec = workload();
    eprintln!(
        "{JOBS} spin jobs of {SPIN_MS} ms CPU at {:.2} jobs/s (seed {SEED}): {:.0}% of the \
         {CAPACITY_LEFT_CPUS} CPUs left beside the hogs",
        spec.rate_per_s,
        LOAD * 100.0
    );

    let mut summaries = Vec::new();
    let mut group_use = Vec::new();
    for run in 0..RUNS.len() {
        let nodes = start_workers(run, &groups)?;
        let usage_before = groups
            .iter()
            .map(CgroupPair::usage_ns)
            .collect::<Result<Vec<_>>>()?;
        let started = Instant::now();
        let summary = bench_once(&runtime, run, &nodes)?;
        let wall_ns = started.elapsed().as_nanos() as f64;
        for (i, group) in groups.iter().enumerate() {
            let used = (group.usage_ns()? - usage_before[i]) as f64;
            group_use.push((run, i, used / wall_ns));
        }
        drop(nodes);
        ensure!(
            summary.succeeded == JOBS && summary.errors.is_empty(),
            "{}: {} of {JOBS} jobs succeeded; errors {:?}",
            summary.label,
            summary.succeeded,
            summary.errors
        );
        summaries.push(summary);
    }

    print_table(&summaries);
    for (run, i, cpus) in &group_use {
        let hogged = HOGGED.contains(i);
        let with = if hogged { "worker and hog" } else { "worker" };
        println!("run {run}: group {i} ({with}) used {cpus:.3} CPU on average");
        if !hogged {
            continue;
        }
        // A hog alone takes a whole CPU; bound by the quota, its group takes at most half of
        // one (a little more for the accounting of a period's edge), and some of it (the hog runs).
        ensure!(
            (0.1..=0.55).contains(cpus),
            "run {run}: hogged group {i} used {cpus:.3} CPU: the quota of 0.5 does not bind"
        );
    }
    Ok(())
}

fn mean_p99(s: &RunSummary) -> Result<(f64, f64)> {
    let sojourn = s.sojourn_ms.as_ref().context("no sojourn")?;
    Ok((sojourn.mean, sojourn.p99))
}

fn print_table(summaries: &[RunSummary]) {
    println!(
        "\n{:<30} {:>10} {:>10}  jobs per node",
        "run", "mean ms", "p99 ms"
    );
    for s in summaries {
        let (mean, p99) = mean_p99(s).unwrap_or((f64::NAN, f64::NAN));
        println!("{:<30} {mean:>10.1} {p99:>10.1}  {:?}", s.label, s.per_node);
    }
    if let [slots, cpu, jsq] = summaries {
        if let (Ok(slots), Ok(cpu), Ok(jsq)) = (mean_p99(slots), mean_p99(cpu), mean_p99(jsq)) {
            println!(
                "cpu/slots: mean {:.2}, p99 {:.2}; cpu/jsq: mean {:.2}, p99 {:.2}",
                cpu.0 / slots.0,
                cpu.1 / slots.1,
                cpu.0 / jsq.0,
                cpu.1 / jsq.1
            );
        }
    }
}
