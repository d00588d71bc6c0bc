//! The placement policies: the power of two choices, and the baselines it is measured against.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a node places the jobs submitted to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The power of two choices: this node (its load known exactly) against one alive peer drawn
    /// at random — or two distinct peers when this node takes no work — the less loaded wins,
    /// ties go to this node.
    #[default]
    P2c,
    /// Any alive node, uniformly.
    Random,
    /// The alive nodes in turn.
    RoundRobin,
    /// Always the apparently least loaded node: herds onto one node when the map is stale.
    LeastLoaded,
    /// Never forward.
    Local,
}

impl Policy {
    /// Every policy, default first.
    pub const ALL: [Policy; 5] = [
        Policy::P2c,
        Policy::Random,
        Policy::RoundRobin,
        Policy::LeastLoaded,
        Policy::Local,
    ];

    /// The policy's name, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::P2c => "p2c",
            Policy::Random => "random",
            Policy::RoundRobin => "round-robin",
            Policy::LeastLoaded => "least-loaded",
            Policy::Local => "local",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy name that is not one of [`Policy::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown policy {0:?}; expected one of p2c, random, round-robin, least-loaded, local")]
pub struct UnknownPolicy(pub String);

impl FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPolicy(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Policy::ALL {
            assert_eq!(p.as_str().parse::<Policy>(), Ok(p));
        }
        assert!("fastest".parse::<Policy>().is_err());
    }
}
