//! What the shell and the core hand each other: the [`View`] of the cluster and the
//! [`Submission`] that go in, the [`Action`]s and [`Reply`]s that come out.

use std::net::SocketAddr;

use hearsay_shared::{JobId, JobStatus, LoadMap, LoadReport, LoadVector, NodeId};

use super::keys::Keyed;
use super::message::{Request, RequestId};

/// What an event is decided from: the cluster as this node sees it.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The gossiped load map.
    pub map: &'a LoadMap,
    /// This node's exact load now (its executor's), not its last report.
    pub own: LoadVector,
    /// Whether this node's executor takes one more job now. The shell checks it and carries
    /// out the [`Action::Run`] that may follow under one lock, so that it holds.
    pub room: bool,
}

/// A job submitted to this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submission {
    /// Its idempotency key, if it came with one.
    pub key: Option<Keyed>,
    /// The command bits a node must offer ([`hearsay_shared::offers::command_bits`]); 0 for none.
    pub requires: u64,
    /// Whether this node may run it (it declares the job's command and the args fit; the shell
    /// refuses a job invalid here before submitting it).
    pub runs_here: bool,
    /// The command an `exec` job names, to say so when no node declares it.
    pub command: Option<String>,
    /// Run it here or nowhere: no placement (a client that placed the job itself, as
    /// loadgen's baselines do).
    pub here_only: bool,
}

/// Names one submission, so that its [`Reply`] finds the submitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// What a submitter is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The job was taken: it is at `at`, in this state (`202`).
    Accepted {
        /// Its id.
        id: JobId,
        /// The node that holds it.
        at: NodeId,
        /// How it stands there.
        status: JobStatus,
    },
    /// The idempotency key names this job already, submitted with the same body: nothing new
    /// runs; the shell answers with the job as it stands.
    Replayed {
        /// The job the key names.
        id: JobId,
    },
    /// The job was not taken. Nothing was recorded and nothing runs.
    Refused(SubmitRefusal),
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitRefusal {
    /// No node takes the job: `refusals` says who refused or could not be reached and why;
    /// empty, no node qualified at all (`503`).
    #[error("no node in reach can take the job{}", describe(refusals))]
    Nowhere {
        /// `node: reason`, one per node tried.
        refusals: Vec<String>,
    },
    /// No node in reach declares the command the `exec` job names (`400`).
    #[error("command: no node in reach declares the command {0:?}")]
    UnknownCommand(String),
    /// The `exec` job's args do not fit its command on the node that declares it (`400`).
    #[error("{field}: {reason}")]
    Invalid {
        /// `args` or `args[i]`.
        field: String,
        /// Why.
        reason: String,
    },
    /// This node is leaving (`503`).
    #[error("this node is leaving and takes no new jobs")]
    Leaving,
    /// The idempotency key names a job submitted with another body (`422`).
    #[error("Idempotency-Key: {key:?} was used with another body")]
    KeyReused {
        /// The key.
        key: String,
    },
}

fn describe(refusals: &[String]) -> String {
    if refusals.is_empty() {
        ": no node takes work that offers what the job requires".into()
    } else {
        format!(": {}", refusals.join("; "))
    }
}

/// What the core wants the shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Tell a submitter.
    Reply {
        /// The submission.
        ticket: Ticket,
        /// What to tell.
        reply: Reply,
    },
    /// Put the job in this node's executor (there was room, as [`View::room`] said).
    Run {
        /// The job.
        id: JobId,
        /// Its entry node.
        entry: NodeId,
        /// The nodes it was at before this one, entry first (empty if submitted here).
        path: Vec<NodeId>,
    },
    /// Send a request to a peer and bring back its [`Answer`](super::Answer) with
    /// [`Handoff::handle_answer`](super::Handoff::handle_answer). The core gives up waiting by itself after a while; an
    /// answer that comes later is ignored.
    Send {
        /// The peer.
        to: NodeId,
        /// Its API.
        api: SocketAddr,
        /// The request's name.
        request: RequestId,
        /// What to send. An [`Offer`](super::Offer) carries the job's spec, which the shell keeps for every
        /// job it submitted that is not yet placed.
        message: Request,
    },
    /// This node answers for job `id`, which `at` holds: record it (the entry node's record).
    Follow {
        /// The job.
        id: JobId,
        /// Where it is.
        at: NodeId,
        /// How it stands there.
        status: JobStatus,
    },
    /// The executing node says the job stands so: record what it said.
    Learned {
        /// The job.
        id: JobId,
        /// How it stands.
        status: JobStatus,
    },
    /// Put job `id` back at the end of this node's queue: the shell took it out for a steal
    /// ([`Handoff::handle_steal`](super::Handoff::handle_steal)) and the thief did not take it.
    Requeue {
        /// The job.
        id: JobId,
    },
    /// Job `id`, taken out of this node's queue for a steal, is now at `to`: questions waiting
    /// for its end here are answered where it went.
    Moved {
        /// The job.
        id: JobId,
        /// Where it went.
        to: NodeId,
    },
    /// A peer's report of itself came with its answer to this node's steal (it had no job
    /// to give): merge it into the gossip map as news, as if gossip had brought it
    /// (`hearsay_shared::Gossip::handle_report`), so that the next placement and the next
    /// steal see the peer as it is. The core checked that the report is of the peer asked.
    News {
        /// The report.
        report: LoadReport,
    },
    /// A job this node answers for has ended: emitted exactly once per job accepted here.
    Settled {
        /// The job.
        id: JobId,
        /// Its end.
        status: JobStatus,
        /// Why, for a job lost.
        reason: Option<String>,
        /// Where it went: entry first, the executing node last.
        path: Vec<NodeId>,
    },
}

/// Counters of what the core did, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HandoffStats {
    /// Jobs submitted here and placed here.
    pub placed_here: u64,
    /// Jobs submitted here that a peer took.
    pub forwarded: u64,
    /// Submissions refused.
    pub refused: u64,
    /// Offers a peer refused or that never left.
    pub offers_not_taken: u64,
    /// Offers whose answer was lost.
    pub offers_unanswered: u64,
    /// Jobs followed at a peer without its confirmation (every ask went unanswered).
    pub unconfirmed: u64,
    /// Jobs this node answers for that ended lost.
    pub lost: u64,
    /// Offers from peers taken here.
    pub offers_taken: u64,
    /// Offers from peers refused here.
    pub offers_refused: u64,
    /// Ids fenced off here.
    pub fenced: u64,
    /// Steals this node asked for.
    pub steals_asked: u64,
    /// Steals answered with a job.
    pub steals_granted: u64,
    /// Steals answered with none.
    pub steals_empty: u64,
    /// Steals asked of another peer at once after an empty answer (counted in
    /// `steals_asked` too).
    pub steals_again: u64,
    /// Reports of themselves that peers sent with an empty answer, handed to the shell to
    /// merge ([`Action::News`]).
    pub steal_news: u64,
    /// Jobs this node gave to a thief.
    pub stolen_out: u64,
    /// Queued jobs this node offered on as it left.
    pub handed_over: u64,
    /// Steal offers this node was made (taken or not).
    pub stolen_in: u64,
}
