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
//!
//! # Layout
//! - `key.rs`: a cluster [`Key`] and its [`KeyId`], from hexadecimal digits.
//! - `keyring.rs`: the [`Keyring`], its primary and accepted keys, and key files.
//! - `envelope.rs`: sealing and opening a datagram ([`Keyring::seal`], [`Keyring::open`]), the
//!   associated data with its destination, [`own_destinations`], and why a datagram is refused
//!   ([`OpenError`]).
//! - `replay.rs`: the [`ReplayGuard`].
//! - `mode.rs`: [`Sealing`], open or keyed: what the worker calls for each datagram.
//!
//! [`CryptoRng`]: rand::CryptoRng

mod envelope;
#[cfg(test)]
mod fixtures;
mod key;
mod keyring;
mod mode;
mod replay;

pub use envelope::{
    is_sealed, own_destinations, OpenError, Opened, SealError, DESTINATION_FLAG, NONCE_LEN,
    OVERHEAD, SEALED_FLAG, TAG_LEN, TIMESTAMP_LEN,
};
pub use key::{Key, KeyId, KEY_ID_LEN, KEY_LEN};
pub use keyring::{Keyring, KeyringError};
pub use mode::Sealing;
pub use replay::{Replay, ReplayGuard, DEFAULT_REPLAY_MEMORY, DEFAULT_REPLAY_WINDOW_MS};
