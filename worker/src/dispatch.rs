//! The dispatcher: what happens to a job submitted to this node, from placement to the outcome.
//!
//! A job submitted here (this node is its *entry node*) gets an id and is placed by the
//! [`Placer`] over the gossiped load map, with this node's exact load from the executor. If the
//! placer says `Local`, the executor takes it; if it names a peer, the job is offered to that peer
//! ([`Forwarder::offer`]). A refusal or a peer that cannot be reached excludes that peer (or this
//! node, if its own queue is full) and the job is placed again among the rest, until a node takes
//! it or none is left ([`SubmitError::NoRoom`]).
//!
//! A job a peer took is followed: the entry node keeps its record and long-polls the peer until
//! the job ends, so that it can answer for the job. If the peer disappears first — its map entry
//! turns dead, it comes back as a new incarnation, it no longer knows the job, or it stops
//! answering — the job is recorded `lost` with the reason. A job is never dropped silently.
//!
//! A job forwarded here by a peer (`Hearsay-Hops: 1`) is never forwarded again: the executor takes
//! it or it is refused.
//!
//! The dispatcher also drains the node when it leaves ([`Dispatcher::drain`]).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hearsay_scheduler::{Placement, PlacementRequest, Placer, PlacerConfig, Policy};
use hearsay_shared::offers::command_bits;
use hearsay_shared::{JobId, JobKind, JobOutcome, JobSpec, JobStatus, NodeId, NodeState, Verdict};
use rand::rngs::StdRng;
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, field, info, info_span, warn, Instrument as _, Span};

use crate::executor::{ms, Executor, Refusal, Submission};
use crate::forward::{Forwarder, Offer, Poll};
use crate::job_store::JobStore;
use crate::metrics::{status_name, Decision, ForwardFailure, Metrics};
use crate::SharedGossip;

/// Consecutive failed polls after which a peer that is still in the map as alive is taken for
/// dead. A peer the map shows as left is given up on at the first failure.
const MAX_POLL_FAILURES: u32 = 3;
/// How long a follower waits before asking again a peer that answered `429`.
const BUSY_PAUSE: Duration = Duration::from_secs(1);
/// How often a follower looks at the map while a poll is under way.
const FATE_CHECK: Duration = Duration::from_millis(200);
/// How long a drain that ran out of time waits for abandoned jobs to record their end.
const ABANDON_GRACE: Duration = Duration::from_secs(2);

/// A job this node took, as the submitter is told at once (the body of a `202`):
/// `{"id": "...", "status": "queued", "executing_node": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// Its id.
    pub id: JobId,
    /// `queued` or `running`.
    pub status: JobStatus,
    /// Where it runs.
    pub executing_node: NodeId,
}

/// A job submitted with an idempotency key: the one the key names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    /// The job, as taken now or as it stands if the key named one already.
    pub accepted: Accepted,
    /// Whether the key named a job already (nothing new was run).
    pub replayed: bool,
}

/// What an idempotency key names once its job is taken: the job's id and the digest of its body
/// ([`Keys::digest`]); locked while a submission with the key is being placed.
type KeySlot = tokio::sync::Mutex<Option<(JobId, u64)>>;

/// Idempotency keys of jobs submitted here, each to a slot holding, once taken, the job's id and
/// a digest of the job it was given with. A key whose job the store has forgotten (retention)
/// is as good as new.
#[derive(Debug, Default)]
struct Keys {
    slots: HashMap<String, Arc<KeySlot>>,
    /// Forgotten keys are swept when the map reaches this size.
    next_sweep: usize,
    /// Keys the digests with this process's own random keys, so that nobody can make two jobs
    /// with one digest; a digest is never kept beyond the process (nor are the keys).
    digests: RandomState,
}

impl Keys {
    /// A digest of the job as parsed (so that the same job spelled with other spacing or key
    /// order is the same job): 64 bits of SipHash, randomly keyed, over its canonical JSON.
    fn digest(&self, spec: &JobSpec) -> u64 {
        let canonical = serde_json::to_vec(spec).unwrap_or_default();
        self.digests.hash_one(canonical)
    }
}

/// The least size at which keys are swept.
const KEY_SWEEP_MIN: usize = 1024;

