//! `GET /v1/cluster/stream`: the load map pushed as server-sent events, for the dashboard and
//! any other watcher.
//!
//! ```text
//! : hearsay cluster stream          (a comment: the stream is open)
//! retry: 1000                       (reconnect after a second if the connection drops)
//!
//! event: cluster
//! data: {"node":"n1","incarnation":...,"nodes":[...],"gossip":{...},"uptime_ms":...,
//!        "interval_ms":200,"policy":"p2c","placements":{"local":..,"forwarded":{..},"received":..}}
//!
//! : keep-alive                      (only when nothing else was sent for a while)
//! ```
//!
//! `data` is one line of JSON: the [`ClusterEvent`] — `GET /v1/cluster`'s fields plus the
//! placement counters. The first event is sent at once, then one per gossip interval.
//!
//! One feed task builds and serialises each event once, whatever the number of watchers, and
//! publishes it on a `watch` channel, which keeps only the latest. Each stream has a task that
//! passes events to its response body through a channel of one frame: when a client reads too
//! slowly to take every event, the events it has no room for are skipped, never queued, so a
//! slow client costs one frame of memory and sees the newest map when it catches up. At most
//! [`MAX_STREAMS`] streams are open at once; beyond, `503`. Streams end when the HTTP server
//! stops (after the node's drain, so that a dashboard watches the node leave).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hearsay_scheduler::Policy;
use hyper::body::{Body, Frame};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::gossip::SharedGossip;
use crate::http::view::{ClusterEvent, ClusterView};
use crate::jobs::ms;
use crate::metrics::Metrics;
use crate::metrics::{MoveCounters, StatsSource};

/// Streams open at once, at most.
pub const MAX_STREAMS: usize = 64;
/// After this long without an event, a comment line keeps proxies from closing the connection.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The reconnection delay suggested to clients, in milliseconds.
pub const RETRY_MS: u64 = 1000;

/// The cluster stream of one node: the feed and the streams open on it. Cloning gives another
/// handle to the same one.
#[derive(Debug, Clone)]
pub(crate) struct ClusterStream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gossip: SharedGossip,
    metrics: Metrics,
    policy: Policy,
    interval: Duration,
    /// The hand-off core's counters, for the event's `moves`.
    moves: Option<MoveCounters>,
    started: Instant,
    /// The latest event, framed; the feed replaces it every interval while anyone watches.
    latest: watch::Sender<Bytes>,
    permits: Arc<Semaphore>,
    /// Cancelled when the HTTP server stops: every stream ends.
    stop: CancellationToken,
    tracker: TaskTracker,
}

/// Every stream slot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_STREAMS} cluster streams are open already")]
pub(crate) struct TooManyStreams;

impl ClusterStream {
    /// The stream of a node; its tasks run on `tracker` and end when `stop` is cancelled.
    /// `moves` reads the counts of jobs moved between nodes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        gossip: SharedGossip,
        metrics: Metrics,
        policy: Policy,
        interval: Duration,
        moves: Option<StatsSource>,
        stop: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        let (latest, _) = watch::channel(Bytes::new());
        ClusterStream {
            inner: Arc::new(Inner {
                gossip,
                metrics,
                policy,
                interval,
                moves: moves.map(MoveCounters),
                started: Instant::now(),
                latest,
                permits: Arc::new(Semaphore::new(MAX_STREAMS)),
                stop,
                tracker,
            }),
        }
    }

    /// The event for this instant, as the bytes of one server-sent event.
    pub(crate) fn event(&self) -> Bytes {
        let inner = &self.inner;
        let now = Instant::now();
        let mut cluster = ClusterView::of_shared(&inner.gossip, now.into_std());
        cluster.moves = inner.moves.as_ref().map(|stats| (stats.0)().into());
        let event = ClusterEvent {
            cluster,
            uptime_ms: ms(now - inner.started),
            interval_ms: ms(inner.interval),
            policy: inner.policy,
            placements: inner.metrics.placements(),
        };
        // The views always serialise (string keys, finite numbers); compact JSON has no
        // newline, so it fits one `data:` line.
        let json = serde_json::to_vec(&event).unwrap_or_else(|e| {
            warn!(error = %e, "cannot serialise the cluster event");
            b"{}".to_vec()
        });
        let mut frame = Vec::with_capacity(json.len() + 24);
        frame.extend_from_slice(b"event: cluster\ndata: ");
        frame.extend_from_slice(&json);
        frame.extend_from_slice(b"\n\n");
        Bytes::from(frame)
    }

    /// The feed: builds the event once per interval while at least one stream is open, until
    /// the server stops.
    pub(crate) async fn feed(self) {
        let mut ticks = tokio::time::interval(self.inner.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = self.inner.stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if self.inner.latest.receiver_count() > 0 {
                self.inner.latest.send_replace(self.event());
            }
        }
    }

    /// Streams open now.
    #[cfg(test)]
    pub(crate) fn open_streams(&self) -> usize {
        MAX_STREAMS - self.inner.permits.available_permits()
    }

    /// Opens a stream: the body of the answer to `GET /v1/cluster/stream`. It starts with the
    /// preamble and the current event, and ends when the server stops or the client goes.
    pub(crate) fn open(&self) -> Result<EventBody, TooManyStreams> {
        let permit = Arc::clone(&self.inner.permits)
            .try_acquire_owned()
            .map_err(|_| TooManyStreams)?;
        let (tx, rx) = mpsc::channel(1);
        let mut first = format!(": hearsay cluster stream\nretry: {RETRY_MS}\n\n").into_bytes();
        first.extend_from_slice(&self.event());
        // The channel is new and empty: there is room for this one.
        let _ = tx.try_send(Bytes::from(first));
        let latest = self.inner.latest.subscribe();
        self.inner.metrics.streams_changed(1);
        self.inner
            .tracker
            .spawn(self.clone().pump(tx, latest, permit));
        Ok(EventBody { frames: rx })
    }

    /// Passes the feed's events to one stream's body until the server stops or the client is
    /// gone; the stream's slot is freed when this returns.
    async fn pump(
        self,
        tx: mpsc::Sender<Bytes>,
        mut latest: watch::Receiver<Bytes>,
        _permit: OwnedSemaphorePermit,
    ) {
        let mut keep_alive = tokio::time::interval_at(Instant::now() + KEEP_ALIVE, KEEP_ALIVE);
        keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut skipped = 0u64;
        loop {
            let frame = tokio::select! {
                biased;
                () = self.inner.stop.cancelled() => break,
                // The body was dropped: the client went away.
                () = tx.closed() => break,
                changed = latest.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let frame = latest.borrow_and_update().clone();
                    keep_alive.reset();
                    frame
                }
                _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
            };
            match tx.try_send(frame) {
                Ok(()) => {}
                // The client has not taken the previous frame yet: skip this one; it gets the
                // next, newer one.
                Err(mpsc::error::TrySendError::Full(_)) => skipped += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        if skipped > 0 {
            debug!(
                skipped,
                "cluster stream ended; a slow client skipped events"
            );
        }
        self.inner.metrics.streams_changed(-1);
    }
}

