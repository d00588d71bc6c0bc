//! The shell proper: runs the hand-off core under one lock with the gossiped map, carries out
//! the [`Action`]s it emits (to the executor, the peers, the job store and the waiting
//! submitters), and feeds it the executor's starts and ends, the map and its timer.

use std::sync::PoisonError;
use std::time::Duration;

use hearsay_scheduler::handoff::{Action, Answer, MoveKind, OfferAnswer, Reply, Request, View};
use hearsay_shared::{JobId, JobSpec, JobStatus, LoadMap, NodeId};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::warn;

use super::record::{self, Settled};
use super::state::{Dispatcher, Shell, MAP_CHECK};
use crate::jobs::slots;
use crate::metrics::{Decision, ForwardFailure};

impl Dispatcher {
    pub(super) fn shell(&self) -> std::sync::MutexGuard<'_, Shell> {
        self.inner
            .shell
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the core with the map and this node's exact load, then carries out what it
    /// decided, all under the map's lock and the core's.
    pub(super) fn with_core<R>(
        &self,
        f: impl FnOnce(&mut Shell, std::time::Instant, &View<'_>) -> R,
    ) -> R {
        let inner = &self.inner;
        let result = inner.gossip.with(|g| {
            let now = Instant::now();
            let mut shell = self.shell();
            let result = {
                let view = View {
                    map: g.map(),
                    own: inner.executor.load(&g.own_report().load),
                    room: !inner.executor.is_full(),
                };
                let result = f(&mut shell, now.into_std(), &view);
                self.carry_out(&mut shell, now, g.map());
                result
            };
            for report in shell.news.drain(..) {
                g.handle_report(now.into_std(), report);
            }
            result
        });
        inner.rearm.notify_one();
        result
    }

    fn carry_out(&self, shell: &mut Shell, now: Instant, map: &LoadMap) {
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
                Action::Run { id, entry, path } => self.run(shell, now, id, entry, &path),
                Action::Send {
                    to,
                    api,
                    request,
                    message,
                } => {
                    let spec = self.spec_to_send(shell, &message);
                    self.send(to, api, request, message, spec);
                }
                Action::Follow { id, at, status } => {
                    let kind = shell.pending.remove(&id).map(|p| {
                        shell.followed.entry(id).or_insert(p.arrived);
                        p.spec.kind.name().to_owned()
                    });
                    let store = &inner.store;
                    // Where to ask after it again, should this node restart.
                    let peer = map
                        .get(&at)
                        .map(|e| (e.report().api, e.report().incarnation));
                    record::follow(
                        store,
                        &inner.metrics,
                        &inner.me,
                        now,
                        (id, kind),
                        (at, peer),
                        status,
                    );
                }
                Action::Learned { id, status } => {
                    inner.store.update(now, id, |o| o.status = status);
                }
                Action::Requeue { id } => {
                    if let Some(job) = shell.given.remove(&id) {
                        if inner.store.is_durable() {
                            inner.store.annotate(now, id, |extra| {
                                extra.moving_to = None;
                                extra.peer = None;
                            });
                        }
                        inner.executor.requeue(job);
                    }
                }
                Action::Moved { id, .. } => {
                    shell.given.remove(&id);
                    record::moved_away(&inner.store, &inner.me, now, id);
                }
                // Merged into the map once the core's view of it is let go (see with_core).
                Action::News { report } => shell.news.push(report),
                Action::Settled {
                    id,
                    status,
                    reason,
                    path,
                } => {
                    let settled = Settled {
                        id,
                        status,
                        reason,
                        path,
                        heard: shell.heard.take().filter(|h| h.id == id),
                        arrived: shell.followed.remove(&id),
                    };
                    record::settle(&inner.store, &inner.me, now, settled);
                    inner.settled.notify_waiters();
                }
            }
        }
        shell.incoming = None;
        shell.heard = None;
    }

    /// The core placed job `id` here (`path`: the nodes it came through; empty if submitted
    /// here): into the executor's queue.
    fn run(&self, shell: &mut Shell, now: Instant, id: JobId, entry: NodeId, path: &[NodeId]) {
        let inner = &self.inner;
        let Some(job) = shell.pending.remove(&id).or_else(|| shell.incoming.take()) else {
            return;
        };
        if path.is_empty() {
            let metrics = &inner.metrics;
            metrics.placement_decided(inner.policy, Decision::Local);
            metrics.placed_locally();
            // Submitted here: if a thief takes it later, its total counts from now.
            shell.followed.insert(id, job.arrived);
        } else {
            inner.metrics.received_forwarded();
            if entry == inner.me {
                // Stolen back to its entry node: the record this node kept while following
                // the job elsewhere makes way for the executor's.
                inner.store.remove_unfinished(now, id);
            }
        }
        let job = slots::Submission {
            id,
            spec: job.spec,
            entry,
            path: path.to_vec(),
            arrived: job.arrived,
        };
        if let Err(refusal) = inner.executor.submit(job) {
            warn!(%id, %refusal, "the executor refused a job the core placed here");
            shell.core.handle_ended(now.into_std(), id, JobStatus::Lost);
        }
    }

    /// The job an offer carries (a submitted job's, or one taken out of the queue for a
    /// thief); `None` for the other messages.
    fn spec_to_send(&self, shell: &mut Shell, message: &Request) -> Option<JobSpec> {
        let Request::Offer(offer) = message else {
            return None;
        };
        if !shell.pending.contains_key(&offer.id) {
            if let Some(job) = shell.incoming.take() {
                shell.pending.insert(offer.id, job);
            }
        }
        if offer.kind == MoveKind::Forward {
            let policy = self.inner.policy;
            self.inner
                .metrics
                .placement_decided(policy, Decision::Forward);
        }
        let given = shell.given.get(&offer.id).map(|job| &job.spec);
        let pending = shell.pending.get(&offer.id).map(|p| &p.spec);
        pending.or(given).cloned()
    }

    /// Sends `message` to peer `to` at `api` in a task of its own, and hands the core the
    /// answer (or that none came) under ticket `request`.
    fn send(
        &self,
        to: NodeId,
        api: std::net::SocketAddr,
        request: hearsay_scheduler::handoff::RequestId,
        message: Request,
        spec: Option<JobSpec>,
    ) {
        let config = &self.inner.config;
        let timeout = match &message {
            Request::Offer(_) => config.offer_timeout,
            Request::Ask { wait: true, .. } => config.follow.timeout,
            _ => config.ask_timeout,
        };
        // A queued job given on (a steal, a hand-over) is marked on disk as on its way before
        // it goes: a restart must not run it here again, for the thief may have taken it.
        let giving = match &message {
            Request::Offer(offer) if offer.kind != MoveKind::Forward => {
                let store = &self.inner.store;
                if store.is_durable() {
                    let peer = Some((api, offer.incarnation));
                    store.annotate(Instant::now(), offer.id, |extra| {
                        extra.moving_to = Some(to.clone());
                        extra.peer = peer;
                    });
                }
                store.is_durable()
            }
            _ => false,
        };
        let this = self.clone();
        self.inner.tasks.spawn(async move {
            let inner = &this.inner;
            if giving {
                if let Err(e) = inner.store.flushed().await {
                    warn!("a job is given on although the store could not mark it: {e}");
                }
            }
            let sent = inner.peers.send(api, &message, spec.as_ref(), timeout);
            let (answer, heard) = tokio::select! {
                answer = sent => answer,
                () = inner.stopping.cancelled() => return,
            };
            match (&message, &answer) {
                (Request::Offer(_), Answer::NotSent(_)) => {
                    inner.metrics.forward_failed(ForwardFailure::Unreachable);
                }
                (Request::Offer(_), Answer::Offer(OfferAnswer::Refused(_))) => {
                    inner.metrics.forward_failed(ForwardFailure::Refused);
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

    /// Whether this node is idle enough to steal: a free slot, an empty queue, not leaving.
    fn may_steal(&self, view: &View<'_>) -> bool {
        self.inner.steal.is_some()
            && !self.is_leaving()
            && view.own.queued == 0
            && view.own.running < view.own.slots
    }

    /// Feeds the core the executor's starts and ends, the map, and its wake-ups, until the
    /// node stops.
    pub(super) async fn drive(self, mut executed: mpsc::UnboundedReceiver<(JobId, JobStatus)>) {
        let mut rounds = tokio::time::interval(MAP_CHECK);
        rounds.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut steals = tokio::time::interval(self.inner.steal.unwrap_or(Duration::MAX / 4));
        steals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let steal_if_idle = |shell: &mut Shell, now, view: &View<'_>| {
            if self.may_steal(view) {
                shell.core.handle_idle(now, &mut shell.rng, view);
            }
        };
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
                        steal_if_idle(shell, now, view);
                    }
                }),
                _ = steals.tick(), if self.inner.steal.is_some() => {
                    self.with_core(steal_if_idle);
                }
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
