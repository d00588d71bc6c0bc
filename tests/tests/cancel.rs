//! Cancelling jobs (`DELETE /v1/jobs/{id}`) and draining a node (`POST /v1/drain`) against real
//! `worker` processes on loopback addresses of their own:
//!
//! - a queued job (behind a slot filled with a long sleep) is cancelled: `200`, then shown
//!   `cancelled` by `GET /v1/jobs/{id}` and `GET /v1/jobs?status=cancelled`, counted in the
//!   metrics, and a client waiting on it (`?wait=true` submit, a `?wait=true` read) hears the
//!   cancelled end; a running one is `409 job_running` and stopped with `?force=true`; an ended
//!   one is `409 job_ended`; an unknown one `404`; a bad query `400 invalid_query` naming it;
//! - a job its entry node forwarded is cancelled through the entry node, at the node that
//!   holds it, and both then show it cancelled;
//! - a node drained over the API answers `202`, hands its queued jobs to its peer, which runs
//!   them (none lost), finishes its running one, and exits 0; its peer sees it leave.
//!
//! Every wait is on a condition, bounded; nothing is asserted about how long anything took.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use hearsay_tests::cluster::{
    all_alive, all_see, get_json, post_json, wait_until, WorkerProcess, WorkerSpec,
};
use serde_json::{json, Value};

