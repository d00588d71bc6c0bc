//! What a web page could make a browser send, against in-process nodes over real HTTP: a JSON
//! body that names a key twice, a `POST` that is not `application/json` (what a page may send
//! anywhere without a CORS preflight), a DNS-rebinding `Host`, another site's `Origin`, and the
//! CORS preflight itself. Each is refused with a JSON error naming the header or key, and no
//! job is taken; the well-behaved request next to it is served.

mod common;

use std::net::SocketAddr;

use common::{config, http, leave_all, request, request_with, Answer, Http};
use hearsay_worker::{Node, NodeHandle};
use hyper::Method;
use serde_json::Value;

const JOB: &str = r#"{"kind":"echo","data":"hi"}"#;

async fn node(allowed_hosts: &str) -> NodeHandle {
    let mut config = config(1, 2, 50);
    config.allowed_hosts = allowed_hosts.parse().expect("valid --allowed-hosts");
    Node::start(config).await.expect("start node")
}

fn json(answer: &Answer) -> Value {
    serde_json::from_slice(&answer.body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        )
    })
}

/// Checks that `answer` is the JSON error `status`/`code` naming `field` in its message.
fn assert_refused(answer: &Answer, status: u16, code: &str, field: &str) -> Value {
    let body = json(answer);
    assert_eq!(answer.status, status, "{body}");
    assert_eq!(answer.content_type, "application/json");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(&format!("{field}: ")), "{message}");
    body
}