/// Why a job was not taken. Nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// Every node in reach refused the job or could not be reached; says who and why.
    #[error("no node in reach can take the job: {0}")]
    NoRoom(String),
    /// This node is leaving.
    #[error("this node is leaving and takes no new jobs")]
    Leaving,
    /// The idempotency key names a job submitted with another body (nothing was run).
    #[error("the key {0:?} names a job submitted with another body; use a new key for a new job")]
    KeyReused(String),
    /// The `exec` job names a command that no node in reach declares (this one included).
    #[error("command: no node in reach declares the command {0:?}")]
    UnknownCommand(String),
    /// The `exec` job's args do not fit its command (here, or on the peer that declares it).
    #[error("{field}: {reason}")]
    Invalid {
        /// `args` or `args[i]`.
        field: String,
        /// Why.
        reason: String,
    },
}

/// Places, forwards, follows and drains jobs. Cloning gives another handle to the same one.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    me: NodeId,
    gossip: SharedGossip,
    executor: Executor,
    store: Arc<JobStore>,
    metrics: Metrics,
    forwarder: Forwarder,
    policy: Policy,
    /// The placer and its rng, one lock: a placement is a few microseconds.
    placing: Mutex<(Placer, StdRng)>,
    leaving: AtomicBool,
    /// Idempotency keys of jobs submitted here.
    keys: Mutex<Keys>,
    /// Ids of jobs that their entry nodes asked after when this node did not hold them: this
    /// node must never take them (see [`FENCE`](crate::forward::FENCE)). The lock also orders
    /// taking a forwarded job against fencing it.
    fences: Mutex<Fences>,
    /// The tasks that follow forwarded jobs.
    followers: TaskTracker,
    /// Cancelled when the drain is over: followers stop, waiting requests answer as things
    /// stand.
    stopping: CancellationToken,
}

/// A job a peer took, as its follower knows it.
#[derive(Debug, Clone)]
struct Forwarded {
    id: JobId,
    node: NodeId,
    api: SocketAddr,
    /// The peer's incarnation when it took the job: a later one has forgotten it.
    incarnation: u64,
    arrived: Instant,
}

/// Questions after an offer whose answer was lost, before the job is followed there unconfirmed.
const RESOLVE_ATTEMPTS: u32 = 3;
/// How long a fenced id is remembered: far longer than an offer can be on its way.
const FENCE_TTL: Duration = Duration::from_secs(600);
/// The most fenced ids remembered (the oldest are forgotten first).
const MAX_FENCES: usize = 100_000;

/// Fenced job ids, oldest first.
#[derive(Debug, Default)]
struct Fences {
    ids: HashMap<JobId, Instant>,
    order: std::collections::VecDeque<(Instant, JobId)>,
}

impl Fences {
    fn prune(&mut self, now: Instant) {
        while let Some(&(at, id)) = self.order.front() {
            if now.saturating_duration_since(at) < FENCE_TTL && self.order.len() <= MAX_FENCES {
                break;
            }
            self.order.pop_front();
            if self.ids.get(&id) == Some(&at) {
                self.ids.remove(&id);
            }
        }
    }

    fn add(&mut self, id: JobId, now: Instant) {
        self.ids.insert(id, now);
        self.order.push_back((now, id));
        self.prune(now);
    }

    fn holds(&mut self, id: JobId, now: Instant) -> bool {
        self.prune(now);
        self.ids.contains_key(&id)
    }
}

/// What the map says of a peer that holds a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Alive or suspect: keep asking.
    Present,
    /// Left, or dropped from the map: keep asking while it answers.
    Left,
    /// Judged dead.
    Dead,
    /// Back as a new incarnation, which does not know the job.
    Restarted,
}

impl Dispatcher {
    /// A dispatcher for node `me`. `rng` drives placement (seed it from the node's logged seed).
    pub fn new(
        gossip: SharedGossip,
        executor: Executor,
        store: Arc<JobStore>,
        metrics: Metrics,
        placer: PlacerConfig,
        rng: StdRng,
    ) -> Self {
        let me = gossip.with(|g| g.node().clone());
        metrics.expect_policy(placer.policy);
        Dispatcher {
            inner: Arc::new(Inner {
                me,
                gossip,
                executor,
                store,
                metrics,
                forwarder: Forwarder::new(),
                policy: placer.policy,
                placing: Mutex::new((Placer::new(placer), rng)),
                leaving: AtomicBool::new(false),
                keys: Mutex::new(Keys::default()),
                fences: Mutex::new(Fences::default()),
                followers: TaskTracker::new(),
                stopping: CancellationToken::new(),
            }),
        }
    }

