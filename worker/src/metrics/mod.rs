//! Metrics: what the node counts as it works, and `GET /metrics` in the Prometheus text format
//! (prometheus-client).
//!
//! Two kinds of figures:
//! - events the worker records as they happen — jobs submitted, placed, forwarded, received,
//!   finished, refused; queueing and run times — in [`Metrics`], a cheap handle cloned into the
//!   dispatcher and the executor;
//! - figures read at scrape time from what already keeps them — the gossip core's counters and
//!   load map, the executor's queue — by a [`Collector`], so that nothing is counted twice.
//!
//! Every name starts with `hearsay_`, carries its unit (`_seconds`, `_bytes`), and counters end in
//! `_total`. Label values come from small fixed sets (states, outcomes, reasons, policies), so the
//! number of series does not grow with the cluster or the traffic.
//!
//! `GET /metrics` answers in the classic Prometheus text format (version 0.0.4), which
//! `promtool check metrics` reads; a scraper that asks for OpenMetrics (`Accept:
//! application/openmetrics-text`, as Prometheus does) gets OpenMetrics.

mod exposition;
mod moves;
mod recorders;
mod scrape;
#[cfg(test)]
mod tests;

pub use exposition::{Exposition, Format};
pub use moves::{MoveCounters, MovesView, StatsSource};
pub use recorders::{refusal_reason, Decision, ForwardFailure, Metrics, PlacementCounts};
