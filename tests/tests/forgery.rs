//! Forged load reports on real `worker` processes on loopback: a report no honest node could
//! have sent yet is refused and counted, and a forgery that a node could believe (from a member
//! holding the cluster key) keeps its subject out for a few gossip rounds at most.
//!
//! Every node is dropped, and so killed, whatever the outcome; every wait is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use hearsay_shared::gossip::MAX_AHEAD_MS;
use hearsay_shared::seal::{Key, Keyring, KEY_LEN};
use hearsay_shared::{wire, LoadReport, LoadVector, NodeId, NodeState};
use hearsay_tests::cluster::{
    fresh_loopback, incarnation_of, metric, post_json, receive_errors, start_cluster, state_of,
    wait_until, WorkerProcess, WorkerSpec,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

/// Generous bounds: real processes on a shared 2-core machine.
const JOIN_LIMIT: Duration = Duration::from_secs(20);
const COUNT_LIMIT: Duration = Duration::from_secs(10);
/// How long the victim of a believable forgery may stay out: 15 rounds of 200 ms. In the
/// simulation it is back everywhere within 1 to 4 rounds.
const BACK_LIMIT: Duration = Duration::from_secs(3);
/// How long the open cluster may take to forward a job to the victim.
const WORK_LIMIT: Duration = Duration::from_secs(30);

const IMPLAUSIBLE: &str = "hearsay_gossip_implausible_reports_total";
const REFUTATIONS: &str = "hearsay_gossip_refutations_total";

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A report of `victim` (its real addresses) at `(incarnation, seq)` in `state`, as a plain
/// push datagram of that one report.
fn forged_push(
    victim: &WorkerSpec,
    incarnation: u64,
    seq: u64,
    state: NodeState,
) -> Result<Vec<u8>> {
    let report = LoadReport {
        node: NodeId::new(victim.node_id.as_str())?,
        incarnation,
        seq,
        load: LoadVector {
            state,
            ..LoadVector::idle(1)
        },
        api: victim.api(),
        gossip: victim.gossip(),
    };
    Ok(wire::encode_push(&report, [], wire::DEFAULT_BUDGET)?.0)
}

/// Seals `plain` as a member holding the cluster key would, for the node at `to`. The one
/// place that seals here: a seal bound to its destination needs `to`, which the present seal
/// does not use.
fn seal_as_member(keyring: &Keyring, plain: &[u8], to: SocketAddr) -> Result<Vec<u8>> {
    Ok(keyring.seal(plain, to, unix_ms(), &mut StdRng::from_os_rng())?)
}

fn send(to: SocketAddr, bytes: &[u8]) -> Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(fresh_loopback(), 0))?;
    socket.send_to(bytes, to)?;
    Ok(())
}

/// A key file holding one key.
fn key_file(name: &str, key: &Key) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("hearsay-forgery-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", key.to_hex()))?;
    Ok(path)
}

/// Checks that every node's map holds `victim` alive at incarnation `life`; the error says who
/// sees what.
fn all_hold_alive_at(nodes: &[WorkerProcess], victim: &str, life: u64) -> Result<()> {
    for node in nodes {
        let view = node.cluster()?;
        let state = state_of(&view, victim);
        let incarnation = incarnation_of(&view, victim);
        ensure!(
            state.as_deref() == Some("alive") && incarnation == Some(life),
            "{} sees {victim} {state:?} at incarnation {incarnation:?} (its life is {life})",
            node.spec.node_id
        );
    }
    Ok(())
}

