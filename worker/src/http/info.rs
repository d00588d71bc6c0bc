//! `GET /v1/info`: what this node is and how it was started — version, build, uptime, the
//! addresses it listens on and tells peers, and the settings in effect — like Envoy's
//! `/server_info`. Secrets are never in it: the cluster keys appear as their ids (the first 4
//! bytes of their SHA-256, which the start-up log shows too) and the API token as `"redacted"`,
//! so the body can be pasted into a bug report.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hearsay_shared::seal::Keyring;
use hearsay_shared::NodeId;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::config::Config;
use crate::http::limits::ConnectionLimits;

/// What `/v1/info` says: fixed at start but for the uptime, which is counted from `started`.
#[derive(Debug, Clone)]
pub(crate) struct ServerInfo {
    body: Value,
    started: Instant,
}

/// The addresses a node listens on and the ones it tells peers and clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addresses {
    /// Where the HTTP API and the gossip socket are bound.
    pub listen_api: SocketAddr,
    pub listen_gossip: SocketAddr,
    /// What peers are told (`--advertise-*`, else the bound addresses).
    pub advertise_api: SocketAddr,
    pub advertise_gossip: SocketAddr,
}

/// What a node settled on at start, beyond its flags.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolved<'a> {
    pub id: &'a NodeId,
    pub incarnation: u64,
    pub seed: u64,
    pub slots: u32,
    pub data_path: Option<&'a Path>,
    pub keyring: Option<&'a Keyring>,
    pub connections: ConnectionLimits,
    pub commands: &'a [&'a str],
}

impl ServerInfo {
    /// The answer for a node started with `config` that settled on `resolved` and is bound at
    /// `addresses`, its clock started now.
    pub(crate) fn new(config: &Config, resolved: Resolved<'_>, addresses: Addresses) -> Self {
        let keys = resolved.keyring.map(|ring| {
            json!({
                "primary": ring.primary_id().to_string(),
                "ids": ring.ids().iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
        });
        let body = json!({
            "version": env!("CARGO_PKG_VERSION"),
            "build": {
                "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
                "target": format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS),
            },
            "node_id": resolved.id.as_str(),
            "incarnation": resolved.incarnation,
            "incarnation_time": rfc3339(resolved.incarnation),
            "listen": {
                "api": addresses.listen_api.to_string(),
                "gossip": addresses.listen_gossip.to_string(),
            },
            "advertise": {
                "api": addresses.advertise_api.to_string(),
                "gossip": addresses.advertise_gossip.to_string(),
            },
            "config": {
                "seeds": config.seeds.to_string(),
                "slots": resolved.slots,
                "queue_limit": config.queue_limit,
                "policy": config.policy.to_string(),
                "load_score": config.load_score.to_string(),
                "steal": config.steal.to_string(),
                "steal_interval_ms": config.steal_interval,
                "commands": resolved.commands,
                "config_file": config.config_file.as_ref().map(|p| p.display().to_string()),
                "data_dir": resolved.data_path.map_or_else(|| "none".to_owned(), |p| p.display().to_string()),
                "retain_ms": config.retain_ms,
                "retain_jobs": config.retain_jobs,
                "retain_bytes": config.retain_bytes,
                "max_output_bytes": config.max_output_bytes,
                "drain_timeout_ms": config.drain_timeout,
                "gossip_interval_ms": config.gossip_interval,
                "fanout": config.fanout,
                "datagram_budget": config.datagram_budget,
                "max_nodes": config.max_nodes,
                "log_format": format!("{:?}", config.log_format).to_lowercase(),
                "seed": resolved.seed,
                "cluster_keys": keys,
                "api_token": config.api_token.as_ref().map(|_| "redacted"),
                "max_waits_per_client": config.max_waits_per_client,
                "body_timeout_ms": config.body_timeout,
                "body_min_rate": config.body_min_rate,
                "body_rate_grace_ms": config.body_rate_grace,
                "max_connections": resolved.connections.total,
                "max_connections_per_client": resolved.connections.per_client,
                "allowed_hosts": config.allowed_hosts.to_string(),
            },
        });
        ServerInfo {
            body,
            started: Instant::now(),
        }
    }

    /// The body, with the uptime as of now.
    pub(crate) fn body(&self) -> Value {
        let mut body = self.body.clone();
        let uptime = self.started.elapsed();
        body["uptime_ms"] = json!(u64::try_from(uptime.as_millis()).unwrap_or(u64::MAX));
        body
    }
}

/// Unix milliseconds as an RFC 3339 UTC time, e.g. `2026-12-04T13:05:35.123Z`.
fn rfc3339(unix_ms: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(unix_ms);
    humantime::format_rfc3339_millis(
        at.min(SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)),
    )
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_read_as_utc_times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_389_535_123), "2026-12-04T13:05:35.123Z");
        // Beyond the year 9999 (no incarnation is), the last second RFC 3339 can write.
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59.000Z");
    }
}
