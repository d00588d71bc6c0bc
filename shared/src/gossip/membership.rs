//! Reports into the map: merging what gossip brings, refuting a newer report of this node,
//! passing word of a leave to the leaver, and the failure detector's verdicts as events.

use std::net::SocketAddr;
use std::time::Instant;

use super::{is_plausible, Gossip};
use crate::map::{Entry, MergeOutcome, Verdict, VerdictChange};
use crate::{LoadReport, NodeState};

impl Gossip {
    /// Merges one report; whether the map took it as newer.
    pub(super) fn absorb(&mut self, report: LoadReport, now: Instant) -> bool {
        if !is_plausible(report.version(), self.wall_ms(now)) {
            // Out of any honest node's reach: taken in, it would outrank every report its node
            // can send for a long time (or, for this node, could not be refuted by a report its
            // peers would take). Refused here as it is everywhere else.
            self.stats.implausible_reports += 1;
            return false;
        }
        if report.node == self.config.node {
            // Someone holds a report of this node newer than the one it sends now: a previous
            // life with a clock that ran ahead, or a forgery. Move past it, and not below the
            // wall clock, so that the new life's samples start afresh. The report is plausible
            // here, so the new incarnation (one above it, or the wall clock) is plausible from
            // the next millisecond on to every peer whose clock is not behind this one's.
            if report.version() > self.own_report().version() {
                self.incarnation = report.incarnation.saturating_add(1).max(self.wall_ms(now));
                self.seq = 0;
                self.stats.refutations += 1;
                self.publish_own(now);
            }
            return false;
        }
        // Where the node was known to listen before this report: a forged one may name
        // another address.
        let known = self.map.get(&report.node).map(|e| e.report().gossip);
        let echo = known
            .filter(|_| report.load.state == NodeState::Leaving)
            .map(|to| (to, report.clone()));
        let outcome = self.map.merge_report(report, now, &self.config.detector);
        self.count_merge(&outcome);
        if outcome.newer {
            self.stats.reports_merged += 1;
        }
        if let (Some((to, report)), Some(Verdict::Left)) =
            (echo, outcome.change.as_ref().and_then(|c| c.to))
        {
            // Word that a node is leaving: tell the node. One that is in fact leaving ignores
            // it (its own announcement comes back once from each peer); one that is not (the
            // word is forged) refutes it at once, rather than when the rumour happens to reach
            // it, rounds later. The sender's address is not trusted to tell the two apart: it
            // can be spoofed. Only a node already known is told, at its known address, so that
            // forged leaves of made-up nodes cannot aim this node's answers anywhere.
            let own = self.own_report();
            self.send_push(to, &own, &[report]);
        }
        if let Some(VerdictChange {
            from: Some(Verdict::Suspect),
            to: Some(Verdict::Alive),
            ..
        }) = outcome.change
        {
            self.stats.suspicions_refuted += 1;
        }
        let newer = outcome.newer;
        self.events.extend(outcome.evicted);
        self.events.extend(outcome.change);
        newer
    }

    pub(super) fn publish_own(&mut self, now: Instant) {
        self.seq = self.seq.saturating_add(1);
        let own = self.own_report();
        let outcome = self.map.merge_report(own, now, &self.config.detector);
        self.count_merge(&outcome);
        self.events.extend(outcome.evicted);
        self.events.extend(outcome.change);
    }

    fn count_merge(&mut self, outcome: &MergeOutcome) {
        self.stats.map_evictions += u64::from(outcome.evicted.is_some());
        self.stats.map_refusals += u64::from(outcome.refused);
    }

    /// Every entry of the map but this node's own.
    pub(super) fn peers(&self) -> impl Iterator<Item = &Entry> + '_ {
        // Tells the own entry by its address rather than its id: this runs over the whole map
        // several times a round, and comparing ids is comparing strings.
        let own: *const Entry = self
            .map
            .get(&self.config.node)
            .map_or(std::ptr::null(), |e| e);
        self.map.iter().filter(move |e| !std::ptr::eq(*e, own))
    }

    pub(super) fn peer_addrs(&self, verdict: impl Fn(Verdict) -> bool) -> Vec<SocketAddr> {
        self.peers()
            .filter(|e| verdict(e.verdict()))
            .map(|e| e.report().gossip)
            .collect()
    }
}
