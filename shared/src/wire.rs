//! The wire format: postcard inside a small versioned envelope, every datagram within a byte
//! budget.
//!
//! ```text
//! +------+------+---------+-------+---------------------------+
//! | 'H'  | 'S'  | version | flags | postcard-encoded Message  |
//! +------+------+---------+-------+---------------------------+
//! ```
//!
//! Encoders take the budget and fill a datagram in the caller's order of priority, leaving out
//! what does not fit; nothing is ever sent larger than the budget, so no datagram relies on IP
//! fragmentation. The decoder accepts any byte string: it returns a [`Message`] or a
//! [`DecodeError`], never panics, and allocates no more than the datagram's own size calls for
//! (list lengths are checked against what the bytes can hold).
//!
//! # Versions
//! A change to what postcard writes (a field added to [`crate::LoadVector`], say) is a new
//! [`FORMAT_VERSION`]. The encoder writes only the newest; the decoder also reads every version
//! from [`OLDEST_FORMAT_VERSION`] on, filling what an old version lacks with its documented
//! default, so that a cluster can be upgraded one node at a time: a new node understands an old
//! one (an old node drops the new node's datagrams as of an unsupported version until it is
//! upgraded too). Version 2 added `cpu_capacity_millicores`; a version-1 report decodes with it 0
//! (unknown). Version 3 added `ended`, the node's counts of jobs ended (see
//! [`crate::JobTally`]); an older report decodes with none. Version 4 added `sojourn` (see
//! [`crate::SojournSummary`]); an older report decodes with no recent jobs. Version 5 added
//! `cpu_outside_permille`, the CPU that processes other than the worker used; an older report
//! decodes with 0.
//!
//! With a cluster key, each datagram is sealed after it is encoded and opened before it is
//! decoded ([`crate::seal`]: flag bit 0 marks a sealed envelope); the decoder only ever sees
//! plain datagrams, with no flags.

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{LoadReport, NodeId, Version};

/// The first two bytes of every datagram.
pub const MAGIC: [u8; 2] = *b"HS";
/// The format version this build speaks.
pub const FORMAT_VERSION: u8 = 5;
/// The oldest format version the decoder still reads (see the module's documentation).
pub const OLDEST_FORMAT_VERSION: u8 = 1;
/// Bytes of envelope before the message.
pub const HEADER_LEN: usize = 4;
/// The default datagram budget: below common MTUs once IP and UDP headers are added.
pub const DEFAULT_BUDGET: usize = 1400;
/// The smallest budget allowed: room for the envelope and the largest possible own report.
pub const MIN_BUDGET: usize = 256;
/// The largest datagram the decoder considers at all.
pub const MAX_DATAGRAM: usize = 65_507;

/// A gossip message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Rumours: the sender's own report first, then the freshest reports it relays.
    Push {
        /// The reports, sender's own first.
        reports: Items<LoadReport>,
    },
    /// Anti-entropy: the versions the sender holds for some nodes. The receiver answers with a
    /// push of every report it holds newer (or the sender lacks), and, unless this is already a
    /// reply, with a digest of its own so that the sender can do the same.
    Digest {
        /// The sender's own report, so that a digest also introduces its sender.
        sender: LoadReport,
        /// Whether this digest answers another.
        reply: bool,
        /// The sender's versions.
        entries: Items<DigestEntry>,
    },
}

/// [`Message`] with its contents borrowed, for encoding without cloning every report into a
/// message first. Same variants in the same order, fields of the same types (a reference
/// serialises as what it refers to), so postcard writes exactly the bytes that the `Message` it
/// mirrors would be written as; the round-trip tests check it.
#[derive(Serialize)]
enum MessageRef<'a> {
    Push {
        reports: Vec<&'a LoadReport>,
    },
    Digest {
        sender: &'a LoadReport,
        reply: bool,
        entries: Vec<DigestEntryRef<'a>>,
    },
}

