//! The decision: run a job here, or forward it once to a peer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearsay_shared::{Entry, LoadMap, LoadVector, NodeId, NodeState, Version};
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::{ForwardLedger, LoadScore, Policy};

/// Draws from the map's index before a sampled policy falls back to a pass over the map. With
/// half the nodes qualifying, 16 draws all miss once in 65,536 decisions.
const SAMPLE_DRAWS: usize = 16;

/// The API address of a node the map does not hold (only this node can be one).
const UNSPECIFIED: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Where a job should run, as [`Placer::place`] says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On this node. Also the answer when no node qualifies (none takes work, or offers what
    /// the job requires): the caller knows whether this node can take the job itself.
    /// [`Placer::choose`] tells the two apart ([`Target::Nowhere`]).
    Local,
    /// On a peer, reached at `api`.
    Forward {
        /// The peer.
        node: NodeId,
        /// Its HTTP API.
        api: SocketAddr,
    },
}

/// Where a job should go, as [`Placer::choose`] says it: here, a peer, or nowhere — three
/// answers, so that "no node qualifies" is never mistaken for "run it here".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// On this node.
    Here,
    /// On a peer, reached at `api`.
    Peer {
        /// The peer.
        node: NodeId,
        /// Its HTTP API.
        api: SocketAddr,
    },
    /// No node qualifies: this one may not take the job, and no peer in the map takes work
    /// and offers what the job requires (or every such peer is excluded).
    Nowhere,
}

/// How a [`Placer`] decides.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacerConfig {
    /// The policy.
    pub policy: Policy,
    /// How quickly a peer's report stops being trusted: at this age its load counts half, and
    /// the other half is the mean of all candidates (what one would guess knowing nothing).
    pub trust_half_life: Duration,
    /// How often peers sample their load (the gossip interval), to tell which of their reports
    /// include a job forwarded to them.
    pub report_interval: Duration,
    /// The score candidates are compared by ([`crate::score`]): `slots` (the default) or `cpu`,
    /// which also counts a saturated CPU.
    pub load_score: LoadScore,
}

impl Default for PlacerConfig {
    fn default() -> Self {
        PlacerConfig {
            policy: Policy::P2c,
            trust_half_life: Duration::from_secs(1),
            report_interval: Duration::from_millis(200),
            load_score: LoadScore::Slots,
        }
    }
}

/// What a decision is made from.
#[derive(Debug, Clone, Copy)]
pub struct PlacementRequest<'a> {
    /// This node's view of the cluster.
    pub map: &'a LoadMap,
    /// This node.
    pub me: &'a NodeId,
    /// This node's exact load now (not its last gossiped report).
    pub own: LoadVector,
    /// The current time, to age reports.
    pub now: Instant,
    /// How many times the job has been forwarded already; a forwarded job is never forwarded
    /// again.
    pub hops: u32,
    /// Peers not to choose (they refused this job or could not be reached).
    pub exclude: &'a [NodeId],
    /// Bits a node's [`LoadVector::commands`] must all hold to be chosen: the command an `exec`
    /// job runs ([`hearsay_shared::offers::command_bits`]); 0 for no requirement. This node's
    /// own set (in `own`) is taken as exact: the caller sets it only when it declares the
    /// command.
    pub requires: u64,
}

#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    node: &'a NodeId,
    api: SocketAddr,
    version: Version,
    local: bool,
    /// The load as the map (or, for this node, the executor) says.
    load: LoadVector,
    age: Duration,
}

/// Places jobs for one node. It keeps the [`ForwardLedger`] and the round-robin position, so a
/// node has one `Placer`.
#[derive(Debug, Clone)]
pub struct Placer {
    config: PlacerConfig,
    ledger: ForwardLedger,
    next_turn: usize,
}

/// Whether a node's command set holds every bit required.
fn offers(load: &LoadVector, requires: u64) -> bool {
    load.commands & requires == requires
}

