//! The job routes of the HTTP API: reading and checking a request, and answering it.
//!
//! | request | answer |
//! |---|---|
//! | `POST /v1/jobs` | `202` with `Location: /v1/jobs/{id}` and [`Accepted`](crate::jobs::dispatch::Accepted); with `?wait=true`, `200` and the [`JobOutcome`] once the job has ended; with `?place=here`, run here or refused, never placed elsewhere (loadgen's baselines place jobs themselves) |
//! | `GET /v1/jobs` | `200` and a [`JobPage`]: the jobs this node holds or answers for, by id, at most `limit` ([`LIST_LIMIT`] by default, [`MAX_LIST_LIMIT`] at most) after the id `after`, of the statuses in `status` (comma-separated) if given |
//! | `GET /v1/jobs/{id}` | `200` and the [`JobOutcome`] as it stands; with `?wait=true`, held until the job ends or [`LONG_POLL`] passes |
//! | `DELETE /v1/jobs/{id}` | cancel: `200` and the [`JobOutcome`], now `cancelled`, of a job that was queued; `409 job_running` for a running one unless `?force=true`, which stops it (`200` once it has ended); `409 job_ended` for one that ended; a job held by another node is cancelled there, and its answer is this one |
//!
//! Moving jobs between nodes is not done here: peers have routes of their own
//! ([`crate::http::peer_routes`]).
//!
//! Errors: `400` for a request at fault, naming the field (a job field, `body`, a query
//! parameter, a header, or `id`; `duplicate_key` and the key's path for a JSON object that
//! names a key twice); `404` for an unknown job; `413` for a body over [`MAX_BODY`]
//! (after reading and discarding up to [`DISCARD_LIMIT`] of it, so that the client sees it);
//! `503` with `Retry-After` when no node in reach has room or this node is leaving; `429` with
//! `Retry-After` for a `?wait=true` beyond the client's open waits (`--max-waits-per-client`);
//! for a cancel, `503 job_moving` for a job that stayed on its way between nodes for
//! [`CANCEL_CHASE`], and `503 peer_unreachable` when the node holding it did not answer.

use std::error::Error as StdError;

use bytes::Bytes;
use hearsay_scheduler::handoff::SubmitRefusal;
use hearsay_shared::job::MAX_JSON_DEPTH;
use hearsay_shared::json::{self, JsonRefusal};
use hearsay_shared::{JobError, JobId, JobOutcome, JobSpec, JobStatus};
use http_body_util::{BodyExt, Full};
use hyper::body::Body;
use hyper::header::{
    HeaderMap, HeaderValue, CONNECTION, CONTENT_LENGTH, EXPECT, LOCATION, RETRY_AFTER,
};
use hyper::{Request, Response, StatusCode};

