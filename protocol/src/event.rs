//! What a member can ask the room to do: the events carried by votes.
//!
//! Every field is an absolute value (a target position, a gain), never a
//! delta, so a vote applied twice has the same effect as once, and a replayed
//! vote changes nothing. A member casts at most one event per round; further
//! events wait in its local queue (see `member`).

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

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
}

impl Event {
    /// The channel the event acts on.
    #[must_use]
    pub fn channel(&self) -> Channel {
        match *self {
            Event::Play { channel }
            | Event::Pause { channel }
            | Event::Seek { channel, .. }
            | Event::Volume { channel, .. } => channel,
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
