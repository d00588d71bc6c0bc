//! The node's configuration: command-line flags, each with a `HEARSAY_*` environment fallback.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use hearsay_scheduler::Policy;
use hearsay_shared::gossip::ConfigError;
use hearsay_shared::seal::{self, Keyring};
use hearsay_shared::{wire, GossipConfig, NodeId};

use crate::gossip::discovery::SeedName;
use crate::gossip::sealing::{keyring_from_file, KeyText, CLUSTER_KEY_VAR};
use crate::http::auth::ApiToken;
use crate::http::browser_guard::AllowedHosts;
use crate::http::limits::{
    BodyLimits, ConnectionLimits, DEFAULT_BODY_MIN_RATE, DEFAULT_BODY_RATE_GRACE_MS,
    DEFAULT_BODY_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_MAX_WAITS_PER_CLIENT,
};
use crate::jobs::store::{DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_RETAIN_BYTES};

/// How a `worker` node is configured.
#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "worker",
    version,
    about = "A Hearsay node: runs jobs, gossips its load, places jobs by the power of two choices"
)]
pub struct Config {
    /// This node's stable id [default: the host name and the API port, e.g. `myhost-8080`].
    #[arg(long, env = "HEARSAY_NODE_ID", value_name = "ID")]
    pub node_id: Option<NodeId>,

    /// Where the HTTP API listens (port 0: any free port).
    #[arg(
        long = "api",
        env = "HEARSAY_API",
        value_name = "ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub api: SocketAddr,

