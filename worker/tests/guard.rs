//! The guarded API and the HTTP limits, on in-process nodes over real HTTP: the bearer token
//! (`--api-token-file`) on every endpoint but `/healthz` and the dashboard page, forwarding in a
//! guarded cluster, and the refusals — oversize body, too deep JSON, too many waits — each a
//! JSON error counted in `hearsay_http_requests_refused_total`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{config, http, leave_all, Http, PATIENCE};
use hearsay_worker::auth::ApiToken;
use hearsay_worker::{Node, NodeHandle};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "test-token-0123456789abcdef";

/// A whole answer with the headers that matter here.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    www_authenticate: Option<String>,
    retry_after: Option<String>,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

async fn call(
    http: &Http,
    method: Method,
    api: SocketAddr,
    path: &str,
    body: &str,
    authorization: Option<&str>,
) -> Answer {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(format!("http://{api}{path}"));
    if method == Method::POST {
        request = request.header("content-type", "application/json");
    }
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let exchange = async {
        let response = http.request(request).await.expect("an HTTP answer");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let status = response.status().as_u16();
        let content_type = header("content-type").unwrap_or_default();
        let www_authenticate = header("www-authenticate");
        let retry_after = header("retry-after");
        let body = if path == "/v1/cluster/stream" && status == 200 {
            // The stream never ends: its first frame is enough.
            let mut body = response.into_body();
            let frame = body.frame().await.unwrap().unwrap();
            frame.into_data().unwrap()
        } else {
            response.into_body().collect().await.unwrap().to_bytes()
        };
        Answer {
            status,
            content_type,
            www_authenticate,
            retry_after,
            body,
        }
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("an answer in time")
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// A node with the token and `slots` slots, joining `seed` if given.
async fn guarded_node(
    seed: u64,
    slots: u32,
    join: Option<SocketAddr>,
    max_waits: Option<usize>,
) -> NodeHandle {
    let mut config = config(seed, slots, 50);
    config.api_token = Some(ApiToken::new(TOKEN).unwrap());
    if let Some(max) = max_waits {
        config.max_waits_per_client = max;
    }
    if let Some(join) = join {
        config.seeds.0 = vec![join];
    }
    Node::start(config).await.expect("start node")
}

/// The value of `hearsay_http_requests_refused_total{reason=...}` at `api`.
async fn refused(http: &Http, api: SocketAddr, reason: &str) -> f64 {
    let answer = call(http, Method::GET, api, "/metrics", "", Some(&bearer())).await;
    assert_eq!(answer.status, 200);
    let text = String::from_utf8_lossy(&answer.body).into_owned();
    let series = format!("hearsay_http_requests_refused_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .unwrap_or_else(|| panic!("no {series} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_but_healthz_and_the_page_needs_the_token() {
    let node = guarded_node(1, 1, None, None).await;
    let api = node.api_addr();
    let http = http();
    let job = r#"{"kind":"echo","data":"hi"}"#;
    let guarded: [(Method, &str, &str); 8] = [
        (Method::GET, "/v1/cluster", ""),
        (Method::HEAD, "/v1/cluster", ""),
        (Method::GET, "/v1/cluster/stream", ""),
        (Method::GET, "/metrics", ""),
        (Method::POST, "/v1/jobs", job),
        (Method::POST, "/v1/jobs?wait=true", job),
        (Method::GET, "/v1/jobs/0000000000000001", ""),
        (Method::GET, "/no/such/path", ""),
    ];
    let wrong = format!("Bearer {TOKEN}x");
    let refusals = [
        None,
        Some(wrong.as_str()),
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
    ];
    let mut refused_here = 0.0;
    for (method, path, body) in &guarded {
        for authorization in refusals {
            let answer = call(&http, method.clone(), api, path, body, authorization).await;
            assert_eq!(answer.status, 401, "{method} {path} with {authorization:?}");
            assert_eq!(
                answer.www_authenticate.as_deref(),
                Some("Bearer realm=\"hearsay\""),
                "{method} {path}"
            );
            assert_eq!(answer.content_type, "application/json");
            if *method != Method::HEAD {
                assert_eq!(answer.code(), "unauthorized", "{method} {path}");
                let message = answer.json()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert!(!message.contains(TOKEN), "the token is never echoed");
            }
            refused_here += 1.0;
        }
    }
    assert_eq!(refused(&http, api, "unauthorized").await, refused_here);

    // Open without the token: liveness and the static page.
    let health = call(&http, Method::GET, api, "/healthz", "", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json(), json!({"status": "ok"}));
    let page = call(&http, Method::GET, api, "/", "", None).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type.starts_with("text/html"));

    // With it, everything works.
    let right = bearer();
    for (method, path, body, status) in [
        (Method::GET, "/v1/cluster", "", 200),
        (Method::GET, "/v1/cluster/stream", "", 200),
        (Method::GET, "/metrics", "", 200),
        (Method::POST, "/v1/jobs?wait=true", job, 200),
        (Method::GET, "/v1/jobs/0000000000000001", "", 404),
        (Method::GET, "/no/such/path", "", 404),
    ] {
        let answer = call(&http, method.clone(), api, path, body, Some(&right)).await;
        assert_eq!(answer.status, status, "{method} {path}: {answer:?}");
    }
    let lower = format!("bearer {TOKEN}");
    let answer = call(&http, Method::GET, api, "/v1/cluster", "", Some(&lower)).await;
    assert_eq!(answer.status, 200, "the scheme is case-insensitive");
    assert_eq!(
        refused(&http, api, "unauthorized").await,
        refused_here,
        "nothing more refused"
    );
    assert_eq!(refused(&http, api, "not_found").await, 2.0);
    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_cluster_forwards_and_follows_jobs_with_the_token() {
    let first = guarded_node(11, 1, None, None).await;
    let second = guarded_node(12, 1, Some(first.gossip_addr()), None).await;
    let third = guarded_node(13, 1, Some(first.gossip_addr()), None).await;
    let nodes = [first, second, third];
    common::await_all_alive(&nodes).await;
    let http = http();
    let entry = nodes[0].api_addr();
    // Six 300 ms jobs at once on three single-slot nodes: the entry node forwards some.
    let mut waits = Vec::new();
    for _ in 0..6 {
        let http = http.clone();
        waits.push(tokio::spawn(async move {
            let job = r#"{"kind":"sleep","ms":300}"#;
            call(
                &http,
                Method::POST,
                entry,
                "/v1/jobs?wait=true",
                job,
                Some(&bearer()),
            )
            .await
        }));
    }
    let mut elsewhere = 0;
    for wait in waits {
        let answer = wait.await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        let outcome = answer.json();
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        if outcome["executing_node"] != nodes[0].id().as_str() {
            elsewhere += 1;
            // Forwarded, and perhaps stolen once more by an idle node.
            assert!(matches!(outcome["hops"].as_u64(), Some(1 | 2)), "{outcome}");
        }
    }
    assert!(elsewhere > 0, "some jobs ran on the other nodes");
    for node in &nodes[1..] {
        assert_eq!(
            refused(&http, node.api_addr(), "unauthorized").await,
            0.0,
            "the entry node's offers and polls carry the token"
        );
    }
    leave_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_too_deep_bodies_are_refused_with_json() {
    let node = guarded_node(21, 1, None, None).await;
    let api = node.api_addr();
    let http = http();
    let auth = bearer();

    let big = format!(
        r#"{{"kind":"echo","data":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let answer = call(&http, Method::POST, api, "/v1/jobs", &big, Some(&auth)).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.code(), "body_too_large");
    assert_eq!(answer.json()["error"]["field"], "body");

    let nested = format!("{}{}", "[".repeat(40), "]".repeat(40));
    let deep = format!(r#"{{"kind":"echo","data":"x","extra":{nested}}}"#);
    let answer = call(&http, Method::POST, api, "/v1/jobs", &deep, Some(&auth)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.code(), "invalid_job");
    assert_eq!(answer.json()["error"]["field"], "body");
    assert!(
        answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deeper than 32"),
        "{answer:?}"
    );
    // serde_json alone would say "recursion limit exceeded" only past 128 levels.
    let deeper = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let answer = call(&http, Method::POST, api, "/v1/jobs", &deeper, Some(&auth)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"]["field"], "body");

    assert_eq!(refused(&http, api, "body_too_large").await, 1.0);
    assert_eq!(refused(&http, api, "invalid").await, 2.0);
    leave_all(&[node]).await;
}

/// Sends `POST /v1/jobs?wait=true` on a raw connection and returns it unread.
async fn open_wait(api: SocketAddr, job: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(api).await.unwrap();
    let request = format!(
        "POST /v1/jobs?wait=true HTTP/1.1\r\nhost: {api}\r\nauthorization: Bearer {TOKEN}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{job}",
        job.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Sends a wait with a 1 ms job until it is refused with 429 (the waits opened before it are
/// counted by then), returning that answer.
async fn until_refused(http: &Http, api: SocketAddr) -> Answer {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let job = r#"{"kind":"sleep","ms":1}"#;
        let answer = call(
            http,
            Method::POST,
            api,
            "/v1/jobs?wait=true",
            job,
            Some(&bearer()),
        )
        .await;
        if answer.status == 429 {
            return answer;
        }
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_beyond_the_client_limit_get_429_until_one_ends_or_disconnects() {
    let node = guarded_node(31, 4, None, Some(2)).await;
    let api = node.api_addr();
    let http = http();

    // Two waits open on 20 s jobs; the client of one will hang up.
    let _blocker = open_wait(api, r#"{"kind":"sleep","ms":20000}"#).await;
    let hangs_up = open_wait(api, r#"{"kind":"sleep","ms":20000}"#).await;
    let answer = until_refused(&http, api).await;
    assert_eq!(answer.code(), "too_many_waits");
    assert_eq!(answer.retry_after.as_deref(), Some("1"));
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("--max-waits-per-client 2"), "{message}");
    // A long poll counts the same.
    let answer = call(
        &http,
        Method::GET,
        api,
        "/v1/jobs/0000000000000001?wait=true",
        "",
        Some(&bearer()),
    )
    .await;
    assert_eq!(answer.status, 429);
    // Without wait nothing is held, so nothing is refused.
    let job = r#"{"kind":"sleep","ms":1}"#;
    let answer = call(&http, Method::POST, api, "/v1/jobs", job, Some(&bearer())).await;
    assert_eq!(answer.status, 202);

    // The client hangs up while its job still runs: its place is given back.
    drop(hangs_up);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = call(
            &http,
            Method::POST,
            api,
            "/v1/jobs?wait=true",
            job,
            Some(&bearer()),
        )
        .await;
        if answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 429);
        assert!(
            tokio::time::Instant::now() < deadline,
            "the hung-up wait was never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A wait that ends by itself gives its place back once answered: were it kept, the
    // blocker and it would fill the two places.
    let mut ends = open_wait(api, r#"{"kind":"sleep","ms":300}"#).await;
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&text).contains("succeeded") {
        let n = tokio::time::timeout(PATIENCE, ends.read(&mut chunk))
            .await
            .expect("the wait ends")
            .unwrap();
        assert!(n > 0, "connection closed early");
        text.extend_from_slice(&chunk[..n]);
    }
    let answer = call(
        &http,
        Method::POST,
        api,
        "/v1/jobs?wait=true",
        job,
        Some(&bearer()),
    )
    .await;
    assert_eq!(answer.status, 200, "a place is free again: {answer:?}");
    assert!(refused(&http, api, "too_many_waits").await >= 2.0);
    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_or_half_a_head_is_closed() {
    let node = guarded_node(41, 1, None, None).await;
    let api = node.api_addr();
    let limit = hearsay_worker::HEADER_READ_TIMEOUT;
    let mut silent = tokio::net::TcpStream::connect(api).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(api).await.unwrap();
    half.write_all(b"GET /healthz HT").await.unwrap();
    let started = tokio::time::Instant::now();
    for stream in [&mut silent, &mut half] {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(limit + PATIENCE, stream.read(&mut byte))
            .await
            .expect("closed by the server in time");
        assert!(matches!(read, Ok(0) | Err(_)), "closed, not answered");
    }
    let took = started.elapsed();
    assert!(
        took >= limit - Duration::from_millis(500),
        "not before the limit: {took:?}"
    );
    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_node_whose_polls_meet_429_asks_again_and_loses_nothing() {
    // The peer lets each client hold one wait: the entry node follows three jobs there at once.
    let mut entry = config(51, 1, 50);
    entry.api_token = Some(ApiToken::new(TOKEN).unwrap());
    entry.policy = hearsay_scheduler::Policy::LeastLoaded;
    let entry = Node::start(entry).await.expect("start node");
    let peer = guarded_node(52, 4, Some(entry.gossip_addr()), Some(1)).await;
    let nodes = [entry, peer];
    common::await_all_alive(&nodes).await;
    let http = http();
    let api = nodes[0].api_addr();
    let auth = bearer();
    // Keep the entry node's only slot busy, so that the next jobs go to the peer.
    let busy = r#"{"kind":"sleep","ms":3000}"#;
    let answer = call(&http, Method::POST, api, "/v1/jobs", busy, Some(&auth)).await;
    assert_eq!(answer.status, 202);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let job = r#"{"kind":"sleep","ms":800}"#;
        let answer = call(&http, Method::POST, api, "/v1/jobs", job, Some(&auth)).await;
        assert_eq!(answer.status, 202, "{answer:?}");
        let accepted = answer.json();
        assert_eq!(accepted["executing_node"], nodes[1].id().as_str());
        ids.push(accepted["id"].as_str().unwrap().to_owned());
    }
    for id in ids {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let path = format!("/v1/jobs/{id}?wait=true");
            let answer = call(&http, Method::GET, api, &path, "", Some(&auth)).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            let outcome = answer.json();
            if outcome["status"] == "succeeded" {
                break;
            }
            assert!(
                outcome["status"] == "queued" || outcome["status"] == "running",
                "{outcome}"
            );
            assert!(tokio::time::Instant::now() < deadline, "never ended");
        }
    }
    assert!(
        refused(&http, nodes[1].api_addr(), "too_many_waits").await >= 1.0,
        "the peer refused some of the entry node's polls"
    );
    leave_all(&nodes).await;
}