/// The body of a cluster stream: the frames its pump passes, until the pump stops.
#[derive(Debug)]
pub(crate) struct EventBody {
    frames: mpsc::Receiver<Bytes>,
}

impl Body for EventBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.frames
            .poll_recv(cx)
            .map(|frame| frame.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant as StdInstant;

    use hearsay_shared::{Gossip, GossipConfig, LoadVector, NodeId};
    use http_body_util::BodyExt;

    use super::*;

    fn stream(stop: CancellationToken, tracker: TaskTracker) -> ClusterStream {
        let node = NodeId::new("n").unwrap();
        let config = GossipConfig::new(
            node,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let gossip =
            Gossip::new(config, 1, LoadVector::idle(2), vec![], StdInstant::now()).unwrap();
        ClusterStream::new(
            SharedGossip::new(gossip),
            Metrics::new(),
            Policy::P2c,
            Duration::from_millis(200),
            None,
            stop,
            tracker,
        )
    }

    async fn next_frame(body: &mut EventBody) -> Option<String> {
        let frame = body.frame().await?.unwrap();
        Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_starts_with_the_preamble_and_follows_the_feed_until_stopped() {
        let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
        let stream = stream(stop.clone(), tracker.clone());
        tracker.spawn(stream.clone().feed());
        let mut body = stream.open().unwrap();
        let first = next_frame(&mut body).await.unwrap();
        assert!(
            first.starts_with(": hearsay cluster stream\nretry: 1000\n\nevent: cluster\ndata: {"),
            "{first}"
        );
        let second = next_frame(&mut body).await.unwrap();
        let data = second
            .strip_prefix("event: cluster\ndata: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .expect("one event");
        let event: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(event["node"], "n");
        assert_eq!(event["nodes"][0]["load"]["slots"], 2);
        assert_eq!(event["policy"], "p2c");
        assert_eq!(event["placements"]["local"], 0);
        assert!(event["uptime_ms"].as_u64().is_some());

        stop.cancel();
        tracker.close();
        // Whatever was passed before the stop, the body then ends.
        while next_frame(&mut body).await.is_some() {}
        tracker.wait().await;
        assert_eq!(stream.open_streams(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_client_skips_events_and_holds_one_frame() {
        let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
        let stream = stream(stop.clone(), tracker.clone());
        tracker.spawn(stream.clone().feed());
        let mut body = stream.open().unwrap();
        // Fifty intervals pass without the client reading.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(body.frames.len() <= 1, "at most one frame waits");
        let first = next_frame(&mut body).await.unwrap();
        assert!(first.starts_with(": hearsay"), "{first}");
        // The next is a fresh event, not the backlog of fifty.
        let next = next_frame(&mut body).await.unwrap();
        assert!(next.starts_with("event: cluster\n"), "{next}");
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn streams_are_bounded_and_a_closed_one_frees_its_slot() {
        let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
        let stream = stream(stop.clone(), tracker.clone());
        let bodies: Vec<_> = (0..MAX_STREAMS).map(|_| stream.open().unwrap()).collect();
        assert_eq!(stream.open().unwrap_err(), TooManyStreams);
        drop(bodies);
        // The pumps notice the closed bodies and give their slots back.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(stream.open_streams(), 0);
        assert!(stream.open().is_ok());
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_gets_keep_alive_comments() {
        let (stop, tracker) = (CancellationToken::new(), TaskTracker::new());
        // No feed: nothing but keep-alives after the first event.
        let stream = stream(stop.clone(), tracker.clone());
        let mut body = stream.open().unwrap();
        next_frame(&mut body).await.unwrap();
        let started = Instant::now();
        assert_eq!(next_frame(&mut body).await.unwrap(), ": keep-alive\n\n");
        assert!(Instant::now() - started >= KEEP_ALIVE);
        stop.cancel();
    }
}
