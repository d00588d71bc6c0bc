//! What a test reads: time, the cores and their verdicts, who holds what, traffic, drops, events.

use super::*;

impl Sim {
    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// The instant the cores are told it is now.
    pub fn instant(&self) -> Instant {
        self.base + self.now
    }

    /// The gossip interval of the nodes.
    pub fn interval(&self) -> Duration {
        self.config.template.interval
    }

    /// A duration in gossip rounds.
    pub fn rounds(&self, duration: Duration) -> f64 {
        duration.as_secs_f64() / self.interval().as_secs_f64()
    }

    /// How the simulation was built (with the current default loss).
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Number of nodes, running or not.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> &NodeId {
        &self.nodes[i].config.node
    }

    /// The index of the node with this id.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Whether node `i` is running.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i].core.is_some()
    }

    /// The running nodes.
    pub fn running(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.nodes.len()).filter(|&i| self.is_up(i))
    }

    /// Node `i`'s core, while it runs.
    pub fn core(&self, i: usize) -> Option<&Gossip> {
        self.nodes[i].core.as_ref()
    }

    /// Node `i`'s gossip core, while it runs, to hand it what came outside gossip (a report
    /// with a steal's answer, [`Gossip::handle_report`]) or make it publish at once
    /// ([`Gossip::report_now`]).
    pub fn core_mut(&mut self, i: usize) -> Option<&mut Gossip> {
        self.nodes[i].core.as_mut()
    }

    /// The version of node `i`'s own current report, while it runs.
    pub fn own_version(&self, i: usize) -> Option<Version> {
        self.core(i).map(|core| core.own_report().version())
    }

    /// What `observer` believes of `subject`: `None` if either is unknown to it or it is down.
    pub fn verdict(&self, observer: usize, subject: usize) -> Option<Verdict> {
        let entry = self.core(observer)?.map().get(self.id(subject))?;
        Some(entry.verdict())
    }

    /// The version of `subject`'s report that `observer` holds.
    pub fn version_seen(&self, observer: usize, subject: usize) -> Option<Version> {
        let entry = self.core(observer)?.map().get(self.id(subject))?;
        Some(entry.report().version())
    }

    /// The nodes that `observer` believes have `verdict` (itself excluded).
    pub fn seen_as(&self, observer: usize, verdict: Verdict) -> Vec<usize> {
        let Some(core) = self.core(observer) else {
            return Vec::new();
        };
        core.map()
            .iter()
            .filter(|e| e.verdict() == verdict)
            .filter_map(|e| self.index_of(&e.report().node))
            .filter(|&i| i != observer)
            .collect()
    }

    /// How many running nodes other than `subject` hold a report of `subject` at `version` or
    /// newer.
    pub fn count_holding(&self, subject: usize, version: Version) -> usize {
        self.running()
            .filter(|&o| o != subject)
            .filter(|&o| self.version_seen(o, subject).is_some_and(|v| v >= version))
            .count()
    }

    /// Whether every running node other than `subject` holds `version` of it or newer.
    pub fn all_hold(&self, subject: usize, version: Version) -> bool {
        self.running()
            .filter(|&o| o != subject)
            .all(|o| self.version_seen(o, subject).is_some_and(|v| v >= version))
    }

    /// Whether every running node other than `subject` believes `verdict` of it.
    pub fn all_see(&self, subject: usize, verdict: Verdict) -> bool {
        self.running()
            .filter(|&o| o != subject)
            .all(|o| self.verdict(o, subject) == Some(verdict))
    }

    /// Whether the cluster has converged: every node has started, and every running node sees
    /// every other running node that is not leaving as alive.
    pub fn all_see_all_alive(&self) -> bool {
        if self.nodes.iter().any(|n| n.starting) {
            return false;
        }
        let alive: Vec<usize> = self
            .running()
            .filter(|&i| !self.core(i).is_some_and(Gossip::is_leaving))
            .collect();
        self.running().all(|o| {
            alive
                .iter()
                .all(|&s| s == o || self.verdict(o, s) == Some(Verdict::Alive))
        })
    }

    /// A looser convergence for large clusters, where at any moment a few of the million
    /// pairs are suspect for a while: every node has started, and every running node knows every
    /// other running node and believes none of them dead.
    pub fn all_know_all(&self) -> bool {
        if self.nodes.iter().any(|n| n.starting) {
            return false;
        }
        let running: Vec<usize> = self.running().collect();
        running.iter().all(|&o| {
            running
                .iter()
                .all(|&s| s == o || matches!(self.verdict(o, s), Some(v) if v != Verdict::Dead))
        })
    }

    /// Whether every node in `observers` sees every node in `subjects` (but itself) as
    /// `verdict`.
    pub fn group_sees(&self, observers: &[usize], subjects: &[usize], verdict: Verdict) -> bool {
        observers.iter().all(|&o| {
            subjects
                .iter()
                .all(|&s| s == o || self.verdict(o, s) == Some(verdict))
        })
    }

    /// Node `i`'s traffic since the start (or the last [`Sim::reset_counters`]).
    pub fn traffic(&self, i: usize) -> Traffic {
        self.nodes[i].traffic
    }

    /// Every node's traffic, added up.
    pub fn total_traffic(&self) -> Traffic {
        let mut total = Traffic::default();
        for node in &self.nodes {
            total.add(&node.traffic);
        }
        total
    }

    /// Datagrams the network did not deliver.
    pub fn drops(&self) -> Drops {
        self.drops
    }

    /// Every verdict change every core made, in order.
    pub fn events(&self) -> &[SimEvent] {
        &self.events
    }

    /// The changes that declared a running node dead.
    pub fn false_deaths(&self) -> Vec<&SimEvent> {
        self.events.iter().filter(|e| e.is_false_death()).collect()
    }
}
