//! The job store: what this node knows of every job it holds or was submitted — the jobs it
//! runs, and the jobs it forwarded (as their entry node, it answers for them).
//!
//! Each record is a [`watch`] channel of the job's [`JobOutcome`], so that a request waiting
//! for the end (`?wait=true`) is woken by the update that ends it. Unfinished jobs are always
//! kept (the executor's queue bounds them); finished ones are kept for [`Retention::time`], at
//! most [`Retention::jobs`] of them and at most [`Retention::bytes`] of memory between them
//! (by [`outcome_bytes`]), the oldest forgotten first; after that the id is unknown (a 404).
//! Every outcome is bounded as it is kept: its output to [`Retention::max_output_bytes`] of
//! text, cut and flagged beyond ([`JobOutcome::limit`]) — whether this node ran the job or
//! learned its end from the peer that did.
//!
//! Every method takes `now`, so retention is tested without waiting.
//!
//! With a [`Disk`] (`--data-dir`), every change of a record is also written there, with what
//! a restart needs beyond the outcome ([`Extra`]: the spec of a job not yet ended, its key,
//! the peer that holds it); a record forgotten here is deleted there. [`JobStore::flushed`]
//! waits until the writes so far are on disk.
//!
//! This file holds the records and their changes; `retention.rs` what is kept of finished jobs
//! and for how long, `list.rs` the pages of `GET /v1/jobs`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hearsay_shared::{JobId, JobOutcome, JobSpec};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::jobs::disk::{Disk, DiskError, Stored};

mod list;
mod retention;

pub use list::JobPage;
pub use retention::{outcome_bytes, Retention, DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_RETAIN_BYTES};

/// A job with this id is already held; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("job {0} already exists")]
pub struct DuplicateJob(pub JobId);

/// What the store keeps of a job beyond its outcome, for a restart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra {
    /// What to run, while it has not ended here.
    pub spec: Option<JobSpec>,
    /// Its idempotency key and its body's digest in hex, if it was submitted here with one.
    pub key: Option<(String, String)>,
    /// The API and incarnation of the peer that holds it, if this node follows it there.
    pub peer: Option<(std::net::SocketAddr, u64)>,
    /// When it ended, in milliseconds since the UNIX epoch.
    pub ended_ms: Option<u64>,
    /// The peer it is being given to (a steal, a hand-over), queued here until that settles.
    pub moving_to: Option<hearsay_shared::NodeId>,
}

/// The outcomes of the jobs this node holds or answers for.
#[derive(Debug)]
pub struct JobStore {
    retention: Retention,
    inner: Mutex<Inner>,
    disk: Option<Disk>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<JobId, watch::Sender<JobOutcome>>,
    /// What is kept beside the outcomes that have any, written with them.
    extras: HashMap<JobId, Extra>,
    /// Where every change goes too.
    disk: Option<Disk>,
    /// Finished jobs, in the order they finished, with their [`outcome_bytes`]: the front is
    /// evicted first.
    finished: VecDeque<(Instant, JobId, usize)>,
    /// The sum of the sizes in `finished`.
    finished_bytes: usize,
}

impl JobStore {
    /// An empty store, in memory only.
    pub fn new(retention: Retention) -> Self {
        JobStore {
            retention,
            inner: Mutex::new(Inner::default()),
            disk: None,
        }
    }

    /// An empty store that writes every change to `disk` too.
    pub fn with_disk(retention: Retention, disk: Disk) -> Self {
        JobStore {
            retention,
            inner: Mutex::new(Inner {
                disk: Some(disk.clone()),
                ..Inner::default()
            }),
            disk: Some(disk),
        }
    }

    /// Whether changes go to disk.
    pub fn is_durable(&self) -> bool {
        self.disk.is_some()
    }

    /// Resolves once every change so far is on disk (at once without a disk), or with why it
    /// could not be written.
    ///
    /// "So far" includes a change another task has just made and announced to its watchers:
    /// every change sends its write under the store's lock, and the barrier is sent under it
    /// too, so it goes behind them.
    pub async fn flushed(&self) -> Result<(), DiskError> {
        let Some(disk) = &self.disk else {
            return Ok(());
        };
        let barrier = {
            let _inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            disk.barrier()
        };
        barrier.await
    }

