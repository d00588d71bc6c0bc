//! The jobs this node took to run — submitted here and placed here, or moved here by a peer —
//! and how each stands. This table is what an ask is answered from: a job it holds is
//! [`AskAnswer::Held`](super::AskAnswer::Held); a job it never held is fenced off.
//!
//! A job that ended is kept for [`Retention::time`] and at most [`Retention::jobs`] of them,
//! the oldest forgotten first (the worker sets both to its store's retention), so that the
//! entry node's last question after a job that just ended is answered with its end, not taken
//! for a job never held.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hearsay_shared::{JobId, JobStatus, NodeId};

/// How long and how many ended jobs are remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// How long an ended job is remembered.
    pub time: Duration,
    /// The most ended jobs remembered.
    pub jobs: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            time: Duration::from_secs(600),
            jobs: 10_000,
        }
    }
}

/// A job this node took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeldJob {
    /// Its entry node.
    pub(crate) entry: NodeId,
    /// How it stands here.
    pub(crate) status: JobStatus,
    /// The nodes it was at before, entry first (empty if submitted here).
    pub(crate) path: Vec<NodeId>,
    /// Where it went, if it moved on from here (stolen) before it ran.
    pub(crate) moved_to: Option<NodeId>,
}

/// The jobs held, and those that ended here, oldest end first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Held {
    retention: Retention,
    pub(crate) jobs: HashMap<JobId, HeldJob>,
    ended: VecDeque<(Instant, JobId)>,
}

impl Held {
    pub(crate) fn new(retention: Retention) -> Self {
        Held {
            retention,
            ..Held::default()
        }
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.ended.front() {
            if now.saturating_duration_since(at) < self.retention.time
                && self.ended.len() <= self.retention.jobs
            {
                break;
            }
            self.ended.pop_front();
            self.jobs.remove(&id);
        }
    }

    /// Takes job `id`, queued. The caller has checked that it is not held.
    pub(crate) fn take(&mut self, id: JobId, job: HeldJob) {
        self.jobs.insert(id, job);
    }

    /// The job, if held (or ended here and not forgotten).
    pub(crate) fn get(&mut self, id: JobId, now: Instant) -> Option<&HeldJob> {
        self.prune(now);
        self.jobs.get(&id)
    }

    /// Sets the status of a held job that has not ended; returns whether it changed (an
    /// unknown or ended job never changes again).
    pub(crate) fn set(&mut self, id: JobId, status: JobStatus, now: Instant) -> bool {
        self.prune(now);
        let Some(job) = self.jobs.get_mut(&id) else {
            return false;
        };
        if job.status.is_terminal() || job.moved_to.is_some() {
            return false;
        }
        job.status = status;
        if status.is_terminal() {
            self.ended.push_back((now, id));
            self.prune(now);
        }
        true
    }

    /// Records that job `id`, queued here, moved on to `to`: it counts as ended here.
    pub(crate) fn moved(&mut self, id: JobId, to: NodeId, now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.status.is_terminal() || job.moved_to.is_some() {
            return;
        }
        job.moved_to = Some(to);
        self.ended.push_back((now, id));
        self.prune(now);
    }

    /// Jobs held that have not ended.
    pub(crate) fn unfinished(&self) -> usize {
        self.jobs.len() - self.ended.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> HeldJob {
        HeldJob {
            entry: NodeId::new("a").unwrap(),
            status: JobStatus::Queued,
            path: Vec::new(),
            moved_to: None,
        }
    }

    #[test]
    fn an_ended_job_never_changes_and_is_forgotten_after_retention() {
        let t0 = Instant::now();
        let mut held = Held::new(Retention {
            time: Duration::from_secs(10),
            jobs: 5,
        });
        held.take(JobId(1), job());
        held.take(JobId(2), job());
        assert!(held.set(JobId(1), JobStatus::Running, t0));
        assert!(held.set(JobId(1), JobStatus::Succeeded, t0));
        assert!(
            !held.set(JobId(1), JobStatus::Lost, t0),
            "ended: never changes"
        );
        assert!(!held.set(JobId(3), JobStatus::Running, t0), "unknown");
        assert_eq!(held.unfinished(), 1);
        let later = t0 + Duration::from_secs(10);
        assert!(held.get(JobId(1), later).is_none(), "forgotten");
        assert!(
            held.get(JobId(2), later + Duration::from_secs(3600))
                .is_some(),
            "unfinished: kept"
        );
    }
}
