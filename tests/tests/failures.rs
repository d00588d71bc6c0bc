//! Real `worker` processes on loopback under a steady load of short jobs, while one of five
//! dies (`kill -9`: a node holding queued jobs, or a thief running stolen ones) or leaves
//! (`SIGTERM`, also under overload): every job that `POST /v1/jobs` accepted ends in exactly one
//! terminal state readable through its entry node, none goes missing, and none runs twice (each
//! job leaves a mark that a second start would trip over; see [`Marks`]).
//!
//! Jobs are only ever submitted to the four nodes that stay: a job's entry node answers for it,
//! and a dead entry node answers for nothing. The counts are printed (run with `--nocapture`).

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use hearsay_tests::cluster::{
    all_see_new_life, await_rounds, get_json, get_text, incarnation_of, metric, post_json,
    start_cluster, wait_until, WorkerProcess,
};
use hearsay_tests::netns::run;
use serde_json::{json, Value};

// Not `tests/tests/namespace.rs`: cargo would take that for a test target of its own.
#[path = "failures/namespace.rs"]
mod namespace;

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

/// Jobs that show a second run. Each is `exec mark [seconds, DIR/i]`: it makes its own
/// directory first and then sleeps. `mkdir` fails on a directory that exists, so a job started
/// twice — on two nodes, or twice on one — fails the second time, and every job that started
/// left its directory behind.
struct Marks {
    dir: tempfile::TempDir,
    /// The `--config` file that declares `mark` (give it to every worker).
    config: String,
}

impl Marks {
    fn new() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("commands.toml");
        std::fs::write(
            &config,
            "[commands.mark]\nprogram = \"/bin/sh\"\n\
             args = [\"-c\", \"/bin/mkdir \\\"$1\\\" && /bin/sleep \\\"$0\\\"\", \"{0}\", \"{1}\"]\n",
        )?;
        let config = config
            .to_str()
            .context("a UTF-8 temporary path")?
            .to_owned();
        Ok(Marks { dir, config })
    }

    /// Job `i`: 100 to 300 ms.
    fn job(&self, i: usize) -> Value {
        let seconds = format!("{:.3}", (100 + (i * 37) % 201) as f64 / 1000.0);
        let mark = self.dir.path().join(format!("job-{i}"));
        json!({"kind": "exec", "command": "mark", "args": [seconds, mark]})
    }

    /// How many jobs left their mark.
    fn started(&self) -> Result<usize> {
        let entries = std::fs::read_dir(self.dir.path())?;
        let marks = entries.filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("job-"))
        });
        Ok(marks.count())
    }
}

/// A job that was accepted (`202`): its id, the index of its entry node, and its number.
struct Submitted {
    id: String,
    entry: usize,
    index: usize,
}

/// How [`run_load`] submits: to which nodes (round-robin), how many jobs, how fast.
struct Load<'a> {
    entries: Vec<usize>,
    jobs: usize,
    pace: Duration,
    marks: &'a Marks,
}

impl<'a> Load<'a> {
    /// [`JOBS`] jobs every [`PACE`] to every node but [`VICTIM`].
    fn steady(marks: &'a Marks) -> Self {
        Load {
            entries: (0..5).filter(|&i| i != VICTIM).collect(),
            jobs: JOBS,
            pace: PACE,
            marks,
        }
    }
}

