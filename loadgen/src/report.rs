//! What a run came to ([`RunSummary`]), the comparison table of several runs, and the JSON
//! report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hearsay_shared::JobStatus;
use serde::Serialize;

use crate::bench::{Dispatch, RunRecords};
use crate::moves::Steals;
use crate::sim::{self, Placement};
use crate::stats::Summary;
use crate::theory::Reference;
use crate::workload::WorkloadSpec;

/// A run summed up. Sojourn and queueing statistics cover the jobs that succeeded.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run's name.
    pub label: String,
    /// How jobs were dispatched: `cluster`, `random` or `jsq`.
    pub dispatch: Dispatch,
    /// The workers' placement policy, when known.
    pub worker_policy: Option<String>,
    /// Jobs the workload planned.
    pub planned: usize,
    /// Jobs sent.
    pub sent: usize,
    /// Jobs that ran and succeeded.
    pub succeeded: usize,
    /// Jobs that did not succeed, by kind: `503`, `connect`, `timeout`, `http_<status>_<code>`,
    /// `job_failed`, `job_timed_out`, `job_lost`, ... Every job sent is either succeeded or
    /// counted here exactly once.
    pub errors: BTreeMap<String, usize>,
    /// From the start of the run to the last answer, in seconds.
    pub wall_s: f64,
    /// Jobs sent per second over the sending period.
    pub offered_per_s: f64,
    /// Jobs succeeded per second over the whole run.
    pub throughput_per_s: f64,
    /// The load per slot actually offered: jobs sent per second x the mean time the workers
    /// report the jobs ran / slots. Above the asked rho when jobs overrun their nominal time.
    pub measured_rho: Option<f64>,
    /// Sojourn (sent to answered, measured by loadgen), in milliseconds.
    pub sojourn_ms: Option<Summary>,
    /// The same, in units of the workload's mean service time.
    pub sojourn_units: Option<Summary>,
    /// Time waiting for a slot, as the executing worker reports it, in milliseconds.
    pub queued_ms: Option<Summary>,
    /// Time running, as the executing worker reports it, in milliseconds.
    pub run_ms: Option<Summary>,
    /// The mean service time the sent jobs asked for, in milliseconds: `run_ms.mean` above it
    /// is the workers' overrun (timer granularity, scheduling).
    pub planned_service_mean_ms: Option<f64>,
    /// The fraction of succeeded jobs that a worker forwarded to another worker.
    pub forwarded_fraction: f64,
    /// Succeeded jobs by the number of hops between workers (for loadgen's own dispatch the
    /// hop from loadgen to the chosen worker is not counted).
    pub hops: BTreeMap<u32, usize>,
    /// Succeeded jobs per executing node (every target listed, even with none).
    pub per_node: BTreeMap<String, usize>,
    /// The busiest node's count over the mean count.
    pub imbalance_max_over_mean: Option<f64>,
    /// How late loadgen sent the latest job compared with its planned instant, in
    /// milliseconds: large values mean the open loop was not kept.
    pub max_send_lag_ms: f64,
    /// Jobs sent more than 10 ms after their planned instant.
    pub sent_late: usize,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
    /// For loadgen's own `random` and `jsq`: the sojourn of the very same jobs through ideal
    /// FIFO queues (no HTTP, service exactly as planned), in units of the mean service time.
    /// The measured minus this is the system's overhead; this minus the theory is the
    /// workload's sampling.
    pub ideal_units: Option<Summary>,
    /// Every succeeded job's sojourn in units of the mean service time, ascending (for the
    /// chart; not written to JSON).
    #[serde(skip)]
    pub sorted_sojourn_units: Vec<f64>,
    /// For runs against workers that steal: the steal requests they sent during the run, summed
    /// over the workers (the cost of stealing in messages).
    pub steals: Option<Steals>,
}

