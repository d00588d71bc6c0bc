//! Durable jobs on real processes: a worker with `--data-dir` killed with `kill -9` and
//! started again forgets nothing it accepted. Queued jobs run after the restart, a job that
//! was running is `lost` ("node restarted while it ran"), outcomes and idempotency keys answer
//! as before; under load, killed at seeded random instants twenty times, every job a client
//! was told was accepted ends in exactly one terminal state readable at its entry node, and
//! none runs twice (each job is an `exec` that makes its own directory first, so a second start
//! fails). An end a client was shown (a `?wait=true` answer) is the end after a `kill -9`; ten
//! `SIGTERM`s in a row forget no end. A store file that is not a store refuses the start with one
//! line.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use hearsay_tests::cluster::{
    all_alive, get_json, post_json, wait_until, worker_bin, WorkerProcess, WorkerSpec,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(20);
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(8);
const TERMINAL: [&str; 4] = ["succeeded", "failed", "timed_out", "lost"];

/// A worker spec keeping its store in `dir`, with `extra` flags.
fn durable(name: &str, dir: &Path, seeds: Vec<SocketAddr>, extra: &[&str]) -> WorkerSpec {
    let mut spec = WorkerSpec::new(name, seeds);
    spec.args = ["--data-dir", dir.to_str().expect("a UTF-8 path")]
        .iter()
        .chain(extra)
        .map(|s| (*s).to_owned())
        .collect();
    spec
}

/// Starts `spec` and waits until its API answers.
fn start(spec: WorkerSpec) -> Result<WorkerProcess> {
    let node = WorkerProcess::start(spec)?;
    wait_until(LIMIT, || Ok(get_json(node.spec.api(), "/healthz").is_ok()))?;
    Ok(node)
}

fn job(api: SocketAddr, id: &str) -> Result<Value> {
    get_json(api, &format!("/v1/jobs/{id}"))
}

fn submit(api: SocketAddr, body: &Value, headers: &[(&str, &str)]) -> Result<String> {
    let (status, answer) = post_json(api, "/v1/jobs", body, headers, SUBMIT_TIMEOUT)?;
    ensure!(status == 202, "{status} {answer}");
    Ok(answer["id"].as_str().context("an id")?.to_owned())
}

#[test]
fn a_restart_runs_the_queued_jobs_loses_the_running_one_and_keeps_outcomes_and_keys() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let spec = durable("d0", dir.path(), vec![], &["--steal", "off"]);
    let mut node = start(spec.clone())?;
    let api = node.spec.api();

    let (status, ended) = post_json(
        api,
        "/v1/jobs?wait=true",
        &json!({"kind": "echo", "data": "one"}),
        &[],
        SUBMIT_TIMEOUT,
    )?;
    ensure!(status == 200 && ended["status"] == "succeeded", "{ended}");
    let ended_id = ended["id"].as_str().context("an id")?.to_owned();
    let running = submit(api, &json!({"kind": "sleep", "ms": 600_000}), &[])?;
    let keyed_body = json!({"kind": "sleep", "ms": 50});
    let keyed = submit(api, &keyed_body, &[("Idempotency-Key", "restart-1")])?;
    let queued = submit(api, &json!({"kind": "echo", "data": "after"}), &[])?;
    ensure!(job(api, &running)?["status"] == "running");
    ensure!(job(api, &queued)?["status"] == "queued");

    node.kill();
    let node = start(spec)?;
    let api = node.spec.api();

    // The queued jobs run now; the one that was running is lost, not run again.
    wait_until(LIMIT, || {
        Ok(job(api, &queued)?["status"] == "succeeded"
            && job(api, &keyed)?["status"] == "succeeded")
    })?;
    ensure!(job(api, &queued)?["output"] == "after");
    let lost = job(api, &running)?;
    ensure!(lost["status"] == "lost", "{lost}");
    ensure!(
        lost["error"]
            .as_str()
            .is_some_and(|e| e.contains("restarted while it ran")),
        "{lost}"
    );
    // The outcome from before the crash answers as before.
    let again = job(api, &ended_id)?;
    ensure!(again["status"] == "succeeded" && again["output"] == "one");
    // The key names its job across the restart: nothing new runs.
    let (status, replay) = post_json(
        api,
        "/v1/jobs",
        &keyed_body,
        &[("Idempotency-Key", "restart-1")],
        SUBMIT_TIMEOUT,
    )?;
    ensure!(
        status == 202 && replay["id"] == keyed.as_str(),
        "{status} {replay}"
    );
    Ok(())
}

/// `exec` jobs that make their own directory before they sleep: a second start fails.
struct Marks {
    dir: tempfile::TempDir,
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
        let config = config.to_str().context("a UTF-8 path")?.to_owned();
        Ok(Marks { dir, config })
    }

    /// Job `i`: 50 to 250 ms.
    fn job(&self, i: usize) -> Value {
        let seconds = format!("{:.3}", (50 + (i * 37) % 201) as f64 / 1000.0);
        let mark = self.dir.path().join(format!("job-{i}"));
        json!({"kind": "exec", "command": "mark", "args": [seconds, mark]})
    }

    fn started(&self, i: usize) -> bool {
        self.dir.path().join(format!("job-{i}")).exists()
    }
}