    /// The same dispatcher, with a forwarding client that sends the cluster's API token to
    /// peers. To be called at construction, before the dispatcher is shared.
    ///
    /// # Panics
    /// If the dispatcher has been cloned already.
    pub fn with_api_token(mut self, token: Option<&crate::auth::ApiToken>) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_api_token is called before the dispatcher is shared")
            .forwarder = Forwarder::with_token(token);
        self
    }

    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.inner.me
    }

    /// The job store.
    pub fn store(&self) -> &JobStore {
        &self.inner.store
    }

    /// The node's job metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether the node is leaving (and refuses new jobs).
    pub fn is_leaving(&self) -> bool {
        self.inner.leaving.load(Ordering::Relaxed)
    }

    /// Takes a job submitted to this node: places it here or on a peer.
    pub async fn submit(&self, spec: JobSpec) -> Result<Accepted, SubmitError> {
        let inner = &self.inner;
        if self.is_leaving() {
            return Err(SubmitError::Leaving);
        }
        let arrived = Instant::now();
        let id = loop {
            let id = JobId(rand::random());
            if inner.store.get(arrived, id).is_none() {
                break id;
            }
        };
        // Every log line about the job carries its id, its entry node and, once placed, where
        // it runs; the follower of a forwarded job logs in the same span.
        let span = info_span!("job", %id, entry = %inner.me, executing = field::Empty);
        self.place_and_hand_over(id, spec, arrived, &span)
            .instrument(span.clone())
            .await
    }

    /// Takes a job submitted with an idempotency key: if the key names a job this node still
    /// knows, that job as it stands (nothing is run); otherwise [`Dispatcher::submit`], and the
    /// key names the job taken. Concurrent submissions with one key are served one at a time,
    /// so they map to one job. A submission that failed leaves the key free.
    ///
    /// The submission runs to its end even if the caller goes away (a client that timed out
    /// and retries must find the job its first attempt created).
    pub async fn submit_with_key(&self, key: String, spec: JobSpec) -> Result<Keyed, SubmitError> {
        if self.is_leaving() {
            return Err(SubmitError::Leaving);
        }
        let digest;
        let slot = {
            let mut keys = self
                .inner
                .keys
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if keys.slots.len() >= keys.next_sweep {
                let now = Instant::now();
                let store = &self.inner.store;
                // Under the map's lock nobody can take a new handle on a slot: one held only
                // by the map is not in use, and goes if its job is forgotten (or never was).
                keys.slots.retain(|_, slot| {
                    if Arc::strong_count(slot) > 1 {
                        return true;
                    }
                    slot.try_lock()
                        .map(|held| held.is_some_and(|(id, _)| store.get(now, id).is_some()))
                        .unwrap_or(true)
                });
                keys.next_sweep = (keys.slots.len() * 2).max(KEY_SWEEP_MIN);
            }
            digest = keys.digest(&spec);
            Arc::clone(keys.slots.entry(key.clone()).or_default())
        };
        let mut held = slot.lock_owned().await;
        if let Some((id, first)) = *held {
            if let Some(outcome) = self.outcome(id) {
                if first != digest {
                    return Err(SubmitError::KeyReused(key));
                }
                debug!(%id, "idempotency key names a job already: not run again");
                return Ok(Keyed {
                    accepted: Accepted {
                        id,
                        status: outcome.status,
                        executing_node: outcome
                            .executing_node
                            .unwrap_or_else(|| self.inner.me.clone()),
                    },
                    replayed: true,
                });
            }
        }
        let this = self.clone();
        let submission = tokio::spawn(async move {
            let accepted = this.submit(spec).await?;
            *held = Some((accepted.id, digest));
            Ok(accepted)
        });
        match submission.await {
            Ok(result) => result.map(|accepted| Keyed {
                accepted,
                replayed: false,
            }),
            Err(e) => Err(SubmitError::NoRoom(format!("the submission failed: {e}"))),
        }
    }

    async fn place_and_hand_over(
        &self,
        id: JobId,
        spec: JobSpec,
        arrived: Instant,
        span: &Span,
    ) -> Result<Accepted, SubmitError> {
        let inner = &self.inner;
        let mut excluded: Vec<NodeId> = Vec::new();
        let mut refusals: Vec<String> = Vec::new();
        let mut local_refused = false;
        // An exec job goes only to a node whose gossiped command set holds its command, and
        // runs here only if this node declares it (its args checked here then).
        let (requires, runs_here) = match &spec.kind {
            JobKind::Exec { command, args, .. } => match inner.executor.commands().get(command) {
                Some(declared) => {
                    declared.argv(args).map_err(|e| SubmitError::Invalid {
                        field: e.field,
                        reason: e.reason,
                    })?;
                    (command_bits(command), true)
                }
                None => (command_bits(command), false),
            },
            _ => (0, true),
        };
        // Whether a node that may declare the command refused or could not be reached: then
        // the answer is "no room", not "no such command".
        let mut offered_elsewhere = false;
        loop {
            let (placement, incarnation) =
                inner.place(&excluded, local_refused || !runs_here, requires);
            match placement {
                Placement::Local if local_refused || !runs_here => {
                    if let (false, false, Some(command)) =
                        (runs_here, offered_elsewhere, spec.kind.command())
                    {
                        return Err(SubmitError::UnknownCommand(command.to_owned()));
                    }
                    return Err(SubmitError::NoRoom(refusals.join("; ")));
                }
                Placement::Local => {
                    let job = Submission {
                        id,
                        spec: spec.clone(),
                        entry: inner.me.clone(),
                        hops: 0,
                        arrived,
                    };
                    match inner.executor.submit(job) {
                        Ok(status) => {
                            span.record("executing", field::display(&inner.me));
                            inner.metrics.placed_locally();
                            debug!(status = status_name(status), "placed here");
                            return Ok(Accepted {
                                id,
                                status,
                                executing_node: inner.me.clone(),
                            });
                        }
                        Err(Refusal::Closed) => return Err(SubmitError::Leaving),
                        Err(refusal) => {
                            refusals.push(format!("{} (this node): {refusal}", inner.me));
                            local_refused = true;
                        }
                    }
                }
                Placement::Forward { node, api } => {
                    let offer = inner.forwarder.offer(api, id, &spec, &inner.me).await;
                    let taken = match offer {
                        Offer::Accepted(status) => Ok(status),
                        // The job went out and no answer came back: the peer may hold it.
                        // Placing it elsewhere now could run it twice, so ask first.
                        Offer::Unconfirmed(reason) => inner
                            .resolve(&node, api, id, reason)
                            .await
                            .map_err(|reason| {
                                offered_elsewhere = true;
                                (ForwardFailure::Unreachable, reason)
                            }),
                        Offer::Undeclared(reason) => Err((ForwardFailure::Refused, reason)),
                        Offer::Invalid { field, reason } => {
                            return Err(SubmitError::Invalid { field, reason });
                        }
                        Offer::Refused(reason) => {
                            offered_elsewhere = true;
                            Err((ForwardFailure::Refused, reason))
                        }
                        Offer::Unreachable(reason) => {
                            offered_elsewhere = true;
                            Err((ForwardFailure::Unreachable, reason))
                        }
                    };
                    let (failure, reason) = match taken {
                        Ok(status) => {
                            span.record("executing", field::display(&node));
                            inner.metrics.forwarded_to(&node);
                            debug!(status = status_name(status), "forwarded");
                            let job = Forwarded {
                                id,
                                node: node.clone(),
                                api,
                                // Always known (the placer chose it from the map); if not,
                                // never take a report of it for a restart.
                                incarnation: incarnation.unwrap_or(u64::MAX),
                                arrived,
                            };
                            inner.record_forwarded(&job, &spec, status);
                            let follower = Arc::clone(inner);
                            inner.followers.spawn(
                                async move { follower.follow(job).await }.instrument(span.clone()),
                            );
                            return Ok(Accepted {
                                id,
                                status,
                                executing_node: node,
                            });
                        }
                        Err(failure) => failure,
                    };
                    inner.metrics.forward_failed(failure);
                    info!(peer = %node, %reason, "peer did not take a forwarded job; placing it again");
                    refusals.push(format!("{node}: {reason}"));
                    excluded.push(node);
                }
            }
        }
    }

    /// Takes a job that `entry` forwarded here, into this node's executor (it is never
    /// forwarded again).
    pub fn accept_forwarded(
        &self,
        id: JobId,
        spec: JobSpec,
        entry: NodeId,
    ) -> Result<JobStatus, Refusal> {
        if self.is_leaving() {
            return Err(Refusal::Closed);
        }
        let mut fences = self.inner.fences();
        let now = Instant::now();
        if fences.holds(id, now) {
            return Err(Refusal::Fenced(id));
        }
        let status = self.inner.executor.submit(Submission {
            id,
            spec,
            entry,
            hops: 1,
            arrived: now,
        })?;
        drop(fences);
        self.inner.metrics.received_forwarded();
        Ok(status)
    }

    /// An entry node asks after job `id` that it forwarded here: the job as it stands if this
    /// node holds it; otherwise `None`, and the id is fenced off — an offer of it that arrives
    /// late is refused, so the entry node may place the job elsewhere.
    pub fn fence(&self, id: JobId) -> Option<JobOutcome> {
        let mut fences = self.inner.fences();
        let now = Instant::now();
        let outcome = self.inner.store.get(now, id);
        if outcome.is_none() {
            fences.add(id, now);
        }
        outcome
    }

    /// The job as it stands, if it is known.
    pub fn outcome(&self, id: JobId) -> Option<JobOutcome> {
        self.inner.store.get(Instant::now(), id)
    }

    /// The job once it has ended, or as it stands after `limit` (`None`: no limit) or once the
    /// node has finished draining. `None` if the job is unknown.
    pub async fn wait(&self, id: JobId, limit: Option<Duration>) -> Option<JobOutcome> {
        let mut watcher = self.inner.store.watch(Instant::now(), id)?;
        let expired = async {
            match limit {
                Some(limit) => tokio::time::sleep(limit).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // The end first: a job that ended as the node stopped is answered with its end.
            biased;
            ended = watcher.wait_for(|o| o.status.is_terminal()) => {
                // Err only if the record was dropped, which needs the job ended first; the
                // receiver still holds that end.
                if let Ok(outcome) = ended {
                    return Some(outcome.clone());
                }
            }
            () = expired => {}
            () = self.inner.stopping.cancelled() => {}
        }
        let outcome = watcher.borrow().clone();
        Some(outcome)
    }

    /// Refuses new jobs from now on (the first step of [`Dispatcher::drain`], taken at once by
    /// [`crate::node::NodeHandle::shutdown`] so that no job is accepted between the signal and
    /// the drain task's first poll).
    pub fn stop_accepting(&self) {
        self.inner.leaving.store(true, Ordering::Relaxed);
    }

    /// Leaves gracefully: refuses new jobs at once, lets the jobs queued and running here finish
    /// and the jobs forwarded from here report their end, for at most `timeout`; then records
    /// every job still queued or running here as lost, and stops following.
    pub async fn drain(&self, timeout: Duration) {
        let inner = &self.inner;
        inner.leaving.store(true, Ordering::Relaxed);
        inner.executor.close();
        inner.followers.close();
        let work = inner.executor.work();
        info!(
            queued = work.queued,
            running = work.running,
            forwarded = inner.followers.len(),
            timeout_ms = ms(timeout),
            "draining: taking no new jobs, finishing those taken"
        );
        let finished = tokio::time::timeout(timeout, async {
            inner.executor.idle().await;
            inner.followers.wait().await;
        })
        .await
        .is_ok();
        if finished {
            info!("drained: every job taken has ended");
        } else {
            let left = inner.executor.abandon();
            warn!(
                queued = left.queued,
                running = left.running,
                forwarded_unfinished = inner.followers.len(),
                "drain timed out; jobs still here are recorded lost"
            );
            if tokio::time::timeout(ABANDON_GRACE, inner.executor.idle())
                .await
                .is_err()
            {
                warn!("abandoned jobs did not stop in time");
            }
        }
        inner.stopping.cancel();
    }

    /// Stops at once, as a node whose process is killed: refuses new jobs, stops the running
    /// ones and the following of forwarded ones, records nothing more and waits for nothing.
    pub fn kill(&self) {
        self.inner.leaving.store(true, Ordering::Relaxed);
        self.inner.executor.kill();
        self.inner.stopping.cancel();
    }
}