impl RunSummary {
    /// Sums up `run`; `mean_service_ms` is the workload's mean service time.
    pub fn of(run: &RunRecords, mean_service_ms: f64) -> Self {
        let mut errors = BTreeMap::new();
        let mut per_node: BTreeMap<String, usize> =
            run.targets.iter().map(|t| (t.node.clone(), 0)).collect();
        let mut hops = BTreeMap::new();
        let (mut sojourn, mut queued, mut ran) = (Vec::new(), Vec::new(), Vec::new());
        let mut forwarded = 0;
        let mut max_lag: f64 = 0.0;
        let mut sent_late = 0;
        for record in &run.records {
            let lag = record.sent_at.saturating_sub(record.job.at).as_secs_f64() * 1000.0;
            max_lag = max_lag.max(lag);
            if lag > 10.0 {
                sent_late += 1;
            }
            let outcome = match &record.result {
                Ok(outcome) => outcome,
                Err(e) => {
                    *errors.entry(e.kind()).or_insert(0) += 1;
                    continue;
                }
            };
            if outcome.status != JobStatus::Succeeded {
                let kind = serde_json::to_value(outcome.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into());
                *errors.entry(format!("job_{kind}")).or_insert(0) += 1;
                continue;
            }
            sojourn.push(record.sojourn_ms);
            if let Some(q) = outcome.queued_ms {
                queued.push(q as f64);
            }
            if let Some(r) = outcome.run_ms {
                ran.push(r as f64);
            }
            let target = &run.targets[record.target].node;
            let executing = outcome
                .executing_node
                .as_ref()
                .map(|n| n.as_str().to_owned());
            // A job loadgen placed itself (`?place=here`) is never moved: hops 0.
            let worker_hops = outcome.hops;
            let moved = worker_hops > 0 || executing.as_deref().is_some_and(|e| e != target);
            if moved {
                forwarded += 1;
            }
            *hops.entry(worker_hops).or_insert(0) += 1;
            let node = executing.unwrap_or_else(|| "(unknown)".into());
            *per_node.entry(node).or_insert(0) += 1;
        }
        let succeeded = sojourn.len();
        let sent = run.records.len();
        let sending_s = match (run.records.first(), run.records.last()) {
            (Some(first), Some(last)) if sent > 1 => {
                (last.sent_at.saturating_sub(first.sent_at)).as_secs_f64()
            }
            _ => 0.0,
        };
        let offered_per_s = if sending_s > 0.0 {
            (sent - 1) as f64 / sending_s
        } else {
            0.0
        };
        let wall_s = run.wall.as_secs_f64();
        let slots: u32 = run.targets.iter().map(|t| t.slots).sum();
        let run_summary = Summary::of(&ran);
        let measured_rho = run_summary
            .filter(|_| slots > 0 && offered_per_s > 0.0)
            .map(|r| offered_per_s * r.mean / 1000.0 / f64::from(slots));
        let counts: Vec<usize> = per_node.values().copied().collect();
        let imbalance = (!counts.is_empty() && succeeded > 0).then(|| {
            let mean = succeeded as f64 / counts.len() as f64;
            *counts.iter().max().unwrap_or(&0) as f64 / mean
        });
        let sojourn_ms = Summary::of(&sojourn);
        let placement = match run.dispatch {
            Dispatch::Cluster => None,
            Dispatch::Random => Some(Placement::Random),
            Dispatch::Jsq => Some(Placement::Jsq),
        };
        let ideal_units = placement.and_then(|p| {
            let jobs: Vec<_> = run.records.iter().map(|r| r.job).collect();
            let target_slots: Vec<u32> = run.targets.iter().map(|t| t.slots).collect();
            let ideal: Vec<f64> = sim::sojourns(&jobs, &target_slots, p)
                .into_iter()
                .map(|ms| ms / mean_service_ms)
                .collect();
            Summary::of(&ideal)
        });
        let mut sorted: Vec<f64> = sojourn.iter().map(|s| s / mean_service_ms).collect();
        sorted.sort_by(f64::total_cmp);
        RunSummary {
            label: run.label.clone(),
            dispatch: run.dispatch,
            worker_policy: run.worker_policy.clone(),
            planned: run.planned,
            sent,
            succeeded,
            errors,
            wall_s,
            offered_per_s,
            throughput_per_s: if wall_s > 0.0 {
                succeeded as f64 / wall_s
            } else {
                0.0
            },
            measured_rho,
            sojourn_units: sojourn_ms.map(|s| s.scaled(mean_service_ms)),
            sojourn_ms,
            queued_ms: Summary::of(&queued),
            run_ms: run_summary,
            planned_service_mean_ms: (sent > 0).then(|| {
                run.records
                    .iter()
                    .map(|r| r.job.service_ms as f64)
                    .sum::<f64>()
                    / sent as f64
            }),
            forwarded_fraction: if succeeded > 0 {
                forwarded as f64 / succeeded as f64
            } else {
                0.0
            },
            hops,
            per_node,
            imbalance_max_over_mean: imbalance,
            max_send_lag_ms: max_lag,
            sent_late,
            aborted: run.aborted.clone(),
            ideal_units,
            sorted_sojourn_units: sorted,
            steals: None,
        }
    }

