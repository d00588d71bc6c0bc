//! The load map: one node's eventually consistent view of every node's load and liveness.
//!
//! The reports it holds form a join-semilattice: for each node the greatest report wins (see
//! [`LoadReport`]'s order), so merging is commutative, associative and idempotent, and gossip may
//! deliver anything in any order, any number of times. Beside each report the map keeps what only
//! this node can know: when the report last changed here (its age) and the failure detector's
//! verdict.
//!
//! The map is bounded ([`LoadMap::max_nodes`]): a flood of made-up node ids, even from an
//! authenticated peer gone rogue, cannot grow it without limit. A node new to a full map takes
//! the place of the entry that has been dead or gone longest, or failing that of the one
//! suspected longest; when every entry is alive the newcomer is refused (and will be offered
//! again by gossip once a place frees up). Live nodes are never pushed out by newcomers, so a
//! flood can delay a real node's joining but cannot make the cluster forget its members.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::detector::{ArrivalWindow, DetectorConfig};
use crate::{LoadReport, NodeId, NodeState};

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
    refreshed: Instant,
    verdict: Verdict,
    verdict_since: Instant,
    arrivals: ArrivalWindow,
    state_changes: u64,
    /// How many times this node has pushed this report version to peers (dissemination).
    pub(crate) transmits: u32,
}

impl Entry {
    /// The newest report known.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }
    /// When a newer report last arrived here.
    pub fn refreshed(&self) -> Instant {
        self.refreshed
    }
    /// How long ago a newer report last arrived here.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.refreshed)
    }
    /// The failure detector's verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
    /// Since when the verdict has held.
    pub fn verdict_since(&self) -> Instant {
        self.verdict_since
    }
    /// How many times the verdict has changed since the node entered the map.
    pub fn state_changes(&self) -> u64 {
        self.state_changes
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
        self.state_changes += 1;
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
#[derive(Debug, Clone)]
pub struct LoadMap {
    entries: BTreeMap<NodeId, Entry>,
    max_nodes: usize,
    owner: Option<NodeId>,
}

impl Default for LoadMap {
    fn default() -> Self {
        LoadMap {
            entries: BTreeMap::new(),
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
            entries: BTreeMap::new(),
            max_nodes: max_nodes.max(2),
            owner: Some(owner),
        }
    }

    /// The most nodes the map holds.
    pub fn max_nodes(&self) -> usize {
        self.max_nodes
    }

    /// The entry to drop so that a new node fits: the one dead or gone longest, else the one
    /// suspected longest; never the owner, never a live node.
    fn eviction_victim(&self) -> Option<NodeId> {
        let rank = |e: &Entry| match e.verdict {
            Verdict::Dead | Verdict::Left => Some((0, e.verdict_since)),
            Verdict::Suspect => Some((1, e.verdict_since)),
            Verdict::Alive => None,
        };
        self.entries
            .iter()
            .filter(|(id, _)| self.owner.as_ref() != Some(*id))
            .filter_map(|(id, e)| rank(e).map(|r| (r, id)))
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

    /// One node's entry.
    pub fn get(&self, node: &NodeId) -> Option<&Entry> {
        self.entries.get(node)
    }

    pub(crate) fn get_mut(&mut self, node: &NodeId) -> Option<&mut Entry> {
        self.entries.get_mut(node)
    }

    /// Every entry, ordered by node id.
    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The winning report of every node, ordered by node id: the map's replicated state.
    pub fn reports(&self) -> impl Iterator<Item = &LoadReport> {
        self.entries.values().map(|e| &e.report)
    }

    /// Counts of nodes by verdict, in the order alive, suspect, dead, left.
    pub fn verdict_counts(&self) -> [usize; 4] {
        let mut counts = [0; 4];
        for e in self.entries.values() {
            counts[e.verdict as usize] += 1;
        }
        counts
    }

    /// Merges one report: it replaces the node's entry if it is newer, and counts as a
    /// heartbeat for the failure detector.
    pub fn merge_report(
        &mut self,
        report: LoadReport,
        now: Instant,
        config: &DetectorConfig,
    ) -> MergeOutcome {
        if !self.entries.contains_key(&report.node) && self.entries.len() >= self.max_nodes {
            let Some(victim) = self.eviction_victim() else {
                return MergeOutcome {
                    refused: true,
                    ..MergeOutcome::default()
                };
            };
            let evicted = self.entries.remove(&victim).map(|e| VerdictChange {
                node: victim,
                from: Some(e.verdict),
                to: None,
                incarnation: e.report.incarnation,
            });
            return MergeOutcome {
                evicted,
                ..self.merge_report(report, now, config)
            };
        }
        let Some(entry) = self.entries.get_mut(&report.node) else {
            let verdict = verdict_of(&report);
            let change = VerdictChange {
                node: report.node.clone(),
                from: None,
                to: Some(verdict),
                incarnation: report.incarnation,
            };
            self.entries.insert(
                report.node.clone(),
                Entry {
                    report,
                    refreshed: now,
                    verdict,
                    verdict_since: now,
                    arrivals: ArrivalWindow::new(now, config),
                    state_changes: 0,
                    transmits: 0,
                },
            );
            return MergeOutcome {
                newer: true,
                change: Some(change),
                ..MergeOutcome::default()
            };
        };
        if !report.supersedes(&entry.report) {
            return MergeOutcome::default();
        }
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
        entry.report = report;
        entry.refreshed = now;
        entry.transmits = 0;
        let change = entry.set_verdict(verdict, now);
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
        // Tells the exception by its address: cheaper than comparing every id with it.
        let except: *const Entry = self.entries.get(except).map_or(std::ptr::null(), |e| e);
        for (id, entry) in self.entries.iter_mut() {
            if std::ptr::eq(&*entry, except) {
                continue;
            }
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
                    changes.extend(entry.set_verdict(to, now));
                }
                Verdict::Dead | Verdict::Left => {
                    if now.saturating_duration_since(entry.verdict_since) >= config.grace {
                        expired.push(id.clone());
                    }
                }
            }
        }
        for id in expired {
            if let Some(entry) = self.entries.remove(&id) {
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
        self.entries.remove(node)
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
}