impl Inner {
    /// Asks the placer, under the map's lock, for a job that requires the command bits
    /// `requires` (0: none). Returns the placement and, for a peer, its incarnation now.
    fn place(
        &self,
        excluded: &[NodeId],
        local_refused: bool,
        requires: u64,
    ) -> (Placement, Option<u64>) {
        let now = Instant::now().into_std();
        self.gossip.with(|g| {
            let mut own = self.executor.load(g.own_report().load.cpu_permille);
            if local_refused {
                own.state = NodeState::Leaving;
            }
            let mut placing = self.placing.lock().unwrap_or_else(PoisonError::into_inner);
            let (placer, rng) = &mut *placing;
            let placement = placer.place(
                &PlacementRequest {
                    map: g.map(),
                    me: g.node(),
                    own,
                    now,
                    hops: 0,
                    exclude: excluded,
                    requires,
                },
                rng,
            );
            let (decision, incarnation) = match &placement {
                Placement::Forward { node, .. } => (
                    Decision::Forward,
                    g.map().get(node).map(|e| e.report().incarnation),
                ),
                Placement::Local => (Decision::Local, None),
            };
            self.metrics.placement_decided(self.policy, decision);
            (placement, incarnation)
        })
    }

    /// Records a job a peer took, so that this node can answer for it.
    fn record_forwarded(&self, job: &Forwarded, spec: &JobSpec, status: JobStatus) {
        let outcome = JobOutcome {
            id: job.id,
            kind: spec.kind.name().to_owned(),
            status,
            entry_node: self.me.clone(),
            executing_node: Some(job.node.clone()),
            hops: 1,
            queued_ms: None,
            run_ms: None,
            total_ms: None,
            output: None,
            error: None,
            output_truncated: false,
            output_original_bytes: None,
        };
        if let Err(e) = self.store.insert(Instant::now(), outcome) {
            // Ids are 64 random bits and checked when drawn: this cannot happen in practice.
            warn!(error = %e, "a forwarded job's id is already in use here");
        }
    }

