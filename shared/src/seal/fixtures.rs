//! What the seal's unit tests share: keys, an rng, a plain datagram, a keyed node.

use std::net::SocketAddr;

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::{Key, Keyring, Sealing, KEY_LEN};
use crate::wire;
use crate::{LoadReport, LoadVector, NodeId};

pub(super) const NOW: u64 = 1_790_000_000_000;

pub(super) fn key(n: u8) -> Key {
    Key::from_bytes([n; KEY_LEN])
}

pub(super) fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

pub(super) fn plain() -> Vec<u8> {
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
pub(super) fn here() -> SocketAddr {
    "127.0.0.2:7946".parse().unwrap()
}

/// A keyed node listening at [`here`].
pub(super) fn keyed(primary: u8, accepted: &[u8]) -> Sealing {
    let keyring = Keyring::new(key(primary), accepted.iter().map(|&n| key(n))).unwrap();
    Sealing::keyed(keyring, here())
}
