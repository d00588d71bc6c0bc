//! The registry behind `GET /metrics` and its two text formats: the classic Prometheus text
//! (version 0.0.4) and, for a scraper that asks for it in `Accept`, OpenMetrics.

use std::fmt;
use std::sync::Arc;

use prometheus_client::registry::Registry;

use super::moves::{MoveCounters, StatsSource};
use super::scrape::RetainedOutcomes;
use crate::jobs::store::JobStore;

/// The prefix of every metric name.
pub const PREFIX: &str = "hearsay";

/// `Content-Type` of the Prometheus text format, version 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of OpenMetrics text, version 1.0.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry behind `GET /metrics`.
pub struct Exposition {
    pub(super) registry: Registry,
}

impl Exposition {
    /// Adds the counters of jobs moved between nodes, read at scrape time.
    pub fn with_moves(mut self, stats: StatsSource) -> Self {
        self.registry
            .register_collector(Box::new(MoveCounters(stats)));
        self
    }

    /// Adds the gauges of what `store` keeps of finished jobs, read at scrape time.
    pub fn with_store(mut self, store: Arc<JobStore>) -> Self {
        self.registry
            .register_collector(Box::new(RetainedOutcomes { store }));
        self
    }
}

impl fmt::Debug for Exposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exposition").finish_non_exhaustive()
    }
}

/// Which text format a scraper gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text, version 0.0.4.
    Text,
    /// OpenMetrics text, version 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The format for an `Accept` header: OpenMetrics if it is asked for, else the classic text.
    pub fn for_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    /// The `Content-Type` of the format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

impl Exposition {
    /// Every metric, encoded now.
    pub fn encode(&self, format: Format) -> String {
        let mut text = String::new();
        let encoded = match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut text, &self.registry)
            }
        };
        // Writing to a String cannot fail, and every name and label here is valid.
        debug_assert!(encoded.is_ok(), "metrics encoding failed");
        text
    }
}
