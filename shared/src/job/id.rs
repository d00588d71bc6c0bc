//! A job's name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A job's name: 64 random bits, written as 16 hex digits. Unique across the cluster in
/// practice (a collision needs billions of jobs in the retention window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// A string that is not 16 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a job id is 16 hex digits, not {0:?}")]
pub struct BadJobId(pub String);

impl FromStr for JobId {
    type Err = BadJobId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadJobId(s.to_owned()));
        }
        u64::from_str_radix(s, 16)
            .map(JobId)
            .map_err(|_| BadJobId(s.to_owned()))
    }
}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_print_and_parse_as_hex() {
        let id = JobId(0xdead_beef);
        assert_eq!(id.to_string(), "00000000deadbeef");
        assert_eq!("00000000deadbeef".parse::<JobId>(), Ok(id));
        assert!("xyz".parse::<JobId>().is_err());
        assert!("+0000000deadbeef".parse::<JobId>().is_err());
    }
}
