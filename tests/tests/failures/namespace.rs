//! The namespace half of the failure tests: a fresh network namespace per test (its own `lo`,
//! deleted afterwards), and inside it a real partition (routing rules that blackhole the
//! packets between two sides) and real packet loss (an nftables rule). The `#[test]`s are in
//! `failures.rs`; this holds what they run.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use hearsay_tests::cluster::{await_rounds, post_json, state_of, wait_until, WorkerProcess};
use hearsay_tests::netns::{drop_udp, dropped_udp, ip, run_inside, Namespace};
use serde_json::json;

use super::{start_five, JOIN_LIMIT, SETTLE_LIMIT, SUBMIT_TIMEOUT};

/// Set (by the test itself) in the network namespace a test runs in, to the test's name.
const INSIDE_NS: &str = "HEARSAY_TEST_NS";
/// Set to `1` to make the namespace tests fail, rather than be skipped, without root and `ip`
/// (and `nft`, for the lossy one).
const REQUIRE_NETNS: &str = "HEARSAY_REQUIRE_NETNS";
const NS_LIMIT: Duration = Duration::from_secs(90);

/// Runs `inner` in a fresh network namespace (its own `lo`, deleted afterwards), by running the
/// test binary again there with only the test `name`. Without root and `ip` it says so and
/// skips, unless `HEARSAY_REQUIRE_NETNS=1`.
pub(crate) fn in_namespace(name: &str, inner: fn() -> Result<()>) -> Result<()> {
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

fn gossip_counter(node: &WorkerProcess, name: &str) -> Result<u64> {
    node.cluster()?["gossip"][name]
        .as_u64()
        .with_context(|| format!("no gossip.{name} in /v1/cluster"))
}

pub(crate) fn lossy_inside_the_namespace() -> Result<()> {
    let required = std::env::var(REQUIRE_NETNS).is_ok_and(|v| v == "1");
    let nodes = start_five(&[])?;
    await_rounds(&nodes.iter().collect::<Vec<_>>(), 10, JOIN_LIMIT)?;
    if let Err(e) = drop_udp(nodes[0].spec.gossip().port(), 100) {
        if required {
            return Err(e.context(format!("{REQUIRE_NETNS}=1 but no nftables")));
        }
        eprintln!("SKIPPED: the lossy test needs `nft` (nftables) ({e:#})");
        return Ok(());
    }
    let total = |name: &str| -> Result<u64> { nodes.iter().map(|n| gossip_counter(n, name)).sum() };
    let (deaths_before, suspicions_before) = (total("deaths")?, total("suspicions")?);
    // Time passing on purpose: 20 s of 10% loss, to count the false verdicts it brings.
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

pub(crate) fn partition_inside_the_namespace() -> Result<()> {
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
