//! The events the worker records as they happen — jobs submitted, placed, forwarded, received,
//! finished, refused; queueing and run times — in [`Metrics`], a cheap handle cloned into the
//! dispatcher and the executor.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hearsay_scheduler::Policy;
use hearsay_shared::{JobStatus, NodeId, SojournSummary};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::exposition::{Exposition, PREFIX};
use super::scrape::ScrapeTime;
use crate::gossip::sampler::WorkGauge;
use crate::gossip::SharedGossip;

/// Upper bounds of the job time histograms, in seconds: from a millisecond (an echo) to five
/// minutes (a long batch job), about three buckets per decade.
const JOB_TIME_BUCKETS: [f64; 17] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// The job outcomes counted, as `outcome` label values.
const OUTCOMES: [JobStatus; 5] = [
    JobStatus::Succeeded,
    JobStatus::Failed,
    JobStatus::TimedOut,
    JobStatus::Lost,
    JobStatus::Cancelled,
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
    /// When the jobs that ended here lately ended, and their sojourns (ms), in the order they
    /// ended: the last [`SojournSummary::WINDOW_MS`], at most [`MAX_RECENT_SOJOURNS`] (the
    /// oldest go first). Every report summarises them, and the history takes each sample's.
    recent_sojourns: Mutex<VecDeque<(Instant, u32)>>,
}

/// The most sojourn times kept (see `recent_sojourns`).
const MAX_RECENT_SOJOURNS: usize = 4_096;

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
            recent_sojourns: Mutex::new(VecDeque::new()),
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

    /// A job run here ended `sojourn` after it arrived here (queued and ran): for its reports
    /// and the history.
    pub fn job_sojourn(&self, sojourn: Duration) {
        let mut recent = self
            .inner
            .recent_sojourns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if recent.len() == MAX_RECENT_SOJOURNS {
            recent.pop_front();
        }
        let ms = u32::try_from(sojourn.as_millis()).unwrap_or(u32::MAX);
        recent.push_back((Instant::now(), ms));
    }

    /// The sojourns of the jobs that ended here within [`SojournSummary::WINDOW_MS`] before
    /// `now`, summarised for this node's reports.
    pub(crate) fn recent_sojourns(&self, now: Instant) -> SojournSummary {
        let window = Duration::from_millis(SojournSummary::WINDOW_MS);
        let mut recent = self
            .inner
            .recent_sojourns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while recent
            .front()
            .is_some_and(|&(at, _)| now.saturating_duration_since(at) > window)
        {
            recent.pop_front();
        }
        let mut ms: Vec<u32> = recent.iter().map(|&(_, ms)| ms).collect();
        drop(recent);
        SojournSummary::of(&mut ms)
    }

    /// The jobs ended here so far: succeeded; failed or timed out; lost. The gossip task puts
    /// them in every report, and the history compares them.
    pub(crate) fn ended(&self) -> hearsay_shared::JobTally {
        let count = |status: JobStatus| {
            self.inner
                .completed
                .get_or_create(&OutcomeLabel {
                    outcome: status.as_str(),
                })
                .get()
        };
        hearsay_shared::JobTally {
            completed: count(JobStatus::Succeeded),
            failed: count(JobStatus::Failed) + count(JobStatus::TimedOut),
            lost: count(JobStatus::Lost),
        }
    }

    /// For the history: the sojourns (ms) of the jobs that ended here after `after` (every
    /// one kept, for `None`) and up to `until`.
    pub(crate) fn sojourns_between(&self, after: Option<Instant>, until: Instant) -> Vec<u32> {
        let recent = self
            .inner
            .recent_sojourns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let from = after.map_or(0, |after| recent.partition_point(|&(at, _)| at <= after));
        let to = recent.partition_point(|&(at, _)| at <= until);
        recent
            .range(from..to.max(from))
            .map(|&(_, ms)| ms)
            .collect()
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