    /// Why the store cannot take new jobs now, if it cannot: its disk's last commit failed.
    pub fn trouble(&self) -> Option<String> {
        self.disk.as_ref().and_then(Disk::trouble)
    }

    /// Adds a job with what a restart needs of it beyond its outcome.
    pub fn insert_with(
        &self,
        now: Instant,
        outcome: JobOutcome,
        extra: Extra,
    ) -> Result<(), DuplicateJob> {
        let id = outcome.id;
        let mut inner = self.lock(now);
        if inner.jobs.contains_key(&id) {
            return Err(DuplicateJob(id));
        }
        inner.extras.insert(id, extra);
        drop(inner);
        self.insert(now, outcome)
    }

    /// Changes what is kept of job `id` beyond its outcome (its key, its peer), if it is
    /// known; a job that ended keeps what it had.
    pub fn annotate(&self, now: Instant, id: JobId, change: impl FnOnce(&mut Extra)) {
        let mut inner = self.lock(now);
        if inner.jobs.contains_key(&id) {
            change(inner.extras.entry(id).or_default());
            inner.persist(id);
        }
    }

    /// Puts back a record a restart read from disk, ended `age` ago if it ended (the caller
    /// has decided what a job unfinished at the crash is now). It is not written again.
    pub fn restore(&self, now: Instant, stored: Stored, age: Option<Duration>) {
        let mut inner = self.lock(now);
        let Stored {
            mut outcome,
            spec,
            key,
            peer,
            ended_ms,
            moving_to,
        } = stored;
        let id = outcome.id;
        if inner.jobs.contains_key(&id) {
            return;
        }
        outcome.limit(self.retention.max_output_bytes);
        let ended = outcome
            .status
            .is_terminal()
            .then(|| outcome_bytes(&outcome));
        inner.jobs.insert(id, watch::Sender::new(outcome));
        inner.extras.insert(
            id,
            Extra {
                spec,
                key,
                peer,
                ended_ms,
                moving_to,
            },
        );
        if let Some(bytes) = ended {
            let at = now.checked_sub(age.unwrap_or_default()).unwrap_or(now);
            inner.finished_at(at, now, id, bytes, self.retention);
        }
    }

    fn lock(&self, now: Instant) -> std::sync::MutexGuard<'_, Inner> {
        // Every update below is a single assignment under the lock, so a panic elsewhere
        // cannot leave the store half-changed.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.evict(now, self.retention);
        inner
    }

    /// Adds a job. A finished one counts towards retention at once.
    pub fn insert(&self, now: Instant, mut outcome: JobOutcome) -> Result<(), DuplicateJob> {
        let mut inner = self.lock(now);
        let id = outcome.id;
        if inner.jobs.contains_key(&id) {
            return Err(DuplicateJob(id));
        }
        outcome.limit(self.retention.max_output_bytes);
        let ended = outcome
            .status
            .is_terminal()
            .then(|| outcome_bytes(&outcome));
        inner.jobs.insert(id, watch::Sender::new(outcome));
        if ended.is_none() {
            // An end is written with the time it ended.
            inner.persist(id);
        }
        if let Some(bytes) = ended {
            inner.finished(now, id, bytes, self.retention);
        }
        Ok(())
    }

    /// Forgets an unfinished job that was never accepted (it was refused after being added).
    /// A finished job is left to retention.
    pub fn remove_unfinished(&self, now: Instant, id: JobId) {
        let mut inner = self.lock(now);
        if inner
            .jobs
            .get(&id)
            .is_some_and(|s| !s.borrow().status.is_terminal())
        {
            inner.forget(id);
        }
    }

    /// Changes an unfinished job. A finished job never changes again (the first end wins,
    /// whatever races to end it), and an unknown id is ignored; either way, returns `false`.
    pub fn update(&self, now: Instant, id: JobId, change: impl FnOnce(&mut JobOutcome)) -> bool {
        let mut inner = self.lock(now);
        let Some(sender) = inner.jobs.get(&id) else {
            return false;
        };
        let mut ended = None;
        let max_output_bytes = self.retention.max_output_bytes;
        let changed = sender.send_if_modified(|outcome| {
            if outcome.status.is_terminal() {
                return false;
            }
            change(outcome);
            // Bounded before any watcher sees it, so a waiting submitter gets what is kept.
            outcome.limit(max_output_bytes);
            ended = outcome.status.is_terminal().then(|| outcome_bytes(outcome));
            true
        });
        if changed && ended.is_none() {
            inner.persist(id);
        }
        if let Some(bytes) = ended {
            inner.finished(now, id, bytes, self.retention);
        }
        changed
    }

    /// The job as it stands, if it is known.
    pub fn get(&self, now: Instant, id: JobId) -> Option<JobOutcome> {
        self.lock(now).jobs.get(&id).map(|s| s.borrow().clone())
    }

    /// A receiver that sees every change of the job. It keeps the last outcome even after the
    /// job is forgotten.
    pub fn watch(&self, now: Instant, id: JobId) -> Option<watch::Receiver<JobOutcome>> {
        self.lock(now).jobs.get(&id).map(watch::Sender::subscribe)
    }

    /// Jobs held: (all, finished).
    #[cfg(test)]
    pub fn len(&self, now: Instant) -> (usize, usize) {
        let inner = self.lock(now);
        (inner.jobs.len(), inner.finished.len())
    }
}

