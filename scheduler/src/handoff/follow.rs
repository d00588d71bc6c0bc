//! Following a job that a peer holds, as its entry node does until the job ends, so that it
//! can answer for it.
//!
//! The entry node asks the peer (a long poll, which fences the id off there if the peer does
//! not hold it) again and again until the answer is an end. It gives up — the job is `lost`,
//! "may or may not have run", never "ran twice" — when:
//! - the map judges the peer dead, or shows a later incarnation of it (which knows nothing of
//!   the job);
//! - the peer answers that it does not hold the job (and has fenced it off);
//! - [`FollowLimits::failures`] asks in a row go unanswered, or one does while the map shows
//!   the peer as left (or no longer shows it).
//!
//! A peer busy answering this node's other questions is asked again after
//! [`FollowLimits::busy_pause`]; an unanswered ask is repeated after a backoff that doubles
//! from [`FollowLimits::backoff`].

use std::net::SocketAddr;
use std::time::Duration;

use hearsay_shared::{JobStatus, NodeId, Verdict};

use super::message::{Answer, AskAnswer};

/// When a follower gives up, and how it paces its questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowLimits {
    /// Unanswered asks in a row after which a peer the map still shows alive is taken for dead.
    pub failures: u32,
    /// The pause after the first unanswered ask; it doubles with every further one.
    pub backoff: Duration,
    /// The pause after a `Busy` answer.
    pub busy_pause: Duration,
    /// How long one ask may take (a long poll: the peer's hold and a margin).
    pub timeout: Duration,
}

impl Default for FollowLimits {
    fn default() -> Self {
        FollowLimits {
            failures: 3,
            backoff: Duration::from_millis(100),
            busy_pause: Duration::from_secs(1),
            timeout: Duration::from_secs(15),
        }
    }
}

/// What the map says of the peer that holds a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Alive or suspect: keep asking.
    Present,
    /// Left, or dropped from the map: keep asking while it answers.
    Left,
    /// Judged dead.
    Dead,
    /// Back as a later incarnation, which does not know the job.
    Restarted,
}

impl Fate {
    /// The fate of a peer that took a job as `known`, from its map entry: `None` if absent.
    pub(crate) fn of(entry: Option<(Verdict, u64)>, known: u64) -> Fate {
        match entry {
            None => Fate::Left,
            Some((_, incarnation)) if incarnation > known => Fate::Restarted,
            Some((Verdict::Alive | Verdict::Suspect, _)) => Fate::Present,
            Some((Verdict::Left, _)) => Fate::Left,
            Some((Verdict::Dead, _)) => Fate::Dead,
        }
    }
}

/// A job followed at a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Follow {
    pub(crate) at: NodeId,
    pub(crate) api: SocketAddr,
    /// The peer's incarnation when it took the job.
    pub(crate) incarnation: u64,
    /// How the job stands, as last learned.
    pub(crate) status: JobStatus,
    failures: u32,
    left: bool,
}

/// What the follower does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FollowStep {
    /// Ask again after `after`; `learned` is a new status to record.
    Ask {
        after: Duration,
        learned: Option<JobStatus>,
    },
    /// The job ended so.
    Ended(JobStatus),
    /// The job is lost, for this reason.
    Lost(String),
    /// The peer moved the job on to this node: follow it there.
    MovedTo(NodeId),
}

impl Follow {
    pub(crate) fn new(at: NodeId, api: SocketAddr, incarnation: u64, status: JobStatus) -> Self {
        Follow {
            at,
            api,
            incarnation,
            status,
            failures: 0,
            left: false,
        }
    }

    /// Takes in the answer to the ask outstanding.
    pub(crate) fn on_answer(&mut self, answer: Answer, limits: &FollowLimits) -> FollowStep {
        match answer {
            Answer::Ask(AskAnswer::Held(status)) if status.is_terminal() => FollowStep::Ended(status),
            Answer::Ask(AskAnswer::Held(status)) => {
                self.failures = 0;
                let learned = (status != self.status).then_some(status);
                self.status = status;
                FollowStep::Ask {
                    after: Duration::ZERO,
                    learned,
                }
            }
            Answer::Ask(AskAnswer::Moved(node)) => FollowStep::MovedTo(node),
            Answer::Ask(AskAnswer::Unknown) => FollowStep::Lost(format!(
                "executing node {} does not hold the job (it restarted, or never took it); the job is fenced off there and will not run there",
                self.at
            )),
            Answer::Ask(AskAnswer::Restarted) => FollowStep::Lost(format!(
                "executing node {} restarted before finishing",
                self.at
            )),
            Answer::Ask(AskAnswer::Busy) => FollowStep::Ask {
                after: limits.busy_pause,
                learned: None,
            },
            Answer::Unanswered(reason) | Answer::NotSent(reason) => {
                self.failures += 1;
                if self.left {
                    return FollowStep::Lost(format!(
                        "executing node {} left before finishing ({reason})",
                        self.at
                    ));
                }
                if self.failures >= limits.failures {
                    return FollowStep::Lost(format!(
                        "executing node {} stopped answering (it did not answer {} asks in a row: {reason}); the job may have finished there",
                        self.at, limits.failures
                    ));
                }
                FollowStep::Ask {
                    after: limits.backoff * 2u32.saturating_pow(self.failures - 1),
                    learned: None,
                }
            }
            // An offer's or a steal's answer to an ask is no answer to it.
            Answer::Offer(_) | Answer::Steal(_) => self.on_answer(Answer::Unanswered("a confused answer".into()), limits),
        }
    }

