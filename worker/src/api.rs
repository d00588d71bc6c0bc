//! The HTTP API: a hyper 1.x server (HTTP/1.1 and HTTP/2 through hyper-util's `auto` builder)
//! with graceful shutdown, and its routes.
//!
//! | method and path           | answer                                                   |
//! |---------------------------|----------------------------------------------------------|
//! | `GET /`                   | the dashboard (see [`crate::dashboard`])                 |
//! | `POST /v1/jobs`           | submit a job (see [`crate::job_api`])                    |
//! | `GET /v1/jobs/{id}`       | a job's status and outcome (see [`crate::job_api`])      |
//! | `POST /v1/peer/*`         | the peer protocol: offer, ask, steal ([`crate::peer`])   |
//! | `GET /v1/cluster`         | this node's load map ([`ClusterView`])                   |
//! | `GET /v1/cluster/stream`  | the same, as server-sent events (see [`crate::stream`])  |
//! | `GET /metrics`            | Prometheus metrics (see [`crate::metrics`])              |
//! | `GET /healthz`            | `{"status":"ok"}`                                        |
//!
//! `HEAD` is accepted wherever `GET` is, except on the stream.
//!
//! Anything else is a 404, or a 405 with `Allow` for a known path; every error body is
//! `{"error":{"code":"...","message":"..."}}`.
//!
//! Before anything else, every request passes the checks that keep web pages out
//! ([`crate::browser_guard`]): a `Host` that names this node (else `421`, or `400` for none),
//! no other site's `Origin` on a request that may change state (`403`), and a `POST` body of
//! `application/json` (`415`). No answer carries an `Access-Control-Allow-*` header, so a
//! browser's CORS preflight for another origin always fails.
//!
//! With a token (`--api-token-file`), every request but those to `/healthz` and `/` (the
//! dashboard page, which holds no data) needs `Authorization: Bearer <token>`; without it, or
//! with another, the answer is `401` with `WWW-Authenticate: Bearer`, whatever the path (a
//! stranger does not learn which paths exist). Every `4xx` answer is counted in
//! `hearsay_http_requests_refused_total{reason}`.
//!
//! Connections: request heads must arrive within [`HEADER_READ_TIMEOUT`] and fit in
//! [`MAX_HEAD_BYTES`] (else hyper answers `431` and closes); a request hyper cannot parse gets
//! hyper's bare `400` and is counted as `malformed`. Bodies are timed ([`TimedBody`]: whole
//! within `--body-timeout`, at `--body-min-rate` after `--body-rate-grace`), else `408
//! body_timeout` and the connection is closed. Connections are counted per client IP and in all
//! ([`ConnectionLimiter`]); one over a cap is answered by `refuse` and closed, and counted in
//! `hearsay_http_connections_refused_total{reason}`; for [`crate::limits::REFUSING_WINDOW`]
//! after such a refusal `/healthz` says `refusing_connections` (still `200`: see `health`).

