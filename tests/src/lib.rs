//! Test support for Autoharmonize (deterministic simulation).

pub mod chaos;
pub mod netns;
pub mod report;
pub mod room;
pub mod sim;
pub mod sync_run;
pub mod timecode;
