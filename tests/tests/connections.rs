//! Slow and crowding clients against a live `worker` process on loopback (issue 11, item 2):
//!
//! - a body that stops arriving is answered `408 body_timeout` (the whole-body bound) and the
//!   connection closed;
//! - a body trickling in below `--body-min-rate` is cut the same way (the rate bound);
//! - one client over `--max-connections-per-client` is answered `503 too_many_connections`,
//!   while another client is still served;
//! - a worker whose open-file limit (`prlimit --nofile`) is lower than the number of silent
//!   connections thrown at it still answers a new client, says `refusing_connections` in
//!   `/healthz`, and serves normally once the silent connections are gone.
//!
//! Bounds are set short by flag, so that nothing sleeps long; every read has a timeout and
//! every wait a limit; every process is killed when its handle drops.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hearsay_tests::cluster::{wait_until, worker_bin, WorkerProcess, WorkerSpec, API_PORT};
use serde_json::Value;
use socket2::{Domain, Socket, Type};

/// The longest one exchange may take before the test gives up on its answer.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The bound of every wait for the node.
const PATIENCE: Duration = Duration::from_secs(20);
/// A second client's address (the first is 127.0.0.1, the default source on loopback).
const OTHER_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// A TCP connection to `api` from `from` (or the default source address).
fn connect(api: SocketAddr, from: Option<IpAddr>) -> Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    if let Some(ip) = from {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    socket.connect_timeout(&api.into(), READ_TIMEOUT)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    Ok(stream)
}

/// One answer: its status, headers (lower-case names) and body as JSON (`Null` if not JSON).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    /// Whether the server closed the connection after the answer.
    closed: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one answer from `stream` (framed by its `content-length`), then whether the server
/// closes the connection; `None` if the server closed it or [`READ_TIMEOUT`] passed with no
/// answer.
fn read_answer(stream: &mut TcpStream) -> Result<Option<Answer>> {
    let started = Instant::now();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(Ok(0), |v| v.trim().parse::<usize>())?;
            if bytes.len() >= end + 4 + length {
                break (end, length);
            }
        }
        if started.elapsed() > READ_TIMEOUT {
            return Ok(None);
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => return Ok(None), // timed out or reset with no whole answer
        }
    };
    let head = std::str::from_utf8(&bytes[..head_end]).context("a head that is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .with_context(|| format!("status line {status_line:?}"))?
        .parse()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let body_bytes = &bytes[head_end + 4..head_end + 4 + length];
    let body = serde_json::from_slice(body_bytes).unwrap_or(Value::Null);
    // After the answer: the server closes (0, or a reset) or keeps the connection open.
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    let closed = match stream.read(&mut chunk) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    Ok(Some(Answer {
        status,
        headers,
        body,
        closed,
    }))
}

/// A `GET` of `path` on a new connection from `from`; `None` if it was closed unanswered.
fn get(api: SocketAddr, from: Option<IpAddr>, path: &str) -> Result<Option<Answer>> {
    let mut stream = connect(api, from)?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {api}\r\nconnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return Ok(None);
    }
    read_answer(&mut stream)
}

/// The head of a job `POST` that announces `length` bytes of body.
fn post_head(api: SocketAddr, length: usize) -> String {
    format!(
        "POST /v1/jobs HTTP/1.1\r\nhost: {api}\r\ncontent-type: application/json\r\n\
         content-length: {length}\r\n\r\n"
    )
}

/// A metric's value at `api`, read from a client of its own.
fn metric(api: SocketAddr, series: &str) -> Result<f64> {
    let answer = get_text(api, "/metrics")?;
    let prefix = format!("{series} ");
    answer
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .with_context(|| format!("no series {series}"))?
        .trim()
        .parse()
        .context("not a number")
}

/// The body of a `GET` as text, from [`OTHER_CLIENT`].
fn get_text(api: SocketAddr, path: &str) -> Result<String> {
    let mut stream = connect(api, Some(OTHER_CLIENT))?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: {api}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_owned()),
        _ => bail!("GET {path}: {:?}", &text[..text.len().min(200)]),
    }
}

