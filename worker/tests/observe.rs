//! Watching a cluster of nodes started in-process on 127.0.0.1: `GET /v1/cluster/stream` yields
//! well-formed server-sent events that follow a change of load and the node's leave, and
//! `GET /metrics` is valid Prometheus text whose counters move as jobs run (checked by the
//! parser here, and by `promtool check metrics` too where it is installed).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::process::{Command, Stdio};

use bytes::Bytes;
use common::{await_condition, cluster, http, leave_all, request, submit, Http, PATIENCE};
use hearsay_worker::NodeHandle;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE};
use hyper::Method;
use serde_json::{json, Value};

/// One block of a server-sent event stream (the lines up to a blank line).
#[derive(Debug, Default)]
struct Block {
    event: Option<String>,
    data: Option<String>,
    retry: Option<u64>,
    comments: Vec<String>,
}

/// Reads a `text/event-stream` body block by block, checking every line's form.
struct EventReader {
    body: Incoming,
    buffer: String,
}

impl EventReader {
    fn new(body: Incoming) -> Self {
        EventReader {
            body,
            buffer: String::new(),
        }
    }

    /// The next block; `None` once the stream has ended cleanly. Panics on a malformed line,
    /// a body error, or a wait beyond [`PATIENCE`].
    async fn next_block(&mut self) -> Option<Block> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let text: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(text.trim_end_matches('\n')));
            }
            let frame = tokio::time::timeout(PATIENCE, self.body.frame())
                .await
                .expect("the stream sends within the patience");
            match frame {
                None => {
                    assert!(
                        self.buffer.is_empty(),
                        "the stream ended inside a block: {:?}",
                        self.buffer
                    );
                    return None;
                }
                Some(frame) => {
                    let frame = frame.expect("the stream ends cleanly, without an error");
                    if let Ok(data) = frame.into_data() {
                        self.buffer
                            .push_str(std::str::from_utf8(&data).expect("UTF-8 events"));
                    }
                }
            }
        }
    }

    /// The next `cluster` event's data as JSON; `None` once the stream has ended.
    async fn next_event(&mut self) -> Option<Value> {
        loop {
            let block = self.next_block().await?;
            if let Some(data) = &block.data {
                assert_eq!(block.event.as_deref(), Some("cluster"), "{block:?}");
                return Some(serde_json::from_str(data).expect("data is JSON"));
            }
        }
    }
}

/// Parses one block by the rules of the SSE format, refusing anything this stream should not
/// send: unknown fields, a field twice, `data` over several lines.
fn parse_block(text: &str) -> Block {
    let mut block = Block::default();
    for line in text.split('\n') {
        assert!(!line.contains('\r'), "a stray CR in {line:?}");
        if let Some(comment) = line.strip_prefix(':') {
            block.comments.push(comment.trim().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "event" => {
                assert!(block.event.replace(value).is_none(), "two event lines")
            }
            "data" => assert!(
                block.data.replace(value).is_none(),
                "data over several lines"
            ),
            "retry" => {
                block.retry = Some(value.parse().expect("retry is a number of milliseconds"))
            }
            other => panic!("unexpected field {other:?} in {text:?}"),
        }
    }
    block
}

/// Totals of the load in one event: (queued, running) over the nodes that are not gone.
fn totals(event: &Value) -> (u64, u64) {
    event["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["state"] == "alive" || n["state"] == "suspect")
        .fold((0, 0), |(q, r), n| {
            (
                q + n["load"]["queued"].as_u64().unwrap(),
                r + n["load"]["running"].as_u64().unwrap(),
            )
        })
}

fn state_of<'a>(event: &'a Value, id: &str) -> Option<&'a str> {
    event["nodes"].as_array()?.iter().find(|n| n["id"] == id)?["state"].as_str()
}

