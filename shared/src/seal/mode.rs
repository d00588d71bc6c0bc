//! How a node treats gossip datagrams: in the open, or sealed and guarded against replays.

use std::borrow::Cow;
use std::net::SocketAddr;

use rand::CryptoRng;

use super::envelope::{is_sealed, own_destinations, OpenError, SealError, OVERHEAD};
use super::keyring::Keyring;
use super::replay::ReplayGuard;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::fixtures::*;

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
}
