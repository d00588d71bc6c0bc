//! `hearsay`, the operators' client, against real workers (in-process nodes on loopback, real
//! HTTP and UDP): members as a table and as JSON, a job submitted and waited for, read and
//! followed, exit codes from a job's end, a key, and bad input refused with one line; the jobs
//! of a worker listed, filtered and paged; jobs cancelled (refused while running, forced, ended:
//! their exit codes) and nodes drained, by member id and the --api node itself.

mod common;

use std::process::Output;
use std::time::Duration;

use hearsay_scheduler::Policy;
use serde_json::Value;

/// Runs `hearsay --api ADDR args…` off the async runtime (so the nodes keep serving), bounded
/// by 60 s.
async fn hearsay(api: &str, args: &[&str]) -> Output {
    let mut all = vec!["--api".to_owned(), api.to_owned()];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearsay"))
            .args(&all)
            .env_remove("HEARSAY_API")
            .env_remove("HEARSAY_API_TOKEN_FILE")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("hearsay starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().ok();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait_with_output().expect("output")
    })
    .await
    .expect("the hearsay task")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The exit code, and stdout, of a run that printed no panic.
fn ran(out: &Output) -> (i32, String) {
    assert!(!stderr(out).contains("panicked"), "{}", stderr(out));
    (out.status.code().expect("an exit code"), stdout(out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_jobs_and_exit_codes_against_real_workers() {
    let nodes = common::start_nodes(2, Policy::P2c).await;
    let api = nodes[0].api_addr().to_string();

    let (code, table) = ran(&hearsay(&api, &["members"]).await);
    assert_eq!(code, 0, "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STARTED"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("t0 *") && lines[2].starts_with("t1"),
        "{table}"
    );
    assert!(
        lines[1].contains(&api) && lines[1].contains("alive"),
        "{table}"
    );
    let (code, json) = ran(&hearsay(&api, &["members", "--json"]).await);
    assert_eq!(code, 0);
    let view: Value = serde_json::from_str(json.trim()).expect("one JSON document");
    assert_eq!(view["nodes"].as_array().map(Vec::len), Some(2));

    let (code, out) = ran(&hearsay(
        &api,
        &["submit", "--kind", "echo", "--data", "hi", "--wait"],
    )
    .await);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("echo succeeded") && out.contains("output: hi"),
        "{out}"
    );

    // Submitted, then read and waited for by id.
    let (code, out) = ran(&hearsay(&api, &["submit", "--kind", "sleep", "--ms", "200"]).await);
    assert_eq!(code, 0);
    let id = out.trim().to_owned();
    assert_eq!(id.len(), 16, "{out}");
    let (code, out) = ran(&hearsay(&api, &["status", &id]).await);
    assert_eq!(code, 0);
    assert!(out.starts_with(&id), "{out}");
    let (code, out) = ran(&hearsay(&api, &["wait", &id, "--json"]).await);
    assert_eq!(code, 0);
    let outcome: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(outcome["status"], "succeeded");

    // The exit code says how the job ended: 4 for a timeout.
    let (code, out) = ran(&hearsay(
        &api,
        &[
            "submit",
            r#"{"kind":"sleep","ms":500,"timeout_ms":20}"#,
            "--wait",
        ],
    )
    .await);
    assert_eq!(code, 4, "{out}");
    assert!(out.contains("timed_out"), "{out}");

    // An idempotency key names the same job again.
    let key = ["submit", "--kind", "echo", "--data", "k", "--key", "once"];
    let first = ran(&hearsay(&api, &key).await).1;
    let again = ran(&hearsay(&api, &key).await).1;
    assert_eq!(first, again);

    // Refusals: one line, exit 1 for the worker's no, 2 for a bad command line.
    let out = hearsay(&api, &["submit", "--kind", "bogus"]).await;
    assert_eq!(ran(&out).0, 1);
    let text = stderr(&out);
    assert!(
        text.starts_with("hearsay: ") && text.contains("invalid_job") && text.lines().count() == 1,
        "{text}"
    );
    let out = hearsay(&api, &["status", "not-an-id"]).await;
    assert_eq!(ran(&out).0, 1);
    assert!(stderr(&out).contains("invalid_job_id"), "{}", stderr(&out));
    let out = hearsay(&api, &["submit", "--ms", "5"]).await;
    assert_eq!(ran(&out).0, 2);
    assert!(stderr(&out).contains("--kind"), "{}", stderr(&out));
    let out = hearsay("127.0.0.1:1", &["members"]).await;
    assert_eq!(ran(&out).0, 1);
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));

    let (code, key) = ran(&hearsay(&api, &["keygen"]).await);
    assert_eq!(code, 0);
    assert!(key.trim().len() == 64 && key.trim().chars().all(|c| c.is_ascii_hexdigit()));

    common::kill_all(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_filtered_and_paged() {
    let nodes = common::start_nodes(1, Policy::P2c).await;
    let api = nodes[0].api_addr().to_string();

    let mut ids = Vec::new();
    for data in ["a", "b"] {
        let submit = [
            "submit", "--kind", "echo", "--data", data, "--wait", "--json",
        ];
        let (code, out) = ran(&hearsay(&api, &submit).await);
        assert_eq!(code, 0, "{out}");
        let outcome: Value = serde_json::from_str(out.trim()).unwrap();
        ids.push(outcome["id"].as_str().unwrap().to_owned());
    }
    let (code, out) = ran(&hearsay(&api, &["submit", "--kind", "sleep", "--ms", "600000"]).await);
    assert_eq!(code, 0, "{out}");
    let sleeper = out.trim().to_owned();
    ids.push(sleeper.clone());
    ids.sort();

    // A table, by id.
    let (code, table) = ran(&hearsay(&api, &["jobs"]).await);
    assert_eq!(code, 0, "{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{table}"
    );
    let listed: Vec<&str> = lines[1..4]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(listed, ids, "{table}");
    assert_eq!(lines[4], "(3 jobs)", "{table}");

    // Filtered, as JSON.
    let (code, out) = ran(&hearsay(&api, &["jobs", "--status", "succeeded", "--json"]).await);
    assert_eq!(code, 0, "{out}");
    let page: Value = serde_json::from_str(out.trim()).expect("one JSON document");
    let jobs = page["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{out}");
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"), "{out}");
    assert!(jobs.iter().all(|j| j["id"] != sleeper.as_str()), "{out}");

    // Paged: two, then the rest after the cursor the first page printed.
    let (code, out) = ran(&hearsay(&api, &["jobs", "--limit", "2"]).await);
    assert_eq!(code, 0, "{out}");
    let hint = format!("(2 jobs; more with --after {})", ids[1]);
    assert_eq!(out.lines().last(), Some(hint.as_str()), "{out}");
    let (code, out) = ran(&hearsay(&api, &["jobs", "--limit", "2", "--after", &ids[1]]).await);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with(&ids[2]), "{out}");
    assert_eq!(out.lines().last(), Some("(1 job)"), "{out}");

    // A bad command line: exit 2, before asking the worker.
    for bad in [
        &["jobs", "--status", "bogus"][..],
        &["jobs", "--limit", "0"],
        &["jobs", "--limit", "1001"],
        &["jobs", "--after", "xyz"],
    ] {
        let out = hearsay(&api, bad).await;
        assert_eq!(ran(&out).0, 2, "{bad:?}: {}", stderr(&out));
    }

    common::kill_all(&nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_drain_against_real_workers() {
    let nodes = common::start_nodes(2, Policy::P2c).await;
    let api = nodes[0].api_addr().to_string();
    let sleep = r#"{"kind":"sleep","ms":600000}"#;

    // Three sleeps for two slots, all submitted to t0: two run, one waits in a queue.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (code, id) = ran(&hearsay(&api, &["submit", sleep]).await);
        assert_eq!(code, 0, "{id}");
        ids.push(id.trim().to_owned());
    }
    let status_of = |id: String| {
        let api = api.clone();
        async move {
            let (_, out) = ran(&hearsay(&api, &["status", "--json", &id]).await);
            let outcome: Value = serde_json::from_str(out.trim()).unwrap();
            outcome["status"].as_str().unwrap().to_owned()
        }
    };
    let (mut running, mut queued) = (String::new(), String::new());
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut statuses = Vec::new();
            for id in &ids {
                statuses.push(status_of(id.clone()).await);
            }
            let find = |s: &str| statuses.iter().position(|x| x == s);
            if let (Some(r), Some(q)) = (find("running"), find("queued")) {
                if statuses.iter().filter(|s| *s == "running").count() == 2 {
                    (running, queued) = (ids[r].clone(), ids[q].clone());
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("two run, one waits");
    let holder_api = api.clone();

    // Through the entry node (t0), wherever the job is.
    let (code, out) = ran(&hearsay(&api, &["cancel", &running]).await);
    assert_eq!(code, 7, "a running job: refused without --force");
    assert!(out.is_empty(), "{out}");
    let out = hearsay(&api, &["cancel", &running]).await;
    assert!(stderr(&out).contains("409 job_running"), "{}", stderr(&out));

    let (code, out) = ran(&hearsay(&holder_api, &["cancel", &queued, "--json"]).await);
    assert_eq!(code, 0, "{out}");
    let outcome: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(outcome["status"], "cancelled", "{out}");
    let (code, out) = ran(&hearsay(&holder_api, &["wait", &queued]).await);
    assert_eq!(code, 6, "a job waited for that was cancelled: {out}");
    let (code, _) = ran(&hearsay(&holder_api, &["cancel", &queued]).await);
    assert_eq!(code, 7, "ended: refused");

    let (code, out) = ran(&hearsay(&api, &["cancel", &running, "--force"]).await);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&running) && out.contains("cancelled"), "{out}");
    let (code, _) = ran(&hearsay(&api, &["cancel", "0000000000000001"]).await);
    assert_eq!(code, 1, "unknown: the worker refused");
    let (code, _) = ran(&hearsay(&api, &["cancel", "xyz"]).await);
    assert_eq!(code, 2, "a bad id: the command line");

    // The other sleep too, so that the drains wait for nothing.
    for id in &ids {
        hearsay(&api, &["cancel", id, "--force"]).await;
    }

    // Drain t1 through t0, by its member id: it leaves and its tasks end.
    let (code, _) = ran(&hearsay(&api, &["drain", "nobody"]).await);
    assert_eq!(code, 2, "not a member");
    let (code, out) = ran(&hearsay(&api, &["drain", "t1", "--json"]).await);
    assert_eq!(code, 0, "{out}");
    let answer: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answer["node"], "t1", "{out}");
    assert_eq!(answer["status"], "leaving", "{out}");
    tokio::time::timeout(Duration::from_secs(60), nodes[1].join())
        .await
        .expect("t1 leaves and stops");
    // And the --api node itself, without NODE.
    let (code, out) = ran(&hearsay(&api, &["drain"]).await);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("t0 is leaving"), "{out}");
    tokio::time::timeout(Duration::from_secs(60), nodes[0].join())
        .await
        .expect("t0 leaves and stops");
}
