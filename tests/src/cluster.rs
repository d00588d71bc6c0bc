//! Process harness (being written).
