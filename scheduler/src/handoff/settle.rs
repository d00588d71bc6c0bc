//! The entry node settles a move: the answer to its offer or ask, or none in time; asks after
//! a lost answer; following the job where it is (see [`follow`](super::follow)) until it ends,
//! and the one [`Action::Settled`] of it. The map's verdicts on the nodes it follows jobs at.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hearsay_shared::{JobId, JobStatus, LoadMap, NodeId};
use rand::Rng;

use super::follow::{Fate, Follow, FollowStep};
use super::message::{Answer, MoveKind, Request, RequestId};
use super::moves::{self, Move, Step};
use super::{Action, Entered, Handoff, Role, Stage, SubmitRefusal, View};

impl Handoff {
    /// The answer to request `request` came back (or the shell knows there will be none).
    pub fn handle_answer<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        request: RequestId,
        answer: Answer,
    ) {
        if let Some(asked) = self.steal.take_if(|s| s.request == request) {
            self.steal_answered(now, rng, view, asked, answer);
            return;
        }
        let Some(id) = self.requests.remove(&request) else {
            return; // timed out or superseded: ignored
        };
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.request != Some(request) {
            return;
        }
        job.request = None;
        if let Some((at, order)) = job.timer.take() {
            self.timers.remove(&(at, order, id));
        }
        self.take_answer(now, rng, view, id, answer);
    }

    /// Wakes the core: requests whose time ran out are taken as unanswered, pauses end.
    pub fn handle_timeout<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R, view: &View<'_>) {
        if self.steal.as_ref().is_some_and(|s| s.until <= now) {
            self.steal = None;
        }
        while let Some(&(at, order, id)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.remove(&(at, order, id));
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            if job.timer != Some((at, order)) {
                continue;
            }
            job.timer = None;
            match job.request.take() {
                Some(request) => {
                    self.requests.remove(&request);
                    let answer = Answer::Unanswered(format!(
                        "no answer within {} ms",
                        self.timeout_of(id).as_millis()
                    ));
                    self.take_answer(now, rng, view, id, answer);
                }
                // A pause is over: ask.
                None => self.ask(now, id),
            }
        }
    }

    /// How long the request outstanding for `id` may take.
    fn timeout_of(&self, id: JobId) -> Duration {
        match self.jobs.get(&id).map(|j| &j.stage) {
            Some(Stage::Moving(m)) if m.phase == moves::Phase::Offered => self.config.offer_timeout,
            Some(Stage::Moving(_)) => self.config.ask_timeout,
            _ => self.config.follow.timeout,
        }
    }

    /// Sends the ask that job `id`'s stage calls for.
    pub(super) fn ask(&mut self, now: Instant, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        let (to, api, incarnation, wait, timeout) = match &job.stage {
            Stage::Moving(m) => (
                m.to.clone(),
                m.api,
                m.incarnation,
                false,
                self.config.ask_timeout,
            ),
            Stage::Following(f) => (
                f.at.clone(),
                f.api,
                f.incarnation,
                true,
                self.config.follow.timeout,
            ),
            Stage::Placing | Stage::Here => return,
        };
        let ask = Request::Ask {
            id,
            wait,
            incarnation,
        };
        self.send(now, id, to, api, ask, timeout);
    }

    fn take_answer<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        id: JobId,
        answer: Answer,
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        match &mut job.stage {
            Stage::Moving(m) => {
                let step = m.on_answer(answer, self.config.ask_attempts, self.config.ask_pause);
                let m = m.clone();
                self.take_move_step(now, rng, view, id, m, step);
            }
            Stage::Following(f) => {
                let step = f.on_answer(answer, &self.config.follow);
                self.take_follow_step(now, view, id, step);
            }
            Stage::Placing | Stage::Here => {}
        }
    }

    fn take_move_step<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        id: JobId,
        m: Move,
        step: Step,
    ) {
        if let Step::Ask { after } = step {
            if matches!(m.phase, moves::Phase::Asking { attempt: 0, .. }) {
                self.stats.offers_unanswered += 1;
            }
            if let Some(job) = self.jobs.get_mut(&id) {
                job.stage = Stage::Moving(m);
            }
            if after.is_zero() {
                self.ask(now, id);
            } else {
                self.wake(now + after, id);
            }
            return;
        }
        // "It moved to you": the peer holds it no more (and refuses it back). Unless this node
        // took it back by a steal, the offer was not taken.
        let step = match step {
            Step::MovedOn(node)
                if node == self.config.node
                    && (m.kind == MoveKind::Steal
                        || self.held.get(id, now).is_none_or(|h| h.moved_to.is_some())) =>
            {
                Step::NotTaken {
                    reason: "it gave the job to this node before".into(),
                    counts: true,
                }
            }
            step => step,
        };
        if m.kind == MoveKind::Steal {
            self.take_steal_step(now, view, id, m, step);
            return;
        }
        match step {
            Step::Ask { .. } => unreachable!("handled above"),
            Step::Taken(status) => {
                self.stats.forwarded += 1;
                self.follow_at(
                    now,
                    id,
                    Follow::new(m.to, m.api, m.incarnation, status),
                    None,
                );
            }
            Step::Unconfirmed => {
                self.stats.forwarded += 1;
                self.stats.unconfirmed += 1;
                let follow = Follow::new(m.to, m.api, m.incarnation, JobStatus::Queued);
                self.follow_at(now, id, follow, None);
            }
            Step::Lost(reason) => {
                self.follow_at(
                    now,
                    id,
                    Follow::new(m.to, m.api, m.incarnation, JobStatus::Lost),
                    Some(reason),
                );
            }
            Step::MovedOn(node) => {
                self.stats.forwarded += 1;
                self.moved_to(now, view, id, node);
            }
            Step::NotTaken { reason, counts } => {
                self.stats.offers_not_taken += 1;
                let Some(job) = self.jobs.get_mut(&id) else {
                    return;
                };
                job.refusals.push(format!("{}: {reason}", m.to));
                job.excluded.push(m.to);
                job.offered_elsewhere |= counts;
                job.stage = Stage::Placing;
                self.place(now, rng, view, id);
            }
            Step::Invalid { field, reason } => {
                self.refuse(id, SubmitRefusal::Invalid { field, reason });
            }
        }
    }

    /// Job `id` is held by the peer in `follow`: record it, tell the submitters, ask after it
    /// (or settle it, if its status is an end; `reason` says why it was lost).
    pub(super) fn follow_at(
        &mut self,
        now: Instant,
        id: JobId,
        follow: Follow,
        reason: Option<String>,
    ) {
        let (at, status) = (follow.at.clone(), follow.status);
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        job.path.push(at.clone());
        job.stage = Stage::Following(follow);
        self.actions.push_back(Action::Follow {
            id,
            at: at.clone(),
            status,
        });
        self.accepted(id, at, status);
        if status.is_terminal() {
            self.settle(id, status, reason);
        } else {
            self.ask(now, id);
        }
    }

    /// The job moved on to `node`: follow it there, as the map knows it.
    pub(super) fn moved_to(&mut self, now: Instant, view: &View<'_>, id: JobId, node: NodeId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        // Entry, then every node it moved to: more than the bound allows is a loop of stale
        // "moved" answers (a move whose answer was lost, taken for done), not the job.
        if job.path.len() > self.config.max_moves as usize {
            job.path.push(node.clone());
            self.accepted(id, node.clone(), JobStatus::Queued);
            let reason = format!(
                "lost track of the job: it was said to move to {node}, more often than a job may move"
            );
            self.settle(id, JobStatus::Lost, Some(reason));
            return;
        }
        if node == self.config.node {
            // It came back here (this node took it by a steal): it is held here. If this node
            // does not hold it, the peer took an unanswered move back here for done: no node
            // holds it.
            let held = self.held.get(id, now).filter(|h| h.moved_to.is_none());
            let Some(held) = held else {
                self.accepted(id, node.clone(), JobStatus::Queued);
                let reason = format!(
                    "{} moved the job back here without an answer, and it is not here",
                    job_holder(&self.jobs, id)
                );
                self.settle(id, JobStatus::Lost, Some(reason));
                return;
            };
            {
                let status = held.status;
                let job = self.jobs.get_mut(&id).expect("present");
                job.path.push(node.clone());
                job.stage = Stage::Here;
                self.accepted(id, node, status);
                if status.is_terminal() {
                    self.settle(id, status, None);
                }
                return;
            }
        }
        match view.map.get(&node) {
            Some(entry) => {
                let report = entry.report();
                let follow = Follow::new(node, report.api, report.incarnation, JobStatus::Queued);
                self.follow_at(now, id, follow, None);
            }
            None => {
                if let Some(job) = self.jobs.get_mut(&id) {
                    job.path.push(node.clone());
                }
                self.accepted(id, node.clone(), JobStatus::Queued);
                let reason = format!("the job moved to {node}, which this node does not know");
                self.settle(id, JobStatus::Lost, Some(reason));
            }
        }
    }

    fn take_follow_step(&mut self, now: Instant, view: &View<'_>, id: JobId, step: FollowStep) {
        match step {
            FollowStep::Ask { after, learned } => {
                if let Some(status) = learned {
                    self.actions.push_back(Action::Learned { id, status });
                }
                if after.is_zero() {
                    self.ask(now, id);
                } else {
                    self.wake(now + after, id);
                }
            }
            FollowStep::Ended(status) => self.settle(id, status, None),
            FollowStep::Lost(reason) => self.settle(id, JobStatus::Lost, Some(reason)),
            FollowStep::MovedTo(node) => self.moved_to(now, view, id, node),
        }
    }

    /// Job `id` has ended: the one [`Action::Settled`] of it.
    pub(super) fn settle(&mut self, id: JobId, status: JobStatus, reason: Option<String>) {
        let Some(job) = self.forget(id) else {
            return;
        };
        debug_assert_eq!(job.role, Role::Entry, "only an entry node settles a job");
        if status == JobStatus::Lost {
            self.stats.lost += 1;
        }
        self.actions.push_back(Action::Settled {
            id,
            status,
            reason,
            path: job.path,
        });
    }

    /// Drops job `id`'s record, its request and its wake-up.
    pub(super) fn forget(&mut self, id: JobId) -> Option<Entered> {
        let job = self.jobs.remove(&id)?;
        if let Some(request) = job.request {
            self.requests.remove(&request);
        }
        if let Some((at, order)) = job.timer {
            self.timers.remove(&(at, order, id));
        }
        Some(job)
    }

    /// The map changed for `node`: its verdict (`None`: no longer in the map) and incarnation.
    /// Jobs followed there are lost if it died or restarted.
    pub fn handle_peer(&mut self, node: &NodeId, entry: Option<(hearsay_shared::Verdict, u64)>) {
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| matches!(&j.stage, Stage::Following(f) if f.at == *node))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.judge(id, entry);
        }
    }

    /// Looks at the map for every peer that holds a job followed from here (the shell may call
    /// this every gossip round instead of [`Handoff::handle_peer`] on every change).
    pub fn handle_map(&mut self, map: &LoadMap) {
        let followed: Vec<(JobId, Option<(hearsay_shared::Verdict, u64)>)> = self
            .jobs
            .iter()
            .filter_map(|(id, j)| match &j.stage {
                Stage::Following(f) => Some((
                    *id,
                    map.get(&f.at)
                        .map(|e| (e.verdict(), e.report().incarnation)),
                )),
                _ => None,
            })
            .collect();
        for (id, entry) in followed {
            self.judge(id, entry);
        }
    }

    fn judge(&mut self, id: JobId, entry: Option<(hearsay_shared::Verdict, u64)>) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let Stage::Following(f) = &mut job.stage else {
            return;
        };
        if let Some(reason) = f.on_fate(Fate::of(entry, f.incarnation)) {
            self.settle(id, JobStatus::Lost, Some(reason));
        }
    }
}

/// The node job `id` was last followed at, for a reason.
fn job_holder(jobs: &HashMap<JobId, Entered>, id: JobId) -> String {
    jobs.get(&id)
        .and_then(|j| j.path.last())
        .map_or_else(|| "a peer".to_owned(), ToString::to_string)
}
