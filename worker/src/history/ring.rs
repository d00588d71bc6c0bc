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
//! The per-node series are the cluster's: every node's latest gossiped report. The load vector
//! carries each node's counts of jobs ended (completed, failed, lost: [`JobTally`]), so the
//! `cluster_*_per_s` series are the whole cluster's throughput, summed from the growth of every
//! node's counts between two samples; no node is asked. A node that joined or restarted since
//! the sample before counts from its next report on (what it ended before is not news).
//! Gossip brings a report within a few rounds, so these rates lag the cluster by that much and
//! move in steps of one report; the dashboard averages them over a few seconds.
//!
//! Every report also summarises the sojourns of the jobs that ended on its node in the last
//! 10 s (count, p50, p99: [`SojournSummary`]). Percentiles do not add up, so the cluster's are
//! a bound and an estimate: `cluster_sojourn_p99_ms` is the largest node's p99, which no more
//! than 1% of all those jobs exceed; `cluster_sojourn_p50_ms` is the job-weighted median of the
//! nodes' medians.
//!
//! The `sojourn_p50_ms`/`sojourn_p99_ms` percentiles and the `completed_per_s`, `failed_per_s`
//! and `lost_per_s` series are this node's own, exact: the jobs that ended here in the interval.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use hearsay_shared::load::nearest_rank;
use hearsay_shared::{JobTally, SojournSummary, Verdict, VerdictChange};
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
    /// The incarnation of its report (counts of another incarnation are not comparable).
    #[serde(skip)]
    pub incarnation: u64,
    /// Its counts of jobs ended, as of its report.
    #[serde(skip)]
    pub ended: JobTally,
    /// The sojourns of the jobs that ended on it lately, as of its report.
    #[serde(skip)]
    pub sojourn: SojournSummary,
}

fn as_str<S: serde::Serializer>(text: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(text)
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
    /// Jobs completed in the whole cluster per second since the sample before, from the
    /// gossiped counts (see the module's documentation).
    pub cluster_completed_per_s: f64,
    /// Jobs failed in the whole cluster per second.
    pub cluster_failed_per_s: f64,
    /// Jobs settled lost in the whole cluster per second.
    pub cluster_lost_per_s: f64,
    /// At most this: the 99th percentile sojourn (ms) of the jobs that ended anywhere in the
    /// cluster in the nodes' last [`SojournSummary::WINDOW_MS`] — the largest of the nodes'
    /// gossiped p99s, which bounds the p99 of all their jobs together. `None` when no node
    /// ended a job in its window.
    pub cluster_sojourn_p99_ms: Option<u64>,
    /// The median of those jobs, estimated: the median of the nodes' gossiped medians, each
    /// counted once per job it summarises (the true median lies between the smallest and the
    /// largest of them).
    pub cluster_sojourn_p50_ms: Option<u64>,
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
    last: Option<(u64, JobTally)>,
    /// Every node's incarnation and counts at the last sample (all nodes, not only those
    /// listed; bounded by the load map, whose nodes they are).
    last_nodes: HashMap<Arc<str>, (u64, JobTally)>,
}

impl SampleRing {
    /// A ring that reaches back [`SPAN_MS`] at one sample per `interval_ms`.
    pub fn new(interval_ms: u64) -> Self {
        let capacity = (SPAN_MS / interval_ms.max(1)).clamp(1, MAX_SAMPLES as u64) as usize;
        SampleRing {
            capacity,
            samples: VecDeque::with_capacity(capacity.min(64)),
            last: None,
            last_nodes: HashMap::new(),
        }
    }

