//! Many [`Gossip`] cores in a simulated network under a virtual clock: deterministic, and fast
//! enough to run thousands of rounds of a hundred nodes in a test.
//!
//! This module is also the reference for driving the core. The core owns no socket, no clock and
//! no randomness; whoever drives it (the worker's UDP task, or this simulation) does four things:
//!
//! 1. at [`Gossip::poll_timeout`], call [`Gossip::handle_tick`] with the time and an rng;
//! 2. for every datagram received, call [`Gossip::handle_datagram`] with the sender's address;
//! 3. after *every* call, drain [`Gossip::poll_transmit`] (and send each datagram) and
//!    [`Gossip::poll_event`] (membership changes: log them, expose them as metrics);
//! 4. after every call, ask [`Gossip::poll_timeout`] again: it is when the core next wants to run.
//!
//! Here the "sockets" are a priority queue of datagrams in flight and the "timers" are entries in
//! the same queue, ordered by virtual time. [`Sim::step`] pops the earliest entry, sets the clock
//! to it and performs it, so time jumps from one event to the next and nothing ever waits. Every
//! random choice — the cores' peer selection, the network's loss and delay — comes from
//! [`StdRng`]s seeded from [`SimConfig::seed`], and ties in time are broken by the order in which
//! entries were queued, so a seed always gives the same run, to the byte.
//!
//! # What the network does
//! - Every datagram is delayed by a uniform random delay in
//!   [`SimConfig::min_delay`]`..=`[`SimConfig::max_delay`].
//! - Every datagram is lost with the probability of its directed link: [`SimConfig::loss`] unless
//!   [`Sim::set_link_loss`] says otherwise for that direction (so loss can be asymmetric).
//! - [`Sim::partition`] puts nodes into groups; a datagram that arrives while its sender and
//!   receiver are in different groups is dropped. [`Sim::heal`] joins the groups again.
//! - [`Sim::crash`] stops a node at once, as `kill -9` would: it sends nothing more, and datagrams
//!   that arrive for it vanish. Datagrams it sent before the crash are still delivered, as they
//!   would be on a real wire. [`Sim::restart`] starts a fresh core with the same [`NodeId`] and
//!   address and a higher incarnation; [`Sim::leave`] is a graceful leave.
//! - [`Sim::inject`] hands a node a datagram of the test's making, as a rogue peer would.
//!
//! Every core is told that the wall clock at its start reads [`EPOCH_MS`] plus the virtual time,
//! the same clock its incarnation is taken from, so all nodes' clocks agree.
//!
//! Addresses are fake (`10.0.x.y`): nothing here touches a real network.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use hearsay_shared::Verdict;
//! use hearsay_tests::sim::{Sim, SimConfig};
//!
//! // Twenty nodes, each told only of the first three, on links that lose 5% of datagrams.
//! let mut sim = Sim::new(SimConfig::new(20, 42).with_loss(0.05));
//! let joined = sim.run_until(Duration::from_secs(10), Sim::all_see_all_alive);
//! assert!(joined.is_some());
//!
//! sim.crash(7);
//! let detected = sim.run_until(Duration::from_secs(10), |s| s.all_see(7, Verdict::Dead));
//! assert!(detected.is_some() && sim.false_deaths().is_empty());
//! ```
//!
//! # Measuring
//! The simulation counts datagrams and bytes per node on the wire ([`Sim::traffic`]), logs every
//! verdict change every node makes with the virtual time ([`Sim::events`]), and knows the truth
//! (which nodes are really up), so it can tell a false death from a true one
//! ([`Sim::false_deaths`]). Queries such as [`Sim::all_see_all_alive`] and [`Sim::count_holding`]
//! ask every live node's map.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::timeline::Timeline;
use hearsay_shared::{Gossip, GossipConfig, LoadVector, NodeId, Verdict, VerdictChange, Version};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod faults;
mod observe;

/// Incarnations are start times in milliseconds, as a real node's would be; the simulation's
/// clock starts at this (made-up) Unix time so that they have a realistic size on the wire.
pub const EPOCH_MS: u64 = 1_760_000_000_000;

/// The gossip port of every simulated node.
pub const GOSSIP_PORT: u16 = 7946;
/// The HTTP port of every simulated node (only carried in reports).
pub const API_PORT: u16 = 8080;

