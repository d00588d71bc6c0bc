//! The Hearsay node: it runs jobs, gossips its load over UDP, keeps the cluster's load map, and
//! places the jobs submitted to it by the power of two choices over that map — here, or
//! offered to a peer — while idle nodes take queued jobs from busy ones. Every tokio, hyper and
//! sysinfo shell of the project lives here; the
//! protocol is the sans-IO [`Gossip`] core of `hearsay-shared` and placement the pure `Placer` of
//! `hearsay-scheduler`, which this crate only drives.
//!
//! `main.rs` parses the configuration and calls [`run`]; tests start nodes in-process with
//! [`Node::start`] and stop them with [`NodeHandle::leave`].
//!
//! # Layout
//! - [`config`]: the command line and its `HEARSAY_*` environment fallbacks (clap).
//! - [`node`]: [`Node::start`] binds the sockets and spawns the tasks; [`NodeHandle`] stops them.
//! - [`discovery`]: seeds given by DNS name, resolved again while the node has no live peer.
//! - [`gossip_task`]: the UDP socket and timer that drive the [`Gossip`] core; logs membership.
//! - [`sealing`]: the cluster key — reading the keyring, generating keys, counting the datagrams
//!   dropped before the core.
//! - [`sampler`]: samples the machine's CPU and the executor's queue into the node's load vector.
//! - [`executor`]: job slots and the bounded FIFO queue before them; runs sleep, spin, echo and
//!   exec.
//! - [`commands`]: the commands `exec` jobs may run, from the `--config` file (TOML), checked.
//! - [`exec`]: runs one declared command as a process group: no shell, cleared environment,
//!   capped output, killed at its timeout.
//! - [`job_store`]: every job's status and outcome, finished ones kept for a bounded time and
//!   number.
//! - [`disk`]: the durable half of the job store, one redb file in `--data-dir`, written by
//!   grouped commits; [`restart`]: what a restarted node does with what it kept.
//! - [`dispatch`]: the shell over the hand-off core of `hearsay-scheduler`: carries out what it
//!   decides (run here, offer to a peer, follow, settle, steal) and feeds it what happens; the
//!   drain when the node leaves.
//! - [`peer`]: the hand-off's messages to peers over HTTP (pooled hyper-util client, bounded by
//!   timeouts); [`peer_api`]: the routes that answer them (`/v1/peer/offer`, `ask`, `steal`).
//! - [`move_metrics`]: the moves of jobs between nodes, counted for `/v1/cluster` and `/metrics`.
//! - [`api`]: the HTTP server (hyper 1.x, graceful shutdown) and its routing.
//! - [`auth`]: the API's bearer token (`--api-token-file`), checked in constant time.
//! - [`browser_guard`]: what keeps web pages out — `Host`, `Origin` and `Content-Type` checks.
//! - [`limits`]: per-client bounds on requests that wait for a job's end; connection caps
//!   (per client and below the open-file limit); request body deadlines.
//! - [`job_api`]: the job routes: reading and checking requests, answers and errors.
//! - [`stream`]: `GET /v1/cluster/stream`, the load map as server-sent events.
//! - [`dashboard`]: `GET /`, the live dashboard page compiled into the binary.
//! - [`metrics`]: job counters and times, and `GET /metrics` in the Prometheus text format.
//! - [`view`]: the JSON shapes the API answers with.
//! - [`logging`]: the tracing subscriber, as text or JSON lines.

pub mod config;
mod gossip;
mod http;
mod jobs;
mod logging;
mod metrics;
mod node;

pub use config::Config;
/// The API token (`--api-token-file`), where loadgen and the tests name it
/// (`hearsay_worker::auth::ApiToken`).
pub use http::auth;
pub use http::server::HEADER_READ_TIMEOUT;
pub use http::stream::MAX_STREAMS;
pub use node::{Node, NodeHandle, StartError};

/// Runs a node until `SIGTERM` or ctrl-c, then leaves gracefully: what the `worker` binary does.
///
/// Sets up logging, builds the tokio runtime, starts the node and waits for the signal. Errors
/// (a socket that cannot be bound, an invalid setting) come back before anything is left
/// running.
pub fn run(config: Config) -> anyhow::Result<()> {
    use anyhow::Context as _;

    if config.generate_key {
        // Nothing else: no logging, no runtime, no sockets.
        let key = gossip::sealing::generate_key()
            .context("cannot read the OS random number generator")?;
        println!("{key}");
        return Ok(());
    }
    logging::init(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("worker")
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let node = Node::start(config).await?;
        shutdown_signal().await;
        tracing::info!(node = %node.id(), "shutdown signal received; leaving the cluster");
        node.leave().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// Resolves on ctrl-c or, on Unix, `SIGTERM`. If a signal handler cannot be installed, that
/// signal is simply not waited for (and an error is logged); the other one still works.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
