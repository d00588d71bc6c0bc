//! `exec` jobs on real processes: declared commands run with their output, exit codes, output
//! caps and timeouts (the whole process group gone after one); undeclared commands and option
//! injection are refused; in a cluster, exec jobs go only to the nodes that declare the command,
//! even past a false positive of a gossiped command set.

mod common;

use std::path::PathBuf;

use common::{http, request, Http};
use hearsay_shared::offers::{command_bits, command_set};
use hearsay_worker::{Node, NodeHandle};
use hyper::Method;
use serde_json::{json, Value};

/// Writes a configuration file for this test process and returns its path.
fn config_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "hearsay-exec-test-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("write the config file");
    path
}

async fn start(
    seed: u64,
    slots: u32,
    config: Option<PathBuf>,
    seeds: Vec<std::net::SocketAddr>,
) -> NodeHandle {
    let mut c = common::config(seed, slots, 50);
    c.config_file = config;
    c.seeds.0 = seeds;
    Node::start(c).await.expect("start node")
}

/// Posts a job and returns the status and the JSON answer.
async fn post(http: &Http, node: &NodeHandle, job: &Value) -> (u16, Value) {
    let answer = request(
        http,
        Method::POST,
        node.api_addr(),
        "/v1/jobs?wait=true",
        &job.to_string(),
    )
    .await;
    let body = serde_json::from_slice(&answer.body).unwrap_or_else(|e| {
        panic!(
            "a JSON answer ({e}): {}",
            String::from_utf8_lossy(&answer.body)
        )
    });
    (answer.status, body)
}

