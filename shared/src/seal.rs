//! Sealed gossip: every datagram authenticated and encrypted with a cluster key
//! (XChaCha20-Poly1305), bound to the address it is sent to, replays refused. Sans-IO like the
//! rest of this crate: the time and the rng come in as arguments.
//!
//! # The envelope
//!
//! A sealed datagram keeps the plain envelope's 4-byte header, with the [`SEALED_FLAG`] and
//! [`DESTINATION_FLAG`] bits set, and carries the plain datagram's message encrypted behind it:
//!
//! ```text
//! +-----------------+--------+-----------+---------------------------------------+---------+
//! | 'H' 'S' ver flg | key id |   nonce   | ciphertext of: sent_at | message      |   tag   |
//! |     4 bytes     | 4      |    24     |                 8 (LE)  | n            |   16    |
//! +-----------------+--------+-----------+---------------------------------------+---------+
//!  \___ associated data, with the destination address (not sent) ___/
//! ```
//!
//! - The **associated data** is the header, the key id and the **destination**: the gossip
//!   address the datagram is sent to, as the sender addresses it (18 bytes: the IPv6 address,
//!   IPv4 as IPv4-mapped, then the port). The destination is not on the wire: the receiver
//!   supplies its own address, so a datagram replayed to any other address fails
//!   authentication, and the seal still adds [`OVERHEAD`] bytes. Flipping the flags, the version
//!   or the key id makes the tag fail too. Which addresses a node opens with:
//!   [`own_destinations`].
//! - The **key id** is the first 4 bytes of SHA-256 of the key. The receiver looks the key up
//!   directly instead of trying each; an id it does not know means another cluster, or a key it
//!   has retired. Four bytes reveal nothing usable about a 256-bit key, and two different keys
//!   of one keyring that share an id (odds 1 in 2^32) are refused when the keyring is built.
//! - The **nonce** is 24 random bytes from the caller's rng (which must be a
//!   [`CryptoRng`]). XChaCha20's 192-bit nonce, rather than ChaCha20's 96 bits, is what makes
//!   random nonces safe for a key shared by a whole cluster for months: at 25,000 datagrams a
//!   second cluster-wide, 96-bit random nonces reach the usual 2^-32 collision bound in two days;
//!   192-bit ones never do. (A repeated nonce under one key would reveal the XOR of two
//!   messages and let an attacker forge.)
//! - **`sent_at`** is the sender's wall clock in milliseconds since the UNIX epoch, encrypted
//!   with the message, so it is authenticated: the receiver's [`ReplayGuard`] refuses
//!   datagrams from outside its window and any it has already accepted. With the destination
//!   bound, a datagram is accepted at most once, and only at the address it was sent to.
//!
//! The seal adds [`OVERHEAD`] (52) bytes to the plain datagram: the header is shared, so a
//! node whose datagrams must fit a budget `B` gives its gossip core a budget of `B - OVERHEAD`.
//!
//! [`DESTINATION_FLAG`] marks this seal format (the second; the first had no destination in
//! its associated data and only [`SEALED_FLAG`]): a node of either format counts the other's
//! datagrams as `malformed` rather than as forgeries. The plain format's version is unchanged.
//!
//! # What is refused
//!
//! [`Sealing::incoming`] says why a datagram is dropped with an [`OpenError`], whose
//! [`OpenError::reason`] is the label of the worker's `gossip_receive_errors_total{reason}`:
//! `authentication` (which includes a datagram sealed for another destination: it cannot be
//! told from a forgery without a destination on the wire), `unknown_key`, `replay`, `unsealed`,
//! `sealed`, `malformed`. Nothing of a refused datagram reaches the gossip core, and a datagram
//! that fails authentication leaves no trace in the replay guard either (so forgeries cannot
//! fill it).

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::CryptoRng;
use sha2::{Digest, Sha256};

use crate::wire::{FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_DATAGRAM};