/// How to build a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes.
    pub nodes: usize,
    /// Seeds every random choice of the run.
    pub seed: u64,
    /// Every node is given the first `seeds` nodes as its seed addresses (at least one).
    pub seeds: usize,
    /// Nodes start at uniformly random offsets in `[0, start_spread)`, so that their rounds do
    /// not run in lockstep (real nodes never do).
    pub start_spread: Duration,
    /// Probability that a datagram is lost, on every link without its own setting.
    pub loss: f64,
    /// Shortest one-way delay.
    pub min_delay: Duration,
    /// Longest one-way delay.
    pub max_delay: Duration,
    /// The gossip settings of every node; its `node`, `api` and `gossip` fields are replaced by
    /// each node's own.
    pub template: GossipConfig,
}

impl SimConfig {
    /// `nodes` nodes with the default gossip settings, three seeds, no loss and 1–5 ms of delay.
    pub fn new(nodes: usize, seed: u64) -> Self {
        let template = GossipConfig::new(node_id(0), api_addr(0), gossip_addr(0));
        SimConfig {
            nodes,
            seed,
            seeds: 3,
            start_spread: template.interval,
            loss: 0.0,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
            template,
        }
    }

    /// The same, with every link losing `loss` of its datagrams.
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }
}

/// The id of simulated node `i`: shaped like a host name and API port, as a real default id is.
pub fn node_id(i: usize) -> NodeId {
    NodeId::new(format!("host-{i:03}:{API_PORT}")).expect("a valid node id")
}

fn ip(i: usize) -> IpAddr {
    assert!(i < 250 * 256, "the simulation numbers at most 64,000 nodes");
    IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250 + 1) as u8))
}

/// The gossip address of simulated node `i`.
pub fn gossip_addr(i: usize) -> SocketAddr {
    SocketAddr::new(ip(i), GOSSIP_PORT)
}

/// The API address of simulated node `i`.
pub fn api_addr(i: usize) -> SocketAddr {
    SocketAddr::new(ip(i), API_PORT)
}

/// Datagrams and bytes one node put on and took off the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Datagrams sent (lost ones included: the sender paid for them).
    pub datagrams_sent: u64,
    /// Bytes in the datagrams sent.
    pub bytes_sent: u64,
    /// Datagrams delivered to the node.
    pub datagrams_received: u64,
    /// Bytes in the datagrams delivered.
    pub bytes_received: u64,
    /// The largest datagram sent.
    pub largest_sent: usize,
}

impl Traffic {
    fn add(&mut self, other: &Traffic) {
        self.datagrams_sent += other.datagrams_sent;
        self.bytes_sent += other.bytes_sent;
        self.datagrams_received += other.datagrams_received;
        self.bytes_received += other.bytes_received;
        self.largest_sent = self.largest_sent.max(other.largest_sent);
    }
}

/// Datagrams the network did not deliver, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// Lost to the link's loss probability.
    pub lost: u64,
    /// Dropped between partitioned groups.
    pub partitioned: u64,
    /// Sent to a node that was down (or to an address no node has).
    pub unreachable: u64,
}

/// A verdict change made by one node's core, as the simulation logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimEvent {
    /// Virtual time since the start of the simulation.
    pub at: Duration,
    /// The node whose map changed.
    pub observer: usize,
    /// The node the change is about.
    pub subject: usize,
    /// The change, as the core reported it.
    pub change: VerdictChange,
    /// Whether the life of the subject that the change names (its incarnation) was running at
    /// that moment: the truth the detector was guessing at.
    pub subject_running: bool,
}

impl SimEvent {
    /// A node declared dead while it was in fact running.
    pub fn is_false_death(&self) -> bool {
        self.change.to == Some(Verdict::Dead) && self.subject_running
    }
    /// A node suspected while it was in fact running.
    pub fn is_false_suspicion(&self) -> bool {
        self.change.to == Some(Verdict::Suspect) && self.subject_running
    }
}

/// One simulated machine: an address, an id, and — while it runs — a core.
#[derive(Debug)]
struct SimNode {
    config: GossipConfig,
    /// `None` before its first start and while crashed.
    core: Option<Gossip>,
    /// Whether the node is due to start at its queued wake-up.
    starting: bool,
    /// The incarnation of the latest start.
    incarnation: u64,
    /// The core's randomness: one stream per node, so that one node's choices do not shift
    /// another's.
    rng: StdRng,
    /// The wake-up currently queued for this node; any other queued wake-up is stale.
    wake: Option<Duration>,
    traffic: Traffic,
}

