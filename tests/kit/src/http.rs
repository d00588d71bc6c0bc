//! A pooled HTTP client for in-process nodes, with the API token when a test gives one.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::PATIENCE;

/// The pooled client.
pub type Http = Client<HttpConnector, Full<Bytes>>;

/// A new pooled client.
pub fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// The `Authorization` header that carries `token`.
pub fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// A whole answer: status, content type, headers and body.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The `Content-Type`, or empty.
    pub content_type: String,
    /// All headers.
    pub headers: hyper::HeaderMap,
    /// The whole body.
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
    request_bytes(
        http,
        method,
        api,
        path,
        headers,
        Bytes::from(body.to_owned()),
    )
    .await
}

/// [`request_with`] with a body of any bytes.
pub async fn request_bytes(
    http: &Http,
    method: Method,
    api: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
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
    let request = request.body(Full::new(body)).unwrap();
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