    /// Where the gossip UDP socket listens (port 0: any free port).
    #[arg(
        long = "gossip",
        env = "HEARSAY_GOSSIP",
        value_name = "ADDR",
        default_value = "127.0.0.1:7946"
    )]
    pub gossip: SocketAddr,

    /// The API address peers and clients are told to reach this node at (its gossip reports
    /// carry it) [default: the address --api bound]: for a node listening on 0.0.0.0, or
    /// behind NAT.
    #[arg(long, env = "HEARSAY_ADVERTISE_API", value_name = "ADDR")]
    pub advertise_api: Option<SocketAddr>,

    /// The gossip address peers are told to send to [default: the address --gossip bound]: for
    /// a node listening on 0.0.0.0, or behind NAT. With a cluster key, datagrams are opened for
    /// this address.
    #[arg(long, env = "HEARSAY_ADVERTISE_GOSSIP", value_name = "ADDR")]
    pub advertise_gossip: Option<SocketAddr>,

    /// Gossip addresses of nodes to join through, comma-separated: `IP:PORT`, or `HOST:PORT`,
    /// a name resolved at start and again while this node has no live peer (and every minute or
    /// so after), every address it has a seed; a name that does not resolve yet is retried with
    /// backoff. Empty for the first node.
    #[arg(
        long,
        env = "HEARSAY_SEEDS",
        value_name = "ADDR,...",
        default_value = ""
    )]
    pub seeds: Seeds,

    /// Jobs this node runs at once [default: the number of CPUs].
    #[arg(long, env = "HEARSAY_SLOTS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub slots: Option<u32>,

    /// Jobs that may wait for a slot; a job arriving when the queue is full goes to a peer, or
    /// is refused with 503.
    #[arg(
        long,
        env = "HEARSAY_QUEUE_LIMIT",
        value_name = "N",
        default_value_t = 1024
    )]
    pub queue_limit: usize,

    /// How jobs submitted here are placed: p2c, random, round-robin, least-loaded or local.
    #[arg(long, env = "HEARSAY_POLICY", value_name = "POLICY", default_value_t = Policy::P2c)]
    pub policy: Policy,

    /// Load sharing the other way: a node with a free slot and an empty queue asks a busy peer
    /// for one of its queued jobs, and a leaving node hands its queue on (`on`, the default);
    /// `off`: placement alone, each job moved at most once.
    #[arg(
        long,
        env = "HEARSAY_STEAL",
        value_name = "on|off",
        default_value = "on"
    )]
    pub steal: Switch,

    /// Milliseconds between steal requests while this node stays idle (it also asks at once
    /// whenever a job ends and leaves it idle).
    #[arg(long, env = "HEARSAY_STEAL_INTERVAL", value_name = "MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub steal_interval: u64,

    /// The worker's configuration file (TOML): the commands `exec` jobs may run here, as
    /// `[commands.NAME]` tables. Checked at start; without it the node runs no command.
    #[arg(long = "config", env = "HEARSAY_CONFIG", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Where the job store lives, so that a restart forgets nothing this node accepted: a
    /// directory (made if missing; one `jobs.redb` file), or `none` to keep jobs in memory only
    /// [default: $XDG_STATE_HOME/hearsay/NODE, else ~/.local/state/hearsay/NODE].
    #[arg(long, env = "HEARSAY_DATA_DIR", value_name = "PATH|none")]
    pub data_dir: Option<DataDir>,

    /// Milliseconds a finished job's outcome is kept (then `GET /v1/jobs/{id}` is a 404).
    #[arg(long, env = "HEARSAY_RETAIN_MS", value_name = "MS", default_value_t = 600_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retain_ms: u64,

    /// Finished jobs kept at most; beyond it the oldest outcome is forgotten first.
    #[arg(long, env = "HEARSAY_RETAIN_JOBS", value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub retain_jobs: u64,

    /// Bytes of memory the finished outcomes kept may take at most (an estimate of each one's
    /// heap size: its output, error text, ids and record); beyond it the oldest is forgotten
    /// first.
    #[arg(long, env = "HEARSAY_RETAIN_BYTES", value_name = "BYTES",
          default_value_t = DEFAULT_RETAIN_BYTES, value_parser = at_least_one)]
    pub retain_bytes: usize,

    /// Bytes of text (its strings: an echo's data, an exec's stdout and stderr) a kept
    /// outcome's output holds at most; beyond it the output is cut and flagged
    /// (`output_truncated`, `output_original_bytes`). At most a quarter of --retain-bytes.
    #[arg(long, env = "HEARSAY_MAX_OUTPUT_BYTES", value_name = "BYTES",
          default_value_t = DEFAULT_MAX_OUTPUT_BYTES)]
    pub max_output_bytes: usize,

    /// Milliseconds a leaving node waits for its queued and running jobs to finish; those left
    /// then are recorded as lost.
    #[arg(
        long,
        env = "HEARSAY_DRAIN_TIMEOUT",
        value_name = "MS",
        default_value_t = 30_000
    )]
    pub drain_timeout: u64,

    /// Milliseconds between gossip rounds (and load samples).
    #[arg(
        long,
        env = "HEARSAY_GOSSIP_INTERVAL",
        value_name = "MS",
        default_value_t = 200
    )]
    pub gossip_interval: u64,

    /// Peers each round pushes to.
    #[arg(long, env = "HEARSAY_FANOUT", value_name = "N", default_value_t = 3)]
    pub fanout: usize,

    /// Largest gossip datagram, in bytes.
    #[arg(
        long,
        env = "HEARSAY_DATAGRAM_BUDGET",
        value_name = "BYTES",
        default_value_t = 1400
    )]
    pub datagram_budget: usize,

    /// Most nodes the load map holds, this one included. A node new to a full map replaces the
    /// one dead or suspected longest, or is refused if every node is alive; a flood of made-up
    /// ids cannot grow memory beyond this.
    #[arg(
        long,
        env = "HEARSAY_MAX_NODES",
        value_name = "N",
        default_value_t = hearsay_shared::map::DEFAULT_MAX_NODES
    )]
    pub max_nodes: usize,

    /// Log lines as human-readable text or as JSON objects.
    #[arg(long, env = "HEARSAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Seed of the node's rngs (gossip, and placement from it), to repeat a run [default: from the
    /// OS, and logged].
    #[arg(long, env = "HEARSAY_SEED", value_name = "N")]
    pub seed: Option<u64>,

    /// File of cluster keys that seal gossip: one key per line as 64 hexadecimal digits, the
    /// first the primary (seals what this node sends), the others accepted (also open what it
    /// receives); `#` comments and blank lines ignored. Without it (or HEARSAY_CLUSTER_KEY),
    /// gossip is in the open.
    #[arg(long, env = "HEARSAY_CLUSTER_KEY_FILE", value_name = "PATH")]
    pub cluster_key_file: Option<PathBuf>,

    /// The keyring's text itself, from the environment variable `HEARSAY_CLUSTER_KEY` only (a
    /// command line is visible to every user of the machine): the key file format, with commas
    /// allowed in place of line breaks.
    #[arg(skip = KeyText::from_env())]
    pub cluster_key: Option<KeyText>,

    /// Print a fresh cluster key (64 hexadecimal digits, from the OS's random number generator)
    /// and exit.
    #[arg(long)]
    pub generate_key: bool,

    /// File holding the API's bearer token (its content, trimmed; the same on every node): then
    /// every endpoint but `/healthz` and the dashboard page needs `Authorization: Bearer <token>`.
    #[arg(long = "api-token-file", env = "HEARSAY_API_TOKEN_FILE", value_name = "PATH",
          value_parser = ApiToken::from_file)]
    pub api_token: Option<ApiToken>,

    /// Requests waiting for a job's end (`?wait=true`) that one client IP may hold open at
    /// once; beyond, 429.
    #[arg(long, env = "HEARSAY_MAX_WAITS_PER_CLIENT", value_name = "N",
          default_value_t = DEFAULT_MAX_WAITS_PER_CLIENT,
          value_parser = at_least_one)]
    pub max_waits_per_client: usize,

    /// Milliseconds a request body may take to arrive whole, from the end of its head; then
    /// `408 body_timeout` and the connection is closed.
    #[arg(long, env = "HEARSAY_BODY_TIMEOUT", value_name = "MS",
          default_value_t = DEFAULT_BODY_TIMEOUT_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,

    /// Bytes per second a request body must arrive at, on average from the end of its head,
    /// once `--body-rate-grace` is over (0: no rate check); slower, `408 body_timeout`.
    #[arg(long, env = "HEARSAY_BODY_MIN_RATE", value_name = "BYTES",
          default_value_t = DEFAULT_BODY_MIN_RATE)]
    pub body_min_rate: u64,

    /// Milliseconds a request body may take before `--body-min-rate` is checked.
    #[arg(long, env = "HEARSAY_BODY_RATE_GRACE", value_name = "MS",
          default_value_t = DEFAULT_BODY_RATE_GRACE_MS)]
    pub body_rate_grace: u64,

    /// HTTP connections open at once, in all; beyond, `503 too_many_connections` and closed
    /// [default: what the open-file limit (RLIMIT_NOFILE) leaves after gossip, job processes,
    /// outgoing connections and files; logged at start].
    #[arg(long, env = "HEARSAY_MAX_CONNECTIONS", value_name = "N", value_parser = at_least_one)]
    pub max_connections: Option<usize>,

    /// HTTP connections one client IP may hold open at once (at most --max-connections);
    /// beyond, `503 too_many_connections` and closed.
    #[arg(long, env = "HEARSAY_MAX_CONNECTIONS_PER_CLIENT", value_name = "N",
          default_value_t = DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
          value_parser = at_least_one)]
    pub max_connections_per_client: usize,
    /// DNS names clients reach the API by besides the node's own (its listen IP, `localhost`
    /// and loopback IPs on loopback, any IP on an unspecified address, the machine's host
    /// name), comma-separated, without ports (the port is not checked); any other `Host` is
    /// refused with 421, which keeps DNS-rebinding pages out.
    #[arg(
        long,
        env = "HEARSAY_ALLOWED_HOSTS",
        value_name = "NAME,...",
        default_value = ""
    )]
    pub allowed_hosts: AllowedHosts,
}

