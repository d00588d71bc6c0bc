//! Real `worker` processes on loopback under a steady load of short jobs, while one of five
//! dies (`kill -9`) or leaves (`SIGTERM`): every job that `POST /v1/jobs` accepted ends in a
//! terminal state readable through its entry node, and none goes missing.
//!
//! Jobs are only ever submitted to the four nodes that stay: a job's entry node answers for it,
//! and a dead entry node answers for nothing. The counts are printed (run with `--nocapture`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use hearsay_tests::cluster::{
    all_see_new_life, get_json, get_text, incarnation_of, metric, post_json, start_cluster,
    state_of, wait_until, WorkerProcess,
};
use hearsay_tests::netns::{drop_udp, dropped_udp, ip, run, run_inside, Namespace};
use serde_json::{json, Value};

/// Generous bounds: real processes on a shared machine.
const JOIN_LIMIT: Duration = Duration::from_secs(20);
const SETTLE_LIMIT: Duration = Duration::from_secs(20);
/// The load: this many `sleep` jobs of 100 to 300 ms, one every `PACE` (25 a second, about
/// what five one-slot workers can run).
const JOBS: usize = 150;
const PACE: Duration = Duration::from_millis(40);
/// How long a submission may take (a forward is offered for at most 5 s).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(8);
/// The node that dies or leaves.
const VICTIM: usize = 2;
/// The graceful leave's drain bound, and how much longer the exit may take.
const DRAIN_TIMEOUT_MS: u64 = 10_000;
const EXIT_MARGIN: Duration = Duration::from_secs(5);

const TERMINAL: [&str; 4] = ["succeeded", "failed", "timed_out", "lost"];

fn start_five(args: &[&str]) -> Result<Vec<WorkerProcess>> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    start_cluster(5, "w", &args, JOIN_LIMIT)
}

fn sleep_job(i: usize) -> Value {
    json!({"kind": "sleep", "ms": 100 + (i * 37) % 201})
}

/// A job that was accepted (`202`): its id and the index of its entry node.
struct Submitted {
    id: String,
    entry: usize,
}

