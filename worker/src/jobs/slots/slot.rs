//! One busy slot: the task that starts a job, runs it, records its end in the store, and goes on
//! with the queue's next job until the queue is empty. [`Executor`](super::Executor) hands it a
//! job; what it shares with the executor (the queue, the counts, the tokens that stop jobs) is
//! `Shared`, in `mod.rs`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use hearsay_shared::{JobKind, JobStatus};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, Instrument as _};

use super::{Shared, Submission, CANCELLED_RUNNING, LEFT_BEFORE_FINISHING};
use crate::jobs::kinds::{perform, Ending};
use crate::jobs::ms;

impl Shared {
    /// Records that `job` starts now; returns the instant.
    fn start(&self, job: &Submission) -> Instant {
        let now = Instant::now();
        self.metrics.job_started(now - job.arrived);
        let queued = ms(now - job.arrived);
        self.store.update(now, job.id, |o| {
            o.status = JobStatus::Running;
            o.queued_ms = Some(queued);
        });
        self.report(job.id, JobStatus::Running);
        now
    }

    /// Starts `job` in a slot just counted as running (`stop` stops it alone).
    pub(super) fn start_slot(shared: &Arc<Shared>, job: Submission, stop: CancellationToken) {
        let started = shared.start(&job);
        let slot = Arc::clone(shared);
        shared
            .tracker
            .spawn(async move { slot.run_slot(job, started, stop).await });
    }

    /// One busy slot: runs `job`, then the queue's next jobs, until the queue is empty.
    async fn run_slot(
        self: Arc<Self>,
        mut job: Submission,
        mut started: Instant,
        mut stop: CancellationToken,
    ) {
        loop {
            // Every log line about the job carries its id and where it came from and runs.
            let span = info_span!("job", id = %job.id, entry = %job.entry, executing = %self.node);
            // An `exec` job's start is on disk before it runs: a restart must not run its
            // command again. The other kinds act on nothing outside the node, so a start lost
            // in a crash just runs them again (not twice: the first run's end was never told),
            // and they start without waiting for the disk.
            let recorded = match job.spec.kind {
                JobKind::Exec { .. } => self.store.flushed().await,
                _ => Ok(()),
            };
            let ending = match recorded {
                Ok(()) => {
                    perform(job.spec.clone(), &self.commands, &stop)
                        .instrument(span.clone())
                        .await
                }
                Err(e) => Ending::Unrecorded(e.0),
            };
            // Stopped by a forced cancel, not by the drain: its end is `cancelled`. Still in
            // the slot until its end is recorded, so a cancel meanwhile finds it running.
            let cancelled = matches!(ending, Ending::Abandoned)
                && self
                    .lock()
                    .in_slots
                    .get(&job.id)
                    .is_some_and(|s| s.cancelled);
            let ending = if cancelled { Ending::Cancelled } else { ending };
            span.in_scope(|| self.finish(&job, started, ending));
            let next = {
                let mut state = self.lock();
                state.in_slots.remove(&job.id);
                let next = state.queue.pop_front();
                match &next {
                    Some(next) => stop = state.enter_slot(next.id, &self.abandon),
                    None => state.running -= 1,
                }
                next
            };
            match next {
                Some(next) => {
                    started = self.start(&next);
                    job = next;
                }
                None => break,
            }
        }
        self.idle.notify_waiters();
    }

    fn finish(&self, job: &Submission, started: Instant, ending: Ending) {
        if self.killed.load(Ordering::Relaxed) {
            return;
        }
        let now = Instant::now();
        let (run, total) = (ms(now - started), ms(now - job.arrived));
        let status = match &ending {
            Ending::Succeeded(_) => JobStatus::Succeeded,
            Ending::Failed(..) => JobStatus::Failed,
            Ending::TimedOut(..) => JobStatus::TimedOut,
            Ending::Abandoned | Ending::Unrecorded(_) => JobStatus::Lost,
            Ending::Cancelled => JobStatus::Cancelled,
        };
        self.metrics.job_ended(status, Some(now - started));
        self.metrics.job_sojourn(now - job.arrived);
        debug!(
            status = status.as_str(),
            queued_ms = total.saturating_sub(run),
            run_ms = run,
            "job ended"
        );
        self.store.update(now, job.id, |o| {
            o.run_ms = Some(run);
            o.total_ms = Some(total);
            match ending {
                Ending::Succeeded(output) => {
                    o.status = JobStatus::Succeeded;
                    o.output = output;
                }
                Ending::Failed(error, output) => {
                    o.status = JobStatus::Failed;
                    o.error = Some(error);
                    o.output = output;
                }
                Ending::TimedOut(timeout, output) => {
                    o.status = JobStatus::TimedOut;
                    o.error = Some(format!(
                        "stopped after its timeout of {} ms",
                        timeout.as_millis()
                    ));
                    o.output = output;
                }
                Ending::Abandoned => {
                    o.status = JobStatus::Lost;
                    o.error = Some(LEFT_BEFORE_FINISHING.to_owned());
                }
                Ending::Unrecorded(e) => {
                    o.status = JobStatus::Lost;
                    o.error = Some(format!("not started: its start could not be recorded: {e}"));
                }
                Ending::Cancelled => {
                    o.status = JobStatus::Cancelled;
                    o.error = Some(CANCELLED_RUNNING.to_owned());
                }
            }
        });
        self.report(job.id, status);
    }
}