/// [`DigestEntry`] with its node borrowed (see [`MessageRef`]).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct DigestEntryRef<'a> {
    pub(crate) node: &'a NodeId,
    pub(crate) version: Version,
}

/// One line of a digest: a node and the version of its report that the sender holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    /// The node.
    pub node: NodeId,
    /// The version held.
    pub version: Version,
}

/// A list inside a datagram. Decoding refuses more than [`Items::MAX`] items and never reserves
/// room for more than a few in advance, so a forged length costs nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Items<T>(pub Vec<T>);

impl<T> Items<T> {
    /// The most items one list may carry: more than any budget up to [`MAX_DATAGRAM`] can hold
    /// of reports, and enough for digests in jumbo frames.
    pub const MAX: usize = 4096;
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemsVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ItemsVisitor<T> {
            type Value = Items<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a list of at most {} items", Items::<T>::MAX)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let hint = seq.size_hint().unwrap_or(0);
                if hint > Items::<T>::MAX {
                    return Err(serde::de::Error::invalid_length(hint, &self));
                }
                let mut items = Vec::with_capacity(hint.min(16));
                while let Some(item) = seq.next_element()? {
                    if items.len() == Items::<T>::MAX {
                        return Err(serde::de::Error::invalid_length(items.len() + 1, &self));
                    }
                    items.push(item);
                }
                Ok(Items(items))
            }
        }
        deserializer.deserialize_seq(ItemsVisitor(std::marker::PhantomData))
    }
}

/// Why a datagram was not understood. Nothing was changed by a failed decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the envelope.
    #[error("datagram of {0} bytes is shorter than the envelope")]
    TooShort(usize),
    /// Longer than any datagram Hearsay sends.
    #[error("datagram of {0} bytes is larger than any Hearsay sends")]
    TooLong(usize),
    /// Not a Hearsay datagram.
    #[error("bad magic bytes")]
    BadMagic,
    /// A format version this build does not speak.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Flags this build does not know.
    #[error("unknown flags {0:#04x}")]
    UnknownFlags(u8),
    /// The message inside does not parse.
    #[error("malformed message: {0}")]
    Malformed(#[from] postcard::Error),
    /// Bytes left over after the message.
    #[error("{0} bytes after the end of the message")]
    TrailingBytes(usize),
}

/// Why a message could not be encoded. Nothing was sent.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Even the first, mandatory part does not fit the budget.
    #[error("the budget of {budget} bytes cannot hold the {needed} bytes that must be sent")]
    OverBudget {
        /// The budget.
        budget: usize,
        /// What the mandatory part needs.
        needed: usize,
    },
    /// Serialisation failed.
    #[error("cannot serialise: {0}")]
    Serialize(#[from] postcard::Error),
}

/// Decodes one datagram.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    if bytes.len() < HEADER_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    if bytes.len() > MAX_DATAGRAM {
        return Err(DecodeError::TooLong(bytes.len()));
    }
    if bytes[..2] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&bytes[2]) {
        return Err(DecodeError::UnsupportedVersion(bytes[2]));
    }
    if bytes[3] != 0 {
        return Err(DecodeError::UnknownFlags(bytes[3]));
    }
    let body = &bytes[HEADER_LEN..];
    let (message, rest) = match bytes[2] {
        1 => {
            let (old, rest) = postcard::take_from_bytes::<old::Message<old::LoadVectorV1>>(body)?;
            (old.into(), rest)
        }
        2 => {
            let (old, rest) = postcard::take_from_bytes::<old::Message<old::LoadVectorV2>>(body)?;
            (old.into(), rest)
        }
        3 => {
            let (old, rest) = postcard::take_from_bytes::<old::Message<old::LoadVectorV3>>(body)?;
            (old.into(), rest)
        }
        4 => {
            let (old, rest) = postcard::take_from_bytes::<old::Message<old::LoadVectorV4>>(body)?;
            (old.into(), rest)
        }
        _ => postcard::take_from_bytes::<Message>(body)?,
    };
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(message)
}

mod old;

