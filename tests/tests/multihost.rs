//! Beyond one machine: seeds given by DNS name, and nodes on hosts of their own.
//!
//! - On loopback: a worker seeded with `localhost:PORT` (a name, resolved by the node) joins.
//! - On a LAN of network namespaces ([`Lan`]): three hosts, each with its own address on one
//!   bridge, nothing on loopback, joined by one name that every host's `/etc/hosts` maps to all
//!   three addresses. One host listens on `0.0.0.0` and advertises its address; one cannot
//!   resolve the name at first and joins once it can; jobs submitted at one host run on the
//!   others; a host's link taken down is detected and, brought up, healed.
//!
//! The LAN needs root and `ip`: without them the test says so and passes, unless
//! `HEARSAY_REQUIRE_NETNS=1` (as in CI), when it fails.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use hearsay_tests::cluster::{
    all_alive, all_see, post_json, wait_until, WorkerProcess, WorkerSpec, API_PORT, GOSSIP_PORT,
};
use hearsay_tests::netns::{run_inside, Lan, LanPlan};
use serde_json::{json, Value};

/// Generous bounds: real processes on a shared machine.
const JOIN_LIMIT: Duration = Duration::from_secs(30);
const DETECT_LIMIT: Duration = Duration::from_secs(20);
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUIRE_NETNS: &str = "HEARSAY_REQUIRE_NETNS";
/// Set for the run inside the LAN's namespace: the test's name and the outer run's pid.
const INSIDE_LAN: &str = "HEARSAY_TEST_INSIDE_LAN";
const LAN_LIMIT: Duration = Duration::from_secs(150);
/// The name every host's `/etc/hosts` maps to the nodes but [`LATE`].
const SEED_NAME: &str = "hearsay-seeds.test";
const HOSTS: usize = 3;
/// The host that listens on `0.0.0.0` and advertises its address.
const ANY: usize = 0;
/// The host whose `/etc/hosts` lacks the seed name at first.
const LATE: usize = 2;

#[test]
fn a_seed_given_by_name_is_resolved_and_joined() -> Result<()> {
    // The first node on 127.0.0.1, which `localhost` resolves to; the second knows it by name.
    let mut first = WorkerSpec::new("by-name-0", vec![]);
    first.ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let first = WorkerProcess::start(first)?;
    let mut second = WorkerSpec::new("by-name-1", vec![]);
    second.args = vec!["--seeds".into(), format!("localhost:{GOSSIP_PORT}")];
    let second = WorkerProcess::start(second)?;
    let nodes = [&first, &second];
    let joined = wait_until(JOIN_LIMIT, || all_alive(&nodes))?;
    eprintln!("a node seeded with localhost:{GOSSIP_PORT} joined after {joined:?}");
    Ok(())
}

/// A host's `/etc/hosts`: every host's own name, and (if `with_seed_name`) the addresses of
/// every node but [`LATE`] under [`SEED_NAME`] (a record that lists some nodes, as a DNS
/// round-robin name does; the late node is known to nobody until it reaches one of them).
fn hosts_file(plan: &LanPlan, with_seed_name: bool) -> String {
    let mut text = String::from("127.0.0.1 localhost\n");
    for k in 0..plan.hosts {
        text.push_str(&format!("{} host{k}\n", plan.host_ip(k)));
        if with_seed_name && k != LATE {
            text.push_str(&format!("{} {SEED_NAME}\n", plan.host_ip(k)));
        }
    }
    text
}

#[test]
fn three_hosts_joined_by_one_name_share_jobs_and_a_cut_link_is_detected_and_healed() -> Result<()> {
    let name = "three_hosts_joined_by_one_name_share_jobs_and_a_cut_link_is_detected_and_healed";
    if let Ok(marker) = std::env::var(INSIDE_LAN) {
        let (test, pid) = marker.split_once(' ').context("bad marker")?;
        if test == name {
            let plan = LanPlan {
                pid: pid.parse()?,
                ..LanPlan::new("hearsay-mh", HOSTS)
            };
            return on_the_lan(&plan);
        }
    }
    let required = std::env::var(REQUIRE_NETNS).is_ok_and(|v| v == "1");
    let plan = LanPlan::new("hearsay-mh", HOSTS);
    let lan = match Lan::create(plan.clone(), |i| hosts_file(&plan, i != LATE)) {
        Ok(lan) => lan,
        Err(e) if !required => {
            eprintln!(
                "SKIPPED: {name} needs root and `ip netns` ({e:#}); set {REQUIRE_NETNS}=1 to \
                 require it"
            );
            return Ok(());
        }
        Err(e) => return Err(e.context(format!("{REQUIRE_NETNS}=1 but no LAN of namespaces"))),
    };
    let marker = format!("{name} {}", plan.pid);
    let status = run_inside(
        &lan.namespace,
        &std::env::current_exe()?,
        &["--exact", name, "--nocapture", "--test-threads=1"],
        (INSIDE_LAN, &marker),
        LAN_LIMIT,
    )?;
    assert!(status.success(), "{name} on the LAN failed: {status}");
    Ok(())
}