impl Placer {
    /// A placer with an empty ledger.
    pub fn new(config: PlacerConfig) -> Self {
        Placer {
            config,
            ledger: ForwardLedger::new(),
            next_turn: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &PlacerConfig {
        &self.config
    }

    /// Decides where a job runs. A forward is counted in the ledger at once, against the peer's
    /// current report; if the peer then refuses the job, the caller places it again with that
    /// peer excluded.
    pub fn place<R: Rng + ?Sized>(&mut self, req: &PlacementRequest<'_>, rng: &mut R) -> Placement {
        if req.hops > 0 || self.config.policy == Policy::Local {
            return Placement::Local;
        }
        match self.choose(req, true, rng) {
            Target::Peer { node, api } => Placement::Forward { node, api },
            Target::Here | Target::Nowhere => Placement::Local,
        }
    }

    /// Decides where a job goes, like [`Placer::place`], with `here` saying whether this node
    /// may take it (it takes work, has room, declares the job's command): when it may not, it
    /// is no candidate, and if no peer qualifies either the answer is [`Target::Nowhere`]. A
    /// job that has moved already (`hops > 0`) and the `local` policy never go to a peer.
    pub fn choose<R: Rng + ?Sized>(
        &mut self,
        req: &PlacementRequest<'_>,
        here: bool,
        rng: &mut R,
    ) -> Target {
        let here = here
            && req.own.state == NodeState::Alive
            && req.own.slots > 0
            && offers(&req.own, req.requires);
        if req.hops > 0 || self.config.policy == Policy::Local {
            return if here { Target::Here } else { Target::Nowhere };
        }
        if self.ledger.len() > 2 * req.map.len() + 16 {
            // Peers that left the map keep nothing pending; forget them now and then.
            self.ledger
                .prune(|peer| req.map.get(peer).map(|e| e.report().version()));
        }
        let chosen = match self.config.policy {
            // The two sampled policies draw from the map's index of nodes that take work, in
            // constant expected time (see `sample_peer`); the others look at every candidate.
            Policy::P2c => self.sampled_two_choices(req, here, rng),
            Policy::Random => Self::sampled_random(req, here, rng),
            policy => {
                let candidates = self.candidates(req, here);
                match (policy, candidates.len()) {
                    (_, 0) => None,
                    (_, 1) => candidates.first().copied(),
                    (Policy::RoundRobin, n) => {
                        let c = candidates[self.next_turn % n];
                        self.next_turn = self.next_turn.wrapping_add(1);
                        Some(c)
                    }
                    (Policy::LeastLoaded, _) => self.least_loaded(&candidates, rng),
                    _ => None,
                }
            }
        };
        match chosen {
            Some(c) if !c.local => {
                self.ledger
                    .record(c.node, c.version, c.age, self.config.report_interval);
                Target::Peer {
                    node: c.node.clone(),
                    api: c.api,
                }
            }
            Some(_) => Target::Here,
            None => Target::Nowhere,
        }
    }

    /// This node (if `here`: it may take the job) and every peer that is alive, not leaving, has slots, offers
    /// what the job requires and is not excluded. The map is ordered by node id, so the list is too.
    fn candidates<'a>(&self, req: &PlacementRequest<'a>, here: bool) -> Vec<Candidate<'a>> {
        let mut out = Vec::with_capacity(req.map.len() + 1);
        for entry in req.map.iter() {
            let report = entry.report();
            if report.node == *req.me {
                if here {
                    out.push(Candidate {
                        node: req.me,
                        api: report.api,
                        version: report.version(),
                        local: true,
                        load: req.own,
                        age: Duration::ZERO,
                    });
                }
                continue;
            }
            if !entry.takes_work()
                || report.load.slots == 0
                || !offers(&report.load, req.requires)
                || req.exclude.contains(&report.node)
            {
                continue;
            }
            out.push(Candidate {
                node: &report.node,
                api: report.api,
                version: report.version(),
                local: false,
                load: report.load,
                age: entry.age(req.now),
            });
        }
        out
    }

    /// The configured [`LoadScore`] of `(queued + running + forwarded-since-report)` over the
    /// slots.
    fn score(&self, c: &Candidate<'_>) -> f64 {
        let pending = if c.local {
            0
        } else {
            self.ledger.pending(c.node, c.version)
        };
        self.config.load_score.score(&c.load, pending)
    }