use std::convert::Infallible;
use std::error::Error as StdError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{
    HeaderValue, ACCEPT, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_TYPE,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::auth::ApiToken;
use crate::browser_guard::{self, HostNames, Refusal};
use crate::dashboard;
use crate::dispatch::Dispatcher;
use crate::job_api;
use crate::limits::{
    Admission, BodyClock, BodyLimits, ClientAddr, ConnectionLimiter, ConnectionRefusal, TimedBody,
    WaitLimiter, CONNECTION_RETRY_AFTER_SECS, REFUSAL_ANSWERS, REFUSAL_HEAD_TIMEOUT,
};
use crate::metrics::{refusal_reason, Exposition, Format};
use crate::peer_api;
use crate::stream::ClusterStream;
use crate::view::{ClusterView, ErrorBody};
use crate::SharedGossip;

/// The body of every answer: a whole one, or the cluster stream.
pub(crate) type ApiBody = BoxBody<Bytes, Infallible>;

/// How long open connections may take to finish their requests once the server stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How long a client may take to send a request's head (the request line and headers), also
/// the longest an idle keep-alive connection is kept; then the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head accepted (HTTP/1 read buffer; HTTP/2 header list), in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// HTTP/2 streams one connection may have open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// What the handlers can reach.
#[derive(Debug, Clone)]
pub(crate) struct ApiState {
    pub gossip: SharedGossip,
    pub jobs: Dispatcher,
    pub stream: ClusterStream,
    pub metrics: Arc<Exposition>,
    /// The bearer token every guarded request needs; `None`: the API is open.
    pub token: Option<ApiToken>,
    /// Open waits per client.
    pub waits: WaitLimiter,
    /// Open connections, per client and in all.
    pub connections: ConnectionLimiter,
    /// How fast request bodies must arrive.
    pub body: BodyLimits,
    /// The names a request's `Host` may give for this node.
    pub hosts: Arc<HostNames>,
}

/// Serves `listener` until `stop` is cancelled, then lets open connections finish for at most
/// [`SHUTDOWN_GRACE`] before closing them. Connection tasks are spawned on `tracker`.
///
/// Each new connection is first admitted by [`ApiState::connections`]; one over a cap is
/// answered `503` by `refuse` (or closed at once when [`REFUSAL_ANSWERS`] are already being
/// answered), so that the node never runs out of descriptors.
pub(crate) async fn serve(
    listener: TcpListener,
    state: ApiState,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let limits = state.connections.limits();
    info!(
        max_connections = limits.total,
        max_connections_per_client = limits.per_client,
        refusal_answers = REFUSAL_ANSWERS,
        body_timeout_ms = state.body.timeout.as_millis(),
        body_min_rate = state.body.min_rate,
        body_rate_grace_ms = state.body.grace.as_millis(),
        "HTTP connection and body limits"
    );
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION);
    let graceful = GracefulShutdown::new();
    // Cancelled when the grace period is over: closes the connections that are still open.
    let hard_stop = CancellationToken::new();
    // Also cancelled if this task is aborted (`NodeHandle::kill`), so that no connection
    // outlives the server.
    let hard_stop_on_exit = hard_stop.clone().drop_guard();
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
        let metrics = state.jobs.metrics().clone();
        let permit = match state.connections.admit(peer.ip(), Instant::now()) {
            Admission::Admitted(permit) => permit,
            Admission::Refused {
                answer,
                refusal,
                first,
            } => {
                metrics.connection_refused(refusal.reason());
                if first {
                    warn!(%peer, reason = %refusal, "refusing HTTP connections (503)");
                } else {
                    debug!(%peer, reason = %refusal, "HTTP connection refused (503)");
                }
                let connections = state.connections.clone();
                let hard_stop = hard_stop.clone();
                tracker.spawn(async move {
                    tokio::select! {
                        () = refuse(stream, refusal, connections) => {}
                        () = hard_stop.cancelled() => {}
                    }
                    drop(answer);
                });
                continue;
            }
            Admission::Shed(refusal) => {
                // Answering would take one more descriptor and task for up to
                // REFUSAL_HEAD_TIMEOUT: with that many answers under way, closing is cheaper.
                metrics.connection_refused("unanswered");
                debug!(%peer, reason = %refusal, "HTTP connection closed unanswered");
                drop(stream);
                continue;
            }
        };
        let state = state.clone();
        // Set by the first request: until then, neither hyper's head timeout (it starts once the
        // protocol is known) nor anything else would close a connection that sends nothing.
        let started = Arc::new(AtomicBool::new(false));
        let first_request = started.clone();
        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
            let state = state.clone();
            first_request.store(true, Ordering::Relaxed);
            let (parts, body) = req.into_parts();
            let (body, clock) = TimedBody::new(body, state.body);
            let mut req = Request::from_parts(parts, body);
            req.extensions_mut().insert(ClientAddr(peer));
            async move { Ok::<_, Infallible>(route_timed(req, clock, &state).await) }
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
                        // hyper answered a request it could not parse itself (400, 431) and
                        // closed: count it with the refusals the router makes.
                        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_parse) {
                            metrics.request_refused("malformed");
                        }
                        debug!(%peer, error = %e, "HTTP connection ended with an error");
                    }
                }
                () = hard_stop.cancelled() => {}
                () = silent_for(HEADER_READ_TIMEOUT, &started) => {
                    debug!(%peer, "no request within the head timeout; connection closed");
                }
            }
            // The connection's place is given back only once its socket is closed.
            drop(permit);
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
    drop(hard_stop_on_exit);
    debug!("HTTP server stopped");
}

/// Answers a connection over a cap and closes it: `GET /healthz` with the node's health (the
/// probe learns the node is refusing), anything else `503 too_many_connections` with
/// `Retry-After`. HTTP/1 only, one request, and the head must come within
/// [`REFUSAL_HEAD_TIMEOUT`]; else the connection is closed unanswered.
async fn refuse(stream: TcpStream, refusal: ConnectionRefusal, connections: ConnectionLimiter) {
    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
        let response = if matches!(*req.method(), Method::GET | Method::HEAD)
            && req.uri().path() == "/healthz"
        {
            health(&connections)
        } else {
            let mut response = json(
                StatusCode::SERVICE_UNAVAILABLE,
                &ErrorBody::new("too_many_connections", refusal.to_string()),
            );
            response.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from_static(CONNECTION_RETRY_AFTER_SECS),
            );
            response
        };
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_HEAD_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service);
    // hyper's head timeout starts with the first read; this bounds the whole exchange.
    if tokio::time::timeout(REFUSAL_HEAD_TIMEOUT * 2, connection)
        .await
        .is_err()
    {
        debug!("refused connection sent no request in time; closed unanswered");
    }
}

