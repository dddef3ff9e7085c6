//! Test support for Autoharmonize (deterministic simulation).

pub mod chaos;
pub mod netns;
pub mod report;
pub mod rig;
pub mod room;
pub mod sim;
pub mod stream_run;
pub mod sync_run;
pub mod timecode;