    /// Follows a job a peer took until it ends, is lost, or the node stops.
    async fn follow(self: Arc<Self>, job: Forwarded) {
        let mut failures = 0u32;
        loop {
            let fate = self.fate(&job);
            match fate {
                Fate::Dead => {
                    // Dead is the failure detector's verdict: the peer stopped answering. It
                    // may be frozen or cut off rather than gone, and may finish the job yet.
                    return self.lose(
                        &job,
                        format!(
                            "executing node {} stopped answering (this node judged it dead); the job may have finished there",
                            job.node
                        ),
                    );
                }
                Fate::Restarted => {
                    return self.lose(
                        &job,
                        format!("executing node {} restarted before finishing", job.node),
                    );
                }
                Fate::Present | Fate::Left => {}
            }
            let poll = tokio::select! {
                poll = self.forwarder.poll(job.api, job.id) => poll,
                () = self.until_gone(&job) => continue,
                () = self.stopping.cancelled() => return,
            };
            match poll {
                Poll::Outcome(outcome) => {
                    failures = 0;
                    if self.learn(&job, *outcome) {
                        return;
                    }
                }
                Poll::Busy => {
                    // The peer holds as many of this node's waits as it allows: it answers,
                    // so it is not a failure; ask again a little later.
                    tokio::select! {
                        () = tokio::time::sleep(BUSY_PAUSE) => {}
                        () = self.stopping.cancelled() => return,
                    }
                }
                Poll::Unknown => {
                    return self.lose(
                        &job,
                        format!(
                            "executing node {} does not hold the job (it restarted, or never took it); the job is fenced off there and will not run there",
                            job.node
                        ),
                    );
                }
                Poll::Failed(reason) => {
                    failures += 1;
                    debug!(peer = %job.node, failures, %reason, "cannot ask after a forwarded job");
                    if self.fate(&job) == Fate::Left {
                        return self.lose(
                            &job,
                            format!(
                                "executing node {} left before finishing ({reason})",
                                job.node
                            ),
                        );
                    }
                    if failures >= MAX_POLL_FAILURES {
                        return self.lose(
                            &job,
                            format!(
                                "executing node {} stopped answering (it did not answer {MAX_POLL_FAILURES} polls in a row: {reason}); the job may have finished there",
                                job.node
                            ),
                        );
                    }
                    // Back off a little: 100, 200, 400 ms.
                    let pause = Duration::from_millis(100) * 2u32.pow(failures - 1);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = self.stopping.cancelled() => return,
                    }
                }
            }
        }
    }

    /// The fenced ids, locked.
    fn fences(&self) -> std::sync::MutexGuard<'_, Fences> {
        self.fences.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// After an offer to `node` whose answer was lost: asks the peer whether it holds the job.
    /// It does → `Ok` with the job's status: the job is taken. It does not → `Err` with the
    /// reason: the id is now fenced off there, and the job may be placed again. No answer after
    /// a few tries → `Ok(Queued)` all the same: the job is followed there, and reported `lost`
    /// if the peer turns out dead, never run a second time elsewhere.
    async fn resolve(
        &self,
        node: &NodeId,
        api: SocketAddr,
        id: JobId,
        reason: String,
    ) -> Result<JobStatus, String> {
        for attempt in 0..RESOLVE_ATTEMPTS {
            match self.forwarder.resolve(api, id).await {
                Poll::Outcome(outcome) => return Ok(outcome.status),
                Poll::Unknown => {
                    return Err(format!(
                        "{reason}; it does not hold the job, which is fenced off there"
                    ))
                }
                Poll::Busy | Poll::Failed(_) if attempt + 1 < RESOLVE_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Poll::Busy | Poll::Failed(_) => {}
            }
        }
        warn!(peer = %node, %reason, "cannot tell whether the peer took a forwarded job; following it there rather than risk running it twice");
        Ok(JobStatus::Queued)
    }

    fn fate(&self, job: &Forwarded) -> Fate {
        self.gossip.with(|g| match g.map().get(&job.node) {
            None => Fate::Left,
            Some(entry) if entry.report().incarnation > job.incarnation => Fate::Restarted,
            Some(entry) => match entry.verdict() {
                Verdict::Alive | Verdict::Suspect => Fate::Present,
                Verdict::Left => Fate::Left,
                Verdict::Dead => Fate::Dead,
            },
        })
    }

    /// Resolves when the map says the peer is dead or restarted (never, otherwise).
    async fn until_gone(&self, job: &Forwarded) {
        loop {
            tokio::time::sleep(FATE_CHECK).await;
            if matches!(self.fate(job), Fate::Dead | Fate::Restarted) {
                return;
            }
        }
    }

    /// Takes in what the peer says of the job; returns whether it has ended.
    fn learn(&self, job: &Forwarded, peer: JobOutcome) -> bool {
        let now = Instant::now();
        let ended = peer.status.is_terminal();
        if ended {
            debug!(status = status_name(peer.status), "forwarded job ended");
        }
        self.store.update(now, job.id, |o| {
            o.status = peer.status;
            o.queued_ms = peer.queued_ms;
            o.run_ms = peer.run_ms;
            o.output = peer.output;
            o.output_truncated = peer.output_truncated;
            o.output_original_bytes = peer.output_original_bytes;
            o.error = peer.error;
            if ended {
                // From submission here to the end as learned here: the forwarding included.
                o.total_ms = Some(ms(now - job.arrived));
            }
        });
        ended
    }

    fn lose(&self, job: &Forwarded, reason: String) {
        warn!(peer = %job.node, %reason, "forwarded job lost");
        let now = Instant::now();
        self.store.update(now, job.id, |o| {
            o.status = JobStatus::Lost;
            o.error = Some(reason);
            o.total_ms = Some(ms(now - job.arrived));
        });
    }
}
