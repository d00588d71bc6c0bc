//! The decision: run a job here, or forward it once to a peer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hearsay_shared::{LoadMap, LoadVector, NodeId, NodeState, Version};
use rand::seq::IndexedRandom;
use rand::Rng;

use crate::{ForwardLedger, Policy};

/// Where a job should run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On this node.
    Local,
    /// On a peer, reached at `api`.
    Forward {
        /// The peer.
        node: NodeId,
        /// Its HTTP API.
        api: SocketAddr,
    },
}

/// How a [`Placer`] decides.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacerConfig {
    /// The policy.
    pub policy: Policy,
    /// How quickly a peer's report stops being trusted: at this age its load counts half, and
    /// the other half is the mean of all candidates (what one would guess knowing nothing).
    pub trust_half_life: Duration,
}

impl Default for PlacerConfig {
    fn default() -> Self {
        PlacerConfig {
            policy: Policy::P2c,
            trust_half_life: Duration::from_secs(1),
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
}

#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    node: &'a NodeId,
    api: SocketAddr,
    version: Version,
    local: bool,
    /// `(queued + running + forwarded-since-report) / slots`, as the map (or, for this node,
    /// the executor) says.
    score: f64,
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

fn score(load: &LoadVector, pending: u32) -> f64 {
    f64::from(load.queued + load.running + pending) / f64::from(load.slots)
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

    /// The forwards counted against peers.
    pub fn ledger(&self) -> &ForwardLedger {
        &self.ledger
    }

    /// Decides where a job runs. A forward is counted in the ledger at once, against the peer's
    /// current report; if the peer then refuses the job, the caller places it again with that
    /// peer excluded.
    pub fn place<R: Rng + ?Sized>(&mut self, req: &PlacementRequest<'_>, rng: &mut R) -> Placement {
        if req.hops > 0 || self.config.policy == Policy::Local {
            return Placement::Local;
        }
        let candidates = self.candidates(req);
        let chosen = match (self.config.policy, candidates.len()) {
            (_, 0) => None,
            (_, 1) => candidates.first().copied(),
            (Policy::P2c, _) => self.two_choices(&candidates, rng),
            (Policy::Random, _) => candidates.choose(rng).copied(),
            (Policy::RoundRobin, n) => {
                let c = candidates[self.next_turn % n];
                self.next_turn = self.next_turn.wrapping_add(1);
                Some(c)
            }
            (Policy::LeastLoaded, _) => least_loaded(&candidates, rng),
            (Policy::Local, _) => None,
        };
        match chosen {
            Some(c) if !c.local => {
                self.ledger.record(c.node, c.version);
                Placement::Forward {
                    node: c.node.clone(),
                    api: c.api,
                }
            }
            _ => Placement::Local,
        }
    }

    /// This node (if it takes work) and every peer that is alive, not leaving, has slots and is
    /// not excluded. The map is ordered by node id, so the list is too.
    fn candidates<'a>(&self, req: &PlacementRequest<'a>) -> Vec<Candidate<'a>> {
        let mut out = Vec::with_capacity(req.map.len() + 1);
        for entry in req.map.iter() {
            let report = entry.report();
            if report.node == *req.me {
                if req.own.state == NodeState::Alive && req.own.slots > 0 {
                    out.push(Candidate {
                        node: req.me,
                        api: report.api,
                        version: report.version(),
                        local: true,
                        score: score(&req.own, 0),
                        age: Duration::ZERO,
                    });
                }
                continue;
            }
            if !entry.takes_work() || report.load.slots == 0 || req.exclude.contains(&report.node) {
                continue;
            }
            let pending = self.ledger.pending(&report.node, report.version());
            out.push(Candidate {
                node: &report.node,
                api: report.api,
                version: report.version(),
                local: false,
                score: score(&report.load, pending),
                age: entry.age(req.now),
            });
        }
        out
    }

    /// The power of two choices: two distinct candidates, the lower trusted score wins, ties go
    /// to this node (a forward costs a hop).
    fn two_choices<'a, R: Rng + ?Sized>(
        &self,
        candidates: &[Candidate<'a>],
        rng: &mut R,
    ) -> Option<Candidate<'a>> {
        let prior = candidates.iter().map(|c| c.score).sum::<f64>() / candidates.len() as f64;
        let trusted = |c: &Candidate<'_>| {
            let trust =
                0.5f64.powf(c.age.as_secs_f64() / self.config.trust_half_life.as_secs_f64());
            trust * c.score + (1.0 - trust) * prior
        };
        let picks: Vec<&Candidate<'a>> = candidates.choose_multiple(rng, 2).collect();
        let (a, b) = (*picks[0], *picks[1]);
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
}

/// The lowest apparent score, whatever its age: this node if it is among the lowest, otherwise
/// one of them at random.
fn least_loaded<'a, R: Rng + ?Sized>(
    candidates: &[Candidate<'a>],
    rng: &mut R,
) -> Option<Candidate<'a>> {
    let min = candidates
        .iter()
        .map(|c| c.score)
        .fold(f64::INFINITY, f64::min);
    let lowest: Vec<Candidate<'a>> = candidates
        .iter()
        .filter(|c| c.score <= min + 1e-9)
        .copied()
        .collect();
    lowest
        .iter()
        .find(|c| c.local)
        .copied()
        .or_else(|| lowest.choose(rng).copied())
}
