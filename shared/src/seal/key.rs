//! A cluster key and its id on the wire.

use std::fmt;

use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use rand::CryptoRng;
use sha2::{Digest, Sha256};

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 4;

/// The id of a key on the wire: the first 4 bytes of SHA-256 of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A 32-byte cluster key. Its `Debug` shows the key id, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub(super) bytes: [u8; KEY_LEN],
    pub(super) id: KeyId,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl Key {
    /// The key with these bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let digest = Sha256::digest(bytes);
        let mut id = [0; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        Key {
            bytes,
            id: KeyId(id),
        }
    }

    /// A key from 64 hexadecimal digits (either case), as in a key file.
    pub fn from_hex(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() != 2 * KEY_LEN {
            return Err(format!(
                "a key is {} hexadecimal digits, this has {} characters",
                2 * KEY_LEN,
                text.chars().count()
            ));
        }
        let mut bytes = [0u8; KEY_LEN];
        for (i, pair) in text.as_bytes().chunks(2).enumerate() {
            let digit = |c: u8| (c as char).to_digit(16);
            match (digit(pair[0]), digit(pair[1])) {
                (Some(hi), Some(lo)) => bytes[i] = (hi * 16 + lo) as u8,
                _ => {
                    return Err(format!(
                        "a key is hexadecimal digits only (0-9, a-f); not at position {}",
                        2 * i + 1
                    ))
                }
            }
        }
        Ok(Key::from_bytes(bytes))
    }

    /// A fresh key from `rng`, which must be a cryptographic rng seeded from the OS.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        Key::from_bytes(bytes)
    }

    /// The key as 64 lowercase hexadecimal digits, the key file format.
    pub fn to_hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key's id on the wire.
    pub fn id(&self) -> KeyId {
        self.id
    }

    pub(super) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::fixtures::*;

    #[test]
    fn key_ids_are_the_start_of_sha256() {
        // SHA-256 of 32 zero bytes starts 66687aad.
        assert_eq!(key(0).id().to_string(), "66687aad");
        let generated = Key::generate(&mut rng());
        assert_eq!(Key::from_hex(&generated.to_hex()).unwrap(), generated);
    }
}
