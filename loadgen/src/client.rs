//! The HTTP client: talks to workers over pooled HTTP/1.1 connections (hyper-util's legacy
//! client). It reads a worker's `/v1/cluster`, and submits a job and waits for its outcome.
//!
//! A job is posted with `?wait=true`, which a worker answers when the job has ended. Should a
//! worker answer before that (`202`, or an outcome that is not final), the client follows the job
//! with `GET /v1/jobs/{id}?wait=true` until it ends, so the measured sojourn always runs from
//! submission to the end of the job.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use hearsay_shared::JobOutcome;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// The largest answer read from a worker.
const MAX_ANSWER: usize = 4 * 1024 * 1024;
/// How many times a job that has not ended yet is asked after before giving up; with the
/// worker's long poll of several seconds, far longer than any request timeout.
const MAX_FOLLOW_UPS: usize = 100_000;

/// Why a request did not give a usable answer. The variants are the error kinds of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// No connection could be made (refused, unreachable, connect timeout).
    Connect(String),
    /// No complete answer within the time allowed.
    Timeout,
    /// The connection broke or the answer was not HTTP.
    Transport(String),
    /// The worker answered `503`: nothing in reach could take the job.
    Busy {
        /// The worker's error code.
        code: String,
        /// Its `Retry-After`, in seconds.
        retry_after: Option<u64>,
    },
    /// Any other status that is not success.
    Status {
        /// The status.
        status: u16,
        /// The worker's error code, or `-` without one.
        code: String,
        /// The worker's message.
        message: String,
    },
    /// A success status with a body that is not what the API promises.
    BadAnswer(String),
}

impl RequestError {
    /// A short name for counting errors by kind: `connect`, `timeout`, `transport`, `503`,
    /// `http_404_not_found`, `bad_answer`.
    pub fn kind(&self) -> String {
        match self {
            RequestError::Connect(_) => "connect".into(),
            RequestError::Timeout => "timeout".into(),
            RequestError::Transport(_) => "transport".into(),
            RequestError::Busy { .. } => "503".into(),
            RequestError::Status { status, code, .. } => format!("http_{status}_{code}"),
            RequestError::BadAnswer(_) => "bad_answer".into(),
        }
    }

    /// Whether the worker never answered (as opposed to answering no).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            RequestError::Connect(_) | RequestError::Timeout | RequestError::Transport(_)
        )
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Connect(e) => write!(f, "cannot connect: {e}"),
            RequestError::Timeout => f.write_str("no answer in time"),
            RequestError::Transport(e) => write!(f, "connection failed: {e}"),
            RequestError::Busy { code, retry_after } => {
                write!(f, "503 {code}")?;
                if let Some(s) = retry_after {
                    write!(f, " (retry after {s} s)")?;
                }
                Ok(())
            }
            RequestError::Status {
                status,
                code,
                message,
            } => write!(f, "{status} {code}: {message}"),
            RequestError::BadAnswer(e) => write!(f, "unexpected answer: {e}"),
        }
    }
}

impl std::error::Error for RequestError {}

/// How a job reaches its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submission {
    /// As a client would submit it: the worker places it with its own policy.
    Place,
    /// Already placed by loadgen: sent with `?place=here`, so that the worker runs it or
    /// refuses it, and never places it elsewhere.
    Placed,
}

/// A pooled HTTP client for one run of loadgen. Cloning shares the pool.
#[derive(Debug, Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `Authorization` of every request, for workers started with `--api-token-file`.
    authorization: Option<HeaderValue>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new(Duration::from_secs(2))
    }
}

