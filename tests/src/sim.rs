//! Simulation harness (being written).
