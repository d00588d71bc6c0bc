//! Jobs this node forwarded to each peer since the report it holds of that peer.
//!
//! A peer's gossiped load is a little old; the jobs this node sent it meanwhile are not in it.
//! Counting them against the peer until its next report keeps one busy entry node from piling
//! work onto a peer that merely looked idle a moment ago.

use std::collections::HashMap;

use hearsay_shared::{NodeId, Version};

/// Forwards per peer, each tied to the report version they were counted against.
#[derive(Debug, Clone, Default)]
pub struct ForwardLedger {
    forwards: HashMap<NodeId, (Version, u32)>,
}

impl ForwardLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one job forwarded to `peer`, whose report held here has version `seen`.
    pub fn record(&mut self, peer: &NodeId, seen: Version) {
        let entry = self.forwards.entry(peer.clone()).or_insert((seen, 0));
        if entry.0 != seen {
            *entry = (seen, 0);
        }
        entry.1 += 1;
    }

    /// Jobs forwarded to `peer` that its report of version `current` does not yet show.
    pub fn pending(&self, peer: &NodeId, current: Version) -> u32 {
        match self.forwards.get(peer) {
            Some((seen, count)) if *seen >= current => *count,
            _ => 0,
        }
    }

    /// Forgets peers whose report has moved on, so the ledger holds only what still counts.
    pub fn prune(&mut self, current: impl Fn(&NodeId) -> Option<Version>) {
        self.forwards
            .retain(|peer, (seen, _)| current(peer).is_some_and(|v| v <= *seen));
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

    #[test]
    fn forwards_count_until_the_next_report() {
        let peer = NodeId::new("b").unwrap();
        let v1 = Version {
            incarnation: 1,
            seq: 10,
        };
        let v2 = Version {
            incarnation: 1,
            seq: 11,
        };
        let mut ledger = ForwardLedger::new();
        ledger.record(&peer, v1);
        ledger.record(&peer, v1);
        assert_eq!(ledger.pending(&peer, v1), 2);
        assert_eq!(ledger.pending(&peer, v2), 0, "a newer report includes them");
        ledger.prune(|_| Some(v2));
        assert!(ledger.is_empty());
    }
}
