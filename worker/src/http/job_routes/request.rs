//! Reading and checking a job request before anything is done with it: the body (bounded by
//! [`MAX_BODY`]), the job in it, the query parameters of each route, the [`IDEMPOTENCY_KEY`]
//! header, and the wait a `?wait=true` takes. Each check fails with the [`ApiError`] that names
//! what is at fault.

use std::error::Error as StdError;

use bytes::Bytes;
use hearsay_shared::job::MAX_JSON_DEPTH;
use hearsay_shared::json::{self, JsonRefusal};
use hearsay_shared::{JobError, JobId, JobSpec, JobStatus};
use http_body_util::BodyExt;
use hyper::body::Body;
use hyper::header::{HeaderMap, CONTENT_LENGTH, EXPECT};
use hyper::{Request, StatusCode};

use super::{
    ApiError, DISCARD_LIMIT, IDEMPOTENCY_KEY, LIST_LIMIT, MAX_BODY, MAX_KEY_LEN, MAX_LIST_LIMIT,
};
use crate::http::limits::{WaitLimiter, WaitPermit};

/// The job in a request body: strict JSON (a key twice anywhere is `400 duplicate_key` naming
/// its path), then the job's own checks (`400 invalid_job` naming the field).
pub(super) fn parse_job(body: &[u8]) -> Result<JobSpec, ApiError> {
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

/// The query of `GET /v1/jobs`.
#[derive(Debug, PartialEq)]
pub(super) struct ListQuery {
    /// `None`: every status.
    pub(super) statuses: Option<Vec<JobStatus>>,
    pub(super) limit: usize,
    pub(super) after: Option<JobId>,
}

/// `status` (one or more of the statuses' names, comma-separated), `limit` (1 to
/// [`MAX_LIST_LIMIT`]) and `after` (a job id), each optional; anything else is refused.
pub(super) fn list_query(query: Option<&str>) -> Result<ListQuery, ApiError> {
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

/// The `wait` query parameter: `true` or `false` (the default). Any other parameter, value or
/// repetition is refused.
pub(super) fn wait_param(query: Option<&str>) -> Result<bool, ApiError> {
    flag(&query_params(query, &["wait"])?, "wait", "true", "false")
}

fn bad_query(field: &str, reason: String) -> ApiError {
    ApiError::field(StatusCode::BAD_REQUEST, "invalid_query", field, reason)
}

/// The query's parameters, each at most once and each one of `known`.
pub(super) fn query_params<'q>(
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
pub(super) fn flag(
    params: &[(&str, &str)],
    name: &str,
    yes: &str,
    no: &str,
) -> Result<bool, ApiError> {
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
pub(super) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
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
    use hyper::header::HeaderValue;

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
