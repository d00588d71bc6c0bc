//! The `worker` binary as an operator meets it: refused flags and busy addresses give one line
//! on stderr and a non-zero exit; `SIGTERM` leaves and exits 0. Everything runs on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

// The bound of every wait: the test kit's.
use hearsay_testkit::PATIENCE;

/// A `worker` process, killed when dropped, so that a failing test leaves nothing running.
struct Worker {
    child: Child,
}

impl Worker {
    fn spawn(args: &[&str]) -> Worker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_worker"));
        command
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The test's own environment must not configure the node behind its back.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HEARSAY_") {
                command.env_remove(key);
            }
        }
        if !args.contains(&"--data-dir") {
            command.args(["--data-dir", "none"]);
        }
        Worker {
            child: command.spawn().expect("spawn worker"),
        }
    }

    /// Waits (at most [`PATIENCE`]) for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "worker did not exit in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            stderr.read_to_string(&mut text).expect("read stderr");
        }
        text
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Already exited is fine: kill fails, wait reaps.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to its exit; returns the status and stderr.
fn run_to_exit(args: &[&str]) -> (ExitStatus, String) {
    let mut worker = Worker::spawn(args);
    let status = worker.wait();
    (status, worker.stderr())
}

fn assert_one_line_error(stderr: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected one line on stderr, got {stderr:?}"
    );
    assert!(lines[0].starts_with("worker: "), "{stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
}

#[test]
fn an_unknown_flag_is_one_line_and_a_usage_error() {
    let (status, stderr) = run_to_exit(&["--no-such-flag"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_one_line_error(&stderr);
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn a_bad_value_is_one_line_and_a_usage_error() {
    let (status, stderr) = run_to_exit(&["--api", "not-an-address"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_one_line_error(&stderr);
    assert!(stderr.contains("--api"), "{stderr}");
}

#[test]
fn an_empty_missing_or_short_token_file_is_one_line_and_a_usage_error() {
    let dir = std::env::temp_dir().join(format!("hearsay-cli-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let empty = dir.join("empty");
    std::fs::write(&empty, " \n").unwrap();
    let short = dir.join("short");
    std::fs::write(&short, "abc\n").unwrap();
    let missing = dir.join("missing");
    for (file, says) in [
        (&empty, "the token is empty"),
        (&missing, "cannot read the token file"),
        (&short, "must be 16 to 4096"),
    ] {
        let path = file.to_str().unwrap();
        let (status, stderr) = run_to_exit(&["--api-token-file", path, "--api", "127.0.0.1:0"]);
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert_one_line_error(&stderr);
        assert!(stderr.contains("--api-token-file"), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_bad_config_file_is_one_line_naming_file_command_and_field() {
    let file = std::env::temp_dir().join(format!("hearsay-cli-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "[commands.thumbnail]\nprogram = \"/bin/echo\"\nargs = [\"{1}\"]\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (status, stderr) = run_to_exit(&[
        "--config",
        path,
        "--api",
        "127.0.0.1:0",
        "--gossip",
        "127.0.0.1:0",
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_one_line_error(&stderr);
    assert!(stderr.contains(path), "{stderr}");
    assert!(stderr.contains("commands.thumbnail.args"), "{stderr}");
    let (status, stderr) = run_to_exit(&["--config", "/nonexistent/hearsay.toml"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_one_line_error(&stderr);
    assert!(stderr.contains("/nonexistent/hearsay.toml"), "{stderr}");
}

#[test]
fn fanout_zero_is_refused() {
    let (status, stderr) = run_to_exit(&[
        "--fanout",
        "0",
        "--api",
        "127.0.0.1:0",
        "--gossip",
        "127.0.0.1:0",
    ]);
    assert!(!status.success());
    assert_one_line_error(&stderr);
    assert!(stderr.contains("--fanout"), "{stderr}");
}

#[test]
fn an_api_address_in_use_is_named() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stderr) = run_to_exit(&["--api", &addr, "--gossip", "127.0.0.1:0"]);
    assert!(!status.success());
    assert_one_line_error(&stderr);
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(stderr.contains("API"), "{stderr}");
}

#[test]
fn a_gossip_address_in_use_is_named() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (status, stderr) = run_to_exit(&["--gossip", &addr, "--api", "127.0.0.1:0"]);
    assert!(!status.success());
    assert_one_line_error(&stderr);
    assert!(stderr.contains(&addr), "{stderr}");
    assert!(stderr.contains("gossip"), "{stderr}");
}

/// A plain HTTP/1.1 GET, enough for a health check: (status code, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, PATIENCE).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn sigterm_leaves_gracefully_and_exits_zero() {
    let mut worker = Worker::spawn(&[
        "--api",
        "127.0.0.1:0",
        "--gossip",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--seed",
        "7",
    ]);
    // Read the JSON log lines on a thread, so that waiting for one is bounded.
    let stdout = worker.child.stdout.take().unwrap();
    let (lines_tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let next_event = |message: &str| -> serde_json::Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {message:?} log line"));
            let event: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            if event["message"] == message {
                return event;
            }
        }
    };

    let started = next_event("worker started");
    assert_eq!(started["seed"], 7, "the seed is logged: {started}");
    let api: SocketAddr = started["api"].as_str().unwrap().parse().unwrap();
    assert_ne!(api.port(), 0, "the bound port is logged, not port 0");
    let (status, body) = http_get(api, "/healthz");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));

    let kill = Command::new("kill")
        .args(["-TERM", &worker.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success());
    next_event("announced leaving; gossiping a little longer so that peers hear it");
    let status = worker.wait();
    assert!(status.success(), "exit status {status}");
}