    /// Takes in what the map says of the peer; `Some(reason)` if the job is lost.
    pub(crate) fn on_fate(&mut self, fate: Fate) -> Option<String> {
        self.left = fate == Fate::Left;
        match fate {
            // Dead is the failure detector's verdict: the peer may be frozen or cut off rather
            // than gone, and may finish the job yet.
            Fate::Dead => Some(format!(
                "executing node {} stopped answering (this node judged it dead); the job may have finished there",
                self.at
            )),
            Fate::Restarted => Some(format!(
                "executing node {} restarted before finishing",
                self.at
            )),
            Fate::Present | Fate::Left => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow() -> Follow {
        Follow::new(
            NodeId::new("b").unwrap(),
            "127.0.0.2:8080".parse().unwrap(),
            5,
            JobStatus::Queued,
        )
    }

    #[test]
    fn the_map_decides_dead_restarted_left_or_present() {
        assert_eq!(Fate::of(Some((Verdict::Alive, 5)), 5), Fate::Present);
        assert_eq!(Fate::of(Some((Verdict::Suspect, 5)), 5), Fate::Present);
        assert_eq!(Fate::of(Some((Verdict::Dead, 5)), 5), Fate::Dead);
        assert_eq!(Fate::of(Some((Verdict::Alive, 6)), 5), Fate::Restarted);
        assert_eq!(Fate::of(Some((Verdict::Left, 5)), 5), Fate::Left);
        assert_eq!(Fate::of(None, 5), Fate::Left);
        let mut f = follow();
        assert!(f.on_fate(Fate::Present).is_none());
        assert!(f.on_fate(Fate::Dead).unwrap().contains("stopped answering"));
        assert!(f.on_fate(Fate::Restarted).unwrap().contains("restarted"));
    }

    #[test]
    fn three_unanswered_asks_in_a_row_lose_the_job_with_backoff_between() {
        let limits = FollowLimits::default();
        let mut f = follow();
        let t = |r: &str| Answer::Unanswered(r.into());
        assert_eq!(
            f.on_answer(t("a"), &limits),
            FollowStep::Ask {
                after: Duration::from_millis(100),
                learned: None
            }
        );
        assert_eq!(
            f.on_answer(t("b"), &limits),
            FollowStep::Ask {
                after: Duration::from_millis(200),
                learned: None
            }
        );
        // An answer in between starts the count again.
        let running = Answer::Ask(AskAnswer::Held(JobStatus::Running));
        assert_eq!(
            f.on_answer(running.clone(), &limits),
            FollowStep::Ask {
                after: Duration::ZERO,
                learned: Some(JobStatus::Running)
            }
        );
        assert_eq!(
            f.on_answer(running, &limits),
            FollowStep::Ask {
                after: Duration::ZERO,
                learned: None
            }
        );
        f.on_answer(t("a"), &limits);
        f.on_answer(t("b"), &limits);
        match f.on_answer(t("c"), &limits) {
            FollowStep::Lost(reason) => {
                assert!(
                    reason.contains("stopped answering") && reason.contains('c'),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_left_peer_is_given_up_at_the_first_failure_and_an_end_or_unknown_settles() {
        let limits = FollowLimits::default();
        let mut f = follow();
        f.on_fate(Fate::Left);
        assert!(
            matches!(f.on_answer(Answer::Unanswered("x".into()), &limits), FollowStep::Lost(r) if r.contains("left"))
        );
        let mut f = follow();
        assert_eq!(
            f.on_answer(Answer::Ask(AskAnswer::Held(JobStatus::Succeeded)), &limits),
            FollowStep::Ended(JobStatus::Succeeded)
        );
        assert!(
            matches!(f.on_answer(Answer::Ask(AskAnswer::Unknown), &limits), FollowStep::Lost(r) if r.contains("fenced"))
        );
        assert_eq!(
            f.on_answer(Answer::Ask(AskAnswer::Busy), &limits),
            FollowStep::Ask {
                after: limits.busy_pause,
                learned: None
            }
        );
    }
}