/// Whether every node's map holds `victim` alive, saying it is alive, at an incarnation above
/// `above`.
fn all_see_alive_above(nodes: &[WorkerProcess], victim: &str, above: u64) -> Result<bool> {
    for node in nodes {
        let view = node.cluster()?;
        let entry = view["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|e| e["id"].as_str() == Some(victim)));
        let Some(entry) = entry else {
            return Ok(false);
        };
        let fresh = entry["incarnation"].as_u64().is_some_and(|i| i > above);
        if !fresh || entry["state"] != "alive" || entry["load"]["state"] != "alive" {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The attack: one 51-byte push of n3's report at `incarnation = seq = 2^64 − 1`, sent
/// to one peer of an open cluster. On `main` every peer had n3 dead within 1.5 s and it could
/// not refute (its `incarnation + 1` wrapped). Now the peer refuses and counts it, n3 stays
/// alive at its own incarnation in every map, and jobs are still forwarded to it.
#[test]
fn an_open_cluster_refuses_a_report_at_the_top_of_u64_and_keeps_forwarding_to_its_node(
) -> Result<()> {
    let nodes = start_cluster(4, "top", &[], JOIN_LIMIT)?;
    let victim = nodes[3].spec.clone();
    let life = incarnation_of(&nodes[0].cluster()?, &victim.node_id).context("victim known")?;
    let forged = forged_push(&victim, u64::MAX, u64::MAX, NodeState::Alive)?;
    eprintln!("the forged push is {} bytes", forged.len());
    send(nodes[1].spec.gossip(), &forged)?;
    wait_until(COUNT_LIMIT, || {
        Ok(metric(nodes[1].spec.api(), IMPLAUSIBLE)? >= 1.0)
    })?;

    // Jobs of 300 ms into the node that got the forgery, one every 100 ms, until the victim
    // has run some (with one slot a node, the entry node soon forwards) and 15 rounds (3 s)
    // have passed: twice what the peers took to declare the victim dead before. Meanwhile
    // every map holds the victim alive, at its own life, at every look.
    let entry = nodes[1].spec.api();
    let received = "hearsay_jobs_received_forwarded_total";
    let rounds = "hearsay_gossip_rounds_total";
    let until_round = metric(entry, rounds)? + 15.0;
    let start = Instant::now();
    let mut submitted = 0;
    loop {
        all_hold_alive_at(&nodes, &victim.node_id, life)?;
        if metric(victim.api(), received)? >= 2.0 && metric(entry, rounds)? >= until_round {
            break;
        }
        ensure!(
            start.elapsed() < WORK_LIMIT,
            "{} had no forwarded job after {submitted} submissions",
            victim.node_id
        );
        let job: Value = json!({"kind": "sleep", "ms": 300});
        let (status, body) = post_json(entry, "/v1/jobs", &job, &[], Duration::from_secs(8))?;
        ensure!(status == 202 || status == 503, "{status} {body}");
        submitted += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!(
        "{} ran forwarded jobs after {submitted} submissions; no map ever doubted it",
        victim.node_id
    );
    ensure!(
        metric(victim.api(), REFUTATIONS)? == 0.0,
        "the victim refuted"
    );
    ensure!(metric(nodes[1].spec.api(), IMPLAUSIBLE)? == 1.0);
    Ok(())
}

/// A rogue member of a keyed cluster (it holds the key) seals forged reports of n3. One at the
/// top of u64 is refused and counted like any other; one at the highest version a node can
/// believe — an incarnation a clock-skew allowance ahead, saying that n3 is leaving — is taken,
/// and n3 refutes it: within a few gossip rounds every map holds n3 alive again, at an
/// incarnation above the forgery's.
#[test]
fn a_rogue_member_forging_a_leave_is_refuted_within_a_few_rounds() -> Result<()> {
    let keys = key_file("rogue", &Key::from_bytes([41; KEY_LEN]))?;
    let args = vec!["--cluster-key-file".to_owned(), keys.display().to_string()];
    let nodes = start_cluster(4, "rogue", &args, JOIN_LIMIT)?;
    let keyring = Keyring::new(Key::from_bytes([41; KEY_LEN]), [])?;
    let victim = nodes[3].spec.clone();
    let life = incarnation_of(&nodes[0].cluster()?, &victim.node_id).context("victim known")?;

    // At the top of u64: refused where it lands; the victim never hears of it.
    let to = nodes[2].spec.gossip();
    let top = forged_push(&victim, u64::MAX, u64::MAX, NodeState::Leaving)?;
    send(to, &seal_as_member(&keyring, &top, to)?)?;
    wait_until(COUNT_LIMIT, || {
        Ok(metric(nodes[2].spec.api(), IMPLAUSIBLE)? >= 1.0)
    })?;
    all_hold_alive_at(&nodes, &victim.node_id, life)?;

    // At the highest believable version, less a second for the clocks read here and there.
    let to = nodes[1].spec.gossip();
    let incarnation = unix_ms() + MAX_AHEAD_MS - 1_000;
    let leave = forged_push(&victim, incarnation, 0, NodeState::Leaving)?;
    send(to, &seal_as_member(&keyring, &leave, to)?)?;
    let back = wait_until(BACK_LIMIT, || {
        Ok(metric(victim.api(), REFUTATIONS)? >= 1.0
            && all_see_alive_above(&nodes, &victim.node_id, incarnation)?)
    })
    .with_context(|| format!("{} not back in every map", victim.node_id))?;
    eprintln!(
        "{} refuted the forged leave and was alive in every map {back:?} after it was sent",
        victim.node_id
    );
    ensure!(
        metric(nodes[1].spec.api(), IMPLAUSIBLE)? == 0.0,
        "the believable forgery was refused"
    );
    for node in &nodes {
        ensure!(receive_errors(node.spec.api(), "authentication")? == 0.0);
    }
    Ok(())
}

/// `datagrams_received` in `GET /v1/cluster` and `hearsay_gossip_datagrams_received_total`
/// are one count: every datagram the gossip socket received, those the seal refused included.
/// A lone keyed node (no seeds: it sends and hears nothing of its own) is sent five plain
/// datagrams, which it refuses.
#[test]
fn datagrams_received_counts_refused_datagrams_in_the_view_as_in_the_metric() -> Result<()> {
    let keys = key_file("lone", &Key::from_bytes([43; KEY_LEN]))?;
    let mut spec = WorkerSpec::new("lone", vec![]);
    spec.args = vec!["--cluster-key-file".into(), keys.display().to_string()];
    let node = WorkerProcess::start(spec)?;
    wait_until(JOIN_LIMIT, || Ok(node.cluster().is_ok()))?;
    let victim = node.spec.clone();
    for i in 0..5 {
        send(
            victim.gossip(),
            &forged_push(&victim, unix_ms(), i, NodeState::Alive)?,
        )?;
    }
    wait_until(COUNT_LIMIT, || {
        Ok(receive_errors(victim.api(), "unsealed")? == 5.0)
    })?;
    let view = node.cluster()?;
    let in_view = view["gossip"]["datagrams_received"].as_u64();
    let in_metric = metric(victim.api(), "hearsay_gossip_datagrams_received_total")?;
    ensure!(
        in_view == Some(5) && in_metric == 5.0,
        "view {in_view:?}, metric {in_metric}: {}",
        view["gossip"]
    );
    Ok(())
}
