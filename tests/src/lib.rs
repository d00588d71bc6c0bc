//! Tests that cross crates, and the harnesses they share.
//!
//! # Layout
//! - [`sim`]: many gossip cores in a simulated network under a virtual clock.
//! - [`cluster`]: real `worker` processes on loopback, stopped when dropped.
//! - [`netns`]: network namespaces, to cut links and lose packets for real.

pub mod cluster;
pub mod netns;
pub mod sim;
