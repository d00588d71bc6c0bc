//! The peer protocol over HTTP: the routes by which nodes move jobs between them, apart from
//! the client API, and the client that sends them. It carries the hand-off core's
//! [`Request`]s and brings back its [`Answer`]s; it decides nothing itself.
//!
//! | route | body | answer (`200`) |
//! |---|---|---|
//! | `POST /v1/peer/offer` | `{"id", "entry", "incarnation", "kind": "forward"\|"steal", "path": [...], "job": {...}}` | `{"answer": "accepted", "status"}` or `{"answer": "refused", "reason", "message", "field"?}` |
//! | `POST /v1/peer/ask` | `{"id", "wait", "incarnation"}` (fences the id if not held) | `{"answer": "held", "outcome": {...}}`, `"moved"` with `"node"`, `"unknown"`, `"restarted"`; `429` when busy |
//! | `POST /v1/peer/steal` | `{"thief", "incarnation"}` | `{"answer": "empty"}` or `{"answer": "coming", "id"}` |
//!
//! Every route takes the API token like the rest of the API. A body that is not what the route
//! expects is `400 invalid_peer_request`, naming the field. What the transport can say instead
//! of an answer: [`Answer::NotSent`] when no connection was made (the request certainly never
//! arrived), [`Answer::Unanswered`] for everything else that is not a readable answer.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hearsay_scheduler::handoff::{
    Answer, AskAnswer, MoveKind, Offer, OfferAnswer, Refusal, Request as PeerRequest, StealAnswer,
};
use hearsay_shared::{JobId, JobOutcome, JobSpec, JobStatus, LoadReport, NodeId};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::http::auth::ApiToken;

/// The offer route.
pub const OFFER: &str = "/v1/peer/offer";
/// The ask route.
pub const ASK: &str = "/v1/peer/ask";
/// The steal route.
pub const STEAL: &str = "/v1/peer/steal";
/// How long a peer holds an ask with `"wait": true` before answering how the job stands.
pub const LONG_POLL: Duration = Duration::from_secs(10);
/// How long a connection to a peer may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The largest answer read from a peer (an outcome holds at most a capped output).
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// The header of a client's cancel sent on by a node that follows the job: how many nodes sent
/// it on so far. A node sends on only a cancel that has come fewer than [`MAX_CANCEL_HOPS`]
/// times, so a cancel never goes round in a circle.
pub const CANCEL_HOPS: &str = "x-hearsay-cancel-hops";
/// The most times a cancel is sent on (a job moves at most twice).
pub const MAX_CANCEL_HOPS: u32 = 2;
/// How long a cancel sent on may take: a forced one waits for the job to stop.
pub const CANCEL_TIMEOUT: Duration = Duration::from_secs(15);

/// The answer to an offer, on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum OfferReply {
    /// Taken; it stands so.
    Accepted {
        /// `queued` or `running`.
        status: JobStatus,
    },
    /// Not taken.
    Refused {
        /// Why, as a word.
        reason: RefusalCode,
        /// Why, in a sentence.
        message: String,
        /// The job field at fault, for `invalid`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        field: Option<String>,
    },
}

/// The reasons of [`Refusal`], as words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum RefusalCode {
    Full,
    Leaving,
    Fenced,
    TooManyMoves,
    WrongIncarnation,
    Undeclared,
    Invalid,
    Other,
}

impl From<OfferAnswer> for OfferReply {
    fn from(answer: OfferAnswer) -> Self {
        let refusal = match answer {
            OfferAnswer::Accepted(status) => return OfferReply::Accepted { status },
            OfferAnswer::Refused(refusal) => refusal,
        };
        let message = refusal.to_string();
        let (reason, field) = match refusal {
            Refusal::Full => (RefusalCode::Full, None),
            Refusal::Leaving => (RefusalCode::Leaving, None),
            Refusal::Fenced => (RefusalCode::Fenced, None),
            Refusal::TooManyMoves => (RefusalCode::TooManyMoves, None),
            Refusal::WrongIncarnation => (RefusalCode::WrongIncarnation, None),
            Refusal::Undeclared(_) => (RefusalCode::Undeclared, None),
            Refusal::Invalid { field, .. } => (RefusalCode::Invalid, Some(field)),
            Refusal::Other(_) => (RefusalCode::Other, None),
        };
        OfferReply::Refused {
            reason,
            message,
            field,
        }
    }
}

