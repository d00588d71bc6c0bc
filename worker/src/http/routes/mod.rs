//! The HTTP API's routes; the server that accepts the connections is [`super::server`]. This
//! file holds the routing and the checks every request passes first; what each route answers is
//! in the `*_routes` files beside it (the node's own routes in [`super::node_routes`]).
//!
//! | method and path           | answer                                                          |
//! |---------------------------|-----------------------------------------------------------------|
//! | `GET /`                   | the dashboard (see [`super::dashboard`])                        |
//! | `POST /v1/jobs`           | submit a job (see [`super::job_routes`])                        |
//! | `GET /v1/jobs`            | the jobs this node holds or answers for, a page at a time       |
//! | `GET /v1/jobs/{id}`       | a job's status and outcome (see [`super::job_routes`])          |
//! | `DELETE /v1/jobs/{id}`    | cancel a job (see [`super::job_routes`])                        |
//! | `POST /v1/drain`          | leave the cluster gracefully, as on `SIGTERM` ([`drain`](super::node_routes::drain)) |
//! | `POST /v1/peer/*`         | the peer protocol: offer, ask, steal ([`super::peer_routes`])   |
//! | `GET /v1/cluster`         | this node's load map ([`ClusterView`](super::view::ClusterView))  |
//! | `GET /v1/info`            | what this node is: version, build, addresses, settings ([`super::info`]) |
//! | `GET /v1/cluster/stream`  | the load map, as server-sent events (see [`super::stream`])     |
//! | `GET /v1/history`         | the cluster's last 15 minutes and membership events ([`crate::history`]) |
//! | `GET /metrics`            | Prometheus metrics (see [`crate::metrics`])                     |
//! | `GET /healthz`            | `{"status":"ok"}`                                               |
//!
//! `HEAD` is accepted wherever `GET` is, except on the stream.
//!
//! Anything else is a 404, or a 405 with `Allow` for a known path; every error body is
//! `{"error":{"code":"...","message":"..."}}`.
//!
//! Before anything else, every request passes the checks that keep web pages out
//! ([`super::browser_guard`]): a `Host` that names this node (else `421`, or `400` for none), no
//! other site's `Origin` on a request that may change state (`403`), and a `POST` body of
//! `application/json` (`415`). No answer carries an `Access-Control-Allow-*` header, so a
//! browser's CORS preflight for another origin always fails.
//!
//! With a token (`--api-token-file`), every request but those to `/healthz` and `/` (the
//! dashboard page, which holds no data) needs `Authorization: Bearer <token>`; without it, or
//! with another, the answer is `401` with `WWW-Authenticate: Bearer`, whatever the path (a
//! stranger does not learn which paths exist). Every `4xx` answer is counted in
//! `hearsay_http_requests_refused_total{reason}`.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::gossip::SharedGossip;
use crate::history::SharedHistory;
use crate::http::auth::ApiToken;
use crate::http::browser_guard::{self, HostNames, Refusal};
use crate::http::dashboard;
use crate::http::info::ServerInfo;
use crate::http::limits::{BodyClock, BodyLimits, ClientAddr, ConnectionLimiter, WaitLimiter};
use crate::http::stream::ClusterStream;
use crate::http::view::{json, ErrorBody};
use crate::http::{job_routes, node_routes, peer_routes};
use crate::jobs::dispatch::Dispatcher;
use crate::metrics::{refusal_reason, Exposition};

/// The body of every answer: a whole one, or the cluster stream.
pub(crate) type ApiBody = BoxBody<Bytes, Infallible>;

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
    /// What `GET /v1/info` says.
    pub info: Arc<ServerInfo>,
    /// The cluster's recent history, for `GET /v1/history`.
    pub history: SharedHistory,
    /// Cancelled to leave the cluster gracefully, as on `SIGTERM` (`POST /v1/drain`).
    pub shutdown: CancellationToken,
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
pub(super) async fn route_timed<B>(
    req: Request<B>,
    clock: BodyClock,
    state: &ApiState,
) -> Response<ApiBody>
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
            return job_routes::status(id, req.uri().query(), &state.jobs, &state.waits, client)
                .await;
        }
        if method == Method::DELETE {
            let (query, headers) = (req.uri().query(), req.headers());
            return job_routes::cancel(id, query, headers, &state.jobs).await;
        }
    }
    if method == Method::POST && peer_routes::is_route(&path) {
        return peer_routes::answer(&path, req, &state.jobs, &state.waits).await;
    }
    match (&method, path.as_str()) {
        (&Method::GET | &Method::HEAD, "/") => dashboard::page(),
        (&Method::GET | &Method::HEAD, "/metrics") => {
            node_routes::metrics(req.headers(), &state.metrics)
        }
        (&Method::POST, "/v1/jobs") => job_routes::submit(req, &state.jobs, &state.waits).await,
        (&Method::GET | &Method::HEAD, "/v1/jobs") => {
            job_routes::list(req.uri().query(), &state.jobs).await
        }
        // HEAD is answered as GET; hyper sends the headers without the body.
        (&Method::GET | &Method::HEAD, "/v1/cluster") => {
            node_routes::cluster(&state.gossip, &state.jobs)
        }
        (&Method::GET | &Method::HEAD, "/v1/info") => node_routes::info(&state.info),
        (&Method::GET | &Method::HEAD, "/v1/history") => state.history.answer(req.uri().query()),
        (&Method::GET | &Method::HEAD, "/healthz") => node_routes::health(&state.connections),
        (&Method::POST, "/v1/drain") => node_routes::drain(req, &state.jobs, &state.shutdown).await,
        (&Method::GET | &Method::HEAD, "/v1/openapi.json") => node_routes::openapi(),
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
        "/" | "/metrics" | "/v1/cluster" | "/v1/info" | "/v1/history" | "/healthz"
        | "/v1/openapi.json" => Some("GET, HEAD"),
        "/v1/cluster/stream" => Some("GET"),
        "/v1/jobs" => Some("GET, HEAD, POST"),
        "/v1/drain" => Some("POST"),
        _ if peer_routes::is_route(path) => Some("POST"),
        _ if job_id_segment(path).is_some() => Some("GET, HEAD, DELETE"),
        _ => None,
    }
}

/// Every route, as `(methods, path)` (the methods as in `Allow`; `{id}` a job id): what
/// `whole`, `answer` and `allowed_methods` serve, kept beside them. The OpenAPI document
/// lists exactly these (`tests/tests/openapi.rs`).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET, HEAD", "/"),
    ("GET, HEAD, POST", "/v1/jobs"),
    ("GET, HEAD, DELETE", "/v1/jobs/{id}"),
    ("POST", "/v1/drain"),
    ("POST", crate::jobs::dispatch::peers::OFFER),
    ("POST", crate::jobs::dispatch::peers::ASK),
    ("POST", crate::jobs::dispatch::peers::STEAL),
    ("GET, HEAD", "/v1/cluster"),
    ("GET", "/v1/cluster/stream"),
    ("GET, HEAD", "/v1/info"),
    ("GET, HEAD", "/v1/history"),
    ("GET, HEAD", "/metrics"),
    ("GET, HEAD", "/healthz"),
    ("GET, HEAD", "/v1/openapi.json"),
];

/// The `{id}` of `/v1/jobs/{id}` (checked by the handler, so that a bad id is a 400 naming it,
/// not a 404); `None` for any other path.
fn job_id_segment(path: &str) -> Option<&str> {
    path.strip_prefix("/v1/jobs/")
        .filter(|rest| !rest.contains('/'))
}

#[cfg(test)]
mod tests;
