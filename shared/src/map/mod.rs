//! The load map: one node's eventually consistent view of every node's load and liveness.
//!
//! The reports it holds form a join-semilattice: for each node the greatest report wins (see
//! [`LoadReport`]'s order), so merging is commutative, associative and idempotent, and gossip may
//! deliver anything in any order, any number of times. Beside each report the map keeps what only
//! this node can know: when the report last changed here (its age) and the failure detector's
//! verdict.
//!
//! The map is bounded ([`LoadMap::bounded`]): a flood of made-up node ids, even from an
//! authenticated peer gone rogue, cannot grow it without limit. A node new to a full map takes
//! the place of the entry that has been dead or gone longest, or failing that of the one
//! suspected longest; when every entry is alive the newcomer is refused (and will be offered
//! again by gossip once a place frees up). Live nodes are never pushed out by newcomers, so a
//! flood can delay a real node's joining but cannot make the cluster forget its members.
//!
//! # Layout
//! - `mod.rs`: a node's [`Entry`] and its [`Verdict`]; the [`LoadMap`]'s storage, its indexes
//!   (by id, of the nodes that take work, the running load sum) and what can be read of it.
//! - `merge.rs`: what changes it — merging a report ([`LoadMap::merge_report`], with the
//!   eviction rule of a full map) and judging silences ([`LoadMap::judge`]).
//! - `tests.rs`: the unit tests.

mod merge;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::detector::{ArrivalWindow, DetectorConfig};
use crate::{LoadReport, LoadVector, NodeId, NodeState};

pub use merge::MergeOutcome;

/// What this node believes about another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Its reports keep coming.
    Alive,
    /// Its reports are late: it is not chosen for work, but not yet given up on.
    Suspect,
    /// Its reports stopped; it is kept for a grace period so stale gossip cannot revive it.
    Dead,
    /// It said it was leaving.
    Left,
}

impl Verdict {
    /// The verdict's name as used in the API, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Alive => "alive",
            Verdict::Suspect => "suspect",
            Verdict::Dead => "dead",
            Verdict::Left => "left",
        }
    }
}

/// A change of a node's verdict in this map; `None` means absent from the map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerdictChange {
    /// Whose verdict changed.
    pub node: NodeId,
    /// The verdict before, `None` for a node new to the map.
    pub from: Option<Verdict>,
    /// The verdict after, `None` for a node dropped from the map.
    pub to: Option<Verdict>,
    /// The node's incarnation at the change.
    pub incarnation: u64,
}

/// The most nodes a map holds unless told otherwise: far beyond any cluster gossip of this kind
/// serves well, small enough that a full map stays a few megabytes.
pub const DEFAULT_MAX_NODES: usize = 10_000;

/// How much a report is worth relaying, most first: the dissemination budget of a round (a
/// few reports per push) goes to membership changes, then to load changes, then to bare
/// heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum News {
    /// A node new to the map, a new incarnation, or a change of verdict (left, back alive).
    Membership,
    /// Its queue, running jobs, slots, state or commands changed (not its CPU figure, which
    /// moves with every sample).
    Load,
    /// Nothing but a newer `seq`.
    Heartbeat,
}

fn load_changed(old: &LoadVector, new: &LoadVector) -> bool {
    (old.queued, old.running, old.slots, old.state, old.commands)
        != (new.queued, new.running, new.slots, new.state, new.commands)
}

/// One node's entry in the map.
#[derive(Debug, Clone)]
pub struct Entry {
    report: LoadReport,
    verdict: Verdict,
    verdict_since: Instant,
    arrivals: ArrivalWindow,
    state_changes: u32,
    /// How many times this node has pushed this report version to peers (dissemination).
    pub(crate) transmits: u32,
    /// How newsworthy the report is to relay (see [`News`]); back to [`News::Heartbeat`] once
    /// it has been relayed its share of times.
    pub(crate) news: News,
    /// Where the entry stands in the map's index of nodes that take work, if it does.
    work_pos: u32,
}

