//! The job routes of the HTTP API: reading and checking a request, and answering it.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/jobs` | `202` with `Location: /v1/jobs/{id}` and [`Accepted`]; with `?wait=true`, `200` and the [`JobOutcome`] once the job has ended |
//! | `GET /v1/jobs/{id}` | `200` and the [`JobOutcome`] as it stands; with `?wait=true`, held until the job ends or [`LONG_POLL`] passes |
//!
//! A job forwarded by a peer carries the headers [`ENTRY_NODE`], [`JOB_ID`] and [`HOPS`]; it is
//! run here or refused, never forwarded again.
//!
//! Errors: `400` for a request at fault, naming the field (a job field, `body`, a query
//! parameter, a header, or `id`; `duplicate_key` and the key's path for a JSON object that
//! names a key twice); `404` for an unknown job; `413` for a body over [`MAX_BODY`]
//! (after reading and discarding up to [`DISCARD_LIMIT`] of it, so that the client sees it);
//! `503` with `Retry-After` when no node in reach has room or this node is leaving; `429` with
//! `Retry-After` for a `?wait=true` beyond the client's open waits (`--max-waits-per-client`).

use std::error::Error as StdError;

use bytes::Bytes;
use hearsay_shared::job::MAX_JSON_DEPTH;
use hearsay_shared::json::{self, JsonRefusal};
use hearsay_shared::{JobError, JobId, JobOutcome, JobSpec, NodeId};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{
    HeaderMap, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, LOCATION, RETRY_AFTER,
};
use hyper::{Request, Response, StatusCode};

use crate::api::json;
use crate::dispatch::{Accepted, Dispatcher, SubmitError};
use crate::executor::Refusal;
use crate::forward::{ENTRY_NODE, HOPS, JOB_ID, LONG_POLL};
use crate::limits::{ClientAddr, WaitLimiter, WaitPermit, WAIT_RETRY_AFTER_SECS};
use crate::view::ErrorBody;

/// The largest job body accepted, in bytes: 1 MiB.
pub const MAX_BODY: usize = 1024 * 1024;
/// The most of a refused body that is read (and thrown away) so that the client can read the
/// `413`; a longer one is cut off.
pub const DISCARD_LIMIT: usize = 8 * MAX_BODY;
/// The header that makes a submission idempotent.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Set to `true` on the answer to a submission whose key named a job already.
pub const IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";
/// The longest idempotency key.
pub const MAX_KEY_LEN: usize = 128;
/// What a client told to come back is told to wait, in seconds.
const RETRY_AFTER_SECS: &str = "1";

/// An error answer: its status and body.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    /// Close the connection after answering (the request was not read to its end).
    close: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody::new(code, message),
            close: false,
        }
    }

    /// A request at fault in `field`, with the message `<field>: <reason>`.
    fn field(
        status: StatusCode,
        code: &'static str,
        field: &str,
        reason: impl std::fmt::Display,
    ) -> Self {
        ApiError {
            status,
            body: ErrorBody::new(code, format!("{field}: {reason}")).with_field(field),
            close: false,
        }
    }

    fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = json(self.status, &self.body);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(WAIT_RETRY_AFTER_SECS));
        }
        if self.close {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// The job in a request body: strict JSON (a key twice anywhere is `400 duplicate_key` naming
/// its path), then the job's own checks (`400 invalid_job` naming the field).
fn parse_job(body: &[u8]) -> Result<JobSpec, ApiError> {
    let value = json::parse(body, MAX_JSON_DEPTH).map_err(|refusal| {
        let code = match refusal {
            JsonRefusal::DuplicateKey { .. } => "duplicate_key",
            JsonRefusal::Syntax(_) | JsonRefusal::TooDeep { .. } => "invalid_job",
        };
        let e = JobError::from(refusal);
        ApiError::field(StatusCode::BAD_REQUEST, code, &e.field, &e.reason)
    })?;
    JobSpec::from_value(&value)
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "invalid_job", &e.field, &e.reason))
}

/// A wait for client `ip`, or the `429` that says it has too many open.
fn take_wait(waits: &WaitLimiter, ip: std::net::IpAddr) -> Result<WaitPermit, ApiError> {
    waits
        .acquire(ip)
        .map_err(|e| ApiError::field(StatusCode::TOO_MANY_REQUESTS, "too_many_waits", "wait", e))
}

