//! The forwarding client: how an entry node hands a job to a peer and learns what became of it,
//! over pooled HTTP/1.1 connections (hyper-util's legacy client).
//!
//! - [`Forwarder::offer`]: `POST /v1/jobs` to the peer with the job, marked as forwarded by the
//!   headers [`ENTRY_NODE`], [`JOB_ID`] and [`HOPS`]; the peer answers `202` once the job is
//!   queued, `503` if it has no room.
//! - [`Forwarder::poll`]: `GET /v1/jobs/{id}?wait=true`, which the peer holds until the job ends
//!   or [`LONG_POLL`] passes.
//!
//! Every request is bounded: a connect timeout, and a timeout on the whole exchange. With an
//! API token, every request carries it (the nodes of a cluster share one).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hearsay_shared::{JobId, JobOutcome, JobSpec, JobStatus, NodeId};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::auth::ApiToken;

/// Header naming the node a forwarded job was submitted to.
pub const ENTRY_NODE: &str = "Hearsay-Entry-Node";
/// Header carrying a forwarded job's id, assigned by the entry node.
pub const JOB_ID: &str = "Hearsay-Job-Id";
/// Header carrying how many times a job was forwarded; always 1, as a job is forwarded once.
pub const HOPS: &str = "Hearsay-Hops";
/// Header of an entry node's question after a job it forwarded: if the peer does not hold the
/// job, it must never take it from now on (it *fences* the id off), so that the entry node may
/// place it elsewhere without its running twice.
pub const FENCE: &str = "Hearsay-Fence";
/// How long the question after an offer whose answer was lost may take.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a peer holds `GET /v1/jobs/{id}?wait=true` before answering how the job stands.
pub const LONG_POLL: Duration = Duration::from_secs(10);
/// How long a connection to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a peer may take to accept or refuse a job.
pub const OFFER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a long poll may take: the peer's hold, and a margin.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read from a peer (an outcome holds at most a 64 KiB echo).
const MAX_ANSWER: usize = 1024 * 1024;

/// What a peer did with an offered job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// It holds the job, which is now in this state (`queued` or `running`).
    Accepted(JobStatus),
    /// It answered but did not take the job.
    Refused(String),
    /// It answered that it does not declare the command the `exec` job names
    /// (`400 unknown_command`): a false positive of its gossiped command set, or a
    /// configuration changed since.
    Undeclared(String),
    /// It answered that the `exec` job's args do not fit its command (`400 invalid_job` on
    /// `args`): the field and the reason.
    Invalid {
        /// `args` or `args[i]`.
        field: String,
        /// Why.
        reason: String,
    },
    /// It could not be reached: no connection, so the job was never sent.
    Unreachable(String),
    /// The job was sent but no answer came (a broken connection, or too slow): the peer may
    /// hold it. Ask before placing it elsewhere ([`Forwarder::resolve`]).
    Unconfirmed(String),
}

/// What a long poll learned.
#[derive(Debug, Clone, PartialEq)]
pub enum Poll {
    /// The job as it stands (ended, or not yet after [`LONG_POLL`]).
    Outcome(Box<JobOutcome>),
    /// The peer does not know the job (it restarted, or forgot it).
    Unknown,
    /// The peer holds too many of this node's waits already (`429`), or too many connections
    /// (`503 too_many_connections`): ask again later. Says nothing of the peer's health (it
    /// answered), so it never counts towards declaring a job lost.
    Busy,
    /// No usable answer.
    Failed(String),
}

/// Sends jobs to peers and asks after them. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `Authorization` of every request, if the cluster's API is guarded.
    authorization: Option<HeaderValue>,
}

impl Default for Forwarder {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Deserialize)]
struct Accepted {
    status: JobStatus,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    field: Option<String>,
}

impl Forwarder {
    /// A client with an empty pool, sending no token.
    pub fn new() -> Self {
        Self::with_token(None)
    }

    /// A client with an empty pool that sends `token` (if any) with every request.
    pub fn with_token(token: Option<&ApiToken>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Forwarder {
            client,
            authorization: token.map(ApiToken::header_value),
        }
    }

