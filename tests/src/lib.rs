//! Test support for Autoharmonize (deterministic simulation).

pub mod sim;
