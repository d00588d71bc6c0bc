//! Hearsay's test kit: what every test target needs to set a cluster up, and nothing of what it
//! asserts.
//!
//! # Layout
//! - [`PATIENCE`]: the one bound of every wait.
//! - [`process`]: real `worker` processes on loopback (found beside the test binary), waits for
//!   conditions over their HTTP API, killed and reaped when dropped.
//! - `inproc` (feature `in-process`): `hearsay_worker::Node`s on the test's runtime, a cluster
//!   of them and the wait until every node sees every other alive.
//! - `http` (feature `in-process`): a pooled hyper client, with or without the API token.

use std::time::Duration;

/// The bound of every wait: generous for a busy machine, never a measurement. A wait returns
/// as soon as its condition holds; only a failing test waits this long.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub mod process;

#[cfg(feature = "in-process")]
pub mod http;
#[cfg(feature = "in-process")]
pub mod inproc;
