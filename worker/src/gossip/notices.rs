//! Log lines that say why a node does not join: gossip datagrams it drops, by reason, with a
//! hint at the cause ("sealed datagrams from 127.0.0.1:7947 but no cluster key here"), and a
//! periodic line while it has seeds but no live peer ("no live peer; seeds A, B unanswered for
//! 30 s"). Serf says "failed to join" and "no installed keys could decrypt the message"; a
//! node that only counts its drops leaves its operator guessing.
//!
//! [`Notices`] decides what to say and when; it reads no clock (the gossip task passes the
//! time), so its tests run in virtual time. Each reason speaks at once the first time, then at
//! most once per [`Notices::EVERY`], with the count since it last spoke, so a flood of
//! datagrams costs a line per reason per period and not a line per datagram.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearsay_shared::seal::OpenError;

/// What [`Notices`] remembers of one drop reason.
#[derive(Debug, Clone, Copy, Default)]
struct Reason {
    /// When a line for this reason was last said.
    said: Option<Instant>,
    /// Drops since then.
    unsaid: u64,
}

/// The drop reasons of the gossip shell: [`OpenError::REASONS`], then `decode` (the core's).
const DECODE: usize = OpenError::REASONS.len();

/// Decides which log lines explain a node's failure to join.
#[derive(Debug)]
pub(crate) struct Notices {
    reasons: [Reason; DECODE + 1],
    /// Since when this node has had seeds and no live peer.
    alone_since: Option<Instant>,
    /// When the last lonely line was said.
    lonely_said: Option<Instant>,
}

impl Notices {
    /// The most often a line of one kind is said.
    pub(crate) const EVERY: Duration = Duration::from_secs(30);

    pub(crate) fn new() -> Self {
        Notices {
            reasons: [Reason::default(); DECODE + 1],
            alone_since: None,
            lonely_said: None,
        }
    }

    /// A datagram from `from` was dropped for `reason` (an [`OpenError::reason`], or
    /// `"decode"`): the line to log, if one is due.
    pub(crate) fn dropped(
        &mut self,
        now: Instant,
        reason: &str,
        from: SocketAddr,
    ) -> Option<String> {
        let index = OpenError::REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(DECODE);
        let entry = &mut self.reasons[index];
        entry.unsaid += 1;
        if entry.said.is_some_and(|said| now < said + Self::EVERY) {
            return None;
        }
        let count = std::mem::take(&mut entry.unsaid);
        let since = match entry.said {
            Some(said) => format!("{count} in the last {} s", (now - said).as_secs()),
            None => "the first".to_owned(),
        };
        entry.said = Some(now);
        Some(format!(
            "dropped gossip datagrams ({reason}; {since}), the last from {from}: {}",
            hint(reason, from)
        ))
    }

    /// The round's state: whether this node has a live peer, and its seeds. The line to log,
    /// if it has seeds and has been without a live peer for [`Self::EVERY`] since it joined
    /// or last said so. A node without seeds (the first of a cluster) is alone by design.
    pub(crate) fn round(
        &mut self,
        now: Instant,
        has_live_peer: bool,
        seeds: &[SocketAddr],
    ) -> Option<String> {
        if has_live_peer || seeds.is_empty() {
            self.alone_since = None;
            self.lonely_said = None;
            return None;
        }
        let since = *self.alone_since.get_or_insert(now);
        let last = self.lonely_said.unwrap_or(since);
        if now < last + Self::EVERY {
            return None;
        }
        self.lonely_said = Some(now);
        let seeds: Vec<String> = seeds.iter().map(SocketAddr::to_string).collect();
        Some(format!(
            "no live peer; seeds {} unanswered for {} s (is a seed up, reachable over UDP, \
             and does it hold the same cluster key?)",
            seeds.join(", "),
            (now - since).as_secs()
        ))
    }
}

