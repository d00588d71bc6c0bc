//! `Idempotency-Key` on `POST /v1/jobs`: the same key answers with the same job, which runs
//! once, however often and however concurrently it is sent; a malformed key is a `400`.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::{cluster, http, leave_all, request, Http, PATIENCE};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde_json::{json, Value};

/// `POST /v1/jobs{query}` with an `Idempotency-Key`; returns the status, whether the answer says
/// it is a replay, and the JSON body.
async fn post_keyed(
    http: &Http,
    api: SocketAddr,
    query: &str,
    key: &str,
    job: &Value,
) -> (u16, bool, Value) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{api}/v1/jobs{query}"))
        .header("Idempotency-Key", key)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(job.to_string())))
        .unwrap();
    let exchange = async {
        let response = http.request(request).await.expect("an HTTP answer");
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("Idempotent-Replayed")
            .is_some_and(|v| v == "true");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&body).expect("a JSON answer");
        (status, replayed, body)
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("an answer in time")
}

/// How many jobs the node says it has run to an end, from `GET /metrics`.
async fn completed(http: &Http, api: SocketAddr) -> f64 {
    let answer = request(http, Method::GET, api, "/metrics", "").await;
    String::from_utf8_lossy(&answer.body)
        .lines()
        .filter(|l| l.starts_with("hearsay_jobs_completed_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_key_is_the_same_job_and_it_runs_once() {
    let nodes = cluster(&[1, 1, 1]).await;
    let http = http();
    let entry = nodes[0].api_addr();
    let job = json!({"kind": "sleep", "ms": 300});

    let (status, replayed, first) = post_keyed(&http, entry, "", "order-42", &job).await;
    assert_eq!(status, 202, "{first}");
    assert!(!replayed);
    let id = first["id"].as_str().unwrap().to_owned();

    // Sent again, and again many times at once, while it runs: the same job.
    let (status, replayed, again) = post_keyed(&http, entry, "", "order-42", &job).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["executing_node"], first["executing_node"]);
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let (http, job) = (http.clone(), job.clone());
            tokio::spawn(async move { post_keyed(&http, entry, "", "order-42", &job).await })
        })
        .collect();
    for racer in racing {
        let (status, _, body) = racer.await.unwrap();
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["id"].as_str(), Some(id.as_str()));
    }
    // With wait=true: the outcome of that same job.
    let (status, replayed, outcome) =
        post_keyed(&http, entry, "?wait=true", "order-42", &job).await;
    assert_eq!((status, replayed), (200, true), "{outcome}");
    assert_eq!(outcome["id"].as_str(), Some(id.as_str()));
    assert_eq!(outcome["status"], "succeeded");

    // Concurrent first submissions of a new key: one job among them all.
    let racing: Vec<_> = (0..8)
        .map(|_| {
            let (http, job) = (http.clone(), json!({"kind": "sleep", "ms": 50}));
            tokio::spawn(
                async move { post_keyed(&http, entry, "?wait=true", "batch-7", &job).await },
            )
        })
        .collect();
    let mut ids = Vec::new();
    for racer in racing {
        let (status, _, body) = racer.await.unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "succeeded");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one key, one job: {ids:?}");

    // Two jobs ran in the whole cluster, not 2 + 18.
    let mut ran = 0.0;
    for node in &nodes {
        ran += completed(&http, node.api_addr()).await;
    }
    assert_eq!(ran, 2.0, "jobs run across the cluster");

    // Another key is another job.
    let (status, replayed, other) = post_keyed(&http, entry, "", "order-43", &job).await;
    assert_eq!((status, replayed), (202, false));
    assert_ne!(other["id"], first["id"]);
    leave_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_key_is_a_400_naming_the_header() {
    let nodes = cluster(&[1]).await;
    let http = http();
    let job = json!({"kind": "sleep", "ms": 1});
    let too_long = "k".repeat(129);
    for key in ["", "two words", too_long.as_str(), "caf\u{e9}"] {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}/v1/jobs", nodes[0].api_addr()))
            .header("Idempotency-Key", key)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(job.to_string())))
            .unwrap();
        let response = http.request(request).await.expect("an answer");
        assert_eq!(response.status().as_u16(), 400, "{key:?}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["field"], "Idempotency-Key", "{key:?}: {body}");
    }
    assert_eq!(completed(&http, nodes[0].api_addr()).await, 0.0);
    leave_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_reused_with_another_body_is_a_422_naming_the_key_and_runs_nothing() {
    let nodes = cluster(&[1]).await;
    let http = http();
    let entry = nodes[0].api_addr();
    let job = json!({"kind": "sleep", "ms": 20});
    let (status, _, first) = post_keyed(&http, entry, "?wait=true", "order-7", &job).await;
    assert_eq!(status, 200, "{first}");

    // The same job spelled otherwise is the same job.
    let respelled = serde_json::from_str::<Value>(r#"{ "ms": 20, "kind": "sleep" }"#).unwrap();
    let (status, replayed, again) = post_keyed(&http, entry, "", "order-7", &respelled).await;
    assert_eq!((status, replayed), (202, true), "{again}");
    assert_eq!(again["id"], first["id"]);

    // Another body under the same key: refused, naming the key and the header.
    let other = json!({"kind": "sleep", "ms": 21});
    let (status, replayed, refused) = post_keyed(&http, entry, "", "order-7", &other).await;
    assert_eq!((status, replayed), (422, false), "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_reused");
    assert_eq!(refused["error"]["field"], "Idempotency-Key");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"order-7\""), "{message}");
    assert_eq!(completed(&http, entry).await, 1.0, "only the first job ran");
    leave_all(&nodes).await;
}