    /// Offers job `id` to the peer whose API is at `api`.
    pub async fn offer(&self, api: SocketAddr, id: JobId, spec: &JobSpec, entry: &NodeId) -> Offer {
        let body = match serde_json::to_vec(spec) {
            Ok(body) => body,
            Err(e) => return Offer::Refused(format!("cannot encode the job: {e}")),
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{api}/v1/jobs"))
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ENTRY_NODE, entry.as_str())
            .header(JOB_ID, id.to_string())
            .header(HOPS, "1")
            .body(Full::new(Bytes::from(body)));
        let request = match request {
            Ok(request) => request,
            Err(e) => return Offer::Refused(format!("cannot build the request: {e}")),
        };
        match self.exchange(request, OFFER_TIMEOUT).await {
            Err(Failure::NotSent(reason)) => Offer::Unreachable(reason),
            Err(Failure::Unanswered(reason)) => Offer::Unconfirmed(reason),
            Ok((StatusCode::ACCEPTED, body)) => match serde_json::from_slice::<Accepted>(&body) {
                Ok(accepted) => Offer::Accepted(accepted.status),
                // It said it took the job; trust that, and learn the rest by polling.
                Err(_) => Offer::Accepted(JobStatus::Queued),
            },
            Ok((StatusCode::BAD_REQUEST, body)) => refused_as_bad(&body),
            Ok((status, body)) => Offer::Refused(describe(status, &body)),
        }
    }

    /// Asks the peer at `api` how job `id` stands, waiting up to [`LONG_POLL`] for its end.
    /// The question fences the job off at the peer if it does not hold it ([`FENCE`]).
    pub async fn poll(&self, api: SocketAddr, id: JobId) -> Poll {
        self.ask(api, id, true, POLL_TIMEOUT).await
    }

    /// Asks the peer at `api`, at once, whether it holds job `id`, fencing the id off there if
    /// not: after [`Poll::Unknown`] the job will never run there, and may be placed elsewhere.
    pub async fn resolve(&self, api: SocketAddr, id: JobId) -> Poll {
        self.ask(api, id, false, RESOLVE_TIMEOUT).await
    }

    async fn ask(&self, api: SocketAddr, id: JobId, wait: bool, timeout: Duration) -> Poll {
        let query = if wait { "?wait=true" } else { "" };
        let request = Request::builder()
            .uri(format!("http://{api}/v1/jobs/{id}{query}"))
            .header(FENCE, "1")
            .body(Full::default());
        let request = match request {
            Ok(request) => request,
            Err(e) => return Poll::Failed(format!("cannot build the request: {e}")),
        };
        match self.exchange(request, timeout).await {
            Err(Failure::NotSent(reason) | Failure::Unanswered(reason)) => Poll::Failed(reason),
            Ok((StatusCode::OK, body)) => match serde_json::from_slice(&body) {
                Ok(outcome) => Poll::Outcome(Box::new(outcome)),
                Err(e) => Poll::Failed(format!("answered with an unreadable outcome: {e}")),
            },
            Ok((StatusCode::NOT_FOUND, _)) => Poll::Unknown,
            Ok((StatusCode::TOO_MANY_REQUESTS, _)) => Poll::Busy,
            Ok((status, body)) => poll_refused(status, &body),
        }
    }

    /// Sends `request` and reads the whole answer within `timeout`.
    async fn exchange(
        &self,
        mut request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), Failure> {
        if let Some(authorization) = &self.authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                // The legacy client's own message is "client error (Connect)"; its source says
                // what happened.
                let reason = match std::error::Error::source(&e) {
                    Some(source) => format!("{e}: {source}"),
                    None => e.to_string(),
                };
                if e.is_connect() {
                    Failure::NotSent(reason)
                } else {
                    Failure::Unanswered(reason)
                }
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| Failure::Unanswered(format!("answer cut short: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        // A timeout is taken as "sent": the request may have been written before it fired.
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Unanswered(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                )))
            })
    }
}

