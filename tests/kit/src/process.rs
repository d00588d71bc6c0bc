//! Real `worker` processes on loopback, for the slow, few tests that kill and restart for real.
//!
//! Every node gets an address of its own in 127.0.0.0/8 (127.77.x.y, with x from this process's
//! id so that test binaries running side by side do not collide), fixed ports, and is killed when
//! its [`WorkerProcess`] is dropped, so that a failing test leaves no process behind.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

/// The HTTP port every test worker listens on (each on its own loopback address).
pub const API_PORT: u16 = 18080;
/// The gossip port every test worker listens on.
pub const GOSSIP_PORT: u16 = 17946;

/// The `worker` binary built beside this test binary (`target/<profile>/worker`).
pub fn worker_bin() -> Result<PathBuf> {
    if let Ok(path) = std::env::var("HEARSAY_WORKER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("cannot find the test executable")?;
    // target/<profile>/deps/<test> or target/<profile>/<bin>
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(format!("worker{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no worker binary beside {}: build it with `cargo build -p hearsay-worker` \
         (or `cargo test --workspace`, which builds it), or set HEARSAY_WORKER_BIN",
        exe.display()
    )
}

/// A fresh loopback address for one node: 127.77.x.y, unique within this process and unlikely
/// to collide with another test process.
pub fn fresh_loopback() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    // Spread processes over the third octet, nodes over the fourth.
    let x = ((pid % 200) as u8).wrapping_add((n / 250) as u8);
    let y = (n % 250) as u8 + 1;
    IpAddr::V4(Ipv4Addr::new(127, 77, x, y))
}

/// How to start one worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// `--node-id`.
    pub node_id: String,
    /// The node's loopback address (both sockets).
    pub ip: IpAddr,
    /// Gossip addresses of the seeds.
    pub seeds: Vec<SocketAddr>,
    /// Extra flags.
    pub args: Vec<String>,
    /// The network namespace to run it in (`ip netns exec`), if not the test's own.
    pub netns: Option<String>,
    /// Where its sockets listen, if not at `ip` (e.g. `0.0.0.0`, with `--advertise-*`).
    pub bind: Option<IpAddr>,
    /// `cgroup.procs` files (one per cgroup v1 hierarchy, or the one of v2) to write the
    /// process into before the worker starts: it is in its groups from its first instruction,
    /// as a worker reads `/proc/self/cgroup` once.
    pub cgroup_procs: Vec<PathBuf>,
}

impl WorkerSpec {
    /// A node on a fresh loopback address.
    pub fn new(node_id: impl Into<String>, seeds: Vec<SocketAddr>) -> Self {
        WorkerSpec {
            node_id: node_id.into(),
            ip: fresh_loopback(),
            seeds,
            args: Vec::new(),
            netns: None,
            bind: None,
            cgroup_procs: Vec::new(),
        }
    }
    /// Where its HTTP API listens.
    pub fn api(&self) -> SocketAddr {
        SocketAddr::new(self.ip, API_PORT)
    }
    /// Where its gossip socket listens.
    pub fn gossip(&self) -> SocketAddr {
        SocketAddr::new(self.ip, GOSSIP_PORT)
    }
}

/// A running `worker` process; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct WorkerProcess {
    /// How it was started.
    pub spec: WorkerSpec,
    child: Option<Child>,
}

impl WorkerProcess {
    /// Starts a worker. Its output goes to a log file under the target directory so that a
    /// failing test can be diagnosed without flooding the test output.
    pub fn start(spec: WorkerSpec) -> Result<Self> {
        start_with_env(spec, &[])
    }