/// A worker with `args`, answering `/healthz` (asked from [`OTHER_CLIENT`], so that the first
/// client starts with no connection counted).
fn start(name: &str, args: &[&str]) -> Result<WorkerProcess> {
    let mut spec = WorkerSpec::new(name, vec![]);
    spec.args = args.iter().map(|a| a.to_string()).collect();
    let worker = WorkerProcess::start(spec)?;
    let api = worker.spec.api();
    wait_until(PATIENCE, || {
        Ok(get(api, Some(OTHER_CLIENT), "/healthz")?.is_some_and(|a| a.status == 200))
    })
    .context("the worker did not start")?;
    Ok(worker)
}

#[test]
fn a_body_that_stops_arriving_is_answered_408_and_closed() -> Result<()> {
    let worker = start(
        "silent-body",
        &["--body-timeout", "500", "--body-min-rate", "0"],
    )?;
    let api = worker.spec.api();
    let mut stream = connect(api, None)?;
    // 100,000 bytes announced, one sent, then silence.
    stream.write_all(format!("{}{{", post_head(api, 100_000)).as_bytes())?;
    let answer = read_answer(&mut stream)?.context("no answer to a body that stopped")?;
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.body["error"]["code"], "body_timeout", "{answer:?}");
    let message = answer.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("500 ms") && message.contains("--body-timeout"),
        "the message names the bound: {message}"
    );
    assert_eq!(answer.body["error"]["field"], "body");
    assert_eq!(answer.header("connection"), Some("close"));
    assert!(answer.closed, "the connection is closed after the 408");
    assert_eq!(
        metric(
            api,
            "hearsay_http_requests_refused_total{reason=\"body_timeout\"}"
        )?,
        1.0
    );
    Ok(())
}

#[test]
fn a_body_trickling_below_the_minimum_rate_is_cut() -> Result<()> {
    // The whole-body bound is a minute away: only the rate can cut this body.
    let worker = start(
        "trickle",
        &[
            "--body-timeout",
            "60000",
            "--body-min-rate",
            "200",
            "--body-rate-grace",
            "300",
        ],
    )?;
    let api = worker.spec.api();
    let mut stream = connect(api, None)?;
    stream.write_all(post_head(api, 100_000).as_bytes())?;
    // One byte every 50 ms: 20 bytes/s, a tenth of the minimum, for at most 20 s.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let mut writer = stream.try_clone()?;
        let stop = stop.clone();
        std::thread::spawn(move || {
            for _ in 0..400 {
                if stop.load(Ordering::Relaxed) || writer.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let answer = read_answer(&mut stream);
    stop.store(true, Ordering::Relaxed);
    trickle.join().expect("the trickle thread does not panic");
    let answer = answer?.context("no answer to a trickling body")?;
    assert_eq!(answer.status, 408, "{answer:?}");
    assert_eq!(answer.body["error"]["code"], "body_timeout");
    let message = answer.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("slower than 200 bytes/s") && message.contains("--body-min-rate"),
        "the message names the rate bound: {message}"
    );
    assert!(answer.closed, "the connection is closed after the 408");
    Ok(())
}

#[test]
fn a_client_over_its_connection_cap_gets_503_and_another_is_served() -> Result<()> {
    let worker = start("per-client", &["--max-connections-per-client", "4"])?;
    let api = worker.spec.api();
    let silent: Vec<TcpStream> = (0..4).map(|_| connect(api, None)).collect::<Result<_>>()?;
    // The node accepts in order: the four silent ones hold this client's places.
    let refused = get(api, None, "/v1/cluster")?.context("the fifth connection is answered")?;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.body["error"]["code"], "too_many_connections");
    let message = refused.body["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("--max-connections-per-client 4"),
        "{message}"
    );
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.closed, "the refused connection is closed");

    let other = get(api, Some(OTHER_CLIENT), "/v1/cluster")?.context("another client")?;
    assert_eq!(other.status, 200, "another client is served: {other:?}");
    let health = get(api, Some(OTHER_CLIENT), "/healthz")?.context("health")?;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "refusing_connections", "{health:?}");
    assert_eq!(health.body["connections"]["max_per_client"], 4);
    assert_eq!(health.body["connections"]["refused"], 1);
    assert_eq!(
        metric(
            api,
            "hearsay_http_connections_refused_total{reason=\"per_client\"}"
        )?,
        1.0
    );

    drop(silent);
    wait_until(PATIENCE, || {
        Ok(get(api, None, "/v1/cluster")?.is_some_and(|a| a.status == 200))
    })
    .context("the first client is served again once its connections closed")?;
    Ok(())
}