/// Host `i`'s worker: in its namespace, seeded with [`SEED_NAME`] only.
fn host_spec(plan: &LanPlan, i: usize) -> WorkerSpec {
    let ip = IpAddr::V4(plan.host_ip(i));
    let mut spec = WorkerSpec::new(format!("host{i}"), vec![]);
    spec.ip = ip;
    spec.netns = Some(plan.host_namespace(i));
    spec.args = vec![
        "--seeds".into(),
        format!("{SEED_NAME}:{GOSSIP_PORT}"),
        "--policy".into(),
        "round-robin".into(),
        "--gossip-interval".into(),
        "100".into(),
    ];
    if i == ANY {
        spec.bind = Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        spec.args.extend([
            "--advertise-gossip".into(),
            SocketAddr::new(ip, GOSSIP_PORT).to_string(),
            "--advertise-api".into(),
            SocketAddr::new(ip, API_PORT).to_string(),
        ]);
    }
    spec
}

/// The entry for `node` in a `/v1/cluster` view.
fn entry<'a>(view: &'a Value, node: &str) -> Option<&'a Value> {
    view["nodes"].as_array()?.iter().find(|n| n["id"] == node)
}

fn on_the_lan(plan: &LanPlan) -> Result<()> {
    let nodes: Vec<WorkerProcess> = (0..HOSTS)
        .map(|i| WorkerProcess::start(host_spec(plan, i)))
        .collect::<Result<_>>()?;
    let all: Vec<&WorkerProcess> = nodes.iter().collect();
    let early: Vec<&WorkerProcess> = all
        .iter()
        .copied()
        .filter(|n| n.spec.node_id != format!("host{LATE}"))
        .collect();

    // The hosts that resolve the name find each other through it.
    let joined = wait_until(JOIN_LIMIT, || all_alive(&early))?;
    eprintln!(
        "hosts {:?} joined by {SEED_NAME} after {joined:?}",
        early.iter().map(|n| &n.spec.node_id).collect::<Vec<_>>()
    );
    // The one that cannot has no seed and nobody knows it: it is alone, and keeps trying.
    let late = &nodes[LATE];
    let alone = late.cluster()?;
    assert_eq!(alone["nodes"].as_array().map(Vec::len), Some(1), "{alone}");
    wait_until(JOIN_LIMIT, || {
        Ok(log_of(late)?.contains("cannot resolve seed names; retrying with backoff"))
    })
    .context("no warning of the name that does not resolve")?;

    // Peers are told the advertised addresses of the node on 0.0.0.0, not 0.0.0.0.
    let any = &nodes[ANY].spec;
    for observer in &early {
        let view = observer.cluster()?;
        let seen = entry(&view, &any.node_id).context("no entry for the 0.0.0.0 node")?;
        assert_eq!(seen["api"], any.api().to_string(), "{seen}");
        assert_eq!(seen["gossip"], any.gossip().to_string(), "{seen}");
    }

    // Once the name resolves there, the late host joins, without a restart.
    plan.set_hosts(LATE, &hosts_file(plan, true))?;
    let late_join = wait_until(JOIN_LIMIT, || all_alive(&all))?;
    eprintln!("host{LATE} joined {late_join:?} after its /etc/hosts got the name");

    // Jobs submitted at one host run on the others (round-robin placement over all three).
    let entry_node = &nodes[1];
    let mut ran = Vec::new();
    for k in 0..6 {
        let (status, outcome) = post_json(
            entry_node.spec.api(),
            "/v1/jobs?wait=true",
            &json!({"kind": "echo", "data": format!("job {k}")}),
            &[],
            SUBMIT_TIMEOUT,
        )?;
        assert_eq!(status, 200, "job {k}: {outcome}");
        assert_eq!(outcome["status"], "succeeded", "{outcome}");
        ran.push(outcome["executing_node"].as_str().unwrap_or("").to_owned());
    }
    for other in [0, 2] {
        let id = format!("host{other}");
        assert!(
            ran.contains(&id),
            "no job submitted at host1 ran on {id}: {ran:?}"
        );
    }
    eprintln!("6 jobs submitted at host1 ran on {ran:?}");

    // A host's link taken down: the others see it dead, it sees them dead.
    let victim = &nodes[LATE];
    let rest: Vec<&WorkerProcess> = nodes[..LATE].iter().collect();
    plan.set_link(LATE, false)?;
    let cut_at = Instant::now();
    // The victim cannot be asked over HTTP now (the test reaches it through the bridge too):
    // its log says what it saw.
    let detected = wait_until(DETECT_LIMIT, || {
        let log = log_of(victim)?;
        Ok(all_see(&rest, &victim.spec.node_id, "dead")?
            && rest.iter().all(|n| saw_die(&log, &n.spec.node_id)))
    });
    // The link comes back up even if the wait failed, before any error is returned.
    let heal = plan.set_link(LATE, true);
    let detected = detected?;
    heal?;
    eprintln!("host{LATE}'s link down: seen dead on both sides after {detected:?}");
    let healed = wait_until(JOIN_LIMIT, || all_alive(&all))?;
    eprintln!(
        "link up after {:?}: every host alive to all again after {healed:?}",
        cut_at.elapsed() - healed
    );
    Ok(())
}

/// Whether a worker's log says it saw `node` die.
fn saw_die(log: &str, node: &str) -> bool {
    let node = format!("node={node} ");
    log.lines()
        .any(|l| l.contains("membership changed") && l.contains(&node) && l.contains("to=\"dead\""))
}

/// The log of a worker started by [`WorkerProcess::start`].
fn log_of(node: &WorkerProcess) -> Result<String> {
    let bin = hearsay_tests::cluster::worker_bin()?;
    let dir = bin.parent().context("no folder")?.join("hearsay-test-logs");
    let path = dir.join(format!("{}-{}.log", node.spec.node_id, std::process::id()));
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(e) => bail!("cannot read {}: {e}", path.display()),
    }
}
