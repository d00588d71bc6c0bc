//! Metrics: what the node counts as it works, and `GET /metrics` in the Prometheus text format
//! (prometheus-client).
//!
//! Two kinds of figures:
//! - events the worker records as they happen — jobs submitted, placed, forwarded, received,
//!   finished, refused; queueing and run times — in [`Metrics`], a cheap handle cloned into the
//!   dispatcher and the executor;
//! - figures read at scrape time from what already keeps them — the gossip core's counters and
//!   load map, the executor's queue — by a [`Collector`], so that nothing is counted twice.
//!
//! Every name starts with `hearsay_`, carries its unit (`_seconds`, `_bytes`), and counters end in
//! `_total`. Label values come from small fixed sets (states, outcomes, reasons, policies), so the
//! number of series does not grow with the cluster or the traffic.
//!
//! `GET /metrics` answers in the classic Prometheus text format (version 0.0.4), which
//! `promtool check metrics` reads; a scraper that asks for OpenMetrics (`Accept:
//! application/openmetrics-text`, as Prometheus does) gets OpenMetrics.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hearsay_scheduler::Policy;
use hearsay_shared::{JobStatus, NodeId, Verdict};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::gossip::sampler::WorkGauge;
use crate::gossip::sealing::ReceiveErrorCounts;
use crate::gossip::SharedGossip;
use crate::job_store::JobStore;

/// The prefix of every metric name.
pub const PREFIX: &str = "hearsay";

/// `Content-Type` of the Prometheus text format, version 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of OpenMetrics text, version 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the job time histograms, in seconds: from a millisecond (an echo) to five
/// minutes (a long batch job), about three buckets per decade.
const JOB_TIME_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// The job outcomes counted, as `outcome` label values.
const OUTCOMES: [JobStatus; 4] = [
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::TimedOut,
    JobStatus::Lost,
];

/// Why a job was refused with `503`, as `reason` label values: the error codes of the answers.
pub const REJECT_REASONS: [&str; 3] = ["no_capacity", "queue_full", "leaving"];

/// Why an HTTP request was refused with a `4xx`, as `reason` label values (see
/// [`refusal_reason`]); `malformed` is a request hyper could not parse (answered by hyper
/// itself with a bare 400 or 431, the connection closed).
pub const REFUSAL_REASONS: [&str; 13] = [
    "invalid",
    "unauthorized",
    "cross_origin",
    "not_found",
    "method_not_allowed",
    "body_too_large",
    "unsupported_media_type",
    "unknown_host",
    "key_reused",
    "too_many_waits",
    "body_timeout",
    "malformed",
    "other",
];

/// Why an HTTP connection was refused for capacity, as `reason` label values: `total`
/// (`--max-connections`) and `per_client` (`--max-connections-per-client`) were answered `503`;
/// `unanswered` ones were closed at once, as many refusals were being answered already.
pub const CONNECTION_REFUSAL_REASONS: [&str; 3] = ["total", "per_client", "unanswered"];

/// The `reason` a `4xx` status is counted under; `None` for any other status.
pub fn refusal_reason(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "invalid",
        401 => "unauthorized",
        403 => "cross_origin",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "body_timeout",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        421 => "unknown_host",
        422 => "key_reused",
        429 => "too_many_waits",
        other if (400..500).contains(&other) => "other",
        _ => return None,
    })
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    policy: &'static str,
    decision: &'static str,
}

/// What a placement decided, for [`Metrics::placement_decided`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run here.
    Local,
    /// Offer it to a peer.
    Forward,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Local => "local",
            Decision::Forward => "forward",
        }
    }
}

/// Why an offer to a peer did not place the job, for [`Metrics::forward_failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardFailure {
    /// The peer answered but did not take it.
    Refused,
    /// The peer did not answer.
    Unreachable,
}

/// The job counters and times this node records. Cloning gives another handle to the same
/// figures; every method is a few atomic operations (the per-peer forward count, a short lock).
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Recorders>,
}

