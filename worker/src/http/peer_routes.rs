//! The server side of the peer routes ([`crate::jobs::dispatch::peers`] has the wire and the
//! client): a peer's offer, ask or steal, read and checked, handed to the hand-off shell,
//! answered in JSON.
//!
//! A body that is not what the route expects is `400 invalid_peer_request` naming the field;
//! an ask that would wait beyond the asker's open waits is `429 too_many_waits` (the asker
//! takes it for "busy" and asks again later).

use std::error::Error as StdError;

use bytes::Bytes;
use hearsay_scheduler::handoff::OfferAnswer;
use http_body_util::Full;
use hyper::body::Body;
use hyper::{Request, Response, StatusCode};

use crate::http::job_routes::{read_body, take_wait, ApiError};
use crate::http::limits::{ClientAddr, WaitLimiter};
use crate::http::view::json;
use crate::jobs::dispatch::peers::{self, BadRequest, OfferReply};
use crate::jobs::dispatch::Dispatcher;

/// Whether `path` is a peer route.
pub(crate) fn is_route(path: &str) -> bool {
    [peers::OFFER, peers::ASK, peers::STEAL].contains(&path)
}

/// Answers a `POST` to the peer route at `path` (one that [`is_route`]).
pub(crate) async fn answer<B>(
    path: &str,
    req: Request<B>,
    jobs: &Dispatcher,
    waits: &WaitLimiter,
) -> Response<Full<Bytes>>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let answered = match path {
        peers::OFFER => offer(req, jobs).await,
        peers::ASK => ask(req, jobs, waits).await,
        _ => steal(req, jobs).await,
    };
    answered.unwrap_or_else(ApiError::into_response)
}

fn bad(e: BadRequest) -> ApiError {
    ApiError::field(
        StatusCode::BAD_REQUEST,
        "invalid_peer_request",
        &e.field,
        e.reason,
    )
}

async fn offer<B>(req: Request<B>, jobs: &Dispatcher) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let body = read_body(req).await?;
    let (offer, spec) = peers::parse_offer(&body).map_err(bad)?;
    let answer = jobs.offer(&offer, spec);
    if matches!(answer, OfferAnswer::Accepted(_)) {
        // Taken only once its record is on disk. If it cannot be written the job is still
        // taken (refusing now could let it run twice); a crash would then lose it.
        if let Err(e) = jobs.store().flushed().await {
            tracing::warn!(id = %offer.id, "a job taken from a peer is not on disk: {e}");
        }
    }
    Ok(json(StatusCode::OK, &OfferReply::from(answer)))
}

async fn ask<B>(
    req: Request<B>,
    jobs: &Dispatcher,
    waits: &WaitLimiter,
) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let client = ClientAddr::ip_of(&req);
    let body = read_body(req).await?;
    let (id, wait, incarnation) = peers::parse_ask(&body).map_err(bad)?;
    let _permit = if wait {
        Some(take_wait(waits, client)?)
    } else {
        None
    };
    let reply = jobs.ask(id, wait, incarnation).await;
    Ok(json(StatusCode::OK, &reply))
}

async fn steal<B>(req: Request<B>, jobs: &Dispatcher) -> Result<Response<Full<Bytes>>, ApiError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let body = read_body(req).await?;
    let (thief, incarnation) = peers::parse_steal(&body).map_err(bad)?;
    let reply = jobs.steal(&thief, incarnation);
    Ok(json(StatusCode::OK, &reply))
}
