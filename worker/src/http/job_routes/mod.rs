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
//!
//! This file holds the routes' answers and the errors they give; `request.rs` reads and checks
//! what a request carries.

use std::error::Error as StdError;

use bytes::Bytes;
use hearsay_scheduler::handoff::SubmitRefusal;
use hearsay_shared::{JobId, JobOutcome, JobStatus};
use http_body_util::Full;
use hyper::body::Body;
use hyper::header::{HeaderMap, HeaderValue, CONNECTION, LOCATION, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};

use crate::http::limits::{ClientAddr, WaitLimiter, WAIT_RETRY_AFTER_SECS};
use crate::http::view::{json, ErrorBody};
use crate::jobs::dispatch::peers::{CANCEL_HOPS, LONG_POLL, MAX_CANCEL_HOPS};
use crate::jobs::dispatch::{CancelAnswer, Dispatcher};
use crate::jobs::store::JobPage;
use request::{flag, idempotency_key, list_query, parse_job, query_params, wait_param};

mod request;

pub(crate) use request::{read_body, take_wait};

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
                        "job {id} is running at {at}: it is not stopped unless the cancel is forced (?force=true)"
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