#[test]
fn twenty_kill_9s_at_random_instants_lose_no_accepted_job_and_run_none_twice() -> Result<()> {
    let seed: u64 = std::env::var("HEARSAY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2026);
    eprintln!("seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let marks = Marks::new()?;
    let (d0, d1) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let flags = ["--config", marks.config.as_str(), "--queue-limit", "50"];
    let peer = start(durable("k1", d1.path(), vec![], &flags))?;
    let spec = durable("k0", d0.path(), vec![peer.spec.gossip()], &flags);
    let mut victim = start(spec.clone())?;
    wait_until(LIMIT, || all_alive(&[&victim, &peer]))?;

    let api = victim.spec.api();
    // Job number -> id, for every job the victim answered 202 for.
    let mut accepted: Vec<(usize, String)> = Vec::new();
    let mut refused = 0;
    let mut next = 0;
    for kill in 0..20 {
        // A burst of submissions for a random while, then kill -9 at once.
        let until = Instant::now() + Duration::from_millis(rng.random_range(100..600));
        while Instant::now() < until {
            let (status, body) = post_json(api, "/v1/jobs", &marks.job(next), &[], SUBMIT_TIMEOUT)?;
            match status {
                202 => accepted.push((next, body["id"].as_str().context("id")?.to_owned())),
                503 => refused += 1,
                other => bail!("job {next}: {other} {body}"),
            }
            next += 1;
            std::thread::sleep(Duration::from_millis(rng.random_range(5..30)));
        }
        victim.kill();
        victim = start(spec.clone()).with_context(|| format!("restart {kill}"))?;
    }
    eprintln!(
        "{} jobs accepted, {refused} refused, over 20 kills",
        accepted.len()
    );
    // Every accepted job ends, readable at its entry node.
    let mut ends: HashMap<usize, Value> = HashMap::new();
    wait_until(Duration::from_secs(60), || {
        for (i, id) in &accepted {
            if ends.contains_key(i) {
                continue;
            }
            let now = job(api, id).with_context(|| format!("job {i} ({id}) is unknown"))?;
            if TERMINAL.contains(&now["status"].as_str().unwrap_or("")) {
                ends.insert(*i, now);
            }
        }
        Ok(ends.len() == accepted.len())
    })?;
    let mut by_status: HashMap<String, usize> = HashMap::new();
    for (i, end) in &ends {
        let status = end["status"].as_str().unwrap_or("").to_owned();
        // A second start would fail on its mark; a job that ran is marked.
        ensure!(status != "failed", "job {i} ran twice: {end}");
        if status == "succeeded" {
            ensure!(
                marks.started(*i),
                "job {i} succeeded without running: {end}"
            );
        }
        *by_status.entry(status).or_default() += 1;
    }
    eprintln!("ends: {by_status:?}");
    ensure!(
        by_status.get("succeeded").copied().unwrap_or(0) > accepted.len() / 2,
        "most jobs run: {by_status:?}"
    );
    Ok(())
}

/// Starts a worker on `data_dir`, which must refuse to start: its standard error.
fn refused_start(data_dir: &Path) -> Result<String> {
    let ip = hearsay_tests::cluster::fresh_loopback();
    let out = Command::new(worker_bin()?)
        .args(["--api", &format!("{ip}:0"), "--gossip", &format!("{ip}:0")])
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(!out.status.success(), "started: {stderr}");
    ensure!(!stderr.contains("panicked"), "{stderr}");
    Ok(stderr)
}

#[test]
fn a_store_file_that_is_not_a_store_refuses_the_start_with_one_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("jobs.redb"),
        b"not a database ".repeat(1000),
    )?;
    let stderr = refused_start(dir.path())?;
    ensure!(stderr.contains("cannot be opened"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("job store")).collect();
    ensure!(lines.len() == 1, "{stderr}");
    Ok(())
}

/// A node that could write nothing would accept nothing: it does not start, and says why. (A
/// store that stops writing later, a full disk, answers `503`: the test below.)
#[test]
fn a_data_directory_that_cannot_be_made_refuses_the_start_with_one_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory")?;
    let stderr = refused_start(&file.join("data"))?;
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("data directory"))
        .collect();
    ensure!(
        lines.len() == 1 && lines[0].contains("cannot be made"),
        "{stderr}"
    );
    Ok(())
}