    /// This node as a candidate.
    fn local<'a>(req: &PlacementRequest<'a>) -> Candidate<'a> {
        Candidate {
            node: req.me,
            api: req.map.get(req.me).map_or(UNSPECIFIED, |e| e.report().api),
            version: req.map.get(req.me).map_or(
                Version {
                    incarnation: 0,
                    seq: 0,
                },
                |e| e.report().version(),
            ),
            local: true,
            load: req.own,
            age: Duration::ZERO,
        }
    }

    /// A peer as a candidate, if it is one: it takes work, has slots, offers what the job
    /// requires, is not excluded, and is not `avoid`.
    fn peer<'a>(
        req: &PlacementRequest<'a>,
        entry: &'a Entry,
        avoid: Option<&NodeId>,
    ) -> Option<Candidate<'a>> {
        let report = entry.report();
        let qualifies = entry.takes_work()
            && report.load.slots > 0
            && offers(&report.load, req.requires)
            && report.node != *req.me
            && avoid != Some(&report.node)
            && !req.exclude.contains(&report.node);
        qualifies.then(|| Candidate {
            node: &report.node,
            api: report.api,
            version: report.version(),
            local: false,
            load: report.load,
            age: entry.age(req.now),
        })
    }

    /// One peer drawn uniformly from those that qualify (see [`Placer::peer`]), `avoid` aside.
    ///
    /// Draws from the map's index of nodes that take work and keeps the first draw that
    /// qualifies: in a cluster where most nodes do, that is one or two draws, whatever the
    /// map's size. Only when [`SAMPLE_DRAWS`] draws in a row miss (few nodes qualify: a rare
    /// command, most peers excluded, a map of one) does it fall back to a pass over the map.
    /// Either way the pick is uniform over the peers that qualify, as a draw from the full list
    /// of candidates was.
    fn sample_peer<'a, R: Rng + ?Sized>(
        req: &PlacementRequest<'a>,
        avoid: Option<&NodeId>,
        rng: &mut R,
    ) -> Option<Candidate<'a>> {
        let n = req.map.taking_work();
        if n == 0 {
            return None;
        }
        for _ in 0..SAMPLE_DRAWS {
            let entry = req.map.taking_work_at(rng.random_range(0..n))?;
            if let Some(c) = Self::peer(req, entry, avoid) {
                return Some(c);
            }
        }
        let all: Vec<Candidate<'a>> = (0..n)
            .filter_map(|k| req.map.taking_work_at(k))
            .filter_map(|e| Self::peer(req, e, avoid))
            .collect();
        all.choose(rng).copied()
    }

    /// The power of two choices: this node (when it takes work) and one random peer, or two
    /// distinct random peers when it does not; the lower trusted score wins, ties go to this node
    /// (a forward costs a hop).
    fn sampled_two_choices<'a, R: Rng + ?Sized>(
        &self,
        req: &PlacementRequest<'a>,
        here: bool,
        rng: &mut R,
    ) -> Option<Candidate<'a>> {
        let (a, b) = if here {
            // This node's load is exact, a peer's is a report some time old: of the two choices
            // one is always this node, weighed against one peer drawn at random. Measured on the
            // demo (8 x 1 slot, rho 0.9, 200 ms gossip): mean sojourn 3.7 service times, against
            // 4.8 when both choices are drawn from all nodes (this one being drawn only 2 times
            // in 8) — the stale-information effect the design notes.
            let local = Self::local(req);
            match Self::sample_peer(req, None, rng) {
                Some(peer) => (peer, local),
                None => return Some(local),
            }
        } else {
            let a = Self::sample_peer(req, None, rng)?;
            match Self::sample_peer(req, Some(a.node), rng) {
                Some(b) => (a, b),
                None => return Some(a),
            }
        };
        // What one would guess of a node knowing nothing: the mean reported load of the nodes
        // that take work, which the map keeps as running sums (it was once a pass over every
        // candidate: 21 µs a decision at 1,000 nodes). Only needed when a pick's report has
        // aged.
        let prior = if a.age.is_zero() && b.age.is_zero() {
            0.0
        } else {
            req.map.mean_load_per_slot().unwrap_or(0.0)
        };
        let trusted = |c: &Candidate<'_>| {
            let trust =
                0.5f64.powf(c.age.as_secs_f64() / self.config.trust_half_life.as_secs_f64());
            trust * self.score(c) + (1.0 - trust) * prior
        };
        let (sa, sb) = (trusted(&a), trusted(&b));
        const EPSILON: f64 = 1e-9;
        Some(if (sa - sb).abs() < EPSILON {
            if b.local {
                b
            } else {
                a
            }
        } else if sa < sb {
            a
        } else {
            b
        })
    }

    /// Any candidate, uniformly: this node (if `here`) or a peer that qualifies. Draws a
    /// place among the nodes that take work, this node's standing for itself (with one place
    /// more if its own entry is not among them), and keeps the first draw that is a candidate;
    /// after [`SAMPLE_DRAWS`] misses, a pass over the map.
    fn sampled_random<'a, R: Rng + ?Sized>(
        req: &PlacementRequest<'a>,
        here: bool,
        rng: &mut R,
    ) -> Option<Candidate<'a>> {
        let indexed = req.map.get(req.me).is_some_and(|e| e.takes_work());
        let n = req.map.taking_work() + usize::from(!indexed);
        for _ in 0..SAMPLE_DRAWS {
            let k = rng.random_range(0..n);
            match req.map.taking_work_at(k) {
                Some(e) if e.report().node == *req.me => {}
                Some(e) => match Self::peer(req, e, None) {
                    Some(c) => return Some(c),
                    None => continue,
                },
                None => {}
            }
            // This node's place.
            if here {
                return Some(Self::local(req));
            }
        }
        let mut all: Vec<Candidate<'a>> = (0..req.map.taking_work())
            .filter_map(|k| req.map.taking_work_at(k))
            .filter_map(|e| Self::peer(req, e, None))
            .collect();
        if here {
            all.push(Self::local(req));
        }
        all.choose(rng).copied()
    }

    /// The lowest apparent score, whatever its age: this node if it is among the lowest,
    /// otherwise one of them at random.
    fn least_loaded<'a, R: Rng + ?Sized>(
        &self,
        candidates: &[Candidate<'a>],
        rng: &mut R,
    ) -> Option<Candidate<'a>> {
        let scored: Vec<(f64, Candidate<'a>)> =
            candidates.iter().map(|c| (self.score(c), *c)).collect();
        let min = scored.iter().map(|(s, _)| *s).fold(f64::INFINITY, f64::min);
        let lowest: Vec<Candidate<'a>> = scored
            .into_iter()
            .filter(|(s, _)| *s <= min + 1e-9)
            .map(|(_, c)| c)
            .collect();
        lowest
            .iter()
            .find(|c| c.local)
            .copied()
            .or_else(|| lowest.choose(rng).copied())
    }
}