/// What the queue holds: a datagram to deliver or a node to wake.
#[derive(Debug)]
enum Action {
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    Wake {
        node: usize,
    },
}

/// A simulated cluster. See the [module documentation](self).
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    /// The instant that virtual time 0 stands for. Cores only ever compare instants, so its
    /// real value does not matter.
    base: Instant,
    now: Duration,
    nodes: Vec<SimNode>,
    seeds: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
    by_id: HashMap<NodeId, usize>,
    queue: Timeline<Action>,
    /// The network's randomness (loss, delay).
    rng: StdRng,
    link_loss: HashMap<(usize, usize), f64>,
    /// Each node's partition group; datagrams cross only within a group.
    group: Vec<usize>,
    drops: Drops,
    events: Vec<SimEvent>,
}

impl Sim {
    /// Builds the cluster. Node `i` starts at a random offset within
    /// [`SimConfig::start_spread`]; until then it is down.
    pub fn new(config: SimConfig) -> Self {
        assert!(config.nodes > 0, "a cluster has at least one node");
        assert!(
            config.min_delay <= config.max_delay,
            "min_delay > max_delay"
        );
        let mut rng = StdRng::seed_from_u64(config.seed);
        let mut nodes = Vec::with_capacity(config.nodes);
        let mut by_addr = HashMap::new();
        let mut by_id = HashMap::new();
        for i in 0..config.nodes {
            let mut node_config = config.template.clone();
            node_config.node = node_id(i);
            node_config.api = api_addr(i);
            node_config.gossip = gossip_addr(i);
            by_addr.insert(node_config.gossip, i);
            by_id.insert(node_config.node.clone(), i);
            nodes.push(SimNode {
                config: node_config,
                core: None,
                starting: true,
                incarnation: 0,
                rng: StdRng::seed_from_u64(rng.random()),
                wake: None,
                traffic: Traffic::default(),
            });
        }
        let mut sim = Sim {
            base: Instant::now(),
            now: Duration::ZERO,
            nodes,
            seeds: (0..config.seeds.clamp(1, config.nodes))
                .map(gossip_addr)
                .collect(),
            by_addr,
            by_id,
            queue: Timeline::default(),
            rng,
            link_loss: HashMap::new(),
            group: vec![0; config.nodes],
            drops: Drops::default(),
            events: Vec::new(),
            config,
        };
        let spread = sim.config.start_spread.as_micros() as u64;
        for i in 0..sim.config.nodes {
            let offset = Duration::from_micros(sim.rng.random_range(0..spread.max(1)));
            sim.set_wake(i, offset);
        }
        sim
    }

    // ---- running -------------------------------------------------------------------------

    /// Performs the earliest queued action (a delivery or a wake-up), moving the clock to it.
    /// Returns `false` if nothing is queued (every node down and no datagram in flight).
    pub fn step(&mut self) -> bool {
        let Some((at, action)) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        match action {
            Action::Deliver { from, to, bytes } => self.deliver(from, to, bytes),
            Action::Wake { node } => self.wake(node, at),
        }
        true
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.queue.next_at().is_some_and(|at| at <= end) {
            self.step();
        }
        self.now = end;
    }

    /// Runs for `n` gossip intervals.
    pub fn run_rounds(&mut self, n: u32) {
        self.run_for(self.interval() * n);
    }

