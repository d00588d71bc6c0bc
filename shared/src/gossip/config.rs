//! How a node gossips: the settings, their defaults and their checks.

use std::net::SocketAddr;
use std::time::Duration;

use crate::detector::DetectorConfig;
use crate::wire;
use crate::NodeId;

/// How a node gossips.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// This node.
    pub node: NodeId,
    /// Where this node's HTTP API listens (carried in its reports).
    pub api: SocketAddr,
    /// Where this node's gossip socket listens (carried in its reports).
    pub gossip: SocketAddr,
    /// Time between rounds.
    pub interval: Duration,
    /// Peers pushed to each round.
    pub fanout: usize,
    /// Largest datagram, in bytes.
    pub budget: usize,
    /// Most reports relayed in one push besides the node's own.
    pub relay_per_push: usize,
    /// How many pushes carry one version of a report before it is no longer news to relay.
    pub retransmits: u32,
    /// Rounds between anti-entropy digest exchanges.
    pub pushpull_every: u32,
    /// Rounds between datagrams to a dead node or a seed.
    pub probe_every: u32,
    /// Most push datagrams sent in answer to one digest.
    pub max_answer_datagrams: usize,
    /// The failure detector's settings.
    pub detector: DetectorConfig,
    /// The most nodes the map holds, this one included (see [`LoadMap`] for the eviction rule).
    ///
    /// [`LoadMap`]: crate::LoadMap
    pub max_nodes: usize,
}

impl GossipConfig {
    /// Defaults for a node: 200 ms rounds, fanout 3, 1400-byte datagrams.
    pub fn new(node: NodeId, api: SocketAddr, gossip: SocketAddr) -> Self {
        GossipConfig {
            node,
            api,
            gossip,
            interval: Duration::from_millis(200),
            fanout: 3,
            budget: wire::DEFAULT_BUDGET,
            // Few relays and frequent digest exchanges, measured with the simulation
            // (`gossip-sim`): at the same bandwidth at 20 nodes (about 6 kB/s a node) a digest
            // exchange every 2 rounds spreads heartbeats more evenly than rumours do (8 relays
            // and an exchange every 5 rounds had a crash detected by all 20 peers later, and
            // left silences half as long again at 100 nodes, where false deaths hide).
            relay_per_push: 4,
            retransmits: 3,
            pushpull_every: 2,
            probe_every: 5,
            max_answer_datagrams: 4,
            detector: DetectorConfig::default(),
            max_nodes: crate::map::DEFAULT_MAX_NODES,
        }
    }

    /// Checks the settings; the error names the setting and why it is refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: String| Err(ConfigError { field, reason });
        if self.interval < Duration::from_millis(10) || self.interval > Duration::from_secs(60) {
            return bad("interval", "must be between 10 ms and 60 s".into());
        }
        if self.fanout == 0 || self.fanout > 64 {
            return bad("fanout", "must be between 1 and 64".into());
        }
        if self.budget < wire::MIN_BUDGET || self.budget > wire::MAX_DATAGRAM {
            return bad(
                "budget",
                format!(
                    "must be between {} and {} bytes",
                    wire::MIN_BUDGET,
                    wire::MAX_DATAGRAM
                ),
            );
        }
        if self.max_nodes < 2 {
            return bad("max_nodes", "must be at least 2".into());
        }
        if self.pushpull_every == 0 || self.probe_every == 0 {
            return bad("pushpull_every/probe_every", "must be at least 1".into());
        }
        Ok(())
    }
}

/// A setting that [`GossipConfig::validate`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gossip setting {field}: {reason}")]
pub struct ConfigError {
    /// The setting.
    pub field: &'static str,
    /// Why it is refused.
    pub reason: String,
}
