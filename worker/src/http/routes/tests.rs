//! The routes answered end to end, through [`route`]: the checks every request passes first,
//! the routing (`404`, `405` with `Allow`), and a few answers, on one node that has no peer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hearsay_scheduler::handoff::HandoffConfig;
use hearsay_scheduler::Policy;
use hearsay_shared::{Gossip, GossipConfig, LoadVector, NodeId};
use http_body_util::BodyExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::http::limits::Admission;
use crate::jobs::slots::Executor;
use crate::jobs::store::{JobStore, Retention};
use crate::metrics::{Format, Metrics};

fn state() -> ApiState {
    let node = NodeId::new("n").unwrap();
    let config = GossipConfig::new(
        node.clone(),
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    );
    let gossip = Gossip::new(config, 1, LoadVector::idle(1), vec![], Instant::now()).unwrap();
    let gossip = SharedGossip::new(gossip);
    let store = Arc::new(JobStore::new(Retention {
        time: Duration::from_secs(60),
        jobs: 10,
        ..Retention::default()
    }));
    let metrics = Metrics::new();
    let executor = Executor::new(
        node,
        1,
        1,
        store.clone(),
        metrics.clone(),
        TaskTracker::new(),
    );
    let jobs = Dispatcher::new(
        gossip.clone(),
        executor.clone(),
        store,
        metrics.clone(),
        HandoffConfig::new(NodeId::new("n").unwrap(), 1),
        None,
        StdRng::seed_from_u64(1),
        None,
        &TaskTracker::new(),
    );
    let stream = ClusterStream::new(
        gossip.clone(),
        metrics.clone(),
        Policy::P2c,
        Duration::from_millis(200),
        None,
        CancellationToken::new(),
        TaskTracker::new(),
    );
    let exposition = metrics.registry(gossip.clone(), Arc::new(executor), 1);
    ApiState {
        gossip,
        jobs,
        stream,
        metrics: Arc::new(exposition),
        token: None,
        waits: WaitLimiter::new(2),
        connections: ConnectionLimiter::new(crate::http::limits::ConnectionLimits {
            total: 8,
            per_client: 4,
        }),
        body: BodyLimits::default(),
        hosts: Arc::new(HostNames::new(
            "127.0.0.1".parse().unwrap(),
            None,
            &Default::default(),
        )),
        info: Arc::new(ServerInfo::new(
            &crate::config::Config::default(),
            crate::http::info::Resolved {
                id: &NodeId::new("n").unwrap(),
                incarnation: 1,
                seed: 1,
                slots: 1,
                data_path: None,
                keyring: None,
                connections: crate::http::limits::ConnectionLimits {
                    total: 10,
                    per_client: 10,
                },
                commands: &[],
            },
            crate::http::info::Addresses {
                listen_api: "127.0.0.1:1".parse().unwrap(),
                listen_gossip: "127.0.0.1:2".parse().unwrap(),
                advertise_api: "127.0.0.1:1".parse().unwrap(),
                advertise_gossip: "127.0.0.1:2".parse().unwrap(),
            },
        )),
        history: SharedHistory::new(Duration::from_millis(200)),
        shutdown: CancellationToken::new(),
    }
}

/// A request as a well-behaved client sends it: `Host`, and a JSON body type on a POST.
async fn call(
    state: &ApiState,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut headers = vec![("host", "127.0.0.1:8080")];
    if method == Method::POST {
        headers.push(("content-type", "application/json"));
    }
    call_with(state, method, path, &headers, body).await
}

async fn call_with(
    state: &ApiState,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Option<String>, serde_json::Value) {
    let mut req = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let response = route(req, state).await;
    assert_eq!(
        response.headers()[CONTENT_TYPE],
        "application/json",
        "every answer is JSON"
    );
    let status = response.status();
    let allow = response
        .headers()
        .get(ALLOW)
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, allow, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn healthz_is_ok() {
    let (status, _, body) = call(&state(), Method::GET, "/healthz", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"status": "ok"}));
}

#[tokio::test]
async fn healthz_says_when_connections_were_refused() {
    let state = state();
    let ip = "127.0.0.1".parse().unwrap();
    let now = tokio::time::Instant::now();
    let held: Vec<_> = (0..4).map(|_| state.connections.admit(ip, now)).collect();
    assert!(matches!(
        state.connections.admit(ip, now),
        Admission::Refused { .. }
    ));
    let (status, _, body) = call(&state, Method::GET, "/healthz", "").await;
    assert_eq!(status, StatusCode::OK, "a busy node is alive");
    assert_eq!(body["status"], "refusing_connections");
    assert_eq!(body["connections"]["open"], 4);
    assert_eq!(body["connections"]["max_per_client"], 4);
    assert_eq!(body["connections"]["refused"], 1);
    drop(held);
}