/// The flag bit (in the envelope's fourth byte) of a sealed datagram.
pub const SEALED_FLAG: u8 = 0b0000_0001;
/// The flag bit of the seal format that binds a datagram to its destination. Every sealed
/// datagram carries it beside [`SEALED_FLAG`]; one with [`SEALED_FLAG`] alone is of the first
/// seal format, whose associated data held no destination, and is refused as malformed.
pub const DESTINATION_FLAG: u8 = 0b0000_0010;
/// The flags byte of a sealed datagram.
const SEALED_FLAGS: u8 = SEALED_FLAG | DESTINATION_FLAG;
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of a key id.
pub const KEY_ID_LEN: usize = 4;
/// Bytes of a nonce (XChaCha20-Poly1305).
pub const NONCE_LEN: usize = 24;
/// Bytes of the sender's timestamp inside the ciphertext.
pub const TIMESTAMP_LEN: usize = 8;
/// Bytes of the authentication tag.
pub const TAG_LEN: usize = 16;
/// Bytes a seal adds to a plain datagram: key id, nonce, timestamp and tag (the 4-byte header
/// is the plain datagram's own).
pub const OVERHEAD: usize = KEY_ID_LEN + NONCE_LEN + TIMESTAMP_LEN + TAG_LEN;
/// Bytes before the ciphertext: header, key id, nonce.
const PREFIX_LEN: usize = HEADER_LEN + KEY_ID_LEN + NONCE_LEN;
/// Bytes of header and key id, the part of the associated data that is on the wire.
const AD_WIRE_LEN: usize = HEADER_LEN + KEY_ID_LEN;
/// Bytes of a destination in the associated data: an IPv6 address (IPv4 as IPv4-mapped) and
/// the port, big-endian.
const DESTINATION_LEN: usize = 16 + 2;
/// Bytes of associated data: header, key id and destination.
const AD_LEN: usize = AD_WIRE_LEN + DESTINATION_LEN;

/// The default replay window: datagrams stamped more than this before or after the receiver's
/// clock are refused.
pub const DEFAULT_REPLAY_WINDOW_MS: u64 = 30_000;
/// The default number of datagrams a [`ReplayGuard`] remembers: some ten times what a node
/// receives in a minute at the default settings (about 25 a second), so that only a flood from
/// a key holder ever reaches it.
pub const DEFAULT_REPLAY_MEMORY: usize = 16_384;

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
    bytes: [u8; KEY_LEN],
    id: KeyId,
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

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.bytes.into())
    }
}

/// The keys of a node: one primary key, which seals everything it sends, and further accepted
/// keys, with which it also opens what it receives. Rotation (as memberlist's keyring): add the
/// new key as accepted on every node, then make it primary on every node, then remove the old
/// one; at every step each node can open what every other seals.
#[derive(Clone, PartialEq, Eq)]
pub struct Keyring {
    /// The primary key first, then the accepted ones.
    keys: Vec<Key>,
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

