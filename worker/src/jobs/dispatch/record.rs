//! What the hand-off core's decisions write into the job store: the record an entry node keeps
//! of a job it gave to a peer, and the job's end once the core has settled it. The executor
//! writes the record of every job that runs here; these are the records of the others.

use std::net::SocketAddr;

use hearsay_shared::{JobId, JobOutcome, JobStatus, NodeId};
use tokio::time::Instant;

use crate::jobs::ms;
use crate::jobs::store::JobStore;
use crate::metrics::Metrics;

/// The job `id` (of kind `kind`, if this node still has its spec) is now at peer `at` with
/// `status` (its API and incarnation `peer`, if the map knows it), and this node follows it
/// there.
pub(super) fn follow(
    store: &JobStore,
    metrics: &Metrics,
    me: &NodeId,
    now: Instant,
    (id, kind): (JobId, Option<String>),
    (at, peer): (NodeId, Option<(SocketAddr, u64)>),
    status: JobStatus,
) {
    let moved = store.update(now, id, |o| {
        if o.path.last() != Some(&at) {
            o.path.push(at.clone());
        }
        o.hops = u32::try_from(o.path.len().saturating_sub(1)).unwrap_or(0);
        o.executing_node = Some(at.clone());
        o.status = status;
    });
    if !moved {
        metrics.forwarded_to(&at);
        let mut outcome = JobOutcome::new(id, "", status, me.clone());
        outcome.kind = kind.unwrap_or_default();
        outcome.path = vec![me.clone(), at.clone()];
        outcome.executing_node = Some(at);
        outcome.hops = 1;
        let _ = store.insert(now, outcome);
    }
    if store.is_durable() {
        store.annotate(now, id, |extra| extra.peer = peer);
    }
}

/// The job `id`, which ran or queued here, was taken by a peer: if it entered elsewhere, its
/// entry node follows it to the thief, and the record here goes (a long poll here ends, so
/// that the next ask hears where it went).
pub(super) fn moved_away(store: &JobStore, me: &NodeId, now: Instant, id: JobId) {
    let entered_elsewhere = store.get(now, id).is_some_and(|o| o.entry_node != *me);
    if entered_elsewhere {
        store.remove_unfinished(now, id);
    }
}

/// How the core settled a job that did not end here.
pub(super) struct Settled {
    pub id: JobId,
    pub status: JobStatus,
    /// Why it was lost or failed, in the core's words.
    pub reason: Option<String>,
    /// Every node it went through, the executing one last.
    pub path: Vec<NodeId>,
    /// What its executing node last said of it.
    pub heard: Option<JobOutcome>,
    /// When it was submitted here, if it was.
    pub arrived: Option<Instant>,
}

/// Records the end of a job this node followed (a job that ended here has its end recorded by
/// the executor already, and keeps it).
pub(super) fn settle(store: &JobStore, me: &NodeId, now: Instant, settled: Settled) {
    let Settled {
        id,
        status,
        reason,
        path,
        heard,
        arrived,
    } = settled;
    let change = |o: &mut JobOutcome| {
        if o.status.is_terminal() {
            return;
        }
        if let Some(heard) = heard {
            o.queued_ms = heard.queued_ms;
            o.run_ms = heard.run_ms;
            o.output = heard.output;
            o.output_truncated = heard.output_truncated;
            o.output_original_bytes = heard.output_original_bytes;
            o.error = heard.error;
        }
        o.status = status;
        o.error = reason.or(o.error.take());
        o.hops = u32::try_from(path.len().saturating_sub(1)).unwrap_or(0);
        o.executing_node = path.last().cloned();
        o.path = path;
        if let Some(arrived) = arrived {
            o.total_ms = Some(ms(now - arrived));
        }
    };
    if store.get(now, id).is_some() {
        store.update(now, id, change);
    } else {
        let mut outcome = JobOutcome::new(id, "", JobStatus::Queued, me.clone());
        change(&mut outcome);
        let _ = store.insert(now, outcome);
    }
}
