//! The figures read at scrape time from what already keeps them — the gossip core's counters
//! and load map, the executor's queue, the job store's finished outcomes — so that nothing is
//! counted twice.

use std::fmt;
use std::sync::Arc;

use hearsay_shared::Verdict;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use crate::gossip::sampler::WorkGauge;
use crate::gossip::sealing::{socket_counters, ReceiveErrorCounts};
use crate::gossip::SharedGossip;
use crate::jobs::store::JobStore;

/// The finished outcomes a store keeps, read at scrape time (which also forgets the expired).
#[derive(Debug)]
pub(super) struct RetainedOutcomes {
    pub(super) store: Arc<JobStore>,
}

impl Collector for RetainedOutcomes {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let retained = self.store.retained(tokio::time::Instant::now());
        let gauges: [(&str, &str, Option<Unit>, usize); 2] = [
            (
                "jobs_retained",
                "Finished jobs whose outcome this node keeps (bounded by --retain-jobs, --retain-bytes and --retain-ms).",
                None,
                retained.outcomes,
            ),
            (
                "jobs_retained",
                "Estimated memory of the finished outcomes this node keeps (bounded by --retain-bytes).",
                Some(Unit::Bytes),
                retained.bytes,
            ),
        ];
        for (name, help, unit, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            let metric =
                encoder.encode_descriptor(name, help, unit.as_ref(), gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

/// The figures read at scrape time.
#[derive(Debug)]
pub(super) struct ScrapeTime {
    pub(super) gossip: SharedGossip,
    pub(super) work: Arc<dyn WorkGauge>,
    pub(super) slots: u32,
}

/// One point-in-time read of the gossip core, taken under its lock and encoded after.
struct GossipSnapshot {
    stats: hearsay_shared::GossipStats,
    rounds: u64,
    verdicts: [usize; 4],
    entries: usize,
}

impl Collector for ScrapeTime {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let g = self.gossip.with(|g| GossipSnapshot {
            stats: g.stats(),
            rounds: g.round(),
            verdicts: g.map().verdict_counts(),
            entries: g.map().len(),
        });
        let receive_errors = ReceiveErrorCounts::of(&g.stats, self.gossip.receive_errors());
        let stats = socket_counters(g.stats, self.gossip.receive_errors());
        let counters: [(&str, &str, Option<Unit>, u64); 14] = [
            ("gossip_rounds", "Gossip rounds run.", None, g.rounds),
            (
                "gossip_datagrams_sent",
                "Gossip datagrams sent.",
                None,
                g.stats.datagrams_sent,
            ),
            (
                "gossip_sent",
                "Bytes of gossip datagrams sent.",
                Some(Unit::Bytes),
                g.stats.bytes_sent,
            ),
            (
                "gossip_datagrams_received",
                "Gossip datagrams received, whether or not they decoded or opened.",
                None,
                stats.datagrams_received,
            ),
            (
                "gossip_received",
                "Bytes of gossip datagrams received.",
                Some(Unit::Bytes),
                g.stats.bytes_received,
            ),
            (
                "gossip_reports_merged",
                "Load reports received that were newer than the map's.",
                None,
                g.stats.reports_merged,
            ),
            (
                "gossip_refutations",
                "Times this node moved to a higher incarnation to refute a newer report of itself.",
                None,
                g.stats.refutations,
            ),
            (
                "gossip_suspicions",
                "Times this node began to suspect a peer (alive to suspect).",
                None,
                g.stats.suspicions,
            ),
            (
                "gossip_deaths",
                "Times this node declared a peer dead.",
                None,
                g.stats.deaths,
            ),
            (
                "gossip_suspect_probes",
                "Digests sent straight to a suspect so that it can refute the suspicion.",
                None,
                g.stats.suspect_probes,
            ),
            (
                "gossip_suspicions_refuted",
                "Suspicions cleared by a newer report of the suspect (suspect to alive).",
                None,
                g.stats.suspicions_refuted,
            ),
            (
                "gossip_map_evictions",
                "Entries dropped from a full load map to make room for a new node.",
                None,
                g.stats.map_evictions,
            ),
            (
                "gossip_map_refusals",
                "Reports of nodes new to a load map full of live nodes, not taken in.",
                None,
                g.stats.map_refusals,
            ),
            (
                "gossip_implausible_reports",
                "Load reports and digest entries refused because no honest node could have reached their version yet.",
                None,
                g.stats.implausible_reports,
            ),
        ];
        for (name, help, unit, value) in counters {
            let counter = ConstCounter::new(value);
            let metric =
                encoder.encode_descriptor(name, help, unit.as_ref(), counter.metric_type())?;
            counter.encode(metric)?;
        }

        // Received datagrams dropped, by reason: `decode` by the core, the others by the seal
        // before the core saw them.
        let mut metric = encoder.encode_descriptor(
            "gossip_receive_errors",
            "Gossip datagrams received and dropped, by reason (decode, authentication, unknown_key, replay, unsealed, sealed, malformed).",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (reason, count) in receive_errors.by_reason() {
            ConstCounter::new(count).encode(metric.encode_family(&[("reason", reason)])?)?;
        }
        let failed = ConstCounter::new(g.stats.encode_errors);
        let metric = encoder.encode_descriptor(
            "gossip_encode_errors",
            "Gossip datagrams that could not be encoded within the budget (none with a valid configuration).",
            None,
            failed.metric_type(),
        )?;
        failed.encode(metric)?;

        let mut metric = encoder.encode_descriptor(
            "nodes",
            "Nodes in this node's load map, by this node's verdict (alive, suspect, dead, left).",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        let verdicts = [
            Verdict::Alive,
            Verdict::Suspect,
            Verdict::Dead,
            Verdict::Left,
        ];
        for (verdict, count) in verdicts.into_iter().zip(g.verdicts) {
            let labels = [("state", verdict.as_str())];
            ConstGauge::new(count as i64).encode(metric.encode_family(&labels)?)?;
        }

        let work = self.work.work();
        let gauges: [(&str, &str, i64); 4] = [
            (
                "load_map_entries",
                "Entries in this node's load map, this node and dead nodes in their grace period included.",
                g.entries as i64,
            ),
            ("jobs_queued", "Jobs waiting here for a slot.", i64::from(work.queued)),
            ("jobs_running", "Jobs running here.", i64::from(work.running)),
            ("job_slots", "Jobs this node runs at once.", i64::from(self.slots)),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