impl Inner {
    /// Counts job `id`, just finished and taking `bytes`, towards retention.
    fn finished(&mut self, now: Instant, id: JobId, bytes: usize, retention: Retention) {
        if self.disk.is_some() {
            let extra = self.extras.entry(id).or_default();
            // Not needed to run it again, and no longer true of it.
            extra.spec = None;
            extra.ended_ms = Some(wall_ms());
            self.persist(id);
        }
        self.finished_at(now, now, id, bytes, retention);
    }

    /// Writes job `id`'s record to disk as it stands, if there is a disk.
    fn persist(&self, id: JobId) {
        let (Some(disk), Some(sender)) = (&self.disk, self.jobs.get(&id)) else {
            return;
        };
        let extra = self.extras.get(&id).cloned().unwrap_or_default();
        disk.put(&Stored {
            outcome: sender.borrow().clone(),
            spec: extra.spec,
            key: extra.key,
            peer: extra.peer,
            ended_ms: extra.ended_ms,
            moving_to: extra.moving_to,
        });
    }

    /// Forgets job `id`, here and on disk.
    fn forget(&mut self, id: JobId) {
        self.jobs.remove(&id);
        self.extras.remove(&id);
        if let Some(disk) = &self.disk {
            disk.delete(id);
        }
    }
}

