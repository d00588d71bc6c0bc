//! Cancelling a job on this node (`DELETE /v1/jobs/{id}`): a queued one leaves the queue, a
//! running one is stopped only when forced, and a job held elsewhere is named so that the
//! route can send the cancel on to the node that holds it.
//!
//! The look is taken under the core's lock, as steals and hand-overs take jobs out of the
//! queue: a job is either still queued here (and cancelled, so no peer is offered it), or
//! already on its way to a peer (`Moving`: nothing changed, ask again), never both. So a cancel
//! racing a move neither loses the job nor lets a cancelled job run.

use std::net::SocketAddr;

use hearsay_shared::{JobId, JobOutcome, NodeId};

use super::peers::LONG_POLL;
use super::Dispatcher;
use crate::jobs::slots::Cancel;

/// What a cancel found here.
#[derive(Debug)]
pub enum CancelAnswer {
    /// Cancelled here (queued), or stopped here (running, forced): the job as it stands
    /// after (`cancelled`, or the end it reached on its own first).
    Done(Box<JobOutcome>),
    /// It runs here and the cancel was not forced: nothing changed.
    Running(Box<JobOutcome>),
    /// It has ended already: nothing changed.
    Ended(Box<JobOutcome>),
    /// It is being handed to a peer, or placed, right now: nothing changed; ask again soon.
    Moving,
    /// Another node holds it (this one follows it there): nothing changed here. `api` is
    /// where that node's API listens, if the map knows it.
    Elsewhere {
        /// The node that holds it.
        node: NodeId,
        /// Its API, if the map knows it.
        api: Option<SocketAddr>,
    },
    /// Not known here.
    Unknown,
}

impl Dispatcher {
    /// Cancels job `id` if this node holds it (see [`CancelAnswer`]); `force` stops a running
    /// one, and then the answer waits for its end (at most [`LONG_POLL`]).
    pub async fn cancel(&self, id: JobId, force: bool) -> CancelAnswer {
        let found = self.with_core(|shell, _, _| {
            if shell.given.contains_key(&id) || shell.pending.contains_key(&id) {
                None
            } else {
                Some(self.inner.executor.cancel(id, force))
            }
        });
        let outcome = |o: Option<JobOutcome>| o.map(Box::new);
        match found {
            None => CancelAnswer::Moving,
            Some(Cancel::Cancelled) => match outcome(self.outcome(id)) {
                Some(o) => CancelAnswer::Done(o),
                None => CancelAnswer::Unknown,
            },
            Some(Cancel::Stopping) => match outcome(self.wait(id, Some(LONG_POLL)).await) {
                Some(o) => CancelAnswer::Done(o),
                None => CancelAnswer::Unknown,
            },
            Some(Cancel::Running) => match outcome(self.outcome(id)) {
                Some(o) => CancelAnswer::Running(o),
                None => CancelAnswer::Unknown,
            },
            Some(Cancel::NotHere) => self.not_in_executor(id),
        }
    }

    /// A job neither queued nor running here: ended, held elsewhere, or between two places.
    fn not_in_executor(&self, id: JobId) -> CancelAnswer {
        let Some(outcome) = self.outcome(id) else {
            return CancelAnswer::Unknown;
        };
        if outcome.status.is_terminal() {
            return CancelAnswer::Ended(Box::new(outcome));
        }
        match outcome.executing_node {
            Some(node) if node != self.inner.me => {
                let api = self
                    .inner
                    .gossip
                    .with(|g| g.map().get(&node).map(|e| e.report().api));
                CancelAnswer::Elsewhere { node, api }
            }
            // Held here by the record, yet not in the executor: taken out of the queue for a
            // move this very moment, or not yet placed.
            _ => CancelAnswer::Moving,
        }
    }

    /// Sends a client's cancel of job `id` on to the node whose API is `api`; the answer's
    /// status and body as it sent them, or why none came. `hops`: how many nodes sent it on
    /// before this one.
    pub async fn cancel_at(
        &self,
        api: SocketAddr,
        id: JobId,
        force: bool,
        hops: u32,
    ) -> Result<(hyper::StatusCode, bytes::Bytes), String> {
        self.inner.peers.cancel(api, id, force, hops).await
    }
}