/// Where `--data-dir` puts the job store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// Nowhere: jobs are kept in memory only (`none`).
    Memory,
    /// In this directory.
    Path(std::path::PathBuf),
}

impl std::str::FromStr for DataDir {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("give a directory, or `none` to keep jobs in memory only".into()),
            "none" => Ok(DataDir::Memory),
            path => Ok(DataDir::Path(path.into())),
        }
    }
}

impl Config {
    /// The directory of node `node`'s job store, or `None` for memory only: `--data-dir`, or
    /// the user's state directory. Fails if there is no flag and no state directory to use.
    pub fn data_path(&self, node: &str) -> anyhow::Result<Option<std::path::PathBuf>> {
        match &self.data_dir {
            Some(DataDir::Memory) => Ok(None),
            Some(DataDir::Path(path)) => Ok(Some(path.clone())),
            None => {
                let state = std::env::var_os("XDG_STATE_HOME")
                    .filter(|v| !v.is_empty())
                    .map(std::path::PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME")
                            .filter(|v| !v.is_empty())
                            .map(|home| std::path::PathBuf::from(home).join(".local/state"))
                    })
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "--data-dir: neither XDG_STATE_HOME nor HOME is set, so there is no \
                             default place for the job store; give a directory, or `none`"
                        )
                    })?;
                Ok(Some(state.join("hearsay").join(node)))
            }
        }
    }
}

