//! The job store: what this node knows of every job it holds or was submitted — the jobs it
//! runs, and the jobs it forwarded (as their entry node, it answers for them).
//!
//! Each record is a [`watch`] channel of the job's [`JobOutcome`], so that a request waiting
//! for the end (`?wait=true`) is woken by the update that ends it. Unfinished jobs are always
//! kept (the executor's queue bounds them); finished ones are kept for [`Retention::time`] and
//! at most [`Retention::jobs`] of them, the oldest forgotten first, and after that the id is
//! unknown (a 404).
//!
//! Every method takes `now`, so retention is tested without waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hearsay_shared::{JobId, JobOutcome};
use tokio::sync::watch;
use tokio::time::Instant;

/// How long and how many finished jobs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long a finished job is kept.
    pub time: Duration,
    /// How many finished jobs are kept at most.
    pub jobs: usize,
}

/// A job with this id is already held; nothing was changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("job {0} already exists")]
pub struct DuplicateJob(pub JobId);

/// The outcomes of the jobs this node holds or answers for.
#[derive(Debug)]
pub struct JobStore {
    retention: Retention,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    jobs: HashMap<JobId, watch::Sender<JobOutcome>>,
    /// Finished jobs, in the order they finished: the front is evicted first.
    finished: VecDeque<(Instant, JobId)>,
}

impl JobStore {
    /// An empty store.
    pub fn new(retention: Retention) -> Self {
        JobStore {
            retention,
            inner: Mutex::new(Inner::default()),
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
    pub fn insert(&self, now: Instant, outcome: JobOutcome) -> Result<(), DuplicateJob> {
        let mut inner = self.lock(now);
        let id = outcome.id;
        if inner.jobs.contains_key(&id) {
            return Err(DuplicateJob(id));
        }
        let terminal = outcome.status.is_terminal();
        inner.jobs.insert(id, watch::Sender::new(outcome));
        if terminal {
            inner.finished.push_back((now, id));
            inner.evict(now, self.retention);
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
            inner.jobs.remove(&id);
        }
    }

    /// Changes an unfinished job. A finished job never changes again (the first end wins,
    /// whatever races to end it), and an unknown id is ignored; either way, returns `false`.
    pub fn update(&self, now: Instant, id: JobId, change: impl FnOnce(&mut JobOutcome)) -> bool {
        let mut inner = self.lock(now);
        let Some(sender) = inner.jobs.get(&id) else {
            return false;
        };
        let mut ended = false;
        let changed = sender.send_if_modified(|outcome| {
            if outcome.status.is_terminal() {
                return false;
            }
            change(outcome);
            ended = outcome.status.is_terminal();
            true
        });
        if ended {
            inner.finished.push_back((now, id));
            inner.evict(now, self.retention);
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
    pub fn len(&self, now: Instant) -> (usize, usize) {
        let inner = self.lock(now);
        (inner.jobs.len(), inner.finished.len())
    }
}

impl Inner {
    fn evict(&mut self, now: Instant, retention: Retention) {
        while let Some(&(finished_at, id)) = self.finished.front() {
            let expired = now.saturating_duration_since(finished_at) >= retention.time;
            if !expired && self.finished.len() <= retention.jobs {
                break;
            }
            self.finished.pop_front();
            self.jobs.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use hearsay_shared::{JobStatus, NodeId};

    use super::*;

    fn outcome(id: u64, status: JobStatus) -> JobOutcome {
        JobOutcome {
            id: JobId(id),
            kind: "sleep".into(),
            status,
            entry_node: NodeId::new("n1").unwrap(),
            executing_node: None,
            hops: 0,
            queued_ms: None,
            run_ms: None,
            total_ms: None,
            output: None,
            error: None,
        }
    }

    fn finish(store: &JobStore, now: Instant, id: u64) {
        assert!(store.update(now, JobId(id), |o| o.status = JobStatus::Succeeded));
    }

    const RETENTION: Retention = Retention {
        time: Duration::from_secs(10),
        jobs: 2,
    };

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
        });
        store.insert(now, outcome(1, JobStatus::Running)).unwrap();
        let watcher = store.watch(now, JobId(1)).unwrap();
        finish(&store, now, 1);
        store.insert(now, outcome(2, JobStatus::Succeeded)).unwrap();
        assert!(store.get(now, JobId(1)).is_none());
        assert_eq!(watcher.borrow().status, JobStatus::Succeeded);
    }
}
