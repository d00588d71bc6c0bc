//! The keys of a node: the primary, which seals, and the accepted ones, which open too; key
//! files.

use std::fmt;

use super::key::{Key, KeyId};

/// The keys of a node: one primary key, which seals everything it sends, and further accepted
/// keys, with which it also opens what it receives. Rotation (as memberlist's keyring): add the
/// new key as accepted on every node, then make it primary on every node, then remove the old
/// one; at every step each node can open what every other seals.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    /// The primary key first, then the accepted ones.
    pub(super) keys: Vec<Key>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("primary", &self.primary_id())
            .field(
                "accepted",
                &self.keys[1..].iter().map(Key::id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a keyring was refused. `line` counts from 1, as an editor does (for text with several
/// keys on one line, separated by commas, it is the key's position instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    /// No key at all.
    #[error("no key: give at least one key of 64 hexadecimal digits (the first is the primary)")]
    Empty,
    /// A line that is not a key.
    #[error("line {line}: {reason}")]
    BadKey {
        /// Where.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The same key twice.
    #[error("line {line}: the same key as line {first}")]
    Duplicate {
        /// The repetition.
        line: usize,
        /// The first occurrence.
        first: usize,
    },
    /// Two different keys whose ids are the same (1 in 2^32): the receiver could not tell them
    /// apart.
    #[error("line {line}: a different key with the same key id {id} as line {first}; generate another key")]
    IdCollision {
        /// The second key.
        line: usize,
        /// The first.
        first: usize,
        /// The shared id.
        id: KeyId,
    },
}

impl Keyring {
    /// A keyring of `primary` and the `accepted` keys besides.
    pub fn new(
        primary: Key,
        accepted: impl IntoIterator<Item = Key>,
    ) -> Result<Self, KeyringError> {
        let keys: Vec<Key> = std::iter::once(primary).chain(accepted).collect();
        Keyring::from_numbered(keys.into_iter().enumerate().map(|(i, k)| (i + 1, k)))
    }

    fn from_numbered(keys: impl IntoIterator<Item = (usize, Key)>) -> Result<Self, KeyringError> {
        let mut ring: Vec<(usize, Key)> = Vec::new();
        for (line, key) in keys {
            if let Some((first, same)) = ring.iter().find(|(_, k)| k.id == key.id) {
                return Err(if same.bytes == key.bytes {
                    KeyringError::Duplicate {
                        line,
                        first: *first,
                    }
                } else {
                    KeyringError::IdCollision {
                        line,
                        first: *first,
                        id: key.id,
                    }
                });
            }
            ring.push((line, key));
        }
        if ring.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring {
            keys: ring.into_iter().map(|(_, k)| k).collect(),
        })
    }

    /// Reads a key file: one key per line as 64 hexadecimal digits, the first the primary and
    /// the others accepted; blank lines and lines starting with `#` are ignored. The error
    /// names the line.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = Key::from_hex(line).map_err(|reason| KeyringError::BadKey {
                line: i + 1,
                reason,
            })?;
            keys.push((i + 1, key));
        }
        Keyring::from_numbered(keys)
    }

    /// The primary key's id: every datagram this node sends carries it.
    pub fn primary_id(&self) -> KeyId {
        self.keys[0].id
    }

    /// The ids of every key, the primary first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys.iter().map(Key::id).collect()
    }

    pub(super) fn find(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::fixtures::*;
    use crate::seal::OpenError;

    #[test]
    fn rotated_keyrings_open_each_other() {
        // Mid-rotation: A already sends with K2 and still accepts K1; B the other way round.
        let mut a = keyed(2, &[1]);
        let mut b = keyed(1, &[2]);
        let from_a = a.outgoing(plain(), here(), NOW, &mut rng()).unwrap();
        let from_b = b.outgoing(plain(), here(), NOW, &mut rng()).unwrap();
        assert_eq!(&from_a[4..8], &key(2).id().0);
        assert_eq!(
            b.incoming(&from_a, NOW).unwrap().as_ref(),
            plain().as_slice()
        );
        assert_eq!(
            a.incoming(&from_b, NOW).unwrap().as_ref(),
            plain().as_slice()
        );
        // After it: K1 is gone from C, which refuses what B still sends.
        let mut c = keyed(2, &[]);
        assert_eq!(
            c.incoming(&from_b, NOW),
            Err(OpenError::UnknownKey(key(1).id()))
        );
        assert!(c.incoming(&from_a, NOW).is_ok());
    }

    #[test]
    fn key_files_parse_and_errors_name_the_line() {
        let text = format!(
            "# cluster keys\n\n{}\n  {}  \n# old\n",
            key(2).to_hex(),
            key(1).to_hex().to_uppercase()
        );
        let ring = Keyring::parse(&text).unwrap();
        assert_eq!(ring.primary_id(), key(2).id());
        assert_eq!(ring.ids(), vec![key(2).id(), key(1).id()]);
        assert_eq!(Keyring::parse("# nothing\n\n"), Err(KeyringError::Empty));
        let short = format!("{}\nabc\n", key(1).to_hex());
        let e = Keyring::parse(&short).unwrap_err();
        assert!(matches!(e, KeyringError::BadKey { line: 2, .. }), "{e}");
        assert!(e.to_string().starts_with("line 2: "), "{e}");
        let bad_digit = format!("{}g", &key(1).to_hex()[..63]);
        assert!(matches!(
            Keyring::parse(&bad_digit),
            Err(KeyringError::BadKey { line: 1, .. })
        ));
        let twice = format!("{}\n{}\n", key(1).to_hex(), key(1).to_hex());
        assert_eq!(
            Keyring::parse(&twice),
            Err(KeyringError::Duplicate { line: 2, first: 1 })
        );
        // Debug never shows key material.
        let shown = format!("{ring:?} {:?}", key(2));
        assert!(!shown.contains(&key(2).to_hex()[..16]), "{shown}");
    }
}
