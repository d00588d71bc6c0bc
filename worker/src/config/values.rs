//! The values of the flags that are more than a number or an address, and how they are parsed
//! from the command line.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use clap::ValueEnum;
use hearsay_shared::NodeId;

use crate::gossip::discovery::SeedName;

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

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

/// Seeds, parsed from a comma-separated list (empty items are ignored): the IP addresses given
/// (`.0`), and the names to resolve (`.1`, see `gossip/discovery.rs`).
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

/// A count of 1 or more.
pub(super) fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
