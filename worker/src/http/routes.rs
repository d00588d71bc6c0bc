//! The HTTP API's routes; the server that accepts the connections is [`super::server`].
//!
//! | method and path           | answer                                                          |
//! |---------------------------|-----------------------------------------------------------------|
//! | `GET /`                   | the dashboard (see [`super::dashboard`])                        |
//! | `POST /v1/jobs`           | submit a job (see [`super::job_routes`])                        |
//! | `GET /v1/jobs`            | the jobs this node holds or answers for, a page at a time       |
//! | `GET /v1/jobs/{id}`       | a job's status and outcome (see [`super::job_routes`])          |
//! | `DELETE /v1/jobs/{id}`    | cancel a job (see [`super::job_routes`])                        |
//! | `POST /v1/drain`          | leave the cluster gracefully, as on `SIGTERM` ([`drain`])       |
//! | `POST /v1/peer/*`         | the peer protocol: offer, ask, steal ([`super::peer_routes`])   |
//! | `GET /v1/cluster`         | this node's load map ([`ClusterView`])                          |
//! | `GET /v1/info`            | what this node is: version, build, addresses, settings ([`super::info`]) |
//! | `GET /v1/history`         | the cluster's last 15 minutes and membership events ([`crate::history`]) |
//! | `GET /v1/cluster/stream`  | the same, as server-sent events (see [`super::stream`])         |
//! | `GET /v1/info`            | version, uptime, addresses, settings ([`super::info`])          |
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
//!

use std::convert::Infallible;
use std::error::Error as StdError;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{
    HeaderValue, ACCEPT, ALLOW, AUTHORIZATION, CACHE_CONTROL, CONNECTION, CONTENT_TYPE,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gossip::SharedGossip;
use crate::history::SharedHistory;
use crate::http::auth::ApiToken;
use crate::http::browser_guard::{self, HostNames, Refusal};
use crate::http::dashboard;
use crate::http::info::ServerInfo;
use crate::http::job_routes;
use crate::http::limits::{BodyClock, BodyLimits, ClientAddr, ConnectionLimiter, WaitLimiter};
use crate::http::peer_routes;
use crate::http::stream::ClusterStream;
use crate::http::view::{json, ClusterView, ErrorBody};
use crate::jobs::dispatch::Dispatcher;
use crate::metrics::{refusal_reason, Exposition, Format};

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

/// `GET /healthz`: `{"status":"ok"}`, or, when connections were refused for capacity within
/// [`crate::http::limits::REFUSING_WINDOW`], `{"status":"refusing_connections","connections":{..}}`
/// with the counts. Always `200`: the process is alive and serving what it holds, and a
/// liveness probe that restarted a merely busy node would throw away its queued jobs and push
/// its load onto its peers.
pub(super) fn health(connections: &ConnectionLimiter) -> Response<Full<Bytes>> {
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
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::for_accept(accept);
            let mut response = Response::new(Full::new(Bytes::from(state.metrics.encode(format))));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            response
        }
        (&Method::POST, "/v1/jobs") => job_routes::submit(req, &state.jobs, &state.waits).await,
        (&Method::GET | &Method::HEAD, "/v1/jobs") => {
            job_routes::list(req.uri().query(), &state.jobs).await
        }
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
        (&Method::GET | &Method::HEAD, "/v1/info") => {
            let mut response = json(StatusCode::OK, &state.info.body());
            response
                .headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        (&Method::GET | &Method::HEAD, "/v1/history") => state.history.answer(req.uri().query()),
        (&Method::GET | &Method::HEAD, "/healthz") => health(&state.connections),
        (&Method::POST, "/v1/drain") => drain(req, state).await,
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
    ("GET, HEAD", "/v1/info"),
    ("GET, HEAD", "/healthz"),
    ("GET, HEAD", "/v1/openapi.json"),
];

/// `POST /v1/drain`: leaves the cluster gracefully, as `SIGTERM` makes the node do — it takes
/// no new jobs, gossips that it leaves, hands its queue on to peers, lets its running jobs
/// finish (for at most the drain timeout), then exits (the `worker` process with 0). Answers
/// `202` at once with the node, `"status": "leaving"`, whether it was leaving already, and its
/// work then. No query; a body, if any, is an empty JSON object.
async fn drain<B>(req: Request<B>, state: &ApiState) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    if let Some(query) = req.uri().query().filter(|q| !q.is_empty()) {
        let name = query.split(['=', '&']).next().unwrap_or(query);
        let body = ErrorBody::new(
            "invalid_query",
            format!("{name}: unknown query parameter; POST /v1/drain takes none"),
        )
        .with_field(name);
        return json(StatusCode::BAD_REQUEST, &body);
    }
    let body = match job_routes::read_body(req).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let empty = body.iter().all(u8::is_ascii_whitespace)
        || matches!(
            serde_json::from_slice::<serde_json::Value>(&body),
            Ok(serde_json::Value::Object(map)) if map.is_empty()
        );
    if !empty {
        let body = ErrorBody::new(
            "invalid_body",
            "body: must be empty or {}; POST /v1/drain takes no fields",
        )
        .with_field("body");
        return json(StatusCode::BAD_REQUEST, &body);
    }
    let already = state.jobs.is_leaving() || state.shutdown.is_cancelled();
    let work = state.jobs.work();
    // What NodeHandle::shutdown does: refuse new jobs at once, then the drain task and the
    // gossip task leave; the process exits once they are done.
    state.jobs.stop_accepting();
    state.shutdown.cancel();
    if !already {
        tracing::info!(node = %state.jobs.node(), "asked to leave over the API (POST /v1/drain)");
    }
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({
            "node": state.jobs.node(),
            "status": "leaving",
            "already_leaving": already,
            "queued": work.queued,
            "running": work.running,
        }),
    )
}

/// `GET /v1/openapi.json`: the OpenAPI document of this API, `docs/openapi.json` compiled in.
fn openapi() -> Response<Full<Bytes>> {
    let document = include_str!("../../../docs/openapi.json");
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

#[cfg(test)]
mod tests {
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