/// Now, in milliseconds since the UNIX epoch.
pub(crate) fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use hearsay_shared::{JobStatus, NodeId};
    use serde_json::Value;

    use super::retention::Retained;
    use super::*;

    fn outcome(id: u64, status: JobStatus) -> JobOutcome {
        JobOutcome::new(JobId(id), "sleep", status, NodeId::new("n1").unwrap())
    }

    fn finish(store: &JobStore, now: Instant, id: u64) {
        assert!(store.update(now, JobId(id), |o| o.status = JobStatus::Succeeded));
    }

    const RETENTION: Retention = Retention {
        time: Duration::from_secs(10),
        jobs: 2,
        bytes: usize::MAX,
        max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
    };

    /// Ends job `id` with an output of `len` bytes of text.
    fn finish_with(store: &JobStore, now: Instant, id: u64, len: usize) {
        assert!(store.update(now, JobId(id), |o| {
            o.status = JobStatus::Succeeded;
            o.output = Some(Value::String("x".repeat(len)));
        }));
    }

    /// What an outcome ended by [`finish_with`] takes.
    fn size_with(len: usize) -> usize {
        let mut ended = outcome(0, JobStatus::Succeeded);
        ended.output = Some(Value::String("x".repeat(len)));
        outcome_bytes(&ended)
    }

    #[test]
    fn a_list_pages_by_id_and_filters_by_status() {
        let store = JobStore::new(Retention::default());
        let now = Instant::now();
        for id in [5, 1, 4, 2, 3] {
            store.insert(now, outcome(id, JobStatus::Queued)).unwrap();
        }
        finish(&store, now, 2);
        finish(&store, now, 4);
        let ids = |page: &JobPage| page.jobs.iter().map(|j| j.id.0).collect::<Vec<_>>();
        let all = |_| true;
        let first = store.list(now, None, all, 2);
        assert_eq!((ids(&first), first.next), (vec![1, 2], Some(JobId(2))));
        let second = store.list(now, first.next, all, 2);
        assert_eq!((ids(&second), second.next), (vec![3, 4], Some(JobId(4))));
        let last = store.list(now, second.next, all, 2);
        assert_eq!((ids(&last), last.next), (vec![5], None));
        let exact = store.list(now, None, all, 5);
        assert_eq!(
            (ids(&exact).len(), exact.next),
            (5, None),
            "no page after the last"
        );
        let done = store.list(now, None, |s| s == JobStatus::Succeeded, 10);
        assert_eq!(ids(&done), vec![2, 4]);
        assert!(done.jobs.iter().all(|j| j.status == JobStatus::Succeeded));
        let queued = store.list(now, Some(JobId(1)), |s| s == JobStatus::Queued, 1);
        assert_eq!((ids(&queued), queued.next), (vec![3], Some(JobId(3))));
    }

    #[test]
    fn duplicates_are_refused_and_unknown_ids_are_none() {
        let now = Instant::now();
        let store = JobStore::new(RETENTION);
        store.insert(now, outcome(1, JobStatus::Queued)).unwrap();
        assert_eq!(
            store.insert(now, outcome(1, JobStatus::Queued)),
            Err(DuplicateJob(JobId(1)))
        );
        assert!(store.get(now, JobId(2)).is_none());
        assert!(!store.update(now, JobId(2), |_| {}));
    }

    #[test]
    fn finished_jobs_never_change_again() {
        let now = Instant::now();
        let store = JobStore::new(RETENTION);
        store.insert(now, outcome(1, JobStatus::Running)).unwrap();
        finish(&store, now, 1);
        assert!(!store.update(now, JobId(1), |o| o.status = JobStatus::Lost));
        assert_eq!(
            store.get(now, JobId(1)).unwrap().status,
            JobStatus::Succeeded
        );
    }

    #[test]
    fn finished_jobs_expire_after_the_retention_time() {
        let t0 = Instant::now();
        let store = JobStore::new(RETENTION);
        store.insert(t0, outcome(1, JobStatus::Queued)).unwrap();
        store.insert(t0, outcome(2, JobStatus::Queued)).unwrap();
        finish(&store, t0 + Duration::from_secs(1), 1);
        let later = t0 + Duration::from_secs(10);
        assert!(store.get(later, JobId(1)).is_some(), "9 s after finishing");
        let later = t0 + Duration::from_secs(11);
        assert!(store.get(later, JobId(1)).is_none(), "10 s after finishing");
        assert!(
            store
                .get(later + Duration::from_secs(3600), JobId(2))
                .is_some(),
            "an unfinished job is kept however old"
        );
    }

    #[test]
    fn the_oldest_finished_jobs_go_first_beyond_the_count() {
        let now = Instant::now();
        let store = JobStore::new(RETENTION);
        for id in 1..=4 {
            store.insert(now, outcome(id, JobStatus::Running)).unwrap();
        }
        for id in [3, 1, 4] {
            finish(&store, now, id);
        }
        assert!(
            store.get(now, JobId(3)).is_none(),
            "finished first, evicted"
        );
        assert!(store.get(now, JobId(1)).is_some());
        assert!(store.get(now, JobId(4)).is_some());
        assert!(store.get(now, JobId(2)).is_some(), "still running");
        assert_eq!(store.len(now), (3, 2));
    }

    #[test]
    fn a_watcher_keeps_the_outcome_after_eviction() {
        let now = Instant::now();
        let store = JobStore::new(Retention {
            time: Duration::from_secs(1),
            jobs: 1,
            ..RETENTION
        });
        store.insert(now, outcome(1, JobStatus::Running)).unwrap();
        let watcher = store.watch(now, JobId(1)).unwrap();
        finish(&store, now, 1);
        store.insert(now, outcome(2, JobStatus::Succeeded)).unwrap();
        assert!(store.get(now, JobId(1)).is_none());
        assert_eq!(watcher.borrow().status, JobStatus::Succeeded);
    }

    #[test]
    fn the_oldest_finished_jobs_go_first_beyond_the_bytes() {
        let now = Instant::now();
        let (big, small) = (size_with(10_000), size_with(10));
        // Room for two big outcomes and a small one, by however many jobs.
        let budget = 2 * big + small;
        let store = JobStore::new(Retention {
            jobs: 1000,
            bytes: budget,
            ..RETENTION
        });
        for id in 1..=5 {
            store.insert(now, outcome(id, JobStatus::Running)).unwrap();
        }
        finish_with(&store, now, 3, 10_000);
        finish_with(&store, now, 1, 10_000);
        finish_with(&store, now, 2, 10);
        assert_eq!(
            store.retained(now),
            Retained {
                outcomes: 3,
                bytes: budget
            },
            "exactly full"
        );
        finish_with(&store, now, 4, 10_000);
        assert!(
            store.get(now, JobId(3)).is_none(),
            "finished first, evicted"
        );
        assert!(store.get(now, JobId(1)).is_some());
        assert!(store.get(now, JobId(2)).is_some());
        assert!(store.get(now, JobId(4)).is_some());
        assert!(store.get(now, JobId(5)).is_some(), "still running");
        assert_eq!(
            store.retained(now),
            Retained {
                outcomes: 3,
                bytes: budget
            }
        );
        // One more small one: the oldest (1, big) goes, and room is left over.
        finish_with(&store, now, 5, 10);
        assert!(store.get(now, JobId(1)).is_none());
        assert_eq!(
            store.retained(now),
            Retained {
                outcomes: 3,
                bytes: big + 2 * small
            }
        );
    }

    #[test]
    fn an_outcome_larger_than_the_budget_is_forgotten_at_once_but_seen_by_its_watcher() {
        let now = Instant::now();
        let store = JobStore::new(Retention {
            bytes: size_with(100) - 1,
            ..RETENTION
        });
        store.insert(now, outcome(1, JobStatus::Running)).unwrap();
        let watcher = store.watch(now, JobId(1)).unwrap();
        finish_with(&store, now, 1, 100);
        assert!(store.get(now, JobId(1)).is_none());
        assert_eq!(
            store.retained(now),
            Retained {
                outcomes: 0,
                bytes: 0
            }
        );
        assert_eq!(watcher.borrow().status, JobStatus::Succeeded);
    }

    #[test]
    fn outputs_are_cut_to_the_limit_before_anyone_sees_them() {
        let now = Instant::now();
        let store = JobStore::new(Retention {
            max_output_bytes: 100,
            ..RETENTION
        });
        store.insert(now, outcome(1, JobStatus::Running)).unwrap();
        let watcher = store.watch(now, JobId(1)).unwrap();
        finish_with(&store, now, 1, 1000);
        let kept = store.get(now, JobId(1)).unwrap();
        assert_eq!(kept.output, Some(Value::String("x".repeat(100))));
        assert!(kept.output_truncated);
        assert_eq!(kept.output_original_bytes, Some(1000));
        assert_eq!(
            *watcher.borrow(),
            kept,
            "a waiting submitter gets what is kept"
        );
        assert_eq!(store.retained(now).bytes, size_with(100));
        // A finished outcome added whole (a forwarded job's, say) is cut too.
        let mut ended = outcome(2, JobStatus::Succeeded);
        ended.output = Some(Value::String("y".repeat(1000)));
        store.insert(now, ended).unwrap();
        assert!(store.get(now, JobId(2)).unwrap().output_truncated);
    }

    #[test]
    fn the_largest_outcome_is_about_134_kib() {
        let mut largest = outcome(1, JobStatus::Failed);
        largest.output = Some(serde_json::json!({
            "exit_code": null, "signal": 9,
            "stdout": "o".repeat(64 * 1024), "stderr": "e".repeat(64 * 1024),
            "stdout_truncated": true, "stderr_truncated": true,
        }));
        largest.error = Some("e".repeat(hearsay_shared::job::MAX_ERROR_BYTES));
        assert!(
            !largest.limit(DEFAULT_MAX_OUTPUT_BYTES),
            "nothing is cut by default"
        );
        let bytes = outcome_bytes(&largest);
        assert!(
            (132 * 1024..136 * 1024).contains(&bytes),
            "{bytes} bytes: update the figures in DEFAULT_RETAIN_BYTES' comment"
        );
        let smallest = outcome_bytes(&outcome(1, JobStatus::Succeeded));
        assert!(
            (768..1024).contains(&smallest),
            "{smallest} bytes: update the figures in DEFAULT_RETAIN_BYTES' comment"
        );
    }
}