    fn find(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Seals a plain datagram (as the wire encoders make it: header with no flags, then the
    /// message) for the gossip address `to` it is about to be sent to, with the primary key,
    /// stamped `now_unix_ms`, with a nonce from `rng`. The result is [`OVERHEAD`] bytes longer,
    /// and opens only where the receiver opens with `to` (see [`own_destinations`]).
    pub fn seal<R: CryptoRng + ?Sized>(
        &self,
        datagram: &[u8],
        to: SocketAddr,
        now_unix_ms: u64,
        rng: &mut R,
    ) -> Result<Vec<u8>, SealError> {
        if datagram.len() < HEADER_LEN || datagram[..2] != MAGIC || datagram[3] & SEALED_FLAG != 0 {
            return Err(SealError::NotPlain);
        }
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let message = &datagram[HEADER_LEN..];

        let mut out = Vec::with_capacity(datagram.len() + OVERHEAD);
        out.extend_from_slice(&datagram[..HEADER_LEN]);
        out[3] = SEALED_FLAGS;
        out.extend_from_slice(&key.id.0);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&now_unix_ms.to_le_bytes());
        out.extend_from_slice(message);
        let ad = associated_data(&out[..AD_WIRE_LEN], to);
        let tag = key
            .cipher()
            .encrypt_inout_detached(&XNonce::from(nonce), &ad, out[PREFIX_LEN..].as_mut().into())
            .map_err(|_| SealError::TooLong)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a sealed datagram received at one of the addresses `at` (the receiver's own, see
    /// [`own_destinations`]): checks the envelope, finds the key by its id, then authenticates
    /// and decrypts it as sealed for each address of `at` in turn, until one succeeds. Returns
    /// the sender's timestamp, the nonce, the destination it was sealed for and the plain
    /// datagram (the header with no flags, then the message), for the replay guard and the
    /// gossip core. A datagram sealed for an address not in `at` fails authentication. Use
    /// [`Sealing::incoming`], which also applies the guard.
    pub fn open(&self, bytes: &[u8], at: &[SocketAddr]) -> Result<Opened, OpenError> {
        if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC || bytes.len() > MAX_DATAGRAM {
            return Err(OpenError::Malformed);
        }
        if bytes[3] & SEALED_FLAG == 0 {
            return Err(OpenError::Unsealed);
        }
        if bytes[2] != FORMAT_VERSION
            || bytes[3] != SEALED_FLAGS
            || bytes.len() < PREFIX_LEN + TIMESTAMP_LEN + TAG_LEN
        {
            return Err(OpenError::Malformed);
        }
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&bytes[HEADER_LEN..AD_WIRE_LEN]);
        let id = KeyId(id);
        let key = self.find(id).ok_or(OpenError::UnknownKey(id))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[AD_WIRE_LEN..PREFIX_LEN]);
        let (body, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        let tag = Tag::try_from(tag).map_err(|_| OpenError::Malformed)?;
        let cipher = key.cipher();
        let mut plaintext = body[PREFIX_LEN..].to_vec();
        // One tag check per address: a node has one, or up to three when it listens on an
        // unspecified address. The tag is checked before anything is decrypted, but the buffer
        // is restored anyway before the next try, so that no attempt can see another's output.
        let mut destination = None;
        for (i, &to) in at.iter().enumerate() {
            if i > 0 {
                plaintext.copy_from_slice(&body[PREFIX_LEN..]);
            }
            let ad = associated_data(&bytes[..AD_WIRE_LEN], to);
            let opened = cipher.decrypt_inout_detached(
                &XNonce::from(nonce),
                &ad,
                plaintext.as_mut_slice().into(),
                &tag,
            );
            if opened.is_ok() {
                destination = Some(to);
                break;
            }
        }
        let destination = destination.ok_or(OpenError::Authentication)?;
        let mut sent_at = [0u8; TIMESTAMP_LEN];
        sent_at.copy_from_slice(&plaintext[..TIMESTAMP_LEN]);
        // The plain datagram: the header without the flag, then the message, written over the
        // timestamp so that nothing is allocated again.
        plaintext[..HEADER_LEN].copy_from_slice(&[MAGIC[0], MAGIC[1], bytes[2], 0]);
        plaintext.copy_within(TIMESTAMP_LEN.., HEADER_LEN);
        plaintext.truncate(plaintext.len() - (TIMESTAMP_LEN - HEADER_LEN));
        Ok(Opened {
            sent_at_unix_ms: u64::from_le_bytes(sent_at),
            nonce,
            destination,
            datagram: plaintext,
        })
    }
}

/// The associated data of a datagram: its header and key id as on the wire, then the
/// destination, canonical (an IPv4-mapped IPv6 address is the IPv4 address it maps), so that a
/// sender and a receiver that spell one address in two families agree.
fn associated_data(header_and_id: &[u8], to: SocketAddr) -> [u8; AD_LEN] {
    let mut ad = [0u8; AD_LEN];
    ad[..AD_WIRE_LEN].copy_from_slice(header_and_id);
    let ip = match to.ip().to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    ad[AD_WIRE_LEN..AD_WIRE_LEN + 16].copy_from_slice(&ip.octets());
    ad[AD_WIRE_LEN + 16..].copy_from_slice(&to.port().to_be_bytes());
    ad
}

/// The destinations a node whose gossip socket is bound at `bound` opens datagrams with: the
/// addresses peers may seal for when they send to it.
///
/// - Bound to a specific address (`10.0.0.5:7946`, `127.0.0.2:7946`): that address alone. It
///   is also the address the node advertises in its report, and the socket receives nothing
///   sent to any other. Peers must name it by exactly that address in `--seeds` (not through
///   a NAT or a port forward that changes it).
/// - Bound to an unspecified address (`0.0.0.0:p`, `[::]:p`): the node cannot tell which of its
///   addresses a datagram was sent to, so it opens only with the address it advertises (the
///   bound one, `0.0.0.0:p`, which reaches it only from its own machine) and the loopback
///   address with its port (`127.0.0.1:p`, and `[::1]:p` for `[::]`). Datagrams sent to those
///   never leave the machine, so no one off it can capture one to replay at another node; but
///   datagrams a peer on another machine seals for the node's network address are refused
///   (`authentication`). Such a node can gossip sealed only with peers on its own machine.
pub fn own_destinations(bound: SocketAddr) -> Vec<SocketAddr> {
    let port = bound.port();
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            vec![bound, SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)]
        }
        IpAddr::V6(ip) if ip.is_unspecified() => vec![
            bound,
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port),
            // A dual-stack socket receives IPv4 too.
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port),
        ],
        _ => vec![bound],
    }
}

/// A datagram that [`Keyring::open`] authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's clock when it sealed the datagram, in ms since the UNIX epoch.
    pub sent_at_unix_ms: u64,
    /// The datagram's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The destination it was sealed for: the address of `at` it opened with.
    pub destination: SocketAddr,
    /// The plain datagram, for [`crate::Gossip::handle_datagram`].
    pub datagram: Vec<u8>,
}

/// Why a datagram could not be sealed. Nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The input is not a plain Hearsay datagram (too short, bad magic, or already sealed).
    #[error("not a plain Hearsay datagram")]
    NotPlain,
    /// Longer than the cipher takes (never, for a datagram).
    #[error("too long to seal")]
    TooLong,
}