#[tokio::test]
async fn cluster_lists_this_node() {
    let (status, _, body) = call(&state(), Method::GET, "/v1/cluster", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["node"], "n");
    assert_eq!(body["nodes"][0]["id"], "n");
    assert_eq!(body["nodes"][0]["state"], "alive");
}

#[tokio::test]
async fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
    let state = state();
    let (status, allow, body) = call(&state, Method::GET, "/nope", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(allow, None);
    assert_eq!(body["error"]["code"], "not_found");

    let (status, allow, body) = call(&state, Method::POST, "/v1/cluster", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(allow.as_deref(), Some("GET, HEAD"));
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert!(body["error"]["message"].as_str().unwrap().contains("POST"));

    let (status, allow, _) = call(&state, Method::DELETE, "/v1/jobs", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(allow.as_deref(), Some("GET, HEAD, POST"));
    let (status, allow, _) = call(&state, Method::PUT, "/v1/jobs/0000000000000001", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(allow.as_deref(), Some("GET, HEAD, DELETE"));
    let (status, allow, _) = call(&state, Method::GET, "/v1/drain", "").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(allow.as_deref(), Some("POST"));
    let (status, _, _) = call(&state, Method::GET, "/v1/jobs/0000000000000001/x", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_job_submitted_alone_runs_here() {
    let state = state();
    let (status, _, body) = call(
        &state,
        Method::POST,
        "/v1/jobs?wait=true",
        r#"{"kind":"echo","data":"hello"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["output"], "hello");
    assert_eq!(body["executing_node"], "n");
    assert_eq!(body["hops"], 0);
    let id = body["id"].as_str().unwrap();
    let (status, _, again) = call(&state, Method::GET, &format!("/v1/jobs/{id}"), "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, body);
}

#[tokio::test]
async fn a_long_body_without_a_length_is_cut_at_the_limit() {
    // A request built here has no Content-Length: only the limited read can catch it.
    let body = "x".repeat(crate::http::job_routes::MAX_BODY + 1);
    let (status, _, answer) = call(&state(), Method::POST, "/v1/jobs", &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"]["field"], "body");
}

/// Whether the node took any job: its submissions counter.
fn submitted(state: &ApiState) -> bool {
    state
        .metrics
        .encode(Format::Text)
        .lines()
        .any(|l| l.starts_with("hearsay_jobs_submitted_total") && !l.ends_with(" 0"))
}

#[tokio::test]
async fn a_page_s_requests_are_refused_before_a_job_is_taken() {
    let state = state();
    let job = r#"{"kind":"sleep","ms":1}"#;
    let host = ("host", "127.0.0.1:8080");
    type Headers<'a> = &'a [(&'a str, &'a str)];
    let cases: [(Headers, StatusCode, &str, &str); 6] = [
        (
            &[host, ("content-type", "text/plain")],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type",
        ),
        (
            &[host],
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type",
        ),
        (
            &[
                ("host", "evil.example:8080"),
                ("content-type", "application/json"),
            ],
            StatusCode::MISDIRECTED_REQUEST,
            "unknown_host",
            "Host",
        ),
        (
            &[("content-type", "application/json")],
            StatusCode::BAD_REQUEST,
            "invalid_host",
            "Host",
        ),
        (
            &[
                host,
                ("content-type", "application/json"),
                ("origin", "http://evil.example"),
            ],
            StatusCode::FORBIDDEN,
            "cross_origin",
            "Origin",
        ),
        (
            &[
                host,
                ("content-type", "application/json"),
                ("origin", "null"),
            ],
            StatusCode::FORBIDDEN,
            "cross_origin",
            "Origin",
        ),
    ];
    for (headers, status, code, field) in cases {
        let (got, _, body) =
            call_with(&state, Method::POST, "/v1/jobs?wait=true", headers, job).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{headers:?}: {body}"
        );
        assert_eq!(body["error"]["field"], field);
    }
    assert!(!submitted(&state), "no job was taken");
    // The node's own page may.
    let own = [
        host,
        ("content-type", "application/json; charset=utf-8"),
        ("origin", "http://127.0.0.1:8080"),
    ];
    let (status, _, body) = call_with(&state, Method::POST, "/v1/jobs?wait=true", &own, job).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(submitted(&state));
}

#[tokio::test]
async fn a_duplicate_key_is_a_400_naming_it() {
    let state = state();
    for (body, field) in [
        (
            r#"{"kind":"echo","data":"x","kind":"sleep","ms":1}"#,
            "kind",
        ),
        (
            r#"{"kind":"exec","command":"c","args":[{"a":1,"a":2}]}"#,
            "args[0].a",
        ),
    ] {
        let (status, _, answer) = call(&state, Method::POST, "/v1/jobs", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_eq!(answer["error"]["code"], "duplicate_key");
        assert_eq!(answer["error"]["field"], field);
    }
    assert!(!submitted(&state));
}