/// Why an exchange with a peer failed.
#[derive(Debug)]
enum Failure {
    /// No connection: the request never left.
    NotSent(String),
    /// The request may have arrived; no (whole) answer came.
    Unanswered(String),
}

/// A `400` to an offer: the peer does not declare the command, or the args do not fit it;
/// otherwise a plain refusal.
fn refused_as_bad(body: &[u8]) -> Offer {
    let Ok(answer) = serde_json::from_slice::<ErrorAnswer>(body) else {
        return Offer::Refused(describe(StatusCode::BAD_REQUEST, body));
    };
    let detail = answer.error;
    match (detail.code.as_str(), detail.field) {
        ("unknown_command", _) => Offer::Undeclared(detail.message),
        ("invalid_job", Some(field)) if field.starts_with("args") => {
            let reason = detail
                .message
                .strip_prefix(&format!("{field}: "))
                .unwrap_or(&detail.message)
                .to_owned();
            Offer::Invalid { field, reason }
        }
        _ => Offer::Refused(describe(StatusCode::BAD_REQUEST, body)),
    }
}

/// Any other answer to a poll: the peer refusing the connection for capacity is busy, not
/// failing; anything else is a failure.
fn poll_refused(status: StatusCode, body: &[u8]) -> Poll {
    let too_many_connections = status == StatusCode::SERVICE_UNAVAILABLE
        && serde_json::from_slice::<ErrorAnswer>(body)
            .is_ok_and(|answer| answer.error.code == "too_many_connections");
    if too_many_connections {
        Poll::Busy
    } else {
        Poll::Failed(describe(status, body))
    }
}

/// A peer's error answer, in a few words: its status and message.
fn describe(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(answer) => format!("{status}: {}", answer.error.message),
        Err(_) => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_peer_is_said_so() {
        // A port just freed: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let forwarder = Forwarder::new();
        let spec = JobSpec::from_json(br#"{"kind":"sleep","ms":1}"#).unwrap();
        let entry = NodeId::new("n1").unwrap();
        match forwarder.offer(addr, JobId(1), &spec, &entry).await {
            Offer::Unreachable(reason) => assert!(reason.contains("onnect"), "{reason}"),
            other => panic!("expected unreachable, got {other:?}"),
        }
        assert!(matches!(
            forwarder.poll(addr, JobId(1)).await,
            Poll::Failed(_)
        ));
    }

    #[test]
    fn error_answers_are_summarised() {
        let body = br#"{"error":{"code":"queue_full","message":"queue is full"}}"#;
        assert_eq!(
            describe(StatusCode::SERVICE_UNAVAILABLE, body),
            "503 Service Unavailable: queue is full"
        );
        assert_eq!(
            describe(StatusCode::BAD_GATEWAY, b"<html>"),
            "502 Bad Gateway"
        );
        let undeclared = br#"{"error":{"code":"unknown_command","message":"command: w2 does not declare the command \"x\"","field":"command"}}"#;
        assert!(matches!(refused_as_bad(undeclared), Offer::Undeclared(m) if m.contains("x")));
        let args = br#"{"error":{"code":"invalid_job","message":"args[0]: must not start with '-'","field":"args[0]"}}"#;
        assert_eq!(
            refused_as_bad(args),
            Offer::Invalid {
                field: "args[0]".into(),
                reason: "must not start with '-'".into()
            }
        );
        let other = br#"{"error":{"code":"invalid_job","message":"kind: unknown","field":"kind"}}"#;
        assert!(matches!(refused_as_bad(other), Offer::Refused(_)));
        // A peer refusing connections for capacity is busy: following its job goes on.
        let crowded = br#"{"error":{"code":"too_many_connections","message":"full"}}"#;
        assert_eq!(
            poll_refused(StatusCode::SERVICE_UNAVAILABLE, crowded),
            Poll::Busy
        );
        assert!(matches!(
            poll_refused(StatusCode::SERVICE_UNAVAILABLE, body),
            Poll::Failed(_)
        ));
    }
}
