//! Properties of sealed datagrams: a sealed datagram never exceeds the budget its core was given
//! room for, any change to one is refused, it opens only at the address it was sealed for, and
//! opening any bytes never panics.

use std::net::SocketAddr;

use hearsay_shared::seal::{Key, Keyring, OpenError, ReplayGuard, Sealing, KEY_LEN, OVERHEAD};
use hearsay_shared::{wire, LoadReport, LoadVector, NodeId};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

const NOW: u64 = 1_790_000_000_000;

fn report(i: usize) -> LoadReport {
    LoadReport {
        node: NodeId::new(format!("node-{i:05}")).unwrap(),
        incarnation: NOW + i as u64,
        seq: i as u64 * 7,
        load: LoadVector::idle(8),
        api: format!("10.0.{}.{}:8080", i / 250, i % 250)
            .parse()
            .unwrap(),
        gossip: format!("10.0.{}.{}:7946", i / 250, i % 250)
            .parse()
            .unwrap(),
    }
}

/// Where the datagrams of these tests are sent (and the receiving node listens).
fn here() -> SocketAddr {
    "10.0.0.1:7946".parse().unwrap()
}

fn keyring() -> Keyring {
    Keyring::new(Key::from_bytes([42; KEY_LEN]), []).unwrap()
}

proptest! {
    #[test]
    fn sealed_datagrams_keep_to_the_budget(
        budget in (wire::MIN_BUDGET + OVERHEAD)..4000usize,
        reports in 0..200usize,
        seed in any::<u64>(),
    ) {
        let others: Vec<LoadReport> = (1..=reports).map(report).collect();
        let (plain, _) = wire::encode_push(&report(0), &others, budget - OVERHEAD).unwrap();
        let sealed = keyring().seal(&plain, here(), NOW, &mut StdRng::seed_from_u64(seed)).unwrap();
        prop_assert!(sealed.len() <= budget, "{} > {budget}", sealed.len());
        prop_assert_eq!(sealed.len(), plain.len() + OVERHEAD);
    }

    #[test]
    fn any_changed_byte_is_refused(
        at in any::<prop::sample::Index>(),
        xor in 1..=255u8,
        seed in any::<u64>(),
    ) {
        let plain = wire::encode_push(&report(0), &[report(1)], 1400).unwrap().0;
        let mut sealing = Sealing::keyed(keyring(), here());
        let mut sealed = sealing
            .outgoing(plain, here(), NOW, &mut StdRng::seed_from_u64(seed))
            .unwrap();
        let i = at.index(sealed.len());
        sealed[i] ^= xor;
        prop_assert!(sealing.incoming(&sealed, NOW).is_err(), "byte {i} changed, still opened");
    }

    #[test]
    fn a_datagram_opens_only_at_the_address_it_was_sealed_for(
        to in any::<SocketAddr>(),
        at in any::<SocketAddr>(),
        seed in any::<u64>(),
    ) {
        let plain = wire::encode_push(&report(0), &[], 1400).unwrap().0;
        let sealed = keyring().seal(&plain, to, NOW, &mut StdRng::seed_from_u64(seed)).unwrap();
        prop_assert!(keyring().open(&sealed, &[to]).is_ok());
        let same = to.ip().to_canonical() == at.ip().to_canonical() && to.port() == at.port();
        prop_assert_eq!(keyring().open(&sealed, &[at]).is_ok(), same, "sealed for {}, opened at {}", to, at);
    }

    #[test]
    fn opening_any_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut sealing = Sealing::keyed(keyring(), here());
        prop_assert!(sealing.incoming(&bytes, NOW).is_err());
        let mut open = Sealing::Open;
        let _ = open.incoming(&bytes, NOW);
    }

    #[test]
    fn the_guard_accepts_each_datagram_once_and_stays_bounded(
        stamps in prop::collection::vec(0..60_000u64, 1..400),
        capacity in 1..64usize,
    ) {
        let mut guard = ReplayGuard::new(30_000, capacity);
        let mut accepted = std::collections::HashSet::new();
        for (i, offset) in stamps.iter().enumerate() {
            // Datagrams arrive out of order, some twice.
            let nonce = [(i % 7) as u8; 24];
            let stamp = NOW - 30_000 + offset;
            if guard.check(stamp, nonce, NOW).is_ok() {
                prop_assert!(accepted.insert((stamp, nonce)), "accepted twice: {stamp}");
            }
            prop_assert!(guard.remembered() <= capacity);
        }
    }
}

#[test]
fn what_the_guard_refuses_is_a_replay() {
    let mut sealing = Sealing::keyed(keyring(), here());
    let plain = wire::encode_push(&report(0), &[], 1400).unwrap().0;
    let sealed = sealing
        .outgoing(plain, here(), NOW, &mut StdRng::seed_from_u64(1))
        .unwrap();
    assert!(sealing.incoming(&sealed, NOW).is_ok());
    let e = sealing.incoming(&sealed, NOW).unwrap_err();
    assert!(matches!(e, OpenError::Replay(_)));
    assert_eq!(e.reason(), "replay");
}
