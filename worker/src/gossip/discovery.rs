//! Seeds by DNS name: `--seeds` items such as `hearsay.default.svc:7946`, resolved at start and
//! again while the node has no live peer (and now and then after), every address a name yields a
//! seed. This is how a Kubernetes headless Service or a round-robin DNS record joins a cluster:
//! the name lists the nodes that exist now, not the ones that existed when this node started.
//!
//! [`Rediscovery`] decides when to resolve next and when a failure is worth a log line; it reads
//! no clock and draws its jitter from the rng it is given, so its tests run in virtual time.
//! `run` is the shell: it resolves with the system resolver (`getaddrinfo`, so `/etc/hosts`
//! counts, as `ip netns exec` and Kubernetes use it) and hands the result to the gossip core
//! ([`Gossip::set_seeds`]). A name that does not resolve is never fatal: it is retried with
//! backoff, and the addresses it gave last are kept meanwhile.
//!
//! [`Gossip::set_seeds`]: hearsay_shared::Gossip::set_seeds

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::SharedGossip;

/// A seed given by name, `host:port`: resolved, and resolved again, to every address it has.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeedName {
    /// The DNS name (or `/etc/hosts` name), lower case, without a trailing dot.
    pub host: String,
    /// The gossip port.
    pub port: u16,
}

impl FromStr for SeedName {
    type Err = String;
    fn from_str(item: &str) -> Result<Self, Self::Err> {
        let (host, port) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("seed {item:?} needs a port: HOST:PORT or IP:PORT"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("seed {item:?}: {port:?} is not a port"))?;
        if port == 0 {
            return Err(format!("seed {item:?}: port 0 is not a gossip port"));
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if host.is_empty() || host.len() > 253 || !host.split('.').all(label_ok) {
            return Err(format!(
                "seed {item:?}: {host:?} is neither an IP address nor a host name \
                 (IPv6 goes in brackets: [::1]:7946)"
            ));
        }
        Ok(SeedName { host, port })
    }
}

impl fmt::Display for SeedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// How often names are resolved again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveTiming {
    /// Between resolutions while the node has no live peer (after one that worked).
    pub lonely: Duration,
    /// Between resolutions once the node has a live peer: new nodes are learnt by gossip then,
    /// so the name only matters again if this node is cut off.
    pub settled: Duration,
    /// The wait after a first failure; it doubles with each failure in a row...
    pub first_backoff: Duration,
    /// ...up to this.
    pub max_backoff: Duration,
    /// The least time between two warnings of failed resolution (the ones between are counted
    /// and the next warning says how many).
    pub warn_every: Duration,
}

impl Default for ResolveTiming {
    fn default() -> Self {
        ResolveTiming {
            lonely: Duration::from_secs(5),
            settled: Duration::from_secs(60),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            warn_every: Duration::from_secs(60),
        }
    }
}

/// What a resolution's outcome calls for in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Nothing beyond a debug line.
    Quiet,
    /// A failure to warn about; `unreported` failures before it went unlogged (rate limit).
    Warn {
        /// Failures since the last warning that were not logged.
        unreported: u32,
    },
    /// Every name resolved again after `failures` failed attempts in a row.
    Recovered {
        /// The failed attempts before this one.
        failures: u32,
    },
}

/// When to resolve the seed names next: a pure schedule, told the time and given an rng.
#[derive(Debug, Clone)]
pub struct Rediscovery {
    timing: ResolveTiming,
    /// The last attempt, if any.
    last: Option<Instant>,
    /// Failed attempts in a row.
    failures: u32,
    /// This wait's jitter, a factor drawn at the last attempt: nodes started together do not
    /// ask the DNS server in step.
    jitter: f64,
    last_warned: Option<Instant>,
    unreported: u32,
}

impl Rediscovery {
    /// A schedule whose first resolution is due at once.
    pub fn new(timing: ResolveTiming) -> Self {
        Rediscovery {
            timing,
            last: None,
            failures: 0,
            jitter: 1.0,
            last_warned: None,
            unreported: 0,
        }
    }

    /// The wait after the last attempt, before jitter.
    fn base_wait(&self, lonely: bool) -> Duration {
        if self.failures > 0 {
            let doublings = (self.failures - 1).min(16);
            (self.timing.first_backoff * 2u32.pow(doublings)).min(self.timing.max_backoff)
        } else if lonely {
            self.timing.lonely
        } else {
            self.timing.settled
        }
    }

    /// When the next resolution is due, for a node that has no live peer (`lonely`) or has one;
    /// `None` before the first, which is due at once.
    pub fn next_at(&self, lonely: bool) -> Option<Instant> {
        self.last
            .map(|last| last + self.base_wait(lonely).mul_f64(self.jitter))
    }

    /// Whether a resolution is due at `now`.
    pub fn is_due(&self, now: Instant, lonely: bool) -> bool {
        self.next_at(lonely).is_none_or(|at| now >= at)
    }