/// A feature on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

impl Switch {
    /// Whether it is on.
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

impl std::fmt::Display for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_on() { "on" } else { "off" })
    }
}

impl Default for Config {
    /// The same settings as a command line with no flags and no `HEARSAY_*` variables, but for
    /// the job store, kept in memory (`--data-dir none`): code that starts a node in-process
    /// says where its store goes.
    fn default() -> Self {
        Config {
            node_id: None,
            api: SocketAddr::from(([127, 0, 0, 1], 8080)),
            gossip: SocketAddr::from(([127, 0, 0, 1], 7946)),
            advertise_api: None,
            advertise_gossip: None,
            seeds: Seeds::default(),
            slots: None,
            queue_limit: 1024,
            policy: Policy::P2c,
            steal: Switch::On,
            steal_interval: 200,
            config_file: None,
            // In-process nodes (tests, embedding) keep jobs in memory unless told where.
            data_dir: Some(DataDir::Memory),
            retain_ms: 600_000,
            retain_jobs: 100_000,
            retain_bytes: DEFAULT_RETAIN_BYTES,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            drain_timeout: 30_000,
            gossip_interval: 200,
            fanout: 3,
            datagram_budget: 1400,
            max_nodes: hearsay_shared::map::DEFAULT_MAX_NODES,
            log_format: LogFormat::Text,
            seed: None,
            cluster_key_file: None,
            cluster_key: None,
            generate_key: false,
            api_token: None,
            max_waits_per_client: DEFAULT_MAX_WAITS_PER_CLIENT,
            body_timeout: DEFAULT_BODY_TIMEOUT_MS,
            body_min_rate: DEFAULT_BODY_MIN_RATE,
            body_rate_grace: DEFAULT_BODY_RATE_GRACE_MS,
            max_connections: None,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            allowed_hosts: AllowedHosts::default(),
        }
    }
}

impl Config {
    /// A node on 127.0.0.1 with both ports chosen by the OS, for tests and local clusters.
    pub fn loopback() -> Self {
        Config {
            api: SocketAddr::from(([127, 0, 0, 1], 0)),
            gossip: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..Config::default()
        }
    }

