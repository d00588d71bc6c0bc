//! Which commands a node offers, as a 64-bit Bloom filter that fits in its [`LoadVector`].
//!
//! Every command name sets two of the 64 bits, chosen by a stable hash (FNV-1a, 64 bits), so
//! that every build of every node agrees on them. A set *contains* a name when both of its bits
//! are set: never a false negative, and a false positive with a probability that grows with the
//! number of names a node declares (with 2 bits per name, about 1 % for 3 names, 5 % for 8,
//! 15 % for 16). A false positive only costs a forward that the peer refuses; the entry node
//! then places the job elsewhere.
//!
//! [`LoadVector`]: crate::LoadVector

/// FNV-1a over `bytes`, 64 bits: stable across builds, platforms and versions.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The bits that `name` sets in a command set: two, from different parts of its hash (they
/// may coincide, then one).
pub fn command_bits(name: &str) -> u64 {
    let h = fnv1a(name.as_bytes());
    (1u64 << (h & 63)) | (1u64 << ((h >> 32) & 63))
}

/// The set of the given names.
pub fn command_set<'a>(names: impl IntoIterator<Item = &'a str>) -> u64 {
    names
        .into_iter()
        .fold(0, |set, name| set | command_bits(name))
}

/// Whether `set` may contain `name` (certainly, if it does not).
pub fn may_offer(set: u64, name: &str) -> bool {
    let bits = command_bits(name);
    set & bits == bits
}

/// Serialises a command set as 16 hex digits in human-readable formats (JSON: a number that
/// large does not survive JavaScript), and as a plain `u64` (a varint) in postcard.
pub(crate) mod serde_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bits: &u64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(&format_args!("{bits:016x}"))
        } else {
            s.serialize_u64(*bits)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        if d.is_human_readable() {
            let text = String::deserialize(d)?;
            if text.len() != 16 {
                return Err(serde::de::Error::custom("a command set is 16 hex digits"));
            }
            u64::from_str_radix(&text, 16).map_err(serde::de::Error::custom)
        } else {
            u64::deserialize(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_published_function() {
        // Test vectors of FNV-1a 64.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_set_contains_its_names() {
        let set = command_set(["thumbnail", "wc", "echo"]);
        for name in ["thumbnail", "wc", "echo"] {
            assert!(may_offer(set, name), "{name}");
            assert!(command_bits(name).count_ones() <= 2);
        }
        assert!(!may_offer(0, "wc"));
        // Of many names not in a 3-name set, few look offered.
        let false_positives = (0..1000)
            .filter(|i| may_offer(set, &format!("other-{i}")))
            .count();
        assert!(false_positives < 60, "{false_positives} of 1000");
    }
}
