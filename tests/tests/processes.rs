//! Real `worker` processes on loopback: join, `kill -9`, restart, `SIGTERM`.
//!
//! Slow by nature (real time, real sockets), so there are few of them. Each node is dropped, and
//! so killed, whatever the outcome.

use std::time::Duration;

use anyhow::{ensure, Result};
use hearsay_tests::cluster::{
    all_see, all_see_new_life, incarnation_of, start_cluster, wait_until, WorkerProcess,
};

/// Generous bounds: these are real processes on a shared 2-core machine. The measured times are
/// printed; the tight figures live in the README, measured by `cluster-probe`.
const JOIN_LIMIT: Duration = Duration::from_secs(20);
const DETECT_LIMIT: Duration = Duration::from_secs(20);

#[test]
fn five_workers_join_detect_a_kill_take_back_a_restart_and_see_a_leave() -> Result<()> {
    let mut nodes = start_cluster(5, "w", &[], JOIN_LIMIT)?;

    // kill -9 one node: the rest mark it dead.
    let victim = nodes[3].spec.node_id.clone();
    let old_incarnation = incarnation_of(&nodes[0].cluster()?, &victim).expect("victim known");
    nodes[3].kill();
    let observers: Vec<&WorkerProcess> = nodes.iter().filter(|n| n.pid().is_some()).collect();
    let detected = wait_until(DETECT_LIMIT, || all_see(&observers, &victim, "dead"))?;
    eprintln!("kill -9 of {victim} seen dead by all 4 peers after {detected:?}");

    // Restart it with the same id and address: it rejoins with a higher incarnation.
    let spec = nodes[3].spec.clone();
    nodes[3] = WorkerProcess::start(spec)?;
    let rejoined = wait_until(JOIN_LIMIT, || {
        all_see_new_life(&nodes, &victim, old_incarnation)
    })?;
    eprintln!("{victim} rejoined with a higher incarnation after {rejoined:?}");

    // SIGTERM another: it leaves gracefully and promptly, and the rest mark it left, not dead.
    let leaver = nodes[4].spec.node_id.clone();
    nodes[4].terminate()?;
    let status = nodes[4].wait_exit(Duration::from_secs(5))?;
    assert!(status.success(), "{leaver} exited with {status}");
    let observers: Vec<&WorkerProcess> = nodes[..4].iter().collect();
    let left = wait_until(DETECT_LIMIT, || all_see(&observers, &leaver, "left"))?;
    eprintln!("{leaver} seen left by all after {left:?} (after its exit)");
    Ok(())
}

/// A node whose seed never answers says so, naming the seed, once it has been alone for the
/// notice period (30 s), and goes on running (its API answers).
#[test]
fn a_node_whose_seed_never_answers_says_so_in_its_log() -> Result<()> {
    // A loopback address where nothing listens: the datagrams go nowhere.
    let silent = std::net::SocketAddr::new(hearsay_tests::cluster::fresh_loopback(), 7946);
    let node = WorkerProcess::start(hearsay_tests::cluster::WorkerSpec::new(
        "lonely",
        vec![silent],
    ))?;
    let line = format!("no live peer; seeds {silent} unanswered for");
    let said = wait_until(Duration::from_secs(60), || Ok(node.log()?.contains(&line)))?;
    eprintln!("the lonely line came after {said:?}");
    ensure!(said >= Duration::from_secs(29), "said too early: {said:?}");
    node.cluster()?;
    Ok(())
}