    /// The time between gossip rounds.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.gossip_interval)
    }

    /// Job slots: as configured, or one per CPU.
    pub fn slots(&self) -> u32 {
        self.slots.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        })
    }

    /// How long a finished job's outcome is kept.
    pub fn retain(&self) -> Duration {
        Duration::from_millis(self.retain_ms)
    }

    /// How often an idle node asks for work.
    pub fn steal_interval(&self) -> Duration {
        Duration::from_millis(self.steal_interval)
    }

    /// How long a leaving node waits for its jobs.
    pub fn drain(&self) -> Duration {
        Duration::from_millis(self.drain_timeout)
    }

    /// How fast request bodies must arrive.
    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            timeout: Duration::from_millis(self.body_timeout),
            min_rate: self.body_min_rate,
            grace: Duration::from_millis(self.body_rate_grace),
        }
    }

    /// The API's connection caps for a node running `slots` jobs at once: `--max-connections`,
    /// or by default what this process's open-file limit leaves
    /// ([`ConnectionLimits::from_descriptors`]); a `--max-connections` over that is kept, with
    /// a warning.
    pub fn connection_limits(&self, slots: u32) -> ConnectionLimits {
        let descriptors = open_file_limit();
        let fits = descriptors.map(|d| ConnectionLimits::from_descriptors(d, slots));
        let total = match (self.max_connections, fits) {
            (Some(n), Some(fits)) if n > fits => {
                tracing::warn!(
                    max_connections = n,
                    open_file_limit = descriptors,
                    fits,
                    "--max-connections is more than the open-file limit leaves room for; \
                     accepting may fail with \"Too many open files\" (raise `ulimit -n`)"
                );
                n
            }
            (Some(n), _) => n,
            (None, Some(fits)) => fits,
            // No limit to read: assume the usual 1024.
            (None, None) => ConnectionLimits::from_descriptors(1024, slots),
        };
        ConnectionLimits {
            total,
            per_client: self.max_connections_per_client.min(total),
        }
    }

    /// The gossip core's settings for a node with these bound addresses.
    pub fn gossip_config(&self, node: NodeId, api: SocketAddr, gossip: SocketAddr) -> GossipConfig {
        let mut config = GossipConfig::new(node, api, gossip);
        config.interval = self.interval();
        config.fanout = self.fanout;
        // Sealed datagrams must fit the budget too: the core fills what the seal leaves.
        config.budget = self.datagram_budget.saturating_sub(self.seal_overhead());
        config.max_nodes = self.max_nodes;
        // Before any heartbeat is measured, expect one per round.
        config.detector.first_interval = self.interval();
        config
    }

    /// Checks the settings before anything is bound; the error names the flag.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (flag, addr) in [
            ("--advertise-api", self.advertise_api),
            ("--advertise-gossip", self.advertise_gossip),
        ] {
            if let Some(addr) = addr {
                if addr.ip().is_unspecified() || addr.port() == 0 {
                    return Err(InvalidSetting {
                        flag,
                        value: addr.to_string(),
                        reason: String::from(
                            "must be an address peers can reach: a specific IP and a port",
                        ),
                    });
                }
            }
        }
        if self.cluster_key_file.is_some() && self.cluster_key.is_some() {
            return Err(InvalidSetting {
                flag: "--cluster-key-file",
                value: self.key_file_name(),
                reason: format!("give either it or {CLUSTER_KEY_VAR}, not both"),
            });
        }
        if self.max_output_bytes > self.retain_bytes / 4 {
            return Err(InvalidSetting {
                flag: "--max-output-bytes",
                value: self.max_output_bytes.to_string(),
                reason: format!(
                    "must be at most a quarter of --retain-bytes ({}), so that one outcome \
                     never takes the whole budget",
                    self.retain_bytes
                ),
            });
        }
        let least = wire::MIN_BUDGET + self.seal_overhead();
        if self.seal_overhead() > 0 && self.datagram_budget < least {
            return Err(InvalidSetting {
                flag: "--datagram-budget",
                value: self.datagram_budget.to_string(),
                reason: format!(
                    "must be at least {least} bytes with a cluster key ({} for the message, {} \
                     for the seal)",
                    wire::MIN_BUDGET,
                    seal::OVERHEAD
                ),
            });
        }
        let placeholder = NodeId::new("validate").expect("a valid literal id");
        self.gossip_config(placeholder, self.api, self.gossip)
            .validate()
            .map_err(|e| InvalidSetting::from_gossip(e, self))
    }
}

/// This process's soft limit on open files (`RLIMIT_NOFILE`), if it can be read and is not
/// infinite.
fn open_file_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, Resource, RLIM_INFINITY};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, _)) if soft != RLIM_INFINITY => Some(soft),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit (RLIMIT_NOFILE)");
            None
        }
    }
}

/// A count of 1 or more.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl Config {
    /// Whether gossip is to be sealed: a key file or [`CLUSTER_KEY_VAR`] is given.
    pub fn is_keyed(&self) -> bool {
        self.cluster_key_file.is_some() || self.cluster_key.is_some()
    }

    /// Bytes the seal adds to each datagram.
    fn seal_overhead(&self) -> usize {
        if self.is_keyed() {
            seal::OVERHEAD
        } else {
            0
        }
    }

    fn key_file_name(&self) -> String {
        self.cluster_key_file
            .as_deref()
            .map_or_else(String::new, |p| p.display().to_string())
    }

    /// The cluster keyring, read from the key file or [`CLUSTER_KEY_VAR`]; `None` when gossip
    /// is in the open. The error names the file's line (or the variable's key) at fault.
    pub fn keyring(&self) -> Result<Option<Keyring>, InvalidSetting> {
        if let Some(path) = &self.cluster_key_file {
            return keyring_from_file(path)
                .map(Some)
                .map_err(|reason| InvalidSetting {
                    flag: "--cluster-key-file",
                    value: self.key_file_name(),
                    reason,
                });
        }
        match &self.cluster_key {
            None => Ok(None),
            Some(text) => text.keyring().map(Some).map_err(|reason| InvalidSetting {
                flag: CLUSTER_KEY_VAR,
                value: String::from("(not shown)"),
                reason,
            }),
        }
    }
}

