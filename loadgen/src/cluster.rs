//! A local cluster of `worker` processes on loopback, for the demo and the tests.
//!
//! Every worker listens on 127.0.0.1 with ports of its own (`base_port + i` for HTTP,
//! `base_port + 1000 + i` for gossip), joins through the first one, and writes its log to a file.
//! Each child is killed when the [`LocalCluster`] is dropped (tokio's `kill_on_drop`), so an
//! error or a ctrl-c that drops the cluster leaves no process behind.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::client::Http;

/// The `worker` executable: `explicit` if given, else `HEARSAY_WORKER_BIN`, else the `worker`
/// beside this executable (cargo builds both into `target/<profile>/`).
pub fn find_worker_bin(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_owned());
        }
        bail!("--worker-bin {}: no such file", path.display());
    }
    if let Some(path) = std::env::var_os("HEARSAY_WORKER_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("HEARSAY_WORKER_BIN={}: no such file", path.display());
    }
    let exe = std::env::current_exe().context("cannot tell where this executable is")?;
    let name = format!("worker{}", std::env::consts::EXE_SUFFIX);
    // target/<profile>/loadgen, or target/<profile>/deps/<test> for tests.
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(&name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    let dir = exe.parent().unwrap_or_else(|| Path::new("."));
    bail!(
        "no worker binary beside {} (looked for {}): build it with \
         `cargo build --release -p hearsay-worker` (or without --release for a debug loadgen), \
         or pass --worker-bin PATH",
        exe.display(),
        dir.join(&name).display()
    )
}

/// How to start a local cluster.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    /// The `worker` executable.
    pub worker_bin: PathBuf,
    /// How many workers.
    pub workers: usize,
    /// Job slots per worker.
    pub slots: u32,
    /// The first HTTP port; gossip ports start 1000 above.
    pub base_port: u16,
    /// The workers' `--gossip-interval`, if not their default.
    pub gossip_interval_ms: Option<u64>,
    /// Seeds the workers' rngs (worker i gets `seed + i`), so a demo can be repeated.
    pub seed: u64,
    /// Where the workers' logs go.
    pub log_dir: PathBuf,
}

impl ClusterSpec {
    fn api(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + i as u16))
    }

    fn gossip(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.base_port + 1000 + i as u16))
    }

    /// Checks the settings before anything is started.
    pub fn validate(&self) -> Result<()> {
        if self.workers == 0 {
            bail!("--workers must be at least 1");
        }
        if self.workers > 500 {
            bail!(
                "--workers {} is more than a local demo should start (at most 500)",
                self.workers
            );
        }
        if self.slots == 0 {
            bail!("--slots must be at least 1");
        }
        let last = u32::from(self.base_port) + 1000 + self.workers as u32;
        if self.base_port < 1024 || last > u32::from(u16::MAX) {
            bail!(
                "--base-port {} leaves no room for {} workers' ports (HTTP from it, gossip 1000 above; \
                 use 1024..{})",
                self.base_port,
                self.workers,
                u16::MAX as usize - 1000 - self.workers
            );
        }
        Ok(())
    }
}

/// One worker process.
#[derive(Debug)]
struct Worker {
    id: String,
    api: SocketAddr,
    log: PathBuf,
    child: Child,
}

/// Running `worker` processes; killed on drop.
#[derive(Debug)]
pub struct LocalCluster {
    workers: Vec<Worker>,
    policy: String,
    steal: bool,
}

