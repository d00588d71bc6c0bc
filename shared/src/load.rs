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
    /// The jobs that ended on the node so far, by how they ended. A report of format version 2
    /// or older carries none (all 0); absent in JSON reads as 0 too.
    #[serde(default)]
    pub ended: JobTally,
    /// How long the jobs that ended on the node lately took, from arrival to end. A report of
    /// format version 3 or older carries none (no jobs); absent in JSON reads the same.
    #[serde(default)]
    pub sojourn: SojournSummary,
    /// The part of [`LoadVector::cpu_permille`] that is not the worker's own: what other
    /// processes in its cgroup (or on its machine) used, in per mille of the capacity. The `cpu`
    /// load score reads it as competition for the CPU that the node's jobs must share. A report
    /// of format version 4 or older carries none (0); absent in JSON reads as 0 too.
    #[serde(default)]
    pub cpu_outside_permille: u16,
}

/// The sojourn times of the jobs that ended on a node within its last
/// [`SojournSummary::WINDOW_MS`]: how many, their median and their 99th percentile. Every
/// node gossips its own, so any node can bound the cluster's: the p99 of all those jobs
/// together is at most the largest node's p99 (each node has at most 1% above its own), and
/// their median lies between the smallest and the largest node's median.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct SojournSummary {
    /// Jobs that ended in the window (0: the percentiles mean nothing).
    pub jobs: u32,
    /// Their median sojourn, in ms.
    pub p50_ms: u32,
    /// Their 99th percentile sojourn, in ms.
    pub p99_ms: u32,
}

impl SojournSummary {
    /// The window a node summarises: its last 10 seconds.
    pub const WINDOW_MS: u64 = 10_000;

    /// The summary of `sojourns` (ms, in any order; nearest-rank percentiles).
    pub fn of(sojourns: &mut [u32]) -> Self {
        sojourns.sort_unstable();
        match (nearest_rank(sojourns, 50), nearest_rank(sojourns, 99)) {
            (Some(p50_ms), Some(p99_ms)) => SojournSummary {
                jobs: u32::try_from(sojourns.len()).unwrap_or(u32::MAX),
                p50_ms,
                p99_ms,
            },
            _ => SojournSummary::default(),
        }
    }
}

/// The `p`th percentile (nearest rank) of `sorted` values; `None` for no values.
pub fn nearest_rank(sorted: &[u32], p: usize) -> Option<u32> {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// How many jobs a node has ended since it started, by how they ended: counters that only
/// grow within one incarnation (a restarted node counts from 0 again, under a new
/// incarnation). A reader turns two reports of one incarnation into rates, and sums the
/// nodes' rates into the cluster's throughput; no node has to be asked.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct JobTally {
    /// Jobs that ran here and succeeded.
    pub completed: u64,
    /// Jobs that ran here and failed or timed out.
    pub failed: u64,
    /// Jobs this node answered for and settled `lost` (their node died with them).
    pub lost: u64,
}

impl JobTally {
    /// How much each count grew since `before` (a count that went down, which it cannot
    /// within one incarnation, grew by none).
    pub fn since(self, before: JobTally) -> JobTally {
        JobTally {
            completed: self.completed.saturating_sub(before.completed),
            failed: self.failed.saturating_sub(before.failed),
            lost: self.lost.saturating_sub(before.lost),
        }
    }
}

impl std::ops::Add for JobTally {
    type Output = JobTally;

    fn add(self, other: JobTally) -> JobTally {
        JobTally {
            completed: self.completed.saturating_add(other.completed),
            failed: self.failed.saturating_add(other.failed),
            lost: self.lost.saturating_add(other.lost),
        }
    }
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
            ended: JobTally::default(),
            sojourn: SojournSummary::default(),
            cpu_outside_permille: 0,
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

#[cfg(test)]
mod tests {
    use super::SojournSummary;

    #[test]
    fn a_summary_takes_nearest_rank_percentiles() {
        assert_eq!(SojournSummary::of(&mut []), SojournSummary::default());
        let mut one = [42];
        let s = SojournSummary::of(&mut one);
        assert_eq!((s.jobs, s.p50_ms, s.p99_ms), (1, 42, 42));
        let mut hundred: Vec<u32> = (1..=100).rev().collect();
        let s = SojournSummary::of(&mut hundred);
        assert_eq!((s.jobs, s.p50_ms, s.p99_ms), (100, 50, 99));
    }
}
