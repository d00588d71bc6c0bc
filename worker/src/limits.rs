//! Limits on what one HTTP client can hold:
//!
//! - requests that wait for a job's end (`POST /v1/jobs?wait=true` and the long poll
//!   `GET /v1/jobs/{id}?wait=true`), counted per client IP address ([`WaitLimiter`]). A wait
//!   holds a connection and a task for up to an hour (the longest job); without a bound one
//!   client could pin them by the thousand. A [`WaitPermit`] is taken before the wait and given
//!   back when it is dropped: when the answer is sent, and also when the client disconnects
//!   (hyper drops the request's future then).
//! - open connections, per client IP and in all ([`ConnectionLimiter`]), the total kept below
//!   the process's file-descriptor limit ([`ConnectionLimits::from_descriptors`]), so that a
//!   crowd of idle connections is refused with `503` instead of making `accept` fail for
//!   everyone;
//! - request bodies: a whole body within a bound and, after a grace, at a minimum rate
//!   ([`TimedBody`]), so that a body that stops arriving does not hold its connection forever.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The default of `--max-waits-per-client`.
pub const DEFAULT_MAX_WAITS_PER_CLIENT: usize = 256;
/// What a client refused for too many waits is told to wait, in seconds.
pub const WAIT_RETRY_AFTER_SECS: &str = "1";

/// The address of the client of a request, put in its extensions by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl ClientAddr {
    /// The address to count a request under: the client's IP, or `0.0.0.0` for a request that
    /// did not come through the server (in-process tests).
    pub fn ip_of<B>(req: &hyper::Request<B>) -> IpAddr {
        req.extensions()
            .get::<ClientAddr>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
    }
}

/// Open waits per client IP, at most `limit` each. Cloning shares the counts.
#[derive(Debug, Clone)]
pub struct WaitLimiter {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open wait of one client; given back on drop.
#[derive(Debug)]
pub struct WaitPermit {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// The client has `limit` waits open already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{ip} has {limit} requests waiting for jobs already (--max-waits-per-client {limit}); retry when one has ended")]
pub struct TooManyWaits {
    /// The client.
    pub ip: IpAddr,
    /// The limit.
    pub limit: usize,
}

impl WaitLimiter {
    /// At most `limit` open waits per client.
    pub fn new(limit: usize) -> Self {
        WaitLimiter {
            limit,
            open: Arc::default(),
        }
    }

    /// Takes a wait for client `ip`, if it has fewer than the limit open.
    pub fn acquire(&self, ip: IpAddr) -> Result<WaitPermit, TooManyWaits> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.limit {
            if *count == 0 {
                open.remove(&ip);
            }
            return Err(TooManyWaits {
                ip,
                limit: self.limit,
            });
        }
        *count += 1;
        Ok(WaitPermit {
            ip,
            open: self.open.clone(),
        })
    }

    /// The waits open now for `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip).copied().unwrap_or(0)
    }

