//! Sealed gossip: any bytes as a received datagram on a keyed node, as a key file, and as a
//! message to seal. Opening must never panic; what is sealed must open to itself at its
//! destination and not at another address; a sealed datagram with any one byte changed must not
//! open.
#![no_main]

use std::net::SocketAddr;

use hearsay_shared::seal::{Key, Keyring, Sealing};
use hearsay_shared::wire::{self, MAX_DATAGRAM};
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;

const NOW: u64 = 1_790_000_000_000;

/// Where the fuzzed datagrams are sent, and one other node's address.
fn here() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], 7946))
}
fn elsewhere() -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 2], 7946))
}

fuzz_target!(|input: &[u8]| {
    if let Ok(text) = std::str::from_utf8(input) {
        let _ = Keyring::parse(text);
    }
    let ring = Keyring::new(Key::from_bytes([7; 32]), [Key::from_bytes([9; 32])]).unwrap();
    let mut sealing = Sealing::keyed(ring.clone(), here());
    let _ = sealing.incoming(input, NOW);

    let plain = [&[b'H', b'S', wire::FORMAT_VERSION, 0][..], input].concat();
    let mut rng = StdRng::seed_from_u64(input.len() as u64);
    let Ok(sealed) = ring.seal(&plain, here(), NOW, &mut rng) else {
        return;
    };
    if sealed.len() > MAX_DATAGRAM {
        return;
    }
    let opened = ring
        .open(&sealed, &[here()])
        .expect("a sealed datagram opens");
    assert!(
        ring.open(&sealed, &[elsewhere()]).is_err(),
        "a datagram sealed for one address opened at another"
    );
    assert_eq!(opened.datagram, plain, "round trip");
    assert_eq!(opened.sent_at_unix_ms, NOW);
    let at = input.first().map_or(0, |&b| usize::from(b)) * 7919 % sealed.len();
    let flip = input.get(1).copied().filter(|&b| b != 0).unwrap_or(0x80);
    let mut tampered = sealed.clone();
    tampered[at] ^= flip;
    assert!(
        ring.open(&tampered, &[here()]).is_err(),
        "byte {at} changed by {flip:#04x} and the datagram still opened"
    );
});
