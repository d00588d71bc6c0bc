//! What the node makes of its configuration: the settings derived from the flags (times, limits,
//! the gossip core's configuration, the keyring, the data directory), and their validation.

use std::net::SocketAddr;
use std::time::Duration;

use hearsay_shared::gossip::ConfigError;
use hearsay_shared::seal::{self, Keyring};
use hearsay_shared::{wire, GossipConfig, NodeId};

use super::flags::Config;
use super::values::DataDir;
use crate::gossip::sealing::{keyring_from_file, CLUSTER_KEY_VAR};
use crate::http::limits::{BodyLimits, ConnectionLimits};

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

impl Config {
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
    /// (`ConnectionLimits::from_descriptors`); a `--max-connections` over that is kept, with
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
pub(super) fn open_file_limit() -> Option<u64> {
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

impl Config {
    /// Whether gossip is to be sealed: a key file or `HEARSAY_CLUSTER_KEY` is given.
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

    /// The cluster keyring, read from the key file or `HEARSAY_CLUSTER_KEY`; `None` when gossip
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