    /// What the worker has logged so far (its stdout and stderr; of every worker this test
    /// process started under the same node id).
    pub fn log(&self) -> Result<String> {
        let path = log_path(&worker_bin()?, &self.spec.node_id);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9`: the node vanishes without a word.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Sends SIGTERM (the node should leave gracefully).
    pub fn terminate(&mut self) -> Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow!("not running"))?;
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        Ok(())
    }

    /// Waits up to `limit` for the process to exit, and reaps it.
    pub fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let child = self.child.as_mut().ok_or_else(|| anyhow!("not running"))?;
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} did not exit within {limit:?}", self.spec.node_id);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /v1/cluster` of this node, parsed.
    pub fn cluster(&self) -> Result<Value> {
        get_json(self.spec.api(), "/v1/cluster")
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The log file of the workers this test process starts as `node_id`.
fn log_path(bin: &Path, node_id: &str) -> PathBuf {
    log_dir(bin).join(format!("{node_id}-{}.log", std::process::id()))
}

fn log_dir(bin: &Path) -> PathBuf {
    bin.parent()
        .unwrap_or_else(|| Path::new("."))
        .join("hearsay-test-logs")
}

/// A GET on a node's API, parsed as JSON; any status but 200 is an error.
pub fn get_json(api: SocketAddr, path: &str) -> Result<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let body = agent
        .get(&format!("http://{api}{path}"))
        .call()
        .with_context(|| format!("GET http://{api}{path}"))?
        .body_mut()
        .read_to_string()?;
    serde_json::from_str(&body).with_context(|| format!("GET {path} gave no JSON: {body}"))
}

/// The state (`alive`, `suspect`, `dead`, `left`) that a `/v1/cluster` view gives `node`, if
/// the node is in it.
pub fn state_of(view: &Value, node: &str) -> Option<String> {
    entry_of(view, node)?["state"].as_str().map(str::to_owned)
}

/// The incarnation that a `/v1/cluster` view gives `node`.
pub fn incarnation_of(view: &Value, node: &str) -> Option<u64> {
    entry_of(view, node)?["incarnation"].as_u64()
}

fn entry_of<'a>(view: &'a Value, node: &str) -> Option<&'a Value> {
    view["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"].as_str() == Some(node))
}

