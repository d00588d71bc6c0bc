//! Stealing: a node with a free slot and an empty queue asks a busy peer for one of its queued
//! jobs (receiver-initiated load sharing, Eager, Lazowska and Zahorjan 1986), and the busy peer
//! gives it on as an ordinary [`Offer`] of [`MoveKind::Steal`], settled by the same rules as a
//! forward ([`moves`](super::moves)).
//!
//! ```text
//!  thief: idle ──Steal{incarnation}──▶ victim: shell takes its newest queued job out
//!                                         none ─────────────────▶ Empty{its own report}
//!  thief: Empty ──▶ News(report) for its map; still idle: asks another peer at once
//!                                         job J ──▶ Coming(J), and Offer(J, Steal) ──▶ thief
//!  victim, as the giver of J (moves.rs):
//!     Taken / Unconfirmed / MovedOn ──▶ held: moved to the thief (asks answer Moved);
//!                                       the entry node (this one, or the one asking) follows it there
//!     NotTaken ──▶ Requeue(J): back at the end of the queue, as it was
//!     Lost (the thief restarted before saying) ──▶ J lost
//! ```
//!
//! The victim has taken the job out of its queue before it answers, so the job is never queued
//! in two places at once; it goes back only when the thief said it did not take it (and never
//! will: a refusal, a request never sent, an ask that fenced it). Only a queued job is given,
//! never a running one, and the move counts toward the job's bound of moves.

use std::time::Instant;

use hearsay_shared::{JobId, JobStatus, NodeId};
use rand::seq::IndexedRandom;
use rand::Rng;

use super::follow::Follow;
use super::message::{Answer, MoveKind, Offer, Request, RequestId, StealAnswer};
use super::moves::{Move, Step};
use super::{Action, Entered, Handoff, Role, Stage, View};
use crate::LoadScore;

/// A steal this node asked for, until its answer comes or its time runs out.
#[derive(Debug)]
pub(crate) struct Asked {
    pub(crate) request: RequestId,
    /// When the core gives up waiting for the answer.
    pub(crate) until: Instant,
    /// The peer asked.
    victim: NodeId,
    /// The peers that answered empty in this row of asks (the victim not yet among them).
    empty: Vec<NodeId>,
}