impl Entry {
    /// The newest report known.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }
    /// When a newer report last arrived here.
    pub fn refreshed(&self) -> Instant {
        // The detector's last heartbeat is exactly that: every newer report is one.
        self.arrivals.last()
    }
    /// How long ago a newer report last arrived here.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.refreshed())
    }
    /// The failure detector's verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
    /// How many times the verdict has changed since the node entered the map.
    pub fn state_changes(&self) -> u64 {
        u64::from(self.state_changes)
    }
    /// The detector's current suspicion level (see [`ArrivalWindow::phi`]).
    pub fn phi(&self, now: Instant, config: &DetectorConfig) -> f64 {
        self.arrivals.phi(now, config)
    }
    /// Whether work may be sent to this node: alive and not leaving.
    pub fn takes_work(&self) -> bool {
        self.verdict == Verdict::Alive && self.report.load.state == NodeState::Alive
    }

    fn set_verdict(&mut self, to: Verdict, now: Instant) -> Option<VerdictChange> {
        if self.verdict == to {
            return None;
        }
        let change = VerdictChange {
            node: self.report.node.clone(),
            from: Some(self.verdict),
            to: Some(to),
            incarnation: self.report.incarnation,
        };
        self.verdict = to;
        self.verdict_since = now;
        self.state_changes = self.state_changes.saturating_add(1);
        Some(change)
    }
}

fn verdict_of(report: &LoadReport) -> Verdict {
    match report.load.state {
        NodeState::Alive => Verdict::Alive,
        NodeState::Leaving => Verdict::Left,
    }
}

/// The cluster as this node sees it.
///
/// The entries live in a dense vector; an ordered index from node id to position gives lookups
/// and iteration by id, and a second index lists the nodes that take work, so that placement can
/// draw one at random in constant time ([`LoadMap::taking_work`], [`LoadMap::taking_work_at`])
/// instead of passing over the whole map, and read the mean load per slot of those nodes
/// ([`LoadMap::mean_load_per_slot`]) from running sums.
#[derive(Debug, Clone)]
pub struct LoadMap {
    entries: Vec<Entry>,
    /// Positions in `entries`, ordered by node id (an ordered index that holds no second copy
    /// of every id: a search compares the ids in the entries).
    by_id: Vec<u32>,
    /// Positions in `entries` of the nodes that take work, in no particular order.
    workers: Vec<u32>,
    /// Sum over `workers` with slots of `(queued + running) / slots`, in units of
    /// 1 / [`LOAD_SCALE`], kept as an integer so that adding and taking away never drifts.
    work_load: u64,
    /// How many of `workers` have slots.
    work_slotted: u32,
    max_nodes: usize,
    owner: Option<NodeId>,
}

/// Fixed-point unit of [`LoadMap`]'s running load sum.
const LOAD_SCALE: u64 = 1 << 16;

/// Position of an entry in no index.
const NOWHERE: u32 = u32::MAX;

fn scaled_load(report: &LoadReport) -> Option<u64> {
    let load = &report.load;
    (load.slots > 0).then(|| {
        (u64::from(load.queued) + u64::from(load.running)) * LOAD_SCALE / u64::from(load.slots)
    })
}

impl Default for LoadMap {
    fn default() -> Self {
        LoadMap {
            entries: Vec::new(),
            by_id: Vec::new(),
            workers: Vec::new(),
            work_load: 0,
            work_slotted: 0,
            max_nodes: DEFAULT_MAX_NODES,
            owner: None,
        }
    }
}

impl LoadMap {
    /// An empty map holding at most [`DEFAULT_MAX_NODES`] nodes.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty map of `owner`'s, holding at most `max_nodes` nodes (at least 2). The owner's
    /// own entry is never evicted.
    pub fn bounded(max_nodes: usize, owner: NodeId) -> Self {
        LoadMap {
            max_nodes: max_nodes.max(2),
            owner: Some(owner),
            ..LoadMap::default()
        }
    }

    /// Number of nodes in the map, whatever their verdict.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where `node` stands (or would stand) in the ordered index.
    fn rank(&self, node: &NodeId) -> Result<usize, usize> {
        self.by_id
            .binary_search_by(|&i| self.entries[i as usize].report.node.cmp(node))
    }