/// `POST /v1/jobs`.
pub(crate) async fn submit<B>(
    req: Request<B>,
    jobs: &Dispatcher,
    waits: &WaitLimiter,
) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    submit_checked(req, jobs, waits).await.unwrap_or_else(|e| {
        if e.status == StatusCode::SERVICE_UNAVAILABLE {
            jobs.metrics().rejected(e.body.error.code);
        }
        e.into_response()
    })
}

async fn submit_checked<B>(
    req: Request<B>,
    jobs: &Dispatcher,
    waits: &WaitLimiter,
) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let wait = wait_param(req.uri().query())?;
    // Taken before the job is, so that a refused wait leaves no job behind; held until the
    // answer is sent or the client goes away.
    let _permit = if wait {
        Some(take_wait(waits, ClientAddr::ip_of(&req))?)
    } else {
        None
    };
    let forwarded = forwarded_from(req.headers())?;
    // A peer's forward never carries a key (it is the entry node's business); ignore one.
    let key = match forwarded {
        None => idempotency_key(req.headers())?,
        Some(_) => None,
    };
    let body = read_body(req).await?;
    let spec = parse_job(&body)?;
    if forwarded.is_none() {
        jobs.metrics().job_submitted();
    }
    if jobs.is_leaving() {
        return Err(leaving());
    }
    let mut replayed = false;
    let accepted = match forwarded {
        Some(Forwarded { id, entry }) => match jobs.accept_forwarded(id, spec, entry) {
            Ok(status) => Accepted {
                id,
                status,
                executing_node: jobs.node().clone(),
            },
            Err(Refusal::Full) => {
                return Err(ApiError::unavailable(
                    "queue_full",
                    format!("{} has every slot busy and its queue full", jobs.node()),
                ))
            }
            Err(Refusal::Closed) => return Err(leaving()),
            Err(refusal @ Refusal::Fenced(_)) => {
                return Err(ApiError::field(
                    StatusCode::CONFLICT,
                    "fenced",
                    JOB_ID,
                    refusal.to_string(),
                ))
            }
            Err(Refusal::Duplicate(e)) => {
                return Err(ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_forward",
                    JOB_ID,
                    e,
                ))
            }
            // The entry node places the job again elsewhere (a false positive of this node's
            // gossiped command set, or a configuration changed since).
            Err(Refusal::Undeclared(command)) => {
                return Err(unknown_command(format!(
                    "{} does not declare the command {command:?}",
                    jobs.node()
                )))
            }
            Err(Refusal::BadArgs(e)) => {
                return Err(ApiError::field(
                    StatusCode::BAD_REQUEST,
                    "invalid_job",
                    &e.field,
                    &e.reason,
                ))
            }
        },
        None => {
            let submitted = match key {
                Some(key) => jobs.submit_with_key(key, spec).await.map(|keyed| {
                    replayed = keyed.replayed;
                    keyed.accepted
                }),
                None => jobs.submit(spec).await,
            };
            submitted.map_err(|e| match e {
                SubmitError::NoRoom(_) => ApiError::unavailable("no_capacity", e.to_string()),
                SubmitError::Leaving => leaving(),
                SubmitError::KeyReused(_) => ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    IDEMPOTENCY_KEY,
                    e,
                ),
                SubmitError::UnknownCommand(command) => {
                    unknown_command(format!("no node in reach declares the command {command:?}"))
                }
                SubmitError::Invalid { field, reason } => {
                    ApiError::field(StatusCode::BAD_REQUEST, "invalid_job", &field, reason)
                }
            })?
        }
    };
    let mark = |response: &mut Response<Full<Bytes>>| {
        if replayed {
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
    };
    if wait {
        if let Some(outcome) = jobs.wait(accepted.id, None).await {
            let mut response = json(StatusCode::OK, &outcome);
            mark(&mut response);
            return Ok(response);
        }
        // Forgotten already (retention of a single job): say where to look, as without wait.
    }
    let mut response = json(StatusCode::ACCEPTED, &accepted);
    mark(&mut response);
    let location = format!("/v1/jobs/{}", accepted.id);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/jobs/{id}` (and `HEAD`).
/// `GET /v1/jobs/{id}`. With the [`FENCE`](crate::forward::FENCE) header (an entry node asking after a job it
/// forwarded here), an id this node does not hold is fenced off first: it will never be taken.
pub(crate) async fn status(
    id: &str,
    query: Option<&str>,
    fence: bool,
    jobs: &Dispatcher,
    waits: &WaitLimiter,
    client: std::net::IpAddr,
) -> Response<Full<Bytes>> {
    status_checked(id, query, fence, jobs, waits, client)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn status_checked(
    id: &str,
    query: Option<&str>,
    fence: bool,
    jobs: &Dispatcher,
    waits: &WaitLimiter,
    client: std::net::IpAddr,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let id: JobId = id
        .parse()
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "invalid_job_id", "id", e))?;
    let wait = wait_param(query)?;
    let outcome: Option<JobOutcome> = if fence && jobs.fence(id).is_none() {
        None
    } else if wait {
        let _permit = take_wait(waits, client)?;
        jobs.wait(id, Some(LONG_POLL)).await
    } else {
        jobs.outcome(id)
    };
    match outcome {
        Some(outcome) => Ok(json(StatusCode::OK, &outcome)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_job",
            format!("no job {id} here: never submitted here, or finished and forgotten"),
        )),
    }
}

/// `400 unknown_command` on the field `command`.
fn unknown_command(reason: String) -> ApiError {
    ApiError::field(
        StatusCode::BAD_REQUEST,
        "unknown_command",
        "command",
        reason,
    )
}

fn leaving() -> ApiError {
    ApiError::unavailable("leaving", "this node is leaving and takes no new jobs")
}

/// The `wait` query parameter: `true` or `false` (the default). Any other parameter, value or
/// repetition is refused.
fn wait_param(query: Option<&str>) -> Result<bool, ApiError> {
    let bad = |field: &str, reason: String| {
        ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", field, reason)
    };
    let mut wait = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "wait" {
            return Err(bad(
                key,
                "unknown query parameter; the only one is wait".into(),
            ));
        }
        if wait.is_some() {
            return Err(bad("wait", "is given more than once".into()));
        }
        wait = Some(match value {
            "true" => true,
            "false" => false,
            other => return Err(bad("wait", format!("must be true or false, not {other:?}"))),
        });
    }
    Ok(wait.unwrap_or(false))
}

/// The [`IDEMPOTENCY_KEY`] header, if given: once, 1 to [`MAX_KEY_LEN`] visible ASCII
/// characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let bad = |reason: String| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            IDEMPOTENCY_KEY,
            reason,
        )
    };
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(bad("is given more than once".into()));
    }
    let key = value.as_bytes();
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(bad(format!(
            "must be 1 to {MAX_KEY_LEN} characters, not {}",
            key.len()
        )));
    }
    if !key.iter().all(|b| b.is_ascii_graphic()) {
        return Err(bad(
            "must be visible ASCII characters only (no spaces or controls)".into(),
        ));
    }
    Ok(Some(String::from_utf8_lossy(key).into_owned()))
}

/// Who forwarded a job, from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Forwarded {
    id: JobId,
    entry: NodeId,
}

/// `None` for a job submitted by a client (no `Hearsay-*` header); the entry node and id for a
/// job forwarded by a peer, whose three headers must all be there, once each, and well formed.
fn forwarded_from(headers: &HeaderMap) -> Result<Option<Forwarded>, ApiError> {
    if ![ENTRY_NODE, JOB_ID, HOPS]
        .iter()
        .any(|name| headers.contains_key(*name))
    {
        return Ok(None);
    }
    let bad = |name: &str, reason: String| {
        ApiError::field(StatusCode::BAD_REQUEST, "invalid_forward", name, reason)
    };
    let text = |name: &'static str| -> Result<&str, ApiError> {
        let mut values = headers.get_all(name).iter();
        let value = values.next().ok_or_else(|| {
            bad(
                name,
                format!("is required on a forwarded job, with {ENTRY_NODE}, {JOB_ID} and {HOPS}"),
            )
        })?;
        if values.next().is_some() {
            return Err(bad(name, "is given more than once".into()));
        }
        value
            .to_str()
            .map_err(|_| bad(name, "is not printable ASCII".into()))
    };
    let hops = text(HOPS)?;
    if hops != "1" {
        return Err(bad(
            HOPS,
            format!("must be 1: a job is forwarded at most once, not {hops:?}"),
        ));
    }
    let id = text(JOB_ID)?
        .parse::<JobId>()
        .map_err(|e| bad(JOB_ID, e.to_string()))?;
    let entry = NodeId::new(text(ENTRY_NODE)?).map_err(|e| bad(ENTRY_NODE, e.to_string()))?;
    Ok(Some(Forwarded { id, entry }))
}

/// The whole body, if it is at most [`MAX_BODY`] bytes: a `Content-Length` over it is refused
/// without keeping anything, and reading stops keeping at the limit whatever the headers said.
///
/// A refused body is still read and thrown away, up to [`DISCARD_LIMIT`], before the `413` is
/// sent: a client that is still sending when the server closes the connection gets a broken
/// pipe instead of the answer.
async fn read_body<B>(req: Request<B>) -> Result<Bytes, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let too_large = |size: String| {
        let mut e = ApiError::field(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "body",
            format!("is {size}; at most {MAX_BODY} bytes are allowed"),
        );
        e.close = true;
        e
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let refused = declared.filter(|&length| length > MAX_BODY as u64);
    // A client that asked to hear first (`Expect: 100-continue`) has sent nothing yet, and
    // one sending more than the discard limit is not worth reading: answer at once.
    let expects_continue = req
        .headers()
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if let Some(length) = refused {
        if expects_continue || length > DISCARD_LIMIT as u64 {
            return Err(too_large(format!("{length} bytes")));
        }
    }
    let mut body = std::pin::pin!(req.into_body());
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let e: Box<dyn StdError + Send + Sync> = e.into();
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "body",
                format!("cannot be read: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen > DISCARD_LIMIT {
            return Err(too_large(format!("over {DISCARD_LIMIT} bytes")));
        }
        if refused.is_none() && seen <= MAX_BODY {
            kept.extend_from_slice(&data);
        }
    }
    match refused {
        Some(length) => Err(too_large(format!("{length} bytes"))),
        None if seen > MAX_BODY => Err(too_large(format!("{seen} bytes"))),
        None => Ok(Bytes::from(kept)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_is_true_false_or_refused() {
        assert!(!wait_param(None).unwrap());
        assert!(wait_param(Some("wait=true")).unwrap());
        assert!(!wait_param(Some("wait=false")).unwrap());
        for bad in ["wait=yes", "wait", "wait=true&wait=true", "wiat=true"] {
            let e = wait_param(Some(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            let field = e.body.error.field.unwrap();
            assert!(field == "wait" || field == "wiat", "{bad}: {field}");
        }
    }

    #[test]
    fn idempotency_keys_are_visible_ascii_of_1_to_128() {
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
        let long = "k".repeat(MAX_KEY_LEN);
        assert_eq!(
            idempotency_key(&headers(&[(IDEMPOTENCY_KEY, &long)])).unwrap(),
            Some(long.clone())
        );
        let too_long = "k".repeat(MAX_KEY_LEN + 1);
        for bad in [
            &[(IDEMPOTENCY_KEY, "")][..],
            &[(IDEMPOTENCY_KEY, "a b")],
            &[(IDEMPOTENCY_KEY, too_long.as_str())],
            &[(IDEMPOTENCY_KEY, "a"), (IDEMPOTENCY_KEY, "a")],
        ] {
            let e = idempotency_key(&headers(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(
                e.body.error.field.as_deref(),
                Some(IDEMPOTENCY_KEY),
                "{bad:?}"
            );
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn forwarded_headers_are_all_or_nothing_and_well_formed() {
        assert_eq!(forwarded_from(&HeaderMap::new()).unwrap(), None);
        let good = [
            (ENTRY_NODE, "n1"),
            (JOB_ID, "00000000000000ff"),
            (HOPS, "1"),
        ];
        assert_eq!(
            forwarded_from(&headers(&good)).unwrap(),
            Some(Forwarded {
                id: JobId(255),
                entry: NodeId::new("n1").unwrap()
            })
        );
        let cases: [(&[(&'static str, &str)], &str); 5] = [
            (&[(HOPS, "1")], JOB_ID),
            (
                &[
                    (ENTRY_NODE, "n1"),
                    (JOB_ID, "00000000000000ff"),
                    (HOPS, "2"),
                ],
                HOPS,
            ),
            (&[(ENTRY_NODE, "n1"), (JOB_ID, "xyz"), (HOPS, "1")], JOB_ID),
            (
                &[
                    (ENTRY_NODE, "a b"),
                    (JOB_ID, "00000000000000ff"),
                    (HOPS, "1"),
                ],
                ENTRY_NODE,
            ),
            (
                &[
                    (ENTRY_NODE, "n1"),
                    (JOB_ID, "00000000000000ff"),
                    (HOPS, "1"),
                    (HOPS, "1"),
                ],
                HOPS,
            ),
        ];
        for (pairs, field) in cases {
            let e = forwarded_from(&headers(pairs)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.body.error.field.as_deref(), Some(field), "{pairs:?}");
            assert!(
                e.body.error.message.starts_with(field),
                "{}",
                e.body.error.message
            );
        }
    }
}
