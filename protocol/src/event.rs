//! What a member can ask the room to do: the events carried by votes.
//!
//! Every field is an absolute value (a target position, a gain), never a
//! delta, so a vote applied twice has the same effect as once, and a replayed
//! vote changes nothing. A member casts at most one event per round; further
//! events wait in its local queue (see `member`).

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

use crate::content::TrackId;
use crate::ids::{Channel, MemberId};
use crate::transport::{Frames, Gain};

/// One control action on a channel or on All.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize,
)]
pub enum Event {
    /// Start (or keep) playing from the current position.
    Play {
        /// Target channel.
        channel: Channel,
    },
    /// Stop advancing, holding the current position.
    Pause {
        /// Target channel.
        channel: Channel,
    },
    /// Jump to an absolute position on the timeline.
    Seek {
        /// Target channel.
        channel: Channel,
        /// Position to jump to, in timeline frames.
        to: Frames,
    },
    /// Set the channel's gain.
    Volume {
        /// Target channel.
        channel: Channel,
        /// New gain (absolute).
        gain: Gain,
    },
    /// Load a track: every channel of the old track is replaced by
    /// `channels` channels of `track`, paused at frame 0 from the round's
    /// `apply_at`. The voter copies `channels` and `length` from the room's
    /// catalogue, so members that do not hold the track still agree on the
    /// transport state (see `docs/protocol.md`, "Choice function").
    Load {
        /// The track to play.
        track: TrackId,
        /// Its channel (stem) count, `1..=MAX_CHANNELS`.
        channels: u8,
        /// Its length in timeline frames: seeks beyond it are refused.
        length: Frames,
    },
}

impl Event {
    /// The channel the event acts on (a load acts on every channel).
    #[must_use]
    pub fn channel(&self) -> Channel {
        match *self {
            Event::Play { channel }
            | Event::Pause { channel }
            | Event::Seek { channel, .. }
            | Event::Volume { channel, .. } => channel,
            Event::Load { .. } => Channel::All,
        }
    }
}

/// An event as cast by one member: the unit the choice function decides on.
///
/// `seq` counts the member's votes since it joined the room (starting at 1);
/// the room remembers the highest applied `seq` per member, so a vote is
/// applied at most once however often it is relayed or replayed.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize,
)]
pub struct Vote {
    /// Who cast it.
    pub member: MemberId,
    /// The member's sequence number for this vote.
    pub seq: u32,
    /// What it asks for.
    pub event: Event,
}
