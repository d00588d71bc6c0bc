//! Hostile input against a live `worker` process on loopback: property tests with a fixed seed
//! and a bounded number of cases, so that they run in seconds and the same way every time.
//!
//! - HTTP: random and mutated requests — mutated job bodies, random methods, paths (invalid
//!   UTF-8 too), `Host`s (the node's, a rebound name, random bytes, none), content types,
//!   headers (huge ones too), with the right token, a wrong one or none — sent on raw TCP
//!   connections. Every answer is a well-formed HTTP status; every `4xx` the router
//!   makes has a JSON error body (hyper's own answer to a request it cannot parse is a bare
//!   400 or 431); the node keeps serving; and `hearsay_http_requests_refused_total` rises by
//!   exactly the number of `4xx` answers.
//! - UDP: random and mutated gossip datagrams — bit flips, insertions, deletions and
//!   truncations of a real datagram the node sent, relabelled valid reports, random bytes,
//!   datagrams of the largest size — sent to its gossip socket. The node keeps serving, and
//!   `hearsay_gossip_receive_errors_total` rises by exactly the number of datagrams that
//!   `hearsay_shared::wire::decode` rejects (the test decodes each one itself). The node runs
//!   without a cluster key (datagrams in the open).
//!
//! Every process is killed when its handle drops; every loop and read is bounded.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hearsay_shared::wire::{self, Message};
use hearsay_tests::cluster::{wait_until, WorkerProcess, WorkerSpec};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

const TOKEN: &str = "hostile-test-token-0123456789";
/// How long one exchange may take before the test gives up on its answer.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// The bound of every wait for the node.
const PATIENCE: Duration = Duration::from_secs(20);

fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        // Shrinking replays cases against the live node; a few are enough to see the culprit.
        max_shrink_iters: 32,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

/// A worker on a fresh loopback address, with `args`, answering `/healthz`.
fn start(name: &str, args: Vec<String>, seeds: Vec<SocketAddr>) -> Result<WorkerProcess> {
    let mut spec = WorkerSpec::new(name, seeds);
    spec.args = args;
    let worker = WorkerProcess::start(spec)?;
    let api = worker.spec.api();
    wait_until(PATIENCE, || {
        Ok(exchange(api, &get(api, "/healthz", None))?.0 == 200)
    })
    .context("the worker did not start")?;
    Ok(worker)
}

fn get(api: SocketAddr, path: &str, token: Option<&str>) -> Vec<u8> {
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    format!("GET {path} HTTP/1.1\r\nhost: {api}\r\n{auth}connection: close\r\n\r\n").into_bytes()
}

/// One answer: its status, headers (lower-case names) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` on a new connection and reads until the server closes it (or
/// [`READ_TIMEOUT`]); returns the first status and every final answer parsed from the bytes.
fn exchange(api: SocketAddr, request: &[u8]) -> Result<(u16, Vec<Answer>)> {
    let mut stream = TcpStream::connect_timeout(&api, READ_TIMEOUT)?;
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(READ_TIMEOUT))?;
    // The server may answer (431, 413) and close before taking it all: that is not an error.
    let _ = stream.write_all(request);
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16384];
    let started = Instant::now();
    while started.elapsed() < READ_TIMEOUT {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => break, // timed out, or reset after the answer
        }
    }
    let answers = parse_answers(&bytes).with_context(|| {
        format!(
            "malformed answer: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        )
    })?;
    let first = answers.first().map_or(0, |a| a.status);
    Ok((first, answers))
}

/// Every final (non-1xx) answer in `bytes`, each framed by its `content-length`.
fn parse_answers(mut bytes: &[u8]) -> Result<Vec<Answer>> {
    let mut answers = Vec::new();
    while !bytes.is_empty() {
        let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
            bail!("an answer without the end of its head");
        };
        let head = std::str::from_utf8(&bytes[..end]).context("a head that is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        if parts.next() != Some("HTTP/1.1") {
            bail!("not an HTTP/1.1 status line: {status_line:?}");
        }
        let status: u16 = parts.next().unwrap_or_default().parse()?;
        if !(100..=599).contains(&status) {
            bail!("status {status}");
        }
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line.split_once(':').context("a header without a colon")?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(Ok(0), |(_, v)| v.parse())?;
        let rest = &bytes[end + 4..];
        if (100..200).contains(&status) {
            bytes = rest;
            continue;
        }
        // An answer to HEAD announces a length and sends nothing: the connection ends first.
        let take = length.min(rest.len());
        answers.push(Answer {
            status,
            headers,
            body: rest[..take].to_vec(),
        });
        bytes = &rest[take..];
    }
    Ok(answers)
}