    /// The most samples this ring keeps.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records a sample at `now_ms`: every node's latest report, in any order, this node's own
    /// counts, and the sojourns (ms, any order) of the jobs that ended here since the sample
    /// before. A sample whose time is not after the last one's is ignored (the clock went
    /// back), so the ring stays in time order.
    pub fn record<I>(&mut self, now_ms: u64, nodes: I, counters: JobTally, sojourns: &mut [u32])
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
        let cluster = self.cluster_growth(&nodes);
        let (cluster_sojourn_p50_ms, cluster_sojourn_p99_ms) = cluster_sojourns(&nodes);
        nodes.truncate(MAX_NODES_PER_SAMPLE);
        // Share the ids with the sample before, so that the ring holds one copy of each.
        if let Some(before) = self.samples.back() {
            for n in &mut nodes {
                if let Ok(at) = before.nodes.binary_search_by(|b| b.node.cmp(&n.node)) {
                    n.node = before.nodes[at].node.clone();
                }
            }
        }
        let secs = self
            .last
            .map_or(0.0, |(then, _)| (now_ms - then) as f64 / 1000.0);
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let own = self
            .last
            .map_or(JobTally::default(), |(_, before)| counters.since(before));
        self.last = Some((now_ms, counters));
        sojourns.sort_unstable();
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at_ms: now_ms,
            nodes,
            running_total,
            queued_total,
            cluster_completed_per_s: per_s(cluster.completed),
            cluster_failed_per_s: per_s(cluster.failed),
            cluster_lost_per_s: per_s(cluster.lost),
            cluster_sojourn_p99_ms,
            cluster_sojourn_p50_ms,
            completed_per_s: per_s(own.completed),
            failed_per_s: per_s(own.failed),
            lost_per_s: per_s(own.lost),
            sojourn_p50_ms: nearest_rank(sojourns, 50).map(u64::from),
            sojourn_p99_ms: nearest_rank(sojourns, 99).map(u64::from),
        });
    }

    /// How much every node's counts grew since the last sample, summed; and the counts kept
    /// for the next. A node new since then, or of another incarnation, adds nothing.
    fn cluster_growth(&mut self, nodes: &[NodeSample]) -> JobTally {
        let mut sum = JobTally::default();
        let mut now = HashMap::with_capacity(nodes.len());
        for n in nodes {
            if let Some(&(incarnation, before)) = self.last_nodes.get(&n.node) {
                if incarnation == n.incarnation {
                    sum = sum + n.ended.since(before);
                }
            }
            now.insert(n.node.clone(), (n.incarnation, n.ended));
        }
        self.last_nodes = now;
        sum
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

/// The cluster's sojourn median (estimated) and p99 (bounded) from the nodes' summaries: see
/// [`Sample::cluster_sojourn_p50_ms`] and [`Sample::cluster_sojourn_p99_ms`].
fn cluster_sojourns(nodes: &[NodeSample]) -> (Option<u64>, Option<u64>) {
    let summaries = nodes.iter().map(|n| n.sojourn).filter(|s| s.jobs > 0);
    let p99 = summaries.clone().map(|s| u64::from(s.p99_ms)).max();
    let mut medians: Vec<(u32, u64)> = summaries.map(|s| (s.p50_ms, u64::from(s.jobs))).collect();
    medians.sort_unstable();
    let jobs: u64 = medians.iter().map(|&(_, n)| n).sum();
    let mut seen = 0;
    let p50 = medians.iter().find_map(|&(ms, n)| {
        seen += n;
        (2 * seen >= jobs).then_some(u64::from(ms))
    });
    (p50, p99)
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
            incarnation: 1,
            ended: JobTally::default(),
            sojourn: SojournSummary::default(),
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
            ring.record(i * 200, [node("a", 1)], JobTally::default(), &mut []);
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
        ring.record(5_000, [node("a", 1)], JobTally::default(), &mut []);
        ring.record(4_000, [node("a", 2)], JobTally::default(), &mut []);
        ring.record(5_000, [node("a", 3)], JobTally::default(), &mut []);
        ring.record(6_000, [node("a", 4)], JobTally::default(), &mut []);
        let times: Vec<_> = ring.since(None).map(|s| s.at_ms).collect();
        assert_eq!(times, [5_000, 6_000]);
    }

    #[test]
    fn since_returns_only_later_samples() {
        let mut ring = SampleRing::new(1000);
        for t in 1..=5 {
            ring.record(t * 1000, [node("a", 0)], JobTally::default(), &mut []);
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
        ring.record(1_000, nodes, JobTally::default(), &mut []);
        let sample = ring.since(None).next().unwrap();
        assert_eq!(sample.nodes.len(), MAX_NODES_PER_SAMPLE);
        assert_eq!(&*sample.nodes[0].node, "n00");
        assert_eq!(sample.queued_total, 80);
        assert_eq!(sample.running_total, 40);
    }

    #[test]
    fn rates_and_percentiles_come_from_counter_deltas_and_ended_jobs() {
        let mut ring = SampleRing::new(1000);
        let counters = |completed, failed, lost| JobTally {
            completed,
            failed,
            lost,
        };
        ring.record(1_000, [], counters(10, 1, 0), &mut []);
        ring.record(
            3_000,
            [],
            counters(30, 5, 2),
            &mut (1..=100).collect::<Vec<u32>>(),
        );
        let samples: Vec<_> = ring.since(None).collect();
        assert_eq!(samples[0].completed_per_s, 0.0);
        assert_eq!(samples[0].sojourn_p50_ms, None);
        assert_eq!(samples[1].completed_per_s, 10.0);
        assert_eq!(samples[1].failed_per_s, 2.0);
        assert_eq!(samples[1].lost_per_s, 1.0);
        assert_eq!(samples[1].sojourn_p50_ms, Some(50));
        assert_eq!(samples[1].sojourn_p99_ms, Some(99));
        // The sojourns were spent on that sample.
        ring.record(4_000, [], counters(30, 5, 2), &mut []);
        assert_eq!(ring.since(Some(3_000)).next().unwrap().sojourn_p50_ms, None);
    }

    #[test]
    fn cluster_rates_sum_every_nodes_gossiped_counts_within_an_incarnation() {
        let reported = |id: &str, incarnation, completed, failed| NodeSample {
            incarnation,
            ended: JobTally {
                completed,
                failed,
                lost: 0,
            },
            ..node(id, 0)
        };
        let mut ring = SampleRing::new(1000);
        ring.record(
            1_000,
            [reported("a", 1, 100, 0), reported("b", 1, 50, 1)],
            JobTally::default(),
            &mut [],
        );
        // a ended 20 jobs, b 10 and a failure; c joined with counts of its own, which are old
        // news. Over 2 s: 15 completed/s, 0.5 failed/s.
        ring.record(
            3_000,
            [
                reported("a", 1, 120, 0),
                reported("b", 1, 60, 2),
                reported("c", 1, 500, 5),
            ],
            JobTally::default(),
            &mut [],
        );
        // b restarted (a new incarnation counting from 0): its counts are not compared with
        // the old ones; a and c grew by 4 and 6 in 1 s.
        ring.record(
            4_000,
            [
                reported("a", 1, 124, 0),
                reported("b", 2, 3, 0),
                reported("c", 1, 506, 5),
            ],
            JobTally::default(),
            &mut [],
        );
        let rates: Vec<_> = ring
            .since(None)
            .map(|s| (s.cluster_completed_per_s, s.cluster_failed_per_s))
            .collect();
        assert_eq!(rates, [(0.0, 0.0), (15.0, 0.5), (10.0, 0.0)]);
    }

    #[test]
    fn the_cluster_sojourn_p99_is_the_largest_nodes_and_its_median_weighs_jobs() {
        let summarised = |id: &str, jobs, p50_ms, p99_ms| NodeSample {
            sojourn: SojournSummary {
                jobs,
                p50_ms,
                p99_ms,
            },
            ..node(id, 0)
        };
        let mut ring = SampleRing::new(1000);
        ring.record(1_000, [node("a", 0)], JobTally::default(), &mut []);
        // b ended 30 jobs around 100 ms, c 10 around 900 ms, d none (its figures mean nothing).
        ring.record(
            2_000,
            [
                summarised("b", 30, 100, 400),
                summarised("c", 10, 900, 1_500),
                summarised("d", 0, 0, 99_999),
            ],
            JobTally::default(),
            &mut [],
        );
        let figures: Vec<_> = ring
            .since(None)
            .map(|s| (s.cluster_sojourn_p50_ms, s.cluster_sojourn_p99_ms))
            .collect();
        assert_eq!(figures, [(None, None), (Some(100), Some(1_500))]);
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
