//! The routes about the node itself: its liveness (`/healthz`), its load map (`/v1/cluster`),
//! what it is (`/v1/info`), its metrics (`/metrics`), the OpenAPI document of its API, and
//! `POST /v1/drain`, which makes it leave. [`super::routes`] routes requests here.

use std::error::Error as StdError;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::gossip::SharedGossip;
use crate::http::info::ServerInfo;
use crate::http::job_routes;
use crate::http::limits::ConnectionLimiter;
use crate::http::view::{json, ClusterView, ErrorBody};
use crate::jobs::dispatch::Dispatcher;
use crate::metrics::{Exposition, Format};

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

/// `GET /v1/cluster`: this node's load map, with the moves of jobs between nodes it saw.
pub(super) fn cluster(gossip: &SharedGossip, jobs: &Dispatcher) -> Response<Full<Bytes>> {
    let now = tokio::time::Instant::now().into_std();
    let mut view = ClusterView::of_shared(gossip, now);
    view.moves = Some(jobs.stats().into());
    let mut response = json(StatusCode::OK, &view);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /v1/info`: what this node is.
pub(super) fn info(info: &ServerInfo) -> Response<Full<Bytes>> {
    let mut response = json(StatusCode::OK, &info.body());
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /metrics`: in the format the request's `Accept` asks for.
pub(super) fn metrics(headers: &HeaderMap, metrics: &Exposition) -> Response<Full<Bytes>> {
    let accept = headers.get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::for_accept(accept);
    let mut response = Response::new(Full::new(Bytes::from(metrics.encode(format))));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

/// `POST /v1/drain`: leaves the cluster gracefully, as `SIGTERM` makes the node do — it takes
/// no new jobs, gossips that it leaves, hands its queue on to peers, lets its running jobs
/// finish (for at most the drain timeout), then exits (the `worker` process with 0). Answers
/// `202` at once with the node, `"status": "leaving"`, whether it was leaving already, and its
/// work then. No query; a body, if any, is an empty JSON object.
pub(super) async fn drain<B>(
    req: Request<B>,
    jobs: &Dispatcher,
    shutdown: &CancellationToken,
) -> Response<Full<Bytes>>
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
    let already = jobs.is_leaving() || shutdown.is_cancelled();
    let work = jobs.work();
    // What NodeHandle::shutdown does: refuse new jobs at once, then the drain task and the
    // gossip task leave; the process exits once they are done.
    jobs.stop_accepting();
    shutdown.cancel();
    if !already {
        tracing::info!(node = %jobs.node(), "asked to leave over the API (POST /v1/drain)");
    }
    json(
        StatusCode::ACCEPTED,
        &serde_json::json!({
            "node": jobs.node(),
            "status": "leaving",
            "already_leaving": already,
            "queued": work.queued,
            "running": work.running,
        }),
    )
}

/// `GET /v1/openapi.json`: the OpenAPI document of this API, `docs/openapi.json` compiled in.
pub(super) fn openapi() -> Response<Full<Bytes>> {
    let document = include_str!("../../../docs/openapi.json");
    let mut response = Response::new(Full::new(Bytes::from_static(document.as_bytes())));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
