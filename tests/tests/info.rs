//! `GET /v1/info` on real `worker` processes on loopback, started with a cluster key and an API
//! token: the body says what the node is (version, id, the incarnation its peers know it by,
//! the addresses it listens on and tells) and the settings in effect, and neither secret is in
//! it — not the key, not the token. Without the token it is a `401`, as every guarded path is.

use std::path::Path;

use anyhow::{Context as _, Result};
use hearsay_testkit::PATIENCE;
use hearsay_tests::cluster::{
    get_text_with, incarnation_of, wait_until, WorkerProcess, WorkerSpec,
};
use serde_json::Value;

/// A cluster key (64 hexadecimal digits) and a token, written where the workers read them.
const KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e7a11b";
const TOKEN: &str = "info-test-token-b4c9e0";

fn guarded(id: &str, seeds: Vec<std::net::SocketAddr>, dir: &Path) -> WorkerSpec {
    let mut spec = WorkerSpec::new(id, seeds);
    spec.args = [
        "--cluster-key-file",
        &dir.join("keys").display().to_string(),
        "--api-token-file",
        &dir.join("token").display().to_string(),
        "--queue-limit",
        "77",
        "--load-score",
        "cpu",
    ]
    .map(String::from)
    .to_vec();
    spec
}

/// `GET path` with the token: the body, as text and as JSON.
fn get(node: &WorkerProcess, path: &str) -> Result<(String, Value)> {
    let auth = format!("Bearer {TOKEN}");
    let (status, text) = get_text_with(node.spec.api(), path, &[("Authorization", &auth)])?;
    anyhow::ensure!(status == 200, "GET {path}: {status} {text}");
    let json = serde_json::from_str(&text).with_context(|| format!("GET {path}: {text}"))?;
    Ok((text, json))
}

#[test]
fn info_says_what_a_node_is_and_keeps_its_secrets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("keys"), format!("{KEY}\n"))?;
    std::fs::write(dir.path().join("token"), format!("{TOKEN}\n"))?;
    let first = WorkerProcess::start(guarded("i1", vec![], dir.path()))?;
    let second = WorkerProcess::start(guarded("i2", vec![first.spec.gossip()], dir.path()))?;
    wait_until(PATIENCE, || {
        Ok(get_text_with(first.spec.api(), "/healthz", &[]).is_ok_and(|(s, _)| s == 200))
    })?;

    let (status, refused) = get_text_with(first.spec.api(), "/v1/info", &[])?;
    assert_eq!(status, 401, "{refused}");

    let (text, info) = get(&first, "/v1/info")?;
    assert!(
        !text.contains(KEY),
        "the cluster key is in /v1/info: {text}"
    );
    assert!(
        !text.contains(TOKEN),
        "the API token is in /v1/info: {text}"
    );
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"), "{info}");
    assert_eq!(info["node_id"], "i1");
    let api = first.spec.api().to_string();
    let gossip = first.spec.gossip().to_string();
    assert_eq!(info["listen"]["api"], api.as_str());
    assert_eq!(info["listen"]["gossip"], gossip.as_str());
    assert_eq!(info["advertise"]["api"], api.as_str());
    let config = &info["config"];
    assert_eq!(config["slots"], 1);
    assert_eq!(config["queue_limit"], 77);
    assert_eq!(config["load_score"], "cpu");
    assert_eq!(config["api_token"], "redacted");
    assert_eq!(config["data_dir"], "none", "{config}");
    let primary = config["cluster_keys"]["primary"]
        .as_str()
        .context("no key id")?;
    assert_eq!(primary.len(), 8, "a key id is 4 bytes in hex: {primary}");
    assert!(info["uptime_ms"].is_u64(), "{info}");
    let time = info["incarnation_time"]
        .as_str()
        .context("no incarnation_time")?;
    assert!(time.starts_with("20") && time.ends_with('Z'), "{time}");

    // The incarnation is the one its peer knows it by (once the peer has heard it).
    let incarnation = info["incarnation"].as_u64().context("no incarnation")?;
    wait_until(PATIENCE, || {
        let (_, view) = get(&second, "/v1/cluster")?;
        Ok(incarnation_of(&view, "i1") == Some(incarnation))
    })?;
    Ok(())
}