/// `GET /healthz`: `{"status":"ok"}`, or, when connections were refused for capacity within
/// [`crate::limits::REFUSING_WINDOW`], `{"status":"refusing_connections","connections":{..}}`
/// with the counts. Always `200`: the process is alive and serving what it holds, and a
/// liveness probe that restarted a merely busy node would throw away its queued jobs and push
/// its load onto its peers.
fn health(connections: &ConnectionLimiter) -> Response<Full<Bytes>> {
    let health = connections.health(Instant::now());
    if health.refusing {
        json(
            StatusCode::OK,
            &serde_json::json!({"status": "refusing_connections", "connections": health}),
        )
    } else {
        json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
    }
}

/// Resolves after `limit` if no request has `started` by then; otherwise never.
async fn silent_for(limit: Duration, started: &AtomicBool) {
    tokio::time::sleep(limit).await;
    if started.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

/// Answers one request whose body is not timed (the unit tests' requests), and counts it if
/// it is refused (`4xx`).
#[cfg(test)]
pub(crate) async fn route<B>(req: Request<B>, state: &ApiState) -> Response<ApiBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    route_timed(req, BodyClock::default(), state).await
}

/// Answers one request, and counts it if it is refused (`4xx`). If its body was cut by its
/// [`BodyClock`], whatever the handler made of the error, the answer is `408 body_timeout`
/// naming the bound, and the connection is closed after it.
async fn route_timed<B>(req: Request<B>, clock: BodyClock, state: &ApiState) -> Response<ApiBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let version = req.version();
    let mut response = answer(req, state).await;
    if let Some(cut) = clock.expired() {
        let mut timeout = json(
            StatusCode::REQUEST_TIMEOUT,
            &ErrorBody::new("body_timeout", cut.to_string()).with_field("body"),
        );
        // HTTP/2 has no `Connection` header; its stream is reset by hyper instead.
        if version < hyper::Version::HTTP_2 {
            timeout
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response = timeout.map(BodyExt::boxed);
    }
    count_refusal(&response, state);
    response
}

/// Counts `response` if it is a refusal (`4xx`).
fn count_refusal(response: &Response<ApiBody>, state: &ApiState) {
    if let Some(reason) = refusal_reason(response.status().as_u16()) {
        state.jobs.metrics().request_refused(reason);
    }
}

/// Whether `path` is served without the token: liveness, and the dashboard page (static; it
/// asks for the data with the token it is given).
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/")
}

/// The `401` for a request without the token, or with another.
fn unauthorized<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let message = if req.headers().contains_key(AUTHORIZATION) {
        "the bearer token is not this cluster's"
    } else {
        "this node needs Authorization: Bearer <token> (the cluster's --api-token-file)"
    };
    let mut response = json(
        StatusCode::UNAUTHORIZED,
        &ErrorBody::new("unauthorized", message),
    );
    response.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"hearsay\""),
    );
    response
}

/// The answer to a request that a [`browser_guard`] check refused.
fn refused(refusal: Refusal) -> Response<Full<Bytes>> {
    let body = ErrorBody::new(
        refusal.code,
        format!("{}: {}", refusal.field, refusal.reason),
    )
    .with_field(refusal.field);
    let mut response = json(refusal.status, &body);
    if refusal.status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
        response
            .headers_mut()
            .insert("accept-post", HeaderValue::from_static("application/json"));
    }
    response
}

/// Answers one request: who sent it (`Host`, `Origin`), the token, a `POST`'s media type,
/// then the routes.
async fn answer<B>(req: Request<B>, state: &ApiState) -> Response<ApiBody>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    if let Err(refusal) = browser_guard::check_sender(&req, &state.hosts) {
        return refused(refusal).map(BodyExt::boxed);
    }
    if let Some(token) = &state.token {
        if !is_public(req.uri().path()) && !token.admits(req.headers()) {
            return unauthorized(&req).map(BodyExt::boxed);
        }
    }
    // Every POST, whatever its path: a route added later is covered too.
    if req.method() == Method::POST {
        if let Err(refusal) = browser_guard::check_json_body(req.headers()) {
            return refused(refusal).map(BodyExt::boxed);
        }
    }
    if req.method() == Method::GET && req.uri().path() == "/v1/cluster/stream" {
        return match state.stream.open() {
            Ok(body) => {
                let mut response = Response::new(body.boxed());
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                // Reverse proxies that buffer responses (nginx) pass this one through at once.
                headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
                response
            }
            Err(e) => {
                let mut response = json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &ErrorBody::new("too_many_streams", e.to_string()),
                );
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from_static("5"));
                response.map(BodyExt::boxed)
            }
        };
    }
    whole(req, state).await.map(BodyExt::boxed)
}

