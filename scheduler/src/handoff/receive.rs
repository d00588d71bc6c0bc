//! The node that runs jobs: it takes offers (or refuses them) and answers asks, from the
//! table of the jobs it holds ([`held`](super::held)) and the ids it fenced off
//! ([`fences`](super::fences)).
//!
//! The checks on an offer, in order: a job already held here is accepted again as it stands
//! (nothing new runs); a leaving node, an offer meant for another incarnation, a fenced id and
//! a job that has moved as often as it may are refused; then the shell's word on its executor
//! (room, the command, the args).

use std::time::Instant;

use hearsay_shared::{JobId, JobStatus};

use super::held::HeldJob;
use super::message::{AskAnswer, MoveKind, Offer, OfferAnswer, Refusal};
use super::{Action, Handoff, Stage};

impl Handoff {
    /// A job taken here ([`Action::Run`]) started.
    pub fn handle_started(&mut self, now: Instant, id: JobId) {
        self.held.set(id, JobStatus::Running, now);
    }

    /// A job taken here ([`Action::Run`]) ended so (`Lost`: the node abandoned it).
    pub fn handle_ended(&mut self, now: Instant, id: JobId, status: JobStatus) {
        if !self.held.set(id, status, now) || !status.is_terminal() {
            return;
        }
        if matches!(self.jobs.get(&id).map(|j| &j.stage), Some(Stage::Here)) {
            let reason = (status == JobStatus::Lost)
                .then(|| format!("{} left before it finished", self.config.node));
            self.settle(id, status, reason);
        }
    }

    /// A peer offers a job. `fit` is the shell's word on whether its executor can take it
    /// (room, the command declared, the args fitting); the core's own checks come first. On
    /// `Accepted`, an [`Action::Run`] follows.
    pub fn handle_offer(
        &mut self,
        now: Instant,
        offer: &Offer,
        fit: Result<(), Refusal>,
    ) -> OfferAnswer {
        let answer = self.judge_offer(now, offer, fit);
        match &answer {
            OfferAnswer::Accepted(_) => self.stats.offers_taken += 1,
            OfferAnswer::Refused(_) => self.stats.offers_refused += 1,
        }
        answer
    }

    fn judge_offer(
        &mut self,
        now: Instant,
        offer: &Offer,
        fit: Result<(), Refusal>,
    ) -> OfferAnswer {
        if let Some(job) = self.held.get(offer.id, now) {
            if job.moved_to.is_some() {
                // It moved on from here once: it does not come back.
                return OfferAnswer::Refused(Refusal::Other("the job moved on from here".into()));
            }
            // The same offer again: nothing new runs.
            return OfferAnswer::Accepted(job.status);
        }
        if self.leaving {
            return OfferAnswer::Refused(Refusal::Leaving);
        }
        if offer.incarnation != self.config.incarnation {
            return OfferAnswer::Refused(Refusal::WrongIncarnation);
        }
        if self.fences.holds(offer.id, now) {
            return OfferAnswer::Refused(Refusal::Fenced);
        }
        if offer.kind == MoveKind::Steal {
            self.stats.stolen_in += 1;
        }
        if offer.moves() > self.config.max_moves {
            return OfferAnswer::Refused(Refusal::TooManyMoves);
        }
        if let Err(refusal) = fit {
            return OfferAnswer::Refused(refusal);
        }
        self.held.take(
            offer.id,
            HeldJob {
                entry: offer.entry.clone(),
                status: JobStatus::Queued,
                path: offer.path.clone(),
                moved_to: None,
            },
        );
        self.actions.push_back(Action::Run {
            id: offer.id,
            entry: offer.entry.clone(),
            path: offer.path.clone(),
        });
        OfferAnswer::Accepted(JobStatus::Queued)
    }

    /// A peer asks how job `id` stands, believing it to be at this node's `incarnation`: as
    /// held here, or — if this node does not hold it — fenced off from now on, and unknown
    /// (or [`AskAnswer::Restarted`], if the asker meant an earlier incarnation, which may have
    /// taken it).
    pub fn handle_ask(&mut self, now: Instant, id: JobId, incarnation: u64) -> AskAnswer {
        if let Some(job) = self.held.get(id, now) {
            return match &job.moved_to {
                Some(to) => AskAnswer::Moved(to.clone()),
                None => AskAnswer::Held(job.status),
            };
        }
        self.fences.add(id, now);
        self.stats.fenced += 1;
        if incarnation < self.config.incarnation {
            AskAnswer::Restarted
        } else {
            AskAnswer::Unknown
        }
    }

    /// How job `id` stands here, if held: what a long poll is answered with when it ends,
    /// without fencing anything.
    pub fn status(&mut self, now: Instant, id: JobId) -> Option<JobStatus> {
        self.held.get(id, now).map(|j| j.status)
    }
}
