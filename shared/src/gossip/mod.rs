//! The gossip state machine, in the style of quinn-proto and foca: no sockets, no clock, no
//! randomness of its own.
//!
//! The caller feeds it datagrams ([`Gossip::handle_datagram`]) and timer ticks
//! ([`Gossip::handle_tick`]) with the current time (the ticks with an rng too), drains what it
//! wants sent with [`Gossip::poll_transmit`] and the membership changes with
//! [`Gossip::poll_event`], and wakes it again at [`Gossip::poll_timeout`].
//!
//! Each round (one gossip interval) the node:
//! 1. takes a new sample: its report gets the next `seq`, which is its heartbeat;
//! 2. runs the failure detector over its map;
//! 3. pushes its own report and the most newsworthy reports it has heard to `fanout` random
//!    peers: membership changes (a new node or incarnation, a change of verdict) first, then
//!    load changes, then bare heartbeats; within each, those relayed fewest times, newest first;
//!    each version at most `retransmits` times;
//! 4. every `pushpull_every` rounds, sends a digest of its map to one random peer, which answers
//!    with what it holds newer (anti-entropy: repairs whatever the rumours missed);
//! 5. every `probe_every` rounds, sends a digest to a node it believes dead or to a seed, so that
//!    a partition heals and a node that lost every peer joins again;
//! 6. sends a digest straight to every node it has just begun to suspect, and to one suspect a
//!    round after that. The digest tells the suspect that this node's view of it is stale; a
//!    suspect that is alive answers at once with its newest report, which refutes the suspicion
//!    here (the verdict goes back to alive) before it can become a death. Rumours are not sent to
//!    suspects, so without this a node whose reports were lost for a moment (a burst of packet
//!    loss, a stall under CPU pressure) would depend on third parties to clear its name.
//!
//! Suspicion stays local: each node judges from the arrivals it sees itself (phi accrual), and
//! a suspicion is never taken on hearsay, so one node's bad link cannot get a healthy node
//! shunned by the rest. Any newer report of the suspect, direct or relayed, clears it.
//!
//! # Versions no one can push out of reach
//! An incarnation is a node's start time in milliseconds of the wall clock, and a node takes at
//! most one sample (one `seq`) per round. The core has no clock, but it is told the wall-clock
//! time at its creation ([`Gossip::with_wall_clock`]), so it knows the wall clock at any `now`
//! it is given. A report whose version no honest node could have reached by then — an
//! incarnation more than [`MAX_AHEAD_MS`] ahead of the wall clock, or more samples than one a
//! millisecond since that incarnation began ([`is_plausible`]) — is refused and counted
//! (`implausible_reports`), whoever it names, this node included. Whatever a peer may accept,
//! this node may accept of itself too, so it can always refute it: it moves to an incarnation
//! above the report's (and not below its wall clock), and the arithmetic saturates rather than
//! wraps.
//!
//! A forgery within those bounds (from a member holding the cluster key, or from anyone on an
//! open cluster) is refuted like any newer report of oneself, and the refutation supersedes it
//! everywhere. So that the node hears it soon, a report that makes a known node `Left` here is
//! also pushed straight to that node, at the address it was known by: one that is in fact
//! leaving ignores it, one that is not refutes it at once, rather than when the rumour happens
//! to reach it rounds later.
//!
//! # Layout
//! - `mod.rs`: the state machine — [`Gossip`], its entry points (new, tick, datagram, leave,
//!   the polls), its outputs ([`Transmit`], [`GossipStats`]) and which versions are
//!   plausible ([`is_plausible`]).
//! - `config.rs`: [`GossipConfig`], its defaults and its checks.
//! - `membership.rs`: reports into the map — merging, refuting a newer report of oneself, word
//!   of a leave, the failure detector's verdicts as events.
//! - `relay.rs`: what is sent — the reports a push relays, digests and their answers.
//! - `tests.rs`: the unit tests.

mod config;
mod membership;
mod relay;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use rand::seq::IndexedRandom;
use rand::Rng;

use crate::map::{LoadMap, Verdict, VerdictChange};
use crate::wire::{self, DecodeError, Message};
use crate::{LoadReport, LoadVector, NodeId, NodeState, Version};