impl From<OfferReply> for OfferAnswer {
    fn from(reply: OfferReply) -> Self {
        let (reason, message, field) = match reply {
            OfferReply::Accepted { status } => return OfferAnswer::Accepted(status),
            OfferReply::Refused {
                reason,
                message,
                field,
            } => (reason, message, field),
        };
        OfferAnswer::Refused(match reason {
            RefusalCode::Full => Refusal::Full,
            RefusalCode::Leaving => Refusal::Leaving,
            RefusalCode::Fenced => Refusal::Fenced,
            RefusalCode::TooManyMoves => Refusal::TooManyMoves,
            RefusalCode::WrongIncarnation => Refusal::WrongIncarnation,
            RefusalCode::Undeclared => Refusal::Undeclared(message),
            RefusalCode::Invalid => {
                let field = field.unwrap_or_else(|| "args".into());
                let prefix = format!("{field}: ");
                let reason = message.strip_prefix(&prefix).unwrap_or(&message).to_owned();
                Refusal::Invalid { field, reason }
            }
            RefusalCode::Other => Refusal::Other(message),
        })
    }
}

/// The answer to an ask, on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum AskReply {
    /// Held here; the job as it stands (its output too, once ended).
    Held { outcome: Box<JobOutcome> },
    /// Moved on from here to `node`.
    Moved { node: NodeId },
    /// Not held here, and now fenced off.
    Unknown,
    /// Not held by this incarnation (fenced); an earlier one may have held it.
    Restarted,
}

/// The answer to a steal, on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum StealReply {
    /// None to give; `load` is the victim's own report as it answers, which the thief merges
    /// into its map as news (absent from a peer that sends none).
    Empty {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        load: Option<Box<LoadReport>>,
    },
    Coming {
        id: JobId,
    },
}

/// A peer request at fault: the field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    /// The field (`body` for the whole).
    pub field: String,
    /// Why.
    pub reason: String,
}

/// The fields of a peer request's JSON object, each read once; any other key is refused.
struct Fields(Map<String, Value>);

impl Fields {
    fn of(body: &[u8], known: &[&str]) -> Result<Fields, BadRequest> {
        let bad = |field: &str, reason: String| BadRequest {
            field: field.into(),
            reason,
        };
        let value = hearsay_shared::json::parse(body, hearsay_shared::job::MAX_JSON_DEPTH)
            .map_err(|e| bad("body", e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(bad("body", "must be a JSON object".into()));
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(bad(
                unknown,
                format!("is not a field; the fields are {known:?}"),
            ));
        }
        Ok(Fields(map))
    }

    fn take<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, BadRequest> {
        let value = self.0.remove(name).ok_or_else(|| BadRequest {
            field: name.into(),
            reason: "is required".into(),
        })?;
        serde_json::from_value(value).map_err(|e| BadRequest {
            field: name.into(),
            reason: e.to_string(),
        })
    }
}

/// An offer's body: the offer and the job's spec, checked as a client's would be.
pub fn parse_offer(body: &[u8]) -> Result<(Offer, JobSpec), BadRequest> {
    let mut f = Fields::of(body, &["id", "entry", "incarnation", "kind", "path", "job"])?;
    let kind = match f.take::<String>("kind")?.as_str() {
        "forward" => MoveKind::Forward,
        "steal" => MoveKind::Steal,
        other => {
            return Err(BadRequest {
                field: "kind".into(),
                reason: format!("must be forward or steal, not {other:?}"),
            })
        }
    };
    let offer = Offer {
        id: f.take("id")?,
        entry: f.take("entry")?,
        incarnation: f.take("incarnation")?,
        kind,
        path: f.take("path")?,
    };
    if offer.path.is_empty() {
        return Err(BadRequest {
            field: "path".into(),
            reason: "must name at least the entry node".into(),
        });
    }
    let job: Value = f.take("job")?;
    let spec = JobSpec::from_value(&job).map_err(|e| BadRequest {
        field: format!("job.{}", e.field),
        reason: e.reason,
    })?;
    Ok((offer, spec))
}

/// An ask's body: the job, whether to wait for its end, the incarnation meant.
pub fn parse_ask(body: &[u8]) -> Result<(JobId, bool, u64), BadRequest> {
    let mut f = Fields::of(body, &["id", "wait", "incarnation"])?;
    Ok((f.take("id")?, f.take("wait")?, f.take("incarnation")?))
}

/// A steal's body: the thief and the incarnation of this node it meant.
pub fn parse_steal(body: &[u8]) -> Result<(NodeId, u64), BadRequest> {
    let mut f = Fields::of(body, &["thief", "incarnation"])?;
    Ok((f.take("thief")?, f.take("incarnation")?))
}

/// Sends the core's requests to peers. Cloning shares the connection pool.
#[derive(Debug, Clone)]
pub struct Peers {
    me: NodeId,
    client: Client<HttpConnector, Full<Bytes>>,
    /// `Authorization` of every request, if the cluster's API is guarded.
    authorization: Option<HeaderValue>,
}

impl Peers {
    /// A client for node `me`, with an empty pool, that sends `token` (if any).
    pub fn new(me: NodeId, token: Option<&ApiToken>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Peers {
            me,
            client,
            authorization: token.map(ApiToken::header_value),
        }
    }