    /// The number of clients with a wait open: the map holds no entry for the others, so
    /// its size follows the clients waiting now, not every client ever seen.
    pub fn clients(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for WaitPermit {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

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

/// The default of `--max-connections-per-client` (never more than the total).
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 512;
/// The largest default of `--max-connections`, however high the descriptor limit.
pub const MAX_DEFAULT_CONNECTIONS: usize = 16_384;
/// The smallest default of `--max-connections`, however low the descriptor limit.
pub const MIN_DEFAULT_CONNECTIONS: usize = 8;
/// Connections over a cap that are answered `503` at once; beyond, a connection over the cap
/// is closed without an answer (each answer holds a descriptor for up to
/// [`REFUSAL_HEAD_TIMEOUT`]).
pub const REFUSAL_ANSWERS: usize = 32;
/// How long a connection over the cap may take to send its request head before it is closed
/// unanswered.
pub const REFUSAL_HEAD_TIMEOUT: Duration = Duration::from_secs(1);
/// What a client refused for too many connections is told to wait, in seconds.
pub const CONNECTION_RETRY_AFTER_SECS: &str = "1";
/// A node that refused a connection for capacity this recently says so in `/healthz`.
pub const REFUSING_WINDOW: Duration = Duration::from_secs(5);
/// Descriptors kept for everything but API connections, whatever the limit: standard streams,
/// the listener, the gossip socket, the runtime's own (epoll, wake-ups), logs and store files.
pub const BASE_DESCRIPTOR_RESERVE: u64 = 32;
/// Descriptors kept per job slot: an `exec` job's process takes three pipes.
pub const DESCRIPTORS_PER_SLOT: u64 = 4;

/// How many connections the API holds at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// In all.
    pub total: usize,
    /// From one client IP address (at most `total`).
    pub per_client: usize,
}

impl ConnectionLimits {
    /// The default total for a process allowed `descriptors` open files (`RLIMIT_NOFILE`,
    /// the soft limit) running `slots` jobs at once: what is left after
    /// [`BASE_DESCRIPTOR_RESERVE`], [`DESCRIPTORS_PER_SLOT`] per slot, a quarter of the limit
    /// for outgoing connections (forwarded jobs, long polls to peers) and the
    /// [`REFUSAL_ANSWERS`]; within [`MIN_DEFAULT_CONNECTIONS`]..=[`MAX_DEFAULT_CONNECTIONS`].
    /// E.g. 1024 descriptors and 2 slots: 696 connections.
    pub fn from_descriptors(descriptors: u64, slots: u32) -> usize {
        let reserve = BASE_DESCRIPTOR_RESERVE
            + DESCRIPTORS_PER_SLOT * u64::from(slots)
            + descriptors / 4
            + REFUSAL_ANSWERS as u64;
        let left = usize::try_from(descriptors.saturating_sub(reserve)).unwrap_or(usize::MAX);
        left.clamp(MIN_DEFAULT_CONNECTIONS, MAX_DEFAULT_CONNECTIONS)
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionRefusal {
    /// The node holds its most connections.
    #[error("this node has {limit} connections open, its most (--max-connections {limit}); retry in a moment")]
    Total {
        /// The limit.
        limit: usize,
    },
    /// The client holds its most connections.
    #[error("{ip} has {limit} connections open already (--max-connections-per-client {limit}); reuse one, or retry when one has closed")]
    PerClient {
        /// The client.
        ip: IpAddr,
        /// The limit.
        limit: usize,
    },
}

impl ConnectionRefusal {
    /// The `reason` label of the refusal in `hearsay_http_connections_refused_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectionRefusal::Total { .. } => "total",
            ConnectionRefusal::PerClient { .. } => "per_client",
        }
    }
}

/// What becomes of a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Served; the permit is given back when the connection closes.
    Admitted(ConnectionPermit),
    /// Over a cap: answer it `503` (holding the permit, one of [`REFUSAL_ANSWERS`]), then
    /// close. `first` is set when this is the first refusal after a quiet
    /// [`REFUSING_WINDOW`] (log it).
    Refused {
        /// The place among the refusal answers.
        answer: ConnectionPermit,
        /// Why.
        refusal: ConnectionRefusal,
        /// The first refusal after a quiet window.
        first: bool,
    },
    /// Over a cap with every refusal answer taken: close it at once, unanswered.
    Shed(ConnectionRefusal),
}

/// Open API connections, per client IP and in all. Cloning shares the counts.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    limits: ConnectionLimits,
    state: Arc<Mutex<Connections>>,
}

#[derive(Debug, Default)]
struct Connections {
    open: usize,
    by_ip: HashMap<IpAddr, usize>,
    answering: usize,
    last_refusal: Option<Instant>,
    refused: u64,
    shed: u64,
}