/// The bound of every wait on a condition.
const PATIENCE: Duration = Duration::from_secs(30);
/// A sleep that outlasts any test.
const LONG: u64 = 600_000;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// `DELETE path`: the status and the body as JSON.
fn delete(api: SocketAddr, path: &str) -> Result<(u16, Value)> {
    let mut response = agent()
        .delete(&format!("http://{api}{path}"))
        .call()
        .with_context(|| format!("DELETE http://{api}{path}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// `GET path` whatever the status: the status and the body as JSON.
fn get(api: SocketAddr, path: &str) -> Result<(u16, Value)> {
    let mut response = agent()
        .get(&format!("http://{api}{path}"))
        .call()
        .with_context(|| format!("GET http://{api}{path}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// Submits `job` to `api` (at `path`): the answer, which must be a `202` (or `200` with wait).
fn submit(api: SocketAddr, path: &str, job: &Value) -> Result<Value> {
    let (status, body) = post_json(api, path, job, &[], Duration::from_secs(30))?;
    anyhow::ensure!(status == 202 || status == 200, "{path}: {status} {body}");
    Ok(body)
}

fn id_of(answer: &Value) -> String {
    answer["id"].as_str().expect("an id").to_owned()
}

/// Waits until job `id` at `api` has `status`.
fn await_status(api: SocketAddr, id: &str, status: &str) -> Result<()> {
    wait_until(PATIENCE, || {
        Ok(get_json(api, &format!("/v1/jobs/{id}"))?["status"] == status)
    })
    .with_context(|| format!("job {id} at {api} becomes {status}"))?;
    Ok(())
}

/// The ids of the jobs at `api` listed by `GET /v1/jobs?status=…`.
fn listed(api: SocketAddr, status: &str) -> Result<Vec<String>> {
    let page = get_json(api, &format!("/v1/jobs?status={status}"))?;
    Ok(page["jobs"]
        .as_array()
        .context("a list")?
        .iter()
        .filter_map(|j| j["id"].as_str().map(str::to_owned))
        .collect())
}

/// `hearsay_jobs_completed_total{outcome="…"}` of the node at `api`.
fn completed(api: SocketAddr, outcome: &str) -> Result<f64> {
    let (_, text) = hearsay_tests::cluster::get_text(api, "/metrics")?;
    let prefix = format!("hearsay_jobs_completed_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
        .with_context(|| format!("no {prefix} in the metrics"))
}

/// A worker of one slot (the kit's) with `args`, once its API answers.
fn start(id: &str, seeds: Vec<SocketAddr>, args: &[&str]) -> Result<WorkerProcess> {
    let mut spec = WorkerSpec::new(id, seeds);
    spec.args = args.iter().map(|s| (*s).to_owned()).collect();
    let worker = WorkerProcess::start(spec)?;
    let api = worker.spec.api();
    wait_until(PATIENCE, || Ok(get_json(api, "/healthz").is_ok()))?;
    Ok(worker)
}

#[test]
fn a_queued_job_is_cancelled_a_running_one_only_if_forced() -> Result<()> {
    let worker = start("cancel0", vec![], &["--queue-limit", "8", "--steal", "off"])?;
    let api = worker.spec.api();
    let running = id_of(&submit(
        api,
        "/v1/jobs",
        &json!({"kind": "sleep", "ms": LONG}),
    )?);
    await_status(api, &running, "running")?;
    let queued = id_of(&submit(
        api,
        "/v1/jobs",
        &json!({"kind": "sleep", "ms": LONG}),
    )?);
    assert_eq!(
        get_json(api, &format!("/v1/jobs/{queued}"))?["status"],
        "queued"
    );

    // A reader waiting on the queued job hears its cancelled end.
    let reader = {
        let path = format!("/v1/jobs/{queued}?wait=true");
        std::thread::spawn(move || get(api, &path))
    };
    // A submitter waiting (`?wait=true`) on a job of its own, queued behind the first.
    let submitter = std::thread::spawn(move || {
        post_json(
            api,
            "/v1/jobs?wait=true",
            &json!({"kind": "sleep", "ms": LONG}),
            &[],
            PATIENCE,
        )
    });
    let mut waited = String::new();
    wait_until(PATIENCE, || {
        let ids = listed(api, "queued")?;
        match ids.into_iter().find(|id| *id != queued) {
            Some(id) => {
                waited = id;
                Ok(true)
            }
            None => Ok(false),
        }
    })?;

    let (status, body) = delete(api, &format!("/v1/jobs/{queued}"))?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], queued.as_str());
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["error"], "cancelled before it ran");
    assert_eq!(
        get_json(api, &format!("/v1/jobs/{queued}"))?["status"],
        "cancelled"
    );
    assert_eq!(listed(api, "cancelled")?, vec![queued.clone()]);
    let (status, heard) = reader.join().expect("the reader")?;
    assert_eq!(
        (status, &heard["status"]),
        (200, &json!("cancelled")),
        "{heard}"
    );

    let (status, body) = delete(api, &format!("/v1/jobs/{waited}"))?;
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("cancelled")),
        "{body}"
    );
    let (status, heard) = submitter.join().expect("the submitter")?;
    assert_eq!(
        (status, &heard["status"]),
        (200, &json!("cancelled")),
        "{heard}"
    );
    assert_eq!(heard["id"], waited.as_str());

    // Running: refused unless forced; the refusal names the reason.
    let (status, body) = delete(api, &format!("/v1/jobs/{running}"))?;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "job_running");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("force"),
        "{body}"
    );
    assert_eq!(
        get_json(api, &format!("/v1/jobs/{running}"))?["status"],
        "running"
    );

    // Bad queries, ids and unknown jobs, as GET answers them.
    for (query, field) in [
        ("force=maybe", "force"),
        ("wait=true", "wait"),
        ("force=true&force=true", "force"),
    ] {
        let (status, body) = delete(api, &format!("/v1/jobs/{running}?{query}"))?;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{query}");
        assert_eq!(body["error"]["field"], field, "{query}");
    }
    let (status, body) = delete(api, "/v1/jobs/xyz")?;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_job_id"))
    );
    let (status, body) = delete(api, "/v1/jobs/0000000000000001")?;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("unknown_job"))
    );
    assert_eq!(
        get_json(api, &format!("/v1/jobs/{running}"))?["status"],
        "running"
    );

    // Forced: stopped, and the answer is its end.
    let (status, body) = delete(api, &format!("/v1/jobs/{running}?force=true"))?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["error"], "cancelled while it ran (forced)");
    // Its slot is free again: a new job runs.
    let echo = submit(
        api,
        "/v1/jobs?wait=true",
        &json!({"kind": "echo", "data": "x"}),
    )?;
    assert_eq!(echo["status"], "succeeded", "{echo}");

    // Ended: nothing to cancel, and the answer says how it ended.
    for (id, how) in [(&running, "cancelled"), (&id_of(&echo), "succeeded")] {
        let (status, body) = delete(api, &format!("/v1/jobs/{id}?force=true"))?;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "job_ended");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(how),
            "{body}"
        );
    }
    assert_eq!(completed(api, "cancelled")?, 3.0);
    Ok(())
}

