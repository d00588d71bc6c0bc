//! Starting and stopping a node: [`Node::start`] binds the sockets, builds the gossip core with
//! the addresses actually bound, and spawns the tasks; [`NodeHandle`] tells where the node
//! listens and stops it gracefully.
//!
//! Shutdown (a graceful leave) runs in order:
//! 1. at once, the gossip task announces the leave (peers stop choosing this node) and the
//!    dispatcher refuses new jobs with 503;
//! 2. the jobs queued and running here finish, and the jobs forwarded from here report their
//!    end, for at most the drain timeout; jobs still here then are recorded lost. The HTTP API
//!    keeps answering throughout, so that entry nodes and waiting clients learn the outcomes;
//! 3. the gossip task stops (after a short linger at least), then the HTTP server stops
//!    accepting and lets open requests finish.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hearsay_scheduler::handoff::HandoffConfig;
use hearsay_scheduler::PlacerConfig;
use hearsay_shared::gossip::ConfigError;
use hearsay_shared::seal::{self, Sealing};
use hearsay_shared::{Gossip, LoadVector, NodeId};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{default_node_id, Config, InvalidSetting};
use crate::gossip::sampler::{self, WorkGauge};
use crate::gossip::{self, SharedGossip};
use crate::history::SharedHistory;
use crate::http::browser_guard::HostNames;
use crate::http::info::{Addresses, Resolved, ServerInfo};
use crate::http::limits::{ConnectionLimiter, WaitLimiter};
use crate::http::routes::ApiState;
use crate::http::server;
use crate::http::stream::ClusterStream;
use crate::http::view::ClusterView;
use crate::jobs::commands::{Commands, ConfigFileError};
use crate::jobs::disk::Disk;
use crate::jobs::dispatch::Dispatcher;
use crate::jobs::slots::Executor;
use crate::jobs::store::{JobStore, Retention};
use crate::metrics::Metrics;

