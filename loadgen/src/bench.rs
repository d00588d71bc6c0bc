//! Running a workload against workers, open loop: every job is sent at its planned instant
//! whether or not earlier jobs have finished, and each one's sojourn is measured from the moment
//! it is sent to the moment its outcome arrives.
//!
//! Three ways to choose where a job goes ([`Dispatch`]): through the cluster (the job enters at
//! its planned entry worker, which places it with its own policy), or placed by loadgen itself
//! with forwarding switched off — uniformly at random, or on the worker with the fewest jobs
//! outstanding by loadgen's own exact count (join the shortest queue, the oracle).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hearsay_shared::JobOutcome;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::{Http, RequestError, Submission};
use crate::workload::{JobKindChoice, PlannedJob};

/// Where loadgen sends each job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Dispatch {
    /// To the job's entry worker, which places it with its own policy.
    Cluster,
    /// To a worker drawn uniformly at random, not forwarded.
    Random,
    /// To the worker with the fewest jobs outstanding (loadgen's exact count; ties at random),
    /// not forwarded.
    Jsq,
}

impl Dispatch {
    /// The mode's name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Dispatch::Cluster => "cluster",
            Dispatch::Random => "random",
            Dispatch::Jsq => "jsq",
        }
    }
}

/// A worker that jobs are sent to, as its `/v1/cluster` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// The node's id.
    pub node: String,
    /// Its job slots.
    pub slots: u32,
}

/// How long to wait for a target's `/v1/cluster`.
const DISCOVER_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks every target who it is and how many slots it has. Fails, naming the target, if one
/// cannot be reached or does not answer like a worker.
pub async fn discover(http: &Http, bases: &[String]) -> Result<Vec<Target>> {
    if bases.is_empty() {
        bail!("no targets given");
    }
    let mut set = tokio::task::JoinSet::new();
    for (i, base) in bases.iter().enumerate() {
        let http = http.clone();
        let base = base.clone();
        set.spawn(async move {
            let answer = http.get_json(&base, "/v1/cluster", DISCOVER_TIMEOUT).await;
            (i, base, answer)
        });
    }
    let mut targets: Vec<Option<Target>> = vec![None; bases.len()];
    while let Some(joined) = set.join_next().await {
        let (i, base, answer) = joined.context("a discovery task failed")?;
        let view = answer.with_context(|| format!("cannot reach target {base}"))?;
        let node = view["node"].as_str().with_context(|| {
            format!("{base}/v1/cluster does not name its node; is it a Hearsay worker?")
        })?;
        let slots = view["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["id"].as_str() == Some(node)))
            .and_then(|n| n["load"]["slots"].as_u64())
            .with_context(|| format!("{base}/v1/cluster does not give its own slots"))?;
        targets[i] = Some(Target {
            base,
            node: node.to_owned(),
            slots: u32::try_from(slots).unwrap_or(u32::MAX),
        });
    }
    let targets: Vec<Target> = targets.into_iter().flatten().collect();
    for (i, a) in targets.iter().enumerate() {
        if let Some(b) = targets[..i].iter().find(|b| b.node == a.node) {
            bail!(
                "targets {} and {} are the same node {}",
                b.base,
                a.base,
                a.node
            );
        }
    }
    Ok(targets)
}

/// What one job came to.
#[derive(Debug, Clone)]
pub struct JobRecord {
    /// The job.
    pub job: PlannedJob,
    /// The target it was sent to.
    pub target: usize,
    /// When it was sent, from the start of the run (its planned instant, or a little later if
    /// loadgen fell behind).
    pub sent_at: Duration,
    /// From sending to the answer, in milliseconds, measured by loadgen.
    pub sojourn_ms: f64,
    /// The outcome, or why there is none.
    pub result: Result<JobOutcome, RequestError>,
}

/// Everything a run recorded.
#[derive(Debug, Clone)]
pub struct RunRecords {
    /// The run's name in reports.
    pub label: String,
    /// How jobs were dispatched.
    pub dispatch: Dispatch,
    /// The workers' placement policy, when known.
    pub worker_policy: Option<String>,
    /// The workers.
    pub targets: Vec<Target>,
    /// How many jobs the workload planned.
    pub planned: usize,
    /// One per job sent, in workload order.
    pub records: Vec<JobRecord>,
    /// From the start of the run to the last answer.
    pub wall: Duration,
    /// Why the run stopped before sending every job, if it did.
    pub aborted: Option<String>,
}

/// How a run is carried out.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run's name in reports.
    pub label: String,
    /// Where jobs go.
    pub dispatch: Dispatch,
    /// The workers' placement policy, when known (for the report).
    pub worker_policy: Option<String>,
    /// `sleep` or `spin`.
    pub kind: JobKindChoice,
    /// How long one job may take from sending to its outcome.
    pub request_timeout: Duration,
    /// Draw a progress bar (only ever on a terminal).
    pub progress: bool,
}

/// After this many requests in a row that no worker answered, the run stops sending: the
/// targets are gone, and the rest would only time out one by one.
pub const GIVE_UP_AFTER_UNANSWERED: usize = 50;

/// State shared by the dispatcher and the tasks of the jobs in flight.
#[derive(Debug)]
struct Shared {
    /// Jobs sent to each target and not yet answered.
    outstanding: Vec<AtomicUsize>,
    /// Requests in a row that got no answer; any answer resets it.
    unanswered_in_a_row: AtomicUsize,
    last_unanswered: Mutex<Option<String>>,
    give_up: AtomicBool,
}