fn envelope<M: Serialize>(message: &M) -> Result<Vec<u8>, postcard::Error> {
    let mut out = Vec::with_capacity(DEFAULT_BUDGET);
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(0);
    postcard::to_extend(message, out)
}

fn encoded_len<T: Serialize>(value: &T) -> Result<usize, postcard::Error> {
    // Counts the bytes without writing them: the encoders ask this of every candidate item.
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
}

/// Bytes of postcard's varint for a list length.
fn varint_len(n: usize) -> usize {
    let mut n = n as u64;
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

/// Takes items from `candidates` in order while the datagram still fits `room` bytes for them
/// (the list's length prefix included). Stops at the first item that does not fit, so that
/// priority is kept.
fn take_fitting<T: Serialize>(
    candidates: impl IntoIterator<Item = T>,
    room: usize,
) -> Result<Vec<T>, postcard::Error> {
    let mut taken = Vec::new();
    let mut used = 0;
    for item in candidates {
        let len = encoded_len(&item)?;
        if used + len + varint_len(taken.len() + 1) > room {
            break;
        }
        used += len;
        taken.push(item);
    }
    Ok(taken)
}

/// Encodes a push: `own` always, then as many of `others` as fit, in their order. Returns the
/// datagram and how many of `others` it carries.
pub fn encode_push<'a>(
    own: &LoadReport,
    others: impl IntoIterator<Item = &'a LoadReport>,
    budget: usize,
) -> Result<(Vec<u8>, usize), EncodeError> {
    // Envelope, the variant tag (one byte), and the own report with its share of the length.
    let fixed = HEADER_LEN + 1;
    let own_len = encoded_len(own)?;
    let needed = fixed + own_len + varint_len(1);
    if needed > budget {
        return Err(EncodeError::OverBudget { budget, needed });
    }
    let mut reports = vec![own];
    reports.extend(take_fitting(others, budget - fixed - own_len)?);
    let carried = reports.len() - 1;
    let bytes = envelope(&MessageRef::Push { reports })?;
    debug_assert!(bytes.len() <= budget, "{} > {budget}", bytes.len());
    Ok((bytes, carried))
}

/// Encodes a digest: the sender's own report always, then as many of `entries` as fit, in
/// their order. Returns the datagram and how many entries it carries.
pub fn encode_digest(
    sender: &LoadReport,
    reply: bool,
    entries: impl IntoIterator<Item = DigestEntry>,
    budget: usize,
) -> Result<(Vec<u8>, usize), EncodeError> {
    let entries: Vec<DigestEntry> = entries.into_iter().collect();
    let borrowed = entries.iter().map(|e| DigestEntryRef {
        node: &e.node,
        version: e.version,
    });
    encode_digest_ref(sender, reply, borrowed, budget)
}

