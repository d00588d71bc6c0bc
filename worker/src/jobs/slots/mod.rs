//! The executor: a fixed number of slots that run jobs, and a bounded FIFO queue in front of
//! them.
//!
//! A job that finds a free slot starts at once; otherwise it waits in the queue, and a job that
//! finds the queue full is refused (the caller then tries a peer, or answers 503). Each busy
//! slot is one task that runs its job, records the end in the [`JobStore`], and takes the next
//! job from the queue until the queue is empty. The kinds:
//!
//! - `sleep` waits on tokio's timer, using no CPU;
//! - `spin` keeps one CPU busy until it has used its milliseconds of CPU time (so a throttled
//!   or shared CPU makes it last longer, as real work would), on tokio's blocking pool, never on the async runtime's threads,
//!   so the HTTP API stays responsive while every slot spins; it checks a flag every few
//!   microseconds, so a timeout or the end of a drain stops it at once;
//! - `echo` answers with its data;
//! - `exec` runs a command this node declares ([`super::commands`]) as a real process
//!   ([`super::process`]): succeeded on exit 0, failed otherwise, its exit and output the outcome.
//!
//! A job's optional `timeout_ms` counts from the moment it starts running; past it the job is
//! stopped and recorded `timed_out` (an `exec` job's timeout is its command's, or the job's if
//! that is shorter). The executor is the node's [`WorkGauge`], and
//! [`Executor::load`] gives its exact load for placement.
//!
//! This file holds the executor's handle and what it shares with its slots; `slot.rs` holds a
//! busy slot's task.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use hearsay_shared::{
    JobId, JobKind, JobOutcome, JobSpec, JobStatus, LoadVector, NodeId, NodeState,
};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ms;
use crate::gossip::sampler::{Work, WorkGauge};
use crate::jobs::commands::{BadArgs, Commands};
use crate::jobs::store::{DuplicateJob, Extra, JobStore};
use crate::metrics::Metrics;

mod slot;

/// The error of a job that was still queued when its node finished draining.
pub const LEFT_BEFORE_RUNNING: &str = "node left before running it";
/// The error of a job that was still running when its node finished draining.
pub const LEFT_BEFORE_FINISHING: &str = "node left before it finished";
/// The error of a job cancelled while it waited in the queue.
pub const CANCELLED_QUEUED: &str = "cancelled before it ran";
/// The error of a job stopped while it ran by a forced cancel.
pub const CANCELLED_RUNNING: &str = "cancelled while it ran (forced)";

/// A job handed to the executor.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Its id (assigned by the entry node).
    pub id: JobId,
    /// What to run.
    pub spec: JobSpec,
    /// The node it was submitted to.
    pub entry: NodeId,
    /// The nodes it was at before this one, entry first (empty if submitted here).
    pub path: Vec<NodeId>,
    /// When it arrived at this node.
    pub arrived: Instant,
}

/// Why the executor did not take a job. Nothing was recorded or queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every slot is busy and the queue is full.
    #[error("every slot is busy and the queue is full")]
    Full,
    /// The node is leaving and takes no more jobs.
    #[error("the node is leaving")]
    Closed,
    /// A job with this id is already held here.
    #[error(transparent)]
    Duplicate(#[from] DuplicateJob),
    /// An `exec` job names a command this node does not declare.
    #[error("command {0:?} is not declared on this node")]
    Undeclared(String),
    /// An `exec` job's args do not fit its command.
    #[error(transparent)]
    BadArgs(#[from] BadArgs),
}

/// What [`Executor::cancel`] found of a job. Only `Cancelled` and `Stopping` changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// It was queued: taken out of the queue and recorded `cancelled`; it will not run.
    Cancelled,
    /// It runs, and the cancel was not forced: nothing changed.
    Running,
    /// It ran, and the forced cancel stops it now; its slot records the end (`cancelled`,
    /// unless it ended on its own first).
    Stopping,
    /// Neither queued nor running in this executor: nothing changed.
    NotHere,
}

/// Runs jobs in a fixed number of slots. Cloning gives another handle to the same executor.
#[derive(Debug, Clone)]
pub struct Executor {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    node: NodeId,
    slots: u32,
    queue_limit: usize,
    store: Arc<JobStore>,
    metrics: Metrics,
    /// The commands `exec` jobs may run here.
    commands: Arc<Commands>,
    state: Mutex<State>,
    /// Woken whenever a slot falls idle, so that a drain can tell when nothing is left.
    idle: Notify,
    /// Cancelled when the drain's time is up: running jobs stop and are recorded lost.
    abandon: CancellationToken,
    /// Set when the node is killed: running jobs stop and nothing more is recorded.
    killed: AtomicBool,
    tracker: TaskTracker,
    /// Where starts and ends are reported (see [`Executor::report_to`]).
    events: OnceLock<mpsc::UnboundedSender<(JobId, JobStatus)>>,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Submission>,
    running: u32,
    open: bool,
    /// The jobs in a slot, from the moment they leave the queue until their end is recorded.
    in_slots: HashMap<JobId, InSlot>,
}