/// Polls `check` every 50 ms until it holds or `limit` passes; returns how long it took.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> Result<bool>) -> Result<Duration> {
    let start = Instant::now();
    let mut last_error = None;
    while start.elapsed() < limit {
        match check() {
            Ok(true) => return Ok(start.elapsed()),
            Ok(false) => {}
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match last_error {
        Some(e) => Err(e.context(format!("condition not met within {limit:?}"))),
        None => bail!("condition not met within {limit:?}"),
    }
}

/// Whether every node in `observers` sees `node` in `state`.
pub fn all_see(observers: &[&WorkerProcess], node: &str, state: &str) -> Result<bool> {
    for observer in observers {
        let view = observer.cluster()?;
        if state_of(&view, node).as_deref() != Some(state) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// A POST of a JSON body to a node's API, with extra headers. Any status is an answer: returns
/// it with the body parsed as JSON (`Null` if it is not JSON); only a failed exchange is an
/// error.
pub fn post_json(
    api: SocketAddr,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, Value)> {
    let mut request = agent(timeout)
        .post(&format!("http://{api}{path}"))
        .header("Content-Type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request
        .send(body.to_string())
        .with_context(|| format!("POST http://{api}{path}"))?;
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// A GET on a node's API. Any status is an answer: returns it with the body as text.
pub fn get_text(api: SocketAddr, path: &str) -> Result<(u16, String)> {
    get_text_with(api, path, &[])
}

/// [`get_text`] with extra headers (e.g. `Authorization: Bearer TOKEN`).
pub fn get_text_with(
    api: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<(u16, String)> {
    let mut request = agent(Duration::from_secs(2)).get(&format!("http://{api}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request
        .call()
        .with_context(|| format!("GET http://{api}{path}"))?;
    let status = response.status().as_u16();
    Ok((status, response.body_mut().read_to_string()?))
}

/// The value of an unlabelled metric in a node's `GET /metrics`.
pub fn metric(api: SocketAddr, name: &str) -> Result<f64> {
    let (status, text) = get_text(api, "/metrics")?;
    if status != 200 {
        bail!("GET /metrics of {api}: {status}");
    }
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow!("no metric {name} at {api}"))
}

/// Whether every node in `observers` sees `node` alive with an incarnation above `old`: a
/// restarted node has rejoined.
pub fn all_see_new_life(observers: &[WorkerProcess], node: &str, old: u64) -> Result<bool> {
    for observer in observers {
        let view = observer.cluster()?;
        let fresh = incarnation_of(&view, node).is_some_and(|i| i > old);
        if !fresh || state_of(&view, node).as_deref() != Some("alive") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Starts a worker as [`WorkerProcess::start`] does, with extra environment variables (e.g.
/// `HEARSAY_CLUSTER_KEY`) set for it alone.
pub fn start_with_env(spec: WorkerSpec, env: &[(&str, &str)]) -> Result<WorkerProcess> {
    let bin = worker_bin()?;
    std::fs::create_dir_all(log_dir(&bin)).ok();
    let log_path = log_path(&bin, &spec.node_id);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let seeds: Vec<String> = spec.seeds.iter().map(|s| s.to_string()).collect();
    // `ip netns exec` runs the worker in place of itself: the child is the worker still.
    let mut argv: Vec<std::ffi::OsString> = match &spec.netns {
        Some(netns) => vec!["ip".into(), "netns".into(), "exec".into(), netns.into()],
        None => Vec::new(),
    };
    argv.push(bin.clone().into_os_string());
    // A shell that writes its own pid into the groups, then becomes the program: the child is
    // the worker still, and in its groups before it starts (no unsafe `pre_exec` hook needed).
    if !spec.cgroup_procs.is_empty() {
        let mut script = String::new();
        for procs in &spec.cgroup_procs {
            let procs = procs.to_str().context("a cgroup path that is not UTF-8")?;
            if procs.contains('\'') {
                bail!("a cgroup path with a quote: {procs}");
            }
            script.push_str(&format!("echo $$ > '{procs}' || exit 125; "));
        }
        script.push_str("exec \"$0\" \"$@\"");
        argv.splice(0..0, ["sh".into(), "-c".into(), script.into()]);
    }
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    let listen = spec.bind.unwrap_or(spec.ip);
    command
        .arg("--node-id")
        .arg(&spec.node_id)
        .arg("--api")
        .arg(SocketAddr::new(listen, API_PORT).to_string())
        .arg("--gossip")
        .arg(SocketAddr::new(listen, GOSSIP_PORT).to_string())
        .args(&spec.args)
        .env_remove("HEARSAY_DATA_DIR")
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if !seeds.is_empty() {
        command.arg("--seeds").arg(seeds.join(","));
    }
    // One slot, and jobs in memory, unless the test gives the node its own.
    for (flag, default) in [("--slots", "1"), ("--data-dir", "none")] {
        if !spec.args.iter().any(|a| a == flag) {
            command.arg(flag).arg(default);
        }
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    Ok(WorkerProcess {
        spec,
        child: Some(child),
    })
}

/// `gossip_receive_errors_total{reason}` of a node: the gossip datagrams it dropped for that
/// reason (`decode`, `authentication`, `unknown_key`, `replay`, `unsealed`, `sealed`,
/// `malformed`).
pub fn receive_errors(api: SocketAddr, reason: &str) -> Result<f64> {
    metric(
        api,
        &format!("hearsay_gossip_receive_errors_total{{reason=\"{reason}\"}}"),
    )
}

/// Whether every node sees every node of `nodes` (itself included) alive.
pub fn all_alive(nodes: &[&WorkerProcess]) -> Result<bool> {
    for observer in nodes {
        let view = observer.cluster()?;
        for node in nodes {
            if state_of(&view, &node.spec.node_id).as_deref() != Some("alive") {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Waits (at most `limit`) until every one of `nodes` has run `more` gossip rounds beyond the
/// count it reports now: a wait for the cluster to have gossiped, not for time to pass.
pub fn await_rounds(nodes: &[&WorkerProcess], more: u64, limit: Duration) -> Result<Duration> {
    let rounds = |node: &WorkerProcess| -> Result<u64> {
        let view = node.cluster()?;
        view["gossip"]["rounds"]
            .as_u64()
            .context("no gossip.rounds in /v1/cluster")
    };
    let start: Vec<u64> = nodes.iter().map(|n| rounds(n)).collect::<Result<_>>()?;
    wait_until(limit, || {
        for (node, then) in nodes.iter().zip(&start) {
            if rounds(node)? < then + more {
                return Ok(false);
            }
        }
        Ok(true)
    })
}

/// Starts `n` workers `<prefix>0` … with `args`, each seeded with the first, and waits up to
/// `limit` until every one sees every one alive; prints how long that took.
pub fn start_cluster(
    n: usize,
    prefix: &str,
    args: &[String],
    limit: Duration,
) -> Result<Vec<WorkerProcess>> {
    let spec = |i: usize, seeds| {
        let mut spec = WorkerSpec::new(format!("{prefix}{i}"), seeds);
        spec.args = args.to_vec();
        spec
    };
    let first = spec(0, vec![]);
    let seed = first.gossip();
    let mut nodes = vec![WorkerProcess::start(first)?];
    for i in 1..n {
        nodes.push(WorkerProcess::start(spec(i, vec![seed]))?);
    }
    let joined = wait_until(limit, || all_alive(&nodes.iter().collect::<Vec<_>>()))?;
    eprintln!("{n} workers: every one sees all {n} alive after {joined:?}");
    Ok(nodes)
}

/// Extra worker flags given as one string (`--worker-args "--gossip-interval 100"`), split at
/// white space.
pub fn split_args(text: Option<&str>) -> Vec<String> {
    text.unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}
