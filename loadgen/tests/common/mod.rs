//! Helpers shared by the end-to-end tests: in-process worker nodes on loopback (from the test
//! kit, `hearsay-testkit`), the loadgen binary, scratch directories.

#![allow(dead_code, unused_imports)] // each test file uses a part

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use hearsay_scheduler::Policy;
use hearsay_shared::NodeId;
use hearsay_testkit::inproc::cluster_of;
pub use hearsay_testkit::inproc::kill_all;
use hearsay_worker::{Config, NodeHandle};

/// `n` in-process nodes on 127.0.0.1 with OS-chosen ports, one slot each, joined through the
/// first; returns once every node sees every node alive (the kit's convergence wait).
pub async fn start_nodes(n: usize, policy: Policy) -> Vec<NodeHandle> {
    let configs = (0..n)
        .map(|i| Config {
            node_id: Some(NodeId::new(format!("t{i}")).unwrap()),
            slots: Some(1),
            policy,
            gossip_interval: 50,
            seed: Some(i as u64),
            ..Config::loopback()
        })
        .collect();
    cluster_of(configs).await
}

/// The nodes' HTTP addresses, comma-separated.
pub fn targets(nodes: &[NodeHandle]) -> String {
    nodes
        .iter()
        .map(|n| format!("http://{}", n.api_addr()))
        .collect::<Vec<_>>()
        .join(",")
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
