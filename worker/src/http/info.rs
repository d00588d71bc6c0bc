//! `GET /v1/info`: what this node is and how it was started, like Envoy's `/server_info` —
//! version, build, uptime, identity, addresses, and the settings in effect with the secrets
//! redacted: the cluster key and the API token are never in the answer, only whether one is
//! set (`"redacted"`, or `null` when there is none).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL};
use hyper::{Response, StatusCode};
use serde_json::{json as value, Value};

use crate::config::{Config, DataDir};
use crate::http::view::json;

/// What a node says of itself, fixed at its start.
#[derive(Debug)]
pub(crate) struct ServerInfo {
    started: Instant,
    body: Value,
}

/// The addresses a node listens on and tells its peers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Addresses {
    /// The API socket as bound.
    pub api: SocketAddr,
    /// The gossip socket as bound.
    pub gossip: SocketAddr,
    /// The API address peers are told.
    pub advertise_api: SocketAddr,
    /// The gossip address peers are told.
    pub advertise_gossip: SocketAddr,
}

/// The marker that stands for a secret that is set.
const REDACTED: &str = "redacted";

impl ServerInfo {
    /// The info of a node started now from `config`.
    pub(crate) fn new(
        config: &Config,
        node: &str,
        incarnation: u64,
        slots: u32,
        addresses: Addresses,
        data_path: Option<&std::path::Path>,
    ) -> Self {
        let secret = |set: bool| {
            if set {
                Value::from(REDACTED)
            } else {
                Value::Null
            }
        };
        let data_dir = match &config.data_dir {
            None => Value::Null,
            Some(DataDir::Memory) => Value::from("none"),
            Some(DataDir::Path(p)) => Value::from(p.display().to_string()),
        };
        let body = value!({
            "version": env!("CARGO_PKG_VERSION"),
            "build": {
                // Set by whoever builds (`HEARSAY_GIT_COMMIT=$(git rev-parse HEAD) cargo build`);
                // null otherwise: no build script guesses it.
                "git_commit": option_env!("HEARSAY_GIT_COMMIT"),
                "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            },
            "node": node,
            "incarnation": incarnation,
            "incarnation_time": rfc3339_ms(incarnation),
            "addresses": {
                "api": addresses.api.to_string(),
                "gossip": addresses.gossip.to_string(),
                "advertise_api": addresses.advertise_api.to_string(),
                "advertise_gossip": addresses.advertise_gossip.to_string(),
            },
            "load_score": config.load_score.as_str(),
            "data_dir": data_path.map(|p| p.display().to_string()),
            "config": {
                "node_id": config.node_id.as_ref().map(|n| n.as_str()),
                "seeds": config.seeds.to_string(),
                "slots": slots,
                "queue_limit": config.queue_limit,
                "policy": config.policy.as_str(),
                "load_score": config.load_score.as_str(),
                "steal": config.steal.to_string(),
                "steal_interval_ms": config.steal_interval,
                "config_file": config.config_file.as_ref().map(|p| p.display().to_string()),
                "data_dir": data_dir,
                "retain_ms": config.retain_ms,
                "retain_jobs": config.retain_jobs,
                "retain_bytes": config.retain_bytes,
                "max_output_bytes": config.max_output_bytes,
                "drain_timeout_ms": config.drain_timeout,
                "gossip_interval_ms": config.gossip_interval,
                "fanout": config.fanout,
                "datagram_budget": config.datagram_budget,
                "max_nodes": config.max_nodes,
                "seed": config.seed,
                "cluster_key_file": config.cluster_key_file.as_ref().map(|p| p.display().to_string()),
                "cluster_key": secret(config.cluster_key.is_some() || config.cluster_key_file.is_some()),
                "api_token": secret(config.api_token.is_some()),
                "max_waits_per_client": config.max_waits_per_client,
                "body_timeout_ms": config.body_timeout,
                "body_min_rate": config.body_min_rate,
                "body_rate_grace_ms": config.body_rate_grace,
                "max_connections": config.max_connections,
                "max_connections_per_client": config.max_connections_per_client,
                "allowed_hosts": config.allowed_hosts.to_string(),
            },
        });
        ServerInfo {
            started: Instant::now(),
            body,
        }
    }

    /// The answer to `GET /v1/info`: the fixed part and the uptime.
    pub(crate) fn answer(&self) -> Response<Full<Bytes>> {
        let mut body = self.body.clone();
        body["uptime_ms"] = Value::from(self.started.elapsed().as_millis() as u64);
        let mut response = json(StatusCode::OK, &body);
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// `ms` since the Unix epoch as an RFC 3339 UTC time with milliseconds,
/// `2026-12-04T13:07:17.123Z` (the civil-from-days algorithm of Howard Hinnant).
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let in_day = ms % 86_400_000;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;
    use crate::gossip::sealing::KeyText;
    use crate::http::auth::ApiToken;

    #[tokio::test]
    async fn the_key_and_the_token_are_redacted() {
        let key = "ab".repeat(32);
        let token = "a-very-secret-api-token";
        let config = Config {
            cluster_key: Some(KeyText(key.clone())),
            api_token: Some(ApiToken::new(token).unwrap()),
            ..Config::default()
        };
        let addr = "127.0.0.1:9".parse().unwrap();
        let addresses = Addresses {
            api: addr,
            gossip: addr,
            advertise_api: addr,
            advertise_gossip: addr,
        };
        let info = ServerInfo::new(&config, "n", 1_796_389_637_123, 2, addresses, None);
        let body = info
            .answer()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let text = std::str::from_utf8(&body).unwrap();
        assert!(!text.contains(&key) && !text.contains(token), "{text}");
        let value: Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["config"]["cluster_key"], "redacted");
        assert_eq!(value["config"]["api_token"], "redacted");
        assert_eq!(value["incarnation_time"], "2026-12-04T13:07:17.123Z");
        assert_eq!(value["config"]["slots"], 2);
        let open = ServerInfo::new(&Config::default(), "n", 1, 1, addresses, None);
        let body = open
            .answer()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["config"]["cluster_key"], Value::Null);
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_796_389_637_123), "2026-12-04T13:07:17.123Z");
    }
}
