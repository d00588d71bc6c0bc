//! `GET /v1/jobs` on nodes started in-process on 127.0.0.1: every job a node holds, by id, a
//! page at a time; filtered by status; bad parameters refused naming them; an entry node lists
//! the jobs it forwarded, and the node that ran them lists them too; the token needed on a
//! guarded node.
//!
//! Every wait is bounded by [`PATIENCE`]; nothing is asserted about how long anything took.

mod common;

use std::net::SocketAddr;

use common::{cluster_of, config, http, leave_all, request, request_with, submit, Http, PATIENCE};
use hearsay_worker::auth::ApiToken;
use hearsay_worker::Node;
use hyper::header::ALLOW;
use hyper::Method;
use serde_json::{json, Value};

/// `GET path`: the status and the body as JSON.
async fn get(http: &Http, api: SocketAddr, path: &str) -> (u16, Value) {
    let answer = request(http, Method::GET, api, path, "").await;
    let body = serde_json::from_slice(&answer.body).expect("a JSON answer");
    (answer.status, body)
}

/// The ids of a page, and its `next`.
fn ids(page: &Value) -> (Vec<String>, Value) {
    let jobs = page["jobs"].as_array().expect("a list of jobs");
    let ids = jobs
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    (ids, page["next"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_of_a_node_are_listed_by_id_a_page_at_a_time() {
    let node = Node::start(config(1, 1, 50)).await.expect("start node");
    let (http, api) = (http(), node.api_addr());

    let (status, empty) = get(&http, api, "/v1/jobs").await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty, json!({"jobs": [], "next": null}));

    // Two that end, one that runs, two that wait behind it (one slot).
    let mut done = Vec::new();
    for data in ["a", "b"] {
        let job = json!({"kind": "echo", "data": data});
        let answer = submit(&http, api, "/v1/jobs?wait=true", &job).await;
        assert_eq!(answer["status"], "succeeded", "{answer}");
        done.push(answer["id"].as_str().unwrap().to_owned());
    }
    let mut waiting = Vec::new();
    for _ in 0..3 {
        let job = json!({"kind": "sleep", "ms": 600_000});
        let answer = submit(&http, api, "/v1/jobs", &job).await;
        waiting.push(answer["id"].as_str().unwrap().to_owned());
    }
    let mut all: Vec<String> = done.iter().chain(&waiting).cloned().collect();
    all.sort();

    // Wait (bounded) until the first sleep is in the slot.
    let running = tokio::time::timeout(PATIENCE, async {
        loop {
            let (_, page) = get(&http, api, "/v1/jobs?status=running").await;
            if page["jobs"].as_array().is_some_and(|j| j.len() == 1) {
                return page;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a sleep job runs");
    assert_eq!(running["jobs"][0]["status"], "running");
    assert_eq!(running["jobs"][0]["kind"], "sleep");
    assert_eq!(running["next"], Value::Null);

    // All of them, by id, each as it stands.
    let (status, page) = get(&http, api, "/v1/jobs").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), (all.clone(), Value::Null));
    for job in page["jobs"].as_array().unwrap() {
        let id = job["id"].as_str().unwrap();
        let (_, one) = get(&http, api, &format!("/v1/jobs/{id}")).await;
        assert_eq!(job["status"], one["status"], "{id}");
        assert_eq!(job["entry_node"], one["entry_node"], "{id}");
        assert!(
            job.get("output").is_none(),
            "a list carries no output: {job}"
        );
    }

    // By status, one or several.
    let (_, page) = get(&http, api, "/v1/jobs?status=succeeded").await;
    let mut want = done.clone();
    want.sort();
    assert_eq!(ids(&page), (want, Value::Null));
    let (_, page) = get(&http, api, "/v1/jobs?status=queued,running").await;
    let mut want = waiting.clone();
    want.sort();
    assert_eq!(ids(&page), (want, Value::Null));
    let (_, page) = get(&http, api, "/v1/jobs?status=failed,lost").await;
    assert_eq!(ids(&page), (vec![], Value::Null));

    // Two at a time, each page after the last id of the one before.
    let mut seen = Vec::new();
    let mut path = "/v1/jobs?limit=2".to_owned();
    for pages in 1.. {
        let (status, page) = get(&http, api, &path).await;
        assert_eq!(status, 200, "{page}");
        let (got, next) = ids(&page);
        assert!(got.len() <= 2, "{page}");
        seen.extend(got.clone());
        match next.as_str() {
            Some(next) => {
                assert_eq!(Some(next), got.last().map(String::as_str), "{page}");
                path = format!("/v1/jobs?limit=2&after={next}");
            }
            None => {
                assert_eq!(pages, 3, "five jobs are three pages of two");
                break;
            }
        }
    }
    assert_eq!(seen, all);
    let (_, page) = get(&http, api, &format!("/v1/jobs?after={}", all[4])).await;
    assert_eq!(ids(&page), (vec![], Value::Null));

    // Bad parameters, each named.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=two", "limit"),
        ("status=bogus", "status"),
        ("status=queued,bogus", "status"),
        ("after=xyz", "after"),
        ("wait=true", "wait"),
    ] {
        let (status, body) = get(&http, api, &format!("/v1/jobs?{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{query}: {body}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    let (status, _) = get(&http, api, "/v1/jobs?limit=1000").await;
    assert_eq!(status, 200);

    let head = request(&http, Method::HEAD, api, "/v1/jobs", "").await;
    assert_eq!(head.status, 200);
    let wrong = request(&http, Method::DELETE, api, "/v1/jobs", "").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers[ALLOW], "GET, HEAD, POST");

    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guarded_node_lists_its_jobs_only_with_the_token() {
    const TOKEN: &str = "list-test-token-0123456789abcdef";
    let mut config = config(2, 1, 50);
    config.api_token = Some(ApiToken::new(TOKEN).unwrap());
    let node = Node::start(config).await.expect("start node");
    let (http, api) = (http(), node.api_addr());

    let refused = request(&http, Method::GET, api, "/v1/jobs", "").await;
    assert_eq!(refused.status, 401);
    let auth = format!("Bearer {TOKEN}");
    let headers = [("authorization", auth.as_str())];
    let wrong = [("authorization", "Bearer another-token-0123456789abcdef")];
    let refused = request_with(&http, Method::GET, api, "/v1/jobs", &wrong, "").await;
    assert_eq!(refused.status, 401);
    let answer = request_with(&http, Method::GET, api, "/v1/jobs", &headers, "").await;
    assert_eq!(answer.status, 200);
    let page: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(page, json!({"jobs": [], "next": null}));

    leave_all(&[node]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_node_lists_the_jobs_it_forwarded_as_it_knows_them() {
    let nodes = cluster_of(vec![config(3, 1, 50), config(4, 1, 50)]).await;
    let http = http();
    let (entry, other) = (nodes[0].api_addr(), nodes[1].api_addr());

    // Enough short jobs at once that some are placed on the other node (wherever they go, the
    // entry answers for all of them).
    let mut submitted = Vec::new();
    for _ in 0..8 {
        let answer = submit(
            &http,
            entry,
            "/v1/jobs",
            &json!({"kind": "sleep", "ms": 50}),
        )
        .await;
        submitted.push(answer["id"].as_str().unwrap().to_owned());
    }
    for id in &submitted {
        let answer = request(
            &http,
            Method::GET,
            entry,
            &format!("/v1/jobs/{id}?wait=true"),
            "",
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    submitted.sort();

    let (status, page) = get(&http, entry, "/v1/jobs").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), (submitted.clone(), Value::Null));
    let entry_name = page["jobs"][0]["entry_node"].clone();
    for job in page["jobs"].as_array().unwrap() {
        let id = job["id"].as_str().unwrap();
        let (_, one) = get(&http, entry, &format!("/v1/jobs/{id}")).await;
        assert_eq!(job["status"], one["status"], "{id}");
        assert_eq!(job["executing_node"], one["executing_node"], "{id}");
        assert_eq!(job["entry_node"], entry_name, "{id}");
    }

    // The other node lists the ones it ran (if any), and only jobs of this test.
    let ran_there: Vec<String> = page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["executing_node"] != entry_name)
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    let (status, theirs) = get(&http, other, "/v1/jobs").await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(ids(&theirs), (ran_there, Value::Null));

    leave_all(&nodes).await;
}
