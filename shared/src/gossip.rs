//! The gossip state machine, in the style of quinn-proto and foca: no sockets, no clock, no
//! randomness of its own.
//!
//! The caller feeds it datagrams ([`Gossip::handle_datagram`]) and timer ticks
//! ([`Gossip::handle_tick`]), with the current time and an rng, drains what it wants sent with
//! [`Gossip::poll_transmit`] and the membership changes with [`Gossip::poll_event`], and wakes it
//! again at [`Gossip::poll_timeout`].
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

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;

use crate::detector::DetectorConfig;
use crate::map::{Entry, LoadMap, MergeOutcome, News, Verdict, VerdictChange};
use crate::wire::{self, DecodeError, DigestEntry, DigestEntryRef, EncodeError, Message};
use crate::{LoadReport, LoadVector, NodeId, NodeState, Version};

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

/// How a node gossips.
#[derive(Debug, Clone, PartialEq)]
pub struct GossipConfig {
    /// This node.
    pub node: NodeId,
    /// Where this node's HTTP API listens (carried in its reports).
    pub api: SocketAddr,
    /// Where this node's gossip socket listens (carried in its reports).
    pub gossip: SocketAddr,
    /// Time between rounds.
    pub interval: Duration,
    /// Peers pushed to each round.
    pub fanout: usize,
    /// Largest datagram, in bytes.
    pub budget: usize,
    /// Most reports relayed in one push besides the node's own.
    pub relay_per_push: usize,
    /// How many pushes carry one version of a report before it is no longer news to relay.
    pub retransmits: u32,
    /// Rounds between anti-entropy digest exchanges.
    pub pushpull_every: u32,
    /// Rounds between datagrams to a dead node or a seed.
    pub probe_every: u32,
    /// Most push datagrams sent in answer to one digest.
    pub max_answer_datagrams: usize,
    /// The failure detector's settings.
    pub detector: DetectorConfig,
    /// The most nodes the map holds, this one included (see [`LoadMap`] for the eviction rule).
    pub max_nodes: usize,
}

impl GossipConfig {
    /// Defaults for a node: 200 ms rounds, fanout 3, 1400-byte datagrams.
    pub fn new(node: NodeId, api: SocketAddr, gossip: SocketAddr) -> Self {
        GossipConfig {
            node,
            api,
            gossip,
            interval: Duration::from_millis(200),
            fanout: 3,
            budget: wire::DEFAULT_BUDGET,
            // Few relays and frequent digest exchanges, measured with the simulation
            // (`gossip-sim`): at the same bandwidth at 20 nodes (about 6 kB/s a node) a digest
            // exchange every 2 rounds spreads heartbeats more evenly than rumours do (8 relays
            // and an exchange every 5 rounds had a crash detected by all 20 peers later, and
            // left silences half as long again at 100 nodes, where false deaths hide).
            relay_per_push: 4,
            retransmits: 3,
            pushpull_every: 2,
            probe_every: 5,
            max_answer_datagrams: 4,
            detector: DetectorConfig::default(),
            max_nodes: crate::map::DEFAULT_MAX_NODES,
        }
    }

    /// Checks the settings; the error names the setting and why it is refused.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, reason: String| Err(ConfigError { field, reason });
        if self.interval < Duration::from_millis(10) || self.interval > Duration::from_secs(60) {
            return bad("interval", "must be between 10 ms and 60 s".into());
        }
        if self.fanout == 0 || self.fanout > 64 {
            return bad("fanout", "must be between 1 and 64".into());
        }
        if self.budget < wire::MIN_BUDGET || self.budget > wire::MAX_DATAGRAM {
            return bad(
                "budget",
                format!(
                    "must be between {} and {} bytes",
                    wire::MIN_BUDGET,
                    wire::MAX_DATAGRAM
                ),
            );
        }
        if self.max_nodes < 2 {
            return bad("max_nodes", "must be at least 2".into());
        }
        if self.pushpull_every == 0 || self.probe_every == 0 {
            return bad("pushpull_every/probe_every", "must be at least 1".into());
        }
        Ok(())
    }
}