/// A job in a slot: how to stop it alone, and whether a forced cancel did.
#[derive(Debug)]
struct InSlot {
    stop: CancellationToken,
    cancelled: bool,
}

impl State {
    /// Counts `id` as in a slot from now on; returns the token that stops it alone (also
    /// stopped by `abandon`).
    fn enter_slot(&mut self, id: JobId, abandon: &CancellationToken) -> CancellationToken {
        let stop = abandon.child_token();
        let slot = InSlot {
            stop: stop.clone(),
            cancelled: false,
        };
        self.in_slots.insert(id, slot);
        stop
    }
}

impl Executor {
    /// An executor with `slots` slots and room for `queue_limit` waiting jobs, recording into
    /// `store` and `metrics`; its slot tasks are spawned on `tracker`. It runs no command (see
    /// [`Executor::with_commands`]).
    #[cfg(test)]
    pub fn new(
        node: NodeId,
        slots: u32,
        queue_limit: usize,
        store: Arc<JobStore>,
        metrics: Metrics,
        tracker: TaskTracker,
    ) -> Self {
        let none = Arc::new(Commands::none());
        Self::with_commands(node, slots, queue_limit, store, metrics, tracker, none)
    }

    /// An executor with `slots` slots and room for `queue_limit` waiting jobs, recording into
    /// `store` and `metrics` and running `exec` jobs of the given commands; its slot tasks are
    /// spawned on `tracker`.
    pub fn with_commands(
        node: NodeId,
        slots: u32,
        queue_limit: usize,
        store: Arc<JobStore>,
        metrics: Metrics,
        tracker: TaskTracker,
        commands: Arc<Commands>,
    ) -> Self {
        Executor {
            shared: Arc::new(Shared {
                node,
                slots,
                queue_limit,
                store,
                metrics,
                commands,
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    running: 0,
                    open: true,
                    in_slots: HashMap::new(),
                }),
                idle: Notify::new(),
                abandon: CancellationToken::new(),
                killed: AtomicBool::new(false),
                tracker,
                events: OnceLock::new(),
            }),
        }
    }

    /// Reports every job's start (`running`) and end (its status; `lost` for one abandoned)
    /// on `events`, from now on. Only the first call counts.
    pub fn report_to(&self, events: mpsc::UnboundedSender<(JobId, JobStatus)>) {
        let _ = self.shared.events.set(events);
    }

    /// Whether this node can run `spec`: it declares an `exec` job's command and the args fit.
    pub fn can_run(&self, spec: &JobSpec) -> Result<(), Refusal> {
        if let JobKind::Exec { command, args, .. } = &spec.kind {
            let declared = self
                .shared
                .commands
                .get(command)
                .ok_or_else(|| Refusal::Undeclared(command.clone()))?;
            declared.argv(args)?;
        }
        Ok(())
    }

    /// Takes a job: records it and starts it in a free slot, or queues it. Returns the job's
    /// status (`running` or `queued`).
    pub fn submit(&self, job: Submission) -> Result<JobStatus, Refusal> {
        let shared = &self.shared;
        self.can_run(&job.spec)?;
        let now = Instant::now();
        // The record is made under the executor's lock, so that a refused job leaves none and
        // a slot never looks for a record that is not there yet.
        let mut state = shared.lock();
        if !state.open {
            return Err(Refusal::Closed);
        }
        let starts_now = state.running < shared.slots;
        if shared.refuses(&state) {
            return Err(Refusal::Full);
        }
        let mut record = JobOutcome::new(
            job.id,
            job.spec.kind.name(),
            JobStatus::Queued,
            job.entry.clone(),
        );
        record.executing_node = Some(shared.node.clone());
        record.hops = u32::try_from(job.path.len()).unwrap_or(u32::MAX);
        record.path = job.path.iter().chain([&shared.node]).cloned().collect();
        let extra = Extra {
            // Kept on disk until it ends, so that a restart runs it if it had not started.
            spec: shared.store.is_durable().then(|| job.spec.clone()),
            ..Extra::default()
        };
        shared.store.insert_with(now, record, extra)?;
        if starts_now {
            state.running += 1;
            let stop = state.enter_slot(job.id, &shared.abandon);
            drop(state);
            Shared::start_slot(shared, job, stop);
            Ok(JobStatus::Running)
        } else {
            state.queue.push_back(job);
            Ok(JobStatus::Queued)
        }
    }

    /// Takes back a job this node held when it stopped, had not started, and whose record
    /// the store restored: queued (beyond the queue's limit if need be: it was accepted) or
    /// started in a free slot.
    pub fn resume(&self, job: Submission) {
        let shared = &self.shared;
        let mut state = shared.lock();
        if state.running < shared.slots {
            state.running += 1;
            let stop = state.enter_slot(job.id, &shared.abandon);
            drop(state);
            Shared::start_slot(shared, job, stop);
        } else {
            state.queue.push_back(job);
        }
    }

    /// Takes the newest queued job out of the queue (never a running one), for a thief: the
    /// one that would wait longest here.
    pub fn take_newest(&self) -> Option<Submission> {
        self.shared.lock().queue.pop_back()
    }

    /// Puts back a job [`Executor::take_newest`] took out, at the end of the queue (or into a
    /// slot that fell free meanwhile). Its record is still there.
    pub fn requeue(&self, job: Submission) {
        if self.shared.killed.load(Ordering::Relaxed) {
            return;
        }
        self.resume(job);
    }

    /// Cancels job `id`: a queued one is taken out of the queue and recorded `cancelled`
    /// (with `total_ms`, and the error [`CANCELLED_QUEUED`]); a running one is stopped only
    /// if `force` (its slot records it `cancelled`, [`CANCELLED_RUNNING`]).
    pub fn cancel(&self, id: JobId, force: bool) -> Cancel {
        let shared = &self.shared;
        let job = {
            let mut state = shared.lock();
            if let Some(slot) = state.in_slots.get_mut(&id) {
                if !force {
                    return Cancel::Running;
                }
                slot.cancelled = true;
                slot.stop.cancel();
                return Cancel::Stopping;
            }
            let Some(at) = state.queue.iter().position(|job| job.id == id) else {
                return Cancel::NotHere;
            };
            state.queue.remove(at)
        };
        let Some(job) = job else {
            return Cancel::NotHere;
        };
        let now = Instant::now();
        let total = ms(now - job.arrived);
        shared.store.update(now, id, |o| {
            o.status = JobStatus::Cancelled;
            o.error = Some(CANCELLED_QUEUED.to_owned());
            o.total_ms = Some(total);
        });
        shared.metrics.job_ended(JobStatus::Cancelled, None);
        shared.report(id, JobStatus::Cancelled);
        // A drain waiting for the queue to empty may be done now.
        shared.idle.notify_waiters();
        Cancel::Cancelled
    }

    /// The work held now, exactly.
    pub fn work(&self) -> Work {
        let state = self.shared.lock();
        Work {
            queued: u32::try_from(state.queue.len()).unwrap_or(u32::MAX),
            running: state.running,
        }
    }

    /// Whether a job submitted now would be refused: every slot busy and the queue full, or
    /// the executor closed.
    pub fn is_full(&self) -> bool {
        self.shared.refuses(&self.shared.lock())
    }

    /// This node's exact load for placement: the executor's counts now, with the CPU figures of
    /// `sampled` (the node's last gossiped vector, which carries the last CPU sample). A node
    /// that cannot take the job (full or leaving) says `Leaving`, so that placement does not
    /// choose it.
    pub fn load(&self, sampled: &LoadVector) -> LoadVector {
        let state = self.shared.lock();
        LoadVector {
            cpu_permille: sampled.cpu_permille,
            cpu_capacity_millicores: sampled.cpu_capacity_millicores,
            cpu_outside_permille: sampled.cpu_outside_permille,
            queued: u32::try_from(state.queue.len()).unwrap_or(u32::MAX),
            running: state.running,
            slots: self.shared.slots,
            state: if self.shared.refuses(&state) {
                NodeState::Leaving
            } else {
                NodeState::Alive
            },
            commands: self.shared.commands.offer_set(),
            ended: Default::default(),
            sojourn: Default::default(),
        }
    }

    /// Stops taking jobs; those already taken still run.
    pub fn close(&self) {
        self.shared.lock().open = false;
    }

    /// Waits until no job is queued or running.
    pub async fn idle(&self) {
        loop {
            // Registered before the check, so a slot falling idle in between still wakes us.
            let notified = self.shared.idle.notified();
            {
                let state = self.shared.lock();
                if state.running == 0 && state.queue.is_empty() {
                    return;
                }
            }
            notified.await;
        }
    }

    /// Gives up on every job left: queued ones are recorded lost at once; running ones are
    /// stopped and recorded lost by their slots. Also closes the executor. Returns how many
    /// were queued and how many running.
    pub fn abandon(&self) -> Work {
        let (queue, running) = {
            let mut state = self.shared.lock();
            state.open = false;
            (std::mem::take(&mut state.queue), state.running)
        };
        let now = Instant::now();
        for job in &queue {
            self.shared.report(job.id, JobStatus::Lost);
            self.shared.metrics.job_ended(JobStatus::Lost, None);
            let total = ms(now - job.arrived);
            self.shared.store.update(now, job.id, |o| {
                o.status = JobStatus::Lost;
                o.error = Some(LEFT_BEFORE_RUNNING.to_owned());
                o.total_ms = Some(total);
            });
        }
        self.shared.abandon.cancel();
        Work {
            queued: u32::try_from(queue.len()).unwrap_or(u32::MAX),
            running,
        }
    }

    /// Stops every job at once and records nothing more, as when the node's process is
    /// killed (see `NodeHandle::kill`).
    pub fn kill(&self) {
        self.shared.killed.store(true, Ordering::Relaxed);
        {
            let mut state = self.shared.lock();
            state.open = false;
            state.queue.clear();
        }
        self.shared.abandon.cancel();
    }
}