/// A setting that the gossip core refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} {value}: {reason}")]
pub struct InvalidSetting {
    /// The flag, e.g. `--fanout`.
    pub flag: &'static str,
    /// The value given.
    pub value: String,
    /// Why it is refused.
    pub reason: String,
}

impl InvalidSetting {
    fn from_gossip(e: ConfigError, config: &Config) -> Self {
        let (flag, value) = match e.field {
            "interval" => ("--gossip-interval", config.gossip_interval.to_string()),
            "fanout" => ("--fanout", config.fanout.to_string()),
            "budget" => ("--datagram-budget", config.datagram_budget.to_string()),
            "max_nodes" => ("--max-nodes", config.max_nodes.to_string()),
            // Settings with no flag of their own: name the core's field.
            other => (other, String::from("(built in)")),
        };
        InvalidSetting {
            flag,
            value,
            reason: e.reason,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Seeds, parsed from a comma-separated list (empty items are ignored): the IP addresses given
/// (`.0`), and the names to resolve (`.1`, see [`crate::gossip::discovery`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seeds(pub Vec<SocketAddr>, pub Vec<SeedName>);

impl Seeds {
    /// Seeds given as addresses only.
    pub fn addresses(addrs: Vec<SocketAddr>) -> Self {
        Seeds(addrs, Vec::new())
    }
}

impl FromStr for Seeds {
    type Err = String;
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        let mut seeds = Seeds::default();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.parse::<SocketAddr>() {
                Ok(addr) => seeds.0.push(addr),
                // Not an IP literal: a name, resolved by the node when it runs (not now: a name
                // that does not resolve yet is no reason to refuse to start).
                Err(_) => {
                    let name = item.parse::<SeedName>()?;
                    if !seeds.1.contains(&name) {
                        seeds.1.push(name);
                    }
                }
            }
        }
        Ok(seeds)
    }
}

impl fmt::Display for Seeds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items = self
            .0
            .iter()
            .map(ToString::to_string)
            .chain(self.1.iter().map(ToString::to_string));
        for (i, item) in items.enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&item)?;
        }
        Ok(())
    }
}