async fn open_stream(http: &Http, node: &NodeHandle) -> EventReader {
    let uri = format!("http://{}/v1/cluster/stream", node.api_addr())
        .parse()
        .unwrap();
    let response = tokio::time::timeout(PATIENCE, http.get(uri))
        .await
        .expect("an answer in time")
        .expect("an HTTP answer");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    EventReader::new(response.into_body())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_stream_follows_a_load_change_and_the_leave() {
    let nodes = cluster(&[1, 1]).await;
    let http = http();
    let entry = &nodes[0];
    let mut stream = open_stream(&http, entry).await;

    // The stream opens with a comment and a reconnection hint, then the map at once.
    let preamble = stream.next_block().await.expect("a first block");
    assert_eq!(preamble.retry, Some(1000), "{preamble:?}");
    assert!(!preamble.comments.is_empty(), "{preamble:?}");
    let first = stream.next_event().await.expect("a first event");
    assert_eq!(first["node"], entry.id().as_str());
    assert_eq!(first["interval_ms"], 50);
    assert_eq!(first["policy"], "p2c");
    assert_eq!(first["nodes"].as_array().unwrap().len(), 2, "{first}");
    assert_eq!(totals(&first), (0, 0), "an idle cluster: {first}");

    // Four slow jobs on two one-slot nodes: two run, two wait, whichever way they are placed.
    for _ in 0..4 {
        submit(
            &http,
            entry.api_addr(),
            "/v1/jobs",
            &json!({"kind": "sleep", "ms": 60_000}),
        )
        .await;
    }
    let mut seen = 1;
    let loaded = loop {
        let event = stream.next_event().await.expect("the stream goes on");
        seen += 1;
        if totals(&event) == (2, 2) {
            break event;
        }
    };
    eprintln!("the load change showed in event {seen}");
    let placements = &loaded["placements"];
    let forwarded: u64 = placements["forwarded"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        placements["local"].as_u64().unwrap() + forwarded,
        4,
        "{loaded}"
    );
    assert!(
        loaded["uptime_ms"].as_u64().unwrap() > first["uptime_ms"].as_u64().unwrap(),
        "uptime rises"
    );

    // Leaving, the node goes on streaming while it drains — showing itself as left — and the
    // stream then ends cleanly.
    let me = entry.id().as_str().to_owned();
    let leaving = tokio::spawn(async move { leave_all(&nodes).await });
    let mut saw_left = false;
    while let Some(event) = stream.next_event().await {
        saw_left |= state_of(&event, &me) == Some("left");
    }
    assert!(
        saw_left,
        "the stream showed the node leaving before it ended"
    );
    leaving.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_are_refused_with_503() {
    let nodes = cluster(&[1]).await;
    let http = http();
    let node = &nodes[0];
    let mut open = Vec::new();
    for _ in 0..hearsay_worker::MAX_STREAMS {
        open.push(open_stream(&http, node).await);
    }
    let refused = request(
        &http,
        Method::GET,
        node.api_addr(),
        "/v1/cluster/stream",
        "",
    )
    .await;
    assert_eq!(refused.status, 503);
    let body: Value = serde_json::from_slice(&refused.body).unwrap();
    assert_eq!(body["error"]["code"], "too_many_streams");
    // A closed stream frees its place.
    drop(open.pop());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let uri = format!("http://{}/v1/cluster/stream", node.api_addr());
        let response = http.get(uri.parse().unwrap()).await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place was not freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    leave_all(&nodes).await;
}

/// A parsed exposition: every sample by `name{labels}` (as written), and each family's type.
#[derive(Debug, Default)]
struct Exposition {
    samples: BTreeMap<String, f64>,
    types: HashMap<String, String>,
}

impl Exposition {
    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series}"))
    }

    /// The sum of every series of `name`, whatever its labels.
    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(series, _)| series.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    is_metric_name(name) && !name.contains(':') && !name.starts_with("__")
}

/// Parses `{a="x",b="y"}` at the start of `text`; returns the labels and the rest.
fn parse_labels(text: &str) -> (Vec<(String, String)>, &str) {
    let Some(mut rest) = text.strip_prefix('{') else {
        return (Vec::new(), text);
    };
    let mut labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return (labels, after);
        }
        let (name, after) = rest.split_once("=\"").expect("label=\"value\"");
        assert!(is_label_name(name), "bad label name {name:?}");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next().expect("a closing quote");
            match c {
                '"' => break i,
                '\\' => match chars.next().expect("an escape").1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    other => panic!("bad escape \\{other}"),
                },
                '\n' => panic!("a raw newline in a label value"),
                c => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// Parses the Prometheus text format (0.0.4), checking what `promtool check metrics` checks