#[test]
fn a_forwarded_job_is_cancelled_through_its_entry_node() -> Result<()> {
    // The entry node has one slot and no queue: a second job is forwarded. Its peer's one slot
    // is filled first, so that the forwarded job waits in the peer's queue.
    let entry = start(
        "fwd0",
        vec![],
        &[
            "--queue-limit",
            "0",
            "--steal",
            "off",
            "--gossip-interval",
            "100",
        ],
    )?;
    let peer = start(
        "fwd1",
        vec![entry.spec.gossip()],
        &[
            "--queue-limit",
            "8",
            "--steal",
            "off",
            "--gossip-interval",
            "100",
        ],
    )?;
    wait_until(PATIENCE, || all_alive(&[&entry, &peer]))?;
    let (e, p) = (entry.spec.api(), peer.spec.api());
    let long = json!({"kind": "sleep", "ms": LONG});
    let busy_e = id_of(&submit(e, "/v1/jobs?place=here", &long)?);
    let busy_p = id_of(&submit(p, "/v1/jobs?place=here", &long)?);
    await_status(e, &busy_e, "running")?;
    await_status(p, &busy_p, "running")?;
    // Until the entry node's map shows its peer busy but with room in its queue.
    wait_until(PATIENCE, || {
        let view = entry.cluster()?;
        let nodes = view["nodes"].as_array().context("nodes")?;
        Ok(nodes
            .iter()
            .any(|n| n["id"] == "fwd1" && n["load"]["running"] == 1))
    })?;

    let forwarded = submit(e, "/v1/jobs", &long)?;
    assert_eq!(forwarded["executing_node"], "fwd1", "{forwarded}");
    let id = id_of(&forwarded);
    await_status(p, &id, "queued")?;

    let (status, body) = delete(e, &format!("/v1/jobs/{id}"))?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "cancelled");
    assert_eq!(body["executing_node"], "fwd1");
    assert_eq!(body["entry_node"], "fwd0");
    assert_eq!(
        get_json(p, &format!("/v1/jobs/{id}"))?["status"],
        "cancelled"
    );
    // The entry node follows it to its end.
    await_status(e, &id, "cancelled")?;
    let (status, body) = delete(e, &format!("/v1/jobs/{id}"))?;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("job_ended")),
        "{body}"
    );

    // A running job held at the peer: refused through the entry node too, as the peer says.
    let (status, body) = delete(p, &format!("/v1/jobs/{busy_p}"))?;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("job_running")),
        "{body}"
    );
    // The peer's queue still runs: its slot is busy, the next job waits, none was lost.
    assert_eq!(
        get_json(p, &format!("/v1/jobs/{busy_p}"))?["status"],
        "running"
    );
    Ok(())
}

#[test]
fn a_node_drained_over_the_api_hands_its_queue_on_and_exits_0() -> Result<()> {
    let args = ["--queue-limit", "8", "--gossip-interval", "100"];
    let mut leaving = start("drain0", vec![], &args)?;
    let d = leaving.spec.api();

    // One job runs on the leaving node (its submitter waits for it), three wait behind it,
    // queued while the node is alone (a job pinned with ?place=here would never move).
    let short = json!({"kind": "sleep", "ms": 1000});
    let first = std::thread::spawn(move || {
        post_json(d, "/v1/jobs?wait=true&place=here", &short, &[], PATIENCE)
    });
    wait_until(PATIENCE, || Ok(listed(d, "running")?.len() == 1))?;
    let mut queued = Vec::new();
    for n in 0..3 {
        let job = json!({"kind": "echo", "data": format!("q{n}")});
        let answer = submit(d, "/v1/jobs", &job)?;
        assert_eq!(answer["status"], "queued", "{answer}");
        queued.push(id_of(&answer));
    }
    // Its peer, which does not steal: only the drain moves the queue.
    let stays = start(
        "drain1",
        vec![leaving.spec.gossip()],
        &["--gossip-interval", "100", "--steal", "off"],
    )?;
    wait_until(PATIENCE, || all_alive(&[&leaving, &stays]))?;
    let s = stays.spec.api();
    assert_eq!(
        listed(d, "queued")?.len(),
        3,
        "nothing moved before the drain"
    );

    let (status, body) = post_json(d, "/v1/drain", &json!({}), &[], PATIENCE)?;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["node"], "drain0");
    assert_eq!(body["status"], "leaving");
    assert_eq!(body["already_leaving"], false);
    assert_eq!(body["running"], 1);

    // The running job finishes where it runs, and its submitter hears it.
    let (status, end) = first.join().expect("the submitter")?;
    assert_eq!(
        (status, &end["status"]),
        (200, &json!("succeeded")),
        "{end}"
    );
    assert_eq!(end["executing_node"], "drain0");
    // The process exits 0, as on SIGTERM.
    let exit = leaving.wait_exit(PATIENCE)?;
    assert!(exit.success(), "drain0 exited with {exit}");
    // Its queued jobs ran at its peer: none lost.
    for id in &queued {
        let outcome = get_json(s, &format!("/v1/jobs/{id}"))?;
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        assert_eq!(outcome["executing_node"], "drain1", "{outcome}");
        assert_eq!(outcome["entry_node"], "drain0", "{outcome}");
    }
    wait_until(PATIENCE, || all_see(&[&stays], "drain0", "left"))?;
    Ok(())
}