/// The sum of every sample of the metric family `name` (all label sets).
fn metric_sum(api: SocketAddr, token: Option<&str>, name: &str) -> Result<f64> {
    let (status, answers) = exchange(api, &get(api, "/metrics", token))?;
    if status != 200 {
        bail!("GET /metrics: {status}");
    }
    let text = String::from_utf8_lossy(&answers[0].body).into_owned();
    let mut sum = 0.0;
    let mut found = false;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next().unwrap_or_default();
        sum += value.parse::<f64>()?;
        found = true;
    }
    if !found {
        bail!("no {name} in /metrics");
    }
    Ok(sum)
}

/// Waits until `name` at `api` is `expected`; fails at once if it goes past it.
fn settle(api: SocketAddr, token: Option<&str>, name: &str, expected: f64) -> Result<()> {
    let started = Instant::now();
    loop {
        let now = metric_sum(api, token, name)?;
        if now == expected {
            return Ok(());
        }
        if now > expected {
            bail!("{name} is {now}, more than the {expected} expected");
        }
        if started.elapsed() > PATIENCE {
            bail!("{name} stayed at {now}; {expected} expected");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ----- HTTP -------------------------------------------------------------------------------

/// A request as generated: every part raw bytes, so that anything can be in it.
#[derive(Debug, Clone)]
struct RawRequest {
    method: Vec<u8>,
    path: Vec<u8>,
    host: Host,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

/// The `Host` a request gives.
#[derive(Debug, Clone)]
enum Host {
    /// The node's address, as every client of it sends.
    Node,
    /// These bytes: a rebound name, or anything.
    Raw(Vec<u8>),
    /// None at all.
    Missing,
}

impl RawRequest {
    /// The bytes sent to the node at `api`: the parts as given, then a correct
    /// `content-length` and `connection: close`, so that every request is framed and each
    /// connection ends.
    fn to_bytes(&self, api: SocketAddr) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.method);
        out.push(b' ');
        out.extend_from_slice(&self.path);
        out.extend_from_slice(b" HTTP/1.1\r\n");
        match &self.host {
            Host::Node => out.extend_from_slice(format!("host: {api}\r\n").as_bytes()),
            Host::Raw(host) => {
                out.extend_from_slice(b"host: ");
                out.extend_from_slice(host);
                out.extend_from_slice(b"\r\n");
            }
            Host::Missing => {}
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("content-length: {}\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(b"connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

const JOBS: [&str; 6] = [
    r#"{"kind":"echo","data":"hello"}"#,
    r#"{"kind":"sleep","ms":5}"#,
    r#"{"kind":"spin","ms":1,"timeout_ms":50}"#,
    r#"{"kind":"echo","data":"\u00e9\"[{","timeout_ms":100}"#,
    r#"{"kind":"sleep","ms":0,"timeout_ms":1}"#,
    r#"{"kind":"echo","data":""}"#,
];

/// Flips, inserts, deletes or cuts bytes of `base`, `edits` times.
fn mutate(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((0u8..4, any::<prop::sample::Index>(), any::<u8>()), 0..6).prop_map(
        move |edits| {
            let mut bytes = base.clone();
            for (kind, at, byte) in edits {
                let len = bytes.len();
                match kind {
                    0 if len > 0 => bytes[at.index(len)] = byte,
                    1 => bytes.insert(at.index(len + 1), byte),
                    2 if len > 0 => {
                        bytes.remove(at.index(len));
                    }
                    3 => bytes.truncate(at.index(len + 1)),
                    _ => {}
                }
            }
            bytes
        },
    )
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let jobs = prop::sample::select(JOBS.to_vec()).prop_flat_map(|j| mutate(j.as_bytes().to_vec()));
    prop_oneof![
        6 => jobs,
        1 => prop::collection::vec(any::<u8>(), 0..300),
        1 => (1usize..80).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        1 => (60_000usize..70_000).prop_map(|n| {
            format!(r#"{{"kind":"echo","data":"{}"}}"#, "x".repeat(n)).into_bytes()
        }),
        1 => Just(Vec::new()),
    ]
}

fn method() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(vec!["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"])
            .prop_map(|m| m.as_bytes().to_vec()),
        1 => "[A-Z]{1,12}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..10),
    ]
}

fn path() -> impl Strategy<Value = Vec<u8>> {
    let known = prop::sample::select(vec![
        "/",
        "/healthz",
        "/metrics",
        "/v1/cluster",
        "/v1/jobs",
        "/v1/jobs?wait=false",
        "/v1/jobs?wait=maybe",
        "/v1/jobs?x=1",
        "/v1/jobs/0000000000000001",
        "/v1/jobs/0000000000000001?wait=false",
        "/v1/jobs/zz",
        "/v1/jobs/0000000000000001/x",
    ]);
    prop_oneof![
        5 => known.prop_map(|p| p.as_bytes().to_vec()),
        1 => "/[!-~]{0,60}".prop_map(String::into_bytes),
        1 => "/v1/jobs/[0-9a-f]{16}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| [b"/".to_vec(), b].concat()),
        1 => Just(b"/v1/\xff\xfe\xc3(".to_vec()),
    ]
}

fn header() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let name = prop_oneof![
        3 => prop::sample::select(vec![
            "content-type",
            "idempotency-key",
            "hearsay-entry-node",
            "hearsay-job-id",
            "hearsay-hops",
            "accept",
            "x-anything",
        ])
        .prop_map(|n| n.as_bytes().to_vec()),
        1 => "[a-z-]{1,20}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..12),
    ];
    let value = prop_oneof![
        3 => "[ -~]{0,40}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => Just(b"\xff\xfe invalid \xc3\x28 utf-8".to_vec()),
        // Over the 64 KiB head limit, or near it.
        1 => (40_000usize..80_000).prop_map(|n| vec![b'h'; n]),
    ];
    (name, value)
}

fn authorization() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        6 => Just(Some(format!("Bearer {TOKEN}").into_bytes())),
        1 => Just(None),
        1 => Just(Some(format!("Bearer {TOKEN}x").into_bytes())),
        1 => "[ -~]{0,30}".prop_map(|v| Some(v.into_bytes())),
    ]
}

/// A request a client might well send: a known route, the right token, a job body with at
/// most one byte changed.
fn plausible() -> impl Strategy<Value = RawRequest> {
    let route = prop::sample::select(vec![
        ("GET", "/v1/cluster", false),
        ("GET", "/metrics", false),
        ("HEAD", "/v1/cluster", false),
        ("GET", "/healthz", false),
        ("GET", "/v1/jobs/0000000000000001", false),
        ("POST", "/v1/jobs", true),
        ("POST", "/v1/jobs", true),
        ("POST", "/v1/jobs?wait=true", true),
    ]);
    let job = prop::sample::select(JOBS.to_vec());
    (
        route,
        job,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..2),
    )
        .prop_map(|((method, path, has_body), job, flips)| {
            let mut body = if has_body {
                job.as_bytes().to_vec()
            } else {
                Vec::new()
            };
            for (at, byte) in flips {
                if !body.is_empty() {
                    let i = at.index(body.len());
                    body[i] = byte;
                }
            }
            let mut headers = vec![(
                b"authorization".to_vec(),
                format!("Bearer {TOKEN}").into_bytes(),
            )];
            if has_body {
                headers.push((b"content-type".to_vec(), b"application/json".to_vec()));
            }
            RawRequest {
                method: method.as_bytes().to_vec(),
                path: path.as_bytes().to_vec(),
                host: Host::Node,
                headers,
                body,
            }
        })
}

fn request() -> impl Strategy<Value = RawRequest> {
    prop_oneof![1 => plausible(), 2 => wild()]
}

fn host() -> impl Strategy<Value = Host> {
    prop_oneof![
        6 => Just(Host::Node),
        1 => prop::sample::select(vec!["evil.example:8080", "localhost", "127.0.0.2", "[::1]"])
            .prop_map(|h| Host::Raw(h.as_bytes().to_vec())),
        1 => prop::collection::vec(any::<u8>(), 0..20).prop_map(Host::Raw),
        1 => Just(Host::Missing),
    ]
}

/// Mostly JSON, so that the body checks behind the media type are reached too.
fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        4 => Just(Some(b"application/json".to_vec())),
        1 => prop::sample::select(vec![
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin1",
        ])
        .prop_map(|t| Some(t.as_bytes().to_vec())),
        1 => Just(None),
    ]
}

