//! What a node keeps of finished jobs, against a node started in-process on 127.0.0.1: outputs
//! bigger than `--max-output-bytes` are kept cut and flagged, and the outcomes kept stay within
//! `--retain-bytes`, the oldest forgotten first (then `GET /v1/jobs/{id}` is a 404, as for a job
//! forgotten by count or by age); and an entry node keeps the cut, flagged output of a job it
//! forwarded as the executing node gave it.
//!
//! Every wait is bounded by [`common::PATIENCE`]; nothing is asserted about how long anything
//! took.

mod common;

use common::{await_all_alive, config, http, leave_all, request, submit};
use hearsay_worker::Node;
use hyper::Method;
use serde_json::{json, Value};

/// The budget of the node under test, and the most text an output keeps there.
const RETAIN_BYTES: usize = 256 * 1024;
const MAX_OUTPUT_BYTES: usize = 16 * 1024;
/// Each job's output: over the cut, and more in all than the budget holds.
const DATA_BYTES: usize = 40 * 1024;
const JOBS: usize = 40;

/// A gauge's value in a `/metrics` text.
fn gauge(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
        .parse()
        .expect("a whole number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_outcomes_stay_within_the_byte_budget_oldest_forgotten_first() {
    let mut config = config(1, 1, 50);
    config.retain_bytes = RETAIN_BYTES;
    config.max_output_bytes = MAX_OUTPUT_BYTES;
    let node = Node::start(config).await.expect("start node");
    let api = node.api_addr();
    let http = http();

    let mut ids = Vec::new();
    for i in 0..JOBS {
        // Each job's data is its own, so an outcome cannot be mistaken for another's.
        let data = format!("{i:04}").repeat(DATA_BYTES / 4);
        let job = json!({"kind": "echo", "data": data});
        let outcome = submit(&http, api, "/v1/jobs?wait=true", &job).await;
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        let output = outcome["output"].as_str().expect("a string output");
        assert_eq!(output.len(), MAX_OUTPUT_BYTES, "kept cut");
        assert!(data.starts_with(output), "the start is kept");
        assert_eq!(outcome["output_truncated"], true, "and flagged");
        assert_eq!(outcome["output_original_bytes"], DATA_BYTES);
        ids.push(outcome["id"].as_str().expect("an id").to_owned());
    }

    let metrics = request(&http, Method::GET, api, "/metrics", "").await;
    let metrics = String::from_utf8(metrics.body.to_vec()).unwrap();
    let bytes = gauge(&metrics, "hearsay_jobs_retained_bytes");
    let outcomes = gauge(&metrics, "hearsay_jobs_retained");
    assert!(
        bytes <= RETAIN_BYTES as u64,
        "{bytes} bytes kept, over the budget of {RETAIN_BYTES}"
    );
    assert!(
        outcomes > 1 && (outcomes as usize) < JOBS,
        "{outcomes} outcomes kept of {JOBS}: some, not all"
    );
    // Each outcome takes more than its text: the gauge counts them honestly.
    assert!(
        bytes > outcomes * MAX_OUTPUT_BYTES as u64,
        "{bytes} for {outcomes}"
    );

    let mut kept = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let answer = request(&http, Method::GET, api, &format!("/v1/jobs/{id}"), "").await;
        let body: Value = serde_json::from_slice(&answer.body).expect("a JSON answer");
        match answer.status {
            200 => {
                assert_eq!(body["output_truncated"], true, "{body}");
                assert!(body["output"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{i:04}")));
                kept.push(i);
            }
            404 => assert_eq!(body["error"]["code"], "unknown_job", "{body}"),
            other => panic!("job {i}: {other} {body}"),
        }
    }
    // The oldest went first: what is kept is the newest, in one run to the last.
    let newest: Vec<usize> = (JOBS - kept.len()..JOBS).collect();
    assert_eq!(kept, newest, "kept {kept:?}");
    assert_eq!(kept.len() as u64, outcomes);

    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_node_keeps_the_flags_of_an_output_its_peer_cut() {
    let entry = Node::start(config(1, 1, 50)).await.expect("start node");
    let mut peer = config(2, 1, 50);
    peer.seeds.0 = vec![entry.gossip_addr()];
    peer.retain_bytes = RETAIN_BYTES;
    peer.max_output_bytes = MAX_OUTPUT_BYTES;
    let peer = Node::start(peer).await.expect("start node");
    let nodes = [entry, peer];
    await_all_alive(&nodes).await;
    let (entry, peer) = (&nodes[0], &nodes[1]);
    let http = http();
    let api = entry.api_addr();

    // The entry node's one slot is busy, so the echo goes to the peer, which cuts its output.
    let busy = submit(&http, api, "/v1/jobs", &json!({"kind":"sleep","ms":600000})).await;
    assert_eq!(busy["executing_node"], entry.id().as_str(), "{busy}");
    let data = "y".repeat(DATA_BYTES);
    let job = json!({"kind": "echo", "data": data});
    let outcome = submit(&http, api, "/v1/jobs?wait=true", &job).await;
    assert_eq!(outcome["executing_node"], peer.id().as_str(), "{outcome}");
    let id = outcome["id"].as_str().unwrap();
    let answer = request(&http, Method::GET, api, &format!("/v1/jobs/{id}"), "").await;
    let kept: Value = serde_json::from_slice(&answer.body).unwrap();
    for outcome in [&outcome, &kept] {
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        assert_eq!(outcome["hops"], 1);
        assert_eq!(outcome["output"].as_str().unwrap().len(), MAX_OUTPUT_BYTES);
        assert_eq!(outcome["output_truncated"], true);
        assert_eq!(outcome["output_original_bytes"], DATA_BYTES);
    }

    leave_all(&nodes).await;
}
