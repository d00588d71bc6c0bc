//! The entry node takes a submission: a key replayed or reused is answered at once, a fresh
//! job gets an id and is placed with the [`Placer`](crate::Placer) — here ([`Action::Run`]), on
//! a peer (an [`Offer`]), or nowhere (refused, with the reasons).

use std::time::Instant;

use hearsay_shared::{JobId, JobStatus, NodeId};
use rand::Rng;

use super::held::HeldJob;
use super::keys::KeyCheck;
use super::message::{MoveKind, Offer, Request};
use super::moves::Move;
use super::{
    Action, Entered, Handoff, Reply, Role, Stage, Submission, SubmitRefusal, Ticket, View,
};
use crate::{PlacementRequest, Target};

impl Handoff {
    /// A job is submitted here. Its [`Reply`] comes as an [`Action::Reply`] with the ticket
    /// returned, at once or once a peer answered.
    pub fn handle_submit<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        submission: Submission,
    ) -> Ticket {
        let ticket = Ticket(self.next());
        if self.leaving {
            self.reply(ticket, Reply::Refused(SubmitRefusal::Leaving));
            return ticket;
        }
        if let Some(keyed) = &submission.key {
            match self.keys.check(keyed, now) {
                KeyCheck::Fresh => {}
                KeyCheck::Reused => {
                    let key = keyed.key.clone();
                    self.reply(ticket, Reply::Refused(SubmitRefusal::KeyReused { key }));
                    return ticket;
                }
                KeyCheck::Names(id) => {
                    match self.jobs.get_mut(&id) {
                        // Still being placed: answered with the first submission.
                        Some(job) if !job.waiting.is_empty() => job.waiting.push(ticket),
                        _ => self.reply(ticket, Reply::Replayed { id }),
                    }
                    return ticket;
                }
            }
        }
        let id = loop {
            let id = JobId(rng.random());
            if !self.jobs.contains_key(&id) && self.held.get(id, now).is_none() {
                break id;
            }
        };
        if let Some(keyed) = &submission.key {
            self.keys.bind(keyed, id, now);
        }
        self.jobs.insert(
            id,
            Entered {
                role: Role::Entry,
                waiting: vec![ticket],
                key: submission.key.map(|k| k.key),
                requires: submission.requires,
                runs_here: submission.runs_here,
                here_only: submission.here_only,
                command: submission.command,
                excluded: Vec::new(),
                refusals: Vec::new(),
                offered_elsewhere: false,
                stage: Stage::Placing,
                request: None,
                timer: None,
                path: vec![self.config.node.clone()],
            },
        );
        self.place(now, rng, view, id);
        ticket
    }

    /// Places job `id` (in [`Stage::Placing`]) among the nodes not excluded.
    pub(super) fn place<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        rng: &mut R,
        view: &View<'_>,
        id: JobId,
    ) {
        let me = self.config.node.clone();
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.runs_here && !view.room && !job.excluded.contains(&me) {
            job.excluded.push(me.clone());
            job.refusals
                .push(format!("{me} (this node): its queue is full"));
        }
        let here = job.runs_here && view.room;
        let target = if job.here_only {
            if here {
                Target::Here
            } else {
                Target::Nowhere
            }
        } else {
            self.placer.choose(
                &PlacementRequest {
                    map: view.map,
                    me: &me,
                    own: view.own,
                    now,
                    hops: 0,
                    exclude: &job.excluded,
                    requires: job.requires,
                },
                here,
                rng,
            )
        };
        match target {
            Target::Here => {
                job.stage = Stage::Here;
                self.stats.placed_here += 1;
                self.held.take(
                    id,
                    HeldJob {
                        entry: me.clone(),
                        status: JobStatus::Queued,
                        path: Vec::new(),
                        moved_to: None,
                    },
                );
                self.actions.push_back(Action::Run {
                    id,
                    entry: me.clone(),
                    path: Vec::new(),
                });
                self.accepted(id, me, JobStatus::Queued);
            }
            Target::Peer { node, api } => {
                let incarnation = view.map.get(&node).map_or(0, |e| e.report().incarnation);
                let offer = Offer {
                    id,
                    entry: me,
                    incarnation,
                    kind: MoveKind::Forward,
                    path: job.path.clone(),
                };
                job.stage = Stage::Moving(Move::offered(
                    node.clone(),
                    api,
                    incarnation,
                    MoveKind::Forward,
                ));
                let timeout = self.config.offer_timeout;
                self.send(now, id, node, api, Request::Offer(offer), timeout);
            }
            Target::Nowhere => {
                let refusal = match (&job.command, job.runs_here, job.offered_elsewhere) {
                    (Some(command), false, false) => SubmitRefusal::UnknownCommand(command.clone()),
                    _ => SubmitRefusal::Nowhere {
                        refusals: std::mem::take(&mut job.refusals),
                    },
                };
                self.refuse(id, refusal);
            }
        }
    }

    /// The submission of `id` is refused: nothing runs, the key is free again.
    pub(super) fn refuse(&mut self, id: JobId, refusal: SubmitRefusal) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        self.stats.refused += 1;
        if let Some(key) = &job.key {
            self.keys.free(key, id);
        }
        if let Some(request) = job.request {
            self.requests.remove(&request);
        }
        for ticket in job.waiting {
            self.reply(ticket, Reply::Refused(refusal.clone()));
        }
    }

    /// Job `id` is taken by `at`: its submitters are told.
    pub(super) fn accepted(&mut self, id: JobId, at: NodeId, status: JobStatus) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        let mut waiting = std::mem::take(&mut job.waiting).into_iter();
        if let Some(first) = waiting.next() {
            self.reply(first, Reply::Accepted { id, at, status });
        }
        for ticket in waiting {
            self.reply(ticket, Reply::Replayed { id });
        }
    }
}
