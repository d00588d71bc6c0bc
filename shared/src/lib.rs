//! Hearsay's vocabulary and gossip protocol, with no I/O, no clock and no randomness of its own:
//! every function that needs the time or an rng takes them as arguments, so that a test can run
//! many nodes deterministically in memory.
//!
//! # Layout
//! - [`node`]: who a node is — [`NodeId`], stable across restarts.
//! - [`load`]: what a node says of itself — [`LoadVector`] inside a versioned [`LoadReport`].
//! - [`offers`]: which commands a node offers — a 64-bit Bloom filter of their names.
//! - [`detector`]: phi accrual failure detection from report arrivals.
//! - [`map`]: [`LoadMap`], the merged view of the cluster, with each entry's age and verdict.
//! - [`wire`]: the datagram format — envelope, messages, budgeted encoding, safe decoding.
//! - [`seal`]: sealed datagrams — the cluster [`seal::Keyring`], XChaCha20-Poly1305, the replay
//!   guard.
//! - [`json`]: strict JSON for request bodies — no key twice, bounded nesting.
//! - [`job`]: the job vocabulary of the HTTP API — [`JobSpec`], [`JobId`], [`JobOutcome`].
//! - [`gossip`]: [`Gossip`], the state machine that the worker drives over UDP.

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

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
pub use load::{LoadReport, LoadVector, NodeState, Version};
pub use map::{Entry, LoadMap, Verdict, VerdictChange};
pub use node::{NodeId, NodeIdError};
