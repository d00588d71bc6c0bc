//! The hand-off shell: carries out what the hand-off core
//! ([`hearsay_scheduler::handoff`]) decides, and feeds it what happens. The core places,
//! offers, follows, fences and settles; this file only moves its [`Action`]s to the executor,
//! the job store, the peers ([`crate::peer`]) and the waiting submitters, under one lock with
//! the gossiped map, so that a job's path goes one way: API → here → executor or peer.
//!
//! What goes in: submissions ([`Dispatcher::submit`]), peers' offers and asks
//! ([`Dispatcher::offer`], [`Dispatcher::ask`]), the answers to this node's own requests, the
//! executor's starts and ends, the map every [`MAP_CHECK`], and the core's timer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hearsay_scheduler::handoff::{
    Action, Answer, AskAnswer, BodyDigest, Handoff, HandoffConfig, Keyed, MoveKind, Offer,
    OfferAnswer, Refusal, Reply, Request, StealAnswer, Submission, SubmitRefusal, Ticket, View,
};
use hearsay_scheduler::Policy;
use hearsay_shared::offers::command_bits;
use hearsay_shared::{JobId, JobKind, JobOutcome, JobSpec, JobStatus, NodeId};
use rand::rngs::StdRng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::executor::{self, ms, Executor};
use crate::job_store::JobStore;
use crate::metrics::{Decision, ForwardFailure, Metrics};
use crate::peer::{AskReply, Peers, StealReply, LONG_POLL};
use crate::SharedGossip;

/// How often the core is shown the map (a job followed at a peer the map judges dead is lost).
pub const MAP_CHECK: Duration = Duration::from_millis(200);
/// How long a drain that ran out of time waits for abandoned jobs to record their end.
const ABANDON_GRACE: Duration = Duration::from_secs(2);

/// A job this node took, as the submitter is told at once (the body of a `202`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// Its id.
    pub id: JobId,
    /// `queued` or `running`.
    pub status: JobStatus,
    /// Where it runs.
    pub executing_node: NodeId,
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
    peers: Peers,
    policy: Policy,
    config: HandoffConfig,
    /// With stealing on: how often an idle node asks a busy peer for work.
    steal: Option<Duration>,
    shell: Mutex<Shell>,
    /// Woken when the core's next wake-up may be earlier.
    rearm: Notify,
    /// Woken whenever a job settles.
    settled: Notify,
    tasks: TaskTracker,
    stopping: CancellationToken,
    leaving: AtomicBool,
}

/// The core and what the shell keeps beside it, under one lock.
#[derive(Debug)]
struct Shell {
    core: Handoff,
    rng: StdRng,
    /// Jobs this node gives on and has not placed yet: their spec, submission and arrival.
    pending: HashMap<JobId, Pending>,
    /// The job submitted or offered in this call, until the core names its id.
    incoming: Option<Pending>,
    /// What a peer just said of a job followed there, for the record.
    heard: Option<JobOutcome>,
    /// Submitters waiting for their reply.
    waiting: HashMap<Ticket, oneshot::Sender<Reply>>,
    /// When each job submitted here and not yet settled arrived.
    followed: HashMap<JobId, Instant>,
    /// Jobs taken out of the executor's queue for a thief, until the move is settled.
    given: HashMap<JobId, executor::Submission>,
}

#[derive(Debug)]
struct Pending {
    spec: JobSpec,
    ticket: Option<Ticket>,
    arrived: Instant,
}