/// Answers every request but the stream, with a whole body.
async fn whole<B>(req: Request<B>, state: &ApiState) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if let Some(id) = job_id_segment(&path) {
        if matches!(method, Method::GET | Method::HEAD) {
            let client = ClientAddr::ip_of(&req);
            return job_api::status(id, req.uri().query(), &state.jobs, &state.waits, client).await;
        }
    }
    if method == Method::POST && peer_api::is_route(&path) {
        return peer_api::answer(&path, req, &state.jobs, &state.waits).await;
    }
    match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/") => dashboard::page(),
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::for_accept(accept);
            let mut response = Response::new(Full::new(Bytes::from(state.metrics.encode(format))));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
        }
        (&Method::POST, "/v1/jobs") => job_api::submit(req, &state.jobs, &state.waits).await,
        // HEAD is answered as GET; hyper sends the headers without the body.
        (&Method::GET | &Method::HEAD, "/v1/cluster") => {
            let now = tokio::time::Instant::now().into_std();
            let mut view = ClusterView::of_shared(&state.gossip, now);
            view.moves = Some(state.jobs.stats().into());
            let mut response = json(StatusCode::OK, &view);
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        (&Method::GET | &Method::HEAD, "/healthz") => health(&state.connections),
        (&Method::GET | &Method::HEAD, "/v1/openapi.json") => openapi(),
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
        "/" | "/metrics" | "/v1/cluster" | "/healthz" | "/v1/openapi.json" => Some("GET, HEAD"),
        "/v1/cluster/stream" => Some("GET"),
        "/v1/jobs" => Some("POST"),
        _ if peer_api::is_route(path) => Some("POST"),
        _ if job_id_segment(path).is_some() => Some("GET, HEAD"),
        _ => None,
    }
}

/// Every route, as `(methods, path)` (the methods as in `Allow`; `{id}` a job id): what
/// [`whole`], `answer` and [`allowed_methods`] serve, kept beside them. The OpenAPI document
/// lists exactly these (`tests/tests/openapi.rs`).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET, HEAD", "/"),
    ("POST", "/v1/jobs"),
    ("GET, HEAD", "/v1/jobs/{id}"),
    ("POST", crate::peer::OFFER),
    ("POST", crate::peer::ASK),
    ("POST", crate::peer::STEAL),
    ("GET, HEAD", "/v1/cluster"),
    ("GET", "/v1/cluster/stream"),
    ("GET, HEAD", "/metrics"),
    ("GET, HEAD", "/healthz"),
    ("GET, HEAD", "/v1/openapi.json"),
];

/// `GET /v1/openapi.json`: the OpenAPI document of this API, `docs/openapi.json` compiled in.
fn openapi() -> Response<Full<Bytes>> {
    let document = include_str!("../../docs/openapi.json");
    let mut response = Response::new(Full::new(Bytes::from_static(document.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The `{id}` of `/v1/jobs/{id}` (checked by the handler, so that a bad id is a 400 naming it,
/// not a 404); `None` for any other path.
fn job_id_segment(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/jobs/")
        .filter(|rest| !rest.contains('/'))
}

/// A JSON answer.
pub(crate) fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Full<Bytes>> {
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
    use std::sync::Arc;
    use std::time::Instant;

    use hearsay_scheduler::handoff::HandoffConfig;
    use hearsay_scheduler::Policy;
    use hearsay_shared::{Gossip, GossipConfig, LoadVector, NodeId};
    use http_body_util::BodyExt;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::executor::Executor;
    use crate::job_store::{JobStore, Retention};
    use crate::metrics::Metrics;

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
            connections: ConnectionLimiter::new(crate::limits::ConnectionLimits {
                total: 8,
                per_client: 4,
            }),
            body: BodyLimits::default(),
            hosts: Arc::new(HostNames::new(
                "127.0.0.1".parse().unwrap(),
                None,
                &Default::default(),
            )),
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

        let (status, allow, _) = call(&state, Method::GET, "/v1/jobs", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(allow.as_deref(), Some("POST"));
        let (status, allow, _) =
            call(&state, Method::DELETE, "/v1/jobs/0000000000000001", "").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(allow.as_deref(), Some("GET, HEAD"));
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
        let body = "x".repeat(crate::job_api::MAX_BODY + 1);
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
        let (status, _, body) =
            call_with(&state, Method::POST, "/v1/jobs?wait=true", &own, job).await;
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
}