impl LocalCluster {
    /// Starts the workers with `--policy policy` and `--steal on` or `off`; `tag` names their
    /// log files.
    pub fn start(spec: &ClusterSpec, policy: &str, steal: bool, tag: &str) -> Result<Self> {
        spec.validate()?;
        std::fs::create_dir_all(&spec.log_dir)
            .with_context(|| format!("cannot create {}", spec.log_dir.display()))?;
        let mut cluster = LocalCluster {
            workers: Vec::with_capacity(spec.workers),
            policy: policy.to_owned(),
            steal,
        };
        for i in 0..spec.workers {
            let id = format!("w{}", i + 1);
            let log = spec.log_dir.join(format!("{tag}-{id}.log"));
            let file = std::fs::File::create(&log)
                .with_context(|| format!("cannot create {}", log.display()))?;
            // Each worker keeps its jobs in a store of its own, made fresh for the run.
            let data = spec.log_dir.join("data").join(format!("{tag}-{id}"));
            if data.exists() {
                std::fs::remove_dir_all(&data)
                    .with_context(|| format!("cannot clear {}", data.display()))?;
            }
            let mut command = Command::new(&spec.worker_bin);
            command
                .arg("--data-dir")
                .arg(&data)
                .arg("--node-id")
                .arg(&id)
                .arg("--api")
                .arg(spec.api(i).to_string())
                .arg("--gossip")
                .arg(spec.gossip(i).to_string())
                .arg("--slots")
                .arg(spec.slots.to_string())
                .arg("--policy")
                .arg(policy)
                .arg("--steal")
                .arg(if steal { "on" } else { "off" })
                .arg("--seed")
                .arg(spec.seed.wrapping_add(i as u64).to_string());
            if i > 0 {
                command.arg("--seeds").arg(spec.gossip(0).to_string());
            }
            if let Some(ms) = spec.gossip_interval_ms {
                command.arg("--gossip-interval").arg(ms.to_string());
            }
            command
                // The workers' own settings come from these flags alone.
                .env_remove("HEARSAY_SEEDS")
                .env_remove("HEARSAY_POLICY")
                // A local cluster on loopback is open: loadgen's own HEARSAY_API_TOKEN_FILE (for
                // `bench` and `watch`) must not guard it behind the demo's back.
                .env_remove("HEARSAY_API_TOKEN_FILE")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .kill_on_drop(true);
            let child = command
                .spawn()
                .with_context(|| format!("cannot start {}", spec.worker_bin.display()))?;
            cluster.workers.push(Worker {
                id,
                api: spec.api(i),
                log,
                child,
            });
        }
        Ok(cluster)
    }

    /// The workers' HTTP base URLs, in order.
    pub fn targets(&self) -> Vec<String> {
        self.workers
            .iter()
            .map(|w| format!("http://{}", w.api))
            .collect()
    }

    /// The placement policy the workers run.
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// Whether the workers steal.
    pub fn steals(&self) -> bool {
        self.steal
    }

    /// Waits until every worker's map shows every worker alive; how long it took. Fails if
    /// `limit` passes first, or at once if a worker exits (with the end of its log).
    pub async fn wait_converged(&mut self, http: &Http, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        let ids: Vec<String> = self.workers.iter().map(|w| w.id.clone()).collect();
        let mut lagging = String::from("no answer yet");
        loop {
            self.check_running()?;
            let mut all = true;
            for w in &self.workers {
                let base = format!("http://{}", w.api);
                match http
                    .get_json(&base, "/v1/cluster", Duration::from_secs(1))
                    .await
                {
                    Ok(view) => {
                        let alive: Vec<&str> = view["nodes"]
                            .as_array()
                            .map(|nodes| {
                                nodes
                                    .iter()
                                    .filter(|n| n["state"] == "alive")
                                    .filter_map(|n| n["id"].as_str())
                                    .collect()
                            })
                            .unwrap_or_default();
                        let missing: Vec<&str> = ids
                            .iter()
                            .map(String::as_str)
                            .filter(|id| !alive.contains(id))
                            .collect();
                        if !missing.is_empty() {
                            all = false;
                            lagging = format!("{} does not see {} alive", w.id, missing.join(","));
                            break;
                        }
                    }
                    Err(e) => {
                        all = false;
                        lagging = format!("{} ({base}) does not answer: {e}", w.id);
                        break;
                    }
                }
            }
            if all {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= limit {
                bail!(
                    "the cluster did not converge within {:.0} s: {lagging} (worker logs in {})",
                    limit.as_secs_f64(),
                    self.workers[0]
                        .log
                        .parent()
                        .unwrap_or_else(|| Path::new("."))
                        .display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails if a worker has exited, quoting the end of its log.
    pub fn check_running(&mut self) -> Result<()> {
        for w in &mut self.workers {
            if let Some(status) = w.child.try_wait().context("cannot check a worker")? {
                let tail = std::fs::read_to_string(&w.log)
                    .map(|text| {
                        let lines: Vec<&str> = text.lines().collect();
                        lines[lines.len().saturating_sub(3)..].join(" | ")
                    })
                    .unwrap_or_default();
                bail!(
                    "worker {} exited ({status}): {} (log: {})",
                    w.id,
                    if tail.is_empty() { "no output" } else { &tail },
                    w.log.display()
                );
            }
        }
        Ok(())
    }

    /// Kills every worker and waits for them to exit.
    pub async fn stop(mut self) {
        for w in &mut self.workers {
            let _ = w.child.start_kill();
        }
        for w in &mut self.workers {
            let _ = tokio::time::timeout(Duration::from_secs(5), w.child.wait()).await;
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // kill_on_drop does the same for each child; saying it here keeps it obvious.
        for w in &mut self.workers {
            let _ = w.child.start_kill();
        }
    }
}
