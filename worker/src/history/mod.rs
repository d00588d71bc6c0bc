//! The cluster's recent history, served at `GET /v1/history`: the pure ring and timeline are
//! [`ring`]; this module shares them under one lock, feeds the ring once per gossip interval
//! from the load map and this node's job counters ([`feed`]), and answers the route.
//!
//! The timeline is fed by the gossip task, with every verdict change the core reports, as it
//! reports it (so a suspicion cleared within one interval is still on the timeline).

pub mod ring;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hearsay_shared::{Verdict, VerdictChange};
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::gossip::SharedGossip;
use crate::http::view::{json, ErrorBody};
use crate::metrics::Metrics;
use ring::{NodeSample, SampleRing, Timeline};

/// The ring and the timeline under one lock; cloning gives another handle to the same.
#[derive(Debug, Clone)]
pub(crate) struct SharedHistory(Arc<Mutex<History>>);

#[derive(Debug)]
struct History {
    interval_ms: u64,
    /// When the last sample took this node's sojourns: the next takes those after.
    sojourns_taken: Option<Instant>,
    ring: SampleRing,
    timeline: Timeline,
}

/// The wall clock in ms since the Unix epoch (0 before it).
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SharedHistory {
    /// An empty history sampled every `interval`.
    pub(crate) fn new(interval: Duration) -> Self {
        let interval_ms = (interval.as_millis() as u64).max(1);
        SharedHistory(Arc::new(Mutex::new(History {
            interval_ms,
            sojourns_taken: None,
            ring: SampleRing::new(interval_ms),
            timeline: Timeline::new(),
        })))
    }

    fn with<R>(&self, f: impl FnOnce(&mut History) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts the core's verdict changes on the timeline, at the wall clock's now.
    pub(crate) fn verdicts_changed(&self, changes: &[VerdictChange]) {
        if changes.is_empty() {
            return;
        }
        let now = unix_ms();
        self.with(|h| {
            for change in changes {
                h.timeline.record(now, change);
            }
        });
    }

    /// Takes one sample: every live or suspect node's latest report, this node's job counters and the
    /// sojourns of the jobs that ended here since the last sample.
    fn sample(&self, gossip: &SharedGossip, metrics: &Metrics) {
        let nodes: Vec<NodeSample> = gossip.with(|g| {
            // Dead and departed nodes are kept in the map for a grace period; their last
            // report is not load any more.
            g.map()
                .iter()
                .filter(|e| matches!(e.verdict(), Verdict::Alive | Verdict::Suspect))
                .map(|e| e.report())
                .map(|r| NodeSample {
                    node: Arc::from(r.node.as_str()),
                    queued: r.load.queued,
                    running: r.load.running,
                    cpu_permille: r.load.cpu_permille,
                    incarnation: r.incarnation,
                    ended: r.load.ended,
                    sojourn: r.load.sojourn,
                })
                .collect()
        });
        let counters = metrics.ended();
        let taken = Instant::now();
        let after = self.with(|h| h.sojourns_taken.replace(taken));
        let mut sojourns = metrics.sojourns_between(after, taken);
        let now = unix_ms();
        self.with(|h| h.ring.record(now, nodes, counters, &mut sojourns));
    }

    /// The answer to `GET /v1/history[?since=ms]`.
    pub(crate) fn answer(&self, query: Option<&str>) -> Response<Full<Bytes>> {
        let since = match since_of(query) {
            Ok(since) => since,
            Err(message) => {
                return json(
                    StatusCode::BAD_REQUEST,
                    &ErrorBody::new("invalid_query", message).with_field("since"),
                )
            }
        };
        let body = self.with(|h| {
            serde_json::json!({
                "now_ms": unix_ms(),
                "interval_ms": h.interval_ms,
                "capacity": h.ring.capacity(),
                "samples": h.ring.since(since).collect::<Vec<_>>(),
                "events": h.timeline.since(since).collect::<Vec<_>>(),
            })
        });
        let mut response = json(StatusCode::OK, &body);
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// `since` from the query string: `None` when absent; an error naming the problem.
fn since_of(query: Option<&str>) -> Result<Option<u64>, String> {
    let mut since = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "since" => {
                since = Some(value.parse::<u64>().map_err(|_| {
                    format!("since: {value:?} is not a time in ms since the Unix epoch")
                })?)
            }
            other => return Err(format!("unknown query parameter {other:?}; known: since")),
        }
    }
    Ok(since)
}

/// Samples every interval until `stop`.
pub(crate) async fn feed(
    history: SharedHistory,
    gossip: SharedGossip,
    metrics: Metrics,
    stop: CancellationToken,
) {
    let interval = Duration::from_millis(history.with(|h| h.interval_ms));
    let mut ticks = tokio::time::interval(interval);
    // A late tick is one sample fewer, not a burst of samples at the same instant.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => history.sample(&gossip, &metrics),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::since_of;

    #[test]
    fn since_is_optional_and_checked() {
        assert_eq!(since_of(None), Ok(None));
        assert_eq!(since_of(Some("since=12")), Ok(Some(12)));
        assert!(since_of(Some("since=x")).unwrap_err().contains("since"));
        assert!(since_of(Some("until=1")).is_err());
    }
}
