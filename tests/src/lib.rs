//! Test support for Autoharmonize (deterministic simulation).