/// that matters here: names, HELP and TYPE before the samples of each family, counters ending
/// in `_total`, histogram series and cumulative buckets.
fn parse_exposition(text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    let mut helped = HashMap::new();
    let mut family: Option<(String, String)> = None;
    let mut buckets: Vec<(String, f64)> = Vec::new();
    assert!(text.ends_with('\n'), "the exposition ends with a newline");
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("# HELP name text");
            assert!(is_metric_name(name), "{line}");
            assert!(!help.trim().is_empty(), "empty help: {line}");
            assert!(
                helped.insert(name.to_owned(), ()).is_none(),
                "two HELP for {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
            assert!(is_metric_name(name), "{line}");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                helped.contains_key(name),
                "TYPE before HELP or without it: {line}"
            );
            assert!(
                exposition
                    .types
                    .insert(name.to_owned(), kind.to_owned())
                    .is_none(),
                "two TYPE lines for {name}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} without _total");
            } else {
                assert!(!name.ends_with("_total"), "non-counter {name} with _total");
            }
            assert!(name.starts_with("hearsay_"), "{name} without the prefix");
            family = Some((name.to_owned(), kind.to_owned()));
            buckets.clear();
        } else if line.starts_with('#') || line.is_empty() {
            panic!("unexpected line {line:?}");
        } else {
            let name_end = line.find(['{', ' ']).expect("a sample");
            let name = &line[..name_end];
            let (labels, rest) = parse_labels(&line[name_end..]);
            let value = rest.strip_prefix(' ').expect("a space before the value");
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
            };
            let (fam, kind) = family.as_ref().expect("a sample before any TYPE");
            let suffix = name
                .strip_prefix(fam.as_str())
                .expect("a sample of its family");
            match kind.as_str() {
                "histogram" => {
                    assert!(["_bucket", "_sum", "_count"].contains(&suffix), "{line}");
                    if suffix == "_bucket" {
                        let le = labels.iter().find(|(k, _)| k == "le").expect("le");
                        if let Some((_, previous)) = buckets.last() {
                            assert!(value >= *previous, "buckets are cumulative: {line}");
                        }
                        buckets.push((le.1.clone(), value));
                    }
                    if suffix == "_count" {
                        let inf = buckets.iter().find(|(le, _)| le == "+Inf");
                        assert_eq!(inf.map(|b| b.1), Some(value), "+Inf bucket == count");
                    }
                }
                _ => assert_eq!(suffix, "", "{line}"),
            }
            if kind == "counter" || kind == "gauge" {
                assert!(
                    (value.is_finite() && value >= 0.0) || kind == "gauge",
                    "{line}"
                );
            }
            let series = line[..line.len() - rest.len()].to_owned();
            assert!(
                exposition.samples.insert(series, value).is_none(),
                "a series twice: {line}"
            );
        }
    }
    exposition
}

async fn scrape(http: &Http, node: &NodeHandle) -> (String, Exposition) {
    let answer = request(http, Method::GET, node.api_addr(), "/metrics", "").await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(answer.body.to_vec()).expect("UTF-8");
    let exposition = parse_exposition(&text);
    (text, exposition)
}