    /// Jobs sent that did not succeed.
    pub fn failed(&self) -> usize {
        self.errors.values().sum()
    }

    /// Warnings a reader of this run should see: refusals, errors, an open loop not kept.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(why) = &self.aborted {
            warnings.push(format!("{}: {why}", self.label));
        }
        let failed = self.failed();
        if failed > 0 {
            let kinds: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{n} x {k}"))
                .collect();
            let mut line = format!(
                "{}: {failed} of {} jobs did not succeed ({})",
                self.label,
                self.sent,
                kinds.join(", ")
            );
            let busy = self.errors.get("503").copied().unwrap_or(0);
            if busy * 100 >= self.sent.max(1) {
                line.push_str(
                    "; the cluster refused jobs with 503: the rate is more than it can take",
                );
            }
            warnings.push(line);
        }
        if self.max_send_lag_ms > 50.0 {
            warnings.push(format!(
                "{}: {} jobs were sent over 10 ms after their planned instant, one {:.0} ms \
                 late; the machine was too busy to keep the arrival process exact",
                self.label, self.sent_late, self.max_send_lag_ms
            ));
        }
        warnings
    }
}

/// The JSON report of one invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `hearsay-loadgen`.
    pub tool: &'static str,
    /// The crate version.
    pub version: &'static str,
    /// The command line.
    pub command: String,
    /// The workload every run saw.
    pub workload: WorkloadSpec,
    /// The workload's mean service time, in milliseconds: the time unit of `*_units`.
    pub mean_service_ms: f64,
    /// Slots across the targets.
    pub slots: u32,
    /// The load per slot asked for (rate x mean service / slots).
    pub rho: f64,
    /// Queueing theory at that load over the targets' slots, in units of the mean service time;
    /// assumes Poisson arrivals and exponential service (absent for other shapes).
    pub theory: Option<Reference>,
    /// Every run, in the order run.
    pub runs: Vec<RunSummary>,
}

fn cell(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".into(),
    }
}

/// The comparison table: one row per run, sojourn in units of the mean service time.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "sojourn in units of the mean service time ({:.0} ms); rho {:.2} over {} slots",
        report.mean_service_ms, report.rho, report.slots
    );
    let _ = writeln!(
        out,
        "{:<22} {:>6} {:>5} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>9} {:>5} {:>8}",
        "run",
        "done",
        "fail",
        "jobs/s",
        "mean",
        "+-se",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "max",
        "queue ms",
        "fwd%",
        "max/mean"
    );
    for run in &report.runs {
        let s = run.sojourn_units.as_ref();
        let _ = writeln!(
            out,
            "{:<22} {:>6} {:>5} {:>7.1} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>7} {:>9} {:>5.1} {:>8}",
            run.label,
            run.succeeded,
            run.failed(),
            run.throughput_per_s,
            cell(s.map(|s| s.mean), 2),
            cell(s.and_then(|s| s.mean_stderr), 2),
            cell(s.map(|s| s.p50), 2),
            cell(s.map(|s| s.p90), 2),
            cell(s.map(|s| s.p99), 2),
            cell(s.map(|s| s.p999), 2),
            cell(s.map(|s| s.max), 2),
            cell(run.queued_ms.map(|q| q.mean), 1),
            run.forwarded_fraction * 100.0,
            cell(run.imbalance_max_over_mean, 2),
        );
    }
    if let Some(t) = &report.theory {
        for row in t.rows() {
            let _ = writeln!(
                out,
                "{:<22} {:>6} {:>5} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6}",
                format!("theory: {}", row.label),
                "",
                "",
                "",
                format!("{:.2}", row.mean),
                "",
                "",
                "",
                format!("{:.2}", row.p99)
            );
        }
    }
    let ideal: Vec<&RunSummary> = report
        .runs
        .iter()
        .filter(|r| r.ideal_units.is_some())
        .collect();
    if !ideal.is_empty() {
        let _ = writeln!(
            out,
            "\nthe same jobs through ideal FIFO queues (no HTTP, service exactly as planned):"
        );
        let _ = writeln!(
            out,
            "{:<22} {:>10} {:>10} {:>10} {:>10} {:>14}",
            "run", "ideal mean", "ideal p99", "measured", "measured", "measured/ideal"
        );
        let _ = writeln!(
            out,
            "{:<22} {:>10} {:>10} {:>10} {:>10} {:>14}",
            "", "", "", "mean", "p99", "mean"
        );
        for run in ideal {
            let i = run.ideal_units;
            let m = run.sojourn_units;
            let _ = writeln!(
                out,
                "{:<22} {:>10} {:>10} {:>10} {:>10} {:>14}",
                run.label,
                cell(i.map(|s| s.mean), 2),
                cell(i.map(|s| s.p99), 2),
                cell(m.map(|s| s.mean), 2),
                cell(m.map(|s| s.p99), 2),
                cell(
                    m.zip(i)
                        .filter(|(_, i)| i.mean > 0.0)
                        .map(|(m, i)| m.mean / i.mean),
                    3
                ),
            );
        }
    }
    let stealing: Vec<&RunSummary> = report.runs.iter().filter(|r| r.steals.is_some()).collect();
    if !stealing.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<22} {:>8} {:>8} {:>8} {:>9} {:>8}",
            "steal requests", "asked", "granted", "empty", "asks/job", "stolen%"
        );
        for run in stealing {
            let Some(s) = run.steals else { continue };
            let stolen = match run.succeeded {
                0 => 0.0,
                n => s.granted as f64 * 100.0 / n as f64,
            };
            let _ = writeln!(
                out,
                "{:<22} {:>8} {:>8} {:>8} {:>9.2} {:>8.1}",
                run.label,
                s.asked,
                s.granted,
                s.empty,
                s.per_job(run.sent),
                stolen
            );
        }
    }
    let ratios = ratio_table(&report.runs);
    if !ratios.is_empty() {
        out.push('\n');
        out.push_str(&ratios);
    }
    out
}