impl Http {
    /// A client whose connections are given `connect_timeout` to open.
    pub fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            // A waiting job holds its connection; keep them all for the next jobs.
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Http {
            client,
            authorization: None,
        }
    }

    /// The same client, sending `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: &str) -> Result<Self, String> {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token must be visible ASCII characters".to_owned())?;
        value.set_sensitive(true);
        self.authorization = Some(value);
        Ok(self)
    }

    /// The same client with the token in the file at `path` (its content, trimmed), if a path
    /// is given: the workers' `--api-token-file`.
    pub fn with_token_file(self, path: Option<&std::path::Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(self);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("the token file {} is empty", path.display()));
        }
        self.with_token(token)
    }

    /// One request, its whole answer read within `timeout`.
    async fn exchange(
        &self,
        mut request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(StatusCode, Option<u64>, Bytes), RequestError> {
        if let Some(authorization) = &self.authorization {
            request
                .headers_mut()
                .insert(hyper::header::AUTHORIZATION, authorization.clone());
        }
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    RequestError::Connect(error_chain(&e))
                } else {
                    RequestError::Transport(error_chain(&e))
                }
            })?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| RequestError::Transport(e.to_string()))?
                .to_bytes();
            Ok((status, retry_after, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| RequestError::Timeout)?
    }

    /// `GET {base}{path}`, parsed as JSON; any status but 200 is an error.
    pub async fn get_json(
        &self,
        base: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        let uri = uri(base, path)?;
        let request = Request::get(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| RequestError::BadAnswer(e.to_string()))?;
        let (status, retry_after, body) = self.exchange(request, timeout).await?;
        if status != StatusCode::OK {
            return Err(status_error(status, retry_after, &body));
        }
        serde_json::from_slice(&body)
            .map_err(|e| RequestError::BadAnswer(format!("{path} is not JSON: {e}")))
    }

    /// `method {base}{path}` with an optional JSON `body` (and `headers`), for the operators'
    /// client: the status and the answer parsed as JSON (`null` for an empty one). A status
    /// that is not a success is an error, with the worker's code and message.
    pub async fn call_json(
        &self,
        method: Method,
        base: &str,
        path: &str,
        body: Option<Bytes>,
        headers: &[(&'static str, String)],
        timeout: Duration,
    ) -> Result<(StatusCode, Value), RequestError> {
        let mut builder = Request::builder().method(method).uri(uri(base, path)?);
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in headers {
            let value = HeaderValue::from_str(value)
                .map_err(|_| RequestError::BadAnswer(format!("{name}: not a header value")))?;
            builder = builder.header(*name, value);
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| RequestError::BadAnswer(e.to_string()))?;
        let (status, retry_after, answer) = self.exchange(request, timeout).await?;
        if !status.is_success() {
            return Err(status_error(status, retry_after, &answer));
        }
        if answer.is_empty() {
            return Ok((status, Value::Null));
        }
        let value = serde_json::from_slice(&answer)
            .map_err(|e| RequestError::BadAnswer(format!("{path} is not JSON: {e}")))?;
        Ok((status, value))
    }

    /// Submits `job` (a JSON job body) to the worker at `base` and waits until it ends, for at
    /// most `timeout` in all.
    pub async fn run_job(
        &self,
        base: &str,
        job: Bytes,
        submission: Submission,
        timeout: Duration,
    ) -> Result<JobOutcome, RequestError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let path = match submission {
            Submission::Place => "/v1/jobs?wait=true",
            Submission::Placed => "/v1/jobs?wait=true&place=here",
        };
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri(base, path)?)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(job))
            .map_err(|e| RequestError::BadAnswer(e.to_string()))?;
        let (status, retry_after, body) = self.exchange(request, timeout).await?;
        let mut outcome = match status {
            StatusCode::OK | StatusCode::ACCEPTED | StatusCode::CREATED => outcome(&body)?,
            _ => return Err(status_error(status, retry_after, &body)),
        };
        // Not ended yet (the worker answered at once): follow it until it ends.
        let mut follow_ups = 0;
        while !outcome.status.is_terminal() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() || follow_ups >= MAX_FOLLOW_UPS {
                return Err(RequestError::Timeout);
            }
            follow_ups += 1;
            let path = format!("/v1/jobs/{}?wait=true", outcome.id);
            let request = Request::get(uri(base, &path)?)
                .body(Full::new(Bytes::new()))
                .map_err(|e| RequestError::BadAnswer(e.to_string()))?;
            let (status, retry_after, body) = self.exchange(request, left).await?;
            if status != StatusCode::OK {
                return Err(status_error(status, retry_after, &body));
            }
            outcome = self::outcome(&body)?;
        }
        Ok(outcome)
    }
}

fn outcome(body: &[u8]) -> Result<JobOutcome, RequestError> {
    serde_json::from_slice(body).map_err(|e| {
        RequestError::BadAnswer(format!(
            "not a job outcome ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))
    })
}

/// The error for a status that is not success, with the worker's `{"error":{code,message}}`.
fn status_error(status: StatusCode, retry_after: Option<u64>, body: &[u8]) -> RequestError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        parsed
            .as_ref()
            .and_then(|v| v["error"][name].as_str())
            .map(str::to_owned)
    };
    let code = field("code").unwrap_or_else(|| "-".into());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return RequestError::Busy { code, retry_after };
    }
    let message = field("message")
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned());
    RequestError::Status {
        status: status.as_u16(),
        code,
        message,
    }
}

fn uri(base: &str, path: &str) -> Result<Uri, RequestError> {
    format!("{}{path}", base.trim_end_matches('/'))
        .parse()
        .map_err(|e| RequestError::BadAnswer(format!("bad address {base}{path}: {e}")))
}

/// An error and its sources on one line, e.g. "client error (Connect): tcp connect error:
/// Connection refused (os error 111)".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// A target as given on the command line (`http://host:port`, or `host:port`), normalised to a
/// base URL without a trailing slash. Only plain HTTP is spoken.
pub fn normalise_target(text: &str) -> Result<String, String> {
    let text = text.trim().trim_end_matches('/');
    if text.is_empty() {
        return Err("an empty target".into());
    }
    let base = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let uri: Uri = base
        .parse()
        .map_err(|e| format!("{text:?} is not an address such as http://127.0.0.1:8080 ({e})"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{text:?}: only http:// targets are supported"));
    }
    if uri.host().is_none() || uri.path() != "/" && !uri.path().is_empty() {
        return Err(format!(
            "{text:?} is not an address such as http://127.0.0.1:8080 (no path)"
        ));
    }
    Ok(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_normalised() {
        assert_eq!(
            normalise_target("127.0.0.1:8080").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            normalise_target("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(normalise_target("https://x:1").is_err());
        assert!(normalise_target("").is_err());
        assert!(normalise_target("http://x:1/v1").is_err());
        assert!(normalise_target("not a url").is_err());
    }

    #[test]
    fn error_bodies_give_kind_and_code() {
        let busy = status_error(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(1),
            br#"{"error":{"code":"no_room","message":"full"}}"#,
        );
        assert_eq!(busy.kind(), "503");
        assert_eq!(busy.to_string(), "503 no_room (retry after 1 s)");
        let bad = status_error(StatusCode::BAD_REQUEST, None, b"plain");
        assert_eq!(bad.kind(), "http_400_-");
        assert!(bad.to_string().contains("plain"));
    }
}
