//! The flags: every setting of a `worker` node, each with a `HEARSAY_*` environment fallback,
//! and their defaults for a node started in-process.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use hearsay_scheduler::{LoadScore, Policy};
use hearsay_shared::NodeId;

use crate::gossip::sealing::KeyText;
use crate::http::auth::ApiToken;
use crate::http::browser_guard::AllowedHosts;
use crate::http::limits::{
    DEFAULT_BODY_MIN_RATE, DEFAULT_BODY_RATE_GRACE_MS, DEFAULT_BODY_TIMEOUT_MS,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT, DEFAULT_MAX_WAITS_PER_CLIENT,
};
use crate::jobs::store::{DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_RETAIN_BYTES};

use super::values::{at_least_one, DataDir, LogFormat, Seeds, Switch};

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

    /// What placement and stealing compare nodes by: `slots` (the default), queued + running
    /// over slots; `cpu`, the same raised when a node's CPU is saturated (docs/placement.md).
    #[arg(long, env = "HEARSAY_LOAD_SCORE", value_name = "slots|cpu", default_value_t = LoadScore::Slots)]
    pub load_score: LoadScore,

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
            load_score: LoadScore::Slots,
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
}