/// Each run's mean and p99 sojourn as a ratio to loadgen's `jsq` and `random` runs (whichever
/// were run).
fn ratio_table(runs: &[RunSummary]) -> String {
    let find = |d: Dispatch| {
        runs.iter()
            .find(|r| r.dispatch == d)
            .and_then(|r| r.sojourn_units)
    };
    let (jsq, random) = (find(Dispatch::Jsq), find(Dispatch::Random));
    if jsq.is_none() && random.is_none() {
        return String::new();
    }
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<22} {:>10} {:>10} {:>12} {:>12}",
        "ratios", "mean/jsq", "p99/jsq", "mean/random", "p99/random"
    );
    for run in runs {
        let s = run.sojourn_units;
        let _ = writeln!(
            out,
            "{:<22} {:>10} {:>10} {:>12} {:>12}",
            run.label,
            ratio(s.map(|s| s.mean), jsq.map(|s| s.mean)),
            ratio(s.map(|s| s.p99), jsq.map(|s| s.p99)),
            ratio(s.map(|s| s.mean), random.map(|s| s.mean)),
            ratio(s.map(|s| s.p99), random.map(|s| s.p99)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hearsay_shared::{JobId, JobOutcome, NodeId};

    use super::*;
    use crate::bench::{JobRecord, Target};
    use crate::client::RequestError;
    use crate::workload::PlannedJob;

    fn target(node: &str) -> Target {
        Target {
            base: format!("http://{node}"),
            node: node.into(),
            slots: 1,
        }
    }

    fn record(index: usize, target: usize, result: Result<JobOutcome, RequestError>) -> JobRecord {
        JobRecord {
            job: PlannedJob {
                index,
                at: Duration::from_millis(index as u64 * 10),
                service_ms: 100,
                entry: target,
                pick: target,
                tie_break: 0,
            },
            target,
            sent_at: Duration::from_millis(index as u64 * 10),
            sojourn_ms: 100.0 * (index + 1) as f64,
            result,
        }
    }

    fn outcome(status: JobStatus, entry: &str, exec: &str, hops: u32) -> JobOutcome {
        JobOutcome {
            id: JobId(1),
            kind: "sleep".into(),
            status,
            entry_node: NodeId::new(entry).unwrap(),
            executing_node: Some(NodeId::new(exec).unwrap()),
            hops,
            path: Vec::new(),
            queued_ms: Some(10),
            run_ms: Some(100),
            total_ms: Some(110),
            output: None,
            error: None,
            output_truncated: false,
            output_original_bytes: None,
        }
    }

    #[test]
    fn every_job_is_counted_once_and_forwards_are_seen() {
        let run = RunRecords {
            label: "p2c".into(),
            dispatch: Dispatch::Cluster,
            worker_policy: Some("p2c".into()),
            targets: vec![target("a"), target("b"), target("c")],
            planned: 6,
            records: vec![
                record(0, 0, Ok(outcome(JobStatus::Succeeded, "a", "a", 0))),
                record(1, 0, Ok(outcome(JobStatus::Succeeded, "a", "b", 1))),
                record(2, 1, Ok(outcome(JobStatus::Succeeded, "b", "b", 0))),
                record(3, 1, Ok(outcome(JobStatus::Lost, "b", "a", 1))),
                record(
                    4,
                    2,
                    Err(RequestError::Busy {
                        code: "no_room".into(),
                        retry_after: Some(1),
                    }),
                ),
                record(5, 2, Err(RequestError::Timeout)),
            ],
            wall: Duration::from_secs(1),
            aborted: None,
        };
        let s = RunSummary::of(&run, 100.0);
        assert_eq!((s.sent, s.succeeded, s.failed()), (6, 3, 3));
        assert_eq!(s.succeeded + s.failed(), s.sent);
        assert_eq!(s.errors["503"], 1);
        assert_eq!(s.errors["timeout"], 1);
        assert_eq!(s.errors["job_lost"], 1);
        assert_eq!(s.per_node["a"], 1);
        assert_eq!(s.per_node["b"], 2);
        assert_eq!(s.per_node["c"], 0, "idle targets are listed");
        assert!((s.forwarded_fraction - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(s.hops[&0], 2);
        assert_eq!(s.hops[&1], 1);
        // Counts 1, 2 and 0: the busiest has 2, the mean is 1.
        assert_eq!(s.imbalance_max_over_mean, Some(2.0));
        let units = s.sojourn_units.unwrap();
        assert_eq!((units.min, units.max), (1.0, 3.0));
        assert_eq!(s.sorted_sojourn_units, vec![1.0, 2.0, 3.0]);
        assert!(s.warnings().iter().any(|w| w.contains("503")));
    }

    #[test]
    fn loadgen_placed_jobs_run_where_they_were_sent() {
        let run = RunRecords {
            label: "random".into(),
            dispatch: Dispatch::Random,
            worker_policy: None,
            targets: vec![target("a"), target("b")],
            planned: 2,
            records: vec![
                // Sent with `?place=here`: entered and ran at the target, never moved.
                record(0, 0, Ok(outcome(JobStatus::Succeeded, "a", "a", 0))),
                record(1, 1, Ok(outcome(JobStatus::Succeeded, "b", "b", 0))),
            ],
            wall: Duration::from_secs(1),
            aborted: None,
        };
        let s = RunSummary::of(&run, 100.0);
        assert_eq!(s.forwarded_fraction, 0.0);
        assert_eq!(s.hops.get(&0), Some(&2));
        assert!(s.warnings().is_empty());
    }

    fn report_over(node_slots: &[u32]) -> Report {
        Report {
            tool: "hearsay-loadgen",
            version: "0",
            command: "loadgen demo".into(),
            workload: crate::workload::WorkloadSpec {
                seed: 1,
                rate_per_s: 36.0,
                service: crate::workload::ServiceDist::Exp { mean_ms: 100.0 },
                kind: crate::workload::JobKindChoice::Sleep,
                entry: crate::workload::EntryPattern::Spread,
                targets: node_slots.len(),
                length: crate::workload::Length::Jobs(10),
            },
            mean_service_ms: 100.0,
            slots: node_slots.iter().sum(),
            rho: 0.9,
            theory: Some(Reference::at(0.9, node_slots)),
            runs: Vec::new(),
        }
    }

    #[test]
    fn theory_rows_follow_the_slots_per_node() {
        // 2 workers x 2 slots: each is an M/M/2 under random dispatch (mean 1 / (1 - 0.81)),
        // the floor is M/M/4, and the two-choices limit (for single-slot nodes) is left out.
        let text = table(&report_over(&[2, 2]));
        let theory: Vec<&str> = text.lines().filter(|l| l.starts_with("theory")).collect();
        assert_eq!(theory.len(), 2, "{text}");
        assert!(theory[0].starts_with("theory: random M/M/2 ") && theory[0].contains(" 5.26 "));
        assert!(theory[1].starts_with("theory: M/M/4 floor ") && theory[1].contains(" 2.97 "));
        // 8 x 1 slot: M/M/1 per node, the two-choices limit, the M/M/8 floor.
        let text = table(&report_over(&[1; 8]));
        let theory: Vec<&str> = text.lines().filter(|l| l.starts_with("theory")).collect();
        assert_eq!(theory.len(), 3, "{text}");
        assert!(theory[0].starts_with("theory: random M/M/1 ") && theory[0].contains(" 10.00 "));
        assert!(theory[1].starts_with("theory: 2 choices n=inf") && theory[1].contains(" 2.61 "));
        assert!(theory[2].starts_with("theory: M/M/8 floor ") && theory[2].contains(" 1.88 "));
    }
}