/// Why a received datagram was dropped. In every case nothing changed: neither the gossip
/// core nor the replay guard saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The tag does not match: forged, altered, sealed for another destination (a datagram
    /// replayed to a node it was not sent to), or sealed with a different key that happens to
    /// carry a known id.
    #[error("authentication failed")]
    Authentication,
    /// Sealed with a key this node does not hold: another cluster, or a retired key.
    #[error("sealed with unknown key {0}")]
    UnknownKey(KeyId),
    /// Authentic, but stamped outside the replay window, or already received.
    #[error("replayed or out of the time window: {0}")]
    Replay(Replay),
    /// A plain (unsealed) datagram reaching a node that has a cluster key.
    #[error("unsealed datagram, and this node requires a cluster key")]
    Unsealed,
    /// A sealed datagram reaching a node with no cluster key.
    #[error("sealed datagram, and this node has no cluster key")]
    Sealed,
    /// Not a sealed Hearsay envelope at all: too short, bad magic, another version, unknown
    /// flags (among them a seal of the first format, with no destination bound).
    #[error("malformed envelope")]
    Malformed,
}

impl OpenError {
    /// Every [`OpenError::reason`], in a fixed order.
    pub const REASONS: [&'static str; 6] = [
        "authentication",
        "unknown_key",
        "replay",
        "unsealed",
        "sealed",
        "malformed",
    ];

    /// The counter label: one of [`OpenError::REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            OpenError::Authentication => "authentication",
            OpenError::UnknownKey(_) => "unknown_key",
            OpenError::Replay(_) => "replay",
            OpenError::Unsealed => "unsealed",
            OpenError::Sealed => "sealed",
            OpenError::Malformed => "malformed",
        }
    }

    /// The position of [`OpenError::reason`] in [`OpenError::REASONS`].
    pub fn index(&self) -> usize {
        match self {
            OpenError::Authentication => 0,
            OpenError::UnknownKey(_) => 1,
            OpenError::Replay(_) => 2,
            OpenError::Unsealed => 3,
            OpenError::Sealed => 4,
            OpenError::Malformed => 5,
        }
    }
}

/// Why the [`ReplayGuard`] refused an authentic datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Replay {
    /// Stamped more than the window before the receiver's clock.
    #[error("stamped {0} ms in the past")]
    TooOld(u64),
    /// Stamped more than the window after the receiver's clock.
    #[error("stamped {0} ms in the future")]
    TooNew(u64),
    /// Already received.
    #[error("already received")]
    Seen,
    /// Stamped no later than a datagram the guard has forgotten, so it cannot tell whether
    /// this one was seen.
    #[error("older than what the guard still remembers")]
    BelowFloor,
}

/// Refuses replays of authentic datagrams.
///
/// A datagram is accepted when its timestamp lies within `window` of the receiver's clock and
/// its `(timestamp, nonce)` has not been accepted before. So that the memory of what was
/// accepted stays bounded whatever arrives, the guard keeps a *floor*: the newest timestamp it
/// has forgotten. Everything stamped at or below the floor is refused. An entry is forgotten
/// when it falls out of the window (it would be refused by the window check anyway), or, when
/// `capacity` entries are remembered, the oldest one makes room for the next — raising the floor
/// to its timestamp. The invariant: every accepted datagram stamped above the floor is
/// remembered, so no accepted datagram is ever accepted twice, even if the clock steps back.
///
/// Under normal traffic the floor trails the window and never matters. Only a flood of
/// authentic datagrams (from a key holder) fills the memory; then the floor rises to the
/// oldest remembered stamp, and honest datagrams older than that (a sender whose clock is
/// behind, or delayed in flight) are refused too — a loss, which gossip repairs, never a replay
/// accepted.
///
/// Clocks: the window assumes the nodes' clocks agree within `window` (NTP keeps them within
/// milliseconds). A node whose clock is off by more is refused by its peers, and refuses them;
/// its counters show `replay` rising.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    window_ms: u64,
    capacity: usize,
    floor: Option<u64>,
    seen: BTreeSet<(u64, [u8; NONCE_LEN])>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_REPLAY_WINDOW_MS, DEFAULT_REPLAY_MEMORY)
    }
}

impl ReplayGuard {
    /// A guard with this window (ms on either side of the receiver's clock) and memory (at
    /// least one entry).
    pub fn new(window_ms: u64, capacity: usize) -> Self {
        ReplayGuard {
            window_ms,
            capacity: capacity.max(1),
            floor: None,
            seen: BTreeSet::new(),
        }
    }

    /// Datagrams remembered now (at most the capacity).
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    /// The newest forgotten timestamp: anything stamped at or before it is refused.
    pub fn floor(&self) -> Option<u64> {
        self.floor
    }

