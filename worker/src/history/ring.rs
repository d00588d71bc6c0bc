//! The cluster's recent history as this node saw it: a bounded ring of samples (per node:
//! queued, running, CPU; per sample: this node's job counters turned into rates, and the
//! sojourn p50/p99 of the jobs that ended here) and a bounded timeline of membership events
//! (joins, leaves, suspicions, deaths, restarts with their incarnation).
//!
//! Pure: no clock, no I/O (the shell is [`super`]). The caller passes the time (milliseconds since the Unix epoch) into
//! every entry point, so that the tests run the ring through hours in microseconds.
//!
//! # Bounds
//! - [`SampleRing`]: at most `capacity` samples (15 minutes at the gossip interval: 4,500 at the
//!   default 200 ms, never more than [`MAX_SAMPLES`]), each with at most [`MAX_NODES_PER_SAMPLE`]
//!   nodes. A node entry is an `Arc<str>` (shared between samples) and three integers, 32 bytes;
//!   a sample is under 32 × 32 + 64 bytes, so the ring holds under 4.9 MB at its largest.
//! - [`Timeline`]: at most [`MAX_EVENTS`] events, the oldest dropped first (under 100 KB).
//!
//! # What the cluster series mean
//! The load vector that nodes gossip carries queue depth, running jobs, slots and CPU, not
//! counters of finished jobs. So the per-node series are the cluster's (every node's latest
//! gossiped report), and the job series are this node's own: jobs that ended on this node
//! (completed, failed, lost) per second over the sample interval, and the sojourn times of the
//! jobs that ended here in that interval. `running_total` (the sum of every node's running jobs)
//! is the cluster-wide figure closest to throughput that gossip carries.

use std::collections::VecDeque;
use std::sync::Arc;

use hearsay_shared::{Verdict, VerdictChange};
use serde::Serialize;

/// The most samples a ring keeps, whatever the interval.
pub const MAX_SAMPLES: usize = 4_500;
/// The most nodes one sample records (in id order); the rest of a larger cluster is left out.
pub const MAX_NODES_PER_SAMPLE: usize = 32;
/// The most events the timeline keeps.
pub const MAX_EVENTS: usize = 1_000;
/// How far back the ring reaches: 15 minutes.
pub const SPAN_MS: u64 = 15 * 60 * 1000;

/// One node's load at a sample.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSample {
    /// The node's id (one allocation shared by every sample that names it).
    #[serde(serialize_with = "as_str")]
    pub node: Arc<str>,
    /// Jobs in its queue.
    pub queued: u32,
    /// Jobs in its slots.
    pub running: u32,
    /// Its CPU use, per mille of its machine.
    pub cpu_permille: u16,
}

fn as_str<S: serde::Serializer>(text: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(text)
}

/// This node's cumulative job counters, as read from its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobCounters {
    /// Jobs that ended here with status `succeeded`.
    pub completed: u64,
    /// Jobs that ended here with status `failed` (or timed out).
    pub failed: u64,
    /// Jobs recorded lost here.
    pub lost: u64,
}

/// One sample of the ring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Every node's latest report (at most [`MAX_NODES_PER_SAMPLE`], in id order).
    pub nodes: Vec<NodeSample>,
    /// The sum of every node's running jobs (all nodes, not only those listed).
    pub running_total: u64,
    /// The sum of every node's queued jobs.
    pub queued_total: u64,
    /// Jobs completed on this node per second since the sample before.
    pub completed_per_s: f64,
    /// Jobs failed on this node per second since the sample before.
    pub failed_per_s: f64,
    /// Jobs lost on this node per second since the sample before.
    pub lost_per_s: f64,
    /// The median sojourn (ms) of the jobs that ended here since the sample before; `None`
    /// when none did.
    pub sojourn_p50_ms: Option<u64>,
    /// Their 99th percentile sojourn (ms).
    pub sojourn_p99_ms: Option<u64>,
}

/// The ring of samples. Feed it with [`SampleRing::record`] once per interval.
#[derive(Debug)]
pub struct SampleRing {
    capacity: usize,
    samples: VecDeque<Sample>,
    last: Option<(u64, JobCounters)>,
    /// Sojourn times (ms) of the jobs that ended since the last sample, bounded.
    sojourns: Vec<u64>,
}

