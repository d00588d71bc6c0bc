//! Open connections, per client IP and in all, the total kept below the file-descriptor limit.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

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
    #[cfg(test)]
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
}
