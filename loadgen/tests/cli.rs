//! The command line refuses bad input with one clear line and a non-zero exit, never a panic,
//! and leaves no worker process behind.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use common::{args, loadgen, Scratch};

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Fails unless loadgen exited non-zero with a message containing every one of `words`.
fn assert_refused(output: &Output, words: &[&str]) {
    let text = stderr(output);
    assert!(!output.status.success(), "exited 0: {text}");
    assert!(!text.contains("panicked"), "a panic: {text}");
    assert!(
        text.starts_with("loadgen: "),
        "one line from loadgen: {text}"
    );
    for word in words {
        assert!(text.contains(word), "{word:?} not in {text:?}");
    }
}

/// A port on 127.0.0.1 with nothing listening (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A base port for a demo cluster unlikely to collide with another test process.
fn demo_base_port() -> u16 {
    20_000 + (std::process::id() % 20_000) as u16
}

#[tokio::test]
async fn an_unreachable_target_is_named() {
    let target = format!("127.0.0.1:{}", closed_port());
    let output = loadgen(args(&["bench", "--targets", &target, "--rho", "0.5"])).await;
    assert_refused(&output, &["cannot reach target", &target]);
}

#[tokio::test]
async fn a_malformed_service_says_what_is_expected() {
    let output = loadgen(args(&[
        "bench",
        "--targets",
        "127.0.0.1:1",
        "--rho",
        "0.5",
        "--service",
        "gauss:5",
    ]))
    .await;
    assert_refused(&output, &["gauss:5", "exp:MEAN_MS", "bimodal:P:A_MS:B_MS"]);
    assert_eq!(output.status.code(), Some(2), "a usage error");
    assert_eq!(stderr(&output).lines().count(), 1, "one line");
}

#[tokio::test]
async fn rho_at_or_above_one_is_refused_before_anything_starts() {
    for rho in ["1", "1.5"] {
        let output = loadgen(args(&["bench", "--targets", "127.0.0.1:1", "--rho", rho])).await;
        assert_refused(&output, &["cannot take that rate", "below 1"]);
        // The demo refuses it before it looks for a worker binary or starts one.
        let output = loadgen(args(&[
            "demo",
            "--rho",
            rho,
            "--worker-bin",
            "/nonexistent",
        ]))
        .await;
        assert_refused(&output, &["cannot take that rate"]);
    }
}

#[tokio::test]
async fn other_bad_flags_are_refused() {
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["bench", "--targets", "https://x:1", "--rho", "0.5"],
            &["only http://"],
        ),
        (&["bench", "--targets", "127.0.0.1:1"], &["--rho", "--rate"]),
        (
            &[
                "bench",
                "--targets",
                "127.0.0.1:1",
                "--rho",
                "0.5",
                "--jobs",
                "0",
            ],
            &["--jobs"],
        ),
        (&["demo", "--runs", "fastest"], &["fastest", "jsq"]),
        (
            &["demo", "--worker-bin", "/nonexistent/worker"],
            &["/nonexistent/worker"],
        ),
    ];
    for (list, words) in cases {
        let output = loadgen(args(list)).await;
        assert_refused(&output, words);
    }
}

/// A stand-in for `worker` that records its pid and then does `body`.
fn fake_worker(dir: &Path, body: &str) -> String {
    let path = dir.join("fake-worker");
    let pids = dir.join("pids");
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho $$ >> {}\n{body}\n", pids.display()),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// Whether the process is gone (or a zombie waiting for a parent that is gone too).
fn is_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// Every stand-in that got as far as recording its pid (at most `started`, at least one) is gone.
/// A worker killed before its shell ran records nothing, hence no exact count.
fn assert_all_stopped(dir: &Path, started: usize) {
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap_or_default();
    let pids: Vec<&str> = pids.lines().collect();
    assert!(
        (1..=started).contains(&pids.len()),
        "{} pids for {started} workers: {pids:?}",
        pids.len()
    );
    // Killed children are reaped asynchronously; give them a moment.
    for _ in 0..100 {
        if pids.iter().all(|p| is_gone(p)) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("workers left running: {pids:?}");
}

#[tokio::test]
async fn a_cluster_that_never_converges_times_out_and_is_stopped() {
    let scratch = Scratch::new("never");
    // Starts, never answers: the cluster cannot converge.
    let bin = fake_worker(&scratch.0, "exec sleep 60");
    let port = demo_base_port().to_string();
    let output = loadgen(args(&[
        "demo",
        "--worker-bin",
        &bin,
        "--workers",
        "3",
        "--converge-timeout",
        "1",
        "--base-port",
        &port,
        "--out-dir",
        &scratch.path("out"),
    ]))
    .await;
    assert_refused(&output, &["did not converge within 1 s", "does not answer"]);
    assert_all_stopped(&scratch.0, 3);
}

#[tokio::test]
async fn a_worker_that_exits_is_reported_with_its_log() {
    let scratch = Scratch::new("exits");
    let bin = fake_worker(
        &scratch.0,
        "echo 'worker: cannot bind API socket' >&2\nexit 3",
    );
    let port = (demo_base_port() + 100).to_string();
    let output = loadgen(args(&[
        "demo",
        "--worker-bin",
        &bin,
        "--workers",
        "2",
        "--converge-timeout",
        "10",
        "--base-port",
        &port,
        "--out-dir",
        &scratch.path("out"),
    ]))
    .await;
    assert_refused(&output, &["exited", "cannot bind API socket"]);
    assert_all_stopped(&scratch.0, 2);
}
