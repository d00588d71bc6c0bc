//! The HTTP API: a hyper 1.x server (HTTP/1.1 and HTTP/2 through hyper-util's `auto` builder)
//! with graceful shutdown, and its routes.
//!
//! | method and path   | answer                                        |
//! |-------------------|-----------------------------------------------|
//! | `GET /v1/cluster` | this node's load map ([`ClusterView`])        |
//! | `GET /healthz`    | `{"status":"ok"}`                             |
//!
//! `HEAD` is accepted wherever `GET` is.
//!
//! Anything else is a 404, or a 405 with `Allow` for a known path; every error body is
//! `{"error":{"code":"...","message":"..."}}`.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::view::{ClusterView, ErrorBody};
use crate::SharedGossip;

/// How long open connections may take to finish their requests once the server stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// What the handlers can reach. The executor's handle joins it when jobs arrive.
#[derive(Debug, Clone)]
pub(crate) struct ApiState {
    pub gossip: SharedGossip,
}

/// Serves `listener` until `stop` is cancelled, then lets open connections finish for at most
/// [`SHUTDOWN_GRACE`] before closing them. Connection tasks are spawned on `tracker`.
pub(crate) async fn serve(
    listener: TcpListener,
    state: ApiState,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    // Cancelled when the grace period is over: closes the connections that are still open.
    let hard_stop = CancellationToken::new();
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: wait for some to be freed rather than
                    // spin on the error.
                    warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let state = state.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let response = route(&req, &state);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        let hard_stop = hard_stop.clone();
        tracker.spawn(async move {
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                }
                () = hard_stop.cancelled() => {}
            }
        });
    }
    // Stop accepting at once: a client connecting now is refused instead of left waiting.
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            warn!("HTTP connections still open after the grace period; closing them");
        }
    }
    hard_stop.cancel();
    debug!("HTTP server stopped");
}

/// Answers one request. The routes read no body, so any body type will do.
pub(crate) fn route<B>(req: &Request<B>, state: &ApiState) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        // HEAD is answered as GET; hyper sends the headers without the body.
        (&Method::GET | &Method::HEAD, "/v1/cluster") => {
            let now = tokio::time::Instant::now().into_std();
            let view = state.gossip.with(|g| ClusterView::of(g, now));
            let mut response = json(StatusCode::OK, &view);
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        (&Method::GET | &Method::HEAD, "/healthz") => {
            json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        }
        (method, path) => match allowed_methods(path) {
            Some(allow) => {
                let body = ErrorBody::new(
                    "method_not_allowed",
                    format!("{method} is not allowed on {path}; allowed: {allow}"),
                );
                let mut response = json(StatusCode::METHOD_NOT_ALLOWED, &body);
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
                response
            }
            None => json(
                StatusCode::NOT_FOUND,
                &ErrorBody::new("not_found", format!("no such path: {path}")),
            ),
        },
    }
}

/// The methods a known path accepts, for `Allow`; `None` for an unknown path. Keep in step with
/// the routes in [`route`].
fn allowed_methods(path: &str) -> Option<&'static str> {
    match path {
        "/v1/cluster" | "/healthz" => Some("GET, HEAD"),
        _ => None,
    }
}

fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
    let (status, bytes) = match serde_json::to_vec(body) {
        Ok(bytes) => (status, bytes),
        // Our views always serialise; should one ever fail, say so in the same error shape.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::to_vec(&ErrorBody::new("internal", e.to_string())).unwrap_or_default(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use hearsay_shared::{Gossip, GossipConfig, LoadVector, NodeId};
    use http_body_util::BodyExt;

    use super::*;

    fn state() -> ApiState {
        let config = GossipConfig::new(
            NodeId::new("n").unwrap(),
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let gossip = Gossip::new(config, 1, LoadVector::idle(1), vec![], Instant::now()).unwrap();
        ApiState {
            gossip: SharedGossip::new(gossip),
        }
    }

    fn call(method: Method, path: &str) -> (StatusCode, Option<String>, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap();
        let response = route(&req, &state());
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
        let body = collect_body(response.into_body());
        (status, allow, serde_json::from_slice(&body).unwrap())
    }

    fn collect_body(body: Full<Bytes>) -> Bytes {
        // A `Full` body is ready at once; a one-thread runtime collects it.
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn healthz_is_ok() {
        let (status, _, body) = call(Method::GET, "/healthz");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"status": "ok"}));
    }

    #[test]
    fn cluster_lists_this_node() {
        let (status, _, body) = call(Method::GET, "/v1/cluster");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["node"], "n");
        assert_eq!(body["nodes"][0]["id"], "n");
        assert_eq!(body["nodes"][0]["state"], "alive");
    }

    #[test]
    fn unknown_path_is_404_and_wrong_method_is_405_with_allow() {
        let (status, allow, body) = call(Method::GET, "/nope");
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(allow, None);
        assert_eq!(body["error"]["code"], "not_found");

        let (status, allow, body) = call(Method::POST, "/v1/cluster");
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(allow.as_deref(), Some("GET, HEAD"));
        assert_eq!(body["error"]["code"], "method_not_allowed");
        assert!(body["error"]["message"].as_str().unwrap().contains("POST"));
    }
}