impl Handoff {
    /// This node has a free slot and an empty queue: ask a busy peer for one of its queued
    /// jobs — of two peers drawn among those the map shows alive, taking work and with jobs
    /// queued, the one with the longer queue (with the `cpu` [`LoadScore`], the higher score). One steal at a time; nothing while leaving.
    ///
    /// An answer [`StealAnswer::Empty`] brings the peer's report of itself, which goes to the
    /// shell to merge ([`Action::News`]); and while this node is still idle (as
    /// [`View::own`](super::View::own) shows it when the answer is handled) it asks another
    /// peer at once, up to [`HandoffConfig::steal_retries`](super::HandoffConfig::steal_retries)
    /// times in a row, never one that answered empty in the same row.
    pub fn handle_idle<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R, view: &View<'_>) {
        if self.steal.is_some() {
            return;
        }
        self.ask_for_work(now, rng, view, Vec::new());
    }

    /// Asks a busy peer not in `empty` for a job; `false` if the map shows none.
    fn ask_for_work<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        empty: Vec<NodeId>,
    ) -> bool {
        if self.leaving {
            return false;
        }
        let me = &self.config.node;
        let busy: Vec<_> = view
            .map
            .iter()
            .filter(|e| {
                let r = e.report();
                r.node != *me && e.takes_work() && r.load.queued > 0 && !empty.contains(&r.node)
            })
            .collect();
        let two = busy.choose_multiple(rng, 2);
        let victim = match self.placer.config().load_score {
            LoadScore::Slots => two.max_by_key(|e| e.report().load.queued),
            // The more loaded by the score placement uses: a saturated CPU counts too.
            LoadScore::Cpu => two.max_by(|a, b| {
                let s = |e: &&&hearsay_shared::Entry| LoadScore::Cpu.score(&e.report().load, 0);
                s(a).total_cmp(&s(b))
            }),
        };
        let Some(victim) = victim else {
            return false;
        };
        let report = victim.report();
        let request = RequestId(self.next());
        self.steal = Some(Asked {
            request,
            until: now + self.config.ask_timeout,
            victim: report.node.clone(),
            empty,
        });
        self.stats.steals_asked += 1;
        self.actions.push_back(Action::Send {
            to: report.node.clone(),
            api: report.api,
            request,
            message: Request::Steal {
                incarnation: report.incarnation,
            },
        });
        true
    }

    pub(crate) fn steal_answered<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        asked: Asked,
        answer: Answer,
    ) {
        match answer {
            Answer::Steal(StealAnswer::Coming(_)) => self.stats.steals_granted += 1,
            Answer::Steal(StealAnswer::Empty { load }) => {
                self.stats.steals_empty += 1;
                // Only the peer asked speaks for itself.
                if let Some(report) = load.filter(|r| r.node == asked.victim) {
                    self.stats.steal_news += 1;
                    self.actions.push_back(Action::News { report: *report });
                }
                let own = view.own;
                let idle = own.queued == 0 && own.running < own.slots;
                if idle && asked.empty.len() < self.config.steal_retries as usize {
                    let mut empty = asked.empty;
                    empty.push(asked.victim);
                    if self.ask_for_work(now, rng, view, empty) {
                        self.stats.steals_again += 1;
                    }
                }
            }
            _ => {}
        }
    }

    /// A peer (`thief`, believing this node to be at `incarnation`) asks for a queued job.
    /// `newest` is the job the shell took out of its queue for it — the newest queued one,
    /// which would wait longest here; never a running one — or `None`. If the job cannot go
    /// (this node is leaving, the thief is unknown, the job may not move again), an
    /// [`Action::Requeue`] puts it back and the answer is [`StealAnswer::Empty`]; otherwise its
    /// [`Offer`] goes out to the thief.
    pub fn handle_steal(
        &mut self,
        now: Instant,
        view: &View<'_>,
        thief: &NodeId,
        incarnation: u64,
        newest: Option<JobId>,
    ) -> StealAnswer {
        let Some(id) = newest else {
            return StealAnswer::Empty { load: None };
        };
        match self.give(now, view, thief, incarnation, id, false) {
            Some(offer) => {
                self.stats.stolen_out += 1;
                let (api, to) = match self.jobs.get(&id).map(|j| &j.stage) {
                    Some(Stage::Moving(m)) => (m.api, m.to.clone()),
                    _ => unreachable!("give set the move"),
                };
                let timeout = self.config.offer_timeout;
                self.send(now, id, to, api, Request::Offer(offer), timeout);
                StealAnswer::Coming(id)
            }
            None => {
                self.actions.push_back(Action::Requeue { id });
                StealAnswer::Empty { load: None }
            }
        }
    }

    /// This node is leaving: offer queued job `id` (which the shell took out of its queue; it
    /// requires the command bits `requires`) to a peer, chosen by the placer among those
    /// that take work, so that the drain waits for the running jobs only. Settled as a steal:
    /// not taken, it comes back ([`Action::Requeue`]) to be tried again or run here. Returns
    /// whether an offer went out.
    pub fn handle_hand_over<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        id: JobId,
        requires: u64,
    ) -> bool {
        let me = self.config.node.clone();
        let target = self.placer.choose(
            &crate::PlacementRequest {
                map: view.map,
                me: &me,
                own: view.own,
                now,
                hops: 0,
                exclude: std::slice::from_ref(&me),
                requires,
            },
            false,
            rng,
        );
        let offer = match target {
            crate::Target::Peer { node, .. } => {
                let incarnation = self.config.incarnation;
                self.give(now, view, &node, incarnation, id, true)
            }
            _ => None,
        };
        let Some(offer) = offer else {
            self.actions.push_back(Action::Requeue { id });
            return false;
        };
        self.stats.handed_over += 1;
        let (api, to) = match self.jobs.get(&id).map(|j| &j.stage) {
            Some(Stage::Moving(m)) => (m.api, m.to.clone()),
            _ => unreachable!("give set the move"),
        };
        let timeout = self.config.offer_timeout;
        self.send(now, id, to, api, Request::Offer(offer), timeout);
        true
    }

    /// Sets up the move of queued job `id` to `thief`; `None` if it may not go (while this node
    /// leaves, only a hand-over goes).
    fn give(
        &mut self,
        now: Instant,
        view: &View<'_>,
        thief: &NodeId,
        incarnation: u64,
        id: JobId,
        hand_over: bool,
    ) -> Option<Offer> {
        if (self.leaving && !hand_over)
            || incarnation != self.config.incarnation
            || *thief == self.config.node
        {
            return None;
        }
        let report = view.map.get(thief)?.report();
        let held = self.held.get(id, now)?;
        if held.status != JobStatus::Queued || held.moved_to.is_some() {
            return None;
        }
        let mut path = held.path.clone();
        path.push(self.config.node.clone());
        let offer = Offer {
            id,
            entry: held.entry.clone(),
            incarnation: report.incarnation,
            kind: MoveKind::Steal,
            path,
        };
        if offer.moves() > self.config.max_moves {
            return None;
        }
        let m = Move::offered(
            thief.clone(),
            report.api,
            report.incarnation,
            MoveKind::Steal,
        );
        match self.jobs.get_mut(&id) {
            // Submitted here and queued here: this node is its entry node and keeps answering
            // for it.
            // (A job its client pinned here with `here_only` never moves.)
            Some(job) if matches!(job.stage, Stage::Here) && !job.here_only => {
                job.stage = Stage::Moving(m);
            }
            Some(_) => return None,
            None => {
                self.jobs.insert(
                    id,
                    Entered::placed(Role::Giver, Stage::Moving(m), offer.path.clone()),
                );
            }
        }
        Some(offer)
    }

    /// What a settled steal does (the asks in between are handled as for a forward).
    pub(crate) fn take_steal_step(
        &mut self,
        now: Instant,
        view: &View<'_>,
        id: JobId,
        m: Move,
        step: Step,
    ) {
        let role = self.jobs.get(&id).map(|j| j.role);
        let to = match &step {
            Step::Taken(_) | Step::Unconfirmed => Some(m.to.clone()),
            Step::MovedOn(node) => Some(node.clone()),
            _ => None,
        };
        match (step, to) {
            (step, Some(to)) => {
                self.held.moved(id, to.clone(), now);
                self.actions.push_back(Action::Moved { id, to });
                if role == Some(Role::Entry) {
                    match step {
                        Step::Taken(status) => {
                            let follow = Follow::new(m.to, m.api, m.incarnation, status);
                            self.follow_at(now, id, follow, None);
                        }
                        Step::MovedOn(node) => self.moved_to(now, view, id, node),
                        _ => {
                            self.stats.unconfirmed += 1;
                            let follow = Follow::new(m.to, m.api, m.incarnation, JobStatus::Queued);
                            self.follow_at(now, id, follow, None);
                        }
                    }
                } else {
                    self.forget(id);
                }
            }
            (Step::Lost(reason), None) => {
                // The thief restarted before it said whether it took the job: it may have.
                self.held.set(id, JobStatus::Lost, now);
                if role == Some(Role::Entry) {
                    let follow = Follow::new(m.to, m.api, m.incarnation, JobStatus::Lost);
                    self.follow_at(now, id, follow, Some(reason));
                } else {
                    self.forget(id);
                }
            }
            (_, None) => {
                // Not taken (refused, never sent, fenced; or invalid there): back in the queue.
                self.stats.offers_not_taken += 1;
                self.actions.push_back(Action::Requeue { id });
                match self.jobs.get_mut(&id) {
                    Some(job) if job.role == Role::Entry => job.stage = Stage::Here,
                    _ => {
                        self.forget(id);
                    }
                }
            }
        }
    }
}