    /// Sends `request` to the peer at `api` (with the job's `spec` for an offer) and waits at
    /// most `timeout` for its answer; for an ask answered `held`, the job as the peer has it.
    pub async fn send(
        &self,
        api: SocketAddr,
        request: &PeerRequest,
        spec: Option<&JobSpec>,
        timeout: Duration,
    ) -> (Answer, Option<JobOutcome>) {
        let (path, body) = match request {
            PeerRequest::Offer(offer) => {
                let kind = match offer.kind {
                    MoveKind::Forward => "forward",
                    MoveKind::Steal => "steal",
                };
                let body = serde_json::json!({
                    "id": offer.id, "entry": offer.entry, "incarnation": offer.incarnation,
                    "kind": kind, "path": offer.path, "job": spec,
                });
                (OFFER, body)
            }
            PeerRequest::Ask {
                id,
                wait,
                incarnation,
            } => (
                ASK,
                serde_json::json!({"id": id, "wait": wait, "incarnation": incarnation}),
            ),
            PeerRequest::Steal { incarnation } => (
                STEAL,
                serde_json::json!({"thief": self.me, "incarnation": incarnation}),
            ),
        };
        let (status, body) = match self.exchange(api, path, &body, timeout).await {
            Ok(answer) => answer,
            Err(answer) => return (answer, None),
        };
        let busy = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::SERVICE_UNAVAILABLE
                && error_code(&body) == "too_many_connections");
        match request {
            PeerRequest::Ask { .. } if busy => (Answer::Ask(AskAnswer::Busy), None),
            PeerRequest::Ask { .. } if status == StatusCode::OK => {
                match serde_json::from_slice::<AskReply>(&body) {
                    Ok(AskReply::Held { outcome }) => {
                        (Answer::Ask(AskAnswer::Held(outcome.status)), Some(*outcome))
                    }
                    Ok(AskReply::Moved { node }) => (Answer::Ask(AskAnswer::Moved(node)), None),
                    Ok(AskReply::Unknown) => (Answer::Ask(AskAnswer::Unknown), None),
                    Ok(AskReply::Restarted) => (Answer::Ask(AskAnswer::Restarted), None),
                    Err(e) => (unreadable(&e), None),
                }
            }
            PeerRequest::Offer(_) if status == StatusCode::OK => {
                match serde_json::from_slice::<OfferReply>(&body) {
                    Ok(reply) => (Answer::Offer(reply.into()), None),
                    Err(e) => (unreadable(&e), None),
                }
            }
            PeerRequest::Steal { .. } if status == StatusCode::OK => {
                match serde_json::from_slice::<StealReply>(&body) {
                    Ok(StealReply::Empty { load }) => {
                        (Answer::Steal(StealAnswer::Empty { load }), None)
                    }
                    Ok(StealReply::Coming { id }) => (Answer::Steal(StealAnswer::Coming(id)), None),
                    Err(e) => (unreadable(&e), None),
                }
            }
            // Refused before the core saw it (the token, the body, the connection limit): the
            // peer does not hold the job.
            PeerRequest::Offer(_) if status.is_client_error() || busy => (
                Answer::Offer(OfferAnswer::Refused(Refusal::Other(describe(
                    status, &body,
                )))),
                None,
            ),
            _ => (Answer::Unanswered(describe(status, &body)), None),
        }
    }

    /// Sends a client's `DELETE /v1/jobs/{id}` (with `?force=true` if `force`) on to the node
    /// at `api` that holds the job, as the `hops`-th node to send it on; its answer's status
    /// and body, or why none came.
    pub async fn cancel(
        &self,
        api: SocketAddr,
        id: JobId,
        force: bool,
        hops: u32,
    ) -> Result<(StatusCode, Bytes), String> {
        let query = if force { "?force=true" } else { "" };
        let path = format!("/v1/jobs/{id}{query}");
        let hops = HeaderValue::from(hops.saturating_add(1));
        let extra = [(CANCEL_HOPS, hops)];
        self.exchange_with(Method::DELETE, api, &path, None, &extra, CANCEL_TIMEOUT)
            .await
            .map_err(|answer| match answer {
                Answer::NotSent(reason) | Answer::Unanswered(reason) => reason,
                other => format!("{other:?}"),
            })
    }

    /// POSTs `body` to `path` at `api` and reads the whole answer within `timeout`.
    async fn exchange(
        &self,
        api: SocketAddr,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), Answer> {
        self.exchange_with(Method::POST, api, path, Some(body), &[], timeout)
            .await
    }