pub use config::{ConfigError, GossipConfig};

/// How far ahead of this node's wall clock a report's incarnation may be: the clock skew between
/// nodes that is tolerated (NTP keeps real clocks within milliseconds of each other).
pub const MAX_AHEAD_MS: u64 = 60_000;

/// Whether an honest node could have sent a report at `version` by wall-clock time `wall_ms`
/// (milliseconds since the UNIX epoch, as incarnations are): its incarnation is at most
/// [`MAX_AHEAD_MS`] ahead, and its `seq` is no more than one per millisecond since that
/// incarnation began, with the same allowance. No sum here can wrap.
pub fn is_plausible(version: Version, wall_ms: u64) -> bool {
    let horizon = wall_ms.saturating_add(MAX_AHEAD_MS);
    version.incarnation <= horizon && version.seq <= horizon - version.incarnation
}

/// A datagram the core wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: SocketAddr,
    /// The datagram, within the budget.
    pub bytes: Vec<u8>,
}

/// Counters of what the core has done, for metrics and measurement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GossipStats {
    /// Datagrams handed to the caller to send.
    pub datagrams_sent: u64,
    /// Bytes in those datagrams.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub datagrams_received: u64,
    /// Bytes in those datagrams.
    pub bytes_received: u64,
    /// Received datagrams that did not decode (dropped).
    pub decode_errors: u64,
    /// Reports that were newer than what the map held.
    pub reports_merged: u64,
    /// Times this node heard a newer report of itself and moved to a higher incarnation.
    pub refutations: u64,
    /// Datagrams that could not be encoded within the budget (none with a valid configuration).
    pub encode_errors: u64,
    /// Times this node began to suspect a peer (alive → suspect).
    pub suspicions: u64,
    /// Times this node declared a peer dead.
    pub deaths: u64,
    /// Digests sent straight to a suspect, asking it to refute the suspicion.
    pub suspect_probes: u64,
    /// Suspicions cleared by a newer report of the suspect (suspect → alive).
    pub suspicions_refuted: u64,
    /// Entries dropped from a full map to make room for a new node.
    pub map_evictions: u64,
    /// Reports of nodes new to a map full of live nodes, not taken in.
    pub map_refusals: u64,
    /// Reports (and digest entries) refused because no honest node could have reached their
    /// version yet (see [`is_plausible`]): forgeries, or corruption that decoded.
    pub implausible_reports: u64,
}

/// The gossip core of one node.
#[derive(Debug)]
pub struct Gossip {
    config: GossipConfig,
    incarnation: u64,
    seq: u64,
    load: LoadVector,
    map: LoadMap,
    seeds: Vec<SocketAddr>,
    outbox: VecDeque<Transmit>,
    events: VecDeque<VerdictChange>,
    next_tick: Instant,
    round: u64,
    stats: GossipStats,
    /// The instant the core was created at, and the wall-clock time then (ms since the UNIX
    /// epoch): the wall clock at `now` is `wall_at_start + (now - created)`.
    created: Instant,
    wall_at_start: u64,
}

impl Gossip {
    /// A node starting at `now` with the given incarnation (larger than any earlier start of the
    /// same node: the start time in milliseconds) and seed gossip addresses. It wants its
    /// first tick at once.
    ///
    /// Its wall clock at `now` is taken to be `incarnation` milliseconds; a caller whose
    /// incarnation is not the wall clock (a restart in the same millisecond, a test) says what
    /// the clock reads with [`Gossip::with_wall_clock`].
    pub fn new(
        config: GossipConfig,
        incarnation: u64,
        load: LoadVector,
        seeds: Vec<SocketAddr>,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let seeds = seeds.into_iter().filter(|s| *s != config.gossip).collect();
        let map = LoadMap::bounded(config.max_nodes, config.node.clone());
        let mut gossip = Gossip {
            config,
            incarnation,
            seq: 0,
            load,
            map,
            seeds,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            next_tick: now,
            round: 0,
            stats: GossipStats::default(),
            created: now,
            wall_at_start: incarnation,
        };
        gossip.publish_own(now);
        gossip.events.clear();
        Ok(gossip)
    }

