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

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::detector::{ArrivalWindow, DetectorConfig};
use crate::{LoadReport, LoadVector, NodeId, NodeState};

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

/// What merging one report did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MergeOutcome {
    /// The report was newer than what the map held (or new to it).
    pub newer: bool,
    /// The node's verdict changed.
    pub change: Option<VerdictChange>,
    /// The map was full and this entry was dropped to make room for the report's node.
    pub evicted: Option<VerdictChange>,
    /// The map was full of live nodes: the report's node, new to it, was not taken in.
    pub refused: bool,
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

    /// The entry to drop so that a new node fits: the one dead or gone longest, else the one
    /// suspected longest; never the owner, never a live node.
    fn eviction_victim(&self) -> Option<NodeId> {
        let rank = |e: &Entry| match e.verdict {
            Verdict::Dead | Verdict::Left => Some((0, e.verdict_since)),
            Verdict::Suspect => Some((1, e.verdict_since)),
            Verdict::Alive => None,
        };
        self.iter()
            .filter(|e| self.owner.as_ref() != Some(&e.report.node))
            .filter_map(|e| rank(e).map(|r| (r, &e.report.node)))
            .min()
            .map(|(_, id)| id.clone())
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

    /// Merges one report: it replaces the node's entry if it is newer, and counts as a
    /// heartbeat for the failure detector.
    pub fn merge_report(
        &mut self,
        report: LoadReport,
        now: Instant,
        config: &DetectorConfig,
    ) -> MergeOutcome {
        let Some(i) = self.position(&report.node) else {
            let mut evicted = None;
            if self.entries.len() >= self.max_nodes {
                let Some(victim) = self.eviction_victim() else {
                    return MergeOutcome {
                        refused: true,
                        ..MergeOutcome::default()
                    };
                };
                evicted = self.remove(&victim).map(|e| VerdictChange {
                    node: victim,
                    from: Some(e.verdict),
                    to: None,
                    incarnation: e.report.incarnation,
                });
            }
            let verdict = verdict_of(&report);
            let change = VerdictChange {
                node: report.node.clone(),
                from: None,
                to: Some(verdict),
                incarnation: report.incarnation,
            };
            let i = self.entries.len();
            let r = self.rank(&report.node).unwrap_or_else(|r| r);
            self.by_id.insert(r, i as u32);
            self.entries.push(Entry {
                report,
                verdict,
                verdict_since: now,
                arrivals: ArrivalWindow::new(now, config),
                state_changes: 0,
                transmits: 0,
                news: News::Membership,
                work_pos: NOWHERE,
            });
            self.index(i);
            return MergeOutcome {
                newer: true,
                change: Some(change),
                evicted,
                ..MergeOutcome::default()
            };
        };
        if !report.supersedes(&self.entries[i].report) {
            return MergeOutcome::default();
        }
        self.unindex(i);
        let entry = &mut self.entries[i];
        if report.incarnation > entry.report.incarnation {
            // A new incarnation is a new life: start the detector afresh.
            entry.arrivals = ArrivalWindow::new(now, config);
        } else if entry.verdict == Verdict::Dead {
            // Back from the dead: after a partition, or a straggling report of a node that did
            // die, still relayed by peers that had not judged it yet. The silence says nothing
            // of the node's rhythm, so it is not counted as an interval; the rhythm learned
            // before it still holds, so that a straggler is judged dead again as quickly as the
            // first time (a window started afresh would give it several seconds).
            entry.arrivals.resume(now);
        } else {
            entry.arrivals.heartbeat(now, config);
        }
        let verdict = verdict_of(&report);
        let news = if report.incarnation > entry.report.incarnation || verdict != entry.verdict {
            News::Membership
        } else if load_changed(&entry.report.load, &report.load) {
            News::Load
        } else {
            News::Heartbeat
        };
        // News not yet relayed its share keeps its rank through the heartbeats that follow.
        entry.news = entry.news.min(news);
        entry.report = report;
        entry.transmits = 0;
        let change = entry.set_verdict(verdict, now);
        self.index(i);
        MergeOutcome {
            newer: true,
            change,
            ..MergeOutcome::default()
        }
    }

    /// Merges every report of `other` into this map.
    pub fn merge(&mut self, other: &LoadMap, now: Instant, config: &DetectorConfig) {
        for report in other.reports() {
            self.merge_report(report.clone(), now, config);
        }
    }

    /// Runs the failure detector over every entry but `except` (this node itself): suspects and
    /// kills silent nodes, and drops dead and left ones whose grace period is over.
    pub fn judge(
        &mut self,
        now: Instant,
        config: &DetectorConfig,
        except: &NodeId,
    ) -> Vec<VerdictChange> {
        let mut changes = Vec::new();
        let mut expired = Vec::new();
        let except = self.position(except);
        // In id order, so that the changes come out in the order they always did.
        let order: Vec<usize> = self.by_id.iter().map(|&i| i as usize).collect();
        for i in order {
            if Some(i) == except {
                continue;
            }
            let entry = &self.entries[i];
            match entry.verdict {
                Verdict::Alive | Verdict::Suspect => {
                    // Until its silence exceeds the mean interval a node's phi stays below
                    // log10(2); most entries are there, and need no logarithm to say so.
                    let early = !entry.arrivals.is_late(now, config)
                        && config.suspect_phi.min(config.dead_phi) > std::f64::consts::LOG10_2;
                    let phi = if early {
                        0.0
                    } else {
                        entry.arrivals.phi(now, config)
                    };
                    let to = if phi >= config.dead_phi {
                        Verdict::Dead
                    } else if phi >= config.suspect_phi {
                        Verdict::Suspect
                    } else {
                        entry.verdict
                    };
                    if to != entry.verdict {
                        self.unindex(i);
                        changes.extend(self.entries[i].set_verdict(to, now));
                        self.index(i);
                    }
                }
                Verdict::Dead | Verdict::Left => {
                    if now.saturating_duration_since(entry.verdict_since) >= config.grace {
                        expired.push(entry.report.node.clone());
                    }
                }
            }
        }
        for id in expired {
            if let Some(entry) = self.remove(&id) {
                changes.push(VerdictChange {
                    node: id,
                    from: Some(entry.verdict),
                    to: None,
                    incarnation: entry.report.incarnation,
                });
            }
        }
        changes
    }

    /// Drops one node's entry, if present.
    pub fn remove(&mut self, node: &NodeId) -> Option<Entry> {
        let i = self.position(node)?;
        Some(self.remove_at(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LoadVector;

    fn report(node: &str, incarnation: u64, seq: u64, state: NodeState) -> LoadReport {
        LoadReport {
            node: NodeId::new(node).unwrap(),
            incarnation,
            seq,
            load: LoadVector {
                state,
                ..LoadVector::idle(1)
            },
            api: "127.0.0.1:1".parse().unwrap(),
            gossip: "127.0.0.1:2".parse().unwrap(),
        }
    }

    #[test]
    fn newer_wins_and_older_is_ignored() {
        let cfg = DetectorConfig::default();
        let now = Instant::now();
        let mut map = LoadMap::new();
        assert!(
            map.merge_report(report("a", 1, 5, NodeState::Alive), now, &cfg)
                .newer
        );
        assert!(
            !map.merge_report(report("a", 1, 4, NodeState::Alive), now, &cfg)
                .newer
        );
        assert!(
            map.merge_report(report("a", 2, 0, NodeState::Alive), now, &cfg)
                .newer
        );
        assert_eq!(
            map.get(&NodeId::new("a").unwrap())
                .unwrap()
                .report()
                .incarnation,
            2
        );
    }

    #[test]
    fn silence_leads_to_suspect_then_dead_then_removal() {
        let cfg = DetectorConfig::default();
        let me = NodeId::new("me").unwrap();
        let t0 = Instant::now();
        let mut map = LoadMap::new();
        for seq in 0..20 {
            let t = t0 + Duration::from_millis(200 * seq);
            map.merge_report(report("a", 1, seq, NodeState::Alive), t, &cfg);
        }
        let last = t0 + Duration::from_millis(200 * 19);
        let id = NodeId::new("a").unwrap();
        let mut seen = Vec::new();
        for step in 1..=1000 {
            let t = last + Duration::from_millis(100 * step);
            for c in map.judge(t, &cfg, &me) {
                seen.push(c.to);
            }
        }
        assert_eq!(
            seen,
            vec![Some(Verdict::Suspect), Some(Verdict::Dead), None],
            "verdicts in order"
        );
        assert!(map.get(&id).is_none());
    }

    #[test]
    fn stale_gossip_does_not_revive_the_dead_but_a_newer_report_does() {
        let cfg = DetectorConfig::default();
        let me = NodeId::new("me").unwrap();
        let t0 = Instant::now();
        let mut map = LoadMap::new();
        map.merge_report(report("a", 1, 7, NodeState::Alive), t0, &cfg);
        map.judge(t0 + Duration::from_secs(10), &cfg, &me);
        let id = NodeId::new("a").unwrap();
        assert_eq!(map.get(&id).unwrap().verdict(), Verdict::Dead);
        let t1 = t0 + Duration::from_secs(11);
        map.merge_report(report("a", 1, 7, NodeState::Alive), t1, &cfg);
        map.merge_report(report("a", 1, 3, NodeState::Alive), t1, &cfg);
        assert_eq!(map.get(&id).unwrap().verdict(), Verdict::Dead);
        map.merge_report(report("a", 2, 0, NodeState::Alive), t1, &cfg);
        assert_eq!(map.get(&id).unwrap().verdict(), Verdict::Alive);
    }

    #[test]
    fn a_full_map_evicts_the_longest_dead_then_suspect_and_never_a_live_node() {
        let cfg = DetectorConfig::default();
        let me = NodeId::new("me").unwrap();
        let t0 = Instant::now();
        let mut map = LoadMap::bounded(4, me.clone());
        map.merge_report(report("me", 1, 1, NodeState::Leaving), t0, &cfg);
        for node in ["a", "b", "c"] {
            map.merge_report(report(node, 1, 1, NodeState::Alive), t0, &cfg);
        }
        // Full of live nodes (the owner is leaving, but is never evicted): a newcomer is refused.
        let out = map.merge_report(report("x", 1, 1, NodeState::Alive), t0, &cfg);
        assert!(out.refused && !out.newer && out.evicted.is_none());
        assert_eq!(map.len(), 4);
        // a goes silent until it is dead; then c goes silent until it is suspected. b (like
        // the owner) keeps reporting.
        let verdict =
            |map: &LoadMap, n: &str| map.get(&NodeId::new(n).unwrap()).map(|e| e.verdict());
        let mut t = t0;
        let mut seq = 1;
        let mut silent = vec!["a"];
        for _ in 0..200 {
            t += Duration::from_millis(200);
            seq += 1;
            for node in ["b", "c", "a"] {
                if !silent.contains(&node) {
                    map.merge_report(report(node, 1, seq, NodeState::Alive), t, &cfg);
                }
            }
            map.judge(t, &cfg, &me);
            if verdict(&map, "a") == Some(Verdict::Dead) && silent.len() == 1 {
                silent.push("c");
            }
            if verdict(&map, "c") == Some(Verdict::Suspect) {
                break;
            }
        }
        assert_eq!(verdict(&map, "a"), Some(Verdict::Dead));
        assert_eq!(verdict(&map, "c"), Some(Verdict::Suspect));
        assert_eq!(verdict(&map, "b"), Some(Verdict::Alive));
        let out = map.merge_report(report("x", 1, 1, NodeState::Alive), t, &cfg);
        assert_eq!(out.evicted.map(|c| c.node.to_string()), Some("a".into()));
        assert!(out.newer);
        let out = map.merge_report(report("y", 1, 1, NodeState::Alive), t, &cfg);
        assert_eq!(out.evicted.map(|c| c.node.to_string()), Some("c".into()));
        let out = map.merge_report(report("z", 1, 1, NodeState::Alive), t, &cfg);
        assert!(out.refused);
        assert_eq!(map.len(), 4);
        assert!(verdict(&map, "me").is_some() && verdict(&map, "b").is_some());
    }

    #[test]
    fn a_leaving_node_is_left_not_dead() {
        let cfg = DetectorConfig::default();
        let t0 = Instant::now();
        let mut map = LoadMap::new();
        map.merge_report(report("a", 1, 1, NodeState::Alive), t0, &cfg);
        let out = map.merge_report(report("a", 1, 2, NodeState::Leaving), t0, &cfg);
        assert_eq!(out.change.unwrap().to, Some(Verdict::Left));
        let me = NodeId::new("me").unwrap();
        let changes = map.judge(t0 + Duration::from_secs(5), &cfg, &me);
        assert!(changes.is_empty(), "a left node is not judged: {changes:?}");
    }

    /// The work index and the running load sum agree with a pass over the map, whatever
    /// happens: nodes joining, reporting loads, leaving, falling silent, expiring, evicted.
    #[test]
    fn the_work_index_and_load_sum_follow_every_change() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let cfg = DetectorConfig {
            grace: Duration::from_secs(3),
            ..DetectorConfig::default()
        };
        let me = NodeId::new("n0").unwrap();
        let mut map = LoadMap::bounded(24, me.clone());
        let mut rng = StdRng::seed_from_u64(3);
        let t0 = Instant::now();
        let mut seqs = [0u64; 32];
        for step in 0..4000u64 {
            let t = t0 + Duration::from_millis(50 * step);
            let n = rng.random_range(0..32usize);
            match rng.random_range(0..10) {
                0 => {
                    map.judge(t, &cfg, &me);
                }
                1 => {
                    map.remove(&NodeId::new(format!("n{n}")).unwrap());
                }
                _ if n % 4 == 3 && step > 2000 => {} // a quarter fall silent halfway
                k => {
                    seqs[n] += 1;
                    let state = if k == 2 {
                        NodeState::Leaving
                    } else {
                        NodeState::Alive
                    };
                    let mut r = report(&format!("n{n}"), 1 + seqs[n] / 50, seqs[n], state);
                    r.load.queued = rng.random_range(0..5);
                    r.load.slots = rng.random_range(0..3);
                    map.merge_report(r, t, &cfg);
                }
            }
            let working: Vec<&Entry> = map.iter().filter(|e| e.takes_work()).collect();
            assert_eq!(map.taking_work(), working.len(), "step {step}");
            let mut indexed: Vec<&NodeId> = (0..map.taking_work())
                .map(|k| &map.taking_work_at(k).unwrap().report().node)
                .collect();
            indexed.sort();
            let listed: Vec<&NodeId> = working.iter().map(|e| &e.report().node).collect();
            assert_eq!(indexed, listed, "step {step}");
            let loads: Vec<f64> = working
                .iter()
                .filter(|e| e.report().load.slots > 0)
                .map(|e| {
                    let l = e.report().load;
                    f64::from(l.queued + l.running) / f64::from(l.slots)
                })
                .collect();
            let mean = (!loads.is_empty()).then(|| loads.iter().sum::<f64>() / loads.len() as f64);
            match (map.mean_load_per_slot(), mean) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 1e-4, "step {step}: {a} {b}"),
                (a, b) => assert_eq!(a, b, "step {step}"),
            }
            for e in map.iter() {
                assert_eq!(
                    map.get(&e.report().node).map(|g| g.report()),
                    Some(e.report())
                );
            }
        }
        assert!(map.len() > 4, "the run left a map to speak of");
    }
}