use crate::http::limits::{ClientAddr, WaitLimiter, WaitPermit, WAIT_RETRY_AFTER_SECS};
use crate::http::view::{json, ErrorBody};
use crate::jobs::dispatch::peers::{CANCEL_HOPS, LONG_POLL, MAX_CANCEL_HOPS};
use crate::jobs::dispatch::{CancelAnswer, Dispatcher};
use crate::jobs::store::JobPage;

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
/// The jobs `GET /v1/jobs` lists when the request gives no `limit`.
pub const LIST_LIMIT: usize = 100;
/// The most jobs `GET /v1/jobs` lists at once.
pub const MAX_LIST_LIMIT: usize = 1000;
/// What a client told to come back is told to wait, in seconds.
const RETRY_AFTER_SECS: &str = "1";
/// How long a cancel looks for a job that is on its way between nodes (or whose holder
/// answered that it no longer has it) before it answers `503 job_moving`.
pub const CANCEL_CHASE: std::time::Duration = std::time::Duration::from_secs(5);
/// The pause between two looks at a job on its way, unless its record changes first.
const CHASE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// An error answer: its status and body.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: ErrorBody,
    /// Close the connection after answering (the request was not read to its end).
    close: bool,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody::new(code, message),
            close: false,
        }
    }

    /// A request at fault in `field`, with the message `<field>: <reason>`.
    pub(crate) fn field(
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
pub(crate) fn take_wait(waits: &WaitLimiter, ip: std::net::IpAddr) -> Result<WaitPermit, ApiError> {
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
    let query = query_params(req.uri().query(), &["wait", "place"])?;
    let wait = flag(&query, "wait", "true", "false")?;
    let here_only = flag(&query, "place", "here", "anywhere")?;
    // Taken before the job is, so that a refused wait leaves no job behind; held until the
    // answer is sent or the client goes away.
    let _permit = if wait {
        Some(take_wait(waits, ClientAddr::ip_of(&req))?)
    } else {
        None
    };
    let key = idempotency_key(req.headers())?;
    let body = read_body(req).await?;
    let spec = parse_job(&body)?;
    jobs.metrics().job_submitted();
    if jobs.is_leaving() {
        return Err(leaving());
    }
    // A store in trouble tries a commit first: the disk may have room again.
    if jobs.store().trouble().is_some() {
        let _ = jobs.store().flushed().await;
    }
    if let Some(trouble) = jobs.store().trouble() {
        return Err(ApiError::unavailable(
            "store_unavailable",
            format!("this node takes no new jobs while its job store cannot write: {trouble}"),
        ));
    }
    let (accepted, replayed) = jobs
        .submit(spec, key, here_only)
        .await
        .map_err(|e| match e {
            SubmitRefusal::Nowhere { .. } => ApiError::unavailable("no_capacity", e.to_string()),
            SubmitRefusal::Leaving => leaving(),
            SubmitRefusal::KeyReused { key } => ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                IDEMPOTENCY_KEY,
                format!(
                    "{key:?} names a job submitted with another body; use a new key for a new job"
                ),
            ),
            SubmitRefusal::UnknownCommand(command) => {
                unknown_command(format!("no node in reach declares the command {command:?}"))
            }
            SubmitRefusal::Invalid { field, reason } => {
                ApiError::field(StatusCode::BAD_REQUEST, "invalid_job", &field, reason)
            }
        })?;
    let mark = |response: &mut Response<Full<Bytes>>| {
        if replayed {
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
    };
    if wait {
        // The answer is the outcome, so the outcome's record is what must be on disk before
        // it: a restart then answers what this client was told. One commit on the way, not
        // one at acceptance and one at the end. (An `exec` job's start waits for its record
        // anyway.) Should that commit fail, the outcome is still the truth, and is sent.
        if let Some(outcome) = jobs.wait(accepted.id, None).await {
            if let Err(e) = jobs.store().flushed().await {
                tracing::warn!(id = %accepted.id, "an outcome is answered before it is on disk: {e}");
            }
            let mut response = json(StatusCode::OK, &outcome);
            mark(&mut response);
            return Ok(response);
        }
        // Forgotten already (retention of a single job): say where to look, as without wait.
    }
    // Accepted only once its record is on disk: a crash after the answer forgets nothing.
    if let Err(e) = jobs.store().flushed().await {
        return Err(ApiError::unavailable(
            "store_unavailable",
            format!(
                "job {} was taken but its record could not be written, so it is not promised: \
                 {e}",
                accepted.id
            ),
        ));
    }
    let mut response = json(StatusCode::ACCEPTED, &accepted);
    mark(&mut response);
    let location = format!("/v1/jobs/{}", accepted.id);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, location);
    }
    Ok(response)
}

/// `GET /v1/jobs/{id}` (and `HEAD`): reads only, never changes a thing.
pub(crate) async fn status(
    id: &str,
    query: Option<&str>,
    jobs: &Dispatcher,
    waits: &WaitLimiter,
    client: std::net::IpAddr,
) -> Response<Full<Bytes>> {
    status_checked(id, query, jobs, waits, client)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn status_checked(
    id: &str,
    query: Option<&str>,
    jobs: &Dispatcher,
    waits: &WaitLimiter,
    client: std::net::IpAddr,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let id: JobId = id
        .parse()
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "invalid_job_id", "id", e))?;
    let wait = wait_param(query)?;
    let outcome: Option<JobOutcome> = if wait {
        let _permit = take_wait(waits, client)?;
        jobs.wait(id, Some(LONG_POLL)).await
    } else {
        jobs.outcome(id)
    };
    match outcome {
        Some(outcome) => {
            // An end is shown once it is on disk, so that no restart takes back what a reader
            // saw. Ends written long ago cost nothing here: at most the wait for a commit
            // under way.
            if outcome.status.is_terminal() {
                let _ = jobs.store().flushed().await;
            }
            Ok(json(StatusCode::OK, &outcome))
        }
        None => Err(unknown_job(id)),
    }
}

/// `DELETE /v1/jobs/{id}`: cancels the job here, or at the node that holds it.
pub(crate) async fn cancel(
    id: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    jobs: &Dispatcher,
) -> Response<Full<Bytes>> {
    cancel_checked(id, query, headers, jobs)
        .await
        .unwrap_or_else(ApiError::into_response)
}