#[derive(Debug)]
struct Recorders {
    submitted: Counter,
    placed_local: Counter,
    forwarded: Counter,
    forward_failures: Family<ReasonLabel, Counter>,
    received_forwarded: Counter,
    completed: Family<OutcomeLabel, Counter>,
    rejected: Family<ReasonLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    connections_refused: Family<ReasonLabel, Counter>,
    decisions: Family<DecisionLabels, Counter>,
    queue_wait: Histogram,
    run_time: Histogram,
    open_streams: Gauge,
    /// Jobs forwarded to each peer and taken by it, for the cluster stream (the dashboard's
    /// jobs per second to each peer). Kept out of Prometheus: a label per peer would multiply
    /// the series by the cluster's size on every node. Ids are stable, so this holds one entry
    /// per peer ever forwarded to.
    forwards_by_peer: Mutex<BTreeMap<NodeId, u64>>,
}

/// How many jobs this node has placed, as the cluster stream shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlacementCounts {
    /// Jobs submitted here and run here.
    pub local: u64,
    /// Jobs submitted here and taken by each peer, by peer id.
    pub forwarded: BTreeMap<NodeId, u64>,
    /// Jobs a peer forwarded here (and this node took).
    pub received: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Figures all at zero, with every known label value present (so that a series exists
    /// before its first event, and rates over it are defined).
    pub fn new() -> Self {
        let recorders = Recorders {
            submitted: Counter::default(),
            placed_local: Counter::default(),
            forwarded: Counter::default(),
            forward_failures: Family::default(),
            received_forwarded: Counter::default(),
            completed: Family::default(),
            rejected: Family::default(),
            refused: Family::default(),
            connections_refused: Family::default(),
            decisions: Family::default(),
            queue_wait: Histogram::new(JOB_TIME_BUCKETS),
            run_time: Histogram::new(JOB_TIME_BUCKETS),
            open_streams: Gauge::default(),
            forwards_by_peer: Mutex::new(BTreeMap::new()),
        };
        for outcome in OUTCOMES {
            recorders.completed.get_or_create_owned(&OutcomeLabel {
                outcome: outcome.as_str(),
            });
        }
        for reason in REJECT_REASONS {
            recorders
                .rejected
                .get_or_create_owned(&ReasonLabel { reason });
        }
        for reason in REFUSAL_REASONS {
            recorders
                .refused
                .get_or_create_owned(&ReasonLabel { reason });
        }
        for reason in CONNECTION_REFUSAL_REASONS {
            recorders
                .connections_refused
                .get_or_create_owned(&ReasonLabel { reason });
        }
        for reason in ["refused", "unreachable"] {
            recorders
                .forward_failures
                .get_or_create_owned(&ReasonLabel { reason });
        }
        Metrics {
            inner: Arc::new(recorders),
        }
    }

    /// A client submitted a valid job here (this node is its entry node).
    pub fn job_submitted(&self) {
        self.inner.submitted.inc();
    }

    /// Makes the placement decision series of `policy` exist (at zero) before its first job.
    pub fn expect_policy(&self, policy: Policy) {
        for decision in [Decision::Local, Decision::Forward] {
            self.inner.decisions.get_or_create_owned(&DecisionLabels {
                policy: policy.as_str(),
                decision: decision.as_str(),
            });
        }
    }

    /// The placer decided, under `policy`. Counted for every decision, including those made
    /// again after a peer refused.
    pub fn placement_decided(&self, policy: Policy, decision: Decision) {
        self.inner
            .decisions
            .get_or_create(&DecisionLabels {
                policy: policy.as_str(),
                decision: decision.as_str(),
            })
            .inc();
    }

    /// A job submitted here was taken by this node's executor.
    pub fn placed_locally(&self) {
        self.inner.placed_local.inc();
    }

    /// A job submitted here was taken by `peer`.
    pub fn forwarded_to(&self, peer: &NodeId) {
        self.inner.forwarded.inc();
        let mut by_peer = self
            .inner
            .forwards_by_peer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *by_peer.entry(peer.clone()).or_insert(0) += 1;
    }

    /// An offer to a peer did not place the job (it is placed again).
    pub fn forward_failed(&self, failure: ForwardFailure) {
        let reason = match failure {
            ForwardFailure::Refused => "refused",
            ForwardFailure::Unreachable => "unreachable",
        };
        self.inner
            .forward_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// This node took a job that a peer forwarded.
    pub fn received_forwarded(&self) {
        self.inner.received_forwarded.inc();
    }

    /// A job was answered `503`; `reason` is the answer's error code (one of
    /// [`REJECT_REASONS`]; any other is counted as `other`).
    pub fn rejected(&self, reason: &str) {
        let reason = REJECT_REASONS
            .into_iter()
            .find(|r| *r == reason)
            .unwrap_or("other");
        self.inner
            .rejected
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// An HTTP request was refused with a `4xx`; `reason` is one of [`REFUSAL_REASONS`] (any
    /// other is counted as `other`).
    pub fn request_refused(&self, reason: &str) {
        let reason = REFUSAL_REASONS
            .into_iter()
            .find(|r| *r == reason)
            .unwrap_or("other");
        self.inner
            .refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// An HTTP connection was refused for capacity; `reason` is one of
    /// [`CONNECTION_REFUSAL_REASONS`].
    pub fn connection_refused(&self, reason: &'static str) {
        self.inner
            .connections_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A job left the queue for a slot after waiting `waited`.
    pub fn job_started(&self, waited: Duration) {
        self.inner.queue_wait.observe(waited.as_secs_f64());
    }

    /// A job run here ended with `status` (terminal) after running for `ran` (`None`: it never
    /// ran, e.g. it was still queued when the node left).
    pub fn job_ended(&self, status: JobStatus, ran: Option<Duration>) {
        if let Some(ran) = ran {
            self.inner.run_time.observe(ran.as_secs_f64());
        }
        self.inner
            .completed
            .get_or_create(&OutcomeLabel {
                outcome: status.as_str(),
            })
            .inc();
    }

    /// A cluster stream opened (`+1`) or closed (`-1`).
    pub(crate) fn streams_changed(&self, by: i64) {
        self.inner.open_streams.inc_by(by);
    }

    /// Jobs placed so far, for the cluster stream.
    pub fn placements(&self) -> PlacementCounts {
        PlacementCounts {
            local: self.inner.placed_local.get(),
            forwarded: self
                .inner
                .forwards_by_peer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            received: self.inner.received_forwarded.get(),
        }
    }

    /// The registry that `GET /metrics` encodes: these figures, and those read at scrape time
    /// from the gossip core and the executor.
    pub fn registry(
        &self,
        gossip: SharedGossip,
        work: Arc<dyn WorkGauge>,
        slots: u32,
    ) -> Exposition {
        let r = &self.inner;
        let mut registry = Registry::with_prefix(PREFIX);
        // Help texts get a full stop from the registry.
        registry.register(
            "jobs_submitted",
            "Jobs submitted to this node by clients (valid ones, before placement)",
            r.submitted.clone(),
        );
        registry.register(
            "jobs_placed_local",
            "Jobs submitted here and run here",
            r.placed_local.clone(),
        );
        registry.register(
            "jobs_forwarded",
            "Jobs submitted here and taken by a peer",
            r.forwarded.clone(),
        );
        registry.register(
            "forward_failures",
            "Offers of a job to a peer that did not place it (the job was placed again), by reason",
            r.forward_failures.clone(),
        );
        registry.register(
            "jobs_received_forwarded",
            "Jobs forwarded here by a peer and taken",
            r.received_forwarded.clone(),
        );
        registry.register(
            "jobs_completed",
            "Jobs run by this node that ended, by outcome",
            r.completed.clone(),
        );
        registry.register(
            "jobs_rejected",
            "Job submissions answered 503, by reason",
            r.rejected.clone(),
        );
        registry.register(
            "http_requests_refused",
            "HTTP requests answered with a 4xx (or that hyper could not parse), by reason",
            r.refused.clone(),
        );
        registry.register(
            "http_connections_refused",
            "HTTP connections refused for capacity (answered 503, or closed unanswered), by reason",
            r.connections_refused.clone(),
        );
        registry.register(
            "placement_decisions",
            "Placement decisions by policy and decision (local or forward), retries included",
            r.decisions.clone(),
        );
        registry.register_with_unit(
            "job_queue_wait",
            "Time jobs run here waited in the queue for a slot",
            Unit::Seconds,
            r.queue_wait.clone(),
        );
        registry.register_with_unit(
            "job_run",
            "Time jobs run here spent in a slot",
            Unit::Seconds,
            r.run_time.clone(),
        );
        registry.register(
            "cluster_streams",
            "Open GET /v1/cluster/stream connections",
            r.open_streams.clone(),
        );
        registry.register_collector(Box::new(ScrapeTime {
            gossip,
            work,
            slots,
        }));
        Exposition { registry }
    }
}

/// The registry behind `GET /metrics`.
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// Adds the counters of jobs moved between nodes, read at scrape time.
    pub fn with_moves(mut self, stats: crate::move_metrics::StatsSource) -> Self {
        self.registry
            .register_collector(Box::new(crate::move_metrics::MoveCounters(stats)));
        self
    }

    /// Adds the gauges of what `store` keeps of finished jobs, read at scrape time.
    pub fn with_store(mut self, store: Arc<JobStore>) -> Self {
        self.registry
            .register_collector(Box::new(RetainedOutcomes { store }));
        self
    }
}

/// The finished outcomes a store keeps, read at scrape time (which also forgets the expired).
#[derive(Debug)]
struct RetainedOutcomes {
    store: Arc<JobStore>,
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

impl fmt::Debug for Exposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exposition").finish_non_exhaustive()
    }
}

/// Which text format a scraper gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text, version 0.0.4.
    Text,
    /// OpenMetrics text, version 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The format for an `Accept` header: OpenMetrics if it is asked for, else the classic text.
    pub fn for_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

impl Exposition {
    /// Every metric, encoded now.
    pub fn encode(&self, format: Format) -> String {
        let mut text = String::new();
        let encoded = match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &self.registry)
            }
        };
        // Writing to a String cannot fail, and every name and label here is valid.
        debug_assert!(encoded.is_ok(), "metrics encoding failed");
        text
    }
}