/// What `/healthz` tells of the connections.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionHealth {
    /// Whether a connection was refused for capacity within [`REFUSING_WINDOW`], or the node
    /// is at its cap now.
    #[serde(skip)]
    pub refusing: bool,
    /// Connections served now.
    pub open: usize,
    /// `--max-connections`.
    pub max: usize,
    /// `--max-connections-per-client`.
    pub max_per_client: usize,
    /// Connections refused since the start (answered `503`, or closed unanswered).
    pub refused: u64,
    /// Of them, closed unanswered.
    pub refused_unanswered: u64,
    /// Milliseconds since the last refusal, if any.
    pub last_refused_ms_ago: Option<u128>,
}

/// One place among the open connections (or the refusal answers); given back on drop.
#[derive(Debug)]
pub struct ConnectionPermit {
    ip: Option<IpAddr>,
    state: Arc<Mutex<Connections>>,
}

impl ConnectionLimiter {
    /// Counts connections up to `limits` (the per-client limit taken as at most the total).
    pub fn new(limits: ConnectionLimits) -> Self {
        let limits = ConnectionLimits {
            total: limits.total,
            per_client: limits.per_client.min(limits.total),
        };
        ConnectionLimiter {
            limits,
            state: Arc::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connections> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection from `ip` at `now`, or refuses it.
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Admission {
        let mut state = self.lock();
        let from_ip = state.by_ip.get(&ip).copied().unwrap_or(0);
        let refusal = if state.open >= self.limits.total {
            ConnectionRefusal::Total {
                limit: self.limits.total,
            }
        } else if from_ip >= self.limits.per_client {
            ConnectionRefusal::PerClient {
                ip,
                limit: self.limits.per_client,
            }
        } else {
            state.open += 1;
            *state.by_ip.entry(ip).or_insert(0) += 1;
            return Admission::Admitted(ConnectionPermit {
                ip: Some(ip),
                state: self.state.clone(),
            });
        };
        let first = state
            .last_refusal
            .is_none_or(|last| now.saturating_duration_since(last) >= REFUSING_WINDOW);
        state.last_refusal = Some(now);
        state.refused += 1;
        if state.answering >= REFUSAL_ANSWERS {
            state.shed += 1;
            return Admission::Shed(refusal);
        }
        state.answering += 1;
        Admission::Refused {
            answer: ConnectionPermit {
                ip: None,
                state: self.state.clone(),
            },
            refusal,
            first,
        }
    }

    /// The counts as `/healthz` shows them, at `now`.
    pub fn health(&self, now: Instant) -> ConnectionHealth {
        let state = self.lock();
        let ago = state
            .last_refusal
            .map(|last| now.saturating_duration_since(last));
        ConnectionHealth {
            refusing: state.open >= self.limits.total
                || ago.is_some_and(|ago| ago < REFUSING_WINDOW),
            open: state.open,
            max: self.limits.total,
            max_per_client: self.limits.per_client,
            refused: state.refused,
            refused_unanswered: state.shed,
            last_refused_ms_ago: ago.map(|ago| ago.as_millis()),
        }
    }

    /// The number of clients with a connection open: the map holds no entry for the others.
    pub fn clients(&self) -> usize {
        self.lock().by_ip.len()
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match self.ip {
            None => state.answering -= 1,
            Some(ip) => {
                state.open -= 1;
                if let Some(count) = state.by_ip.get_mut(&ip) {
                    *count -= 1;
                    if *count == 0 {
                        state.by_ip.remove(&ip);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_counted_per_client_and_given_back_on_drop() {
        let limiter = WaitLimiter::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = limiter.acquire(a).unwrap();
        let second = limiter.acquire(a).unwrap();
        assert_eq!(
            limiter.acquire(a).unwrap_err(),
            TooManyWaits { ip: a, limit: 2 }
        );
        let other = limiter
            .acquire(b)
            .expect("another client has its own count");
        assert_eq!(limiter.open(a), 2);
        drop(first);
        assert_eq!(limiter.open(a), 1);
        let third = limiter.acquire(a).expect("released by the drop");
        drop((second, third, other));
        assert_eq!(limiter.open(a), 0);
        assert_eq!(limiter.clients(), 0, "no entry is kept for idle clients");
    }

    #[test]
    fn a_zero_limit_refuses_every_wait_and_keeps_nothing() {
        let limiter = WaitLimiter::new(0);
        let a: IpAddr = "::1".parse().unwrap();
        assert!(limiter.acquire(a).is_err());
        assert_eq!(limiter.clients(), 0);
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_default_connection_cap_leaves_room_below_the_descriptor_limit() {
        // 1024 - (32 + 2 * 4 + 256 + 32).
        assert_eq!(ConnectionLimits::from_descriptors(1024, 2), 696);
        // 128 - (32 + 4 + 32 + 32): what the low-limit test of tests/tests/connections.rs uses.
        assert_eq!(ConnectionLimits::from_descriptors(128, 1), 28);
        assert_eq!(
            ConnectionLimits::from_descriptors(16, 1),
            MIN_DEFAULT_CONNECTIONS
        );
        assert_eq!(
            ConnectionLimits::from_descriptors(1 << 20, 64),
            MAX_DEFAULT_CONNECTIONS
        );
        for descriptors in [64, 100, 256, 1024, 4096, 65_536] {
            let total = ConnectionLimits::from_descriptors(descriptors, 8) as u64;
            assert!(
                total + REFUSAL_ANSWERS as u64 + descriptors / 4 < descriptors,
                "{descriptors}: {total}"
            );
        }
    }

    #[test]
    fn connections_are_capped_per_client_and_in_all_then_shed() {
        let now = Instant::now();
        let limiter = ConnectionLimiter::new(ConnectionLimits {
            total: 3,
            per_client: 2,
        });
        let (a, b, c) = (ip("127.0.0.1"), ip("127.0.0.2"), ip("127.0.0.3"));
        let admitted = |admission: Admission| match admission {
            Admission::Admitted(permit) => permit,
            other => panic!("refused: {other:?}"),
        };
        let a1 = admitted(limiter.admit(a, now));
        let a2 = admitted(limiter.admit(a, now));
        assert!(!limiter.health(now).refusing);
        let Admission::Refused { refusal, first, .. } = limiter.admit(a, now) else {
            panic!("a third from one client is refused")
        };
        assert_eq!(refusal, ConnectionRefusal::PerClient { ip: a, limit: 2 });
        assert_eq!(refusal.reason(), "per_client");
        assert!(first, "the first refusal of a window is logged");
        let b1 = admitted(limiter.admit(b, now));
        let Admission::Refused { refusal, first, .. } = limiter.admit(c, now) else {
            panic!("a fourth in all is refused")
        };
        assert_eq!(refusal, ConnectionRefusal::Total { limit: 3 });
        assert!(!first);
        let health = limiter.health(now);
        assert!(health.refusing);
        assert_eq!(
            (health.open, health.refused, health.refused_unanswered),
            (3, 2, 0)
        );
        // Every refusal answer taken (the ones above were given back on drop): the next
        // refusals are shed.
        let answers: Vec<_> = (0..REFUSAL_ANSWERS)
            .map(|_| match limiter.admit(c, now) {
                Admission::Refused { answer, .. } => answer,
                other => panic!("answered: {other:?}"),
            })
            .collect();
        assert!(matches!(limiter.admit(c, now), Admission::Shed(_)));
        drop(answers);
        assert!(matches!(limiter.admit(c, now), Admission::Refused { .. }));
        drop((a1, a2, b1));
        assert_eq!(limiter.clients(), 0, "no entry is kept for gone clients");
        let later = now + REFUSING_WINDOW;
        let health = limiter.health(later);
        assert!(!health.refusing, "quiet for the window: {health:?}");
        assert_eq!(health.refused_unanswered, 1);
        assert_eq!(
            health.last_refused_ms_ago,
            Some(REFUSING_WINDOW.as_millis())
        );
        let _again = admitted(limiter.admit(a, later));
    }

    #[test]
    fn the_per_client_cap_is_never_more_than_the_total() {
        let limiter = ConnectionLimiter::new(ConnectionLimits {
            total: 2,
            per_client: 10,
        });
        assert_eq!(limiter.limits().per_client, 2);
    }

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