    /// Sends `method` to `path` at `api` (with the JSON `body`, if any, and the `extra`
    /// headers) and reads the whole answer within `timeout`.
    async fn exchange_with(
        &self,
        method: Method,
        api: SocketAddr,
        path: &str,
        body: Option<&Value>,
        extra: &[(&'static str, HeaderValue)],
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), Answer> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{api}{path}"));
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in extra {
            request = request.header(*name, value.clone());
        }
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let mut request = request
            .body(Full::new(body))
            .map_err(|e| Answer::NotSent(format!("cannot build the request: {e}")))?;
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
                    Answer::NotSent(reason)
                } else {
                    Answer::Unanswered(reason)
                }
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| Answer::Unanswered(format!("answer cut short: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        // A timeout is taken as "sent": the request may have been written before it fired.
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(Answer::Unanswered(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                )))
            })
    }
}

fn unreadable(e: &serde_json::Error) -> Answer {
    Answer::Unanswered(format!("answered with something unreadable: {e}"))
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
}

fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<ErrorAnswer>(body)
        .map(|a| a.error.code)
        .unwrap_or_default()
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

    #[test]
    fn an_empty_steal_answer_carries_the_victim_s_report_or_none() {
        let node = NodeId::new("victim").unwrap();
        let report = LoadReport {
            node: node.clone(),
            incarnation: 7,
            seq: 3,
            load: hearsay_shared::LoadVector::idle(2),
            api: "127.0.0.1:8080".parse().unwrap(),
            gossip: "127.0.0.1:7946".parse().unwrap(),
        };
        let reply = StealReply::Empty {
            load: Some(Box::new(report.clone())),
        };
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<StealReply>(&json).unwrap(), reply);
        // A peer that sends no report is heard as empty all the same.
        let bare: StealReply = serde_json::from_str(r#"{"answer":"empty"}"#).unwrap();
        assert_eq!(bare, StealReply::Empty { load: None });
    }

    #[tokio::test]
    async fn a_request_to_nothing_was_never_sent() {
        // A port just freed: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let peers = Peers::new(NodeId::new("n1").unwrap(), None);
        let ask = PeerRequest::Ask {
            id: JobId(1),
            wait: false,
            incarnation: 1,
        };
        match peers.send(addr, &ask, None, Duration::from_secs(2)).await {
            (Answer::NotSent(reason), None) => assert!(reason.contains("onnect"), "{reason}"),
            other => panic!("expected not sent, got {other:?}"),
        }
    }

    #[test]
    fn refusals_cross_the_wire_unchanged() {
        for refusal in [
            Refusal::Full,
            Refusal::Leaving,
            Refusal::Fenced,
            Refusal::TooManyMoves,
            Refusal::WrongIncarnation,
            Refusal::Invalid {
                field: "args[0]".into(),
                reason: "must not start with '-'".into(),
            },
        ] {
            let reply = OfferReply::from(OfferAnswer::Refused(refusal.clone()));
            let wire: OfferReply =
                serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
            assert_eq!(OfferAnswer::from(wire), OfferAnswer::Refused(refusal));
        }
    }

    #[test]
    fn a_bad_peer_request_names_its_field() {
        let job = r#""job":{"kind":"sleep","ms":1}"#;
        let ok = format!(
            r#"{{"id":"00000000000000ff","entry":"n1","incarnation":7,"kind":"forward","path":["n1"],{job}}}"#
        );
        let (offer, spec) = parse_offer(ok.as_bytes()).unwrap();
        assert_eq!(
            (offer.id, offer.incarnation, offer.moves()),
            (JobId(255), 7, 1)
        );
        assert_eq!(spec.kind.name(), "sleep");
        let field = |body: &str| parse_offer(body.as_bytes()).unwrap_err().field;
        assert_eq!(field(&ok.replace("\"forward\"", "\"jump\"")), "kind");
        assert_eq!(field(&ok.replace("\"n1\",", "\"a b\",")), "entry");
        assert_eq!(field(&ok.replace("[\"n1\"]", "[]")), "path");
        assert_eq!(field(&ok.replace("\"ms\":1", "\"ms\":-1")), "job.ms");
        assert_eq!(field(&ok.replace("\"incarnation\":7", "\"x\":7")), "x");
        assert_eq!(field(r#"{"id":"00000000000000ff"}"#), "kind");
        assert_eq!(field("[1]"), "body");
        assert_eq!(
            parse_ask(br#"{"id":"00000000000000ff","wait":1,"incarnation":1}"#)
                .unwrap_err()
                .field,
            "wait"
        );
        assert_eq!(
            parse_steal(br#"{"incarnation":1}"#).unwrap_err().field,
            "thief"
        );
    }
}