    /// Checks a datagram stamped `sent_at` with `nonce` at `now` (both ms since the UNIX epoch)
    /// and, if it is accepted, remembers it. A refusal changes nothing.
    pub fn check(&mut self, sent_at: u64, nonce: [u8; NONCE_LEN], now: u64) -> Result<(), Replay> {
        if sent_at.saturating_add(self.window_ms) < now {
            return Err(Replay::TooOld(now - sent_at));
        }
        if sent_at > now.saturating_add(self.window_ms) {
            return Err(Replay::TooNew(sent_at - now));
        }
        if self.floor.is_some_and(|floor| sent_at <= floor) {
            return Err(Replay::BelowFloor);
        }
        if self.seen.contains(&(sent_at, nonce)) {
            return Err(Replay::Seen);
        }
        // Forget what has left the window (it would be refused by the window check anyway)...
        let oldest_kept = now.saturating_sub(self.window_ms);
        while let Some(&(stamp, _)) = self.seen.first() {
            if stamp >= oldest_kept {
                break;
            }
            self.forget_first();
        }
        // ...and, beyond the capacity, the oldest, this one included if it is the oldest: it
        // is accepted now, and the floor refuses it from then on.
        self.seen.insert((sent_at, nonce));
        while self.seen.len() > self.capacity {
            self.forget_first();
        }
        Ok(())
    }

    fn forget_first(&mut self) {
        if let Some((stamp, _)) = self.seen.pop_first() {
            self.floor = Some(self.floor.map_or(stamp, |f| f.max(stamp)));
        }
    }
}

/// How a node treats gossip datagrams: in the open, or sealed with a keyring and guarded
/// against replays.
#[derive(Debug, Clone)]
pub enum Sealing {
    /// No cluster key: datagrams go out plain, and sealed ones are refused (`sealed`).
    Open,
    /// A cluster keyring.
    Keyed {
        /// The keys.
        keyring: Keyring,
        /// The replay guard of received datagrams.
        guard: ReplayGuard,
        /// The node's own addresses: received datagrams open only if sealed for one of them.
        destinations: Vec<SocketAddr>,
    },
}

impl Sealing {
    /// Sealed with `keyring`, with the default replay guard, for a node whose gossip socket is
    /// bound at `bound` (it opens with [`own_destinations`] of it).
    pub fn keyed(keyring: Keyring, bound: SocketAddr) -> Self {
        Sealing::Keyed {
            keyring,
            guard: ReplayGuard::default(),
            destinations: own_destinations(bound),
        }
    }

    /// Bytes added to each datagram: [`OVERHEAD`] when keyed, else none.
    pub fn overhead(&self) -> usize {
        match self {
            Sealing::Open => 0,
            Sealing::Keyed { .. } => OVERHEAD,
        }
    }

    /// Whether datagrams are sealed.
    pub fn is_keyed(&self) -> bool {
        matches!(self, Sealing::Keyed { .. })
    }

    /// A datagram to send to `to`, sealed for it if keyed.
    pub fn outgoing<R: CryptoRng + ?Sized>(
        &self,
        datagram: Vec<u8>,
        to: SocketAddr,
        now_unix_ms: u64,
        rng: &mut R,
    ) -> Result<Vec<u8>, SealError> {
        match self {
            Sealing::Open => Ok(datagram),
            Sealing::Keyed { keyring, .. } => keyring.seal(&datagram, to, now_unix_ms, rng),
        }
    }

    /// A received datagram, opened and checked against replays if keyed, ready for the gossip
    /// core; or why it is dropped.
    pub fn incoming<'a>(
        &mut self,
        bytes: &'a [u8],
        now_unix_ms: u64,
    ) -> Result<Cow<'a, [u8]>, OpenError> {
        match self {
            Sealing::Open => {
                if is_sealed(bytes) {
                    Err(OpenError::Sealed)
                } else {
                    // Anything else is the decoder's to judge (and count as `decode`).
                    Ok(Cow::Borrowed(bytes))
                }
            }
            Sealing::Keyed {
                keyring,
                guard,
                destinations,
            } => {
                let opened = keyring.open(bytes, destinations)?;
                guard
                    .check(opened.sent_at_unix_ms, opened.nonce, now_unix_ms)
                    .map_err(OpenError::Replay)?;
                Ok(Cow::Owned(opened.datagram))
            }
        }
    }
}

