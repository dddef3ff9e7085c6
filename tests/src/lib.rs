//! Test support for Autoharmonize (deterministic simulation).

pub mod netns;
pub mod room;
pub mod sim;
pub mod timecode;
