//! Tests that cross crates, and the harnesses they share.
//!
//! # Layout
//! - [`sim`]: many gossip cores in a simulated network under a virtual clock.
//! - [`job_sim`]: gossip and hand-off cores and executor models together under that clock.
//! - [`timeline`]: the simulators' queue of what is due, by instant of virtual time.
//! - [`scale`]: the scale run — many cores joining, a job workload placed from their maps,
//!   faults — and its figures (`gossip-sim scale`).
//! - [`workload`]: a seeded job workload through [`job_sim`], and its sojourn figures.
//! - [`cluster`]: real `worker` processes on loopback, stopped when dropped: the test kit's
//!   [`hearsay_testkit::process`], under its old name.
//! - [`netns`]: network namespaces, to cut links and lose packets for real.

pub use hearsay_testkit::process as cluster;
pub mod job_sim;
pub mod netns;
pub mod scale;
pub mod sim;
pub mod timeline;
pub mod workload;
