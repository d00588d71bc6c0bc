//! `loadgen`: Hearsay's benchmark. It drives a cluster with a reproducible workload, measures
//! how well the jobs were balanced, and sets the measurements beside simple baselines and
//! queueing theory.
//!
//! # Layout
//! - [`workload`]: a seed and a shape expand into the same jobs at the same instants, always.
//! - [`stats`]: exact percentiles, means and their standard errors.
//! - [`theory`]: M/M/1, the supermarket model and M/M/c (Erlang C), for the reference lines.

#![warn(missing_docs)]

pub mod stats;
pub mod theory;
pub mod workload;
