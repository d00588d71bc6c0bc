//! The dispatcher's state: the handle every route and task holds, and under its one lock the
//! hand-off core with what the shell keeps beside it.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearsay_scheduler::handoff::{Handoff, HandoffConfig, Reply, Ticket};
use hearsay_scheduler::Policy;
use hearsay_shared::{JobId, JobOutcome, JobSpec, LoadReport, NodeId};
use rand::rngs::StdRng;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::peers::Peers;
use crate::gossip::SharedGossip;
use crate::jobs::slots::{self, Executor};
use crate::jobs::store::JobStore;
use crate::metrics::Metrics;

/// How often the core is shown the map (a job followed at a peer the map judges dead is lost).
pub const MAP_CHECK: Duration = Duration::from_millis(200);
/// Places, forwards, follows and drains jobs. Cloning gives another handle to the same one.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) me: NodeId,
    pub(super) gossip: SharedGossip,
    pub(super) executor: Executor,
    pub(super) store: Arc<JobStore>,
    pub(super) metrics: Metrics,
    pub(super) peers: Peers,
    pub(super) policy: Policy,
    pub(super) config: HandoffConfig,
    /// With stealing on: how often an idle node asks a busy peer for work.
    pub(super) steal: Option<Duration>,
    pub(super) shell: Mutex<Shell>,
    /// Woken when the core's next wake-up may be earlier.
    pub(super) rearm: Notify,
    /// Woken whenever a job settles.
    pub(super) settled: Notify,
    pub(super) tasks: TaskTracker,
    pub(super) stopping: CancellationToken,
    pub(super) leaving: AtomicBool,
}

/// The core and what the shell keeps beside it, under one lock.
#[derive(Debug)]
pub(super) struct Shell {
    pub(super) core: Handoff,
    pub(super) rng: StdRng,
    /// Jobs this node gives on and has not placed yet: their spec, submission and arrival.
    pub(super) pending: HashMap<JobId, Pending>,
    /// The job submitted or offered in this call, until the core names its id.
    pub(super) incoming: Option<Pending>,
    /// What a peer just said of a job followed there, for the record.
    pub(super) heard: Option<JobOutcome>,
    /// Submitters waiting for their reply.
    pub(super) waiting: HashMap<Ticket, oneshot::Sender<Reply>>,
    /// When each job submitted here and not yet settled arrived.
    pub(super) followed: HashMap<JobId, Instant>,
    /// Jobs taken out of the executor's queue for a thief, until the move is settled.
    pub(super) given: HashMap<JobId, slots::Submission>,
    /// Reports a victim sent with its empty answer, for the gossip map.
    pub(super) news: Vec<LoadReport>,
}

impl Shell {
    pub(super) fn new(core: Handoff, rng: StdRng) -> Self {
        Shell {
            core,
            rng,
            pending: HashMap::new(),
            incoming: None,
            heard: None,
            waiting: HashMap::new(),
            followed: HashMap::new(),
            given: HashMap::new(),
            news: Vec::new(),
        }
    }
}

/// A job this node holds the spec of while the core decides where it goes.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) spec: JobSpec,
    pub(super) ticket: Option<Ticket>,
    pub(super) arrived: Instant,
}
