//! One move of a job, as the node that gives it sees it: the offer, and — when the offer's
//! answer is lost — the questions that settle whether the peer took it.
//!
//! ```text
//!   Offered ──Accepted(s)──────────────────────────────▶ Taken(s)      follow it there
//!      │    ──Refused(r) / NotSent───────────────────────▶ NotTaken      place it elsewhere
//!      │    ──Refused(Invalid)───────────────────────────▶ Invalid       refuse the submission
//!      └──Unanswered──▶ Asking(0) ──Held(s)──────────────▶ Taken(s)
//!                          │      ──Moved(n)─────────────▶ MovedOn(n)    follow it at n
//!                          │      ──Unknown (now fenced)─▶ NotTaken      place it elsewhere
//!                          │      ──Restarted────────────▶ Lost          its earlier life may hold it
//!                          └──Unanswered/Busy/NotSent──▶ Asking(k+1) … after the last:
//!                                                        Unconfirmed    follow it there anyway
//! ```
//!
//! The one rule behind every arrow: the job goes to another node only after this peer said it
//! does not hold it and never will — a refusal, a request that never left, or an ask that
//! fenced the id off there. An answer that is merely missing never counts as "not taken".

use std::net::SocketAddr;
use std::time::Duration;

use hearsay_shared::{JobStatus, NodeId};

use super::message::{Answer, AskAnswer, MoveKind, OfferAnswer, Refusal};

/// Where a move stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The offer is out.
    Offered,
    /// The offer's answer was lost (`reason`); the `attempt`-th ask (from 0) is out or due.
    Asking { attempt: u32, reason: String },
}

/// A move in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Move {
    /// The peer offered the job.
    pub(crate) to: NodeId,
    /// Its API.
    pub(crate) api: SocketAddr,
    /// Its incarnation when the job was offered.
    pub(crate) incarnation: u64,
    /// A forward or a steal.
    pub(crate) kind: MoveKind,
    pub(crate) phase: Phase,
}

/// What an answer means for the move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The peer holds the job, which stands so: follow it there.
    Taken(JobStatus),
    /// The peer took the job and moved it on: follow it there.
    MovedOn(NodeId),
    /// The peer does not hold the job and never will: place it elsewhere. `counts` says
    /// whether the peer could have run it (not so for a command it turned out not to declare).
    NotTaken { reason: String, counts: bool },
    /// The job does not fit the command it names: the submission is refused.
    Invalid { field: String, reason: String },
    /// Ask the peer whether it holds the job, after `after`.
    Ask { after: Duration },
    /// The peer restarted before it said whether it took the job: its earlier life may have,
    /// so the job is not placed again; it is lost, for this reason.
    Lost(String),
    /// Every ask went unanswered: the peer may hold the job, so it is followed there (and
    /// reported lost if the peer turns out dead), never placed a second time.
    Unconfirmed,
}

impl Move {
    pub(crate) fn offered(to: NodeId, api: SocketAddr, incarnation: u64, kind: MoveKind) -> Self {
        Move {
            to,
            api,
            incarnation,
            kind,
            phase: Phase::Offered,
        }
    }

