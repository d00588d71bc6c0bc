//! The power of two choices as it was decided before the placer sampled the map's index: a
//! pass over the whole map to list the candidates, and another for the mean load. Kept here,
//! with the same ledger and scoring, only so that the benchmark measures the old cost beside the
//! new one in the same run.

use std::net::SocketAddr;
use std::time::Duration;

use hearsay_scheduler::{ForwardLedger, PlacementRequest};
use hearsay_shared::{LoadVector, NodeId, NodeState, Version};
use rand::seq::IndexedRandom;
use rand::Rng;

#[derive(Debug, Clone, Copy)]
struct Candidate<'a> {
    node: &'a NodeId,
    version: Version,
    local: bool,
    load: LoadVector,
    age: Duration,
}

fn score(load: &LoadVector, pending: u32) -> f64 {
    f64::from(load.queued + load.running + pending) / f64::from(load.slots)
}

/// The old p2c decision: the chosen node's API address, `None` for this node or nowhere.
#[derive(Debug, Default)]
pub struct FullPassP2c {
    ledger: ForwardLedger,
}

impl FullPassP2c {
    pub fn place<R: Rng + ?Sized>(
        &mut self,
        req: &PlacementRequest<'_>,
        rng: &mut R,
    ) -> Option<SocketAddr> {
        let mut candidates = Vec::with_capacity(req.map.len() + 1);
        let mut apis = Vec::with_capacity(req.map.len() + 1);
        for entry in req.map.iter() {
            let report = entry.report();
            if report.node == *req.me {
                if req.own.state == NodeState::Alive && req.own.slots > 0 {
                    candidates.push(Candidate {
                        node: req.me,
                        version: report.version(),
                        local: true,
                        load: req.own,
                        age: Duration::ZERO,
                    });
                    apis.push(report.api);
                }
                continue;
            }
            if !entry.takes_work()
                || report.load.slots == 0
                || report.load.commands & req.requires != req.requires
                || req.exclude.contains(&report.node)
            {
                continue;
            }
            candidates.push(Candidate {
                node: &report.node,
                version: report.version(),
                local: false,
                load: report.load,
                age: entry.age(req.now),
            });
            apis.push(report.api);
        }
        let local = candidates.iter().find(|c| c.local).copied()?;
        let peers: Vec<(usize, &Candidate<'_>)> = candidates
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.local)
            .collect();
        let &(ia, a) = peers.choose(rng)?;
        let prior =
            candidates.iter().map(|c| score(&c.load, 0)).sum::<f64>() / candidates.len() as f64;
        let trusted = |c: &Candidate<'_>| {
            let trust = 0.5f64.powf(c.age.as_secs_f64());
            let pending = if c.local {
                0
            } else {
                self.ledger.pending(c.node, c.version)
            };
            trust * score(&c.load, pending) + (1.0 - trust) * prior
        };
        if trusted(a) < trusted(&local) {
            self.ledger
                .record(a.node, a.version, a.age, Duration::from_millis(200));
            Some(apis[ia])
        } else {
            None
        }
    }
}