/// Submits [`JOBS`] jobs without waiting, round-robin over every node but [`VICTIM`], one every
/// [`PACE`]; `during` is called before each submission with its index. Returns the jobs accepted
/// and how many were refused (`503`: no room in reach).
fn run_load(
    nodes: &mut [WorkerProcess],
    mut during: impl FnMut(usize, &mut [WorkerProcess]) -> Result<()>,
) -> Result<(Vec<Submitted>, usize)> {
    let entries: Vec<usize> = (0..nodes.len()).filter(|&i| i != VICTIM).collect();
    let start = Instant::now();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..JOBS {
        during(i, nodes)?;
        let entry = entries[i % entries.len()];
        let (status, body) = post_json(
            nodes[entry].spec.api(),
            "/v1/jobs",
            &sleep_job(i),
            &[],
            SUBMIT_TIMEOUT,
        )?;
        match status {
            202 => {
                let id = body["id"].as_str().context("a 202 without an id")?;
                accepted.push(Submitted {
                    id: id.to_owned(),
                    entry,
                });
            }
            503 => refused += 1,
            other => bail!("job {i} at w{entry}: {other} {body}"),
        }
        let next = start + PACE * (i as u32 + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    Ok((accepted, refused))
}

/// Waits (bounded) until every accepted job is in a terminal state at its entry node; returns
/// their outcomes.
fn settle(nodes: &[WorkerProcess], jobs: &[Submitted]) -> Result<Vec<Value>> {
    let mut outcomes: Vec<Option<Value>> = vec![None; jobs.len()];
    let took = wait_until(SETTLE_LIMIT, || {
        for (job, outcome) in jobs.iter().zip(outcomes.iter_mut()) {
            if outcome.is_some() {
                continue;
            }
            let now = get_json(nodes[job.entry].spec.api(), &format!("/v1/jobs/{}", job.id))
                .with_context(|| format!("job {} missing at w{}", job.id, job.entry))?;
            if TERMINAL.contains(&now["status"].as_str().unwrap_or("")) {
                *outcome = Some(now);
            }
        }
        Ok(outcomes.iter().all(Option::is_some))
    })?;
    eprintln!("every accepted job terminal {took:?} after the load");
    Ok(outcomes.into_iter().flatten().collect())
}

/// Whether `node` holds work: one job running and at least one queued.
fn holds_work(node: &WorkerProcess) -> Result<bool> {
    let api = node.spec.api();
    Ok(metric(api, "hearsay_jobs_running")? >= 1.0 && metric(api, "hearsay_jobs_queued")? >= 1.0)
}

fn count(outcomes: &[Value], status: &str) -> usize {
    outcomes.iter().filter(|o| o["status"] == status).count()
}

#[test]
fn a_kill_9_under_load_loses_only_the_jobs_on_the_dead_node_and_none_goes_missing() -> Result<()> {
    let mut nodes = start_five(&["--policy", "p2c"])?;
    let victim = nodes[VICTIM].spec.node_id.clone();
    let old_incarnation = incarnation_of(&nodes[0].cluster()?, &victim).context("victim known")?;
    let mut killed_at = None;
    let (accepted, refused) = run_load(&mut nodes, |i, nodes| {
        // A third into the load, kill the victim as soon as it holds a running and a queued
        // job (at the latest two thirds in).
        if killed_at.is_none()
            && i >= JOBS / 3
            && (i >= 2 * JOBS / 3 || holds_work(&nodes[VICTIM])?)
        {
            nodes[VICTIM].kill();
            killed_at = Some(i);
        }
        Ok(())
    })?;
    let outcomes = settle(&nodes, &accepted)?;

    let (succeeded, lost) = (count(&outcomes, "succeeded"), count(&outcomes, "lost"));
    let on_victim = outcomes
        .iter()
        .filter(|o| o["executing_node"] == victim.as_str())
        .count();
    eprintln!(
        "kill -9 of {victim} before job {}: accepted {}, refused {refused}, succeeded {succeeded}, \
         lost {lost}, placed on {victim} {on_victim}",
        killed_at.unwrap_or(JOBS),
        accepted.len()
    );
    for outcome in &outcomes {
        match outcome["status"].as_str() {
            Some("succeeded") => {}
            Some("lost") => {
                assert_eq!(outcome["executing_node"], victim.as_str(), "{outcome}");
                let reason = outcome["error"].as_str().unwrap_or("");
                assert!(
                    reason.contains(&victim),
                    "the reason names {victim}: {outcome}"
                );
            }
            _ => panic!("only succeeded and lost are expected: {outcome}"),
        }
    }
    assert!(
        lost >= 1,
        "the victim held work when it died, so some job is lost"
    );
    assert_eq!(succeeded + lost, accepted.len());

    // Restart it, same id and address, running what it is given itself: it takes work again.
    let mut spec = nodes[VICTIM].spec.clone();
    spec.args = vec!["--policy".into(), "local".into()];
    nodes[VICTIM] = WorkerProcess::start(spec)?;
    let rejoined = wait_until(JOIN_LIMIT, || {
        all_see_new_life(&nodes, &victim, old_incarnation)
    })?;
    let (status, outcome) = post_json(
        nodes[VICTIM].spec.api(),
        "/v1/jobs?wait=true",
        &json!({"kind": "sleep", "ms": 50}),
        &[],
        SUBMIT_TIMEOUT,
    )?;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(outcome["status"], "succeeded", "{outcome}");
    assert_eq!(outcome["executing_node"], victim.as_str(), "{outcome}");
    eprintln!("{victim} rejoined after {rejoined:?} and runs jobs again");
    Ok(())
}

#[test]
fn a_sigterm_under_load_loses_no_job_and_exits_within_the_drain_bound() -> Result<()> {
    let drain = format!("{DRAIN_TIMEOUT_MS}");
    let mut nodes = start_five(&["--policy", "p2c", "--drain-timeout", &drain])?;
    let leaver = nodes[VICTIM].spec.node_id.clone();
    let mut terminated = None;
    let (accepted, refused) = run_load(&mut nodes, |i, nodes| {
        if terminated.is_none()
            && i >= JOBS / 3
            && (i >= 2 * JOBS / 3 || holds_work(&nodes[VICTIM])?)
        {
            nodes[VICTIM].terminate()?;
            terminated = Some((i, Instant::now()));
        }
        Ok(())
    })?;
    let (at, since) = terminated.context("the leaver was sent SIGTERM")?;
    let bound = Duration::from_millis(DRAIN_TIMEOUT_MS) + EXIT_MARGIN;
    let status = nodes[VICTIM].wait_exit(bound.saturating_sub(since.elapsed()))?;
    let exited = since.elapsed();
    assert!(status.success(), "{leaver} exited with {status}");
    let outcomes = settle(&nodes, &accepted)?;

    let succeeded = count(&outcomes, "succeeded");
    let on_leaver = outcomes
        .iter()
        .filter(|o| o["executing_node"] == leaver.as_str())
        .count();
    eprintln!(
        "SIGTERM to {leaver} before job {at}, exited 0 after {exited:?}: accepted {}, \
         refused {refused}, succeeded {succeeded}, lost {}, run on {leaver} {on_leaver}",
        accepted.len(),
        count(&outcomes, "lost")
    );
    for outcome in &outcomes {
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
    }
    assert!(on_leaver >= 1, "the leaver ran some of the load");
    Ok(())
}

/// Set (by the test itself) in the network namespace a test runs in, to the test's name.
const INSIDE_NS: &str = "HEARSAY_TEST_NS";
/// Set to `1` to make the namespace tests fail, rather than be skipped, without root and `ip`
/// (and `nft`, for the lossy one).
const REQUIRE_NETNS: &str = "HEARSAY_REQUIRE_NETNS";
const NS_LIMIT: Duration = Duration::from_secs(90);

/// Runs `inner` in a fresh network namespace (its own `lo`, deleted afterwards), by running the
/// test binary again there with only the test `name`. Without root and `ip` it says so and
/// skips, unless `HEARSAY_REQUIRE_NETNS=1`.
fn in_namespace(name: &str, inner: fn() -> Result<()>) -> Result<()> {
    if std::env::var(INSIDE_NS).is_ok_and(|n| n == name) {
        return inner();
    }
    let required = std::env::var(REQUIRE_NETNS).is_ok_and(|v| v == "1");
    let prefix = format!("hearsay-{}", &name[..8]);
    let namespace = match Namespace::create(&prefix) {
        Ok(namespace) => namespace,
        Err(e) if !required => {
            eprintln!("SKIPPED: {name} needs root and `ip netns` ({e:#}); set {REQUIRE_NETNS}=1 to require it");
            return Ok(());
        }
        Err(e) => return Err(e.context(format!("{REQUIRE_NETNS}=1 but no network namespace"))),
    };
    let exe = std::env::current_exe()?;
    let status = run_inside(
        &namespace,
        &exe,
        &["--exact", name, "--nocapture", "--test-threads=1"],
        (INSIDE_NS, name),
        NS_LIMIT,
    )?;
    assert!(
        status.success(),
        "{name} inside {} failed: {status}",
        namespace.name
    );
    Ok(())
}

/// A real partition: five workers split 3 | 2 by routing rules that discard every packet
/// between the sides, in a network namespace of the test's own.
#[test]
fn a_partition_that_really_drops_packets_is_detected_and_healed() -> Result<()> {
    in_namespace(
        "a_partition_that_really_drops_packets_is_detected_and_healed",
        partition_inside_the_namespace,
    )
}

/// Real packet loss: five workers in a network namespace of the test's own, where an nftables
/// rule drops 10% of the gossip datagrams at random as they arrive, for 20 s. No node stops, so
/// every death declared would be false: there must be none. (Longer and larger runs:
/// `target/release/loss-soak`, figures in the README.)
#[test]
fn ten_percent_real_packet_loss_kills_no_one() -> Result<()> {
    in_namespace(
        "ten_percent_real_packet_loss_kills_no_one",
        lossy_inside_the_namespace,
    )
}

fn gossip_counter(node: &WorkerProcess, name: &str) -> Result<u64> {
    node.cluster()?["gossip"][name]
        .as_u64()
        .with_context(|| format!("no gossip.{name} in /v1/cluster"))
}

fn lossy_inside_the_namespace() -> Result<()> {
    let required = std::env::var(REQUIRE_NETNS).is_ok_and(|v| v == "1");
    let nodes = start_five(&[])?;
    std::thread::sleep(Duration::from_secs(3));
    if let Err(e) = drop_udp(nodes[0].spec.gossip().port(), 100) {
        if required {
            return Err(e.context(format!("{REQUIRE_NETNS}=1 but no nftables")));
        }
        eprintln!("SKIPPED: the lossy test needs `nft` (nftables) ({e:#})");
        return Ok(());
    }
    let total = |name: &str| -> Result<u64> { nodes.iter().map(|n| gossip_counter(n, name)).sum() };
    let (deaths_before, suspicions_before) = (total("deaths")?, total("suspicions")?);
    std::thread::sleep(Duration::from_secs(20));
    let dropped = dropped_udp()?;
    let (died, suspected) = (
        total("deaths")? - deaths_before,
        total("suspicions")? - suspicions_before,
    );
    eprintln!("20 s at 10% loss: {dropped} datagrams dropped, {suspected} false suspicions, {died} false deaths");
    assert!(
        dropped > 100,
        "only {dropped} datagrams dropped: no loss to speak of"
    );
    assert_eq!(died, 0, "live nodes were declared dead");
    assert!(see(
        &nodes.iter().collect::<Vec<_>>(),
        &nodes.iter().collect::<Vec<_>>(),
        "alive"
    )?);
    Ok(())
}

/// Routing rules that blackhole every packet between the two sides (both directions), ahead of
/// the local table: what one side sends the other is discarded by the kernel. (`tc` drop actions
/// and `netem` are not available on every kernel; policy routing is.)
fn pair_rules(a: &[&WorkerProcess], b: &[&WorkerProcess]) -> Vec<[String; 2]> {
    let mut rules = Vec::new();
    for x in a {
        for y in b {
            let (x, y) = (x.spec.ip.to_string(), y.spec.ip.to_string());
            rules.push([x.clone(), y.clone()]);
            rules.push([y, x]);
        }
    }
    rules
}

fn cut(rules: &[[String; 2]]) -> Result<()> {
    // Once per namespace: the local table after the blackholes, not before them.
    ip(&["rule", "add", "pref", "100", "lookup", "local"])?;
    ip(&["rule", "del", "pref", "0"])?;
    blackholes("add", rules)
}

fn heal(rules: &[[String; 2]]) -> Result<()> {
    blackholes("del", rules)
}

/// `ip rule add|del pref 10 from A to B blackhole` for every rule.
fn blackholes(op: &str, rules: &[[String; 2]]) -> Result<()> {
    for [from, to] in rules {
        ip(&[
            "rule",
            op,
            "pref",
            "10",
            "from",
            from,
            "to",
            to,
            "blackhole",
        ])?;
    }
    Ok(())
}

/// Whether every observer sees every node of `nodes` in `state`.
fn see(observers: &[&WorkerProcess], nodes: &[&WorkerProcess], state: &str) -> Result<bool> {
    for observer in observers {
        let view = observer.cluster()?;
        for node in nodes {
            if state_of(&view, &node.spec.node_id).as_deref() != Some(state) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn partition_inside_the_namespace() -> Result<()> {
    let nodes = start_five(&["--policy", "p2c"])?;
    let a: Vec<&WorkerProcess> = nodes[..3].iter().collect();
    let b: Vec<&WorkerProcess> = nodes[3..].iter().collect();
    let rules = pair_rules(&a, &b);
    cut(&rules)?;
    let cut_at = Instant::now();
    let detected = wait_until(SETTLE_LIMIT, || {
        Ok(see(&a, &b, "dead")? && see(&b, &a, "dead")?)
    })?;
    eprintln!("partition 3 | 2: each side sees the other dead after {detected:?}");
    // Each side runs jobs among its own nodes.
    for (side, entries) in [("a", &a), ("b", &b)] {
        for (i, entry) in entries.iter().enumerate() {
            for k in 0..3 {
                let (status, outcome) = post_json(
                    entry.spec.api(),
                    "/v1/jobs?wait=true",
                    &json!({"kind": "sleep", "ms": 20}),
                    &[],
                    SUBMIT_TIMEOUT,
                )?;
                assert_eq!(status, 200, "side {side}, entry {i}, job {k}: {outcome}");
                assert_eq!(outcome["status"], "succeeded", "{outcome}");
                let ran = outcome["executing_node"].as_str().unwrap_or("");
                assert!(
                    entries.iter().any(|n| n.spec.node_id == ran),
                    "side {side} ran a job on {ran}"
                );
            }
        }
    }
    heal(&rules)?;
    let healed = wait_until(SETTLE_LIMIT, || {
        let all: Vec<&WorkerProcess> = nodes.iter().collect();
        see(&all, &all, "alive")
    })?;
    eprintln!(
        "healed after {:?} of partition: one map again, every node alive to all, after {healed:?}",
        cut_at.elapsed() - healed
    );
    Ok(())
}

/// Sends `signal` (e.g. `STOP`, `CONT`) to a worker.
fn signal(node: &WorkerProcess, signal: &str) -> Result<()> {
    let pid = node.pid().context("not running")?;
    run("kill", &[&format!("-{signal}"), &pid.to_string()])
}

/// At most once when the answer to an offer is lost. The entry node offers jobs round-robin;
/// one peer is frozen (`SIGSTOP`): the kernel still takes its connections and the offers sent to
/// it, but no answer comes, the offer times out, and the peer is judged dead meanwhile. The
/// entry node must not place such a job again (the frozen peer may hold it): it asks, gets no
/// answer, follows the job there and reports it `lost`. Then the peer thaws (`SIGCONT`) and
/// reads what waited in its sockets — the late offer, and the entry node's questions, which fence
/// the id off if they come first. Whatever the order, no job runs on two nodes.
#[test]
fn a_job_whose_offer_went_unanswered_never_runs_twice() -> Result<()> {
    let nodes = start_five(&["--policy", "round-robin"])?;
    std::thread::sleep(Duration::from_secs(2));
    let frozen = &nodes[VICTIM];
    signal(frozen, "STOP")?;
    let mut ids = Vec::new();
    let result = (|| -> Result<()> {
        for i in 0..10 {
            let (status, body) = post_json(
                nodes[0].spec.api(),
                "/v1/jobs",
                &json!({"kind": "sleep", "ms": 20}),
                &[],
                Duration::from_secs(20),
            )?;
            match status {
                202 => ids.push(body["id"].as_str().context("no id")?.to_owned()),
                503 => {}
                other => bail!("job {i}: {other} {body}"),
            }
        }
        Ok(())
    })();
    signal(frozen, "CONT")?;
    result?;
    let limit = Duration::from_secs(20);
    let mut unanswered = 0;
    for id in &ids {
        let path = format!("/v1/jobs/{id}");
        wait_until(limit, || {
            let at_entry = get_json(nodes[0].spec.api(), &path)?;
            Ok(TERMINAL.contains(&at_entry["status"].as_str().unwrap_or("")))
        })?;
        let at_entry = get_json(nodes[0].spec.api(), &path)?;
        if at_entry["executing_node"] == frozen.spec.node_id.as_str() {
            unanswered += 1;
        }
    }
    // Let the thawed peer read what waited for it, and run it.
    std::thread::sleep(Duration::from_secs(3));
    let mut runs = 0;
    for id in &ids {
        let ran_on: Vec<&str> = nodes
            .iter()
            .filter(|n| {
                let Ok((200, text)) = get_text(n.spec.api(), &format!("/v1/jobs/{id}")) else {
                    return false;
                };
                let outcome: Value = serde_json::from_str(&text).unwrap_or_default();
                outcome["executing_node"] == n.spec.node_id.as_str() && !outcome["status"].is_null()
            })
            .map(|n| n.spec.node_id.as_str())
            .collect();
        assert!(ran_on.len() <= 1, "job {id} ran on {ran_on:?}");
        runs += ran_on.len();
    }
    eprintln!(
        "{} jobs accepted, {unanswered} offered to the frozen peer, {runs} held by exactly one node, none by two",
        ids.len()
    );
    assert!(unanswered >= 1, "no job was offered to the frozen peer");
    Ok(())
}