/// The jobs the node at `api` took (`hearsay_jobs_submitted_total`).
async fn submitted(http: &Http, api: SocketAddr) -> f64 {
    let answer = request(http, Method::GET, api, "/metrics", "").await;
    String::from_utf8_lossy(&answer.body)
        .lines()
        .find_map(|l| l.strip_prefix("hearsay_jobs_submitted_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("hearsay_jobs_submitted_total in /metrics")
}

/// The requests the node at `api` refused under `reason`
/// (`hearsay_http_requests_refused_total{reason}`).
async fn refused(http: &Http, api: SocketAddr, reason: &str) -> f64 {
    let answer = request(http, Method::GET, api, "/metrics", "").await;
    let series = format!("hearsay_http_requests_refused_total{{reason=\"{reason}\"}} ");
    String::from_utf8_lossy(&answer.body)
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series}in /metrics"))
}

/// Posts the echo job with `headers` and waits for it; checks that it ran.
async fn runs(http: &Http, api: SocketAddr, headers: &[(&str, &str)]) {
    let answer = request_with(http, Method::POST, api, "/v1/jobs?wait=true", headers, JOB).await;
    let body = json(&answer);
    assert_eq!(answer.status, 200, "{headers:?}: {body}");
    assert_eq!(body["output"], "hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_twice_anywhere_is_a_400_naming_it_and_no_job_is_taken() {
    let node = node("").await;
    let (http, api) = (http(), node.api_addr());
    for (body, path) in [
        // serde_json alone keeps the last `kind`: this ran a sleep job.
        (r#"{"kind":"echo","kind":"sleep","ms":1}"#, "kind"),
        (r#"{"kind":"echo","data":"x","k\u0069nd":"sleep"}"#, "kind"),
        (
            r#"{"kind":"echo","data":"x","extra":{"a":1,"b":[{"c":1,"c":2}]}}"#,
            "extra.b[0].c",
        ),
    ] {
        let answer = request(&http, Method::POST, api, "/v1/jobs?wait=true", body).await;
        let error = assert_refused(&answer, 400, "duplicate_key", path);
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("appears twice"), "{message}");
    }
    assert_eq!(submitted(&http, api).await, 0.0, "no job was taken");
    runs(&http, api, &[]).await;
    assert_eq!(submitted(&http, api).await, 1.0);
    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_is_not_json_is_a_415_naming_its_type_and_no_job_is_taken() {
    let node = node("").await;
    let (http, api) = (http(), node.api_addr());
    // What a page's form or `fetch` may send to any address without a CORS preflight.
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "multipart/form-data; boundary=----hearsay",
        "application/x-www-form-urlencoded",
    ] {
        let headers = [("content-type", content_type)];
        let answer = request_with(
            &http,
            Method::POST,
            api,
            "/v1/jobs?wait=true",
            &headers,
            JOB,
        )
        .await;
        let error = assert_refused(&answer, 415, "unsupported_media_type", "Content-Type");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(content_type), "{message}");
        assert_eq!(answer.headers["accept-post"], "application/json");
    }
    // No Content-Type at all: `request_with` adds one unless given, so send it by hand.
    let untyped = send_raw(
        api,
        &format!(
            "POST /v1/jobs?wait=true HTTP/1.1\r\nhost: {api}\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{JOB}",
            JOB.len()
        ),
    )
    .await;
    assert!(untyped.starts_with("HTTP/1.1 415 "), "{untyped}");
    assert!(untyped.contains("Content-Type: is missing"), "{untyped}");
    assert_eq!(submitted(&http, api).await, 0.0, "no job was taken");
    assert_eq!(refused(&http, api, "unsupported_media_type").await, 5.0);
    runs(
        &http,
        api,
        &[("content-type", "application/json; charset=utf-8")],
    )
    .await;
    assert_eq!(submitted(&http, api).await, 1.0);
    leave_all(&[node]).await;
}

/// Sends `text` on a new connection and reads the answer to its end.
async fn send_raw(api: SocketAddr, text: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(api).await.expect("connect");
        stream.write_all(text.as_bytes()).await.expect("send");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        String::from_utf8_lossy(&answer).into_owned()
    };
    tokio::time::timeout(common::PATIENCE, exchange)
        .await
        .expect("an answer in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebinding_host_is_refused_and_no_job_is_taken() {
    let node = node("").await;
    let (http, api) = (http(), node.api_addr());
    // A page at http://evil.example:PORT/ whose name now resolves to 127.0.0.1.
    let evil = format!("evil.example:{}", api.port());
    let headers = [("host", evil.as_str())];
    let answer = request_with(
        &http,
        Method::POST,
        api,
        "/v1/jobs?wait=true",
        &headers,
        JOB,
    )
    .await;
    let error = assert_refused(&answer, 421, "unknown_host", "Host");
    assert!(
        error["error"]["message"].as_str().unwrap().contains(&evil),
        "{error}"
    );
    // Nor can it read the cluster or the metrics.
    for path in ["/v1/cluster", "/metrics", "/"] {
        let answer = request_with(&http, Method::GET, api, path, &headers, "").await;
        assert_refused(&answer, 421, "unknown_host", "Host");
    }
    assert_eq!(submitted(&http, api).await, 0.0, "no job was taken");
    assert_eq!(refused(&http, api, "unknown_host").await, 4.0);
    // The node's own names: its address (what the client sends by itself), localhost and
    // other loopback addresses, as it listens on loopback.
    let localhost = format!("localhost:{}", api.port());
    let other_loopback = format!("127.0.0.2:{}", api.port());
    runs(&http, api, &[]).await;
    runs(&http, api, &[("host", localhost.as_str())]).await;
    runs(&http, api, &[("host", other_loopback.as_str())]).await;
    assert_eq!(submitted(&http, api).await, 3.0);
    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_hosts_let_the_listed_names_in_and_no_other() {
    let node = node("hearsay.test,Jobs.Example.").await;
    let (http, api) = (http(), node.api_addr());
    // The port is not checked: a proxy or a port forward may change it.
    runs(&http, api, &[("host", "hearsay.test:1234")]).await;
    runs(&http, api, &[("host", "jobs.example")]).await;
    let answer = request_with(
        &http,
        Method::POST,
        api,
        "/v1/jobs?wait=true",
        &[("host", "other.test")],
        JOB,
    )
    .await;
    assert_refused(&answer, 421, "unknown_host", "Host");
    assert_eq!(submitted(&http, api).await, 2.0);
    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_site_s_origin_is_a_403_and_the_node_s_own_is_served() {
    let node = node("").await;
    let (http, api) = (http(), node.api_addr());
    for origin in ["http://evil.example", "null", "http://localhost:1"] {
        let answer = request_with(
            &http,
            Method::POST,
            api,
            "/v1/jobs?wait=true",
            &[("origin", origin)],
            JOB,
        )
        .await;
        let error = assert_refused(&answer, 403, "cross_origin", "Origin");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(origin),
            "{error}"
        );
    }
    assert_eq!(submitted(&http, api).await, 0.0, "no job was taken");
    assert_eq!(refused(&http, api, "cross_origin").await, 3.0);
    // The dashboard's own page, served under this address.
    let own = format!("http://{api}");
    runs(&http, api, &[("origin", own.as_str())]).await;
    assert_eq!(submitted(&http, api).await, 1.0);
    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cors_preflight_is_refused_and_allows_nothing() {
    let node = node("").await;
    let (http, api) = (http(), node.api_addr());
    for path in ["/v1/jobs", "/v1/cluster", "/nope"] {
        let answer = request_with(
            &http,
            Method::OPTIONS,
            api,
            path,
            &[
                ("origin", "http://evil.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "content-type"),
            ],
            "",
        )
        .await;
        assert_refused(&answer, 403, "cross_origin", "Origin");
        let cors: Vec<_> = answer
            .headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{path}: {cors:?}");
    }
    // Nor does any other answer let another origin in.
    let answer = request_with(
        &http,
        Method::GET,
        api,
        "/v1/cluster",
        &[("origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(!answer
        .headers
        .keys()
        .any(|name| name.as_str().starts_with("access-control-")));
    leave_all(&[node]).await;
}