async fn cancel_checked(
    id: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    jobs: &Dispatcher,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let id: JobId = id
        .parse()
        .map_err(|e| ApiError::field(StatusCode::BAD_REQUEST, "invalid_job_id", "id", e))?;
    let force = flag(&query_params(query, &["force"])?, "force", "true", "false")?;
    // Sent on by a node that follows the job: how many times so far.
    let hops: u32 = headers
        .get(CANCEL_HOPS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let deadline = tokio::time::Instant::now() + CANCEL_CHASE;
    loop {
        let moving = match jobs.cancel(id, force).await {
            CancelAnswer::Done(outcome) => {
                // As for GET: an end is answered once it is on disk.
                let _ = jobs.store().flushed().await;
                return Ok(json(StatusCode::OK, &outcome));
            }
            CancelAnswer::Running(outcome) => {
                let at = outcome.executing_node.as_ref().unwrap_or(jobs.node());
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "job_running",
                    format!(
                        "job {id} is running at {at}: it is not stopped unless the cancel is                          forced (?force=true)"
                    ),
                ));
            }
            CancelAnswer::Ended(outcome) => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "job_ended",
                    format!(
                        "job {id} has ended already: {}; nothing to cancel",
                        outcome.status.as_str()
                    ),
                ));
            }
            CancelAnswer::Unknown => return Err(unknown_job(id)),
            CancelAnswer::Moving => format!("job {id} is on its way between nodes"),
            CancelAnswer::Elsewhere { node, .. } if hops >= MAX_CANCEL_HOPS => {
                format!("job {id} moved on to {node} after {hops} hops")
            }
            CancelAnswer::Elsewhere { node, api: None } => {
                format!("job {id} is at {node}, which this node's map does not know")
            }
            CancelAnswer::Elsewhere {
                node,
                api: Some(api),
            } => match jobs.cancel_at(api, id, force, hops).await {
                // The holder no longer has it (it moved on since): this node's record
                // follows it there soon.
                Ok((status, body))
                    if status == StatusCode::NOT_FOUND
                        || (status == StatusCode::SERVICE_UNAVAILABLE
                            && error_code(&body) == "job_moving") =>
                {
                    format!("job {id} moved on from {node}")
                }
                Ok((status, body)) => return Ok(relayed(status, body)),
                Err(e) => {
                    return Err(ApiError::unavailable(
                        "peer_unreachable",
                        format!("job {id} is at {node} ({api}), which did not answer: {e}"),
                    ))
                }
            },
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::unavailable(
                "job_moving",
                format!("{moving}; nothing was cancelled: try again"),
            ));
        }
        // Until its record here changes (it settled, or is followed to another node), or a
        // short while.
        match jobs.store().watch(tokio::time::Instant::now(), id) {
            Some(mut record) => {
                record.mark_unchanged();
                let _ = tokio::time::timeout(CHASE_PAUSE, record.changed()).await;
            }
            None => tokio::time::sleep(CHASE_PAUSE).await,
        }
    }
}

/// The answer of the node a cancel was sent on to, as it came.
fn relayed(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
    }
    response
}

/// The `error.code` of an error body, or `""`.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn unknown_job(id: JobId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_job",
        format!("no job {id} here: never submitted here, or finished and forgotten"),
    )
}

/// `GET /v1/jobs` (and `HEAD`): reads only, never changes a thing.
pub(crate) async fn list(query: Option<&str>, jobs: &Dispatcher) -> Response<Full<Bytes>> {
    let query = match list_query(query) {
        Ok(query) => query,
        Err(e) => return e.into_response(),
    };
    let wanted = |status: JobStatus| query.statuses.as_ref().is_none_or(|s| s.contains(&status));
    let page: JobPage = jobs.store().list(
        tokio::time::Instant::now(),
        query.after,
        wanted,
        query.limit,
    );
    // As for one job: an end is shown once it is on disk.
    if page.jobs.iter().any(|j| j.status.is_terminal()) {
        let _ = jobs.store().flushed().await;
    }
    json(StatusCode::OK, &page)
}

/// The query of `GET /v1/jobs`.
#[derive(Debug, PartialEq)]
struct ListQuery {
    /// `None`: every status.
    statuses: Option<Vec<JobStatus>>,
    limit: usize,
    after: Option<JobId>,
}