/// A setting that [`GossipConfig::validate`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gossip setting {field}: {reason}")]
pub struct ConfigError {
    /// The setting.
    pub field: &'static str,
    /// Why it is refused.
    pub reason: String,
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
    /// and nothing else changes. (Answering needs no randomness at present; the rng is taken so
    /// that it may, without changing every caller.)
    pub fn handle_datagram<R: Rng + ?Sized>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        bytes: &[u8],
        _rng: &mut R,
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

    /// Merges one report; whether the map took it as newer.
    fn absorb(&mut self, report: LoadReport, now: Instant) -> bool {
        if !is_plausible(report.version(), self.wall_ms(now)) {
            // Out of any honest node's reach: taken in, it would outrank every report its node
            // can send for a long time (or, for this node, could not be refuted by a report its
            // peers would take). Refused here as it is everywhere else.
            self.stats.implausible_reports += 1;
            return false;
        }
        if report.node == self.config.node {
            // Someone holds a report of this node newer than the one it sends now: a previous
            // life with a clock that ran ahead, or a forgery. Move past it, and not below the
            // wall clock, so that the new life's samples start afresh. The report is plausible
            // here, so the new incarnation (one above it, or the wall clock) is plausible from
            // the next millisecond on to every peer whose clock is not behind this one's.
            if report.version() > self.own_report().version() {
                self.incarnation = report.incarnation.saturating_add(1).max(self.wall_ms(now));
                self.seq = 0;
                self.stats.refutations += 1;
                self.publish_own(now);
            }
            return false;
        }
        // Where the node was known to listen before this report: a forged one may name
        // another address.
        let known = self.map.get(&report.node).map(|e| e.report().gossip);
        let echo = known
            .filter(|_| report.load.state == NodeState::Leaving)
            .map(|to| (to, report.clone()));
        let outcome = self.map.merge_report(report, now, &self.config.detector);
        self.count_merge(&outcome);
        if outcome.newer {
            self.stats.reports_merged += 1;
        }
        if let (Some((to, report)), Some(Verdict::Left)) =
            (echo, outcome.change.as_ref().and_then(|c| c.to))
        {
            // Word that a node is leaving: tell the node. One that is in fact leaving ignores
            // it (its own announcement comes back once from each peer); one that is not (the
            // word is forged) refutes it at once, rather than when the rumour happens to reach
            // it, rounds later. The sender's address is not trusted to tell the two apart: it
            // can be spoofed. Only a node already known is told, at its known address, so that
            // forged leaves of made-up nodes cannot aim this node's answers anywhere.
            let own = self.own_report();
            self.send_push(to, &own, &[report]);
        }
        if let Some(VerdictChange {
            from: Some(Verdict::Suspect),
            to: Some(Verdict::Alive),
            ..
        }) = outcome.change
        {
            self.stats.suspicions_refuted += 1;
        }
        let newer = outcome.newer;
        self.events.extend(outcome.evicted);
        self.events.extend(outcome.change);
        newer
    }

    fn publish_own(&mut self, now: Instant) {
        self.seq = self.seq.saturating_add(1);
        let own = self.own_report();
        let outcome = self.map.merge_report(own, now, &self.config.detector);
        self.count_merge(&outcome);
        self.events.extend(outcome.evicted);
        self.events.extend(outcome.change);
    }

    fn count_merge(&mut self, outcome: &MergeOutcome) {
        self.stats.map_evictions += u64::from(outcome.evicted.is_some());
        self.stats.map_refusals += u64::from(outcome.refused);
    }

