//! Sealed gossip on real `worker` processes on loopback: a shared key keeps a stranger out, keys
//! rotate without downtime, replays are refused (at the node a datagram was sent to, and at every
//! other node), and open and keyed nodes refuse each other.
//!
//! Every node is dropped, and so killed, whatever the outcome; every wait is bounded.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context, Result};
use hearsay_shared::seal::{Key, Keyring, KEY_LEN};
use hearsay_shared::wire::DigestEntry;
use hearsay_shared::{wire, LoadReport, LoadVector, NodeId};
use hearsay_tests::cluster::{
    all_alive, all_see_new_life, await_rounds, fresh_loopback, incarnation_of, receive_errors,
    start_with_env, state_of, wait_until, worker_bin, WorkerProcess, WorkerSpec,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// Generous bounds: real processes on a shared 2-core machine.
const JOIN_LIMIT: Duration = Duration::from_secs(20);
const COUNT_LIMIT: Duration = Duration::from_secs(10);

fn key(n: u8) -> Key {
    Key::from_bytes([n; KEY_LEN])
}

/// A key file holding these keys, the first the primary.
fn key_file(name: &str, keys: &[&Key]) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("hearsay-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    let mut text = String::from("# test keys: the first is the primary\n");
    for key in keys {
        text.push_str(&key.to_hex());
        text.push('\n');
    }
    std::fs::write(&path, text)?;
    Ok(path)
}

fn keyed_spec(id: &str, seeds: Vec<SocketAddr>, keys: &Path) -> WorkerSpec {
    let mut spec = WorkerSpec::new(id, seeds);
    spec.args = vec!["--cluster-key-file".into(), keys.display().to_string()];
    spec
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A plain datagram carrying one made-up node's report, as a worker would send it.
fn fake_push(node: &str) -> Result<Vec<u8>> {
    let ip = fresh_loopback();
    let report = LoadReport {
        node: NodeId::new(node)?,
        incarnation: unix_ms(),
        seq: 1,
        load: LoadVector::idle(1),
        api: SocketAddr::new(ip, 1),
        gossip: SocketAddr::new(ip, 2),
    };
    Ok(wire::encode_push(&report, [], 1200)?.0)
}

fn send(to: SocketAddr, bytes: &[u8]) -> Result<()> {
    let socket = UdpSocket::bind(SocketAddr::new(fresh_loopback(), 0))?;
    socket.send_to(bytes, to)?;
    Ok(())
}

fn knows(node: &WorkerProcess, id: &str) -> Result<bool> {
    Ok(state_of(&node.cluster()?, id).is_some())
}

/// A plain digest from one made-up node, listing nothing: a node that accepts it answers the
/// sender's address with a push of its map.
fn fake_digest(node: &str) -> Result<Vec<u8>> {
    let ip = fresh_loopback();
    let report = LoadReport {
        node: NodeId::new(node)?,
        incarnation: unix_ms(),
        seq: 1,
        load: LoadVector::idle(1),
        api: SocketAddr::new(ip, 1),
        gossip: SocketAddr::new(ip, 2),
    };
    Ok(wire::encode_digest(&report, false, Vec::<DigestEntry>::new(), 1200)?.0)
}

/// A UDP socket on a fresh loopback address that waits at most `patience` for a datagram.
fn listening_socket(patience: Duration) -> Result<UdpSocket> {
    let socket = UdpSocket::bind(SocketAddr::new(fresh_loopback(), 0))?;
    socket.set_read_timeout(Some(patience))?;
    Ok(socket)
}

/// The next datagram `socket` receives within its patience, if any.
fn receive(socket: &UdpSocket) -> Result<Option<(Vec<u8>, SocketAddr)>> {
    let mut buf = vec![0u8; 65_536];
    match socket.recv_from(&mut buf) {
        Ok((len, from)) => Ok(Some((buf[..len].to_vec(), from))),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

#[test]
fn nodes_sharing_a_key_converge_and_a_node_with_another_key_never_joins() -> Result<()> {
    let shared = key_file("shared", &[&key(1)])?;
    let other = key_file("other", &[&key(2)])?;
    let first = keyed_spec("k0", vec![], &shared);
    let seed = first.gossip();
    let mut nodes = vec![WorkerProcess::start(first)?];
    nodes.push(WorkerProcess::start(keyed_spec("k1", vec![seed], &shared))?);
    // The third holds the same key through the environment variable rather than a file.
    nodes.push(start_with_env(
        WorkerSpec::new("k2", vec![seed]),
        &[("HEARSAY_CLUSTER_KEY", &key(1).to_hex())],
    )?);
    let stranger = WorkerProcess::start(keyed_spec("stranger", vec![seed], &other))?;

    let members: Vec<&WorkerProcess> = nodes.iter().collect();
    let joined = wait_until(JOIN_LIMIT, || all_alive(&members))?;
    eprintln!("3 keyed nodes converged after {joined:?}");
    // The stranger keeps pushing to its seed: each push is refused for its unknown key.
    wait_until(COUNT_LIMIT, || {
        Ok(receive_errors(nodes[0].spec.api(), "unknown_key")? >= 3.0)
    })?;
    // A stranger who copies the cluster's key id still fails authentication.
    let mut forged = Keyring::new(key(2), [])?.seal(
        &fake_push("forger")?,
        nodes[1].spec.gossip(),
        unix_ms(),
        &mut StdRng::from_os_rng(),
    )?;
    forged[4..8].copy_from_slice(&key(1).id().0);
    send(nodes[1].spec.gossip(), &forged)?;
    wait_until(COUNT_LIMIT, || {
        Ok(receive_errors(nodes[1].spec.api(), "authentication")? >= 1.0)
    })?;

    // Several more rounds: still no trace of the stranger or the forger anywhere.
    await_rounds(&nodes.iter().collect::<Vec<_>>(), 10, COUNT_LIMIT)?;
    for node in &nodes {
        ensure!(
            !knows(node, "stranger")?,
            "{} knows the stranger",
            node.spec.node_id
        );
        ensure!(
            !knows(node, "forger")?,
            "{} knows the forger",
            node.spec.node_id
        );
    }
    let view = stranger.cluster()?;
    ensure!(
        view["nodes"].as_array().map(Vec::len) == Some(1),
        "the stranger learnt of others: {view}"
    );
    // And the cluster is still whole.
    ensure!(all_alive(&members)?, "the keyed cluster came apart");
    let seen = nodes[0].cluster()?;
    eprintln!("receive errors at k0: {}", seen["gossip"]["receive_errors"]);
    ensure!(seen["gossip"]["receive_errors"]["unknown_key"].as_u64() >= Some(3));
    Ok(())
}

#[test]
fn keys_rotate_one_node_at_a_time_without_the_cluster_coming_apart() -> Result<()> {
    let old = key_file("rotate-0", &[&key(11)])?;
    let accept_new = key_file("rotate-1", &[&key(11), &key(12)])?;
    let send_new = key_file("rotate-2", &[&key(12), &key(11)])?;
    let new = key_file("rotate-3", &[&key(12)])?;

    let first = keyed_spec("r0", vec![], &old);
    let seed = first.gossip();
    let mut nodes = vec![WorkerProcess::start(first)?];
    for i in 1..3 {
        nodes.push(WorkerProcess::start(keyed_spec(
            &format!("r{i}"),
            vec![seed],
            &old,
        ))?);
    }
    let joined = wait_until(JOIN_LIMIT, || all_alive(&nodes.iter().collect::<Vec<_>>()))?;
    eprintln!("converged with K1 after {joined:?}");

    // One node at a time: step 1 adds K2 as accepted, step 2 makes it the primary with K1
    // still accepted, step 3 drops K1. At every moment each node holds the key that every other
    // seals with.
    let refused = |node: &WorkerProcess| -> Result<f64> {
        let mut sum = 0.0;
        for reason in ["unknown_key", "authentication", "replay"] {
            sum += receive_errors(node.spec.api(), reason)?;
        }
        Ok(sum)
    };
    // Datagrams refused by nodes since stopped.
    let mut refused_before = 0.0;
    for (step, keys) in [(1, &accept_new), (2, &send_new), (3, &new)] {
        for i in 0..nodes.len() {
            let id = nodes[i].spec.node_id.clone();
            let old_life = incarnation_of(&nodes[(i + 1) % nodes.len()].cluster()?, &id)
                .context("the node is known")?;
            refused_before += refused(&nodes[i])?;
            nodes[i].terminate()?;
            let status = nodes[i].wait_exit(Duration::from_secs(10))?;
            ensure!(status.success(), "{id} exited with {status}");
            let mut spec = nodes[i].spec.clone();
            spec.args = vec!["--cluster-key-file".into(), keys.display().to_string()];
            // Peers do not call on a node that left: it rejoins through its seeds.
            spec.seeds = nodes
                .iter()
                .filter(|n| n.spec.node_id != id)
                .map(|n| n.spec.gossip())
                .collect();
            nodes[i] = WorkerProcess::start(spec)?;
            let back = wait_until(JOIN_LIMIT, || {
                Ok(all_see_new_life(&nodes, &id, old_life)?
                    && all_alive(&nodes.iter().collect::<Vec<_>>())?)
            })?;
            eprintln!(
                "step {step}: {id} restarted with the new keyring, all converged after {back:?}"
            );
        }
    }
    // No datagram was ever refused along the way, by any node in any of its lives.
    let mut total = refused_before;
    for node in &nodes {
        total += refused(node)?;
    }
    ensure!(
        total == 0.0,
        "{total} datagrams refused during the rotation"
    );

    // K1 is retired now: a node still on it is refused, and never joins.
    let laggard = WorkerProcess::start(keyed_spec("r-old", vec![nodes[0].spec.gossip()], &old))?;
    wait_until(COUNT_LIMIT, || {
        Ok(receive_errors(nodes[0].spec.api(), "unknown_key")? >= 2.0)
    })?;
    ensure!(
        !knows(&nodes[0], "r-old")?,
        "a node on the retired key joined"
    );
    drop(laggard);
    Ok(())
}

#[test]
fn a_replayed_or_stale_datagram_is_counted_and_never_merged() -> Result<()> {
    let keys = key_file("replay", &[&key(21)])?;
    let node = WorkerProcess::start(keyed_spec("victim", vec![], &keys))?;
    let keyring = Keyring::new(key(21), [])?;
    let mut rng = StdRng::from_os_rng();
    wait_until(JOIN_LIMIT, || Ok(node.cluster().is_ok()))?;

    // A valid sealed datagram: accepted once, and its node appears.
    let sealed = keyring.seal(
        &fake_push("fake-1")?,
        node.spec.gossip(),
        unix_ms(),
        &mut rng,
    )?;
    send(node.spec.gossip(), &sealed)?;
    wait_until(COUNT_LIMIT, || knows(&node, "fake-1"))?;
    ensure!(receive_errors(node.spec.api(), "replay")? == 0.0);

    // The very same bytes again: a replay.
    send(node.spec.gossip(), &sealed)?;
    wait_until(COUNT_LIMIT, || {
        Ok(receive_errors(node.spec.api(), "replay")? == 1.0)
    })?;

    // Authentic, but stamped a minute ago (outside the 30 s window): a replay, never merged.
    let stale = keyring.seal(
        &fake_push("fake-stale")?,
        node.spec.gossip(),
        unix_ms() - 60_000,
        &mut rng,
    )?;
    send(node.spec.gossip(), &stale)?;
    // And one stamped a minute ahead.
    let ahead = keyring.seal(
        &fake_push("fake-ahead")?,
        node.spec.gossip(),
        unix_ms() + 60_000,
        &mut rng,
    )?;
    send(node.spec.gossip(), &ahead)?;
    wait_until(COUNT_LIMIT, || {
        Ok(receive_errors(node.spec.api(), "replay")? == 3.0)
    })?;
    ensure!(!knows(&node, "fake-stale")?, "a stale datagram was merged");
    ensure!(!knows(&node, "fake-ahead")?, "a future datagram was merged");
    Ok(())
}

#[test]
fn datagrams_sealed_for_one_node_are_refused_by_the_others_and_never_answered() -> Result<()> {
    let keys = key_file("misdirected", &[&key(41)])?;
    let first = keyed_spec("m0", vec![], &keys);
    let seed = first.gossip();
    let mut nodes = vec![WorkerProcess::start(first)?];
    for i in 1..3 {
        nodes.push(WorkerProcess::start(keyed_spec(
            &format!("m{i}"),
            vec![seed],
            &keys,
        ))?);
    }
    let joined = wait_until(JOIN_LIMIT, || all_alive(&nodes.iter().collect::<Vec<_>>()))?;
    eprintln!("3 keyed nodes converged after {joined:?}");
    let (a, others) = (&nodes[0], &nodes[1..]);
    let keyring = Keyring::new(key(41), [])?;
    let mut rng = StdRng::from_os_rng();
    let count = |node: &WorkerProcess, reason| receive_errors(node.spec.api(), reason);

    // What a member sends to A, sealed for A's address: a push carrying a node's report, and a
    // digest, which A answers.
    let now = unix_ms();
    let push = keyring.seal(
        &fake_push("misdirected-push")?,
        a.spec.gossip(),
        now,
        &mut rng,
    )?;
    let digest = keyring.seal(
        &fake_digest("misdirected-digest")?,
        a.spec.gossip(),
        now,
        &mut rng,
    )?;
    // The replayer resends them at once (well within the 30 s window) to B and C.
    let replayer = listening_socket(Duration::from_secs(2))?;
    let mut before = Vec::new();
    for node in others {
        before.push((count(node, "authentication")?, count(node, "replay")?));
        replayer.send_to(&push, node.spec.gossip())?;
        replayer.send_to(&digest, node.spec.gossip())?;
    }
    for (node, (auth, _)) in others.iter().zip(&before) {
        wait_until(COUNT_LIMIT, || {
            Ok(count(node, "authentication")? >= auth + 2.0)
        })
        .with_context(|| format!("{} did not refuse the replays", node.spec.node_id))?;
    }
    // Counted as failed authentication (not as replays: neither node had seen them), nothing
    // merged, and nothing sent back to the replayer.
    for (node, (auth, replay)) in others.iter().zip(&before) {
        let id = &node.spec.node_id;
        ensure!(
            count(node, "authentication")? == auth + 2.0,
            "{id}: other refusals"
        );
        ensure!(count(node, "replay")? == *replay, "{id} counted a replay");
        ensure!(
            !knows(node, "misdirected-push")?,
            "{id} merged the replayed push"
        );
        ensure!(
            !knows(node, "misdirected-digest")?,
            "{id} merged the replayed digest"
        );
    }
    ensure!(
        receive(&replayer)?.is_none(),
        "a node answered the replayer's address"
    );

    // The same datagrams do open at A, their destination: sent from the original sender's
    // address, they are merged and the digest is answered, sealed for that address.
    let sender = listening_socket(COUNT_LIMIT)?;
    sender.send_to(&push, a.spec.gossip())?;
    sender.send_to(&digest, a.spec.gossip())?;
    wait_until(COUNT_LIMIT, || {
        Ok(knows(a, "misdirected-push")? && knows(a, "misdirected-digest")?)
    })?;
    let (answer, from) = receive(&sender)?.context("A did not answer the digest")?;
    ensure!(from == a.spec.gossip(), "answered from {from}");
    let at_sender = [sender.local_addr()?];
    ensure!(
        keyring.open(&answer, &at_sender).is_ok(),
        "the answer is not sealed for its sender"
    );
    ensure!(keyring.open(&answer, &[replayer.local_addr()?]).is_err());

    // Replayed to A itself from the replayer's address: already seen, refused, not answered.
    // And A's real answer, captured, replayed to B and C: refused as well.
    let replays_at_a = count(a, "replay")?;
    replayer.send_to(&push, a.spec.gossip())?;
    replayer.send_to(&digest, a.spec.gossip())?;
    for node in others {
        replayer.send_to(&answer, node.spec.gossip())?;
    }
    wait_until(
        COUNT_LIMIT,
        || Ok(count(a, "replay")? >= replays_at_a + 2.0),
    )?;
    for (node, (auth, _)) in others.iter().zip(&before) {
        wait_until(COUNT_LIMIT, || {
            Ok(count(node, "authentication")? >= auth + 3.0)
        })
        .with_context(|| format!("{} did not refuse A's answer", node.spec.node_id))?;
    }
    ensure!(
        receive(&replayer)?.is_none(),
        "a node answered the replayer's address"
    );
    // Through all this, the cluster itself lost nothing: no other datagram was refused.
    ensure!(
        all_alive(&nodes.iter().collect::<Vec<_>>())?,
        "the cluster came apart"
    );
    ensure!(
        count(a, "authentication")? == 0.0,
        "A refused a datagram of its peers"
    );
    Ok(())
}

#[test]
fn open_and_keyed_nodes_drop_and_count_each_others_datagrams() -> Result<()> {
    let keys = key_file("mixed", &[&key(31)])?;
    let open_spec = WorkerSpec::new("open", vec![]);
    let keyed = WorkerProcess::start(keyed_spec("keyed", vec![open_spec.gossip()], &keys))?;
    let open = WorkerProcess::start(WorkerSpec {
        seeds: vec![keyed.spec.gossip()],
        ..open_spec
    })?;

    // Each keeps trying its seed, and each drops what the other sends.
    wait_until(COUNT_LIMIT, || {
        Ok(receive_errors(open.spec.api(), "sealed")? >= 2.0
            && receive_errors(keyed.spec.api(), "unsealed")? >= 2.0)
    })?;
    // Garbage that is not a sealed envelope: malformed at the keyed node, a decode error at
    // the open one.
    send(keyed.spec.gossip(), b"not a hearsay datagram")?;
    send(open.spec.gossip(), b"not a hearsay datagram")?;
    wait_until(COUNT_LIMIT, || {
        Ok(receive_errors(keyed.spec.api(), "malformed")? >= 1.0
            && receive_errors(open.spec.api(), "decode")? >= 1.0)
    })?;
    // Each says in its log why it does not join, naming the sender.
    let (open_log, keyed_log) = (open.log()?, keyed.log()?);
    let hint = format!(
        "sealed datagrams from {} but no cluster key here",
        keyed.spec.gossip()
    );
    ensure!(open_log.contains(&hint), "no {hint:?} in:\n{open_log}");
    let hint = format!(
        "plain datagrams from {} but this node has a cluster key",
        open.spec.gossip()
    );
    ensure!(keyed_log.contains(&hint), "no {hint:?} in:\n{keyed_log}");
    ensure!(
        !knows(&open, "keyed")?,
        "the open node merged a sealed report"
    );
    ensure!(
        !knows(&keyed, "open")?,
        "the keyed node merged a plain report"
    );
    Ok(())
}

#[test]
fn the_command_line_generates_keys_and_names_the_bad_line_of_a_key_file() -> Result<()> {
    let bin = worker_bin()?;
    let out = Command::new(&bin).arg("--generate-key").output()?;
    ensure!(out.status.success(), "--generate-key failed: {out:?}");
    let key = String::from_utf8(out.stdout)?;
    let key = key.trim();
    ensure!(
        key.len() == 64 && key.chars().all(|c| c.is_ascii_hexdigit()),
        "not a key: {key:?}"
    );
    let again = Command::new(&bin).arg("--generate-key").output()?;
    ensure!(
        String::from_utf8(again.stdout)?.trim() != key,
        "the same key twice"
    );
    ensure!(Keyring::parse(key).is_ok());

    let dir = std::env::temp_dir().join(format!("hearsay-security-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let bad = dir.join("bad-keys");
    std::fs::write(&bad, format!("# primary\n{key}\n\n{}\n", &key[..20]))?;
    let ip = fresh_loopback();
    let out = Command::new(&bin)
        .args(["--api", &format!("{ip}:0"), "--gossip", &format!("{ip}:0")])
        .args(["--data-dir", "none"])
        .arg("--cluster-key-file")
        .arg(&bad)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(2),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(
        stderr.contains("--cluster-key-file") && stderr.contains("line 4"),
        "{stderr}"
    );
    Ok(())
}
