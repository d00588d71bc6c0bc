//! Jobs this node forwarded to each peer that the peer's reports may not show yet.
//!
//! A peer's gossiped load is a little old; the jobs this node sent it meanwhile are not in it.
//! Counting them against the peer until a report arrives that was surely sampled after the
//! forward keeps one busy entry node from piling work onto a peer that merely looked idle a
//! moment ago.
//!
//! Which report is that? The one held here when forwarding, of version `(i, s)`, was `age` old,
//! and the peer samples once per gossip interval, so by the time of the forward it had taken up
//! to `ceil(age / interval)` more samples; the first sample surely taken after the forward has
//! `seq = s + ceil(age / interval) + 1`. A report of that version or newer includes the job. (A
//! report that arrives after a hop of relaying may be older than it looks, which is exactly why
//! the next report alone is not trusted to include the job.)

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use hearsay_shared::{NodeId, Version};

/// Pending forwards per peer: how many will be included from which report version on. Forwards
/// made between two reports share a version, so each peer holds a handful of counted runs.
#[derive(Debug, Clone, Default)]
pub struct ForwardLedger {
    forwards: HashMap<NodeId, VecDeque<(Version, u32)>>,
}

/// Most runs remembered per peer; beyond this the oldest are forgotten (they are long since in
/// the peer's reports unless the peer stopped reporting, and then it is not chosen anyway).
const MAX_RUNS_PER_PEER: usize = 64;

impl ForwardLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one job forwarded to `peer`, whose report held here has version `seen` and is
    /// `age` old, given that the peer takes a sample every `interval`.
    pub fn record(&mut self, peer: &NodeId, seen: Version, age: Duration, interval: Duration) {
        let behind = if interval.is_zero() {
            0
        } else {
            age.as_nanos().div_ceil(interval.as_nanos()) as u64
        };
        let includes = Version {
            incarnation: seen.incarnation,
            seq: seen.seq.saturating_add(behind).saturating_add(1),
        };
        let pending = self.forwards.entry(peer.clone()).or_default();
        // What the held report already includes is no longer pending.
        pending.retain(|(earlier, _)| *earlier > seen);
        match pending.back_mut() {
            Some((last, count)) if *last == includes => *count += 1,
            _ => {
                if pending.len() == MAX_RUNS_PER_PEER {
                    pending.pop_front();
                }
                pending.push_back((includes, 1));
            }
        }
    }

    /// Jobs forwarded to `peer` that its report of version `current` does not yet show.
    pub fn pending(&self, peer: &NodeId, current: Version) -> u32 {
        self.forwards.get(peer).map_or(0, |pending| {
            pending
                .iter()
                .filter(|(includes, _)| *includes > current)
                .map(|(_, count)| count)
                .sum()
        })
    }

    /// Forgets the forwards that reports have caught up with (`current` gives each peer's report
    /// version now, `None` for a peer no longer in the map).
    pub fn prune(&mut self, current: impl Fn(&NodeId) -> Option<Version>) {
        self.forwards.retain(|peer, pending| {
            let Some(now) = current(peer) else {
                return false;
            };
            pending.retain(|(includes, _)| *includes > now);
            !pending.is_empty()
        });
    }

    /// Number of peers with forwards pending.
    pub fn len(&self) -> usize {
        self.forwards.len()
    }

    /// Whether no forwards are pending.
    pub fn is_empty(&self) -> bool {
        self.forwards.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(seq: u64) -> Version {
        Version {
            incarnation: 1,
            seq,
        }
    }

    #[test]
    fn a_forward_counts_until_a_report_surely_sampled_after_it() {
        let peer = NodeId::new("b").unwrap();
        let interval = Duration::from_millis(200);
        let mut ledger = ForwardLedger::new();
        // Held report 10, fresh: report 11 may have been sampled just before the forward.
        ledger.record(&peer, v(10), Duration::ZERO, interval);
        // Held report 10, 300 ms old: the peer may be at 12 already.
        ledger.record(&peer, v(10), Duration::from_millis(300), interval);
        assert_eq!(ledger.pending(&peer, v(10)), 2);
        assert_eq!(ledger.pending(&peer, v(11)), 1);
        assert_eq!(ledger.pending(&peer, v(12)), 1);
        assert_eq!(ledger.pending(&peer, v(13)), 0);
        ledger.prune(|_| Some(v(11)));
        assert_eq!(ledger.len(), 1);
        ledger.prune(|_| Some(v(13)));
        assert!(ledger.is_empty());
        // A restart (higher incarnation) includes everything.
        ledger.record(&peer, v(10), Duration::ZERO, interval);
        let restarted = Version {
            incarnation: 2,
            seq: 0,
        };
        assert_eq!(ledger.pending(&peer, restarted), 0);
    }
}
