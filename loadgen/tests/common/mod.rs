//! Helpers shared by the end-to-end tests: in-process worker nodes on loopback, the loadgen
//! binary, scratch directories.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use hearsay_scheduler::Policy;
use hearsay_shared::{NodeId, Verdict};
use hearsay_worker::config::Seeds;
use hearsay_worker::{Config, Node, NodeHandle};

/// `n` in-process nodes on 127.0.0.1 with OS-chosen ports, one slot each, joined through the
/// first; returns once every node sees every node alive (or panics after 10 s).
pub async fn start_nodes(n: usize, policy: Policy) -> Vec<NodeHandle> {
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for i in 0..n {
        let seeds = nodes
            .first()
            .map_or_else(Vec::new, |f| vec![f.gossip_addr()]);
        let config = Config {
            node_id: Some(NodeId::new(format!("t{i}")).unwrap()),
            seeds: Seeds::addresses(seeds),
            slots: Some(1),
            policy,
            gossip_interval: 50,
            seed: Some(i as u64),
            ..Config::loopback()
        };
        nodes.push(Node::start(config).await.expect("node starts"));
    }
    for _ in 0..200 {
        let converged = nodes.iter().all(|node| {
            let view = node.cluster();
            view.nodes.len() == n && view.nodes.iter().all(|e| e.state == Verdict::Alive)
        });
        if converged {
            return nodes;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the in-process cluster did not converge in 10 s");
}

/// The nodes' HTTP addresses, comma-separated.
pub fn targets(nodes: &[NodeHandle]) -> String {
    nodes
        .iter()
        .map(|n| format!("http://{}", n.api_addr()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Stops the nodes without waiting for a drain.
pub fn kill_all(nodes: &[NodeHandle]) {
    for node in nodes {
        node.kill();
    }
}

/// Runs the loadgen binary with `args` (off the async runtime, so in-process nodes keep
/// serving), bounded by 120 s.
pub async fn loadgen(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_loadgen"))
            .args(&args)
            .env_remove("HEARSAY_WORKER_BIN")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("loadgen starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            if std::time::Instant::now() > deadline {
                child.kill().ok();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().expect("output")
    })
    .await
    .expect("the loadgen task")
}

/// A fresh scratch directory, removed on drop.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "hearsay-loadgen-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}
