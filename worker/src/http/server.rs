//! The HTTP server: a hyper 1.x server (HTTP/1.1 and HTTP/2 through hyper-util's `auto`
//! builder) with graceful shutdown; the routes are [`super::routes`].
//!
//! Connections: request heads must arrive within [`HEADER_READ_TIMEOUT`] and fit in
//! [`MAX_HEAD_BYTES`] (else hyper answers `431` and closes); a request hyper cannot parse gets
//! hyper's bare `400` and is counted as `malformed`. Bodies are timed ([`TimedBody`]: whole
//! within `--body-timeout`, at `--body-min-rate` after `--body-rate-grace`), else `408
//! body_timeout` and the connection is closed. Connections are counted per client IP and in all
//! ([`ConnectionLimiter`]); one over a cap is answered by `refuse` and closed, and counted in
//! `hearsay_http_connections_refused_total{reason}`; for [`super::limits::REFUSING_WINDOW`]
//! after such a refusal `/healthz` says `refusing_connections` (still `200`: see
//! [`super::node_routes`]).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::limits::{
    Admission, ClientAddr, ConnectionLimiter, ConnectionRefusal, TimedBody,
    CONNECTION_RETRY_AFTER_SECS, REFUSAL_ANSWERS, REFUSAL_HEAD_TIMEOUT,
};
use super::node_routes::health;
use super::routes::{route_timed, ApiState};
use super::view::{json, ErrorBody};

/// How long open connections may take to finish their requests once the server stops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How long a client may take to send a request's head (the request line and headers), also
/// the longest an idle keep-alive connection is kept; then the connection is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head accepted (HTTP/1 read buffer; HTTP/2 header list), in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// HTTP/2 streams one connection may have open at once.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 128;

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

/// Resolves after `limit` if no request has `started` by then; otherwise never.
async fn silent_for(limit: Duration, started: &AtomicBool) {
    tokio::time::sleep(limit).await;
    if started.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}
