//! Jobs through the HTTP API of nodes started in-process on 127.0.0.1: placement over a cluster,
//! forwarding and answering for forwarded jobs, full queues, every bad input, waiting, timeouts,
//! spin jobs off the runtime, the drain of a leaving node, and a forwarded job whose node dies.
//!
//! Every wait is bounded by [`PATIENCE`]; nothing is asserted about how long anything took.
//! Every node is shut down at the end: explicitly when the test passes, by the handles' `Drop`
//! (and the end of the test's runtime) when it fails.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::{cluster_of, http, leave_all, request_bytes, Http, PATIENCE};
use hearsay_scheduler::Policy;
use hearsay_worker::{Config, Node, NodeHandle};
use hyper::header::{HeaderMap, ALLOW, LOCATION, RETRY_AFTER};
use hyper::Method;
use serde_json::{json, Value};

/// An answer: status, headers, and the body as JSON (`Null` if it is not JSON).
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    /// Checks an error answer: its status, its code, and the field it names (`None`: none).
    fn assert_error(&self, status: u16, code: &str, field: Option<&str>) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.body["error"]["code"], code, "{self:?}");
        let message = self.body["error"]["message"].as_str().expect("a message");
        match field {
            Some(field) => {
                assert_eq!(self.body["error"]["field"], field, "{self:?}");
                assert!(
                    message.starts_with(&format!("{field}: ")),
                    "the message names the field: {message:?}"
                );
            }
            None => assert!(self.body["error"].get("field").is_none(), "{self:?}"),
        }
    }
}

async fn call(
    http: &Http,
    method: Method,
    api: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let answer = request_bytes(http, method, api, path, headers, body.into()).await;
    Answer {
        status: answer.status,
        headers: answer.headers,
        body: serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
    }
}

async fn post(http: &Http, api: SocketAddr, path: &str, job: Value) -> Answer {
    call(http, Method::POST, api, path, &[], job.to_string()).await
}

async fn get(http: &Http, api: SocketAddr, path: &str) -> Answer {
    call(http, Method::GET, api, path, &[], Bytes::new()).await
}

/// Submits a job without waiting; checks the `202` and returns its id.
async fn submit(http: &Http, api: SocketAddr, job: Value) -> (String, Answer) {
    let answer = post(http, api, "/v1/jobs", job).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    let id = answer.body["id"].as_str().expect("an id").to_owned();
    assert_eq!(answer.headers[LOCATION], format!("/v1/jobs/{id}"));
    (id, answer)
}

/// The job as its node tells it once it has ended (polling, bounded by [`PATIENCE`]).
async fn ended(http: &Http, api: SocketAddr, id: &str) -> Value {
    let answer = tokio::time::timeout(
        PATIENCE,
        get(http, api, &format!("/v1/jobs/{id}?wait=true")),
    )
    .await
    .expect("the job ends in time");
    assert_eq!(answer.status, 200, "{answer:?}");
    let status = answer.body["status"].as_str().unwrap();
    assert!(
        ["succeeded", "failed", "timed_out", "lost"].contains(&status),
        "long polls answer at the end of a short job: {answer:?}"
    );
    answer.body
}

fn config(seed: u64) -> Config {
    let mut config = Config::loopback();
    config.gossip_interval = 50;
    config.slots = Some(1);
    config.seed = Some(seed);
    // Tests that leave jobs behind must not wait long for them.
    config.drain_timeout = 300;
    config
}

async fn start(config: Config) -> NodeHandle {
    Node::start(config).await.expect("start node")
}