/// [`encode_digest`] of borrowed entries.
pub(crate) fn encode_digest_ref<'a>(
    sender: &LoadReport,
    reply: bool,
    entries: impl IntoIterator<Item = DigestEntryRef<'a>>,
    budget: usize,
) -> Result<(Vec<u8>, usize), EncodeError> {
    // Envelope, variant tag, the sender's report, the reply flag.
    let fixed = HEADER_LEN + 1 + encoded_len(sender)? + 1;
    let needed = fixed + varint_len(0);
    if needed > budget {
        return Err(EncodeError::OverBudget { budget, needed });
    }
    let entries = take_fitting(entries, budget - fixed)?;
    let carried = entries.len();
    let bytes = envelope(&MessageRef::Digest {
        sender,
        reply,
        entries,
    })?;
    debug_assert!(bytes.len() <= budget, "{} > {budget}", bytes.len());
    Ok((bytes, carried))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LoadVector, NodeState};

    fn report(i: usize) -> LoadReport {
        LoadReport {
            node: NodeId::new(format!("node-{i}")).unwrap(),
            incarnation: 1_790_000_000_000 + i as u64,
            seq: 12_345,
            load: LoadVector {
                cpu_permille: 734,
                cpu_capacity_millicores: 1500,
                queued: 3,
                running: 1,
                slots: 1,
                state: NodeState::Alive,
                commands: 0,
                ended: crate::JobTally {
                    completed: 41_000 + i as u64,
                    failed: 7,
                    lost: 1,
                },
                sojourn: crate::SojournSummary {
                    jobs: 12,
                    p50_ms: 140,
                    p99_ms: 2_310,
                },
                cpu_outside_permille: 266,
            },
            api: format!("127.0.0.{}:8080", i % 250 + 1).parse().unwrap(),
            gossip: format!("127.0.0.{}:7946", i % 250 + 1).parse().unwrap(),
        }
    }

    #[test]
    fn push_round_trips_and_stops_at_the_budget() {
        let own = report(0);
        let others: Vec<_> = (1..200).map(report).collect();
        let (bytes, carried) = encode_push(&own, &others, DEFAULT_BUDGET).unwrap();
        assert!(bytes.len() <= DEFAULT_BUDGET);
        assert!(carried > 10 && carried < 199, "carried {carried}");
        let Message::Push { reports } = decode(&bytes).unwrap() else {
            panic!("not a push")
        };
        assert_eq!(reports.0[0], own);
        assert_eq!(&reports.0[1..], &others[..carried]);
    }

    #[test]
    fn borrowed_messages_encode_as_the_messages_they_mirror() {
        let others: Vec<_> = (1..5).map(report).collect();
        let (bytes, _) = encode_push(&report(0), &others, DEFAULT_BUDGET).unwrap();
        let mut owned = vec![report(0)];
        owned.extend(others);
        assert_eq!(
            bytes,
            envelope(&Message::Push {
                reports: Items(owned)
            })
            .unwrap()
        );
        let entries: Vec<_> = (1..5)
            .map(|i| DigestEntry {
                node: report(i).node,
                version: report(i).version(),
            })
            .collect();
        let (bytes, _) = encode_digest(&report(0), true, entries.clone(), DEFAULT_BUDGET).unwrap();
        let message = Message::Digest {
            sender: report(0),
            reply: true,
            entries: Items(entries),
        };
        assert_eq!(bytes, envelope(&message).unwrap());
    }

    #[test]
    fn a_budget_too_small_for_the_own_report_is_an_error() {
        assert!(matches!(
            encode_push(&report(0), [], 20),
            Err(EncodeError::OverBudget { .. })
        ));
    }

    /// What a build of an older format wrote: a report with the load vector `L` of its time.
    #[derive(Serialize)]
    struct OldReport<L> {
        node: NodeId,
        incarnation: u64,
        seq: u64,
        load: L,
        api: std::net::SocketAddr,
        gossip: std::net::SocketAddr,
    }

    #[derive(Serialize)]
    enum OldMessage<L> {
        Push { reports: Vec<OldReport<L>> },
    }

    /// `report(3)` as a push of format `version`, its load vector given as that version had it.
    fn old_push<L: Serialize>(version: u8, load: L) -> Vec<u8> {
        let new = report(3);
        let old = OldReport {
            node: new.node,
            incarnation: new.incarnation,
            seq: new.seq,
            load,
            api: new.api,
            gossip: new.gossip,
        };
        let mut bytes = vec![b'H', b'S', version, 0];
        bytes.extend(postcard::to_allocvec(&OldMessage::Push { reports: vec![old] }).unwrap());
        bytes
    }

    fn only_report(bytes: &[u8]) -> LoadReport {
        let Message::Push { reports } = decode(bytes).unwrap() else {
            panic!("not a push")
        };
        assert_eq!(reports.0.len(), 1);
        reports.0.into_iter().next().unwrap()
    }

    #[test]
    fn a_version_1_datagram_decodes_with_capacity_unknown() {
        // What a version-1 build wrote: the load vector without `cpu_capacity_millicores`.
        #[derive(Serialize)]
        struct OldLoad {
            cpu_permille: u16,
            queued: u32,
            running: u32,
            slots: u32,
            state: NodeState,
            #[serde(with = "crate::offers::serde_bits")]
            commands: u64,
        }
        let new = LoadVector {
            commands: 0xdead_beef,
            ..report(3).load
        };
        let old = OldLoad {
            cpu_permille: new.cpu_permille,
            queued: new.queued,
            running: new.running,
            slots: new.slots,
            state: new.state,
            commands: new.commands,
        };
        decodes_as_of(1, old, new);
    }

    /// `new` as a build of `version` knew it: every field added since at its documented default.
    fn as_of(version: u8, mut new: LoadVector) -> LoadVector {
        if version < 2 {
            new.cpu_capacity_millicores = 0;
        }
        if version < 3 {
            new.ended = crate::JobTally::default();
        }
        if version < 4 {
            new.sojourn = crate::SojournSummary::default();
        }
        if version < 5 {
            new.cpu_outside_permille = 0;
        }
        new
    }

    /// `old`, what a build of `version` wrote of `new`, decodes as [`as_of`] says: report 3 with
    /// that load. Read as the next version, the same bytes are short of a field: an error, not a
    /// wrong report.
    fn decodes_as_of<L: Serialize>(version: u8, old: L, new: LoadVector) {
        let mut bytes = old_push(version, old);
        let expected = LoadReport {
            load: as_of(version, new),
            ..report(3)
        };
        assert_eq!(only_report(&bytes), expected);
        bytes[2] = version + 1;
        assert!(decode(&bytes).is_err());
    }

    /// What a build of version 2, 3 or 4 wrote: the load vector up to `commands`, then `tail`:
    /// nothing (`()`, which postcard writes as no bytes) for version 2, `ended` for version 3,
    /// `ended` and `sojourn` for version 4.
    #[derive(Serialize)]
    struct LoadUpTo<T> {
        cpu_permille: u16,
        cpu_capacity_millicores: u32,
        queued: u32,
        running: u32,
        slots: u32,
        state: NodeState,
        #[serde(with = "crate::offers::serde_bits")]
        commands: u64,
        tail: T,
    }

    fn load_up_to<T>(load: &crate::LoadVector, tail: T) -> LoadUpTo<T> {
        LoadUpTo {
            cpu_permille: load.cpu_permille,
            cpu_capacity_millicores: load.cpu_capacity_millicores,
            queued: load.queued,
            running: load.running,
            slots: load.slots,
            state: load.state,
            commands: load.commands,
            tail,
        }
    }

    #[test]
    fn a_version_2_datagram_decodes_with_no_jobs_ended() {
        let new = report(3).load;
        decodes_as_of(2, load_up_to(&new, ()), new);
    }

    #[test]
    fn a_version_3_datagram_decodes_with_no_recent_sojourns() {
        let new = report(3).load;
        decodes_as_of(3, load_up_to(&new, new.ended), new);
    }

    #[test]
    fn a_version_4_datagram_decodes_with_no_outside_cpu() {
        let new = report(3).load;
        decodes_as_of(4, load_up_to(&new, (new.ended, new.sojourn)), new);
    }

    #[test]
    fn forged_lengths_and_bad_envelopes_are_errors() {
        assert!(matches!(decode(b"HS"), Err(DecodeError::TooShort(2))));
        assert!(matches!(
            decode(b"XX\x01\x00\x00"),
            Err(DecodeError::BadMagic)
        ));
        assert!(matches!(
            decode(b"HS\x09\x00\x00"),
            Err(DecodeError::UnsupportedVersion(9))
        ));
        // A push claiming 2^32 reports in a five-byte body.
        assert!(decode(b"HS\x01\x00\x00\xff\xff\xff\xff\x0f").is_err());
        let (mut bytes, _) = encode_push(&report(1), [], DEFAULT_BUDGET).unwrap();
        bytes.push(0);
        assert!(matches!(decode(&bytes), Err(DecodeError::TrailingBytes(1))));
    }
}
