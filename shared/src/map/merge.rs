//! What changes the map: a report merged (the newest wins; a full map evicts or refuses), and
//! the failure detector's judgement of silent nodes.

use std::time::Instant;

use super::{load_changed, verdict_of, Entry, LoadMap, News, Verdict, VerdictChange, NOWHERE};
use crate::detector::{ArrivalWindow, DetectorConfig};
use crate::{LoadReport, NodeId};

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

impl LoadMap {
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