    /// Runs until `done` holds, for at most `limit`; returns how long that took, or `None` if
    /// `done` still did not hold after `limit`. `done` is checked before anything runs and
    /// after every instant at which something happened, so the time returned is exact; keep it
    /// cheap, it is called a few hundred times per round.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        let end = start + limit;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            let Some(at) = self.queue.next_at().filter(|at| *at <= end) else {
                self.now = end;
                return None;
            };
            while self.queue.next_at() == Some(at) {
                self.step();
            }
        }
    }

    /// Like [`Sim::run_until`], but checks `done` only every `step` of virtual time, for
    /// predicates too costly to check at every instant (a question to every map of a large
    /// cluster); the time returned is a multiple of `step`.
    pub fn run_until_sampled(
        &mut self,
        limit: Duration,
        step: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Option<Duration> {
        let start = self.now;
        loop {
            if done(self) {
                return Some(self.now - start);
            }
            if self.now - start >= limit {
                return None;
            }
            self.run_for(step.min(start + limit - self.now));
        }
    }

    fn schedule(&mut self, at: Duration, action: Action) {
        self.queue.push(at, action);
    }

    fn set_wake(&mut self, i: usize, at: Duration) {
        self.nodes[i].wake = Some(at);
        self.schedule(at, Action::Wake { node: i });
    }

    fn wake(&mut self, i: usize, at: Duration) {
        if self.nodes[i].wake != Some(at) {
            return; // superseded by a later wake-up, or the node crashed
        }
        self.nodes[i].wake = None;
        if self.nodes[i].starting {
            self.boot(i);
            return;
        }
        let now = self.instant();
        let node = &mut self.nodes[i];
        if let Some(core) = node.core.as_mut() {
            core.handle_tick(now, &mut node.rng);
            self.after_call(i);
        }
    }

    /// Starts a fresh core for node `i` now, with an incarnation above its last.
    fn boot(&mut self, i: usize) {
        let now = self.instant();
        let now_ms = EPOCH_MS + self.now.as_millis() as u64;
        let node = &mut self.nodes[i];
        node.starting = false;
        node.incarnation = now_ms.max(node.incarnation + 1);
        let core = Gossip::new(
            node.config.clone(),
            node.incarnation,
            LoadVector::idle(4),
            self.seeds.clone(),
            now,
        )
        .expect("the template is a valid gossip configuration")
        .with_wall_clock(now_ms);
        node.core = Some(core);
        self.after_call(i);
    }

    /// What a driver does after every call into a core: send what it wants sent, take its
    /// events, and wake it when it asks to be woken.
    fn after_call(&mut self, i: usize) {
        let Some(core) = self.nodes[i].core.as_mut() else {
            return;
        };
        let transmits: Vec<_> = std::iter::from_fn(|| core.poll_transmit()).collect();
        let changes: Vec<_> = std::iter::from_fn(|| core.poll_event()).collect();
        let wake = core.poll_timeout().saturating_duration_since(self.base);
        for transmit in transmits {
            self.send(i, transmit.to, transmit.bytes);
        }
        for change in changes {
            self.log(i, change);
        }
        if self.nodes[i].wake != Some(wake) {
            self.set_wake(i, wake);
        }
    }

    fn send(&mut self, from: usize, to: SocketAddr, bytes: Vec<u8>) {
        let traffic = &mut self.nodes[from].traffic;
        traffic.datagrams_sent += 1;
        traffic.bytes_sent += bytes.len() as u64;
        traffic.largest_sent = traffic.largest_sent.max(bytes.len());
        let Some(&to) = self.by_addr.get(&to) else {
            self.drops.unreachable += 1;
            return;
        };
        let loss = self
            .link_loss
            .get(&(from, to))
            .copied()
            .unwrap_or(self.config.loss);
        if loss > 0.0 && self.rng.random_bool(loss.min(1.0)) {
            self.drops.lost += 1;
            return;
        }
        let (min, max) = (
            self.config.min_delay.as_micros() as u64,
            self.config.max_delay.as_micros() as u64,
        );
        let delay = Duration::from_micros(self.rng.random_range(min..=max));
        self.schedule(self.now + delay, Action::Deliver { from, to, bytes });
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        if self.group[from] != self.group[to] {
            self.drops.partitioned += 1;
            return;
        }
        let now = self.instant();
        let from_addr = self.nodes[from].config.gossip;
        let node = &mut self.nodes[to];
        let Some(core) = node.core.as_mut() else {
            self.drops.unreachable += 1;
            return;
        };
        node.traffic.datagrams_received += 1;
        node.traffic.bytes_received += bytes.len() as u64;
        // Every datagram here comes from an honest core, so it must decode.
        if let Err(e) = core.handle_datagram(now, from_addr, &bytes) {
            panic!("node {to} could not decode a datagram from node {from}: {e}");
        }
        self.after_call(to);
    }

    fn log(&mut self, observer: usize, change: VerdictChange) {
        let subject = self.by_id[&change.node];
        let subject_running = self.nodes[subject]
            .core
            .as_ref()
            .is_some_and(|core| core.incarnation() == change.incarnation);
        self.events.push(SimEvent {
            at: self.now,
            observer,
            subject,
            change,
            subject_running,
        });
    }
}