/// The most sojourn times kept between two samples; beyond, later ones are left out of the
/// percentiles (the rates still count every job).
const MAX_SOJOURNS_PER_SAMPLE: usize = 4_096;

impl SampleRing {
    /// A ring that reaches back [`SPAN_MS`] at one sample per `interval_ms`.
    pub fn new(interval_ms: u64) -> Self {
        let capacity = (SPAN_MS / interval_ms.max(1)).clamp(1, MAX_SAMPLES as u64) as usize;
        SampleRing {
            capacity,
            samples: VecDeque::with_capacity(capacity.min(64)),
            last: None,
            sojourns: Vec::new(),
        }
    }

    /// The most samples this ring keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Notes the sojourn time of a job that ended here.
    pub fn job_ended(&mut self, sojourn_ms: u64) {
        if self.sojourns.len() < MAX_SOJOURNS_PER_SAMPLE {
            self.sojourns.push(sojourn_ms);
        }
    }

    /// Records a sample at `now_ms`: `nodes` as `(id, queued, running, cpu)`, in any order,
    /// and this node's cumulative counters. A sample whose time is not after the last one's
    /// is ignored (the clock went back), so the ring stays in time order.
    pub fn record<I>(&mut self, now_ms: u64, nodes: I, counters: JobCounters)
    where
        I: IntoIterator<Item = NodeSample>,
    {
        if self.samples.back().is_some_and(|s| s.at_ms >= now_ms) {
            return;
        }
        let mut nodes: Vec<NodeSample> = nodes.into_iter().collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        let running_total = nodes.iter().map(|n| u64::from(n.running)).sum();
        let queued_total = nodes.iter().map(|n| u64::from(n.queued)).sum();
        nodes.truncate(MAX_NODES_PER_SAMPLE);
        // Share the ids with the sample before, so that the ring holds one copy of each.
        if let Some(before) = self.samples.back() {
            for n in &mut nodes {
                if let Ok(at) = before.nodes.binary_search_by(|b| b.node.cmp(&n.node)) {
                    n.node = before.nodes[at].node.clone();
                }
            }
        }
        let (completed_per_s, failed_per_s, lost_per_s) = match self.last {
            Some((then, before)) => {
                let secs = (now_ms - then) as f64 / 1000.0;
                let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
                (
                    rate(counters.completed, before.completed),
                    rate(counters.failed, before.failed),
                    rate(counters.lost, before.lost),
                )
            }
            None => (0.0, 0.0, 0.0),
        };
        self.last = Some((now_ms, counters));
        let mut sojourns = std::mem::take(&mut self.sojourns);
        sojourns.sort_unstable();
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at_ms: now_ms,
            nodes,
            running_total,
            queued_total,
            completed_per_s,
            failed_per_s,
            lost_per_s,
            sojourn_p50_ms: percentile(&sojourns, 50),
            sojourn_p99_ms: percentile(&sojourns, 99),
        });
    }

    /// The samples taken after `since_ms` (all of them for `None`), oldest first.
    pub fn since(&self, since_ms: Option<u64>) -> impl Iterator<Item = &Sample> {
        let since = since_ms.unwrap_or(0);
        let start = self.samples.partition_point(|s| s.at_ms <= since);
        // `since_ms` 0 must still include a sample at time 0 (only in tests).
        let start = if since_ms.is_none() { 0 } else { start };
        self.samples.range(start..)
    }

    /// How many samples the ring holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.samples.len()
    }
}

/// The `p`th percentile (nearest rank) of sorted `values`.
fn percentile(sorted: &[u64], p: usize) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

/// What happened to a node, as this node saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// New to this node's map.
    Joined,
    /// Came back with a newer incarnation (restarted).
    Restarted,
    /// Alive again after a suspicion or death with the same incarnation.
    Recovered,
    /// Its reports are late.
    Suspected,
    /// Declared dead.
    Died,
    /// Said it was leaving.
    Left,
    /// Dropped from the map after its grace period.
    Forgotten,
}

