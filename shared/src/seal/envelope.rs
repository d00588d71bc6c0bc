//! The sealed envelope: sealing and opening one datagram with a [`Keyring`], the associated
//! data that binds it to its destination, and why a received datagram is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Tag, XNonce};
use rand::CryptoRng;

use super::key::{KeyId, KEY_ID_LEN};
use super::keyring::Keyring;
use super::replay::Replay;
use crate::wire::{FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_DATAGRAM, OLDEST_FORMAT_VERSION};

/// The flag bit (in the envelope's fourth byte) of a sealed datagram.
pub const SEALED_FLAG: u8 = 0b0000_0001;
/// The flag bit of the seal format that binds a datagram to its destination. Every sealed
/// datagram carries it beside [`SEALED_FLAG`]; one with [`SEALED_FLAG`] alone is of the first
/// seal format, whose associated data held no destination, and is refused as malformed.
pub const DESTINATION_FLAG: u8 = 0b0000_0010;
/// The flags byte of a sealed datagram.
const SEALED_FLAGS: u8 = SEALED_FLAG | DESTINATION_FLAG;
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

impl Keyring {
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
    ///
    /// [`Sealing::incoming`]: super::Sealing::incoming
    pub fn open(&self, bytes: &[u8], at: &[SocketAddr]) -> Result<Opened, OpenError> {
        if bytes.len() < HEADER_LEN || bytes[..2] != MAGIC || bytes.len() > MAX_DATAGRAM {
            return Err(OpenError::Malformed);
        }
        if bytes[3] & SEALED_FLAG == 0 {
            return Err(OpenError::Unsealed);
        }
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&bytes[2])
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

/// Whether `bytes` look like a sealed Hearsay datagram (magic and the sealed flag; nothing is
/// checked beyond).
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[..2] == MAGIC && bytes[3] & SEALED_FLAG != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::fixtures::*;
    use crate::seal::Sealing;
    use crate::wire::{self, Message};

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
}