/// The processes of group `pgid` that are not yet dead (zombies count as dead).
fn live_members(pgid: i32) -> Vec<i32> {
    let mut live = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 3 && fields[2] == pgid.to_string() && fields[0] != "Z" && fields[0] != "X"
        {
            live.push(pid);
        }
    }
    live
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_jobs_run_declared_programs_and_nothing_else() {
    let file = config_file(
        "one",
        r#"
        [commands.echo]
        program = "/bin/echo"
        args = ["{0}", "--and={1}"]

        [commands.cat]
        program = "/bin/cat"

        [commands.fail]
        program = "/bin/sh"
        args = ["-c", "echo out; echo oops >&2; exit 3"]

        [commands.flood]
        program = "/bin/sh"
        args = ["-c", "/usr/bin/yes | /usr/bin/head -c 300000; /usr/bin/yes e | /usr/bin/head -c 300000 >&2"]
        max_output_bytes = 1000

        [commands.env]
        program = "/usr/bin/env"

        [commands.linger]
        program = "/bin/sh"
        args = ["-c", "echo $$; /bin/sleep 30 & /bin/sleep 30"]
        timeout_ms = 60000
        "#,
    );
    let node = start(1, 4, Some(file.clone()), vec![]).await;
    let http = http();

    // A real program, its args in place, the option-looking literal of the template kept.
    let (status, echo) = post(
        &http,
        &node,
        &json!({"kind":"exec","command":"echo","args":["hello world","x"]}),
    )
    .await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["status"], "succeeded", "{echo}");
    assert_eq!(echo["kind"], "exec");
    let out = &echo["output"];
    assert_eq!(out["stdout"], "hello world --and=x\n", "{echo}");
    assert_eq!(out["exit_code"], 0);
    assert_eq!(out["signal"], Value::Null);
    assert_eq!(out["stdout_truncated"], false);

    // Standard input, written and closed.
    let (_, cat) = post(
        &http,
        &node,
        &json!({"kind":"exec","command":"cat","stdin":"line 1\nline 2\n"}),
    )
    .await;
    assert_eq!(cat["status"], "succeeded", "{cat}");
    assert_eq!(cat["output"]["stdout"], "line 1\nline 2\n");

    // A cleared environment: the worker's own variables do not leak.
    let (_, env) = post(&http, &node, &json!({"kind":"exec","command":"env"})).await;
    assert_eq!(env["status"], "succeeded", "{env}");
    assert_eq!(env["output"]["stdout"], "", "{env}");

    // A non-zero exit: failed, with the code and both streams.
    let (_, fail) = post(&http, &node, &json!({"kind":"exec","command":"fail"})).await;
    assert_eq!(fail["status"], "failed", "{fail}");
    assert_eq!(fail["output"]["exit_code"], 3);
    assert_eq!(fail["output"]["stdout"], "out\n");
    assert_eq!(fail["output"]["stderr"], "oops\n");
    assert!(fail["error"].as_str().unwrap().contains("code 3"), "{fail}");

    // Output over the cap: cut at the cap, flagged, and the program still ran to its end
    // (the rest of each stream was read and dropped, so it never blocked).
    let (_, flood) = post(&http, &node, &json!({"kind":"exec","command":"flood"})).await;
    assert_eq!(flood["status"], "succeeded", "{flood}");
    let out = &flood["output"];
    assert_eq!(out["stdout"].as_str().unwrap().len(), 1000);
    assert!(out["stdout"].as_str().unwrap().starts_with("y\ny\n"));
    assert_eq!(out["stdout_truncated"], true);
    assert_eq!(out["stderr"].as_str().unwrap().len(), 1000);
    assert_eq!(out["stderr_truncated"], true);

    // A timeout (the job's, lower than the command's): timed_out, and the whole process group
    // is gone — the shell and both sleeps, the one in the background included.
    let (_, linger) = post(
        &http,
        &node,
        &json!({"kind":"exec","command":"linger","timeout_ms":500}),
    )
    .await;
    assert_eq!(linger["status"], "timed_out", "{linger}");
    assert!(linger["run_ms"].as_u64().unwrap() < 20_000, "{linger}");
    assert_eq!(linger["output"]["signal"], 9, "{linger}");
    let pgid: i32 = linger["output"]["stdout"]
        .as_str()
        .unwrap()
        .trim()
        .parse()
        .expect("the shell printed its pid, which leads its group");
    assert!(
        live_members(pgid).is_empty(),
        "survivors of the job's group {pgid}: {:?}",
        live_members(pgid)
    );

    // Refused before anything runs: an undeclared command, option injection, wrong arg count.
    let (status, undeclared) = post(&http, &node, &json!({"kind":"exec","command":"rm"})).await;
    assert_eq!(status, 400, "{undeclared}");
    assert_eq!(undeclared["error"]["code"], "unknown_command");
    assert_eq!(undeclared["error"]["field"], "command");
    assert!(
        undeclared["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"rm\""),
        "{undeclared}"
    );
    let (status, dash) = post(
        &http,
        &node,
        &json!({"kind":"exec","command":"echo","args":["ok","--help"]}),
    )
    .await;
    assert_eq!(status, 400, "{dash}");
    assert_eq!(dash["error"]["field"], "args[1]", "{dash}");
    let (status, count) = post(
        &http,
        &node,
        &json!({"kind":"exec","command":"echo","args":["only one"]}),
    )
    .await;
    assert_eq!(status, 400, "{count}");
    assert_eq!(count["error"]["field"], "args", "{count}");

    // The node's own command set is in its view, as hex.
    let view = serde_json::to_value(node.cluster()).unwrap();
    let mine = format!(
        "{:016x}",
        command_set(["cat", "echo", "env", "fail", "flood", "linger"])
    );
    assert_eq!(
        view["nodes"][0]["load"]["commands"],
        mine.as_str(),
        "{view}"
    );

    common::leave_all(std::slice::from_ref(&node)).await;
    let _ = std::fs::remove_file(file);
}

