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
//! - `main.rs`: the `worker` binary, its exit codes; `lib.rs` (this file): [`run`], what the
//!   binary does — logging, the runtime, the signals.
//! - `node.rs`: [`Node::start`] binds the sockets and spawns the tasks; [`NodeHandle`] stops them.
//! - `logging.rs`: the tracing subscriber, as text or JSON lines.
//! - [`config`]: the command line and its `HEARSAY_*` environment fallbacks (clap) — `flags.rs`
//!   the flags and their defaults, `values.rs` the values parsed from them (seeds, the data
//!   directory), `settings.rs` what the node derives from them, checked.
//! - `gossip/`: the shell of the [`Gossip`] core — `mod.rs` the core shared under one lock,
//!   `task.rs` the UDP socket and timer that drive it (and log membership), `sealing.rs` the
//!   cluster key (the keyring, generating keys, counting the datagrams dropped before the core),
//!   `sampler.rs` the machine's CPU into the node's load vector, `cgroup.rs` the CPU the node's
//!   cgroup allows and uses (for the `cpu` load score), `discovery.rs` seeds given by DNS name,
//!   resolved again while the node has no live peer, `notices.rs` the log lines that say why a
//!   node does not join (datagrams dropped, with a hint at the cause; seeds unanswered).
//! - `history/`: the cluster's recent history for `GET /v1/history` — `ring.rs` a bounded ring of
//!   load samples and a bounded timeline of membership events (pure), `mod.rs` them shared,
//!   fed once per gossip interval, and the route.
//! - `jobs/`: running and keeping jobs —
//!   - `slots/`: job slots and the bounded FIFO queue before them — `mod.rs` the executor's
//!     handle and what it shares with its slots, `slot.rs` a busy slot's task (it runs a job,
//!     records its end, and takes the queue's next); `kinds.rs`: what sleep, spin, echo and exec
//!     jobs do;
//!   - `commands.rs`: the commands `exec` jobs may run, from the `--config` file (TOML), checked;
//!     `process.rs`: runs one as a process group (no shell, cleared environment, capped output,
//!     killed at its timeout);
//!   - `store/`: every job's status and outcome — `mod.rs` the records and their changes,
//!     `retention.rs` finished ones kept for a bounded time, number and memory (what an outcome
//!     costs, the oldest evicted first), `list.rs` the pages of `GET /v1/jobs`; `disk.rs`: its
//!     durable half, one redb file in `--data-dir`, written by grouped commits; `restart.rs`: what
//!     a restarted node does with what it kept;
//!   - `dispatch/`: the shell over the hand-off core of `hearsay-scheduler` — `mod.rs` what comes
//!     in (submissions, peers' offers, asks and steals) and the drain, `state.rs` the handle and
//!     what sits under its lock, `shell.rs` the core's actions carried out and what it is fed,
//!     `record.rs` what its decisions write to the store, `cancel.rs` a cancel of a job held
//!     here or named elsewhere, `peers.rs` its messages to peers over HTTP (pooled hyper-util
//!     client, bounded by timeouts).
//! - `http/`: the API —
//!   - `server.rs`: the hyper 1.x server, its connection limits and graceful shutdown;
//!     `routes/`: `mod.rs` the routing, and the checks every request passes first, `tests.rs`
//!     every route answered end to end;
//!   - `job_routes/`: `/v1/jobs` — `mod.rs` the answers and errors, `request.rs` reading and
//!     checking requests; `peer_routes.rs`: `/v1/peer/offer`, `ask` and `steal`;
//!     `node_routes.rs`: the node's own — `/healthz`, `/v1/cluster`, `/v1/info`, `/metrics`,
//!     `/v1/drain`, `/v1/openapi.json`; `info.rs`: what `/v1/info` says;
//!   - `auth.rs`: the bearer token (`--api-token-file`), checked in constant time;
//!     `browser_guard.rs`: what keeps web pages out — `Host`, `Origin` and `Content-Type` checks;
//!   - `limits/`: per-client bounds — `waits.rs` on requests that wait for a job's end,
//!     `connections.rs` connection caps (per client and below the open-file limit), `body.rs`
//!     request body deadlines;
//!   - `stream.rs`: `GET /v1/cluster/stream`, the load map as server-sent events;
//!     `dashboard.rs`: `GET /`, the live dashboard page compiled into the binary; `view.rs`: the
//!     JSON shapes the API answers with.
//! - `metrics/`: `GET /metrics` in the Prometheus text format — `recorders.rs` the job counters
//!   and times recorded as they happen, `scrape.rs` the figures read at scrape time,
//!   `exposition.rs` the registry and its two text formats, `moves.rs` the moves of jobs between
//!   nodes (also for `/v1/cluster`).
//!
//! [`Gossip`]: hearsay_shared::Gossip

pub mod config;
mod cpu_time;
mod gossip;
mod history;
mod http;
mod jobs;
mod logging;
mod metrics;
mod node;

pub use config::Config;
/// The API token (`--api-token-file`), where loadgen and the tests name it
/// (`hearsay_worker::auth::ApiToken`).
pub use http::auth;
pub use http::routes::ROUTES;
pub use http::server::HEADER_READ_TIMEOUT;
pub use http::stream::MAX_STREAMS;
pub use node::{Node, NodeHandle, StartError};

/// Runs a node until `SIGTERM`, ctrl-c or `POST /v1/drain`, then leaves gracefully: what the
/// `worker` binary does.
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
        tokio::select! {
            () = shutdown_signal() => {
                tracing::info!(node = %node.id(), "shutdown signal received; leaving the cluster");
            }
            // `POST /v1/drain` has started the leave already; it ends as a signal's does.
            () = node.leave_requested() => {}
        }
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
