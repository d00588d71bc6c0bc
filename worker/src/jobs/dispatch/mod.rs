//! The hand-off shell: carries out what the hand-off core
//! ([`hearsay_scheduler::handoff`]) decides, and feeds it what happens. The core places,
//! offers, follows, fences and settles; the shell only moves its
//! [`Action`](hearsay_scheduler::handoff::Action)s to the executor, the job store, the peers
//! ([`peers`]) and the waiting submitters, under one lock with the gossiped map, so that a job's
//! path goes one way: API → here → executor or peer.
//!
//! - this file: what comes in — submissions ([`Dispatcher::submit`]), peers' offers, asks and
//!   steals ([`Dispatcher::offer`], [`Dispatcher::ask`], [`Dispatcher::steal`]) — and the drain;
//! - `state.rs`: the handle ([`Dispatcher`]) and, under its lock, the core and what the shell
//!   keeps beside it;
//! - `shell.rs`: the core's actions carried out, its timer, the map every
//!   [`MAP_CHECK`] and the executor's starts and ends fed to it;
//! - `record.rs`: what the core's decisions write to the job store for jobs that run elsewhere;
//! - `cancel.rs`: a client's cancel of a job, looked at under the core's lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearsay_scheduler::handoff::{
    AskAnswer, BodyDigest, Handoff, HandoffConfig, Keyed, Offer, OfferAnswer, Refusal, Reply,
    StealAnswer, Submission, SubmitRefusal,
};
use hearsay_shared::offers::command_bits;
use hearsay_shared::{JobId, JobKind, JobOutcome, JobSpec, JobStatus, LoadVector, NodeId};
use rand::rngs::StdRng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::gossip::SharedGossip;
use crate::jobs::ms;
use crate::jobs::slots::{self, Executor};
use crate::jobs::store::JobStore;
use crate::metrics::Metrics;
use peers::{AskReply, Peers, StealReply, LONG_POLL};
use state::{Inner, Pending, Shell, MAP_CHECK};

mod cancel;
pub mod peers;
mod record;
mod shell;
mod state;

pub use cancel::CancelAnswer;
pub use state::Dispatcher;

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

/// What a restarted node took back from its store, for the core.
#[derive(Debug, Default)]
pub struct Restored {
    /// Jobs held here: id, entry node, the nodes before this one, status.
    pub held: Vec<(JobId, NodeId, Vec<NodeId>, JobStatus)>,
    /// Jobs this node answers for at peers.
    pub followed: Vec<hearsay_scheduler::handoff::Followed>,
    /// Idempotency keys and the jobs they name.
    pub keys: Vec<(Keyed, JobId)>,
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
        token: Option<&crate::http::auth::ApiToken>,
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
                shell: Mutex::new(Shell::new(Handoff::new(config.clone()), rng)),
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

    /// The jobs queued and running here now.
    pub fn work(&self) -> crate::gossip::sampler::Work {
        self.inner.executor.work()
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
                Err(slots::Refusal::BadArgs(e)) => {
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
        let keyed = submission.key.clone();
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
                if let Some(keyed) = keyed.filter(|_| self.inner.store.is_durable()) {
                    // The key names the job across a restart too.
                    let hex: String = keyed.digest.0.iter().map(|b| format!("{b:02x}")).collect();
                    let key = Some((keyed.key, hex));
                    let now = Instant::now();
                    self.inner.store.annotate(now, id, |extra| extra.key = key);
                }
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

    /// Tells the core what a restart took back from the store (see [`crate::jobs::restart`]).
    pub fn restore(&self, restored: Restored) {
        self.with_core(|shell, now, _| {
            for (id, entry, path, status) in restored.held {
                shell.core.restore_held(now, id, entry, path, status);
            }
            for followed in restored.followed {
                shell.core.restore_follow(now, followed);
            }
            for (keyed, id) in restored.keys {
                shell.core.restore_key(now, &keyed, id);
            }
        });
    }

    /// A peer offers a job: taken into the executor, or refused with the reason.
    pub fn offer(&self, offer: &Offer, spec: JobSpec) -> OfferAnswer {
        let executor = &self.inner.executor;
        let trouble = self.inner.store.trouble();
        let fit = match executor.can_run(&spec) {
            Ok(()) if trouble.is_some() => Err(Refusal::Other(format!(
                "{} takes no jobs while its job store cannot write",
                self.inner.me
            ))),
            Ok(()) => Ok(()),
            Err(slots::Refusal::Undeclared(command)) => Err(Refusal::Undeclared(format!(
                "{} does not declare the command {command:?}",
                self.inner.me
            ))),
            Err(slots::Refusal::BadArgs(e)) => Err(Refusal::Invalid {
                field: e.field,
                reason: e.reason,
            }),
            Err(other) => Err(Refusal::Other(other.to_string())),
        };
        self.with_core(|shell, now, view| {
            // Room is judged under the core's lock, as the `Run` that may follow is carried
            // out: judged before it, a submission in between could fill the queue, and the
            // job taken would then be refused by the executor and lost.
            let fit = match fit {
                Ok(()) if !view.room => Err(Refusal::Full),
                fit => fit,
            };
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
            StealAnswer::Empty { .. } => {
                // With the node's report as it is now (its queue is empty, or it may not give),
                // which the thief takes as news fresher than gossip's.
                let work = self.inner.executor.work();
                let report = self.inner.gossip.with(|g| {
                    let load = g.own_report().load;
                    let (queued, running) = (work.queued, work.running);
                    g.set_load(LoadVector {
                        queued,
                        running,
                        ..load
                    });
                    g.report_now(Instant::now().into_std())
                });
                StealReply::Empty {
                    load: Some(Box::new(report)),
                }
            }
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
}
