//! Placement: which node should run a job. Pure and deterministic — the load map, this node's
//! exact load, a ledger of recent forwards, the time and an rng go in; a [`Placement`] comes out.
//!
//! # Layout
//! - [`policy`]: the [`Policy`] names — `p2c` (the default) and the baselines.
//! - [`ledger`]: [`ForwardLedger`], jobs this node sent to each peer since that peer's last report.
//! - [`placer`]: [`Placer`], which scores candidates and decides.

#![warn(missing_docs)]

pub mod ledger;
pub mod placer;
pub mod policy;

pub use ledger::ForwardLedger;
pub use placer::{Placement, PlacementRequest, Placer, PlacerConfig};
pub use policy::{Policy, UnknownPolicy};