/// Runs `jobs` against `targets` and records every job's outcome.
pub async fn run(
    http: &Http,
    targets: &[Target],
    jobs: &[PlannedJob],
    options: &RunOptions,
) -> RunRecords {
    let shared = Arc::new(Shared {
        outstanding: targets.iter().map(|_| AtomicUsize::new(0)).collect(),
        unanswered_in_a_row: AtomicUsize::new(0),
        last_unanswered: Mutex::new(None),
        give_up: AtomicBool::new(false),
    });
    let progress = progress_bar(options, jobs.len());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<JobRecord>();
    let start = Instant::now();
    let mut sent = 0;
    let mut aborted = None;
    for job in jobs {
        if shared.give_up.load(Ordering::Relaxed) {
            let last = shared
                .last_unanswered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default();
            aborted = Some(format!(
                "stopped after sending {sent} of {} jobs: {GIVE_UP_AFTER_UNANSWERED} requests \
                 in a row got no answer from any worker (last: {last})",
                jobs.len()
            ));
            break;
        }
        tokio::time::sleep_until(start + job.at).await;
        let target = choose(options.dispatch, job, &shared.outstanding);
        shared.outstanding[target].fetch_add(1, Ordering::Relaxed);
        sent += 1;
        let submission = match options.dispatch {
            Dispatch::Cluster => Submission::Place,
            // A fresh id per job and per run, so that runs against the same cluster never
            // reuse one.
            Dispatch::Random | Dispatch::Jsq => Submission::Placed,
        };
        let body = job_body(options.kind, job.service_ms);
        let task = JobTask {
            http: http.clone(),
            base: targets[target].base.clone(),
            shared: Arc::clone(&shared),
            done: done_tx.clone(),
            progress: progress.clone(),
            timeout: options.request_timeout,
        };
        let job = *job;
        tokio::spawn(task.run(job, target, body, submission, start));
    }
    drop(done_tx);
    let mut records = Vec::with_capacity(sent);
    // Every task sends exactly one record and each is bounded by the request timeout, so this
    // ends once the last job in flight is answered or gives up.
    while let Some(record) = done_rx.recv().await {
        records.push(record);
    }
    progress.finish_and_clear();
    records.sort_by_key(|r| r.job.index);
    RunRecords {
        label: options.label.clone(),
        dispatch: options.dispatch,
        worker_policy: options.worker_policy.clone(),
        targets: targets.to_vec(),
        planned: jobs.len(),
        records,
        wall: start.elapsed(),
        aborted,
    }
}

/// The target for `job` under `dispatch`.
fn choose(dispatch: Dispatch, job: &PlannedJob, outstanding: &[AtomicUsize]) -> usize {
    match dispatch {
        Dispatch::Cluster => job.entry,
        Dispatch::Random => job.pick,
        Dispatch::Jsq => {
            let counts: Vec<usize> = outstanding
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect();
            shortest(&counts, job.tie_break)
        }
    }
}

/// The index of the smallest count; among equal ones, the `tie_break`-th (mod their number).
pub fn shortest(counts: &[usize], tie_break: u64) -> usize {
    let min = counts.iter().copied().min().unwrap_or(0);
    let tied: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] == min).collect();
    tied[(tie_break % tied.len().max(1) as u64) as usize]
}

/// The JSON body of a job.
pub fn job_body(kind: JobKindChoice, ms: u64) -> Bytes {
    Bytes::from(serde_json::json!({"kind": kind.as_str(), "ms": ms}).to_string())
}

/// One job in flight.
struct JobTask {
    http: Http,
    base: String,
    shared: Arc<Shared>,
    done: mpsc::UnboundedSender<JobRecord>,
    progress: ProgressBar,
    timeout: Duration,
}

impl JobTask {
    async fn run(
        self,
        job: PlannedJob,
        target: usize,
        body: Bytes,
        submission: Submission,
        start: Instant,
    ) {
        let sent = Instant::now();
        let result = self
            .http
            .run_job(&self.base, body, submission, self.timeout)
            .await;
        let sojourn_ms = sent.elapsed().as_secs_f64() * 1000.0;
        self.shared.outstanding[target].fetch_sub(1, Ordering::Relaxed);
        match &result {
            Err(e) if e.is_unreachable() => {
                *self
                    .shared
                    .last_unanswered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(format!("{}: {e}", self.base));
                let n = self
                    .shared
                    .unanswered_in_a_row
                    .fetch_add(1, Ordering::Relaxed)
                    + 1;
                if n >= GIVE_UP_AFTER_UNANSWERED {
                    self.shared.give_up.store(true, Ordering::Relaxed);
                }
            }
            _ => self.shared.unanswered_in_a_row.store(0, Ordering::Relaxed),
        }
        self.progress.inc(1);
        // The receiver lives until every sender is gone; a send cannot fail before that.
        let _ = self.done.send(JobRecord {
            job,
            target,
            sent_at: sent.duration_since(start),
            sojourn_ms,
            result,
        });
    }
}

fn progress_bar(options: &RunOptions, len: usize) -> ProgressBar {
    if !options.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>24} [{bar:30}] {pos}/{len} jobs done, {elapsed} (eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(options.label.clone());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_picks_the_minimum_and_spreads_ties() {
        assert_eq!(shortest(&[3, 1, 2], 0), 1);
        assert_eq!(shortest(&[3, 1, 2], 99), 1);
        assert_eq!(shortest(&[0, 5, 0, 0], 0), 0);
        assert_eq!(shortest(&[0, 5, 0, 0], 1), 2);
        assert_eq!(shortest(&[0, 5, 0, 0], 2), 3);
        assert_eq!(shortest(&[0, 5, 0, 0], 3), 0);
    }

    #[test]
    fn job_bodies_are_what_the_api_takes() {
        let body = job_body(JobKindChoice::Spin, 42);
        let spec = hearsay_shared::JobSpec::from_json(&body).unwrap();
        assert_eq!(spec.kind, hearsay_shared::JobKind::Spin { ms: 42 });
    }
}