/// Anything: every part random or mutated.
fn wild() -> impl Strategy<Value = RawRequest> {
    (
        method(),
        path(),
        host(),
        content_type(),
        prop::collection::vec(header(), 0..4),
        authorization(),
        body(),
    )
        .prop_map(
            |(method, path, host, content_type, mut headers, auth, body)| {
                if let Some(auth) = auth {
                    headers.push((b"authorization".to_vec(), auth));
                }
                if let Some(content_type) = content_type {
                    headers.insert(0, (b"content-type".to_vec(), content_type));
                }
                RawRequest {
                    method,
                    path,
                    host,
                    headers,
                    body,
                }
            },
        )
}

#[test]
fn random_and_mutated_requests_are_answered_and_every_refusal_is_counted() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("hearsay-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n"))?;
    let args = vec![
        "--api-token-file".to_owned(),
        token_file.display().to_string(),
    ];
    let worker = start("hostile-http", args, Vec::new())?;
    let api = worker.spec.api();
    const REFUSED: &str = "hearsay_http_requests_refused_total";
    let before = metric_sum(api, Some(TOKEN), REFUSED)?;

    let refusals = Cell::new(0u64);
    let answered = Cell::new(0u64);
    let unanswered = Cell::new(0u64);
    runner(240, 7)
        .run(&request(), |req| {
            let bytes = req.to_bytes(api);
            let (_, answers) =
                exchange(api, &bytes).map_err(|e| TestCaseError::fail(format!("{e:#}")))?;
            if answers.is_empty() {
                unanswered.set(unanswered.get() + 1);
            }
            for answer in &answers {
                answered.set(answered.get() + 1);
                prop_assert!(
                    answer.status < 500 || answer.status == 503,
                    "a server error: {answer:?}"
                );
                if !(400..500).contains(&answer.status) {
                    continue;
                }
                refusals.set(refusals.get() + 1);
                let bare = answer.header("content-length") == Some("0");
                if req.method == b"HEAD" || (bare && matches!(answer.status, 400 | 431)) {
                    // HEAD answers carry no body; hyper's own answers to what it cannot
                    // parse are bare.
                    continue;
                }
                prop_assert_eq!(answer.header("content-type"), Some("application/json"));
                let json: serde_json::Value = serde_json::from_slice(&answer.body)
                    .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {answer:?}")))?;
                prop_assert!(json["error"]["code"].is_string(), "{json}");
                prop_assert!(json["error"]["message"].is_string(), "{json}");
                if answer.status == 401 {
                    prop_assert_eq!(
                        answer.header("www-authenticate"),
                        Some("Bearer realm=\"hearsay\"")
                    );
                }
            }
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    // Still serving, and every refusal counted once.
    assert_eq!(exchange(api, &get(api, "/healthz", None))?.0, 200);
    settle(api, Some(TOKEN), REFUSED, before + refusals.get() as f64)?;
    eprintln!(
        "{} answers, {} refusals, {} requests unanswered within {READ_TIMEOUT:?}",
        answered.get(),
        refusals.get(),
        unanswered.get()
    );
    assert!(refusals.get() > 50, "the cases reach the refusals");
    assert!(answered.get() > refusals.get(), "and some are served");
    assert!(unanswered.get() < 10, "nearly every request is answered");
    std::fs::remove_dir_all(&dir).ok();
    drop(worker);
    Ok(())
}

// ----- UDP --------------------------------------------------------------------------------

/// Whether every address a decoded message names is on loopback: the node will send gossip to
/// them, and this test sends nothing beyond the machine.
fn only_loopback(message: &Message) -> bool {
    let reports: Vec<&hearsay_shared::LoadReport> = match message {
        Message::Push { reports } => reports.0.iter().collect(),
        Message::Digest { sender, .. } => vec![sender],
    };
    reports
        .iter()
        .all(|r| r.api.ip().is_loopback() && r.gossip.ip().is_loopback())
}

fn datagram(bases: Vec<Vec<u8>>, relabelled: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let mutated = prop::sample::select(bases.clone()).prop_flat_map(mutate);
    let truncated = prop::sample::select(bases.clone()).prop_flat_map(|b| {
        let len = b.len();
        (0..=len).prop_map(move |n| b[..n].to_vec())
    });
    prop_oneof![
        4 => mutated,
        2 => truncated,
        1 => prop::sample::select(bases),
        2 => prop::sample::select(relabelled),
        2 => prop::collection::vec(any::<u8>(), 0..1500),
        1 => prop::collection::vec(any::<u8>(), 0..8).prop_map(|tail| [b"HS\x01\x00".to_vec(), tail].concat()),
        1 => (60_000usize..=wire::MAX_DATAGRAM).prop_map(|n| vec![0x5a; n]),
    ]
}

#[test]
fn random_and_mutated_datagrams_are_dropped_and_counted_exactly() -> Result<()> {
    // This socket is the node's seed: the node sends it real datagrams to mutate.
    let me = UdpSocket::bind((hearsay_tests::cluster::fresh_loopback(), 0))?;
    me.set_read_timeout(Some(Duration::from_millis(500)))?;
    let worker = start(
        "hostile-udp",
        vec!["--gossip-interval".to_owned(), "100".to_owned()],
        vec![me.local_addr()?],
    )?;
    let api = worker.spec.api();
    let gossip = worker.spec.gossip();

    let mut bases = Vec::new();
    let mut buf = vec![0u8; 65536];
    let started = Instant::now();
    while bases.len() < 4 && started.elapsed() < PATIENCE {
        if let Ok((n, from)) = me.recv_from(&mut buf) {
            if from == gossip && wire::decode(&buf[..n]).is_ok() {
                bases.push(buf[..n].to_vec());
            }
        }
    }
    if bases.is_empty() {
        bail!("the node sent its seed no datagram");
    }
    // Valid reports of nodes that do not exist, made from the node's own: they decode and merge.
    let own = bases
        .iter()
        .find_map(|b| match wire::decode(b).ok()? {
            Message::Push { reports } => reports.0.into_iter().next(),
            Message::Digest { sender, .. } => Some(sender),
        })
        .expect("a report");
    let relabelled: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            let mut report = own.clone();
            report.node = format!("ghost-{i}").parse().expect("a valid id");
            report.seq += i;
            wire::encode_push(&report, [], wire::DEFAULT_BUDGET)
                .expect("encodes")
                .0
        })
        .collect();

    const ERRORS: &str = "hearsay_gossip_receive_errors_total";
    const RECEIVED: &str = "hearsay_gossip_datagrams_received_total";
    let errors_before = metric_sum(api, None, ERRORS)?;
    let received_before = metric_sum(api, None, RECEIVED)?;
    let sent = Cell::new(0u64);
    let rejected = Cell::new(0u64);
    let skipped = Cell::new(0u64);
    runner(400, 11)
        .run(&datagram(bases, relabelled), |bytes| {
            let verdict = wire::decode(&bytes);
            if let Ok(message) = &verdict {
                if !only_loopback(message) {
                    skipped.set(skipped.get() + 1);
                    return Ok(());
                }
            }
            me.send_to(&bytes, gossip)
                .map_err(|e| TestCaseError::fail(format!("send: {e}")))?;
            sent.set(sent.get() + 1);
            if verdict.is_err() {
                rejected.set(rejected.get() + 1);
            }
            // Pace the sends, so that the node's socket buffer never overflows.
            std::thread::sleep(Duration::from_millis(2));
            Ok(())
        })
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    settle(api, None, ERRORS, errors_before + rejected.get() as f64)?;
    let received = metric_sum(api, None, RECEIVED)? - received_before;
    assert!(
        received >= sent.get() as f64,
        "every datagram sent arrived: {received} of {}",
        sent.get()
    );
    assert_eq!(
        exchange(api, &get(api, "/healthz", None))?.0,
        200,
        "still serving"
    );
    let (status, _) = exchange(api, &get(api, "/v1/cluster", None))?;
    assert_eq!(status, 200);
    eprintln!(
        "{} datagrams sent, {} rejected by the decoder, {} skipped (non-loopback addresses)",
        sent.get(),
        rejected.get(),
        skipped.get()
    );
    assert!(rejected.get() > 100, "most cases are rejected");
    assert!(sent.get() > rejected.get(), "and some are valid");
    Ok(())
}