impl WorkGauge for Executor {
    fn work(&self) -> Work {
        Executor::work(self)
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under this lock is a push, a pop or a counter step: a panic elsewhere
        // cannot leave the state half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, id: JobId, status: JobStatus) {
        if let Some(events) = self.events.get() {
            let _ = events.send((id, status));
        }
    }

    fn refuses(&self, state: &State) -> bool {
        !state.open || (state.running >= self.slots && state.queue.len() >= self.queue_limit)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::*;
    use crate::jobs::store::Retention;

    fn executor(slots: u32, queue_limit: usize) -> (Executor, Arc<JobStore>) {
        let store = Arc::new(JobStore::new(Retention {
            time: Duration::from_secs(60),
            jobs: 100,
            ..Retention::default()
        }));
        let node = NodeId::new("me").unwrap();
        let executor = Executor::new(
            node,
            slots,
            queue_limit,
            store.clone(),
            Metrics::new(),
            TaskTracker::new(),
        );
        (executor, store)
    }

    fn job(id: u64, json: &str) -> Submission {
        Submission {
            id: JobId(id),
            spec: JobSpec::from_json(json.as_bytes()).unwrap(),
            entry: NodeId::new("entry").unwrap(),
            path: vec![NodeId::new("entry").unwrap()],
            arrived: Instant::now(),
        }
    }

    async fn outcome_when_done(store: &JobStore, id: u64) -> JobOutcome {
        let mut rx = store.watch(Instant::now(), JobId(id)).unwrap();
        let outcome = rx.wait_for(|o| o.status.is_terminal()).await.unwrap();
        outcome.clone()
    }

    #[tokio::test(start_paused = true)]
    async fn slots_then_a_bounded_fifo_queue() {
        let (executor, store) = executor(1, 2);
        let sleep = r#"{"kind":"sleep","ms":100}"#;
        assert_eq!(executor.submit(job(1, sleep)), Ok(JobStatus::Running));
        assert_eq!(executor.submit(job(2, sleep)), Ok(JobStatus::Queued));
        assert_eq!(executor.submit(job(3, sleep)), Ok(JobStatus::Queued));
        assert_eq!(executor.submit(job(4, sleep)), Err(Refusal::Full));
        assert!(executor.is_full());
        assert!(
            store.get(Instant::now(), JobId(4)).is_none(),
            "a refusal leaves no record"
        );
        assert_eq!(
            executor.work(),
            Work {
                queued: 2,
                running: 1
            }
        );
        assert_eq!(
            executor.load(&LoadVector::idle(0)).state,
            NodeState::Leaving,
            "full: not a candidate"
        );

        let third = outcome_when_done(&store, 3).await;
        let second = store.get(Instant::now(), JobId(2)).unwrap();
        assert_eq!(second.status, JobStatus::Succeeded, "FIFO: 2 ran before 3");
        assert_eq!(third.status, JobStatus::Succeeded);
        assert_eq!(third.queued_ms, Some(200));
        assert_eq!(third.run_ms, Some(100));
        assert_eq!(third.total_ms, Some(300));
        assert_eq!(third.executing_node.unwrap().as_str(), "me");
        assert_eq!(third.entry_node.as_str(), "entry");
        assert_eq!(third.hops, 1);
        executor.idle().await;
        assert_eq!(executor.work(), Work::default());
    }

    #[tokio::test(start_paused = true)]
    async fn duplicates_are_refused() {
        let (executor, _) = executor(1, 2);
        executor
            .submit(job(1, r#"{"kind":"echo","data":"x"}"#))
            .unwrap();
        assert!(matches!(
            executor.submit(job(1, r#"{"kind":"echo","data":"x"}"#)),
            Err(Refusal::Duplicate(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn echo_answers_its_data_and_timeouts_stop_sleeps() {
        let (executor, store) = executor(2, 2);
        executor
            .submit(job(1, r#"{"kind":"echo","data":"hi"}"#))
            .unwrap();
        executor
            .submit(job(2, r#"{"kind":"sleep","ms":1000,"timeout_ms":30}"#))
            .unwrap();
        let echo = outcome_when_done(&store, 1).await;
        assert_eq!(echo.status, JobStatus::Succeeded);
        assert_eq!(echo.output, Some(Value::String("hi".into())));
        let slept = outcome_when_done(&store, 2).await;
        assert_eq!(slept.status, JobStatus::TimedOut);
        assert_eq!(slept.run_ms, Some(30));
        assert!(slept.error.unwrap().contains("30 ms"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_spin_stops_at_its_timeout() {
        let (executor, store) = executor(1, 0);
        executor
            .submit(job(1, r#"{"kind":"spin","ms":600000,"timeout_ms":20}"#))
            .unwrap();
        let spun = tokio::time::timeout(Duration::from_secs(10), outcome_when_done(&store, 1))
            .await
            .expect("a spin past its timeout is stopped");
        assert_eq!(spun.status, JobStatus::TimedOut);
        tokio::time::timeout(Duration::from_secs(10), executor.idle())
            .await
            .expect("and its slot is freed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancel_takes_a_queued_job_out_and_stops_a_running_one_only_if_forced() {
        let (executor, store) = executor(1, 5);
        let long = r#"{"kind":"sleep","ms":600000}"#;
        executor.submit(job(1, long)).unwrap();
        executor.submit(job(2, long)).unwrap();
        executor
            .submit(job(3, r#"{"kind":"echo","data":"x"}"#))
            .unwrap();
        assert_eq!(executor.cancel(JobId(2), false), Cancel::Cancelled);
        let queued = store.get(Instant::now(), JobId(2)).unwrap();
        assert_eq!(queued.status, JobStatus::Cancelled);
        assert_eq!(queued.error.as_deref(), Some(CANCELLED_QUEUED));
        assert_eq!(executor.cancel(JobId(2), true), Cancel::NotHere, "gone");
        assert_eq!(executor.work().queued, 1);
        assert_eq!(executor.cancel(JobId(1), false), Cancel::Running);
        assert_eq!(executor.cancel(JobId(9), true), Cancel::NotHere);
        assert_eq!(executor.cancel(JobId(1), true), Cancel::Stopping);
        let running = outcome_when_done(&store, 1).await;
        assert_eq!(running.status, JobStatus::Cancelled);
        assert_eq!(running.error.as_deref(), Some(CANCELLED_RUNNING));
        // The slot goes on with the queue: the echo behind runs.
        let next = outcome_when_done(&store, 3).await;
        assert_eq!(next.status, JobStatus::Succeeded);
        executor.idle().await;
        assert_eq!(executor.work(), Work::default());
    }

    #[tokio::test(start_paused = true)]
    async fn abandoning_records_every_job_left_as_lost() {
        let (executor, store) = executor(1, 5);
        executor
            .submit(job(1, r#"{"kind":"sleep","ms":1000}"#))
            .unwrap();
        executor
            .submit(job(2, r#"{"kind":"sleep","ms":1000}"#))
            .unwrap();
        executor.close();
        assert_eq!(
            executor.submit(job(3, r#"{"kind":"sleep","ms":1}"#)),
            Err(Refusal::Closed)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            executor.abandon(),
            Work {
                queued: 1,
                running: 1
            }
        );
        let queued = outcome_when_done(&store, 2).await;
        assert_eq!(queued.status, JobStatus::Lost);
        assert_eq!(queued.error.as_deref(), Some(LEFT_BEFORE_RUNNING));
        let running = outcome_when_done(&store, 1).await;
        assert_eq!(running.status, JobStatus::Lost);
        assert_eq!(running.error.as_deref(), Some(LEFT_BEFORE_FINISHING));
        executor.idle().await;
    }
}