    /// The same core, told that the wall clock read `wall_ms` (milliseconds since the UNIX
    /// epoch) at the `now` it was created at. The core reads no clock: this is how it knows
    /// which versions are plausible (see [`is_plausible`]).
    pub fn with_wall_clock(mut self, wall_ms: u64) -> Self {
        self.wall_at_start = wall_ms;
        self
    }

    /// The wall-clock time at `now`, in milliseconds since the UNIX epoch, as the core counts
    /// it from its creation.
    pub fn wall_ms(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.created).as_millis();
        self.wall_at_start
            .saturating_add(u64::try_from(elapsed).unwrap_or(u64::MAX))
    }

    /// The settings.
    pub fn config(&self) -> &GossipConfig {
        &self.config
    }
    /// This node's id.
    pub fn node(&self) -> &NodeId {
        &self.config.node
    }
    /// This node's current incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }
    /// The map, this node included.
    pub fn map(&self) -> &LoadMap {
        &self.map
    }
    /// The counters.
    pub fn stats(&self) -> GossipStats {
        self.stats
    }
    /// Rounds run so far.
    pub fn round(&self) -> u64 {
        self.round
    }
    /// Whether this node has announced that it is leaving.
    pub fn is_leaving(&self) -> bool {
        self.load.state == NodeState::Leaving
    }

    /// This node's current report.
    pub fn own_report(&self) -> LoadReport {
        LoadReport {
            node: self.config.node.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            load: self.load,
            api: self.config.api,
            gossip: self.config.gossip,
        }
    }

    /// The seed gossip addresses: where a node with no live peer sends its rounds, and what
    /// it probes now and then.
    pub fn seeds(&self) -> &[SocketAddr] {
        &self.seeds
    }

    /// Replaces the seed addresses (a seed name resolved again); this node's own gossip
    /// address and repeats are left out. Nothing else changes: the next round uses them.
    pub fn set_seeds(&mut self, seeds: impl IntoIterator<Item = SocketAddr>) {
        let mut kept: Vec<SocketAddr> = Vec::new();
        for seed in seeds {
            if seed != self.config.gossip && !kept.contains(&seed) {
                kept.push(seed);
            }
        }
        self.seeds = kept;
    }

    /// Whether any other node is alive in this node's map: while none is, the node gossips
    /// only to its seeds.
    pub fn has_live_peer(&self) -> bool {
        self.peers().any(|e| e.verdict() == Verdict::Alive)
    }

    /// Sets the load that the next report carries. A node that is leaving stays leaving.
    pub fn set_load(&mut self, load: LoadVector) {
        let state = if self.is_leaving() {
            NodeState::Leaving
        } else {
            load.state
        };
        self.load = LoadVector { state, ..load };
    }

    /// Publishes the load set last as a new report at once (the next `seq`, as a round
    /// would) and returns it, for an answer that carries this node's load straight to a peer:
    /// a steal answered empty, whose thief's map showed a queue here that is gone. The map
    /// and the next rounds carry it like any report of this node. A node that would go past
    /// the plausible rate of versions (one a millisecond, with [`MAX_AHEAD_MS`] to spare: see
    /// [`is_plausible`]) returns the report it published last instead.
    pub fn report_now(&mut self, now: Instant) -> LoadReport {
        let next = Version {
            incarnation: self.incarnation,
            seq: self.seq.saturating_add(1),
        };
        if is_plausible(next, self.wall_ms(now)) {
            self.publish_own(now);
        }
        self.own_report()
    }

    /// Takes in a report that came outside gossip (with a peer's answer to this node, as
    /// [`Gossip::report_now`] made it) as if a push had brought it: kept if it is newer than
    /// the map's, counted as the node's heartbeat, and relayed to peers as news of its load;
    /// an implausible report is refused and a newer report of this node refuted, as from
    /// gossip. Returns whether the map took it.
    pub fn handle_report(&mut self, now: Instant, report: LoadReport) -> bool {
        self.absorb(report, now)
    }

    /// When the core next wants [`Gossip::handle_tick`].
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next membership change, if any.
    pub fn poll_event(&mut self) -> Option<VerdictChange> {
        self.events.pop_front()
    }

    /// Announces that this node is leaving: a new report saying so goes at once to every peer
    /// not known dead (and to the seeds if there is none), and rides on every later round.
    pub fn leave(&mut self, now: Instant) {
        self.load.state = NodeState::Leaving;
        self.publish_own(now);
        let own = self.own_report();
        let mut targets = self.peer_addrs(|v| matches!(v, Verdict::Alive | Verdict::Suspect));
        if targets.is_empty() {
            targets = self.seeds.clone();
        }
        for to in targets {
            self.send_push(to, &own, &[]);
        }
    }

    /// Runs a round if one is due at `now`.
    pub fn handle_tick<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) {
        if now < self.next_tick {
            return;
        }
        self.round += 1;
        // Keep to the schedule, but after a long stall start afresh rather than catch up.
        self.next_tick += self.config.interval;
        if self.next_tick <= now {
            self.next_tick = now + self.config.interval;
        }

        self.publish_own(now);
        let changes = self
            .map
            .judge(now, &self.config.detector, &self.config.node);
        for change in &changes {
            match change.to {
                Some(Verdict::Suspect) => self.stats.suspicions += 1,
                Some(Verdict::Dead) => self.stats.deaths += 1,
                _ => {}
            }
        }
        let mut suspects: Vec<SocketAddr> = changes
            .iter()
            .filter(|c| c.to == Some(Verdict::Suspect))
            .filter_map(|c| self.map.get(&c.node).map(|e| e.report().gossip))
            .collect();
        self.events.extend(changes);
        if suspects.is_empty() {
            // No new suspect: ask one of the older ones again (the first digest may be lost).
            suspects.extend(self.peer_addrs(|v| v == Verdict::Suspect).choose(rng));
        }
        for to in suspects {
            self.stats.suspect_probes += 1;
            self.send_digest(to, rng);
        }

        let own = self.own_report();
        // Suspects get no rumours. One that is in fact alive still pushes its reports here and
        // hears ours through others; one that is gone would waste the push — and when half the
        // cluster goes silent at once (a partition), pushing to it until it is declared dead
        // halves the heartbeats that the other half hears of itself.
        let peers = self.peer_addrs(|v| v == Verdict::Alive);
        let targets: Vec<SocketAddr> = if peers.is_empty() {
            self.seeds.clone()
        } else {
            peers
                .choose_multiple(rng, self.config.fanout)
                .copied()
                .collect()
        };
        for to in targets {
            let relay = self.relay_candidates();
            self.send_push(to, &own, &relay);
        }

        if self.round % u64::from(self.config.pushpull_every) == 0 {
            if let Some(&to) = self
                .peer_addrs(|v| v == Verdict::Alive)
                .choose(rng)
                .or_else(|| self.seeds.choose(rng))
            {
                self.send_digest(to, rng);
            }
        }
        if self.round % u64::from(self.config.probe_every) == 0 {
            let alive: Vec<SocketAddr> = self.peer_addrs(|v| v != Verdict::Dead);
            let mut lost = self.peer_addrs(|v| v == Verdict::Dead);
            lost.extend(self.seeds.iter().filter(|s| !alive.contains(s)));
            if let Some(&to) = lost.choose(rng) {
                self.send_digest(to, rng);
            }
        }
    }

    /// Handles one received datagram. A datagram that does not decode is counted and dropped,
    /// and nothing else changes.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
    ) -> Result<(), DecodeError> {
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        let message = match wire::decode(bytes) {
            Ok(message) => message,
            Err(e) => {
                self.stats.decode_errors += 1;
                return Err(e);
            }
        };
        match message {
            Message::Push { reports } => {
                for report in reports.0 {
                    self.absorb(report, now);
                }
            }
            Message::Digest {
                sender,
                reply,
                entries,
            } => {
                // Answer at the address the digest came from: that is where the sender listens
                // (the address in its report may not be reachable from here).
                self.absorb(sender, now);
                // An entry at an implausible version would make this node ask for a report it
                // will refuse, or hold back one the peer lacks: it is left out, as if unlisted.
                let wall_ms = self.wall_ms(now);
                let mut entries = entries.0;
                let listed = entries.len();
                entries.retain(|e| is_plausible(e.version, wall_ms));
                self.stats.implausible_reports += (listed - entries.len()) as u64;
                self.answer_digest(from, reply, &entries);
            }
        }
        Ok(())
    }
}