/// The figures read at scrape time.
#[derive(Debug)]
struct ScrapeTime {
    gossip: SharedGossip,
    work: Arc<dyn WorkGauge>,
    slots: u32,
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
        let stats = crate::view::socket_counters(g.stats, self.gossip.receive_errors());
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use hearsay_shared::{Gossip, GossipConfig, LoadVector};

    use super::*;
    use crate::gossip::sampler::Work;

    #[derive(Debug)]
    struct Fixed(Work);
    impl WorkGauge for Fixed {
        fn work(&self) -> Work {
            self.0
        }
    }

    fn exposition(metrics: &Metrics) -> Exposition {
        let node = NodeId::new("n").unwrap();
        let config = GossipConfig::new(
            node,
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let gossip = Gossip::new(config, 1, LoadVector::idle(2), vec![], Instant::now()).unwrap();
        let work = Fixed(Work {
            queued: 3,
            running: 2,
        });
        metrics.registry(SharedGossip::new(gossip), Arc::new(work), 2)
    }

    /// The sample lines of a text exposition, as `name{labels} value` → value.
    fn samples(text: &str) -> BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').expect("a value");
                (series.to_owned(), value.parse().expect("a number"))
            })
            .collect()
    }

    #[test]
    fn the_outcomes_a_store_keeps_are_gauges() {
        use crate::job_store::{outcome_bytes, Retention};
        use hearsay_shared::{JobId, JobOutcome};

        let store = Arc::new(JobStore::new(Retention::default()));
        let exposition = exposition(&Metrics::new()).with_store(store.clone());
        let before = samples(&exposition.encode(Format::Text));
        assert_eq!(before["hearsay_jobs_retained"], 0.0);
        assert_eq!(before["hearsay_jobs_retained_bytes"], 0.0);

        let outcome = |id, status| {
            let mut outcome = JobOutcome::new(JobId(id), "echo", status, NodeId::new("n").unwrap());
            outcome.output = Some(serde_json::Value::String("x".repeat(1000)));
            outcome
        };
        let now = tokio::time::Instant::now();
        store.insert(now, outcome(1, JobStatus::Succeeded)).unwrap();
        store.insert(now, outcome(2, JobStatus::Running)).unwrap();
        let after = samples(&exposition.encode(Format::Text));
        assert_eq!(after["hearsay_jobs_retained"], 1.0, "finished ones only");
        assert_eq!(
            after["hearsay_jobs_retained_bytes"],
            outcome_bytes(&outcome(1, JobStatus::Succeeded)) as f64
        );
        let text = exposition.encode(Format::OpenMetrics);
        assert!(
            text.contains("# TYPE hearsay_jobs_retained_bytes gauge\n"),
            "{text}"
        );
    }

    #[test]
    fn counters_follow_the_events_and_carry_their_labels() {
        let metrics = Metrics::new();
        let exposition = exposition(&metrics);
        let before = samples(&exposition.encode(Format::Text));
        assert_eq!(before["hearsay_jobs_submitted_total"], 0.0);
        assert_eq!(
            before["hearsay_jobs_completed_total{outcome=\"timed_out\"}"], 0.0,
            "known label values exist before their first event"
        );
        assert_eq!(before["hearsay_jobs_queued"], 3.0);
        assert_eq!(before["hearsay_jobs_running"], 2.0);
        assert_eq!(before["hearsay_job_slots"], 2.0);
        assert_eq!(before["hearsay_nodes{state=\"alive\"}"], 1.0);
        assert_eq!(before["hearsay_nodes{state=\"dead\"}"], 0.0);
        assert_eq!(before["hearsay_load_map_entries"], 1.0);
        assert_eq!(
            before["hearsay_gossip_receive_errors_total{reason=\"decode\"}"],
            0.0
        );
        assert_eq!(
            before["hearsay_gossip_receive_errors_total{reason=\"unknown_key\"}"], 0.0,
            "every reason exists before its first drop"
        );

        metrics.job_submitted();
        metrics.placement_decided(Policy::P2c, Decision::Forward);
        metrics.forward_failed(ForwardFailure::Refused);
        metrics.placement_decided(Policy::P2c, Decision::Local);
        metrics.placed_locally();
        metrics.job_started(Duration::from_millis(20));
        metrics.job_ended(JobStatus::Succeeded, Some(Duration::from_millis(1500)));
        metrics.rejected("queue_full");
        metrics.rejected("something new");
        let peer = NodeId::new("peer").unwrap();
        metrics.forwarded_to(&peer);
        metrics.forwarded_to(&peer);

        let after = samples(&exposition.encode(Format::Text));
        assert_eq!(after["hearsay_jobs_submitted_total"], 1.0);
        assert_eq!(after["hearsay_jobs_placed_local_total"], 1.0);
        assert_eq!(after["hearsay_jobs_forwarded_total"], 2.0);
        assert_eq!(
            after["hearsay_forward_failures_total{reason=\"refused\"}"],
            1.0
        );
        assert_eq!(
            after["hearsay_placement_decisions_total{policy=\"p2c\",decision=\"local\"}"],
            1.0
        );
        assert_eq!(
            after["hearsay_jobs_completed_total{outcome=\"succeeded\"}"],
            1.0
        );
        assert_eq!(
            after["hearsay_jobs_rejected_total{reason=\"queue_full\"}"],
            1.0
        );
        assert_eq!(after["hearsay_jobs_rejected_total{reason=\"other\"}"], 1.0);
        assert_eq!(after["hearsay_job_queue_wait_seconds_count"], 1.0);
        assert_eq!(
            after["hearsay_job_queue_wait_seconds_bucket{le=\"0.025\"}"],
            1.0
        );
        assert_eq!(
            after["hearsay_job_queue_wait_seconds_bucket{le=\"0.01\"}"],
            0.0
        );
        assert_eq!(after["hearsay_job_run_seconds_sum"], 1.5);
        assert_eq!(after["hearsay_job_run_seconds_bucket{le=\"+Inf\"}"], 1.0);

        let placements = metrics.placements();
        assert_eq!(placements.local, 1);
        assert_eq!(placements.forwarded[&peer], 2);
    }

    #[test]
    fn text_format_names_counters_with_total_and_types_every_family() {
        let text = exposition(&Metrics::new()).encode(Format::Text);
        assert!(
            text.contains("# TYPE hearsay_jobs_submitted_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE hearsay_gossip_sent_bytes_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE hearsay_job_run_seconds histogram\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE hearsay_nodes gauge\n"), "{text}");
        assert!(!text.contains("# EOF"), "0.0.4 has no EOF marker");
        // Every sample belongs to a family declared just before it.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_owned();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&family), "{line} outside {family}");
            }
        }
    }

    #[test]
    fn openmetrics_is_served_to_who_asks_for_it() {
        assert_eq!(Format::for_accept(None), Format::Text);
        assert_eq!(Format::for_accept(Some("text/plain")), Format::Text);
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::for_accept(Some(prometheus)), Format::OpenMetrics);
        let text = exposition(&Metrics::new()).encode(Format::OpenMetrics);
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert!(
            text.contains("# UNIT hearsay_job_run_seconds seconds\n"),
            "{text}"
        );
    }
}