/// One event of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// When this node saw it, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Which node.
    pub node: String,
    /// What happened.
    pub kind: EventKind,
    /// The node's incarnation at the event.
    pub incarnation: u64,
}

/// The bounded timeline of membership events, oldest first.
#[derive(Debug, Default)]
pub struct Timeline {
    events: VecDeque<Event>,
    /// The incarnation last seen per node, to tell a restart from a recovery; bounded with the
    /// map (a node forgotten by the map is forgotten here).
    incarnations: std::collections::HashMap<String, u64>,
}

impl Timeline {
    /// An empty timeline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a verdict change of the gossip core at `now_ms`.
    pub fn record(&mut self, now_ms: u64, change: &VerdictChange) {
        let node = change.node.as_str().to_owned();
        let before = self.incarnations.get(&node).copied();
        let kind = match (change.from, change.to) {
            (_, None) => EventKind::Forgotten,
            (None, Some(Verdict::Alive)) if before.is_some_and(|b| b < change.incarnation) => {
                EventKind::Restarted
            }
            (None, Some(_)) => EventKind::Joined,
            (Some(_), Some(Verdict::Alive)) if before.is_some_and(|b| b < change.incarnation) => {
                EventKind::Restarted
            }
            (Some(_), Some(Verdict::Alive)) => EventKind::Recovered,
            (Some(_), Some(Verdict::Suspect)) => EventKind::Suspected,
            (Some(_), Some(Verdict::Dead)) => EventKind::Died,
            (Some(_), Some(Verdict::Left)) => EventKind::Left,
        };
        match change.to {
            None => {
                self.incarnations.remove(&node);
            }
            Some(_) => {
                self.incarnations.insert(node.clone(), change.incarnation);
            }
        }
        self.push(Event {
            at_ms: now_ms,
            node,
            kind,
            incarnation: change.incarnation,
        });
    }

    fn push(&mut self, event: Event) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    /// The events after `since_ms` (all for `None`), oldest first.
    pub fn since(&self, since_ms: Option<u64>) -> impl Iterator<Item = &Event> {
        self.events
            .iter()
            .filter(move |e| since_ms.is_none_or(|since| e.at_ms > since))
    }

    /// How many events it holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use hearsay_shared::NodeId;

    use super::*;

    fn node(id: &str, queued: u32) -> NodeSample {
        NodeSample {
            node: Arc::from(id),
            queued,
            running: 1,
            cpu_permille: 10,
        }
    }

    fn change(id: &str, from: Option<Verdict>, to: Option<Verdict>, inc: u64) -> VerdictChange {
        VerdictChange {
            node: NodeId::new(id).unwrap(),
            from,
            to,
            incarnation: inc,
        }
    }

    #[test]
    fn the_ring_keeps_fifteen_minutes_and_no_more() {
        let mut ring = SampleRing::new(200);
        assert_eq!(ring.capacity(), 4_500);
        for i in 1..=10_000u64 {
            ring.record(i * 200, [node("a", 1)], JobCounters::default());
        }
        assert_eq!(ring.len(), 4_500);
        let first = ring.since(None).next().unwrap().at_ms;
        assert_eq!(first, (10_000 - 4_500 + 1) * 200);
        // A long interval keeps fewer samples; a tiny one is capped.
        assert_eq!(SampleRing::new(60_000).capacity(), 15);
        assert_eq!(SampleRing::new(1).capacity(), MAX_SAMPLES);
    }

    #[test]
    fn samples_stay_in_time_order_and_a_clock_going_back_is_ignored() {
        let mut ring = SampleRing::new(1000);
        ring.record(5_000, [node("a", 1)], JobCounters::default());
        ring.record(4_000, [node("a", 2)], JobCounters::default());
        ring.record(5_000, [node("a", 3)], JobCounters::default());
        ring.record(6_000, [node("a", 4)], JobCounters::default());
        let times: Vec<_> = ring.since(None).map(|s| s.at_ms).collect();
        assert_eq!(times, [5_000, 6_000]);
    }