/// Whether `bytes` look like a sealed Hearsay datagram (magic and the sealed flag; nothing is
/// checked beyond).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[..2] == MAGIC && bytes[3] & SEALED_FLAG != 0
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::wire::{self, Message};
    use crate::{LoadReport, LoadVector, NodeId};

    const NOW: u64 = 1_790_000_000_000;

    fn key(n: u8) -> Key {
        Key::from_bytes([n; KEY_LEN])
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    fn plain() -> Vec<u8> {
        let report = LoadReport {
            node: NodeId::new("sealed-node").unwrap(),
            incarnation: 1,
            seq: 2,
            load: LoadVector::idle(4),
            api: "127.0.0.1:8080".parse().unwrap(),
            gossip: "127.0.0.1:7946".parse().unwrap(),
        };
        wire::encode_push(&report, [], wire::DEFAULT_BUDGET)
            .unwrap()
            .0
    }

    /// The gossip address of the node the tests' datagrams are sent to.
    fn here() -> SocketAddr {
        "127.0.0.2:7946".parse().unwrap()
    }

    /// A keyed node listening at [`here`].
    fn keyed(primary: u8, accepted: &[u8]) -> Sealing {
        let keyring = Keyring::new(key(primary), accepted.iter().map(|&n| key(n))).unwrap();
        Sealing::keyed(keyring, here())
    }

    #[test]
    fn a_sealed_datagram_opens_to_the_same_plain_datagram() {
        let datagram = plain();
        let mut sealing = keyed(1, &[]);
        let sealed = sealing
            .outgoing(datagram.clone(), here(), NOW, &mut rng())
            .unwrap();
        assert_eq!(sealed.len(), datagram.len() + OVERHEAD);
        assert_eq!(&sealed[..3], &datagram[..3]);
        assert_eq!(sealed[3], SEALED_FLAG | DESTINATION_FLAG);
        assert_eq!(&sealed[4..8], &key(1).id().0);
        // The message does not appear in the clear.
        let name = b"sealed-node";
        assert!(!sealed.windows(name.len()).any(|w| w == name));
        let opened = sealing.incoming(&sealed, NOW + 5).unwrap();
        assert_eq!(opened.as_ref(), datagram.as_slice());
        assert!(matches!(wire::decode(&opened), Ok(Message::Push { .. })));
    }

    #[test]
    fn every_single_byte_flip_is_refused() {
        let keyring = Keyring::new(key(1), []).unwrap();
        let sealed = keyring.seal(&plain(), here(), NOW, &mut rng()).unwrap();
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[i] ^= 1 << bit;
                let result = keyring.open(&bad, &[here()]);
                assert!(result.is_err(), "flip of bit {bit} of byte {i} opened");
                if i >= PREFIX_LEN {
                    assert_eq!(result, Err(OpenError::Authentication), "byte {i}");
                }
            }
        }
    }

    #[test]
    fn a_wrong_key_is_unknown_and_a_forged_id_fails_authentication() {
        let a = Keyring::new(key(1), []).unwrap();
        let b = Keyring::new(key(2), []).unwrap();
        let sealed = a.seal(&plain(), here(), NOW, &mut rng()).unwrap();
        assert_eq!(
            b.open(&sealed, &[here()]),
            Err(OpenError::UnknownKey(key(1).id()))
        );
        // A stranger who learnt the id still cannot forge: sealed with key 2 under key 1's id.
        let mut forged = b.seal(&plain(), here(), NOW, &mut rng()).unwrap();
        forged[4..8].copy_from_slice(&key(1).id().0);
        assert_eq!(a.open(&forged, &[here()]), Err(OpenError::Authentication));
    }

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
    fn a_replay_is_refused() {
        let mut sealing = keyed(1, &[]);
        let sealed = sealing.outgoing(plain(), here(), NOW, &mut rng()).unwrap();
        assert!(sealing.incoming(&sealed, NOW).is_ok());
        assert_eq!(
            sealing.incoming(&sealed, NOW + 10),
            Err(OpenError::Replay(Replay::Seen))
        );
        // The same message sealed again (a new nonce) is not a replay.
        let again = sealing.outgoing(plain(), here(), NOW, &mut rng()).unwrap();
        let again = if again == sealed {
            sealing
                .outgoing(plain(), here(), NOW, &mut StdRng::seed_from_u64(8))
                .unwrap()
        } else {
            again
        };
        assert!(sealing.incoming(&again, NOW).is_ok());
    }

    #[test]
    fn a_datagram_sealed_for_one_node_opens_there_and_nowhere_else() {
        let node =
            |at: &str| Sealing::keyed(Keyring::new(key(1), []).unwrap(), at.parse().unwrap());
        let (mut a, mut b, mut c) = (
            node("127.0.0.2:7946"),
            node("127.0.0.3:7946"),
            node("127.0.0.2:7947"),
        );
        let sender = keyed(1, &[]);
        let for_a = sender
            .outgoing(plain(), "127.0.0.2:7946".parse().unwrap(), NOW, &mut rng())
            .unwrap();
        // Replayed to another node (another address, or the same address with another port):
        // it does not authenticate, and leaves no trace in their replay guards.
        assert_eq!(b.incoming(&for_a, NOW), Err(OpenError::Authentication));
        assert_eq!(c.incoming(&for_a, NOW), Err(OpenError::Authentication));
        for refused in [&b, &c] {
            let Sealing::Keyed { guard, .. } = refused else {
                unreachable!()
            };
            assert_eq!(guard.remembered(), 0);
        }
        // At its destination it opens, once.
        assert_eq!(
            a.incoming(&for_a, NOW).unwrap().as_ref(),
            plain().as_slice()
        );
        assert_eq!(
            a.incoming(&for_a, NOW),
            Err(OpenError::Replay(Replay::Seen))
        );
        // The same size as before the destination was bound: it is not on the wire.
        assert_eq!(for_a.len(), plain().len() + OVERHEAD);
        // An IPv4-mapped IPv6 destination is the IPv4 address it maps.
        let mapped = sender
            .outgoing(
                plain(),
                "[::ffff:127.0.0.3]:7946".parse().unwrap(),
                NOW,
                &mut rng(),
            )
            .unwrap();
        assert!(b.incoming(&mapped, NOW).is_ok());
        // A node with several addresses tries each, and says which one opened it.
        let keyring = Keyring::new(key(1), []).unwrap();
        let b_and_c: Vec<SocketAddr> = vec![
            "127.0.0.3:7946".parse().unwrap(),
            "127.0.0.2:7947".parse().unwrap(),
        ];
        assert_eq!(
            keyring.open(&for_a, &b_and_c),
            Err(OpenError::Authentication)
        );
        let b_and_a = [b_and_c[0], "127.0.0.2:7946".parse().unwrap()];
        assert_eq!(
            keyring.open(&for_a, &b_and_a).unwrap().destination,
            b_and_a[1]
        );
        let sealed = keyring.seal(&plain(), here(), NOW, &mut rng()).unwrap();
        assert_eq!(keyring.open(&sealed, &[]), Err(OpenError::Authentication));
    }

    #[test]
    fn a_seal_of_the_first_format_is_malformed() {
        // The first format had the sealed flag alone, and no destination in the associated data.
        let mut sealed = keyed(1, &[])
            .outgoing(plain(), here(), NOW, &mut rng())
            .unwrap();
        sealed[3] = SEALED_FLAG;
        assert_eq!(
            keyed(1, &[]).incoming(&sealed, NOW),
            Err(OpenError::Malformed)
        );
        assert!(is_sealed(&sealed));
    }

    #[test]
    fn a_node_on_an_unspecified_address_opens_only_what_never_leaves_its_machine() {
        let specific: SocketAddr = "10.0.0.5:7946".parse().unwrap();
        assert_eq!(own_destinations(specific), vec![specific]);
        let any: SocketAddr = "0.0.0.0:7946".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:7946".parse().unwrap();
        assert_eq!(own_destinations(any), vec![any, loopback]);
        let any6: SocketAddr = "[::]:7946".parse().unwrap();
        assert_eq!(
            own_destinations(any6),
            vec![any6, "[::1]:7946".parse().unwrap(), loopback]
        );
        let mut node = Sealing::keyed(Keyring::new(key(1), []).unwrap(), any);
        let sender = keyed(1, &[]);
        let mut nonces = rng();
        let mut to = |at: SocketAddr| sender.outgoing(plain(), at, NOW, &mut nonces).unwrap();
        // Its advertised address and its loopback address open; its network address does not
        // (it cannot tell a datagram sent there from one sent to another node's).
        let (advertised, local, network) = (to(any), to(loopback), to(specific));
        assert!(node.incoming(&advertised, NOW).is_ok());
        assert!(node.incoming(&local, NOW).is_ok());
        assert_eq!(node.incoming(&network, NOW), Err(OpenError::Authentication));
        let other_port = to("127.0.0.1:7947".parse().unwrap());
        assert_eq!(
            node.incoming(&other_port, NOW),
            Err(OpenError::Authentication)
        );
    }

    #[test]
    fn old_and_future_stamps_are_refused() {
        let mut sealing = keyed(1, &[]);
        let window = DEFAULT_REPLAY_WINDOW_MS;
        let old = sealing
            .outgoing(plain(), here(), NOW - window - 1, &mut rng())
            .unwrap();
        assert_eq!(
            sealing.incoming(&old, NOW),
            Err(OpenError::Replay(Replay::TooOld(window + 1)))
        );
        let future = sealing
            .outgoing(plain(), here(), NOW + window + 1, &mut rng())
            .unwrap();
        assert_eq!(
            sealing.incoming(&future, NOW),
            Err(OpenError::Replay(Replay::TooNew(window + 1)))
        );
        // The edges of the window are inside it.
        let edge = sealing
            .outgoing(plain(), here(), NOW - window, &mut rng())
            .unwrap();
        assert!(sealing.incoming(&edge, NOW).is_ok());
        let edge = sealing
            .outgoing(plain(), here(), NOW + window, &mut rng())
            .unwrap();
        assert!(sealing.incoming(&edge, NOW).is_ok());
    }

    #[test]
    fn plain_and_sealed_datagrams_reach_the_wrong_kind_of_node() {
        let mut open = Sealing::Open;
        let mut keyed = keyed(1, &[]);
        let sealed = keyed.outgoing(plain(), here(), NOW, &mut rng()).unwrap();
        assert_eq!(open.incoming(&sealed, NOW), Err(OpenError::Sealed));
        assert_eq!(keyed.incoming(&plain(), NOW), Err(OpenError::Unsealed));
        assert_eq!(keyed.incoming(b"HS", NOW), Err(OpenError::Malformed));
        assert_eq!(
            keyed.incoming(b"XX\x01\x01", NOW),
            Err(OpenError::Malformed)
        );
        assert_eq!(
            keyed.incoming(&sealed[..40], NOW),
            Err(OpenError::Malformed)
        );
        // Open nodes pass plain bytes, good or bad, to the decoder.
        assert!(open.incoming(&plain(), NOW).is_ok());
        assert!(open.incoming(b"garbage", NOW).is_ok());
    }

    #[test]
    fn the_guard_memory_is_bounded_and_the_floor_refuses_what_it_forgot() {
        let mut guard = ReplayGuard::new(30_000, 100);
        for i in 0..1_000u64 {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&i.to_le_bytes());
            // All within the window: only the capacity limits the memory.
            guard.check(NOW + i, nonce, NOW + 1_000).unwrap();
            assert!(guard.remembered() <= 100);
        }
        assert_eq!(guard.remembered(), 100);
        assert_eq!(guard.floor(), Some(NOW + 899));
        // A forgotten datagram comes back: refused by the floor, not accepted again.
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&5u64.to_le_bytes());
        assert_eq!(
            guard.check(NOW + 5, nonce, NOW + 1_000),
            Err(Replay::BelowFloor)
        );
        // A remembered one: seen.
        nonce[..8].copy_from_slice(&950u64.to_le_bytes());
        assert_eq!(
            guard.check(NOW + 950, nonce, NOW + 1_000),
            Err(Replay::Seen)
        );
        // Time passing empties it: everything left the window, and the floor follows.
        guard
            .check(NOW + 100_000, [9; NONCE_LEN], NOW + 100_000)
            .unwrap();
        assert_eq!(guard.remembered(), 1);
        assert_eq!(guard.floor(), Some(NOW + 999));
    }

    #[test]
    fn a_full_guard_takes_a_late_datagram_once() {
        let mut guard = ReplayGuard::new(30_000, 2);
        guard.check(NOW, [1; NONCE_LEN], NOW).unwrap();
        guard.check(NOW + 1, [2; NONCE_LEN], NOW).unwrap();
        // Older than both remembered, but above the floor and inside the window: accepted,
        // and at once forgotten under the floor, so never accepted again.
        guard.check(NOW - 5, [3; NONCE_LEN], NOW).unwrap();
        assert_eq!(guard.remembered(), 2);
        assert_eq!(guard.floor(), Some(NOW - 5));
        assert_eq!(
            guard.check(NOW - 5, [3; NONCE_LEN], NOW),
            Err(Replay::BelowFloor)
        );
        assert_eq!(guard.check(NOW, [1; NONCE_LEN], NOW), Err(Replay::Seen));
    }

    #[test]
    fn the_guard_does_not_accept_twice_when_the_clock_steps_back() {
        let mut guard = ReplayGuard::new(1_000, 100);
        guard.check(NOW, [1; NONCE_LEN], NOW).unwrap();
        // Much later: the first entry leaves the window and is forgotten.
        guard
            .check(NOW + 5_000, [2; NONCE_LEN], NOW + 5_000)
            .unwrap();
        // The clock steps back: the first datagram is within the window again, but refused.
        assert_eq!(
            guard.check(NOW, [1; NONCE_LEN], NOW),
            Err(Replay::BelowFloor)
        );
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

    #[test]
    fn key_ids_are_the_start_of_sha256() {
        // SHA-256 of 32 zero bytes starts 66687aad.
        assert_eq!(key(0).id().to_string(), "66687aad");
        let generated = Key::generate(&mut rng());
        assert_eq!(Key::from_hex(&generated.to_hex()).unwrap(), generated);
    }
}