    /// Takes in the answer to the request outstanding: the offer, or the current ask.
    pub(crate) fn on_answer(&mut self, answer: Answer, attempts: u32, pause: Duration) -> Step {
        match &mut self.phase {
            Phase::Offered => match answer {
                Answer::Offer(OfferAnswer::Accepted(status)) => Step::Taken(status),
                Answer::Offer(OfferAnswer::Refused(Refusal::Invalid { field, reason })) => {
                    Step::Invalid { field, reason }
                }
                Answer::Offer(OfferAnswer::Refused(refusal @ Refusal::Undeclared(_))) => {
                    Step::NotTaken {
                        reason: refusal.to_string(),
                        counts: false,
                    }
                }
                Answer::Offer(OfferAnswer::Refused(refusal)) => Step::NotTaken {
                    reason: refusal.to_string(),
                    counts: true,
                },
                Answer::NotSent(reason) => Step::NotTaken {
                    reason: format!("unreachable: {reason}"),
                    counts: true,
                },
                // An ask's answer to an offer is not an answer to it: as good as none.
                Answer::Unanswered(_) | Answer::Ask(_) | Answer::Steal(_) => {
                    let reason = match answer {
                        Answer::Unanswered(reason) if !reason.is_empty() => reason,
                        Answer::Unanswered(_) => "no answer".into(),
                        _ => "the offer's answer did not make sense".into(),
                    };
                    self.phase = Phase::Asking { attempt: 0, reason };
                    Step::Ask {
                        after: Duration::ZERO,
                    }
                }
            },
            Phase::Asking { attempt, reason } => match answer {
                Answer::Ask(AskAnswer::Held(status)) => Step::Taken(status),
                Answer::Ask(AskAnswer::Moved(node)) => Step::MovedOn(node),
                Answer::Ask(AskAnswer::Unknown) => Step::NotTaken {
                    reason: format!(
                        "{reason}; it does not hold the job, which is fenced off there"
                    ),
                    counts: true,
                },
                Answer::Ask(AskAnswer::Restarted) => Step::Lost(format!(
                    "{reason}; then {} restarted, and whether it took the job before is unknown",
                    self.to
                )),
                Answer::Ask(AskAnswer::Busy)
                | Answer::Unanswered(_)
                | Answer::NotSent(_)
                | Answer::Offer(_)
                | Answer::Steal(_) => {
                    *attempt += 1;
                    if *attempt < attempts {
                        Step::Ask { after: pause }
                    } else {
                        Step::Unconfirmed
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered() -> Move {
        Move::offered(
            NodeId::new("b").unwrap(),
            "127.0.0.2:8080".parse().unwrap(),
            1,
            MoveKind::Forward,
        )
    }

    const PAUSE: Duration = Duration::from_millis(200);

    #[test]
    fn an_accepted_or_refused_offer_settles_the_move() {
        let accepted = Answer::Offer(OfferAnswer::Accepted(JobStatus::Running));
        assert_eq!(
            offered().on_answer(accepted, 3, PAUSE),
            Step::Taken(JobStatus::Running)
        );
        let full = Answer::Offer(OfferAnswer::Refused(Refusal::Full));
        assert!(matches!(
            offered().on_answer(full, 3, PAUSE),
            Step::NotTaken { counts: true, .. }
        ));
        let undeclared = Answer::Offer(OfferAnswer::Refused(Refusal::Undeclared("x".into())));
        assert!(matches!(
            offered().on_answer(undeclared, 3, PAUSE),
            Step::NotTaken { counts: false, .. }
        ));
        assert!(matches!(
            offered().on_answer(Answer::NotSent("refused".into()), 3, PAUSE),
            Step::NotTaken { counts: true, .. }
        ));
    }

    #[test]
    fn a_lost_answer_is_asked_after_and_never_taken_for_a_refusal() {
        let mut m = offered();
        assert_eq!(
            m.on_answer(Answer::Unanswered("timeout".into()), 3, PAUSE),
            Step::Ask {
                after: Duration::ZERO
            }
        );
        // Two asks unanswered or busy: ask again; the third: follow there unconfirmed.
        assert_eq!(
            m.on_answer(Answer::Unanswered("t".into()), 3, PAUSE),
            Step::Ask { after: PAUSE }
        );
        assert_eq!(
            m.on_answer(Answer::Ask(AskAnswer::Busy), 3, PAUSE),
            Step::Ask { after: PAUSE }
        );
        assert_eq!(
            m.on_answer(Answer::NotSent("t".into()), 3, PAUSE),
            Step::Unconfirmed
        );
    }

    #[test]
    fn an_ask_settles_a_lost_answer_either_way() {
        let mut held = offered();
        held.on_answer(Answer::Unanswered("timeout".into()), 3, PAUSE);
        assert_eq!(
            held.on_answer(Answer::Ask(AskAnswer::Held(JobStatus::Queued)), 3, PAUSE),
            Step::Taken(JobStatus::Queued)
        );
        let mut fenced = offered();
        fenced.on_answer(Answer::Unanswered("timeout".into()), 3, PAUSE);
        match fenced.on_answer(Answer::Ask(AskAnswer::Unknown), 3, PAUSE) {
            Step::NotTaken { reason, counts } => {
                assert!(counts);
                assert!(
                    reason.starts_with("timeout") && reason.contains("fenced"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
