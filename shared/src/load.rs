//! What a node says of itself: its [`LoadVector`], wrapped in a versioned [`LoadReport`].

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// Whether a node takes work. A node that is shutting down says `Leaving` so that peers stop
/// choosing it at once instead of waiting for the failure detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Running and accepting jobs.
    Alive,
    /// Shutting down: finishing its work, accepting none.
    Leaving,
}

/// A node's load at one instant: a few integers, so that dozens fit in one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LoadVector {
    /// CPU use in per mille (0..=1000) of [`LoadVector::cpu_capacity_millicores`]: the node's
    /// cgroup's use against its quota when one limits it, else the whole machine's. The `cpu`
    /// load score (`hearsay_scheduler::LoadScore::Cpu`) counts a saturated node as more loaded.
    pub cpu_permille: u16,
    /// The CPU the node may use, in millicores: its cgroup's quota over period when one limits
    /// it, else its cores x 1000 (see [`crate::cgroup`]). 0 for unknown: a report of format
    /// version 1, from a build that did not measure it. Absent in JSON reads as 0.
    #[serde(default)]
    pub cpu_capacity_millicores: u32,
    /// Jobs waiting in the node's queue.
    pub queued: u32,
    /// Jobs running in the node's slots.
    pub running: u32,
    /// How many jobs the node runs at once.
    pub slots: u32,
    /// Whether the node takes work.
    pub state: NodeState,
    /// The commands it offers for `exec` jobs, as a Bloom filter of their names (see
    /// [`crate::offers`]); 0 for none. 16 hex digits in JSON.
    #[serde(with = "crate::offers::serde_bits")]
    pub commands: u64,
}

impl LoadVector {
    /// An idle, alive node with `slots` slots, offering no command.
    pub fn idle(slots: u32) -> Self {
        LoadVector {
            cpu_permille: 0,
            cpu_capacity_millicores: 0,
            queued: 0,
            running: 0,
            slots,
            state: NodeState::Alive,
            commands: 0,
        }
    }
}

/// A report's place in time: a newer incarnation always wins, and within one incarnation a
/// higher sequence number wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Version {
    /// Grows on every start of the node.
    pub incarnation: u64,
    /// Grows with every sample the node takes within one incarnation.
    pub seq: u64,
}

/// One node's report of its own load, as gossiped.
///
/// Reports of the same node are totally ordered: by [`Version`] first, and (for two reports that
/// claim the same version, which an honest node never sends) by their contents, so that merging
/// is deterministic whatever the order of arrival. The derived `Ord` gives exactly that order
/// because the fields are declared in that order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LoadReport {
    /// Who reports.
    pub node: NodeId,
    /// The reporter's incarnation.
    pub incarnation: u64,
    /// The reporter's sample number within this incarnation.
    pub seq: u64,
    /// The load it reports.
    pub load: LoadVector,
    /// Where its HTTP API listens.
    pub api: SocketAddr,
    /// Where its gossip socket listens.
    pub gossip: SocketAddr,
}

impl LoadReport {
    /// The report's version.
    pub fn version(&self) -> Version {
        Version {
            incarnation: self.incarnation,
            seq: self.seq,
        }
    }

    /// Whether `self` wins over `other`, a report of the same node.
    pub fn supersedes(&self, other: &LoadReport) -> bool {
        // The derived order with the node (equal here) left out: it is compared on every report
        // merged, and comparing the version first spares a string comparison.
        let key = |r: &LoadReport| (r.version(), r.load, r.api, r.gossip);
        key(self) > key(other)
    }
}
