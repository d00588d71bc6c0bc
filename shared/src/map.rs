//! The load map: one node's eventually consistent view of every node's load and liveness.
//!
//! The reports it holds form a join-semilattice: for each node the greatest report wins (see
//! [`LoadReport`]'s order), so merging is commutative, associative and idempotent, and gossip may
//! deliver anything in any order, any number of times. Beside each report the map keeps what only
//! this node can know: when the report last changed here (its age) and the failure detector's
//! verdict.

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

/// What merging one report did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOutcome {
    /// The report was newer than what the map held (or new to it).
    pub newer: bool,
    /// The node's verdict changed.
    pub change: Option<VerdictChange>,
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
#[derive(Debug, Clone, Default)]
pub struct LoadMap {
    entries: BTreeMap<NodeId, Entry>,
}

impl LoadMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
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
            };
        };
        if !report.supersedes(&entry.report) {
            return MergeOutcome {
                newer: false,
                change: None,
            };
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
