//! Hearsay's vocabulary and gossip protocol, with no I/O, no clock and no randomness of its own:
//! every function that needs the time or an rng takes them as arguments, so that a test can run
//! many nodes deterministically in memory.
//!
//! # Layout
//! A module is a file, or a folder whose `mod.rs` lists its files.
//! - [`node`]: who a node is — [`NodeId`], stable across restarts.
//! - [`load`]: what a node says of itself — [`LoadVector`] inside a versioned [`LoadReport`].
//! - [`offers`]: which commands a node offers — a 64-bit Bloom filter of their names.
//! - [`cgroup`]: what CPU a node may use and uses — its cgroup's (v2 or v1) figures, parsed.
//! - [`detector`]: phi accrual failure detection from report arrivals.
//! - [`map`] (`map/`): [`LoadMap`], the merged view of the cluster, with each entry's age and
//!   verdict; `merge.rs` is what changes it.
//! - [`wire`]: the datagram format — envelope, messages, budgeted encoding, safe decoding.
//! - [`seal`] (`seal/`): sealed datagrams — the cluster key (`key.rs`), the [`seal::Keyring`]
//!   (`keyring.rs`), XChaCha20-Poly1305 sealing (`envelope.rs`), the replay guard (`replay.rs`),
//!   open or keyed (`mode.rs`).
//! - [`json`]: strict JSON for request bodies — no key twice, bounded nesting.
//! - [`job`] (`job/`): the job vocabulary of the HTTP API — [`JobSpec`] (`spec.rs`), [`JobId`]
//!   (`id.rs`), [`JobOutcome`] (`outcome.rs`).
//! - [`gossip`] (`gossip/`): [`Gossip`], the state machine that the worker drives over UDP
//!   (`mod.rs`), its settings (`config.rs`), reports into the map (`membership.rs`), what it
//!   sends (`relay.rs`).

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

pub mod cgroup;
pub mod detector;
pub mod gossip;
pub mod job;
pub mod json;
pub mod load;
pub mod map;
pub mod node;
pub mod offers;
pub mod seal;
pub mod wire;

pub use detector::DetectorConfig;
pub use gossip::{Gossip, GossipConfig, GossipStats, Transmit};
pub use job::{JobError, JobId, JobKind, JobOutcome, JobSpec, JobStatus};
pub use load::{JobTally, LoadReport, LoadVector, NodeState, SojournSummary, Version};
pub use map::{Entry, LoadMap, Verdict, VerdictChange};
pub use node::{NodeId, NodeIdError};
