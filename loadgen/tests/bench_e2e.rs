//! `bench` end to end against in-process worker nodes on loopback: every job is sent once,
//! answered once, and counted once, under every dispatch mode.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{args, kill_all, loadgen, start_nodes, targets, Scratch};
use hearsay_loadgen::bench::{self, Dispatch, RunOptions};
use hearsay_loadgen::client::Http;
use hearsay_loadgen::report::RunSummary;
use hearsay_loadgen::workload::{EntryPattern, JobKindChoice, Length, WorkloadSpec};
use hearsay_scheduler::Policy;
use hearsay_shared::JobStatus;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_is_sent_answered_and_counted_once_in_every_mode() {
    let nodes = start_nodes(3, Policy::P2c).await;
    let http = Http::default();
    let bases: Vec<String> = nodes
        .iter()
        .map(|n| format!("http://{}", n.api_addr()))
        .collect();
    let targets = bench::discover(&http, &bases).await.unwrap();
    assert_eq!(targets.len(), 3);
    assert!(targets.iter().all(|t| t.slots == 1));
    let spec = WorkloadSpec {
        seed: 42,
        rate_per_s: 200.0,
        service: "exp:5".parse().unwrap(),
        kind: JobKindChoice::Sleep,
        entry: EntryPattern::Spread,
        targets: 3,
        length: Length::Jobs(300),
    };
    let jobs = spec.generate().unwrap();
    for dispatch in [Dispatch::Cluster, Dispatch::Random, Dispatch::Jsq] {
        let options = RunOptions {
            label: dispatch.as_str().into(),
            dispatch,
            worker_policy: None,
            kind: JobKindChoice::Sleep,
            request_timeout: Duration::from_secs(30),
            progress: false,
        };
        let run = bench::run(&http, &targets, &jobs, &options).await;
        assert_eq!(run.records.len(), 300, "{dispatch:?}: one record per job");
        let indices: BTreeSet<usize> = run.records.iter().map(|r| r.job.index).collect();
        assert_eq!(indices.len(), 300, "{dispatch:?}: no job twice");
        let ids: BTreeSet<u64> = run
            .records
            .iter()
            .filter_map(|r| r.result.as_ref().ok().map(|o| o.id.0))
            .collect();
        assert_eq!(ids.len(), 300, "{dispatch:?}: every job has its own id");
        for record in &run.records {
            let outcome = record.result.as_ref().expect("every job is answered");
            assert_eq!(outcome.status, JobStatus::Succeeded);
            assert!(
                record.sojourn_ms + 1.0 >= record.job.service_ms as f64,
                "{dispatch:?}: a job cannot end before it ran"
            );
            if dispatch != Dispatch::Cluster {
                assert_eq!(
                    outcome.executing_node.as_ref().map(|n| n.as_str()),
                    Some(targets[record.target].node.as_str()),
                    "{dispatch:?}: a job placed by loadgen runs where it was sent"
                );
            }
            if dispatch == Dispatch::Random {
                assert_eq!(record.target, record.job.pick);
            }
        }
        let summary = RunSummary::of(&run, 5.0);
        assert_eq!(summary.succeeded, 300);
        assert_eq!(summary.per_node.values().sum::<usize>(), 300);
        assert_eq!(summary.hops.values().sum::<usize>(), 300);
        if dispatch != Dispatch::Cluster {
            assert_eq!(summary.forwarded_fraction, 0.0);
        }
    }
    kill_all(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_command_reports_every_run_as_json_and_svg() {
    let nodes = start_nodes(3, Policy::P2c).await;
    let scratch = Scratch::new("bench");
    let (json, svg) = (scratch.path("report.json"), scratch.path("chart.svg"));
    let output = loadgen(args(&[
        "bench",
        "--targets",
        &targets(&nodes),
        "--dispatch",
        "cluster,random,jsq",
        "--jobs",
        "200",
        "--service",
        "exp:5",
        "--rho",
        "0.5",
        "--seed",
        "7",
        "--out",
        &json,
        "--chart",
        &svg,
    ]))
    .await;
    kill_all(&nodes);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("seed 7"), "the seed is printed: {stdout}");
    assert!(
        stdout.contains("mean/jsq"),
        "the ratios are printed: {stdout}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["workload"]["seed"], 7);
    assert_eq!(report["slots"], 3);
    // Three one-slot nodes at rho 0.5: random is three M/M/1 (mean 2), the floor M/M/3.
    let theory = &report["theory"];
    assert_eq!(theory["node_slots"], serde_json::json!([1, 1, 1]));
    assert!((theory["random_mean"].as_f64().unwrap() - 2.0).abs() < 1e-9);
    assert!(stdout.contains("theory: random M/M/1 ") && stdout.contains("theory: M/M/3 floor"));
    let runs = report["runs"].as_array().unwrap();
    let modes: Vec<&str> = runs
        .iter()
        .map(|r| r["dispatch"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["cluster", "random", "jsq"]);
    for run in runs {
        let errors: u64 = run["errors"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        let succeeded = run["succeeded"].as_u64().unwrap();
        assert_eq!(run["sent"], 200);
        assert_eq!(succeeded + errors, 200, "{run}");
        assert_eq!(
            succeeded, 200,
            "an idle cluster at rho 0.5 takes every job: {run}"
        );
        let per_node: u64 = run["per_node"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert_eq!(per_node, succeeded);
        assert_eq!(run["sojourn_ms"]["count"], 200);
        assert!(
            run["sojourn_ms"]["p99"].as_f64().unwrap()
                >= run["sojourn_ms"]["p50"].as_f64().unwrap()
        );
    }
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("jsq (loadgen) (n=200)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_the_cluster_cannot_take_is_refused() {
    let nodes = start_nodes(2, Policy::P2c).await;
    // Two slots of 100 ms jobs take at most 20 jobs/s.
    let output = loadgen(args(&[
        "bench",
        "--targets",
        &targets(&nodes),
        "--rate",
        "50",
        "--service",
        "exp:100",
    ]))
    .await;
    kill_all(&nodes);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot take that rate") && stderr.contains("20.0 jobs/s"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