/// Runs `promtool check metrics` on `text` where promtool is installed; `false` if it is not.
fn promtool_accepts(text: &str) -> Option<bool> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    if !output.status.success() {
        eprintln!(
            "promtool: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Some(output.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_their_counters_move_when_jobs_run() {
    let nodes = cluster(&[2, 2]).await;
    let http = http();
    let (entry, peer) = (&nodes[0], &nodes[1]);

    let (text, before) = scrape(&http, entry).await;
    let (_, peer_before) = scrape(&http, peer).await;
    match promtool_accepts(&text) {
        Some(ok) => assert!(ok, "promtool check metrics refused:\n{text}"),
        None => {
            // CI sets this: there the check must run, not pass by being skipped.
            let required = std::env::var("HEARSAY_REQUIRE_PROMTOOL").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "HEARSAY_REQUIRE_PROMTOOL=1 but promtool is not installed (Debian: prometheus)"
            );
            eprintln!("promtool is not installed; checked by the parser here only");
        }
    }
    assert_eq!(before.types["hearsay_jobs_submitted_total"], "counter");
    assert_eq!(before.types["hearsay_job_run_seconds"], "histogram");
    assert_eq!(before.types["hearsay_nodes"], "gauge");
    assert_eq!(before.get("hearsay_nodes{state=\"alive\"}"), 2.0);
    assert_eq!(before.get("hearsay_nodes{state=\"dead\"}"), 0.0);
    assert_eq!(before.get("hearsay_load_map_entries"), 2.0);
    assert_eq!(before.get("hearsay_job_slots"), 2.0);
    assert_eq!(before.get("hearsay_jobs_submitted_total"), 0.0);
    assert_eq!(
        before.get("hearsay_placement_decisions_total{policy=\"p2c\",decision=\"forward\"}"),
        0.0,
        "the series exist before the first job"
    );

    const JOBS: usize = 6;
    for i in 0..JOBS {
        let outcome = submit(
            &http,
            entry.api_addr(),
            "/v1/jobs?wait=true",
            &json!({"kind": "sleep", "ms": 5 + i}),
        )
        .await;
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
    }
    // A job that fails its timeout, to see an outcome label move.
    let outcome = submit(
        &http,
        entry.api_addr(),
        "/v1/jobs?wait=true",
        &json!({"kind": "sleep", "ms": 10_000, "timeout_ms": 5}),
    )
    .await;
    assert_eq!(outcome["status"], "timed_out", "{outcome}");
    let jobs = JOBS as f64 + 1.0;
    // A few gossip rounds on both nodes, however quickly the jobs ran, so that the gossip
    // counters move too: a wait for rounds run, not for time to pass.
    let rounds = |node: &NodeHandle| node.cluster().gossip.rounds;
    let (entry_then, peer_then) = (rounds(entry), rounds(peer));
    await_condition("three gossip rounds on both nodes", || {
        rounds(entry) >= entry_then + 3 && rounds(peer) >= peer_then + 3
    })
    .await;

    let (text, after) = scrape(&http, entry).await;
    let (_, peer_after) = scrape(&http, peer).await;
    if let Some(ok) = promtool_accepts(&text) {
        assert!(ok, "promtool check metrics refused:\n{text}");
    }
    let moved = |name: &str| after.get(name) - before.get(name);
    assert_eq!(moved("hearsay_jobs_submitted_total"), jobs);
    let forwarded = moved("hearsay_jobs_forwarded_total");
    assert_eq!(moved("hearsay_jobs_placed_local_total") + forwarded, jobs);
    assert!(after.sum("hearsay_placement_decisions_total") >= jobs);
    assert_eq!(
        peer_after.get("hearsay_jobs_received_forwarded_total")
            - peer_before.get("hearsay_jobs_received_forwarded_total"),
        forwarded,
        "what one forwards, the other receives"
    );
    let both = |name: &str| {
        after.get(name) + peer_after.get(name) - before.get(name) - peer_before.get(name)
    };
    assert_eq!(
        both("hearsay_jobs_completed_total{outcome=\"succeeded\"}"),
        JOBS as f64
    );
    assert_eq!(
        both("hearsay_jobs_completed_total{outcome=\"timed_out\"}"),
        1.0
    );
    assert_eq!(both("hearsay_job_run_seconds_count"), jobs);
    assert_eq!(both("hearsay_job_queue_wait_seconds_count"), jobs);
    assert!(both("hearsay_job_run_seconds_sum") > 0.0);
    assert!(
        moved("hearsay_gossip_datagrams_sent_total") > 0.0
            && moved("hearsay_gossip_received_bytes_total") > 0.0,
        "gossip went on meanwhile"
    );
    assert_eq!(after.get("hearsay_jobs_running"), 0.0);
    assert_eq!(after.get("hearsay_jobs_queued"), 0.0);

    // Prometheus itself asks for OpenMetrics, and gets it.
    let openmetrics = {
        let request = hyper::Request::get(format!("http://{}/metrics", entry.api_addr()))
            .header(
                hyper::header::ACCEPT,
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )
            .body(http_body_util::Full::new(Bytes::new()))
            .unwrap();
        let response = http.request(request).await.unwrap();
        assert!(response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0"));
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    };
    assert!(openmetrics.ends_with("# EOF\n"));
    assert!(
        openmetrics.contains("\nhearsay_jobs_submitted_total 7\n"),
        "{openmetrics}"
    );

    leave_all(&nodes).await;
}

#[test]
fn the_exposition_parser_refuses_what_promtool_would() {
    let good = "# HELP hearsay_x_total X.\n# TYPE hearsay_x_total counter\nhearsay_x_total{a=\"b\\\"c\"} 1\n";
    assert_eq!(
        parse_exposition(good).get("hearsay_x_total{a=\"b\\\"c\"}"),
        1.0
    );
    for bad in [
        // A counter without _total.
        "# HELP hearsay_x X.\n# TYPE hearsay_x counter\nhearsay_x 1\n",
        // A sample with no TYPE.
        "hearsay_x 1\n",
        // No HELP.
        "# TYPE hearsay_x gauge\nhearsay_x 1\n",
        // Buckets that fall.
        "# HELP hearsay_h H.\n# TYPE hearsay_h histogram\nhearsay_h_bucket{le=\"1\"} 2\nhearsay_h_bucket{le=\"+Inf\"} 1\nhearsay_h_sum 1\nhearsay_h_count 1\n",
    ] {
        let refused = std::panic::catch_unwind(|| parse_exposition(bad)).is_err();
        assert!(refused, "accepted {bad:?}");
    }
}