    #[test]
    fn since_returns_only_later_samples() {
        let mut ring = SampleRing::new(1000);
        for t in 1..=5 {
            ring.record(t * 1000, [node("a", 0)], JobCounters::default());
        }
        let times: Vec<_> = ring.since(Some(3_000)).map(|s| s.at_ms).collect();
        assert_eq!(times, [4_000, 5_000]);
        assert_eq!(ring.since(Some(9_000)).count(), 0);
        assert_eq!(ring.since(Some(0)).count(), 5);
    }

    #[test]
    fn nodes_are_sorted_capped_and_totals_count_every_node() {
        let mut ring = SampleRing::new(1000);
        let nodes = (0..40).rev().map(|i| node(&format!("n{i:02}"), 2));
        ring.record(1_000, nodes, JobCounters::default());
        let sample = ring.since(None).next().unwrap();
        assert_eq!(sample.nodes.len(), MAX_NODES_PER_SAMPLE);
        assert_eq!(&*sample.nodes[0].node, "n00");
        assert_eq!(sample.queued_total, 80);
        assert_eq!(sample.running_total, 40);
    }

    #[test]
    fn rates_and_percentiles_come_from_counter_deltas_and_ended_jobs() {
        let mut ring = SampleRing::new(1000);
        let counters = |completed, failed, lost| JobCounters {
            completed,
            failed,
            lost,
        };
        ring.record(1_000, [], counters(10, 1, 0));
        for ms in 1..=100 {
            ring.job_ended(ms);
        }
        ring.record(3_000, [], counters(30, 5, 2));
        let samples: Vec<_> = ring.since(None).collect();
        assert_eq!(samples[0].completed_per_s, 0.0);
        assert_eq!(samples[0].sojourn_p50_ms, None);
        assert_eq!(samples[1].completed_per_s, 10.0);
        assert_eq!(samples[1].failed_per_s, 2.0);
        assert_eq!(samples[1].lost_per_s, 1.0);
        assert_eq!(samples[1].sojourn_p50_ms, Some(50));
        assert_eq!(samples[1].sojourn_p99_ms, Some(99));
        // The sojourns were spent on that sample.
        ring.record(4_000, [], counters(30, 5, 2));
        assert_eq!(ring.since(Some(3_000)).next().unwrap().sojourn_p50_ms, None);
    }

    #[test]
    fn the_timeline_names_joins_suspicions_deaths_and_restarts() {
        use Verdict::*;
        let mut timeline = Timeline::new();
        timeline.record(1, &change("b", None, Some(Alive), 7));
        timeline.record(2, &change("b", Some(Alive), Some(Suspect), 7));
        timeline.record(3, &change("b", Some(Suspect), Some(Dead), 7));
        timeline.record(4, &change("b", Some(Dead), Some(Alive), 9));
        timeline.record(5, &change("b", Some(Alive), Some(Suspect), 9));
        timeline.record(6, &change("b", Some(Suspect), Some(Alive), 9));
        timeline.record(7, &change("b", Some(Alive), Some(Left), 9));
        timeline.record(8, &change("b", Some(Left), None, 9));
        let kinds: Vec<_> = timeline.since(None).map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Joined,
                EventKind::Suspected,
                EventKind::Died,
                EventKind::Restarted,
                EventKind::Suspected,
                EventKind::Recovered,
                EventKind::Left,
                EventKind::Forgotten,
            ]
        );
        let restart = timeline.since(Some(3)).next().unwrap();
        assert_eq!((restart.at_ms, restart.incarnation), (4, 9));
        assert_eq!(timeline.since(Some(8)).count(), 0);
    }

    #[test]
    fn the_timeline_is_bounded_and_drops_the_oldest() {
        let mut timeline = Timeline::new();
        for t in 0..(MAX_EVENTS as u64 + 50) {
            timeline.record(t, &change("c", None, Some(Verdict::Alive), 1));
            timeline.record(t, &change("c", Some(Verdict::Alive), None, 1));
        }
        assert_eq!(timeline.len(), MAX_EVENTS);
        let first = timeline.since(None).next().unwrap().at_ms;
        let last = timeline.since(None).last().unwrap().at_ms;
        assert_eq!(last, MAX_EVENTS as u64 + 49);
        assert_eq!(first, last - (MAX_EVENTS as u64 / 2) + 1);
    }
}