/// The default node id: the host name and the API port, made to fit [`NodeId`]'s rules
/// (characters outside them become `-`, and the host part is cut so that the port always fits).
pub fn default_node_id(host_name: Option<&str>, api_port: u16) -> NodeId {
    let suffix = format!("-{api_port}");
    let host: String = host_name
        .unwrap_or("")
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':') {
                c
            } else {
                '-'
            }
        })
        .take(hearsay_shared::node::MAX_NODE_ID_LEN - suffix.len())
        .collect();
    let host = if host.is_empty() { "node" } else { &host };
    NodeId::new(format!("{host}{suffix}")).expect("sanitised id is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_means_the_default() {
        // Run without HEARSAY_* variables in the environment, as the test suite is.
        assert_eq!(
            Config::try_parse_from(["worker"]).unwrap(),
            Config {
                data_dir: None,
                ..Config::default()
            }
        );
        assert_eq!(
            Config::try_parse_from(["worker", "--data-dir", "none"]).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn the_data_dir_is_a_path_none_or_under_the_state_directory() {
        let c = Config::try_parse_from(["worker", "--data-dir", "/var/lib/h"]).unwrap();
        assert_eq!(c.data_path("n1").unwrap(), Some("/var/lib/h".into()));
        assert_eq!(Config::default().data_path("n1").unwrap(), None);
        let e = Config::try_parse_from(["worker", "--data-dir", ""]).unwrap_err();
        assert!(e.to_string().contains("none"), "{e}");
    }

    #[test]
    fn flags_are_parsed() {
        let c = Config::try_parse_from([
            "worker",
            "--node-id",
            "n1",
            "--api",
            "127.0.0.1:0",
            "--seeds",
            "127.0.0.1:1, 127.0.0.2:2,",
            "--slots",
            "4",
            "--gossip-interval",
            "50",
            "--log-format",
            "json",
            "--seed",
            "7",
            "--queue-limit",
            "3",
            "--policy",
            "least-loaded",
            "--retain-ms",
            "1000",
            "--retain-jobs",
            "10",
            "--drain-timeout",
            "250",
            "--retain-bytes",
            "4096",
            "--max-output-bytes",
            "1024",
            "--allowed-hosts",
            "api.example.com,Node-1.internal.",
        ])
        .unwrap();
        assert_eq!(c.node_id, Some(NodeId::new("n1").unwrap()));
        assert_eq!(c.api.port(), 0);
        assert_eq!(
            c.seeds.0,
            vec![
                "127.0.0.1:1".parse::<SocketAddr>().unwrap(),
                "127.0.0.2:2".parse().unwrap()
            ]
        );
        assert_eq!(c.slots(), 4);
        assert_eq!(c.interval(), Duration::from_millis(50));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.seed, Some(7));
        assert_eq!(c.queue_limit, 3);
        assert_eq!(c.policy, Policy::LeastLoaded);
        assert_eq!(c.retain(), Duration::from_secs(1));
        assert_eq!(c.retain_jobs, 10);
        assert_eq!(c.drain(), Duration::from_millis(250));
        assert_eq!((c.retain_bytes, c.max_output_bytes), (4096, 1024));
        assert!(c.validate().is_ok());
        assert_eq!(c.allowed_hosts.0, ["api.example.com", "node-1.internal"]);
    }

    #[test]
    fn seeds_take_names_kept_for_the_node_to_resolve_and_advertised_addresses() {
        let c = Config::try_parse_from([
            "worker",
            "--seeds",
            "10.0.0.1:7946, hearsay.default.svc.cluster.local:7946,[fd00::1]:7946,\
             not-resolvable-yet:7000,hearsay.default.svc.cluster.local:7946",
            "--advertise-api",
            "10.0.0.5:8080",
            "--advertise-gossip",
            "10.0.0.5:7946",
        ])
        .unwrap();
        assert_eq!(
            c.seeds.0,
            [
                "10.0.0.1:7946".parse::<SocketAddr>().unwrap(),
                "[fd00::1]:7946".parse().unwrap()
            ]
        );
        let names: Vec<String> = c.seeds.1.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "hearsay.default.svc.cluster.local:7946",
                "not-resolvable-yet:7000"
            ],
            "names are kept once each, unresolved"
        );
        assert_eq!(
            c.seeds.to_string(),
            "10.0.0.1:7946,[fd00::1]:7946,hearsay.default.svc.cluster.local:7946,\
             not-resolvable-yet:7000"
        );
        assert_eq!(c.advertise_api, Some("10.0.0.5:8080".parse().unwrap()));
        assert_eq!(c.advertise_gossip, Some("10.0.0.5:7946".parse().unwrap()));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn connection_and_body_limits_are_parsed_and_capped() {
        let c = Config::try_parse_from([
            "worker",
            "--body-timeout",
            "500",
            "--body-min-rate",
            "0",
            "--body-rate-grace",
            "100",
            "--max-connections",
            "10",
            "--max-connections-per-client",
            "50",
        ])
        .unwrap();
        assert_eq!(
            c.body_limits(),
            BodyLimits {
                timeout: Duration::from_millis(500),
                min_rate: 0,
                grace: Duration::from_millis(100),
            }
        );
        assert_eq!(
            c.connection_limits(1),
            ConnectionLimits {
                total: 10,
                per_client: 10
            },
            "the per-client cap is at most the total"
        );
        assert_eq!(Config::default().body_limits(), BodyLimits::default());
        // The default follows this process's open-file limit.
        let limit = open_file_limit().unwrap_or(1024);
        assert_eq!(
            Config::default().connection_limits(2).total,
            ConnectionLimits::from_descriptors(limit, 2)
        );
        assert!(Config::try_parse_from(["worker", "--max-connections", "0"]).is_err());
        assert!(Config::try_parse_from(["worker", "--body-timeout", "0"]).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(Config::try_parse_from(["worker", "--slots", "0"]).is_err());
        assert!(Config::try_parse_from(["worker", "--node-id", "a b"]).is_err());
        assert!(Config::try_parse_from(["worker", "--seeds", "nope"]).is_err());
        assert!(Config::try_parse_from(["worker", "--seeds", "a b:1"]).is_err());
        for flag in ["--advertise-api", "--advertise-gossip"] {
            assert!(Config::try_parse_from(["worker", flag, "host:1"]).is_err());
            for bad in ["0.0.0.0:7946", "10.0.0.1:0"] {
                let e = Config::try_parse_from(["worker", flag, bad])
                    .unwrap()
                    .validate()
                    .unwrap_err();
                assert_eq!(e.flag, flag);
                assert!(e.reason.contains("peers can reach"), "{e}");
            }
        }
        assert!(Config::try_parse_from(["worker", "--policy", "fastest"]).is_err());
        assert!(Config::try_parse_from(["worker", "--retain-jobs", "0"]).is_err());
        assert!(Config::try_parse_from(["worker", "--allowed-hosts", "a.example:8080"]).is_err());
        let zero_fanout = Config {
            fanout: 0,
            ..Config::default()
        };
        let e = zero_fanout.validate().unwrap_err();
        assert_eq!(e.flag, "--fanout");
        assert!(e.to_string().starts_with("invalid --fanout 0: "), "{e}");
        assert!(Config::default().validate().is_ok());
        assert!(Config::try_parse_from(["worker", "--retain-bytes", "0"]).is_err());
        let e = Config::try_parse_from(["worker", "--retain-bytes", "4096"])
            .unwrap()
            .validate()
            .unwrap_err();
        assert_eq!(e.flag, "--max-output-bytes");
        assert!(
            e.reason.contains("a quarter of --retain-bytes (4096)"),
            "{e}"
        );
    }

    #[test]
    fn a_cluster_key_takes_its_overhead_from_the_budget() {
        let keys = std::env::temp_dir().join(format!("hearsay-config-keys-{}", std::process::id()));
        std::fs::write(&keys, format!("{}\n", "ab".repeat(32))).unwrap();
        let keyed =
            Config::try_parse_from(["worker", "--cluster-key-file", keys.to_str().unwrap()])
                .unwrap();
        assert!(keyed.is_keyed());
        assert_eq!(keyed.keyring().unwrap().unwrap().ids().len(), 1);
        let node = NodeId::new("n").unwrap();
        let core = keyed.gossip_config(node.clone(), keyed.api, keyed.gossip);
        assert_eq!(core.budget, 1400 - seal::OVERHEAD);
        let open = Config::default().gossip_config(node, keyed.api, keyed.gossip);
        assert_eq!(open.budget, 1400);
        // The smallest budget leaves the core its own minimum.
        let small = Config {
            datagram_budget: wire::MIN_BUDGET + seal::OVERHEAD - 1,
            ..keyed.clone()
        };
        let e = small.validate().unwrap_err();
        assert_eq!(e.flag, "--datagram-budget");
        assert!(e.reason.contains("with a cluster key"), "{e}");
        assert!(Config {
            datagram_budget: wire::MIN_BUDGET + seal::OVERHEAD,
            ..keyed.clone()
        }
        .validate()
        .is_ok());
        // A file and the variable at once are refused.
        let both = Config {
            cluster_key: Some(KeyText("cd".repeat(32))),
            ..keyed
        };
        assert_eq!(both.validate().unwrap_err().flag, "--cluster-key-file");
        std::fs::remove_file(&keys).ok();
    }

    #[test]
    fn node_id_is_derived_from_host_and_port() {
        assert_eq!(
            default_node_id(Some("myhost"), 8080).as_str(),
            "myhost-8080"
        );
        assert_eq!(
            default_node_id(Some("my host/é"), 1).as_str(),
            "my-host---1",
            "odd characters become dashes"
        );
        assert_eq!(default_node_id(None, 9).as_str(), "node-9");
        let long = default_node_id(Some(&"h".repeat(100)), 65535);
        assert_eq!(long.as_str().len(), hearsay_shared::node::MAX_NODE_ID_LEN);
        assert!(long.as_str().ends_with("-65535"));
    }
}
