//! Logging: `tracing` events to stdout, filtered by `RUST_LOG` (default `info`), as text or as
//! JSON lines.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. A second call (a test that runs nodes in-process after
/// something else installed one) leaves the first in place.
pub fn init(format: LogFormat) {
    // An unparsable RUST_LOG keeps what parses and falls back to `info` for the rest, rather
    // than refusing to start a node over a logging typo.
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    // Colours only for a person at a terminal, never in files or pipes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let _already_set = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
