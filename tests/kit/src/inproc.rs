//! In-process nodes: `hearsay_worker::Node`s on the test's own runtime, on 127.0.0.1 with
//! OS-chosen ports. They end with the runtime, so a panicking test leaves none behind.

use std::time::Duration;

use hearsay_shared::Verdict;
use hearsay_worker::{Config, Node, NodeHandle};

use crate::PATIENCE;

/// A node's settings for tests: quick gossip, `slots` slots, a short drain.
pub fn config(seed: u64, slots: u32, gossip_interval_ms: u64) -> Config {
    let mut config = Config::loopback();
    config.gossip_interval = gossip_interval_ms;
    config.slots = Some(slots);
    config.seed = Some(seed);
    // Tests leave long jobs behind: the drain must not wait for them.
    config.drain_timeout = 200;
    config
}

/// Starts one node per config of `configs` (each after the first joining through the first),
/// and waits until each sees all of them alive.
pub async fn cluster_of(configs: Vec<Config>) -> Vec<NodeHandle> {
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for mut config in configs {
        if let Some(first) = nodes.first() {
            config.seeds.0 = vec![first.gossip_addr()];
        }
        nodes.push(Node::start(config).await.expect("start node"));
    }
    await_all_alive(&nodes).await;
    nodes
}

/// Starts one node per entry of `slots`, gossiping every 50 ms, and waits until each sees all
/// of them alive.
pub async fn cluster(slots: &[u32]) -> Vec<NodeHandle> {
    cluster_gossiping_every(slots, 50, None).await
}

/// [`cluster`], gossiping every `gossip_interval_ms`, the nodes named `{prefix}-1`, ... (or after
/// the host, if `prefix` is `None`).
pub async fn cluster_gossiping_every(
    slots: &[u32],
    gossip_interval_ms: u64,
    prefix: Option<&str>,
) -> Vec<NodeHandle> {
    let configs = slots
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let mut config = config(i as u64 + 1, n, gossip_interval_ms);
            if let Some(prefix) = prefix {
                config.node_id = Some(format!("{prefix}-{}", i + 1).parse().expect("a valid id"));
            }
            config
        })
        .collect();
    cluster_of(configs).await
}

/// Whether every one of `nodes` sees every one of them (itself included) alive, and no other.
pub fn all_alive(nodes: &[NodeHandle]) -> bool {
    nodes.iter().all(|node| {
        let view = node.cluster();
        view.nodes.len() == nodes.len() && view.nodes.iter().all(|v| v.state == Verdict::Alive)
    })
}

/// Waits (at most [`PATIENCE`]) until every node sees every one of `nodes` alive.
pub async fn await_all_alive(nodes: &[NodeHandle]) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !all_alive(nodes) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the nodes did not all see each other"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most [`PATIENCE`]) until `check` holds, polling every 10 ms; panics with `what`
/// if it does not.
pub async fn await_condition(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Leaves with every node and waits (bounded) until all have stopped.
pub async fn leave_all(nodes: &[NodeHandle]) {
    for node in nodes {
        node.shutdown();
    }
    for node in nodes {
        tokio::time::timeout(PATIENCE, node.join())
            .await
            .expect("the node stops in time");
    }
}

/// Stops the nodes without waiting for a drain.
pub fn kill_all(nodes: &[NodeHandle]) {
    for node in nodes {
        node.kill();
    }
}
