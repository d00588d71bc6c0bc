//! The cluster key, on the worker's side: reading the keyring (`--cluster-key-file`, or
//! `HEARSAY_CLUSTER_KEY`), generating a key (`--generate-key`), and counting the gossip
//! datagrams dropped before they reach the core. The sealing itself is
//! [`hearsay_shared::seal`]; the gossip task applies it to every datagram.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use hearsay_shared::seal::{Key, Keyring, KeyringError, OpenError};
use hearsay_shared::GossipStats;
use rand::rngs::OsRng;
use rand::TryRngCore;
use serde::Serialize;

/// The environment variable that holds the keyring's text itself.
pub const CLUSTER_KEY_VAR: &str = "HEARSAY_CLUSTER_KEY";

/// The keyring's text from [`CLUSTER_KEY_VAR`]. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyText(pub String);

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyText(..)")
    }
}

impl KeyText {
    /// The text of [`CLUSTER_KEY_VAR`], if it is set and not empty.
    pub fn from_env() -> Option<KeyText> {
        std::env::var(CLUSTER_KEY_VAR)
            .ok()
            .filter(|text| !text.trim().is_empty())
            .map(KeyText)
    }

    /// The keyring it holds: the key file format, with commas allowed in place of line breaks
    /// (an environment variable is one line more easily); errors count keys from 1.
    pub fn keyring(&self) -> Result<Keyring, String> {
        Keyring::parse(&self.0.replace(',', "\n")).map_err(|e| match e {
            KeyringError::BadKey { line, reason } => format!("key {line}: {reason}"),
            other => other.to_string().replace("line", "key"),
        })
    }
}

/// Reads a key file (see [`Keyring::parse`]); the error names the file's line.
pub fn keyring_from_file(path: &Path) -> Result<Keyring, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    Keyring::parse(&text).map_err(|e| e.to_string())
}

/// A fresh key from the OS rng, as a key file line (64 hexadecimal digits).
pub fn generate_key() -> Result<String, rand::rand_core::OsError> {
    let mut bytes = [0u8; hearsay_shared::seal::KEY_LEN];
    OsRng.try_fill_bytes(&mut bytes)?;
    Ok(Key::from_bytes(bytes).to_hex())
}

/// Gossip datagrams dropped before they reached the core, by [`OpenError::reason`]. (Those
/// that reach it and do not decode are the core's `decode_errors`.)
#[derive(Debug, Default)]
pub struct ReceiveErrors {
    counts: [AtomicU64; OpenError::REASONS.len()],
}

impl ReceiveErrors {
    /// Counts one dropped datagram.
    pub fn count(&self, error: &OpenError) {
        self.counts[error.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The count of each reason, in the order of [`OpenError::REASONS`].
    pub fn counts(&self) -> [u64; OpenError::REASONS.len()] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }

    /// Every dropped datagram.
    pub fn total(&self) -> u64 {
        self.counts().iter().sum()
    }
}

/// The received datagrams dropped, by reason, as `GET /v1/cluster` shows them (the labels of
/// `gossip_receive_errors_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReceiveErrorCounts {
    /// Reached the core and did not decode.
    pub decode: u64,
    /// The tag did not match: forged, altered, or sealed for another node's address.
    pub authentication: u64,
    /// Sealed with a key this node does not hold.
    pub unknown_key: u64,
    /// Outside the replay window, or already received.
    pub replay: u64,
    /// Plain, and this node has a cluster key.
    pub unsealed: u64,
    /// Sealed, and this node has no cluster key.
    pub sealed: u64,
    /// Not a sealed envelope.
    pub malformed: u64,
}

impl ReceiveErrorCounts {
    /// The core's decode errors and the shell's drops together.
    pub fn of(stats: &GossipStats, dropped: &ReceiveErrors) -> Self {
        let [authentication, unknown_key, replay, unsealed, sealed, malformed] = dropped.counts();
        ReceiveErrorCounts {
            decode: stats.decode_errors,
            authentication,
            unknown_key,
            replay,
            unsealed,
            sealed,
            malformed,
        }
    }

    /// `(reason, count)` for every reason, `decode` first.
    pub fn by_reason(&self) -> [(&'static str, u64); 7] {
        [
            ("decode", self.decode),
            ("authentication", self.authentication),
            ("unknown_key", self.unknown_key),
            ("replay", self.replay),
            ("unsealed", self.unsealed),
            ("sealed", self.sealed),
            ("malformed", self.malformed),
        ]
    }
}

/// The core's counters as the node's gossip socket saw them: `datagrams_received` is every
/// datagram received, whether or not it opened and decoded — the core's count and those the
/// seal refused before the core saw them. `GET /v1/cluster` and
/// `hearsay_gossip_datagrams_received_total` both show this one count.
pub fn socket_counters(core: GossipStats, refused: &ReceiveErrors) -> GossipStats {
    GossipStats {
        datagrams_received: core.datagrams_received.saturating_add(refused.total()),
        ..core
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_line_up_with_the_shared_labels() {
        let counts = ReceiveErrorCounts::default().by_reason();
        assert_eq!(counts[0].0, "decode");
        let labels: Vec<&str> = counts[1..].iter().map(|(r, _)| *r).collect();
        assert_eq!(labels, OpenError::REASONS);
        let dropped = ReceiveErrors::default();
        dropped.count(&OpenError::Sealed);
        dropped.count(&OpenError::Sealed);
        dropped.count(&OpenError::Authentication);
        let counts = ReceiveErrorCounts::of(&GossipStats::default(), &dropped);
        assert_eq!((counts.sealed, counts.authentication), (2, 1));
        assert_eq!(dropped.total(), 3);
    }

    #[test]
    fn key_text_allows_commas_and_counts_keys() {
        let a = generate_key().unwrap();
        let b = generate_key().unwrap();
        assert_ne!(a, b);
        let ring = KeyText(format!("{a}, {b}")).keyring().unwrap();
        assert_eq!(ring.ids().len(), 2);
        let e = KeyText(format!("{a},nope")).keyring().unwrap_err();
        assert!(e.starts_with("key 2: "), "{e}");
        assert!(!format!("{:?}", KeyText(a.clone())).contains(&a[..8]));
    }

    #[test]
    fn a_key_file_error_names_the_line() {
        let dir = std::env::temp_dir().join(format!("hearsay-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        let good = generate_key().unwrap();
        std::fs::write(&path, format!("# keys\n{good}\n\n{}\n", &good[..10])).unwrap();
        let e = keyring_from_file(&path).unwrap_err();
        assert!(e.starts_with("line 4: "), "{e}");
        std::fs::write(&path, format!("{good}\n")).unwrap();
        assert!(keyring_from_file(&path).is_ok());
        assert!(keyring_from_file(&dir.join("missing"))
            .unwrap_err()
            .starts_with("cannot read it"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
