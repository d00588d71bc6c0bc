//! Jobs on this node: the slots that run them and the queue before them, each kind's run, the
//! declared commands and the processes they become, the store of every job's record and its
//! durable half on disk, what a restart does with it, and the hand-off shell that places jobs
//! here or at a peer.

use std::time::Duration;

pub mod commands;
pub mod disk;
pub mod dispatch;
mod kinds;
pub mod process;
pub mod restart;
pub mod slots;
pub mod store;

/// Whole milliseconds, saturating.
pub(crate) fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
