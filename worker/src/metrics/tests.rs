//! The counters and the exposition, encoded and read back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearsay_scheduler::Policy;
use hearsay_shared::{Gossip, GossipConfig, JobStatus, LoadVector, NodeId};

use super::*;
use crate::gossip::sampler::{Work, WorkGauge};
use crate::gossip::SharedGossip;
use crate::jobs::store::JobStore;

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
    use crate::jobs::store::{outcome_bytes, Retention};
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
