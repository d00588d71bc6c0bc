//! The node's configuration: command-line flags, each with a `HEARSAY_*` environment fallback.
//!
//! - `flags.rs`: the flags ([`Config`]) and their defaults;
//! - `values.rs`: the values more than a number or an address, parsed ([`Seeds`], [`DataDir`]);
//! - `settings.rs`: what the node makes of them, checked ([`InvalidSetting`]).

mod flags;
mod settings;
#[cfg(test)]
mod tests;
mod values;

pub use flags::Config;
pub use settings::InvalidSetting;
pub use values::{default_node_id, DataDir, LogFormat, Seeds, Switch};