/// `status` (one or more of the statuses' names, comma-separated), `limit` (1 to
/// [`MAX_LIST_LIMIT`]) and `after` (a job id), each optional; anything else is refused.
fn list_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
    let params = query_params(query, &["status", "limit", "after"])?;
    let get = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let statuses = match get("status") {
        None => None,
        Some(value) => {
            let mut statuses = Vec::new();
            // A comma may come percent-encoded.
            for name in value.replace("%2C", ",").replace("%2c", ",").split(',') {
                let Some(status) = JobStatus::ALL.into_iter().find(|s| s.as_str() == name) else {
                    let names: Vec<_> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                    return Err(bad_query(
                        "status",
                        format!(
                            "{name:?} is not a job status; give one or more of {}, \
                             comma-separated",
                            names.join(", ")
                        ),
                    ));
                };
                statuses.push(status);
            }
            Some(statuses)
        }
    };
    let limit = match get("limit") {
        None => LIST_LIMIT,
        Some(value) => value
            .parse::<usize>()
            .ok()
            .filter(|n| {
                (1..=MAX_LIST_LIMIT).contains(n) && value.bytes().all(|b| b.is_ascii_digit())
            })
            .ok_or_else(|| {
                bad_query(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_LIST_LIMIT}, not {value:?}"),
                )
            })?,
    };
    let after = get("after")
        .map(|value| value.parse::<JobId>())
        .transpose()
        .map_err(|e| bad_query("after", e.to_string()))?;
    Ok(ListQuery {
        statuses,
        limit,
        after,
    })
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
    flag(&query_params(query, &["wait"])?, "wait", "true", "false")
}

fn bad_query(field: &str, reason: String) -> ApiError {
    ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", field, reason)
}

/// The query's parameters, each at most once and each one of `known`.
fn query_params<'q>(
    query: Option<&'q str>,
    known: &[&str],
) -> Result<Vec<(&'q str, &'q str)>, ApiError> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if !known.contains(&key) {
            let known = known.join(", ");
            return Err(bad_query(
                key,
                format!("unknown query parameter; known: {known}"),
            ));
        }
        if seen.iter().any(|(k, _)| *k == key) {
            return Err(bad_query(key, "is given more than once".into()));
        }
        seen.push((key, value));
    }
    Ok(seen)
}

/// Parameter `name`: `yes` (true) or `no` (false, the default).
fn flag(params: &[(&str, &str)], name: &str, yes: &str, no: &str) -> Result<bool, ApiError> {
    match params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v) {
        None => Ok(false),
        Some(v) if v == yes => Ok(true),
        Some(v) if v == no => Ok(false),
        Some(other) => Err(bad_query(
            name,
            format!("must be {yes} or {no}, not {other:?}"),
        )),
    }
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

/// The whole body, if it is at most [`MAX_BODY`] bytes: a `Content-Length` over it is refused
/// without keeping anything, and reading stops keeping at the limit whatever the headers said.
///
/// A refused body is still read and thrown away, up to [`DISCARD_LIMIT`], before the `413` is
/// sent: a client that is still sending when the server closes the connection gets a broken
/// pipe instead of the answer.
pub(crate) async fn read_body<B>(req: Request<B>) -> Result<Bytes, ApiError>
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
    fn a_list_query_is_status_limit_and_after_or_refused() {
        assert_eq!(
            list_query(None).unwrap(),
            ListQuery {
                statuses: None,
                limit: LIST_LIMIT,
                after: None
            }
        );
        let query = list_query(Some(
            "status=queued,timed_out&limit=1000&after=00000000000000ff",
        ));
        assert_eq!(
            query.unwrap(),
            ListQuery {
                statuses: Some(vec![JobStatus::Queued, JobStatus::TimedOut]),
                limit: MAX_LIST_LIMIT,
                after: Some(JobId(0xff))
            }
        );
        let query = list_query(Some("status=lost%2Crunning&limit=1")).unwrap();
        assert_eq!(
            query.statuses,
            Some(vec![JobStatus::Lost, JobStatus::Running])
        );
        for (bad, field) in [
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=+5", "limit"),
            ("limit=", "limit"),
            ("status=bogus", "status"),
            ("status=queued,", "status"),
            ("status=", "status"),
            ("after=xyz", "after"),
            ("limit=5&limit=5", "limit"),
            ("page=2", "page"),
        ] {
            let e = list_query(Some(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
            assert_eq!(e.body.error.code, "invalid_query", "{bad}");
            assert_eq!(e.body.error.field.as_deref(), Some(field), "{bad}");
        }
    }

    #[test]
    fn place_is_here_or_anywhere() {
        let params = query_params(Some("wait=true&place=here"), &["wait", "place"]).unwrap();
        assert!(flag(&params, "place", "here", "anywhere").unwrap());
        let params = query_params(Some("place=there"), &["wait", "place"]).unwrap();
        let e = flag(&params, "place", "here", "anywhere").unwrap_err();
        assert_eq!(e.body.error.field.as_deref(), Some("place"));
        assert!(query_params(Some("place=here&place=here"), &["place"]).is_err());
    }
}
