//! Request bodies: a whole body within a bound and, after a grace, at a minimum rate.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The default of `--body-timeout`, in milliseconds: a whole request body must have arrived
/// within this time of its head.
pub const DEFAULT_BODY_TIMEOUT_MS: u64 = 30_000;
/// The default of `--body-min-rate`, in bytes per second: after the grace, a body must keep
/// arriving at least this fast on average (0: no rate check).
pub const DEFAULT_BODY_MIN_RATE: u64 = 1024;
/// The default of `--body-rate-grace`, in milliseconds: how long a body may take before the
/// rate is checked.
pub const DEFAULT_BODY_RATE_GRACE_MS: u64 = 5_000;

/// How fast a request body must arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The whole body within this time of the request's head.
    pub timeout: Duration,
    /// After `grace`, at least this many bytes per second on average since the head: by
    /// `grace + t` seconds, `min_rate × t` bytes. 0 turns the rate check off.
    pub min_rate: u64,
    /// How long a body may take before the rate is checked.
    pub grace: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            timeout: Duration::from_millis(DEFAULT_BODY_TIMEOUT_MS),
            min_rate: DEFAULT_BODY_MIN_RATE,
            grace: Duration::from_millis(DEFAULT_BODY_RATE_GRACE_MS),
        }
    }
}

impl BodyLimits {
    /// The instant a body that began at `start` and has brought `received` bytes so far is
    /// cut, and by which bound. The rate bound falls due when `received` bytes are what the
    /// rate asks for: at `start + grace + received / min_rate`.
    pub fn deadline(&self, start: Instant, received: u64) -> (Instant, BodyBound) {
        let whole = start + self.timeout;
        if self.min_rate == 0 {
            return (whole, BodyBound::Whole);
        }
        let allowed = Duration::from_secs_f64(received as f64 / self.min_rate as f64);
        match start
            .checked_add(self.grace)
            .and_then(|t| t.checked_add(allowed))
        {
            Some(rate) if rate < whole => (rate, BodyBound::Rate),
            _ => (whole, BodyBound::Whole),
        }
    }
}

/// Which bound a body broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyBound {
    /// It was not whole within [`BodyLimits::timeout`].
    Whole,
    /// It arrived slower than [`BodyLimits::min_rate`] after the grace.
    Rate,
}

/// A request body cut by its [`BodyLimits`]: what the `408` says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyTimeout {
    /// Not whole in time.
    #[error("the request body did not arrive within {timeout_ms} ms (--body-timeout); {received} bytes came")]
    Whole {
        /// The bound.
        timeout_ms: u128,
        /// Bytes received before the cut.
        received: u64,
    },
    /// Too slow.
    #[error("the request body arrived slower than {min_rate} bytes/s after {grace_ms} ms (--body-min-rate, --body-rate-grace); {received} bytes came in {elapsed_ms} ms")]
    Rate {
        /// The bound.
        min_rate: u64,
        /// The grace.
        grace_ms: u128,
        /// Bytes received before the cut.
        received: u64,
        /// Time from the head to the cut.
        elapsed_ms: u128,
    },
}

/// Whether a [`TimedBody`] was cut: shared between the body, which the handler reads, and the
/// server, which then answers `408` instead of what the handler made of the error.
#[derive(Debug, Clone, Default)]
pub struct BodyClock(Arc<OnceLock<BodyTimeout>>);

impl BodyClock {
    /// Why the body was cut, if it was.
    pub fn expired(&self) -> Option<&BodyTimeout> {
        self.0.get()
    }
}

/// A request body that ends in an error ([`BodyTimeout`]) once it breaks its [`BodyLimits`].
/// The timer runs while the body is read; a handler that never reads the body never waits for
/// it (hyper then closes the connection rather than read on).
#[derive(Debug)]
pub struct TimedBody<B> {
    inner: B,
    limits: BodyLimits,
    start: Instant,
    received: u64,
    sleep: Pin<Box<Sleep>>,
    clock: BodyClock,
}