/// Names that are not `avoid` whose two bits cover those of `target` (a Bloom-filter false
/// positive for it), from a brute-force search.
fn decoys_for(target: &str, avoid: &[&str]) -> Vec<String> {
    let wanted = command_bits(target);
    let mut chosen: Vec<String> = Vec::new();
    let mut covered = 0u64;
    for i in 0..100_000 {
        let name = format!("decoy-{i}");
        let bits = command_bits(&name);
        if avoid.contains(&name.as_str()) || bits & wanted == 0 || bits & wanted & !covered == 0 {
            continue;
        }
        covered |= bits & wanted;
        chosen.push(name);
        if covered == wanted {
            return chosen;
        }
    }
    panic!("no decoys found for {target}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_jobs_go_only_to_the_node_that_declares_the_command() {
    // w3 declares `work`; w1 declares decoys whose bits cover `work` and `phantom` (both false
    // positives of its gossiped set); w2 declares nothing.
    let decoys = decoys_for("work", &["work", "phantom"]);
    let decoy_set = command_set(decoys.iter().map(String::as_str));
    let phantom = (0..1_000_000)
        .map(|i| format!("phantom-{i}"))
        .find(|name| decoy_set & command_bits(name) == command_bits(name))
        .expect("a name the decoys cover");
    let decoy_text: String = decoys
        .iter()
        .map(|d| format!("[commands.{d}]\nprogram = \"/bin/true\"\n"))
        .collect();
    let w1_file = config_file("w1", &decoy_text);
    let w3_file = config_file("w3", "[commands.work]\nprogram = \"/bin/cat\"\n");
    let w1 = start(11, 1, Some(w1_file.clone()), vec![]).await;
    let w2 = start(12, 1, None, vec![w1.gossip_addr()]).await;
    let w3 = start(13, 1, Some(w3_file.clone()), vec![w1.gossip_addr()]).await;
    let nodes = [w1, w2, w3];
    common::await_all_alive(&nodes).await;
    let http = http();
    let w3_id = nodes[2].id().to_string();

    // Every exec job submitted to w1 or w2 runs on w3 (w2 may try w1 first, which refuses).
    for i in 0..12 {
        let entry = &nodes[i % 2];
        let (status, outcome) = post(
            &http,
            entry,
            &json!({"kind":"exec","command":"work","stdin":format!("job {i}")}),
        )
        .await;
        assert_eq!(status, 200, "{outcome}");
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        assert_eq!(outcome["executing_node"], w3_id.as_str(), "{outcome}");
        assert_eq!(outcome["output"]["stdout"], format!("job {i}"));
    }

    // A command only a false positive offers: w1 is tried and refuses; nobody declares it.
    let (status, refused) = post(&http, &nodes[1], &json!({"kind":"exec","command":phantom})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["error"]["code"], "unknown_command", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&phantom),
        "{refused}"
    );

    // Sleep jobs still spread over all three.
    let mut ids = Vec::new();
    for _ in 0..9 {
        let answer = common::submit(
            &http,
            nodes[0].api_addr(),
            "/v1/jobs",
            &json!({"kind":"sleep","ms":400}),
        )
        .await;
        ids.push(answer["executing_node"].as_str().unwrap().to_owned());
    }
    ids.sort();
    ids.dedup();
    assert!(ids.len() >= 2, "sleep jobs all ran on {ids:?}");

    // The view shows each node's gossiped set.
    let view = serde_json::to_value(nodes[1].cluster()).unwrap();
    let sets: Vec<(String, String)> = view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["load"]["commands"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let w3_set = format!("{:016x}", command_set(["work"]));
    assert!(sets.contains(&(w3_id.clone(), w3_set)), "{sets:?}");

    common::leave_all(&nodes).await;
    let _ = std::fs::remove_file(w1_file);
    let _ = std::fs::remove_file(w3_file);
}

#[tokio::test]
async fn a_bad_config_file_stops_the_start_with_its_reason() {
    let file = config_file("bad", "[commands.x]\nprogram = \"relative/prog\"\n");
    let mut c = common::config(1, 1, 50);
    c.config_file = Some(file.clone());
    let e = Node::start(c).await.expect_err("a bad config is refused");
    let text = e.to_string();
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("commands.x.program"), "{text}");
    assert!(text.contains("absolute"), "{text}");
    let _ = std::fs::remove_file(file);
}