/// A worker run under `prlimit --nofile=LIMIT:LIMIT`, killed on drop.
struct LimitedWorker {
    api: SocketAddr,
    child: Child,
}

impl LimitedWorker {
    fn start(name: &str, nofile: u32) -> Result<Self> {
        let ip = hearsay_tests::cluster::fresh_loopback();
        let api = SocketAddr::new(ip, API_PORT);
        let log = std::env::temp_dir().join(format!("hearsay-{name}-{}.log", std::process::id()));
        let log = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new("prlimit")
            .arg(format!("--nofile={nofile}:{nofile}"))
            .arg("--")
            .arg(worker_bin()?)
            .args(["--node-id", name, "--slots", "1", "--data-dir", "none"])
            .arg("--api")
            .arg(api.to_string())
            .arg("--gossip")
            .arg(SocketAddr::new(ip, hearsay_tests::cluster::GOSSIP_PORT).to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot run prlimit (util-linux)")?;
        let worker = LimitedWorker { api, child };
        wait_until(PATIENCE, || {
            Ok(get(api, None, "/healthz")?.is_some_and(|a| a.status == 200))
        })
        .context("the worker did not start")?;
        Ok(worker)
    }
}

impl Drop for LimitedWorker {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[test]
fn a_crowd_of_silent_connections_beyond_the_file_limit_is_refused_not_fatal() -> Result<()> {
    const NOFILE: u32 = 128;
    const SILENT: usize = 160;
    let worker = LimitedWorker::start("crowded", NOFILE)?;
    let api = worker.api;
    let silent: Vec<TcpStream> = (0..SILENT)
        .map(|_| connect(api, None))
        .collect::<Result<_>>()?;

    // A new client is answered: 200 for the health probe, which says the node is refusing.
    let mut health = None;
    wait_until(PATIENCE, || {
        health = get(api, Some(OTHER_CLIENT), "/healthz")?;
        Ok(health.is_some())
    })
    .context("a new client gets no answer")?;
    let health = health.expect("set by the wait");
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.body["status"], "refusing_connections", "{health:?}");
    let max = health.body["connections"]["max"].as_u64().unwrap_or(0);
    assert!(
        max > 0 && max < u64::from(NOFILE),
        "the default cap is kept below the descriptor limit: {health:?}"
    );
    assert!(
        health.body["connections"]["refused"].as_u64().unwrap_or(0) >= (SILENT as u64 - max),
        "{health:?}"
    );
    // Anything else is a 503 (or, while many refusals are under way, closed unanswered).
    let mut refused = None;
    wait_until(PATIENCE, || {
        refused = get(api, Some(OTHER_CLIENT), "/v1/cluster")?;
        Ok(refused.is_some())
    })?;
    let refused = refused.expect("set by the wait");
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.body["error"]["code"], "too_many_connections");
    assert_eq!(refused.header("retry-after"), Some("1"));

    // The crowd leaves: the node serves and, after the window, says it is fine again.
    drop(silent);
    wait_until(PATIENCE, || {
        Ok(get(api, Some(OTHER_CLIENT), "/v1/cluster")?.is_some_and(|a| a.status == 200))
    })
    .context("the node serves again once the crowd left")?;
    wait_until(PATIENCE, || {
        Ok(get(api, None, "/healthz")?.is_some_and(|a| a.body["status"] == "ok"))
    })
    .context("the node's health says ok again")?;
    Ok(())
}