    fn position(&self, node: &NodeId) -> Option<usize> {
        self.rank(node).ok().map(|r| self.by_id[r] as usize)
    }

    /// One node's entry.
    pub fn get(&self, node: &NodeId) -> Option<&Entry> {
        self.position(node).map(|i| &self.entries[i])
    }

    pub(crate) fn get_mut(&mut self, node: &NodeId) -> Option<&mut Entry> {
        self.position(node).map(|i| &mut self.entries[i])
    }

    /// Every entry, ordered by node id.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.by_id.iter().map(|&i| &self.entries[i as usize])
    }

    /// Every entry, in no particular order (but the same for the same history): cheaper than
    /// [`LoadMap::iter`] where the order does not matter.
    pub fn iter_unordered(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// The winning report of every node, ordered by node id: the map's replicated state.
    pub fn reports(&self) -> impl Iterator<Item = &LoadReport> {
        self.iter().map(|e| &e.report)
    }

    /// Counts of nodes by verdict, in the order alive, suspect, dead, left.
    pub fn verdict_counts(&self) -> [usize; 4] {
        let mut counts = [0; 4];
        for e in &self.entries {
            counts[e.verdict as usize] += 1;
        }
        counts
    }

    /// How many nodes take work ([`Entry::takes_work`]), the owner included if it does.
    pub fn taking_work(&self) -> usize {
        self.workers.len()
    }

    /// The `k`-th node that takes work, `k` below [`LoadMap::taking_work`], in an order of the
    /// map's own that changes as nodes come and go: drawing `k` uniformly draws a node that
    /// takes work uniformly, in constant time.
    pub fn taking_work_at(&self, k: usize) -> Option<&Entry> {
        self.workers.get(k).map(|&i| &self.entries[i as usize])
    }

    /// The mean of `(queued + running) / slots` over the nodes that take work and have slots
    /// (the owner included, by its last report), kept as running sums: what one would guess of
    /// a node's load knowing nothing else of it. `None` if no such node.
    pub fn mean_load_per_slot(&self) -> Option<f64> {
        (self.work_slotted > 0)
            .then(|| self.work_load as f64 / LOAD_SCALE as f64 / f64::from(self.work_slotted))
    }

    /// Takes entry `i` out of the work index, if it is there.
    fn unindex(&mut self, i: usize) {
        let pos = self.entries[i].work_pos;
        if pos == NOWHERE {
            return;
        }
        self.entries[i].work_pos = NOWHERE;
        if let Some(load) = scaled_load(&self.entries[i].report) {
            self.work_load -= load;
            self.work_slotted -= 1;
        }
        self.workers.swap_remove(pos as usize);
        if let Some(&moved) = self.workers.get(pos as usize) {
            self.entries[moved as usize].work_pos = pos;
        }
    }

    /// Puts entry `i` into the work index if it takes work (it must not be there).
    fn index(&mut self, i: usize) {
        debug_assert_eq!(self.entries[i].work_pos, NOWHERE);
        if !self.entries[i].takes_work() {
            return;
        }
        self.entries[i].work_pos = self.workers.len() as u32;
        self.workers.push(i as u32);
        if let Some(load) = scaled_load(&self.entries[i].report) {
            self.work_load += load;
            self.work_slotted += 1;
        }
    }

    /// Drops entry `i`, moving the last entry into its place.
    fn remove_at(&mut self, i: usize) -> Entry {
        self.unindex(i);
        if let Ok(r) = self.rank(&self.entries[i].report.node) {
            self.by_id.remove(r);
        }
        // The last entry moves into the place: the index learns it before it moves, while
        // every position it holds is still valid.
        let last = self.entries.len() - 1;
        if last != i {
            if let Ok(r) = self.rank(&self.entries[last].report.node) {
                self.by_id[r] = i as u32;
            }
        }
        let entry = self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            let pos = moved.work_pos;
            if pos != NOWHERE {
                self.workers[pos as usize] = i as u32;
            }
        }
        entry
    }
}
