//! Identifiers that every member must interpret identically.
//!
//! They are plain integers on the wire; the newtypes exist so a round can
//! never be passed where a term is expected. Ordering on these types is part
//! of the protocol (precedence rules, tie-breaks), so it must stay derived
//! from the integer value.

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

/// A member of a room: a speaker node or a controller. Chosen once per
/// installation (random 64 bits) and kept across restarts.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize,
)]
pub struct MemberId(pub u64);

/// Incarnation of a member: random per process start, so a restarted member
/// is recognised as new and its old heartbeats as stale.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize,
)]
pub struct BootId(pub u32);

/// Index of a heartbeat round: round `r` spans mesh time
/// `[r * heartbeat, (r + 1) * heartbeat)`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    MaxSize,
)]
pub struct Round(pub u64);

/// Leadership epoch inside a room (Raft's "term"): at most one leader seals
/// rounds in a given term.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    MaxSize,
)]
pub struct Term(pub u64);

/// A room: the group of members that share one replicated state. Rooms are
/// founded by a member (at start-up, or when it has been alone too long) and
/// merge when they meet; the id orders rooms by age for the merge rule.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize,
)]
pub struct RoomId {
    /// Round (on the founder's mesh clock) at which the room was founded.
    pub founded: Round,
    /// The member that founded it.
    pub founder: MemberId,
}

/// A channel (stem) of the current track, or every channel at once.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize,
)]
pub enum Channel {
    /// Every channel of the track (the seed's "All" channel).
    All,
    /// One stem, by index into the track's channel list.
    Stem(u8),
}

impl Round {
    /// The round after this one.
    #[must_use]
    pub fn next(self) -> Round {
        Round(self.0.saturating_add(1))
    }
}

impl Term {
    /// The term after this one.
    #[must_use]
    pub fn next(self) -> Term {
        Term(self.0.saturating_add(1))
    }
}

impl core::fmt::Display for MemberId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}
