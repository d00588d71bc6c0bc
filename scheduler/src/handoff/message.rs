//! The vocabulary of moves between nodes: what one node asks another about a job, and what
//! it answers. Every move — a forward today, a steal or a leaving node's hand-over later — is
//! an [`Offer`] answered by an [`OfferAnswer`]; every doubt about where a job is, is an
//! [`Request::Ask`] answered by an [`AskAnswer`]. An ask always *fences*: a node asked after a
//! job it does not hold refuses that job from then on.
//!
//! The shell carries a [`Request`] to the peer (over HTTP in the worker, over the simulated
//! network in the tests) and brings back an [`Answer`]: the peer's, or what the transport can
//! say when there is none ([`Answer::NotSent`], [`Answer::Unanswered`]).

use std::fmt;

use hearsay_shared::{JobId, JobStatus, LoadReport, NodeId};

/// Names one request a [`Handoff`](super::Handoff) sent, so that its answer finds it. An
/// answer to a request the core no longer waits for (it timed out, or was superseded) is
/// ignored. Ids are unique within one core; a shell never brings a core the answers to an
/// earlier core's requests (over HTTP they come back on connections that died with it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Why a job moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MoveKind {
    /// The entry node places a job submitted to it on a peer.
    Forward,
    /// A node that holds a queued job hands it to an idle peer that asked for work.
    Steal,
}

/// A job offered to a peer: "take this job, which I hold and will not run".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The job.
    pub id: JobId,
    /// Its entry node, which answers for it.
    pub entry: NodeId,
    /// The incarnation of the peer the offer is meant for, as the giver's map shows it: a
    /// later incarnation (the peer restarted, and forgot what it fenced) refuses it.
    pub incarnation: u64,
    /// Why it moves.
    pub kind: MoveKind,
    /// The nodes the job has been at, entry first; the peer is not in it yet. Its length is
    /// the number of the move this offer would make (1 for a forward).
    pub path: Vec<NodeId>,
}

impl Offer {
    /// Which move this would be: 1 for the first.
    pub fn moves(&self) -> u32 {
        u32::try_from(self.path.len()).unwrap_or(u32::MAX)
    }
}

/// What one node asks another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Take this job.
    Offer(Offer),
    /// How does job `id` stand? If you do not hold it, fence it off (never take it from now
    /// on). With `wait`, the shell holds the question until the job ends or a while passes (a
    /// long poll); the core answers at once either way.
    Ask {
        /// The job.
        id: JobId,
        /// Whether the answer may wait for the job's end.
        wait: bool,
        /// The incarnation of the peer that the asker believes holds (or was offered) the job.
        incarnation: u64,
    },
    /// An idle node asks a busy peer for one of its queued jobs. The answer says whether an
    /// [`Offer`] (of [`MoveKind::Steal`]) follows.
    Steal {
        /// The incarnation of the peer asked, as the thief's map shows it.
        incarnation: u64,
    },
}

/// A busy peer's answer to a [`Request::Steal`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StealAnswer {
    /// No queued job for the thief. The thief's map showed jobs queued there, so it was
    /// stale: the answer carries the peer's report of itself as it answered, for the thief to
    /// merge into its map as fresh news ([`Action::News`](super::Action::News)).
    Empty {
        /// The peer's own report, published for this answer (newer than any it gossiped
        /// before); `None` if it sent none. The core, which holds no report of its own node,
        /// answers `None` ([`Handoff::handle_steal`](super::Handoff::handle_steal)); the
        /// shell fills it in from its gossip core before the answer leaves.
        /// Boxed: an answer is passed around often, a report seldom.
        load: Option<Box<LoadReport>>,
    },
    /// This job was taken out of the peer's queue; its offer follows.
    Coming(JobId),
}

/// Why a peer did not take an offered job. In every case it does not hold the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its queue is full.
    Full,
    /// It is leaving.
    Leaving,
    /// Its entry node asked after the job here before the offer arrived; it will never run here.
    Fenced,
    /// The job has moved as often as it may.
    TooManyMoves,
    /// The offer was meant for another incarnation of this node.
    WrongIncarnation,
    /// This node does not declare the command the `exec` job names (its gossiped command set
    /// gave a false positive, or its configuration changed).
    Undeclared(String),
    /// The `exec` job's args do not fit the command here: the whole submission is invalid.
    Invalid {
        /// `args` or `args[i]`.
        field: String,
        /// Why.
        reason: String,
    },
    /// Anything else the peer said (an HTTP error, say).
    Other(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Full => f.write_str("its queue is full"),
            Refusal::Leaving => f.write_str("it is leaving"),
            Refusal::Fenced => f.write_str("the job is fenced off there"),
            Refusal::TooManyMoves => f.write_str("the job has moved as often as it may"),
            Refusal::WrongIncarnation => {
                f.write_str("the offer was meant for an earlier start of it")
            }
            Refusal::Undeclared(reason) => write!(f, "it does not declare the command: {reason}"),
            Refusal::Invalid { field, reason } => write!(f, "{field}: {reason}"),
            Refusal::Other(reason) => f.write_str(reason),
        }
    }
}

/// A peer's answer to an [`Offer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferAnswer {
    /// It holds the job, which is now in this state.
    Accepted(JobStatus),
    /// It does not hold the job, and says why.
    Refused(Refusal),
}

/// A peer's answer to an [`Request::Ask`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskAnswer {
    /// It holds (or held) the job, which stands so.
    Held(JobStatus),
    /// It held the job and moved it on to this node.
    Moved(NodeId),
    /// It does not hold the job, and has fenced it off: the job will never run there.
    Unknown,
    /// It is a later incarnation than the one asked after: it does not hold the job (and has
    /// fenced it off), but its earlier life, which is gone, may have taken it.
    Restarted,
    /// It answers too many waiting questions of this node already: ask again later. Says
    /// nothing of the job, nor of the peer's health.
    Busy,
}

/// What the shell brings back for a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The peer's answer to an offer.
    Offer(OfferAnswer),
    /// The peer's answer to an ask.
    Ask(AskAnswer),
    /// The peer's answer to a steal.
    Steal(StealAnswer),
    /// The request never left (no connection): the peer certainly did not get it.
    NotSent(String),
    /// The request may have arrived, but no answer came (a broken connection, a timeout). The
    /// core also concludes this by itself when a request's time runs out.
    Unanswered(String),
}