impl Dispatcher {
    /// The shell of node `me` over a core configured by `config`; its tasks run on `tracker`.
    /// `rng` drives placement (seed it from the node's logged seed). With `steal` (its
    /// interval), an idle node asks busy peers for queued jobs, and a leaving one hands its
    /// queue on.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        gossip: SharedGossip,
        executor: Executor,
        store: Arc<JobStore>,
        metrics: Metrics,
        config: HandoffConfig,
        steal: Option<Duration>,
        rng: StdRng,
        token: Option<&crate::auth::ApiToken>,
        tracker: &TaskTracker,
    ) -> Self {
        let me = config.node.clone();
        metrics.expect_policy(config.placer.policy);
        let (events, executed) = mpsc::unbounded_channel();
        executor.report_to(events);
        let this = Dispatcher {
            inner: Arc::new(Inner {
                peers: Peers::new(me.clone(), token),
                me,
                gossip,
                executor,
                store,
                metrics,
                policy: config.placer.policy,
                steal,
                shell: Mutex::new(Shell {
                    core: Handoff::new(config.clone()),
                    rng,
                    pending: HashMap::new(),
                    incoming: None,
                    heard: None,
                    waiting: HashMap::new(),
                    followed: HashMap::new(),
                    given: HashMap::new(),
                }),
                config,
                rearm: Notify::new(),
                settled: Notify::new(),
                tasks: tracker.clone(),
                stopping: CancellationToken::new(),
                leaving: AtomicBool::new(false),
            }),
        };
        tracker.spawn(this.clone().drive(executed));
        this
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

    /// What the hand-off core counted so far.
    pub fn stats(&self) -> hearsay_scheduler::handoff::HandoffStats {
        self.shell().core.stats()
    }

    /// Whether the node is leaving (and refuses new jobs).
    pub fn is_leaving(&self) -> bool {
        self.inner.leaving.load(Ordering::Relaxed)
    }

    /// Takes a job submitted to this node (with its idempotency key, if any): placed here or
    /// on a peer, or with `here_only` here or nowhere. `Ok` with whether the key named a job
    /// already (nothing new runs then).
    pub async fn submit(
        &self,
        spec: JobSpec,
        key: Option<String>,
        here_only: bool,
    ) -> Result<(Accepted, bool), SubmitRefusal> {
        if self.is_leaving() {
            return Err(SubmitRefusal::Leaving);
        }
        let (requires, runs_here, command) = match &spec.kind {
            JobKind::Exec { command, .. } => match self.inner.executor.can_run(&spec) {
                Ok(()) => (command_bits(command), true, Some(command.clone())),
                Err(executor::Refusal::BadArgs(e)) => {
                    let (field, reason) = (e.field, e.reason);
                    return Err(SubmitRefusal::Invalid { field, reason });
                }
                Err(_) => (command_bits(command), false, Some(command.clone())),
            },
            _ => (0, true, None),
        };
        // The job as parsed, so that the same job spelled with other spacing is the same.
        let key = key.map(|key| Keyed {
            key,
            digest: BodyDigest(
                Sha256::digest(serde_json::to_vec(&spec).unwrap_or_default()).into(),
            ),
        });
        let submission = Submission {
            key,
            requires,
            runs_here,
            command,
            here_only,
        };
        let (tx, rx) = oneshot::channel();
        self.with_core(|shell, now, view| {
            let ticket = shell
                .core
                .handle_submit(now, &mut shell.rng, view, submission);
            shell.waiting.insert(ticket, tx);
            let arrived = Instant::now();
            shell.incoming = Some(Pending {
                spec,
                ticket: Some(ticket),
                arrived,
            });
        });
        match rx.await.map_err(|_| SubmitRefusal::Leaving)? {
            Reply::Accepted { id, at, status } => {
                // Placed here: as the executor has it (a free slot started it at once).
                let status = match at == self.inner.me {
                    true => self.outcome(id).map_or(status, |o| o.status),
                    false => status,
                };
                let accepted = Accepted {
                    id,
                    status,
                    executing_node: at,
                };
                Ok((accepted, false))
            }
            Reply::Replayed { id } => {
                let outcome = self.outcome(id);
                let status = outcome.as_ref().map_or(JobStatus::Queued, |o| o.status);
                let at = outcome.and_then(|o| o.executing_node);
                let executing_node = at.unwrap_or_else(|| self.inner.me.clone());
                Ok((
                    Accepted {
                        id,
                        status,
                        executing_node,
                    },
                    true,
                ))
            }
            Reply::Refused(refusal) => Err(refusal),
        }
    }

    /// A peer offers a job: taken into the executor, or refused with the reason.
    pub fn offer(&self, offer: &Offer, spec: JobSpec) -> OfferAnswer {
        let executor = &self.inner.executor;
        let fit = match executor.can_run(&spec) {
            Ok(()) if executor.is_full() => Err(Refusal::Full),
            Ok(()) => Ok(()),
            Err(executor::Refusal::Undeclared(command)) => Err(Refusal::Undeclared(format!(
                "{} does not declare the command {command:?}",
                self.inner.me
            ))),
            Err(executor::Refusal::BadArgs(e)) => Err(Refusal::Invalid {
                field: e.field,
                reason: e.reason,
            }),
            Err(other) => Err(Refusal::Other(other.to_string())),
        };
        self.with_core(|shell, now, _| {
            let arrived = Instant::now();
            shell.incoming = Some(Pending {
                spec,
                ticket: None,
                arrived,
            });
            shell.core.handle_offer(now, offer, fit)
        })
    }

    /// A peer asks how job `id` stands (fencing it off here if this node does not hold it);
    /// with `wait`, the answer waits for the job's end, at most [`LONG_POLL`].
    pub async fn ask(&self, id: JobId, wait: bool, incarnation: u64) -> AskReply {
        let answer = self.with_core(|shell, now, _| shell.core.handle_ask(now, id, incarnation));
        match answer {
            AskAnswer::Held(status) => {
                let outcome = if wait && !status.is_terminal() {
                    self.wait(id, Some(LONG_POLL)).await
                } else {
                    self.outcome(id)
                };
                let outcome = outcome
                    .unwrap_or_else(|| JobOutcome::new(id, "", status, self.inner.me.clone()));
                AskReply::Held {
                    outcome: Box::new(outcome),
                }
            }
            AskAnswer::Moved(node) => AskReply::Moved { node },
            AskAnswer::Restarted => AskReply::Restarted,
            AskAnswer::Unknown | AskAnswer::Busy => AskReply::Unknown,
        }
    }

    /// A peer (`thief`, believing this node at `incarnation`) asks for a queued job: the
    /// newest queued one is taken out of the executor's queue and offered to it, or none.
    pub fn steal(&self, thief: &NodeId, incarnation: u64) -> StealReply {
        let answer = self.with_core(|shell, now, view| {
            let newest = self.inner.executor.take_newest();
            let id = newest.as_ref().map(|job| job.id);
            if let Some(job) = newest {
                shell.given.insert(job.id, job);
            }
            shell.core.handle_steal(now, view, thief, incarnation, id)
        });
        match answer {
            StealAnswer::Empty => StealReply::Empty,
            StealAnswer::Coming(id) => StealReply::Coming { id },
        }
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

    /// Refuses new jobs and offers from now on (the first step of [`Dispatcher::drain`], taken
    /// at once by [`crate::node::NodeHandle::shutdown`]).
    pub fn stop_accepting(&self) {
        self.inner.leaving.store(true, Ordering::Relaxed);
        self.with_core(|shell, _, _| shell.core.leave());
    }

    /// Leaves gracefully: refuses new jobs at once, lets the jobs queued and running here finish
    /// and the jobs forwarded from here report their end, for at most `timeout`; then records
    /// every job still queued or running here as lost, and stops following.
    pub async fn drain(&self, timeout: Duration) {
        let inner = &self.inner;
        self.stop_accepting();
        inner.executor.close();
        let work = inner.executor.work();
        let unsettled = self.shell().core.unsettled();
        info!(
            queued = work.queued,
            running = work.running,
            unsettled,
            timeout_ms = ms(timeout),
            "draining: taking no new jobs, finishing those taken"
        );
        let finished = tokio::time::timeout(timeout, async {
            loop {
                let settled = inner.settled.notified();
                if inner.steal.is_some() {
                    self.hand_over_queue();
                }
                let work = inner.executor.work();
                if work.queued == 0 && work.running == 0 && self.shell().core.unsettled() == 0 {
                    break;
                }
                // A job settled, or a while passed: hand on what is queued again.
                let _ = tokio::time::timeout(MAP_CHECK, settled).await;
            }
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
                unsettled = self.shell().core.unsettled(),
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

    /// Offers every queued job on to a peer (this node is leaving); those no peer takes come
    /// back to the queue.
    fn hand_over_queue(&self) {
        self.with_core(|shell, now, view| {
            while let Some(job) = self.inner.executor.take_newest() {
                let id = job.id;
                let requires = job.spec.kind.command().map_or(0, command_bits);
                shell.given.insert(id, job);
                if !shell
                    .core
                    .handle_hand_over(now, &mut shell.rng, view, id, requires)
                {
                    break; // no peer takes work now; the rest stay queued
                }
            }
        });
    }

    /// Whether this node is idle enough to steal: a free slot, an empty queue, not leaving.
    fn may_steal(&self, view: &View<'_>) -> bool {
        self.inner.steal.is_some()
            && !self.is_leaving()
            && view.own.queued == 0
            && view.own.running < view.own.slots
    }

    fn shell(&self) -> std::sync::MutexGuard<'_, Shell> {
        self.inner
            .shell
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the core with the map and this node's exact load, then carries out what it
    /// decided, all under the map's lock and the core's.
    fn with_core<R>(&self, f: impl FnOnce(&mut Shell, std::time::Instant, &View<'_>) -> R) -> R {
        let inner = &self.inner;
        let result = inner.gossip.with(|g| {
            let view = View {
                map: g.map(),
                own: inner.executor.load(g.own_report().load.cpu_permille),
                room: !inner.executor.is_full(),
            };
            let now = Instant::now();
            let mut shell = self.shell();
            let result = f(&mut shell, now.into_std(), &view);
            self.carry_out(&mut shell, now);
            result
        });
        inner.rearm.notify_one();
        result
    }

    fn carry_out(&self, shell: &mut Shell, now: Instant) {
        let inner = &self.inner;
        while let Some(action) = shell.core.poll_action() {
            match action {
                Action::Reply { ticket, reply } => {
                    if matches!(reply, Reply::Refused(_)) {
                        shell.pending.retain(|_, p| p.ticket != Some(ticket));
                    }
                    if let Some(submitter) = shell.waiting.remove(&ticket) {
                        let _ = submitter.send(reply);
                    }
                }
                Action::Run { id, entry, path } => {
                    let Some(job) = shell.pending.remove(&id).or_else(|| shell.incoming.take())
                    else {
                        continue;
                    };
                    if path.is_empty() {
                        inner
                            .metrics
                            .placement_decided(inner.policy, Decision::Local);
                        inner.metrics.placed_locally();
                    } else {
                        inner.metrics.received_forwarded();
                    }
                    if !path.is_empty() && entry == inner.me {
                        // Stolen back to its entry node: the record this node kept while
                        // following the job elsewhere makes way for the executor's.
                        inner.store.remove_unfinished(now, id);
                    }
                    let hops = u32::try_from(path.len()).unwrap_or(u32::MAX);
                    let arrived = job.arrived;
                    if path.is_empty() {
                        // Submitted here: if a thief takes it later, its total counts from now.
                        shell.followed.insert(id, arrived);
                    }
                    let job = executor::Submission {
                        id,
                        spec: job.spec,
                        entry,
                        hops,
                        arrived,
                    };
                    if let Err(refusal) = inner.executor.submit(job) {
                        warn!(%id, %refusal, "the executor refused a job the core placed here");
                        shell.core.handle_ended(now.into_std(), id, JobStatus::Lost);
                    }
                }
                Action::Send {
                    to,
                    api,
                    request,
                    message,
                } => {
                    let spec = match &message {
                        Request::Offer(offer) => {
                            if !shell.pending.contains_key(&offer.id) {
                                if let Some(job) = shell.incoming.take() {
                                    shell.pending.insert(offer.id, job);
                                }
                            }
                            if offer.kind == MoveKind::Forward {
                                inner
                                    .metrics
                                    .placement_decided(inner.policy, Decision::Forward);
                            }
                            let given = shell.given.get(&offer.id).map(|job| &job.spec);
                            let pending = shell.pending.get(&offer.id).map(|p| &p.spec);
                            pending.or(given).cloned()
                        }
                        _ => None,
                    };
                    let timeout = match &message {
                        Request::Offer(_) => inner.config.offer_timeout,
                        Request::Ask { wait: true, .. } => inner.config.follow.timeout,
                        _ => inner.config.ask_timeout,
                    };
                    let this = self.clone();
                    inner.tasks.spawn(async move {
                        let sent = this.inner.peers.send(api, &message, spec.as_ref(), timeout);
                        let (answer, heard) = tokio::select! {
                            answer = sent => answer,
                            () = this.inner.stopping.cancelled() => return,
                        };
                        match (&message, &answer) {
                            (Request::Offer(_), Answer::NotSent(_)) => {
                                this.inner
                                    .metrics
                                    .forward_failed(ForwardFailure::Unreachable);
                            }
                            (Request::Offer(_), Answer::Offer(OfferAnswer::Refused(_))) => {
                                this.inner.metrics.forward_failed(ForwardFailure::Refused);
                            }
                            _ => {}
                        }
                        tracing::debug!(peer = %to, ?answer, "peer answered");
                        this.with_core(|shell, now, view| {
                            shell.heard = heard;
                            shell
                                .core
                                .handle_answer(now, &mut shell.rng, view, request, answer);
                        });
                    });
                }
                Action::Follow { id, at, status } => {
                    let kind = shell.pending.remove(&id).map(|p| {
                        shell.followed.entry(id).or_insert(p.arrived);
                        p.spec.kind.name().to_owned()
                    });
                    let moved = inner.store.update(now, id, |o| {
                        o.executing_node = Some(at.clone());
                        o.status = status;
                    });
                    if !moved {
                        inner.metrics.forwarded_to(&at);
                        let mut outcome = JobOutcome::new(id, "", status, inner.me.clone());
                        outcome.kind = kind.unwrap_or_default();
                        outcome.executing_node = Some(at);
                        outcome.hops = 1;
                        let _ = inner.store.insert(now, outcome);
                    }
                }
                Action::Learned { id, status } => {
                    inner.store.update(now, id, |o| o.status = status);
                }
                Action::Requeue { id } => {
                    if let Some(job) = shell.given.remove(&id) {
                        inner.executor.requeue(job);
                    }
                }
                Action::Moved { id, .. } => {
                    shell.given.remove(&id);
                    // A job entered elsewhere: its entry node follows it to the thief, and a
                    // long poll here ends, so that the next ask hears where it went.
                    let entered_elsewhere = inner
                        .store
                        .get(now, id)
                        .is_some_and(|o| o.entry_node != inner.me);
                    if entered_elsewhere {
                        inner.store.remove_unfinished(now, id);
                    }
                }
                Action::Settled {
                    id,
                    status,
                    reason,
                    path,
                } => {
                    let arrived = shell.followed.remove(&id);
                    let heard = shell.heard.take().filter(|h| h.id == id);
                    let change = |o: &mut JobOutcome| {
                        if o.status.is_terminal() {
                            return; // ended here: the executor recorded it
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
                        if let Some(arrived) = arrived {
                            o.total_ms = Some(ms(now - arrived));
                        }
                    };
                    if inner.store.get(now, id).is_some() {
                        inner.store.update(now, id, change);
                    } else {
                        let mut outcome =
                            JobOutcome::new(id, "", JobStatus::Queued, inner.me.clone());
                        change(&mut outcome);
                        let _ = inner.store.insert(now, outcome);
                    }
                    inner.settled.notify_waiters();
                }
            }
        }
        shell.incoming = None;
        shell.heard = None;
    }

    /// Feeds the core the executor's starts and ends, the map, and its wake-ups, until the
    /// node stops.
    async fn drive(self, mut executed: mpsc::UnboundedReceiver<(JobId, JobStatus)>) {
        let mut rounds = tokio::time::interval(MAP_CHECK);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut steals = tokio::time::interval(self.inner.steal.unwrap_or(Duration::MAX / 4));
        steals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = self.shell().core.poll_timeout().map(Instant::from_std);
            let timer = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some((id, status)) = executed.recv() => self.with_core(|shell, now, view| {
                    if status == JobStatus::Running {
                        shell.core.handle_started(now, id);
                    } else {
                        shell.core.handle_ended(now, id, status);
                        // Idle now? Ask at once (the tick asks again while it stays so).
                        if self.may_steal(view) {
                            shell.core.handle_idle(now, &mut shell.rng, view);
                        }
                    }
                }),
                _ = steals.tick(), if self.inner.steal.is_some() => self.with_core(|shell, now, view| {
                    if self.may_steal(view) {
                        shell.core.handle_idle(now, &mut shell.rng, view);
                    }
                }),
                () = timer => self.with_core(|shell, now, view| {
                    shell.core.handle_timeout(now, &mut shell.rng, view);
                }),
                _ = rounds.tick() => self.with_core(|shell, now, view| {
                    shell.core.handle_map(view.map);
                    shell.core.handle_timeout(now, &mut shell.rng, view);
                }),
                () = self.inner.rearm.notified() => {}
                () = self.inner.stopping.cancelled() => return,
            }
        }
    }
}