/// What a drop of `reason` most likely means.
fn hint(reason: &str, from: SocketAddr) -> String {
    match reason {
        "sealed" => format!(
            "sealed datagrams from {from} but no cluster key here; start this node with the \
             cluster's --cluster-key-file (or HEARSAY_CLUSTER_KEY)"
        ),
        "unsealed" => format!(
            "plain datagrams from {from} but this node has a cluster key; that node runs \
             without the cluster's key"
        ),
        "unknown_key" => format!(
            "datagrams from {from} sealed with a key this node does not hold; add the \
             cluster's current key to this node's key file"
        ),
        "authentication" => format!(
            "datagrams from {from} failed authentication: altered, forged, or sealed for \
             another address (a peer that reaches this node at another address than its \
             --advertise-gossip?)"
        ),
        "replay" => format!(
            "datagrams from {from} replayed or outside the replay window; are the two \
             machines' clocks far apart?"
        ),
        "malformed" => format!("datagrams from {from} are not sealed gossip datagrams"),
        _ => format!(
            "datagrams from {from} do not decode as gossip; another program, or a node of an \
             incompatible wire version?"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, s: u64) -> Instant {
        start + Duration::from_secs(s)
    }

    #[test]
    fn a_reason_speaks_at_once_then_once_a_period_with_its_count() {
        let t0 = Instant::now();
        let from: SocketAddr = "127.0.0.1:7947".parse().unwrap();
        let mut notices = Notices::new();
        let first = notices
            .dropped(t0, "sealed", from)
            .expect("the first drop speaks");
        assert!(
            first.contains("sealed datagrams from 127.0.0.1:7947 but no cluster key here"),
            "{first}"
        );
        for s in 1..30 {
            assert_eq!(notices.dropped(at(t0, s), "sealed", from), None);
        }
        // Another reason has its own period.
        assert!(notices.dropped(at(t0, 29), "unknown_key", from).is_some());
        let again = notices
            .dropped(at(t0, 30), "sealed", from)
            .expect("a period on");
        assert!(again.contains("30 in the last 30 s"), "{again}");
        assert!(notices
            .dropped(at(t0, 31), "bogus", from)
            .unwrap()
            .contains("do not decode"));
    }

    #[test]
    fn every_reason_has_its_own_hint() {
        let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut hints: Vec<String> = OpenError::REASONS
            .iter()
            .chain(["decode"].iter())
            .map(|r| hint(r, from))
            .collect();
        let all = hints.len();
        hints.sort();
        hints.dedup();
        assert_eq!(hints.len(), all);
    }

    #[test]
    fn a_node_with_seeds_and_no_live_peer_says_so_every_period_and_stops_once_joined() {
        let t0 = Instant::now();
        let seeds: Vec<SocketAddr> = vec!["127.0.0.2:7946".parse().unwrap()];
        let mut notices = Notices::new();
        assert_eq!(notices.round(t0, false, &seeds), None);
        assert_eq!(notices.round(at(t0, 29), false, &seeds), None);
        let line = notices
            .round(at(t0, 30), false, &seeds)
            .expect("30 s alone");
        assert!(
            line.contains("seeds 127.0.0.2:7946 unanswered for 30 s"),
            "{line}"
        );
        assert_eq!(notices.round(at(t0, 59), false, &seeds), None);
        let line = notices
            .round(at(t0, 60), false, &seeds)
            .expect("60 s alone");
        assert!(line.contains("for 60 s"), "{line}");
        // Joined: quiet, and alone again counts from then.
        assert_eq!(notices.round(at(t0, 61), true, &seeds), None);
        assert_eq!(notices.round(at(t0, 62), false, &seeds), None);
        assert_eq!(notices.round(at(t0, 91), false, &seeds), None);
        assert!(notices.round(at(t0, 92), false, &seeds).is_some());
    }

    #[test]
    fn the_first_node_of_a_cluster_is_alone_by_design_and_says_nothing() {
        let t0 = Instant::now();
        let mut notices = Notices::new();
        for s in [0, 30, 60, 600] {
            assert_eq!(notices.round(at(t0, s), false, &[]), None);
        }
    }
}
