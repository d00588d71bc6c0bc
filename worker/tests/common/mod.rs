//! What the observability tests share: an in-process cluster on 127.0.0.1 and a small HTTP
//! client. Every wait is bounded by [`PATIENCE`].

#![allow(dead_code)] // each test file uses a part

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hearsay_shared::Verdict;
use hearsay_worker::{Config, Node, NodeHandle};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The bound of every wait: generous for a busy machine, never a measurement.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub type Http = Client<HttpConnector, Full<Bytes>>;

pub fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A node's settings for these tests: quick gossip, `slots` slots, a short drain.
pub fn config(seed: u64, slots: u32, gossip_interval_ms: u64) -> Config {
    let mut config = Config::loopback();
    config.gossip_interval = gossip_interval_ms;
    config.slots = Some(slots);
    config.seed = Some(seed);
    // Tests leave long jobs behind: the drain must not wait for them.
    config.drain_timeout = 200;
    config
}

/// Starts one node per entry of `slots` (joining through the first), gossiping every 50 ms, and
/// waits until each sees all of them alive.
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
    let mut nodes: Vec<NodeHandle> = Vec::new();
    for (i, &n) in slots.iter().enumerate() {
        let mut config = config(i as u64 + 1, n, gossip_interval_ms);
        if let Some(prefix) = prefix {
            config.node_id = Some(format!("{prefix}-{}", i + 1).parse().expect("a valid id"));
        }
        if let Some(first) = nodes.first() {
            config.seeds.0 = vec![first.gossip_addr()];
        }
        nodes.push(Node::start(config).await.expect("start node"));
    }
    await_all_alive(&nodes).await;
    nodes
}

/// Waits (at most [`PATIENCE`]) until every node sees every one of `nodes` alive.
pub async fn await_all_alive(nodes: &[NodeHandle]) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let alive = |node: &NodeHandle| {
        node.cluster()
            .nodes
            .iter()
            .filter(|v| v.state == Verdict::Alive)
            .count()
    };
    while !nodes.iter().all(|node| alive(node) == nodes.len()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the nodes did not all see each other"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
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

/// A whole answer: status, content type, headers and body.
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

/// `method path` at the node at `api`, as a well-behaved client sends it: the client sets
/// `Host` from the address, and a `POST` says its body is JSON.
pub async fn request(
    http: &Http,
    method: Method,
    api: SocketAddr,
    path: &str,
    body: &str,
) -> Answer {
    request_with(http, method, api, path, &[], body).await
}

/// [`request`] with extra `headers`; a `Host` or `Content-Type` among them replaces the one
/// the client would send.
pub async fn request_with(
    http: &Http,
    method: Method,
    api: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut request = Request::builder()
        .method(method.clone())
        .uri(format!("http://{api}{path}"));
    let typed = headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if method == Method::POST && !typed {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let exchange = async {
        let response = http.request(request).await.expect("an HTTP answer");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get(hyper::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            content_type,
            headers,
            body,
        }
    };
    tokio::time::timeout(PATIENCE, exchange)
        .await
        .expect("an answer in time")
}

/// Submits a job to the node at `api`; returns the answer's JSON (checking it was taken).
pub async fn submit(http: &Http, api: SocketAddr, path: &str, job: &Value) -> Value {
    let answer = request(http, Method::POST, api, path, &job.to_string()).await;
    assert!(
        answer.status == 200 || answer.status == 202,
        "job refused: {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    );
    serde_json::from_slice(&answer.body).expect("a JSON answer")
}
