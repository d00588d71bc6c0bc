//! Placement: which node should run a job. Pure and deterministic — the load map, this node's
//! exact load, a ledger of recent forwards, the time and an rng go in; a [`Placement`] comes out.
//!
//! # Layout
//! - [`policy`]: the [`Policy`] names — `p2c` (the default) and the baselines.
//! - [`ledger`]: [`ForwardLedger`], jobs this node sent to each peer since that peer's last report.
//! - [`score`]: [`LoadScore`], the one number nodes are compared by — slots, or slots and CPU.
//! - [`placer`]: [`Placer`], which scores candidates and decides.
//! - [`handoff`] (`handoff/`): [`Handoff`], the sans-IO state machine of every move of a job
//!   between nodes: offer, lost answer, fence, follow, idempotency keys; one file per idea
//!   (the entry node's `submit.rs` and `settle.rs`, the receiver's `receive.rs`, `steal.rs`, ...),
//!   listed in its documentation, and its tests by topic in `handoff/tests/`.

#![deny(missing_docs, rustdoc::broken_intra_doc_links)]

pub mod handoff;
pub mod ledger;
pub mod placer;
pub mod policy;
pub mod score;

pub use handoff::{Handoff, HandoffConfig};
pub use ledger::ForwardLedger;
pub use placer::{Placement, PlacementRequest, Placer, PlacerConfig, Target};
pub use policy::{Policy, UnknownPolicy};
pub use score::{LoadScore, UnknownLoadScore};
