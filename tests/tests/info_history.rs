//! `GET /v1/info` and `GET /v1/history` on real `worker` processes on loopback: the info names
//! the node and never the cluster key's text; after jobs ran, the history's series are not
//! empty, and a killed peer's death is on the timeline.
//!
//! Every node is dropped, and so killed, whatever the outcome; every wait is bounded.

use std::time::Duration;

use anyhow::{ensure, Result};
use hearsay_tests::cluster::{
    all_alive, get_json, get_text, post_json, wait_until, WorkerProcess, WorkerSpec,
};
use serde_json::json;

const JOIN_LIMIT: Duration = Duration::from_secs(20);
const DETECT_LIMIT: Duration = Duration::from_secs(20);

#[test]
fn info_redacts_the_key_and_history_shows_jobs_and_a_death() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("hearsay-info-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let key = "5e".repeat(32);
    let key_file = dir.join("key");
    std::fs::write(&key_file, format!("{key}\n"))?;
    let args = vec![
        "--cluster-key-file".to_owned(),
        key_file.display().to_string(),
    ];
    let spec = |id: &str, seeds| {
        let mut spec = WorkerSpec::new(id, seeds);
        spec.args = args.clone();
        spec
    };
    let first = spec("ih0", vec![]);
    let seed = first.gossip();
    let mut nodes = vec![WorkerProcess::start(first)?];
    nodes.push(WorkerProcess::start(spec("ih1", vec![seed]))?);
    nodes.push(WorkerProcess::start(spec("ih2", vec![seed]))?);
    wait_until(JOIN_LIMIT, || all_alive(&nodes.iter().collect::<Vec<_>>()))?;
    let api = nodes[0].spec.api();

    let (status, text) = get_text(api, "/v1/info")?;
    ensure!(status == 200, "GET /v1/info: {status} {text}");
    ensure!(
        !text.contains(&key),
        "the key's text is in /v1/info: {text}"
    );
    let info: serde_json::Value = serde_json::from_str(&text)?;
    ensure!(info["node_id"] == "ih0", "{info}");
    ensure!(
        info["config"]["cluster_keys"]["primary"].is_string(),
        "{info}"
    );
    ensure!(info["config"]["api_token"].is_null(), "{info}");
    ensure!(info["listen"]["api"] == api.to_string(), "{info}");
    ensure!(
        info["incarnation_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{info}"
    );

    for _ in 0..10 {
        let (status, body) = post_json(
            api,
            "/v1/jobs?wait=true&place=here",
            &json!({"kind": "sleep", "ms": 20}),
            &[],
            Duration::from_secs(10),
        )?;
        ensure!(status == 200, "a job: {status} {body}");
    }
    // The ring samples every interval: wait until a sample counted the jobs.
    wait_until(Duration::from_secs(10), || {
        let history = get_json(api, "/v1/history")?;
        let samples = history["samples"].as_array().cloned().unwrap_or_default();
        let completed = samples
            .iter()
            .any(|s| s["completed_per_s"].as_f64().is_some_and(|r| r > 0.0));
        let sojourn = samples
            .iter()
            .any(|s| s["sojourn_p50_ms"].as_u64().is_some_and(|ms| ms >= 20));
        let three = samples
            .iter()
            .any(|s| s["nodes"].as_array().is_some_and(|n| n.len() == 3));
        Ok(completed && sojourn && three)
    })?;

    let before = get_json(api, "/v1/history")?["now_ms"]
        .as_u64()
        .unwrap_or(0);
    nodes[2].kill();
    wait_until(DETECT_LIMIT, || {
        let history = get_json(api, &format!("/v1/history?since={before}"))?;
        let events = history["events"].as_array().cloned().unwrap_or_default();
        Ok(events
            .iter()
            .any(|e| e["node"] == "ih2" && e["kind"] == "died"))
    })?;
    let history = get_json(api, "/v1/history")?;
    let events = history["events"].as_array().cloned().unwrap_or_default();
    ensure!(
        events
            .iter()
            .any(|e| e["node"] == "ih1" && e["kind"] == "joined"),
        "the join of ih1 is on the timeline: {events:?}"
    );
    let (status, _) = get_text(api, "/v1/history?since=soon")?;
    ensure!(status == 400, "a bad since: {status}");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}