/// Starts `n` nodes that join through the first, and waits until each sees all alive.
async fn cluster(n: usize, configure: impl Fn(usize, &mut Config)) -> Vec<NodeHandle> {
    let configs = (0..n)
        .map(|i| {
            let mut config = config(i as u64 + 1);
            configure(i, &mut config);
            config
        })
        .collect();
    cluster_of(configs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_submitted_to_one_node_spread_over_three() {
    let nodes = cluster(3, |_, _| {}).await;
    let http = http();
    let entry = &nodes[0];
    const JOBS: usize = 300;

    let mut ids = Vec::with_capacity(JOBS);
    for _ in 0..JOBS {
        let (id, answer) = submit(&http, entry.api_addr(), json!({"kind":"sleep","ms":20})).await;
        assert!(
            ["queued", "running"].contains(&answer.body["status"].as_str().unwrap()),
            "{answer:?}"
        );
        ids.push(id);
    }

    let mut per_node: HashMap<String, usize> = HashMap::new();
    let mut forwarded = None;
    for id in &ids {
        let outcome = ended(&http, entry.api_addr(), id).await;
        assert_eq!(outcome["id"], id.as_str());
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        assert_eq!(outcome["kind"], "sleep");
        assert_eq!(outcome["entry_node"], entry.id().as_str());
        let executing = outcome["executing_node"].as_str().unwrap().to_owned();
        let hops = outcome["hops"].as_u64().unwrap();
        // Run where it entered: no move; elsewhere: a forward, perhaps a steal after it.
        assert_eq!(hops == 0, executing == entry.id().as_str(), "{outcome}");
        assert!(hops <= 2, "{outcome}");
        for field in ["queued_ms", "run_ms", "total_ms"] {
            assert!(outcome[field].is_u64(), "{field} in {outcome}");
        }
        if executing != entry.id().as_str() {
            forwarded = Some((id.clone(), executing.clone()));
        }
        *per_node.entry(executing).or_default() += 1;
    }
    eprintln!("jobs per node: {per_node:?}");
    assert_eq!(
        per_node.values().sum::<usize>(),
        JOBS,
        "every job accounted for"
    );
    for node in &nodes {
        let share = per_node.get(node.id().as_str()).copied().unwrap_or(0);
        assert!(
            share >= JOBS / 5,
            "{} ran {share} of {JOBS} jobs: {per_node:?}",
            node.id()
        );
    }

    // The executing node knows the forwarded job too, as forwarded from the entry node.
    let (id, executing) = forwarded.expect("some job was forwarded");
    let peer = nodes.iter().find(|n| n.id().as_str() == executing).unwrap();
    let there = get(&http, peer.api_addr(), &format!("/v1/jobs/{id}")).await;
    assert_eq!(there.status, 200, "{there:?}");
    assert_eq!(there.body["entry_node"], entry.id().as_str());
    assert_eq!(there.body["executing_node"], executing.as_str());
    // Forwarded once, and perhaps stolen once after that (a job moves at most twice).
    let hops = there.body["hops"].as_u64();
    assert!(matches!(hops, Some(1 | 2)), "{there:?}");
    assert_eq!(there.body["status"], "succeeded");

    leave_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_true_answers_with_the_outcome_and_timeouts_time_out() {
    let node = start(config(1)).await;
    let http = http();
    let api = node.api_addr();

    let echo = post(
        &http,
        api,
        "/v1/jobs?wait=true",
        json!({"kind":"echo","data":"hi"}),
    )
    .await;
    assert_eq!(echo.status, 200, "{echo:?}");
    assert_eq!(echo.body["status"], "succeeded");
    assert_eq!(echo.body["output"], "hi");
    assert_eq!(echo.body["executing_node"], node.id().as_str());
    assert_eq!(echo.body["hops"], 0);

    let slept = post(
        &http,
        api,
        "/v1/jobs?wait=true",
        json!({"kind":"sleep","ms":10}),
    )
    .await;
    assert_eq!(slept.body["status"], "succeeded", "{slept:?}");
    assert!(slept.body.get("output").is_none(), "{slept:?}");

    let late = post(
        &http,
        api,
        "/v1/jobs?wait=true",
        json!({"kind":"sleep","ms":600000,"timeout_ms":30}),
    )
    .await;
    assert_eq!(late.status, 200, "{late:?}");
    assert_eq!(late.body["status"], "timed_out");
    assert!(
        late.body["error"].as_str().unwrap().contains("30 ms"),
        "{late:?}"
    );

    let (id, _) = submit(&http, api, json!({"kind":"sleep","ms":20})).await;
    assert_eq!(ended(&http, api, &id).await["status"], "succeeded");
    let again = get(&http, api, &format!("/v1/jobs/{id}?wait=false")).await;
    assert_eq!(again.body["status"], "succeeded");

    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_a_503_with_retry_after() {
    let node = start(Config {
        queue_limit: 1,
        policy: Policy::Local,
        ..config(1)
    })
    .await;
    let http = http();
    let api = node.api_addr();
    let slow = json!({"kind":"sleep","ms":600000});
    let (_, first) = submit(&http, api, slow.clone()).await;
    assert_eq!(first.body["status"], "running");
    let (_, second) = submit(&http, api, slow.clone()).await;
    assert_eq!(second.body["status"], "queued");

    let refused = post(&http, api, "/v1/jobs", slow.clone()).await;
    refused.assert_error(503, "no_capacity", None);
    assert_eq!(refused.headers[RETRY_AFTER], "1");
    // A job placed by its client (`?place=here`) is refused alike; so is a peer's offer.
    let pinned = post(&http, api, "/v1/jobs?place=here", slow.clone()).await;
    pinned.assert_error(503, "no_capacity", None);
    assert_eq!(pinned.headers[RETRY_AFTER], "1");
    let cluster = get(&http, api, "/v1/cluster").await;
    let offer = json!({
        "id": "00000000000000aa", "entry": "elsewhere",
        "incarnation": cluster.body["incarnation"], "kind": "forward",
        "path": ["elsewhere"], "job": slow,
    });
    let offered = call(
        &http,
        Method::POST,
        api,
        "/v1/peer/offer",
        &[],
        offer.to_string(),
    )
    .await;
    assert_eq!(offered.body["answer"], "refused", "{offered:?}");
    assert_eq!(offered.body["reason"], "full", "{offered:?}");

    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_no_node_in_reach_has_room_the_answer_is_503() {
    let nodes = cluster(2, |_, config| config.queue_limit = 0).await;
    let http = http();
    let api = nodes[0].api_addr();
    let slow = json!({"kind":"sleep","ms":600000});
    // Both idle: a tie, which goes to the entry node; then it is full, so the peer runs one.
    let (_, here) = submit(&http, api, slow.clone()).await;
    assert_eq!(here.body["executing_node"], nodes[0].id().as_str());
    let (_, there) = submit(&http, api, slow.clone()).await;
    assert_eq!(
        there.body["executing_node"],
        nodes[1].id().as_str(),
        "{there:?}"
    );

    let refused = post(&http, api, "/v1/jobs", slow.clone()).await;
    refused.assert_error(503, "no_capacity", None);
    assert_eq!(refused.headers[RETRY_AFTER], "1");
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(nodes[1].id().as_str()),
        "the peer was asked too: {message}"
    );

    leave_all(&nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_is_refused_naming_the_field() {
    let node = start(config(1)).await;
    let http = http();
    let api = node.api_addr();

    let bad_jobs: [(&str, &str); 12] = [
        ("not json", "body"),
        ("[1,2]", "body"),
        (r#"{"ms":5}"#, "kind"),
        (r#"{"kind":"fly","ms":5}"#, "kind"),
        (r#"{"kind":"sleep"}"#, "ms"),
        (r#"{"kind":"sleep","ms":-1}"#, "ms"),
        (r#"{"kind":"spin","ms":3600001}"#, "ms"),
        (r#"{"kind":"sleep","ms":"5"}"#, "ms"),
        (r#"{"kind":"sleep","ms":5,"colour":"red"}"#, "colour"),
        (r#"{"kind":"echo"}"#, "data"),
        (r#"{"kind":"sleep","ms":5,"timeout_ms":0}"#, "timeout_ms"),
        (
            r#"{"kind":"sleep","ms":5,"timeout_ms":99999999}"#,
            "timeout_ms",
        ),
    ];
    for (body, field) in bad_jobs {
        let answer = call(&http, Method::POST, api, "/v1/jobs", &[], body.to_owned()).await;
        answer.assert_error(400, "invalid_job", Some(field));
    }

    let huge = format!(r#"{{"kind":"echo","data":"{}"}}"#, "x".repeat(1024 * 1024));
    let answer = call(&http, Method::POST, api, "/v1/jobs", &[], huge).await;
    answer.assert_error(413, "body_too_large", Some("body"));

    let sleep = json!({"kind":"sleep","ms":1});
    for (path, field) in [
        ("/v1/jobs?wait=maybe", "wait"),
        ("/v1/jobs?wait", "wait"),
        ("/v1/jobs?wait=true&wait=true", "wait"),
        ("/v1/jobs?colour=red", "colour"),
    ] {
        post(&http, api, path, sleep.clone())
            .await
            .assert_error(400, "invalid_query", Some(field));
    }

    get(&http, api, "/v1/jobs/0123456789abcdef")
        .await
        .assert_error(404, "unknown_job", None);
    for bad_id in [
        "xyz",
        "0123456789abcdeg",
        "0123456789abcdef0",
        "-123456789abcdef",
    ] {
        get(&http, api, &format!("/v1/jobs/{bad_id}"))
            .await
            .assert_error(400, "invalid_job_id", Some("id"));
    }
    get(&http, api, "/v1/jobs/0123456789abcdef?wait=soon")
        .await
        .assert_error(400, "invalid_query", Some("wait"));
    get(&http, api, "/v1/jobs/a/b")
        .await
        .assert_error(404, "not_found", None);

    let wrong = call(&http, Method::DELETE, api, "/v1/jobs", &[], "").await;
    wrong.assert_error(405, "method_not_allowed", None);
    assert_eq!(wrong.headers[ALLOW], "GET, HEAD, POST");
    // DELETE cancels (tests/tests/cancel.rs); another method is refused.
    let wrong = call(
        &http,
        Method::PUT,
        api,
        "/v1/jobs/0123456789abcdef",
        &[],
        "{}",
    )
    .await;
    wrong.assert_error(405, "method_not_allowed", None);
    assert_eq!(wrong.headers[ALLOW], "GET, HEAD, DELETE");
    let wrong = call(&http, Method::PUT, api, "/v1/jobs", &[], "{}").await;
    wrong.assert_error(405, "method_not_allowed", None);

    // The peer routes: POST only, bodies checked field by field.
    let wrong = call(&http, Method::GET, api, "/v1/peer/ask", &[], "").await;
    wrong.assert_error(405, "method_not_allowed", None);
    assert_eq!(wrong.headers[ALLOW], "POST");
    let cluster = get(&http, api, "/v1/cluster").await;
    let incarnation = cluster.body["incarnation"].as_u64().unwrap();
    let offer = json!({
        "id": "00000000000000ab", "entry": "entry-1", "incarnation": incarnation,
        "kind": "forward", "path": ["entry-1"], "job": sleep,
    });
    let with = |name: &str, value: Value| {
        let mut body = offer.clone();
        body[name] = value;
        body
    };
    let mut without_id = offer.clone();
    without_id.as_object_mut().unwrap().remove("id");
    let malformed = [
        (with("kind", json!("jump")), "kind"),
        (with("id", json!("12")), "id"),
        (with("entry", json!("no spaces")), "entry"),
        (with("path", json!([])), "path"),
        (with("job", json!({"kind": "sleep", "ms": "x"})), "job.ms"),
        (with("hops", json!(1)), "hops"),
        (without_id, "id"),
    ];
    for (body, field) in malformed {
        call(
            &http,
            Method::POST,
            api,
            "/v1/peer/offer",
            &[],
            body.to_string(),
        )
        .await
        .assert_error(400, "invalid_peer_request", Some(field));
    }
    call(
        &http,
        Method::POST,
        api,
        "/v1/peer/ask",
        &[],
        r#"{"id":"00000000000000ab"}"#,
    )
    .await
    .assert_error(400, "invalid_peer_request", Some("wait"));
    // An offer meant for another incarnation of this node is refused, nothing runs.
    let stale = with("incarnation", json!(incarnation - 1)).to_string();
    let refused = call(&http, Method::POST, api, "/v1/peer/offer", &[], stale).await;
    assert_eq!(refused.body["answer"], "refused", "{refused:?}");
    assert_eq!(refused.body["reason"], "wrong_incarnation", "{refused:?}");
    let accepted = call(
        &http,
        Method::POST,
        api,
        "/v1/peer/offer",
        &[],
        offer.to_string(),
    )
    .await;
    assert_eq!(accepted.status, 200, "{accepted:?}");
    assert_eq!(accepted.body["answer"], "accepted", "{accepted:?}");
    let outcome = ended(&http, api, "00000000000000ab").await;
    assert_eq!(outcome["entry_node"], "entry-1");
    assert_eq!(outcome["hops"], 1);
    // The same offer again runs nothing new: it is taken as it stands.
    let again = call(
        &http,
        Method::POST,
        api,
        "/v1/peer/offer",
        &[],
        offer.to_string(),
    )
    .await;
    assert_eq!(again.body["answer"], "accepted", "{again:?}");
    // As the core has it: the executor's word of the end may still be on its way to it.
    assert!(
        ["running", "succeeded"].contains(&again.body["status"].as_str().unwrap_or("")),
        "{again:?}"
    );
    assert_eq!(
        ended(&http, api, "00000000000000ab").await,
        outcome,
        "nothing ran again"
    );

    // A steal from an idle node: nothing to give, and the answer carries the node's own
    // report, fresher than gossip's, for the thief's map. A bad steal body names its field.
    let steal = json!({"thief": "entry-1", "incarnation": incarnation});
    let empty = call(
        &http,
        Method::POST,
        api,
        "/v1/peer/steal",
        &[],
        steal.to_string(),
    )
    .await;
    assert_eq!(empty.status, 200, "{empty:?}");
    assert_eq!(empty.body["answer"], "empty", "{empty:?}");
    assert_eq!(empty.body["load"]["node"], node.id().as_str(), "{empty:?}");
    assert_eq!(empty.body["load"]["load"]["queued"], 0, "{empty:?}");
    assert_eq!(empty.body["load"]["incarnation"], incarnation, "{empty:?}");
    let bad = json!({"thief": "entry-1", "incarnation": "x"}).to_string();
    call(&http, Method::POST, api, "/v1/peer/steal", &[], bad)
        .await
        .assert_error(400, "invalid_peer_request", Some("incarnation"));

    // After all that, the node still works.
    let echo = post(
        &http,
        api,
        "/v1/jobs?wait=true",
        json!({"kind":"echo","data":"ok"}),
    )
    .await;
    assert_eq!(echo.body["output"], "ok", "{echo:?}");

    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_jobs_run_off_the_runtime() {
    let node = start(Config {
        slots: Some(2),
        ..config(1)
    })
    .await;
    let http = http();
    let api = node.api_addr();
    // Two slots, two spins: if they ran on the runtime's two threads, nothing else would run
    // until they ended, and the API could not answer while they are running.
    let (timed, _) = submit(
        &http,
        api,
        json!({"kind":"spin","ms":600000,"timeout_ms":2000}),
    )
    .await;
    let (endless, _) = submit(&http, api, json!({"kind":"spin","ms":600000})).await;

    let health = get(&http, api, "/healthz").await;
    assert_eq!(health.status, 200);
    for id in [&timed, &endless] {
        let now = get(&http, api, &format!("/v1/jobs/{id}")).await;
        assert_eq!(
            now.body["status"], "running",
            "answered while spinning: {now:?}"
        );
    }
    let cluster = get(&http, api, "/v1/cluster").await;
    assert_eq!(cluster.status, 200);

    let timed_out = ended(&http, api, &timed).await;
    assert_eq!(timed_out["status"], "timed_out", "{timed_out}");

    // The endless one is stopped by the drain's end, and a waiting client learns it.
    let waiter = {
        let (http, path) = (http.clone(), format!("/v1/jobs/{endless}?wait=true"));
        tokio::spawn(async move { get(&http, api, &path).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    node.shutdown();
    let lost = tokio::time::timeout(PATIENCE, waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lost.body["status"], "lost", "{lost:?}");
    assert_eq!(lost.body["error"], "node left before it finished");
    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_node_refuses_new_jobs_and_finishes_the_others() {
    let node = start(Config {
        drain_timeout: 30_000,
        ..config(1)
    })
    .await;
    let http = http();
    let api = node.api_addr();
    let waiter = {
        let http = http.clone();
        tokio::spawn(async move {
            post(
                &http,
                api,
                "/v1/jobs?wait=true",
                json!({"kind":"sleep","ms":300}),
            )
            .await
        })
    };
    // The waiting job is in its slot once the queue behind it is used.
    let queued = loop {
        let (id, answer) = submit(&http, api, json!({"kind":"sleep","ms":100})).await;
        if answer.body["status"] == "queued" {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };

    node.shutdown();
    let refused = post(&http, api, "/v1/jobs", json!({"kind":"sleep","ms":1})).await;
    refused.assert_error(503, "leaving", None);
    assert_eq!(refused.headers[RETRY_AFTER], "1");

    let first = tokio::time::timeout(PATIENCE, waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["status"], "succeeded");
    assert_eq!(ended(&http, api, &queued).await["status"], "succeeded");
    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_job_whose_node_dies_is_recorded_lost() {
    let nodes = cluster(2, |_, _| {}).await;
    let http = http();
    let (entry, peer) = (&nodes[0], &nodes[1]);
    let api = entry.api_addr();
    // The entry node's slot is busy, so the next job goes to the idle peer.
    let (_, here) = submit(&http, api, json!({"kind":"sleep","ms":600000})).await;
    assert_eq!(here.body["executing_node"], entry.id().as_str());
    let (id, there) = submit(&http, api, json!({"kind":"sleep","ms":600000})).await;
    assert_eq!(
        there.body["executing_node"],
        peer.id().as_str(),
        "{there:?}"
    );
    let through_entry = get(&http, api, &format!("/v1/jobs/{id}")).await;
    assert_eq!(through_entry.body["executing_node"], peer.id().as_str());
    assert_eq!(through_entry.body["hops"], 1);

    peer.kill();
    tokio::time::timeout(PATIENCE, peer.join())
        .await
        .expect("a killed node stops");
    let lost = ended(&http, api, &id).await;
    assert_eq!(lost["status"], "lost", "{lost}");
    let error = lost["error"].as_str().unwrap();
    // This node cannot tell a dead peer from a frozen or cut-off one: it says what it knows.
    assert!(
        error.contains(peer.id().as_str())
            && error.contains("stopped answering")
            && error.contains("may have finished there")
            && !error.contains("died"),
        "{error}"
    );

    // A job submitted now does not vanish into the dead peer either.
    let answer = post(&http, api, "/v1/jobs", json!({"kind":"echo","data":"x"})).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(answer.body["executing_node"], entry.id().as_str());

    leave_all(&nodes).await;
}