    /// Records an attempt at `now`: `resolved` if every name gave at least one address. Says
    /// what to log.
    pub fn record<R: Rng + ?Sized>(&mut self, now: Instant, resolved: bool, rng: &mut R) -> Notice {
        self.last = Some(now);
        self.jitter = rng.random_range(0.8..=1.2);
        if resolved {
            let failures = std::mem::take(&mut self.failures);
            self.unreported = 0;
            self.last_warned = None;
            return if failures > 0 {
                Notice::Recovered { failures }
            } else {
                Notice::Quiet
            };
        }
        self.failures = self.failures.saturating_add(1);
        let quiet = self
            .last_warned
            .is_some_and(|at| now.saturating_duration_since(at) < self.timing.warn_every);
        if quiet {
            self.unreported = self.unreported.saturating_add(1);
            Notice::Quiet
        } else {
            self.last_warned = Some(now);
            Notice::Warn {
                unreported: std::mem::take(&mut self.unreported),
            }
        }
    }

    /// Failed attempts in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// The addresses of `resolved` a socket bound to `bound` can send to: those of its family, or
/// all for a socket on `[::]` (dual-stack, which reaches IPv4 too).
pub fn reachable(
    bound: SocketAddr,
    resolved: impl IntoIterator<Item = SocketAddr>,
) -> Vec<SocketAddr> {
    resolved
        .into_iter()
        .filter(|a| match bound.ip() {
            IpAddr::V6(ip) if ip.is_unspecified() => true,
            ip => ip.is_ipv4() == a.is_ipv4(),
        })
        .collect()
}

/// How long one name's lookup may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest the task sleeps between looks at whether the node still has a live peer.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Resolves `names` now and when [`Rediscovery`] says, and sets the core's seeds to `literal`
/// and every address the names gave (a name that fails keeps the addresses it gave last), until
/// `shutdown`. `bound` is the gossip socket's address, whose family the seeds must share.
pub(crate) async fn run(
    names: Vec<SeedName>,
    literal: Vec<SocketAddr>,
    bound: SocketAddr,
    gossip: SharedGossip,
    mut rng: StdRng,
    shutdown: CancellationToken,
) {
    let mut schedule = Rediscovery::new(ResolveTiming::default());
    let mut known: BTreeMap<SeedName, Vec<SocketAddr>> = BTreeMap::new();
    let mut applied: Vec<SocketAddr> = Vec::new();
    loop {
        let lonely = !gossip.with(|g| g.has_live_peer());
        let now = tokio::time::Instant::now().into_std();
        if schedule.is_due(now, lonely) {
            let mut failed = Vec::new();
            for name in &names {
                match lookup(name).await {
                    Ok(addrs) if !reachable(bound, addrs.iter().copied()).is_empty() => {
                        known.insert(name.clone(), reachable(bound, addrs));
                    }
                    Ok(_) => {
                        failed.push(format!("{name}: no address of the gossip socket's family"))
                    }
                    Err(e) => failed.push(format!("{name}: {e}")),
                }
            }
            let mut seeds = literal.clone();
            seeds.extend(known.values().flatten().copied());
            seeds.sort();
            seeds.dedup();
            if seeds != applied {
                info!(seeds = ?seeds, lonely, "seed names resolved; seeds now");
                applied.clone_from(&seeds);
            }
            gossip.with(|g| g.set_seeds(seeds));
            let now = tokio::time::Instant::now().into_std();
            match schedule.record(now, failed.is_empty(), &mut rng) {
                Notice::Quiet if !failed.is_empty() => {
                    debug!(failures = schedule.failures(), errors = ?failed, "seed names still do not resolve")
                }
                Notice::Quiet => debug!(lonely, "seed names resolved"),
                Notice::Warn { unreported } => warn!(
                    errors = ?failed,
                    failures = schedule.failures(),
                    unreported,
                    "cannot resolve seed names; retrying with backoff (the node runs meanwhile)"
                ),
                Notice::Recovered { failures } => {
                    info!(failures, "seed names resolve again");
                }
            }
        }
        let now = tokio::time::Instant::now().into_std();
        let wake = schedule
            .next_at(lonely)
            .unwrap_or(now)
            .min(now + CHECK_EVERY);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    debug!("seed resolution stopped");
}

/// Every address `name` resolves to now, by the system resolver, within [`LOOKUP_TIMEOUT`].
async fn lookup(name: &SeedName) -> Result<Vec<SocketAddr>, String> {
    let query = tokio::net::lookup_host((name.host.as_str(), name.port));
    match tokio::time::timeout(LOOKUP_TIMEOUT, query).await {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn timing() -> ResolveTiming {
        ResolveTiming::default()
    }

    /// The wait from `now` to the next resolution.
    fn wait(s: &Rediscovery, now: Instant, lonely: bool) -> Duration {
        s.next_at(lonely).unwrap() - now
    }

    #[test]
    fn names_are_parsed_and_refused_with_the_item_named() {
        let n: SeedName = "Hearsay.Default.svc.:7946".parse().unwrap();
        assert_eq!(n.host, "hearsay.default.svc");
        assert_eq!(n.port, 7946);
        assert_eq!(n.to_string(), "hearsay.default.svc:7946");
        let e = "nope".parse::<SeedName>().unwrap_err();
        assert!(e.contains("\"nope\" needs a port"), "{e}");
        assert!("a.b:0".parse::<SeedName>().is_err());
        assert!("a.b:99999".parse::<SeedName>().is_err());
        assert!("a..b:1".parse::<SeedName>().is_err());
        assert!("a b:1".parse::<SeedName>().is_err());
        let e = "::1:7946".parse::<SeedName>().unwrap_err();
        assert!(e.contains("IPv6 goes in brackets"), "{e}");
    }

    #[test]
    fn the_first_resolution_is_at_once_then_lonely_nodes_ask_often_and_settled_ones_seldom() {
        let mut rng = StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        let mut s = Rediscovery::new(timing());
        assert!(s.is_due(t0, true) && s.is_due(t0, false));
        assert_eq!(s.record(t0, true, &mut rng), Notice::Quiet);
        let lonely = wait(&s, t0, true);
        let settled = wait(&s, t0, false);
        assert!(
            lonely >= Duration::from_secs(4) && lonely <= Duration::from_secs(6),
            "{lonely:?}"
        );
        assert!(
            settled >= Duration::from_secs(48) && settled <= Duration::from_secs(72),
            "{settled:?}"
        );
        assert!(!s.is_due(t0 + Duration::from_secs(3), true));
        assert!(s.is_due(t0 + Duration::from_secs(6), true));
        // A node that loses its last peer is due at the lonely pace, counted from the last try.
        assert!(s.is_due(t0 + Duration::from_secs(7), true));
        assert!(!s.is_due(t0 + Duration::from_secs(7), false));
    }

    #[test]
    fn failures_back_off_to_a_cap_and_a_success_resets() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut now = Instant::now();
        let mut s = Rediscovery::new(timing());
        let mut waits = Vec::new();
        for _ in 0..8 {
            s.record(now, false, &mut rng);
            let w = wait(&s, now, true);
            waits.push(w);
            now += w;
        }
        // 1, 2, 4, 8, 16, 30, 30, 30 s, each within ±20%.
        let expected = [1, 2, 4, 8, 16, 30, 30, 30];
        for (w, e) in waits.iter().zip(expected) {
            let e = Duration::from_secs(e);
            assert!(*w >= e.mul_f64(0.8) && *w <= e.mul_f64(1.2), "{waits:?}");
        }
        assert_eq!(s.failures(), 8);
        assert_eq!(
            s.record(now, true, &mut rng),
            Notice::Recovered { failures: 8 }
        );
        assert_eq!(s.failures(), 0);
        assert!(wait(&s, now, true) >= Duration::from_secs(4));
    }

    #[test]
    fn failures_are_warned_about_at_most_once_a_minute_with_the_rest_counted() {
        let mut rng = StdRng::seed_from_u64(3);
        let t0 = Instant::now();
        let mut s = Rediscovery::new(timing());
        assert_eq!(
            s.record(t0, false, &mut rng),
            Notice::Warn { unreported: 0 }
        );
        for k in 1..=5 {
            let at = t0 + Duration::from_secs(10 * k);
            assert_eq!(s.record(at, false, &mut rng), Notice::Quiet, "{k}");
        }
        assert_eq!(
            s.record(t0 + Duration::from_secs(61), false, &mut rng),
            Notice::Warn { unreported: 5 }
        );
        // After a recovery, the next failure is warned about at once.
        s.record(t0 + Duration::from_secs(62), true, &mut rng);
        assert_eq!(
            s.record(t0 + Duration::from_secs(63), false, &mut rng),
            Notice::Warn { unreported: 0 }
        );
    }

    #[test]
    fn the_same_rng_seed_gives_the_same_schedule() {
        let t0 = Instant::now();
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut s = Rediscovery::new(timing());
            s.record(t0, false, &mut rng);
            s.next_at(true)
        };
        assert_eq!(run(9), run(9));
    }

    #[test]
    fn only_addresses_the_socket_can_reach_are_seeds() {
        let v4: SocketAddr = "10.0.0.1:7946".parse().unwrap();
        let v6: SocketAddr = "[fd00::1]:7946".parse().unwrap();
        let any4: SocketAddr = "0.0.0.0:7946".parse().unwrap();
        let any6: SocketAddr = "[::]:7946".parse().unwrap();
        let own6: SocketAddr = "[fd00::2]:7946".parse().unwrap();
        assert_eq!(reachable(any4, [v4, v6]), [v4]);
        assert_eq!(reachable(own6, [v4, v6]), [v6]);
        assert_eq!(reachable(any6, [v4, v6]), [v4, v6]);
    }

    #[tokio::test]
    async fn localhost_resolves_through_the_system_resolver() {
        let name: SeedName = "localhost:7946".parse().unwrap();
        let addrs = lookup(&name).await.unwrap();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(addrs.iter().all(|a| a.port() == 7946));
    }
}
