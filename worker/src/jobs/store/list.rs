//! One page of the jobs a node knows, by id and filtered by status ([`JobStore::list`], for
//! `GET /v1/jobs`): each job summed up without its output ([`JobSummary`]).

use std::collections::BinaryHeap;

use hearsay_shared::{JobId, JobOutcome, JobStatus, NodeId};
use serde::Serialize;
use tokio::time::Instant;

use super::JobStore;

/// A job as [`JobStore::list`] gives it: what it is and where it stands, without its output
/// (the whole outcome is `GET /v1/jobs/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobSummary {
    /// The job.
    pub id: JobId,
    /// Its kind's name.
    pub kind: String,
    /// Where it stands, as far as this node knows.
    pub status: JobStatus,
    /// The node it was submitted to.
    pub entry_node: NodeId,
    /// The node that runs or ran it, once known.
    pub executing_node: Option<NodeId>,
    /// How many times it moved between nodes.
    pub hops: u32,
    /// From submission to the end, once it ended.
    pub total_ms: Option<u64>,
}

impl JobSummary {
    fn of(outcome: &JobOutcome) -> Self {
        JobSummary {
            id: outcome.id,
            kind: outcome.kind.clone(),
            status: outcome.status,
            entry_node: outcome.entry_node.clone(),
            executing_node: outcome.executing_node.clone(),
            hops: outcome.hops,
            total_ms: outcome.total_ms,
        }
    }
}

/// One page of [`JobStore::list`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobPage {
    /// At most the page's limit of jobs, by id.
    pub jobs: Vec<JobSummary>,
    /// The last id of `jobs` when more jobs follow it (the `after` of the next page); `None`
    /// on the last page.
    pub next: Option<JobId>,
}

impl JobStore {
    /// The jobs known here whose status `wanted` accepts, by id, after `after` (exclusive) if
    /// given: at most `limit` (at least 1) of them. One pass over the records under the lock;
    /// besides the page, it keeps only `limit + 1` ids.
    pub fn list(
        &self,
        now: Instant,
        after: Option<JobId>,
        wanted: impl Fn(JobStatus) -> bool,
        limit: usize,
    ) -> JobPage {
        let limit = limit.max(1);
        let inner = self.lock(now);
        // The `limit + 1` smallest ids that qualify, the largest on top: one more than the
        // page, to know whether another page follows.
        let mut smallest: BinaryHeap<JobId> = BinaryHeap::with_capacity(limit + 1);
        for (&id, sender) in &inner.jobs {
            if after.is_some_and(|after| id <= after) {
                continue;
            }
            if smallest.len() > limit && smallest.peek().is_some_and(|&top| id >= top) {
                continue;
            }
            if !wanted(sender.borrow().status) {
                continue;
            }
            smallest.push(id);
            if smallest.len() > limit + 1 {
                smallest.pop();
            }
        }
        let mut ids = smallest.into_sorted_vec();
        let more = ids.len() > limit;
        ids.truncate(limit);
        let jobs = ids
            .iter()
            .filter_map(|id| inner.jobs.get(id))
            .map(|sender| JobSummary::of(&sender.borrow()))
            .collect();
        JobPage {
            jobs,
            next: if more { ids.last().copied() } else { None },
        }
    }
}