/// Submits `load` without waiting for the jobs' ends; `during` is called before each
/// submission with its index. Returns the jobs accepted and how many were refused (`503`: no
/// room in reach).
fn run_load(
    nodes: &mut [WorkerProcess],
    load: &Load<'_>,
    mut during: impl FnMut(usize, &mut [WorkerProcess]) -> Result<()>,
) -> Result<(Vec<Submitted>, usize)> {
    let entries = &load.entries;
    let start = Instant::now();
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..load.jobs {
        during(i, nodes)?;
        let entry = entries[i % entries.len()];
        let job = load.marks.job(i);
        let (status, body) = post_json(
            nodes[entry].spec.api(),
            "/v1/jobs",
            &job,
            &[],
            SUBMIT_TIMEOUT,
        )?;
        match status {
            202 => {
                let id = body["id"].as_str().context("a 202 without an id")?;
                accepted.push(Submitted {
                    id: id.to_owned(),
                    entry,
                    index: i,
                });
            }
            503 => refused += 1,
            other => bail!("job {i} at w{entry}: {other} {body}"),
        }
        let next = start + load.pace * (i as u32 + 1);
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

/// What a `kill -9` of node [`VICTIM`] under `load` left: the jobs accepted, how many were
/// refused, their outcomes, and the job before which it died.
struct Killed {
    accepted: Vec<Submitted>,
    refused: usize,
    outcomes: Vec<Value>,
    at: usize,
}

/// Runs `load` and kills [`VICTIM`] a third into it, as soon as `busy` says it holds work (at
/// the latest two thirds in); waits until every accepted job has ended at its entry node.
fn kill_under_load(
    nodes: &mut [WorkerProcess],
    load: &Load<'_>,
    busy: fn(&WorkerProcess) -> Result<bool>,
) -> Result<Killed> {
    let mut killed_at = None;
    let (accepted, refused) = run_load(nodes, load, |i, nodes| {
        let jobs = load.jobs;
        if killed_at.is_none() && i >= jobs / 3 && (i >= 2 * jobs / 3 || busy(&nodes[VICTIM])?) {
            nodes[VICTIM].kill();
            killed_at = Some(i);
        }
        Ok(())
    })?;
    let outcomes = settle(nodes, &accepted)?;
    let at = killed_at.unwrap_or(load.jobs);
    Ok(Killed {
        accepted,
        refused,
        outcomes,
        at,
    })
}

/// Every accepted job has one terminal state — succeeded, or lost on `dead` with a reason
/// naming it — and none ran twice: no job failed (a second start finds its mark), every job
/// that succeeded left its mark, and no refused job left one. Returns (succeeded, lost).
fn exactly_once_or_lost_on(
    dead: &str,
    accepted: &[Submitted],
    outcomes: &[Value],
    marks: &Marks,
) -> Result<(usize, usize)> {
    for outcome in outcomes {
        match outcome["status"].as_str() {
            Some("succeeded") => {
                // Its path: the entry node first, every node it moved through, the executing
                // node last.
                let path = outcome["path"].as_array().context("a path")?;
                assert_eq!(path.first(), Some(&outcome["entry_node"]), "{outcome}");
                assert_eq!(path.last(), Some(&outcome["executing_node"]), "{outcome}");
                assert_eq!(
                    Some(path.len() as u64 - 1),
                    outcome["hops"].as_u64(),
                    "{outcome}"
                );
                assert!(path.len() <= 3, "a job moves at most twice: {outcome}");
            }
            Some("lost") => {
                assert_eq!(outcome["executing_node"], dead, "{outcome}");
                let reason = outcome["error"].as_str().unwrap_or("");
                assert!(reason.contains(dead), "the reason names {dead}: {outcome}");
            }
            _ => {
                panic!("only succeeded and lost are expected (a failed mark ran twice): {outcome}")
            }
        }
    }
    let (succeeded, lost) = (count(outcomes, "succeeded"), count(outcomes, "lost"));
    assert_eq!(succeeded + lost, accepted.len());
    for (job, outcome) in accepted.iter().zip(outcomes) {
        let mark = marks.dir.path().join(format!("job-{}", job.index));
        if outcome["status"] == "succeeded" {
            assert!(mark.is_dir(), "job {} succeeded without its mark", job.id);
        }
    }
    let started = marks.started()?;
    assert!(
        started <= accepted.len(),
        "{started} marks for {} accepted jobs: a refused job ran",
        accepted.len()
    );
    Ok((succeeded, lost))
}

/// Whether `node` runs a job.
fn runs_work(node: &WorkerProcess) -> Result<bool> {
    Ok(metric(node.spec.api(), "hearsay_jobs_running")? >= 1.0)
}

/// Moved to another node than the one it entered.
fn moved(outcome: &Value) -> bool {
    outcome["hops"].as_u64().is_some_and(|h| h >= 1)
}

#[test]
fn a_kill_9_under_load_loses_only_the_jobs_on_the_dead_node_and_none_goes_missing() -> Result<()> {
    let marks = Marks::new()?;
    let args = [
        "--policy",
        "p2c",
        "--steal",
        "on",
        "--config",
        &marks.config,
    ];
    let mut nodes = start_five(&args)?;
    let victim = nodes[VICTIM].spec.node_id.clone();
    let old_incarnation = incarnation_of(&nodes[0].cluster()?, &victim).context("victim known")?;
    let killed = kill_under_load(&mut nodes, &Load::steady(&marks), holds_work)?;
    let (succeeded, lost) =
        exactly_once_or_lost_on(&victim, &killed.accepted, &killed.outcomes, &marks)?;
    let on_victim = killed
        .outcomes
        .iter()
        .filter(|o| o["executing_node"] == victim.as_str())
        .count();
    eprintln!(
        "kill -9 of {victim} (a victim: it held queued jobs) before job {}: accepted {}, \
         refused {}, succeeded {succeeded}, lost {lost}, placed on {victim} {on_victim}, \
         moved {}, {} marks",
        killed.at,
        killed.accepted.len(),
        killed.refused,
        killed.outcomes.iter().filter(|o| moved(o)).count(),
        marks.started()?
    );
    assert!(
        lost >= 1,
        "the victim held work when it died, so some job is lost"
    );

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

/// Stealing on and no placement (`--policy local`): every job enters `w0` or `w1`, faster than
/// they run, and the three others only take queued jobs from them. One thief dies (`kill -9`)
/// while it runs a stolen job, perhaps mid-transfer: every accepted job still has exactly one
/// terminal state, none runs twice, and only jobs on the thief are lost.
#[test]
fn a_kill_9_of_a_thief_under_load_runs_no_job_twice() -> Result<()> {
    let marks = Marks::new()?;
    let args = [
        "--policy",
        "local",
        "--steal",
        "on",
        "--config",
        &marks.config,
    ];
    let mut nodes = start_five(&args)?;
    let thief = nodes[VICTIM].spec.node_id.clone();
    let load = Load {
        entries: vec![0, 1],
        ..Load::steady(&marks)
    };
    let killed = kill_under_load(&mut nodes, &load, runs_work)?;
    let (succeeded, lost) =
        exactly_once_or_lost_on(&thief, &killed.accepted, &killed.outcomes, &marks)?;
    let stolen = killed.outcomes.iter().filter(|o| moved(o)).count();
    eprintln!(
        "kill -9 of {thief} (a thief) before job {}: accepted {}, refused {}, succeeded \
         {succeeded}, lost {lost}, stolen {stolen}, {} marks",
        killed.at,
        killed.accepted.len(),
        killed.refused,
        marks.started()?
    );
    assert!(stolen >= 1, "idle nodes took queued jobs");
    let elsewhere = |o: &&Value| !matches!(o["executing_node"].as_str(), Some("w0" | "w1"));
    assert!(
        killed.outcomes.iter().filter(elsewhere).count() >= 1,
        "the thieves ran jobs"
    );
    Ok(())
}

/// What a `SIGTERM` to [`VICTIM`] under a load left: the jobs accepted, how many were refused,
/// their outcomes, the job before which it was sent, the leaver's queue then, and how long the
/// leaver took to exit.
struct Left {
    accepted: Vec<Submitted>,
    refused: usize,
    outcomes: Vec<Value>,
    at: usize,
    queued: f64,
    exited: Duration,
}

/// Runs `load` and sends [`VICTIM`] `SIGTERM` once `now(i, leaver)` says so (at the latest
/// before the last job); checks that it exits 0 within `drain_ms` and [`EXIT_MARGIN`], and
/// waits until every accepted job has ended at its entry node.
fn terminate_under_load(
    nodes: &mut [WorkerProcess],
    load: &Load<'_>,
    drain_ms: u64,
    now: impl Fn(usize, &WorkerProcess) -> Result<bool>,
) -> Result<Left> {
    let mut terminated = None;
    let (accepted, refused) = run_load(nodes, load, |i, nodes| {
        if terminated.is_none() && (i + 1 == load.jobs || now(i, &nodes[VICTIM])?) {
            let queued = metric(nodes[VICTIM].spec.api(), "hearsay_jobs_queued")?;
            nodes[VICTIM].terminate()?;
            terminated = Some((i, queued, Instant::now()));
        }
        Ok(())
    })?;
    let (at, queued, since) = terminated.context("the leaver was sent SIGTERM")?;
    let bound = Duration::from_millis(drain_ms) + EXIT_MARGIN;
    let leaver = nodes[VICTIM].spec.node_id.clone();
    let status = nodes[VICTIM].wait_exit(bound.saturating_sub(since.elapsed()))?;
    let exited = since.elapsed();
    assert!(status.success(), "{leaver} exited with {status}");
    let outcomes = settle(nodes, &accepted)?;
    Ok(Left {
        accepted,
        refused,
        outcomes,
        at,
        queued,
        exited,
    })
}

impl Left {
    fn report(&self, what: &str, leaver: &str, marks: &Marks) -> Result<()> {
        let on_leaver = self
            .outcomes
            .iter()
            .filter(|o| o["executing_node"] == leaver);
        eprintln!(
            "{what}: SIGTERM to {leaver} before job {} with {} queued there, exited 0 after \
             {:?}: accepted {}, refused {}, succeeded {}, lost {}, run on {leaver} {}, moved {}, \
             {} marks",
            self.at,
            self.queued,
            self.exited,
            self.accepted.len(),
            self.refused,
            count(&self.outcomes, "succeeded"),
            count(&self.outcomes, "lost"),
            on_leaver.count(),
            self.outcomes.iter().filter(|o| moved(o)).count(),
            marks.started()?
        );
        Ok(())
    }

    /// Every accepted job succeeded, exactly once.
    fn check_none_lost(&self, marks: &Marks) -> Result<()> {
        for outcome in &self.outcomes {
            assert_eq!(outcome["status"], "succeeded", "{outcome}");
        }
        exactly_once_or_lost_on("", &self.accepted, &self.outcomes, marks)?;
        Ok(())
    }
}

#[test]
fn a_sigterm_under_load_loses_no_job_and_exits_within_the_drain_bound() -> Result<()> {
    let marks = Marks::new()?;
    let drain = format!("{DRAIN_TIMEOUT_MS}");
    let args = [
        "--policy",
        "p2c",
        "--drain-timeout",
        &drain,
        "--config",
        &marks.config,
    ];
    let mut nodes = start_five(&args)?;
    let leaver = nodes[VICTIM].spec.node_id.clone();
    let load = Load::steady(&marks);
    let left = terminate_under_load(&mut nodes, &load, DRAIN_TIMEOUT_MS, |i, leaver| {
        Ok(i >= JOBS / 3 && (i >= 2 * JOBS / 3 || holds_work(leaver)?))
    })?;
    left.report("steady load", &leaver, &marks)?;
    left.check_none_lost(&marks)?;
    let on_leaver = left
        .outcomes
        .iter()
        .filter(|o| o["executing_node"] == leaver.as_str());
    assert!(on_leaver.count() >= 1, "the leaver ran some of the load");
    Ok(())
}

/// Overload: jobs arrive twice as fast as the five nodes run them, so every queue fills toward
/// `--queue-limit` (20, so 4 s of work at 200 ms a job) and some submissions are refused. The
/// leaver gets `SIGTERM` with its queue near full and a drain bound (2 s) shorter than its
/// queue: it hands its queued jobs on to peers as they find room, waits only for its running
/// job, and loses none. (With `--steal off` it runs its queue itself and, measured, loses 5 of
/// its 15 queued jobs at the drain bound.)
#[test]
fn a_sigterm_under_overload_hands_the_queue_on_and_loses_no_job() -> Result<()> {
    const DRAIN_MS: u64 = 2_000;
    let marks = Marks::new()?;
    let drain = format!("{DRAIN_MS}");
    let args = [
        "--policy",
        "p2c",
        "--steal",
        "on",
        "--queue-limit",
        "20",
        "--drain-timeout",
        &drain,
        "--config",
        &marks.config,
    ];
    let mut nodes = start_five(&args)?;
    let leaver = nodes[VICTIM].spec.node_id.clone();
    let load = Load {
        jobs: 200,
        pace: Duration::from_millis(20),
        ..Load::steady(&marks)
    };
    let left = terminate_under_load(&mut nodes, &load, DRAIN_MS, |i, leaver| {
        let queued = metric(leaver.spec.api(), "hearsay_jobs_queued")?;
        Ok(i >= 150 && queued >= 15.0)
    })?;
    left.report("overload", &leaver, &marks)?;
    left.check_none_lost(&marks)?;
    assert!(left.refused >= 1, "the load was more than the cluster runs");
    Ok(())
}

/// A real partition: five workers split 3 | 2 by routing rules that discard every packet
/// between the sides, in a network namespace of the test's own.
#[test]
fn a_partition_that_really_drops_packets_is_detected_and_healed() -> Result<()> {
    namespace::in_namespace(
        "a_partition_that_really_drops_packets_is_detected_and_healed",
        namespace::partition_inside_the_namespace,
    )
}

/// Real packet loss: five workers in a network namespace of the test's own, where an nftables
/// rule drops 10% of the gossip datagrams at random as they arrive, for 20 s. No node stops, so
/// every death declared would be false: there must be none. (Longer and larger runs:
/// `target/release/loss-soak`, figures in the README.)
#[test]
fn ten_percent_real_packet_loss_kills_no_one() -> Result<()> {
    namespace::in_namespace(
        "ten_percent_real_packet_loss_kills_no_one",
        namespace::lossy_inside_the_namespace,
    )
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
    // Every node has heard every other's load a few times over: the entry node's placer offers
    // to each in turn.
    await_rounds(&nodes.iter().collect::<Vec<_>>(), 10, JOIN_LIMIT)?;
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
    // Let the thawed peer read what waited for it, and run it: once it has run a few gossip
    // rounds since it thawed, its runtime has served the connections queued in its sockets (the
    // jobs take 20 ms). A wait for the peer to be live again, not for time to pass.
    await_rounds(&[frozen], 5, limit)?;
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