impl<B> TimedBody<B> {
    /// Times `inner` from now (the request's head has arrived).
    pub fn new(inner: B, limits: BodyLimits) -> (Self, BodyClock) {
        let start = Instant::now();
        let clock = BodyClock::default();
        let body = TimedBody {
            inner,
            limits,
            start,
            received: 0,
            sleep: Box::pin(tokio::time::sleep_until(limits.deadline(start, 0).0)),
            clock: clock.clone(),
        };
        (body, clock)
    }

    fn timeout(&self) -> BodyTimeout {
        let received = self.received;
        match self.limits.deadline(self.start, received).1 {
            BodyBound::Whole => BodyTimeout::Whole {
                timeout_ms: self.limits.timeout.as_millis(),
                received,
            },
            BodyBound::Rate => BodyTimeout::Rate {
                min_rate: self.limits.min_rate,
                grace_ms: self.limits.grace.as_millis(),
                received,
                elapsed_ms: self.start.elapsed().as_millis(),
            },
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body + Unpin,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Some(cut) = self.clock.expired() {
            return Poll::Ready(Some(Err(cut.clone().into())));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let this = &mut *self;
                    this.received = this.received.saturating_add(data.remaining() as u64);
                    let (deadline, _) = this.limits.deadline(this.start, this.received);
                    this.sleep.as_mut().reset(deadline);
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(other) => return Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {}
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let cut = self.timeout();
                let cut = self.clock.0.get_or_init(|| cut).clone();
                Poll::Ready(Some(Err(cut.into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_deadline_follows_the_rate_until_the_whole_bound() {
        let limits = BodyLimits {
            timeout: Duration::from_secs(30),
            min_rate: 1000,
            grace: Duration::from_secs(5),
        };
        let start = Instant::now();
        assert_eq!(
            limits.deadline(start, 0),
            (start + Duration::from_secs(5), BodyBound::Rate)
        );
        assert_eq!(
            limits.deadline(start, 2000),
            (start + Duration::from_secs(7), BodyBound::Rate)
        );
        assert_eq!(
            limits.deadline(start, 25_000),
            (start + Duration::from_secs(30), BodyBound::Whole)
        );
        let no_rate = BodyLimits {
            min_rate: 0,
            ..limits
        };
        assert_eq!(
            no_rate.deadline(start, 0),
            (start + Duration::from_secs(30), BodyBound::Whole)
        );
    }

    /// A body fed by hand: frames sent on a channel, the end when it closes.
    #[derive(Debug)]
    struct Fed(tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>);

    impl Body for Fed {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d))))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_is_cut_by_the_rate_and_one_that_flows_is_not() {
        use http_body_util::BodyExt;
        let limits = BodyLimits {
            timeout: Duration::from_secs(30),
            min_rate: 100,
            grace: Duration::from_secs(1),
        };
        // One byte, then silence: cut at 1 s + 1/100 s, by the rate.
        let (feed, rx) = tokio::sync::mpsc::unbounded_channel();
        let (body, clock) = TimedBody::new(Fed(rx), limits);
        let started = Instant::now();
        feed.send(bytes::Bytes::from_static(b"x")).unwrap();
        let e = body.collect().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_millis(1010));
        assert!(e.to_string().contains("slower than 100 bytes/s"), "{e}");
        assert!(matches!(
            clock.expired(),
            Some(BodyTimeout::Rate { received: 1, .. })
        ));

        // 200 bytes/s for 40 s: fast enough for the rate, too long for the whole bound.
        let (feed, rx) = tokio::sync::mpsc::unbounded_channel();
        let (body, clock) = TimedBody::new(Fed(rx), limits);
        let sender = tokio::spawn(async move {
            for _ in 0..400 {
                if feed.send(bytes::Bytes::from_static(&[b'x'; 20])).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let started = Instant::now();
        let e = body.collect().await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert!(e.to_string().contains("within 30000 ms"), "{e}");
        assert!(matches!(clock.expired(), Some(BodyTimeout::Whole { .. })));
        sender.abort();

        // A body that ends in time is whole, and the clock says nothing.
        let (feed, rx) = tokio::sync::mpsc::unbounded_channel();
        let (body, clock) = TimedBody::new(Fed(rx), limits);
        feed.send(bytes::Bytes::from_static(b"{}")).unwrap();
        drop(feed);
        assert_eq!(body.collect().await.unwrap().to_bytes(), "{}");
        assert!(clock.expired().is_none());
    }
}
