//! Transport state per channel and the exact position math.
//!
//! (Types only so far; logic follows.)

use serde::{Deserialize, Serialize};

use crate::time::MeshTime;

/// Frames per second of the shared timeline. Positions on the wire are
/// frames at this rate; each node converts to its file's and device's rate.
pub const TIMELINE_RATE: u64 = 48_000;

/// Most channels (stems) a track can have.
pub const MAX_CHANNELS: usize = 8;

/// A position or length on the timeline, in frames at [`TIMELINE_RATE`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Frames(pub u64);

/// A channel's volume in percent, `0..=100`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Gain(pub u8);

/// The agreed state of one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChannelState {
    /// Whether the position advances with mesh time.
    pub playing: bool,
    /// Position at `anchor_at`.
    pub anchor_pos: Frames,
    /// Mesh instant at which the channel was at `anchor_pos`.
    pub anchor_at: MeshTime,
    /// Volume.
    pub gain: Gain,
}

/// The agreed state of every channel of the current track.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Transport {
    /// One entry per channel, indexed by `Channel::Stem(i)`.
    pub channels: heapless::Vec<ChannelState, MAX_CHANNELS>,
}