/// Why a node did not start. Nothing is left running or bound after any of these.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is out of range.
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
    /// The configuration file (`--config`) is unreadable or refused; says where and why.
    #[error(transparent)]
    ConfigFile(#[from] ConfigFileError),
    /// A socket could not be bound (the address is in use, or not local).
    #[error("cannot bind {what} {addr}: {}", os_reason(error))]
    Bind {
        /// Which socket.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The OS's reason (part of the message rather than a `source`, so that the one-line
        /// report of the error chain does not say it twice).
        error: io::Error,
    },
    /// The OS did not tell which address a socket was bound to.
    #[error("cannot read the address of the {what}: {}", os_reason(error))]
    LocalAddr {
        /// Which socket.
        what: &'static str,
        /// The OS's reason.
        error: io::Error,
    },
    /// The gossip core refused its settings (they are checked before binding, so this means
    /// the settings and the core disagree).
    #[error(transparent)]
    Gossip(#[from] ConfigError),
    /// The job store (`--data-dir`) cannot be opened: says which file and why.
    #[error("{0}")]
    Store(String),
}

/// An OS error as a person reads it: "Address already in use", without "(os error 98)".
fn os_reason(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

/// Starts nodes. A node runs on the current tokio runtime until its [`NodeHandle`] stops it.
#[derive(Debug)]
pub struct Node;

impl Node {
    /// Starts a node: binds its sockets and spawns its tasks.
    pub async fn start(config: Config) -> Result<NodeHandle, StartError> {
        config.validate()?;
        // Read before anything is bound, so that a bad key file leaves nothing behind.
        let keyring = config.keyring()?;
        let commands = Arc::new(match &config.config_file {
            Some(file) => Commands::load(file)?,
            None => Commands::none(),
        });
        let bind_error = |what, addr| move |error| StartError::Bind { what, addr, error };
        let socket = UdpSocket::bind(config.gossip)
            .await
            .map_err(bind_error("gossip socket", config.gossip))?;
        let listener = TcpListener::bind(config.api)
            .await
            .map_err(bind_error("API socket", config.api))?;
        let local_addr_error = |what| move |error| StartError::LocalAddr { what, error };
        let gossip_addr = socket
            .local_addr()
            .map_err(local_addr_error("gossip socket"))?;
        let api_addr = listener
            .local_addr()
            .map_err(local_addr_error("API socket"))?;

        // What peers are told: the bound addresses, unless --advertise-* says otherwise.
        let told_api = config.advertise_api.unwrap_or(api_addr);
        let told_gossip = config.advertise_gossip.unwrap_or(gossip_addr);
        let id = config.node_id.clone().unwrap_or_else(|| {
            default_node_id(sysinfo::System::host_name().as_deref(), api_addr.port())
        });
        // The store is opened before anything is said to peers: a node whose store is held
        // by another process, or damaged, does not start.
        let data_path = config
            .data_path(id.as_str())
            .map_err(|e| StartError::Store(e.to_string()))?;
        let opened = match &data_path {
            Some(path) => Some(Disk::open(path).map_err(|e| StartError::Store(e.0))?),
            None => None,
        };
        // Above every incarnation this node had, even if the clock went back.
        let incarnation = match opened.as_ref().and_then(|(_, l)| l.incarnation) {
            Some(last) => next_incarnation().max(last.saturating_add(1)),
            None => next_incarnation(),
        };
        let (disk, kept) = match opened {
            Some((disk, loaded)) => {
                if loaded.unreadable > 0 {
                    warn!(
                        records = loaded.unreadable,
                        "job records in the store could not be read and were left out"
                    );
                }
                disk.set_incarnation(incarnation);
                disk.flushed().await.map_err(|e| StartError::Store(e.0))?;
                (Some(disk), loaded.jobs)
            }
            None => (None, Vec::new()),
        };
        let seed = config.seed.unwrap_or_else(rand::random);
        let slots = config.slots();
        // The core reads no clock: it is told the wall clock at its creation, and counts on
        // from there on the clock it is driven with, to tell which versions are plausible.
        let core = Gossip::new(
            config.gossip_config(id.clone(), told_api, told_gossip),
            incarnation,
            LoadVector {
                commands: commands.offer_set(),
                ..LoadVector::idle(slots)
            },
            config.seeds.0.clone(),
            tokio::time::Instant::now().into_std(),
        )?
        .with_wall_clock(unix_ms());
        let gossip = SharedGossip::new(core);

        info!(
            node = %id,
            api = %api_addr,
            gossip = %gossip_addr,
            advertise_api = %told_api,
            advertise_gossip = %told_gossip,
            seeds = %config.seeds,
            slots,
            queue_limit = config.queue_limit,
            policy = %config.policy,
            steal = %config.steal,
            steal_interval_ms = config.steal_interval,
            retain_ms = config.retain_ms,
            retain_jobs = config.retain_jobs,
            drain_timeout_ms = config.drain_timeout,
            gossip_interval_ms = config.gossip_interval,
            fanout = config.fanout,
            datagram_budget = config.datagram_budget,
            api_token = config.api_token.is_some(),
            max_waits_per_client = config.max_waits_per_client,
            allowed_hosts = %config.allowed_hosts,
            incarnation,
            seed,
            commands = ?commands.names().collect::<Vec<_>>(),
            "worker started"
        );
        let connection_limits = config.connection_limits(slots);
        let server_info = Arc::new(ServerInfo::new(
            &config,
            Resolved {
                id: &id,
                incarnation,
                seed,
                slots,
                data_path: data_path.as_deref(),
                keyring: keyring.as_ref(),
                connections: connection_limits,
                commands: &commands.names().collect::<Vec<_>>(),
            },
            Addresses {
                listen_api: api_addr,
                listen_gossip: gossip_addr,
                advertise_api: told_api,
                advertise_gossip: told_gossip,
            },
        ));
        let sealing = match keyring {
            Some(keyring) => {
                info!(
                    primary_key = %keyring.primary_id(),
                    keys = ?keyring.ids().iter().map(ToString::to_string).collect::<Vec<_>>(),
                    overhead_bytes = seal::OVERHEAD,
                    "gossip is sealed with the cluster key (XChaCha20-Poly1305)"
                );
                if told_gossip.ip().is_unspecified() {
                    warn!(
                        "gossip listens on the unspecified address {gossip_addr}: a sealed \
                         datagram opens only at the address it was sent to, and this node cannot \
                         tell which of its addresses that was, so it accepts only those sent to \
                         {:?}, which come from its own machine; give --gossip (or \
                         --advertise-gossip) the address peers reach it by",
                        seal::own_destinations(gossip_addr)
                    );
                }
                // Peers seal for the address they are told.
                Sealing::keyed(keyring, told_gossip)
            }
            None => {
                warn!(
                    "gossip is unauthenticated and unencrypted: anyone who can reach UDP port \
                     {gossip_addr} can inject load reports, join the cluster, draw jobs to \
                     itself and read every node's load; give --cluster-key-file (a key: \
                     `worker --generate-key`)"
                );
                Sealing::Open
            }
        };
        if told_gossip.ip().is_unspecified() || told_api.ip().is_unspecified() {
            warn!(
                "listening on an unspecified address ({told_gossip}, {told_api}); peers are told \
                 these addresses and may not reach this node through them: give \
                 --advertise-gossip and --advertise-api"
            );
        }

        if config.api_token.is_none() && !api_addr.ip().is_loopback() {
            warn!(
                "the HTTP API listens on {api_addr}, beyond this machine, with no token: anyone \
                 who reaches it can run jobs and read the cluster; set --api-token-file"
            );
        }

        let shutdown = CancellationToken::new();
        // Cancelled when the drain is over (or if the drain task panics).
        let drained = CancellationToken::new();
        // The HTTP server outlives the leave and the drain, so that the API still answers while
        // peers are told and jobs finish; the gossip task cancels this when it is done (or if it
        // panics), which is after the drain.
        let api_stop = CancellationToken::new();
        let tracker = TaskTracker::new();

        let retention = Retention {
            time: config.retain(),
            jobs: usize::try_from(config.retain_jobs).unwrap_or(usize::MAX),
            bytes: config.retain_bytes,
            max_output_bytes: config.max_output_bytes,
        };
        let store = Arc::new(match &disk {
            Some(disk) => JobStore::with_disk(retention, disk.clone()),
            None => JobStore::new(retention),
        });
        let metrics = Metrics::new();
        let history = SharedHistory::new(config.interval());
        let executor = Executor::with_commands(
            id.clone(),
            slots,
            config.queue_limit,
            store.clone(),
            metrics.clone(),
            tracker.clone(),
            commands,
        );
        let mut handoff = HandoffConfig::new(id.clone(), incarnation);
        handoff.placer = PlacerConfig {
            policy: config.policy,
            report_interval: config.interval(),
            load_score: config.load_score,
            ..PlacerConfig::default()
        };
        let retain_jobs = usize::try_from(config.retain_jobs).unwrap_or(usize::MAX);
        // The core remembers ended jobs and keys as long as the store keeps their records.
        handoff.retention = hearsay_scheduler::handoff::Retention {
            time: config.retain(),
            jobs: retain_jobs,
        };
        handoff.keys.ttl = config.retain();
        // With stealing a job moves at most twice: a forward and a steal (or hand-over), or
        // two steals of a job queued at its entry node.
        let steal = config.steal.is_on().then(|| config.steal_interval());
        handoff.max_moves = if steal.is_some() { 2 } else { 1 };
        let jobs = Dispatcher::new(
            gossip.clone(),
            executor.clone(),
            store.clone(),
            metrics.clone(),
            handoff,
            steal,
            StdRng::seed_from_u64(placement_seed(seed)),
            config.api_token.as_ref(),
            &tracker,
        );

        if let Some(disk) = &disk {
            crate::jobs::restart::resume(kept, disk, &store, &executor, &jobs, config.retain());
        }

        let work: Arc<dyn WorkGauge> = Arc::new(executor.clone());
        let mut tasks = Vec::new();
        tasks.push(tracker.spawn({
            let run = gossip::task::run(
                socket,
                gossip.clone(),
                work.clone(),
                StdRng::seed_from_u64(seed),
                sealing,
                shutdown.clone(),
                drained.clone(),
                history.clone(),
                metrics.clone(),
            );
            let stop_api = api_stop.clone().drop_guard();
            async move {
                run.await;
                drop(stop_api);
            }
        }));
        if !config.seeds.1.is_empty() {
            tasks.push(tracker.spawn(gossip::discovery::run(
                config.seeds.1.clone(),
                config.seeds.0.clone(),
                gossip_addr,
                gossip.clone(),
                StdRng::seed_from_u64(discovery_seed(seed)),
                // A leaving node looks for no more peers.
                shutdown.clone(),
            )));
        }
        let moves: crate::metrics::StatsSource = {
            let jobs = jobs.clone();
            Arc::new(move || jobs.stats())
        };
        let exposition = metrics
            .registry(gossip.clone(), Arc::new(executor.clone()), slots)
            .with_store(store)
            .with_moves(moves.clone());
        tasks.push(tracker.spawn(sampler::run(
            gossip.clone(),
            config.interval(),
            drained.clone(),
        )));
        // The stream outlives the drain with the HTTP server, so that a dashboard watches the
        // node leave; it ends when the server stops.
        let stream = ClusterStream::new(
            gossip.clone(),
            metrics,
            config.policy,
            config.interval(),
            Some(moves),
            api_stop.clone(),
            tracker.clone(),
        );
        tasks.push(tracker.spawn(stream.clone().feed()));
        tasks.push(tracker.spawn(crate::history::feed(
            history.clone(),
            gossip.clone(),
            jobs.metrics().clone(),
            api_stop.clone(),
        )));
        tasks.push(tracker.spawn({
            let (jobs, shutdown, drain) = (jobs.clone(), shutdown.clone(), config.drain());
            let drained = drained.clone().drop_guard();
            async move {
                shutdown.cancelled().await;
                jobs.drain(drain).await;
                // The ends the drain recorded are on disk before the node exits: a restart
                // answers with them, not with "restarted while it ran".
                if let Err(e) = jobs.store().flushed().await {
                    warn!("the job store could not write the drain's last records: {e}");
                }
                drop(drained);
            }
        }));
        // Clients told the advertised API address use it as `Host`.
        let mut allowed_hosts = config.allowed_hosts.clone();
        allowed_hosts
            .0
            .extend(config.advertise_api.map(|a| a.ip().to_string()));
        tasks.push(tracker.spawn(server::serve(
            listener,
            ApiState {
                gossip: gossip.clone(),
                jobs: jobs.clone(),
                stream,
                metrics: Arc::new(exposition),
                token: config.api_token.clone(),
                waits: WaitLimiter::new(config.max_waits_per_client),
                connections: ConnectionLimiter::new(connection_limits),
                body: config.body_limits(),
                hosts: Arc::new(HostNames::new(
                    api_addr.ip(),
                    sysinfo::System::host_name().as_deref(),
                    &allowed_hosts,
                )),
                info: server_info,
                history,
                shutdown: shutdown.clone(),
            },
            api_stop,
            tracker.clone(),
        )));
        // Closing only means `wait` may finish once no task is left; the API's connection
        // tasks are spawned while the API task itself still runs.
        tracker.close();

        Ok(NodeHandle {
            id,
            api_addr,
            gossip_addr,
            seed,
            gossip,
            jobs,
            shutdown,
            tracker,
            tasks: tasks.iter().map(|t| t.abort_handle()).collect(),
        })
    }
}

/// A running node. Dropping the handle starts the same graceful leave as
/// [`NodeHandle::shutdown`], without waiting for it.
#[derive(Debug)]
pub struct NodeHandle {
    id: NodeId,
    api_addr: SocketAddr,
    gossip_addr: SocketAddr,
    seed: u64,
    gossip: SharedGossip,
    jobs: Dispatcher,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    /// The node's long-running tasks, for [`NodeHandle::kill`].
    tasks: Vec<AbortHandle>,
}

impl NodeHandle {
    /// The node's id.
    pub fn id(&self) -> &NodeId {
        &self.id
    }
    /// Where the HTTP API listens (the bound address, never port 0).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }
    /// Where the gossip socket listens (the bound address, never port 0).
    pub fn gossip_addr(&self) -> SocketAddr {
        self.gossip_addr
    }
    /// The seed of the node's rngs (gossip, and placement derived from it).
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// The cluster as this node sees it now, as `GET /v1/cluster` shows it.
    pub fn cluster(&self) -> ClusterView {
        let now = tokio::time::Instant::now().into_std();
        ClusterView::of_shared(&self.gossip, now)
    }

    /// Starts leaving: announces it to peers and refuses new jobs at once, drains the jobs it
    /// holds (for at most the drain timeout), then stops gossip and the HTTP server. Returns at
    /// once; [`NodeHandle::join`] waits for the end.
    pub fn shutdown(&self) {
        self.jobs.stop_accepting();
        self.shutdown.cancel();
    }

    /// Resolves once the node has been told to leave: by [`NodeHandle::shutdown`], or over the
    /// API (`POST /v1/drain`).
    pub async fn leave_requested(&self) {
        self.shutdown.cancelled().await;
    }

    /// Waits until every task of the node has finished (only ever after a shutdown).
    pub async fn join(&self) {
        self.tracker.wait().await;
    }

    /// Stops the node at once, as if its process were killed: no leave is announced, no job is
    /// drained, the sockets close, and what it knew of its jobs is gone with it. For tests of
    /// how the others cope; [`NodeHandle::join`] waits for the end.
    pub fn kill(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.jobs.kill();
    }

    /// Leaves gracefully and waits until the node has stopped.
    pub async fn leave(&self) {
        self.shutdown();
        self.join().await;
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The seed of the placement rng, derived from the node's logged seed so that one number
/// repeats a run, yet different from the gossip rng's.
fn placement_seed(seed: u64) -> u64 {
    // The 64-bit golden ratio: any fixed odd constant would do.
    seed ^ 0x9e37_79b9_7f4a_7c15
}

/// The seed of the seed-name resolver's rng (its jitter), derived like [`placement_seed`].
fn discovery_seed(seed: u64) -> u64 {
    seed.rotate_left(17) ^ 0x6a09_e667_f3bc_c909
}

/// The incarnation of a node starting now: the wall-clock time in milliseconds since the UNIX
/// epoch, so a restarted node supersedes its old self; within one process it also rises
/// strictly, so that nodes restarted in the same millisecond still supersede.
fn next_incarnation() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = unix_ms().max(1);
    let previous = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or_else(|last| last);
    now.max(previous.saturating_add(1))
}

/// The wall clock, in milliseconds since the UNIX epoch.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_without_their_number() {
        let e = io::Error::from_raw_os_error(98);
        assert!(e.to_string().contains("(os error 98)"));
        assert!(!os_reason(&e).contains("os error"), "{}", os_reason(&e));
        assert_eq!(os_reason(&io::Error::other("plain")), "plain");
    }

    #[test]
    fn incarnations_rise_and_follow_the_clock() {
        let a = next_incarnation();
        let b = next_incarnation();
        assert!(b > a);
        // Milliseconds since the epoch: after 2020, before 2100.
        assert!(a > 1_577_836_800_000 && a < 4_102_444_800_000, "{a}");
    }
}
