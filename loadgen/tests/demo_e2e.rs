//! `loadgen demo` end to end with real `worker` processes on loopback: a small cluster, three
//! runs, the report and the chart written, and every worker stopped at the end.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{args, loadgen, Scratch};
use serde_json::Value;

/// The `worker` binary cargo built beside this test (`cargo test --workspace` builds it, as the
/// worker crate has integration tests), or `HEARSAY_WORKER_BIN`.
fn worker_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("HEARSAY_WORKER_BIN") {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(format!("worker{}", std::env::consts::EXE_SUFFIX)))
        .find(|p| p.is_file())
}

#[tokio::test]
async fn the_demo_compares_runs_on_a_real_cluster_and_stops_it() {
    let Some(bin) = worker_bin() else {
        eprintln!(
            "SKIPPED: no worker binary beside the test; build it with \
             `cargo build -p hearsay-worker` or run `cargo test --workspace`"
        );
        return;
    };
    let scratch = Scratch::new("demo");
    let port = 20_200 + (std::process::id() % 20_000) as u16;
    let output = loadgen(args(&[
        "demo",
        "--worker-bin",
        &bin.display().to_string(),
        "--workers",
        "3",
        "--jobs",
        "100",
        "--rho",
        "0.5",
        "--service",
        "exp:5",
        "--runs",
        "p2c+steal,p2c,random,jsq",
        "--seed",
        "3",
        "--base-port",
        &port.to_string(),
        "--gossip-interval",
        "50",
        "--out-dir",
        &scratch.path("out"),
    ]))
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("dashboard: http://127.0.0.1:{port}/")),
        "{stdout}"
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.path("out/report.json")).unwrap())
            .unwrap();
    let labels: Vec<&str> = report["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["label"].as_str().unwrap())
        .collect();
    assert_eq!(
        labels,
        ["p2c+steal", "p2c", "random (loadgen)", "jsq (loadgen)"]
    );
    for run in report["runs"].as_array().unwrap() {
        assert_eq!(run["succeeded"], 100, "{run}");
        assert_eq!(run["sent"], 100, "{run}");
        // The steal requests are counted for the run whose workers steal, and only for it.
        let steals = &run["steals"];
        match run["label"].as_str() {
            Some("p2c+steal") => {
                let (asked, granted, empty) =
                    (&steals["asked"], &steals["granted"], &steals["empty"]);
                let (asked, granted, empty) = (asked.as_u64(), granted.as_u64(), empty.as_u64());
                assert!(
                    asked.is_some() && granted.is_some() && empty.is_some(),
                    "{run}"
                );
                assert!(granted.unwrap() + empty.unwrap() <= asked.unwrap(), "{run}");
            }
            _ => assert!(steals.is_null(), "{run}"),
        }
    }
    assert!(stdout.contains("steal requests"), "{stdout}");
    assert!(std::fs::read_to_string(scratch.path("out/chart.svg"))
        .unwrap()
        .contains("</svg>"));
    // Every worker was stopped: nothing listens on the cluster's ports any more.
    for i in 0..3 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port + i));
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
            "a worker still listens on {addr}"
        );
    }
}