/// A tmpfs of `size` mounted at a fresh directory, unmounted on drop; `None` where this
/// process may not mount (not root).
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Result<Option<SmallDisk>> {
        let dir = tempfile::tempdir()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Ok(Some(SmallDisk { dir })),
            _ if std::env::var_os("HEARSAY_REQUIRE_NETNS").is_some() => {
                bail!("cannot mount a tmpfs (HEARSAY_REQUIRE_NETNS=1 asks for root)")
            }
            _ => Ok(None),
        }
    }

    /// Fills what is left of it with one file.
    fn fill(&self) -> Result<()> {
        use std::io::Write as _;
        let mut file = std::fs::File::create(self.dir.path().join("filler"))?;
        let chunk = vec![0u8; 64 * 1024];
        // Bounded: the tmpfs is small.
        for _ in 0..10_000 {
            if file
                .write_all(&chunk)
                .and_then(|()| file.sync_all())
                .is_err()
            {
                return Ok(());
            }
        }
        bail!("the tmpfs never filled up")
    }

    fn empty(&self) -> Result<()> {
        Ok(std::fs::remove_file(self.dir.path().join("filler"))?)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_full_disk_refuses_new_jobs_with_503_and_loses_none_it_accepted() -> Result<()> {
    let Some(disk) = SmallDisk::mount("8m")? else {
        eprintln!("skipped: cannot mount a tmpfs here (not root)");
        return Ok(());
    };
    let store = disk.dir.path().join("store");
    let mut node = start(durable("f0", &store, vec![], &["--steal", "off"]))?;
    let api = node.spec.api();
    disk.fill()?;
    let data = "x".repeat(60 * 1024);
    let mut accepted = Vec::new();
    let mut refusal = None;
    // Each end writes 60 KiB: the store's file soon has to grow, and cannot.
    for _ in 0..300 {
        let body = json!({"kind": "echo", "data": data});
        let (status, answer) = post_json(api, "/v1/jobs?wait=true", &body, &[], SUBMIT_TIMEOUT)?;
        match status {
            200 => accepted.push(answer["id"].as_str().context("id")?.to_owned()),
            503 => {
                refusal = Some(answer);
                break;
            }
            other => bail!("{other} {answer}"),
        }
    }
    let refusal = refusal.context("never refused on a full disk")?;
    ensure!(
        refusal["error"]["code"] == "store_unavailable"
            && refusal["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("job store")),
        "{refusal}"
    );
    eprintln!("{} accepted before: {refusal}", accepted.len());
    // While the disk stays full, a new job is refused before it is taken.
    let (status, again) = post_json(
        api,
        "/v1/jobs",
        &json!({"kind": "echo", "data": "no"}),
        &[],
        SUBMIT_TIMEOUT,
    )?;
    ensure!(
        status == 503
            && again["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("takes no new jobs")),
        "{status} {again}"
    );
    for id in &accepted {
        ensure!(job(api, id)?["status"] == "succeeded", "job {id}");
    }
    // Room again: the store notices at the next submission.
    disk.empty()?;
    let id = submit(api, &json!({"kind": "echo", "data": "again"}), &[])?;
    wait_until(LIMIT, || Ok(job(api, &id)?["status"] == "succeeded"))?;
    node.kill();
    Ok(())
}

#[test]
fn a_node_stopped_with_sigterm_ten_times_in_a_row_answers_with_every_end() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let spec = durable("t0", dir.path(), vec![], &["--drain-timeout", "10000"]);
    let mut node = start(spec.clone())?;
    // Every job accepted so far, in every life of the node.
    let mut ids: Vec<String> = Vec::new();
    for stop in 0..10 {
        let api = node.spec.api();
        // One running, the rest queued behind it: the drain runs them all, then the node exits.
        for i in 0..3 {
            ids.push(submit(api, &json!({"kind": "sleep", "ms": 20 + i}), &[])?);
        }
        node.terminate()?;
        let status = node.wait_exit(LIMIT)?;
        ensure!(status.success(), "stop {stop}: exit {status}");
        node = start(spec.clone()).with_context(|| format!("restart {stop}"))?;
        for id in &ids {
            let end = job(node.spec.api(), id).with_context(|| format!("stop {stop}: {id}"))?;
            ensure!(end["status"] == "succeeded", "stop {stop}: {end}");
        }
    }
    node.kill();
    Ok(())
}

#[test]
fn an_end_a_client_was_shown_is_the_end_after_a_kill_9() -> Result<()> {
    let marks = Marks::new()?;
    let dir = tempfile::tempdir()?;
    let spec = durable(
        "w0",
        dir.path(),
        vec![],
        &["--config", marks.config.as_str()],
    );
    let mut node = start(spec.clone())?;
    for i in 0..10 {
        let api = node.spec.api();
        let (status, end) = post_json(
            api,
            "/v1/jobs?wait=true",
            &marks.job(i),
            &[],
            SUBMIT_TIMEOUT,
        )?;
        ensure!(
            status == 200 && end["status"] == "succeeded",
            "job {i}: {status} {end}"
        );
        // Killed the moment the answer is in: the end this client was shown is on disk.
        node.kill();
        node = start(spec.clone()).with_context(|| format!("restart {i}"))?;
        let id = end["id"].as_str().context("an id")?;
        let after = job(node.spec.api(), id)?;
        ensure!(
            after["status"] == "succeeded",
            "job {i} after kill -9: {after}"
        );
    }
    node.kill();
    Ok(())
}
