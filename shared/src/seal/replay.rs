//! The replay guard: an authentic datagram is accepted once, and only within the time window.

use std::collections::BTreeSet;

use super::envelope::NONCE_LEN;

/// The default replay window: datagrams stamped more than this before or after the receiver's
/// clock are refused.
pub const DEFAULT_REPLAY_WINDOW_MS: u64 = 30_000;
/// The default number of datagrams a [`ReplayGuard`] remembers: some ten times what a node
/// receives in a minute at the default settings (about 25 a second), so that only a flood from
/// a key holder ever reaches it.
pub const DEFAULT_REPLAY_MEMORY: usize = 16_384;

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

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::seal::fixtures::*;
    use crate::seal::OpenError;

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
}