    /// Every entry of the map but this node's own.
    fn peers(&self) -> impl Iterator<Item = &Entry> + '_ {
        // Tells the own entry by its address rather than its id: this runs over the whole map
        // several times a round, and comparing ids is comparing strings.
        let own: *const Entry = self
            .map
            .get(&self.config.node)
            .map_or(std::ptr::null(), |e| e);
        self.map.iter().filter(move |e| !std::ptr::eq(*e, own))
    }

    fn peer_addrs(&self, verdict: impl Fn(Verdict) -> bool) -> Vec<SocketAddr> {
        self.peers()
            .filter(|e| verdict(e.verdict()))
            .map(|e| e.report().gossip)
            .collect()
    }

    /// Reports worth relaying, most newsworthy first: fewest pushes so far, then newest here.
    /// Dead nodes' reports are never relayed: they are stale by definition.
    fn relay_candidates(&self) -> Vec<LoadReport> {
        let mut candidates: Vec<&Entry> = self
            .peers()
            .filter(|e| e.verdict() != Verdict::Dead && e.transmits < self.config.retransmits)
            .collect();
        // Membership changes first, then load changes, then bare heartbeats (the budget is a
        // few reports a push, and at a thousand nodes heartbeats alone would fill it). Ties go
        // to the smaller node id, so the order is total and a partial sort (only the few that
        // are taken need ordering) picks the same reports as a full one.
        let order = |a: &&Entry, b: &&Entry| {
            a.news
                .cmp(&b.news)
                .then(a.transmits.cmp(&b.transmits))
                .then(b.refreshed().cmp(&a.refreshed()))
                .then_with(|| a.report().node.cmp(&b.report().node))
        };
        let take = self.config.relay_per_push.min(candidates.len());
        if take < candidates.len() {
            candidates.select_nth_unstable_by(take, order);
            candidates.truncate(take);
        }
        candidates.sort_unstable_by(order);
        candidates.into_iter().map(|e| e.report().clone()).collect()
    }

    fn send_push(&mut self, to: SocketAddr, own: &LoadReport, relay: &[LoadReport]) {
        match wire::encode_push(own, relay, self.config.budget) {
            Ok((bytes, carried)) => {
                for report in &relay[..carried] {
                    if let Some(entry) = self.map.get_mut(&report.node) {
                        entry.transmits += 1;
                        if entry.transmits >= self.config.retransmits {
                            entry.news = News::Heartbeat;
                        }
                    }
                }
                self.queue(to, bytes);
            }
            Err(e) => self.encode_failed(e),
        }
    }

    /// Sends a digest of the map to `to`: every node's version, from a random starting point,
    /// as many as fit.
    fn send_digest<R: Rng + ?Sized>(&mut self, to: SocketAddr, rng: &mut R) {
        let own = self.own_report();
        let encoded = {
            let mut entries: Vec<DigestEntryRef<'_>> = self
                .peers()
                .map(|e| DigestEntryRef {
                    node: &e.report().node,
                    version: e.report().version(),
                })
                .collect();
            entries.shuffle(rng);
            wire::encode_digest_ref(&own, false, entries, self.config.budget)
        };
        match encoded {
            Ok((bytes, _)) => self.queue(to, bytes),
            Err(e) => self.encode_failed(e),
        }
    }

    /// Answers a digest from `from`: pushes what this node holds newer than the digest lists
    /// (and, for a first digest, what it does not list), and asks with a reply digest for what
    /// the peer holds newer.
    fn answer_digest(&mut self, from: SocketAddr, reply: bool, entries: &[DigestEntry]) {
        let own = self.own_report();
        let budget = self.config.budget;
        let mut datagrams = Vec::new();
        let mut failed = None;
        {
            let listed: HashMap<&NodeId, Version> =
                entries.iter().map(|e| (&e.node, e.version)).collect();
            // What the peer lacks: reports newer than its versions first, then (for a first
            // digest, which lists the peer's whole map as far as it fits) nodes it did not list.
            let mut newer: Vec<&LoadReport> = Vec::new();
            let mut unlisted: Vec<&Entry> = Vec::new();
            for entry in self.peers().filter(|e| e.verdict() != Verdict::Dead) {
                let report = entry.report();
                match listed.get(&report.node) {
                    Some(v) if report.version() > *v => newer.push(report),
                    None if !reply => unlisted.push(entry),
                    _ => {}
                }
            }
            unlisted.sort_by_key(|e| std::cmp::Reverse(e.refreshed()));
            newer.extend(unlisted.into_iter().map(Entry::report));
            let mut rest = &newer[..];
            for _ in 0..self.config.max_answer_datagrams {
                match wire::encode_push(&own, rest.iter().copied(), budget) {
                    Ok((bytes, carried)) => {
                        datagrams.push(bytes);
                        rest = &rest[carried..];
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
                if rest.is_empty() {
                    break;
                }
            }
            if !reply {
                // Ask for what the peer holds newer than this node does, or that it lacks.
                let wanted: Vec<DigestEntryRef<'_>> = entries
                    .iter()
                    .filter(|e| e.node != self.config.node)
                    .filter_map(|e| {
                        let mine = self.map.get(&e.node).map(|m| m.report().version());
                        match mine {
                            Some(mine) if e.version <= mine => None,
                            _ => Some(DigestEntryRef {
                                node: &e.node,
                                version: mine.unwrap_or(Version {
                                    incarnation: 0,
                                    seq: 0,
                                }),
                            }),
                        }
                    })
                    .collect();
                if !wanted.is_empty() && failed.is_none() {
                    match wire::encode_digest_ref(&own, true, wanted, budget) {
                        Ok((bytes, _)) => datagrams.push(bytes),
                        Err(e) => failed = Some(e),
                    }
                }
            }
        }
        for bytes in datagrams {
            self.queue(from, bytes);
        }
        if let Some(e) = failed {
            self.encode_failed(e);
        }
    }

    fn queue(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        self.stats.datagrams_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.outbox.push_back(Transmit { to, bytes });
    }

    fn encode_failed(&mut self, _error: EncodeError) {
        // The budget is validated against the largest possible own report, so this cannot
        // happen with a valid configuration; count it (`encode_errors`) rather than crash a
        // node, in debug builds too.
        self.stats.encode_errors += 1;
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    /// A wall-clock time in ms, as a real incarnation is.
    const WALL: u64 = 1_790_000_000_000;

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 7000 + i as u16))
    }

    fn id(i: usize) -> NodeId {
        NodeId::new(format!("n{i}")).unwrap()
    }

    /// Node `i`, started at `now` with the wall clock at `wall` (its incarnation).
    fn core(i: usize, wall: u64, seeds: Vec<SocketAddr>, now: Instant) -> Gossip {
        let config = GossipConfig::new(id(i), addr(i), addr(i));
        Gossip::new(config, wall, LoadVector::idle(2), seeds, now).unwrap()
    }

    #[test]
    fn seeds_can_be_replaced_and_a_lonely_node_pushes_to_the_new_ones() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let mut a = core(0, WALL, vec![addr(1)], now);
        assert_eq!(a.seeds(), [addr(1)]);
        assert!(!a.has_live_peer());
        // Its own address and repeats are left out.
        a.set_seeds([addr(0), addr(2), addr(3), addr(2)]);
        assert_eq!(a.seeds(), [addr(2), addr(3)]);
        a.handle_tick(now, &mut rng);
        let sent: Vec<Transmit> = std::iter::from_fn(|| a.poll_transmit()).collect();
        let to: Vec<SocketAddr> = sent.iter().map(|t| t.to).collect();
        assert!(to.contains(&addr(2)) && to.contains(&addr(3)), "{to:?}");
        assert!(!to.contains(&addr(1)), "the old seed is gone: {to:?}");
        // Once a seed hears it and answers, the node has a live peer.
        let mut b = core(2, WALL, vec![], now);
        for t in sent.iter().filter(|t| t.to == addr(2)) {
            b.handle_datagram(now, addr(0), &t.bytes, &mut rng).unwrap();
        }
        b.handle_tick(now, &mut rng);
        for t in std::iter::from_fn(|| b.poll_transmit()).filter(|t| t.to == addr(0)) {
            a.handle_datagram(now, addr(2), &t.bytes, &mut rng).unwrap();
        }
        assert!(a.has_live_peer());
    }

    #[test]
    fn a_report_made_now_and_handed_over_directly_is_taken_as_news_once() {
        let now = Instant::now();
        let mut a = core(0, WALL, vec![], now);
        let mut b = core(1, WALL, vec![], now);
        let before = a.own_report().version();
        a.set_load(LoadVector {
            queued: 5,
            ..LoadVector::idle(2)
        });
        let report = a.report_now(now);
        assert!(report.version() > before, "a new version at once");
        assert_eq!(report.load.queued, 5);
        assert_eq!(a.map().get(&id(0)).unwrap().report(), &report);
        assert!(b.handle_report(now, report.clone()));
        let entry = b.map().get(&id(0)).unwrap();
        assert_eq!(entry.report(), &report);
        assert_eq!(entry.verdict(), Verdict::Alive);
        assert!(entry.news <= News::Load, "relayed as news");
        assert_eq!(entry.transmits, 0);
        // The same report again, or an older one, changes nothing.
        assert!(!b.handle_report(now, report.clone()));
        let older = LoadReport {
            seq: before.seq,
            ..report.clone()
        };
        assert!(!b.handle_report(now, older));
        assert_eq!(b.map().get(&id(0)).unwrap().report(), &report);
        // An implausible one is refused and counted, as from gossip.
        let forged = LoadReport {
            seq: u64::MAX,
            ..report.clone()
        };
        assert!(!b.handle_report(now, forged));
        assert_eq!(b.stats().implausible_reports, 1);
        // One of b itself, newer than its own, is refuted.
        let own = LoadReport {
            seq: b.own_report().seq + 1,
            ..b.own_report()
        };
        assert!(!b.handle_report(now, own));
        assert_eq!(b.stats().refutations, 1);
    }

    #[test]
    fn reports_made_now_stop_at_the_plausible_rate_of_versions() {
        let now = Instant::now();
        let mut a = core(0, WALL, vec![], now);
        let mut last = a.own_report().version();
        for _ in 0..MAX_AHEAD_MS + 10 {
            last = a.report_now(now).version();
        }
        assert!(is_plausible(last, a.wall_ms(now)));
        assert_eq!(
            last.seq, MAX_AHEAD_MS,
            "one a millisecond, and the allowance"
        );
        assert_eq!(a.report_now(now).version(), last);
    }

    fn forged(i: usize, incarnation: u64, seq: u64, state: NodeState) -> Vec<u8> {
        let report = LoadReport {
            node: id(i),
            incarnation,
            seq,
            load: LoadVector {
                state,
                ..LoadVector::idle(2)
            },
            api: addr(i),
            gossip: addr(i),
        };
        wire::encode_push(&report, [], wire::DEFAULT_BUDGET)
            .unwrap()
            .0
    }

    /// Cores that hear each other at once, driven in steps of 10 ms.
    struct Net {
        cores: Vec<Gossip>,
        now: Instant,
        rng: StdRng,
    }

    impl Net {
        fn new(n: usize, wall: u64) -> Self {
            let now = Instant::now();
            let cores = (0..n).map(|i| core(i, wall, vec![addr(0)], now)).collect();
            Net {
                cores,
                now,
                rng: StdRng::seed_from_u64(7),
            }
        }

        /// Hands `bytes` to core `to` as if a rogue at `from` had sent them, and delivers what
        /// follows.
        fn inject(&mut self, to: usize, bytes: &[u8]) {
            let rogue = SocketAddr::from(([127, 0, 0, 9], 9));
            let _ = self.cores[to].handle_datagram(self.now, rogue, bytes, &mut self.rng);
            self.deliver();
        }

        fn deliver(&mut self) {
            loop {
                let mut sent = Vec::new();
                for core in &mut self.cores {
                    let from = core.config().gossip;
                    sent.extend(std::iter::from_fn(|| core.poll_transmit()).map(|t| (from, t)));
                }
                if sent.is_empty() {
                    return;
                }
                for (from, t) in sent {
                    if let Some(core) = self.cores.iter_mut().find(|c| c.config().gossip == t.to) {
                        core.handle_datagram(self.now, from, &t.bytes, &mut self.rng)
                            .unwrap();
                    }
                }
            }
        }

        fn run(&mut self, duration: Duration) {
            let end = self.now + duration;
            while self.now < end {
                self.now += Duration::from_millis(10);
                for core in &mut self.cores {
                    core.handle_tick(self.now, &mut self.rng);
                }
                self.deliver();
            }
        }

        /// Whether every other core holds node `i` alive, taking work, at a version newer
        /// than `than`.
        fn all_hold_alive(&self, i: usize, than: Version) -> bool {
            self.cores
                .iter()
                .enumerate()
                .filter(|(o, _)| *o != i)
                .all(|(_, c)| {
                    c.map()
                        .get(&id(i))
                        .is_some_and(|e| e.takes_work() && e.report().version() > than)
                })
        }
    }

    #[test]
    fn plausibility_allows_the_clock_skew_and_one_sample_a_millisecond() {
        let v = |incarnation, seq| Version { incarnation, seq };
        assert!(is_plausible(v(WALL, 0), WALL));
        assert!(is_plausible(v(WALL + MAX_AHEAD_MS, 0), WALL));
        assert!(!is_plausible(v(WALL + MAX_AHEAD_MS + 1, 0), WALL));
        // Started a second ago: a thousand samples and the allowance, no more.
        assert!(is_plausible(v(WALL - 1000, 1000 + MAX_AHEAD_MS), WALL));
        assert!(!is_plausible(v(WALL - 1000, 1001 + MAX_AHEAD_MS), WALL));
        assert!(!is_plausible(v(u64::MAX, u64::MAX), WALL));
        assert!(!is_plausible(v(0, u64::MAX), WALL));
        // At the end of time nothing wraps: the horizon stops at u64::MAX.
        assert!(is_plausible(v(u64::MAX, 0), u64::MAX));
        assert!(!is_plausible(v(u64::MAX, 1), u64::MAX));
    }

    #[test]
    fn a_report_at_the_top_of_u64_is_refused_and_counted_whoever_it_names() {
        let t0 = Instant::now();
        let mut me = core(0, WALL, vec![], t0);
        let mut rng = StdRng::seed_from_u64(1);
        // A peer, heard honestly, then forged at the top of u64.
        me.handle_datagram(t0, addr(3), &forged(3, WALL, 5, NodeState::Alive), &mut rng)
            .unwrap();
        let t1 = t0 + Duration::from_millis(100);
        me.handle_datagram(
            t1,
            addr(9),
            &forged(3, u64::MAX, u64::MAX, NodeState::Alive),
            &mut rng,
        )
        .unwrap();
        let entry = me.map().get(&id(3)).unwrap();
        assert_eq!(
            entry.report().version(),
            Version {
                incarnation: WALL,
                seq: 5
            }
        );
        assert!(entry.takes_work());
        // This node itself: refused too, not refuted (a refutation could not be believed).
        me.handle_datagram(
            t1,
            addr(9),
            &forged(0, u64::MAX, u64::MAX, NodeState::Leaving),
            &mut rng,
        )
        .unwrap();
        assert_eq!(me.incarnation(), WALL);
        assert_eq!(me.stats().refutations, 0);
        assert_eq!(me.stats().implausible_reports, 2);
        // The same in a digest: its sender and its entries.
        let sender = LoadReport {
            node: id(4),
            incarnation: u64::MAX,
            seq: 0,
            load: LoadVector::idle(1),
            api: addr(4),
            gossip: addr(4),
        };
        let entries = [DigestEntry {
            node: id(3),
            version: Version {
                incarnation: WALL,
                seq: u64::MAX,
            },
        }];
        let (bytes, _) = wire::encode_digest(&sender, false, entries, 1400).unwrap();
        me.handle_datagram(t1, addr(4), &bytes, &mut rng).unwrap();
        assert_eq!(me.stats().implausible_reports, 4);
        assert!(me.map().get(&id(4)).is_none());
        // Left out of the digest, the entry counts as unlisted: this node's report of n3 is
        // pushed back, and nothing is asked for.
        let answers: Vec<Message> = std::iter::from_fn(|| me.poll_transmit())
            .map(|t| wire::decode(&t.bytes).unwrap())
            .collect();
        assert_eq!(answers.len(), 1, "{answers:?}");
        assert!(
            matches!(&answers[0], Message::Push { reports } if reports.0.iter().any(|r| r.node == id(3))),
            "{answers:?}"
        );
    }

    #[test]
    fn a_refutation_at_the_top_of_u64_saturates_and_never_wraps() {
        let t0 = Instant::now();
        let start = u64::MAX - 1000;
        let mut me = core(0, start, vec![], t0);
        let mut rng = StdRng::seed_from_u64(1);
        let forgery = forged(0, u64::MAX, 0, NodeState::Leaving);
        me.handle_datagram(t0, addr(9), &forgery, &mut rng).unwrap();
        assert_eq!(me.stats().refutations, 1);
        assert_eq!(me.incarnation(), u64::MAX, "wrapped");
        assert!(
            me.own_report().version()
                > Version {
                    incarnation: u64::MAX,
                    seq: 0
                }
        );
        assert!(!me.is_leaving());
        // And the samples that follow saturate as well.
        for round in 1..=3 {
            me.handle_tick(t0 + me.config().interval * round, &mut rng);
        }
        assert_eq!(me.incarnation(), u64::MAX);
        assert!(me.own_report().seq >= 1);
        assert_eq!(me.wall_ms(t0 + Duration::from_secs(2000)), u64::MAX);
    }

    #[test]
    fn word_of_a_leave_goes_to_the_leaver_at_its_known_address_only() {
        let t0 = Instant::now();
        let mut me = core(0, WALL, vec![], t0);
        let mut rng = StdRng::seed_from_u64(1);
        me.handle_datagram(t0, addr(3), &forged(3, WALL, 5, NodeState::Alive), &mut rng)
            .unwrap();
        assert!(me.poll_transmit().is_none());
        // A forged leave of node 3 that names another address, and one of a node never seen.
        let mut leave = LoadReport {
            node: id(3),
            incarnation: WALL,
            seq: 6,
            load: LoadVector {
                state: NodeState::Leaving,
                ..LoadVector::idle(2)
            },
            api: addr(8),
            gossip: addr(8),
        };
        let ghost = LoadReport {
            node: id(7),
            ..leave.clone()
        };
        let (bytes, _) = wire::encode_push(&leave, [&ghost], 1400).unwrap();
        me.handle_datagram(t0, addr(9), &bytes, &mut rng).unwrap();
        let sent: Vec<Transmit> = std::iter::from_fn(|| me.poll_transmit()).collect();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!(sent[0].to, addr(3));
        let Ok(Message::Push { reports }) = wire::decode(&sent[0].bytes) else {
            panic!("not a push");
        };
        assert!(reports.0.contains(&leave), "{reports:?}");
        // Heard again, or newer while still leaving: no change of verdict, nothing sent.
        leave.seq = 7;
        let (bytes, _) = wire::encode_push(&leave, [], 1400).unwrap();
        me.handle_datagram(t0, addr(9), &bytes, &mut rng).unwrap();
        assert!(me.poll_transmit().is_none());
    }

    #[test]
    fn a_plausible_forgery_of_a_node_is_refuted_and_the_refutation_supersedes_it_everywhere() {
        let mut net = Net::new(4, WALL);
        net.run(Duration::from_secs(10));
        assert!(net.all_hold_alive(
            3,
            Version {
                incarnation: 0,
                seq: 0
            }
        ));
        let life = net.cores[3].incarnation();
        // A rogue tells node 1 that node 3 is leaving, at node 3's own incarnation with as
        // many samples as 1 can believe: what a member holding the key could forge.
        let wall = net.cores[1].wall_ms(net.now);
        let seq = wall + MAX_AHEAD_MS - life;
        net.inject(1, &forged(3, life, seq, NodeState::Leaving));
        let forgery = Version {
            incarnation: life,
            seq,
        };
        assert_eq!(
            net.cores[1].map().get(&id(3)).unwrap().verdict(),
            Verdict::Left,
            "a plausible report is taken"
        );
        let mut rounds = 0;
        while !net.all_hold_alive(3, forgery) {
            assert!(rounds < 10, "not refuted everywhere within 10 rounds");
            net.run(Duration::from_millis(200));
            rounds += 1;
        }
        let core3 = &net.cores[3];
        assert_eq!(core3.stats().refutations, 1);
        // The new life starts at the wall clock, not just above the forgery's incarnation.
        assert!(
            core3.incarnation() >= WALL + 10_000,
            "{}",
            core3.incarnation()
        );
        assert!(!core3.is_leaving());
        for core in &net.cores {
            assert_eq!(core.stats().implausible_reports, 0);
            assert_eq!(core.stats().deaths, 0);
        }
    }
}
