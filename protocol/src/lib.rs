//! Sans-IO core of Autoharmonize: every rule that all members of a room must
//! apply identically, as pure logic.
//!
//! This crate contains no networking code, spawns no threads and never reads a
//! clock: every input carries `now` (the caller's monotonic [`LocalTime`]),
//! datagrams come in as bytes and go out as [`member::Transmit`]s, and
//! randomness comes from seeds chosen by the caller. That is what lets the
//! simulation in `tests/` run dozens of members with lossy links and drifting
//! clocks deterministically, and what lets the node daemon and the controller
//! share one implementation of the protocol.
//!
//! Which modules are *agreed rules* (every member must compute exactly the
//! same thing, or the room diverges: changing them changes the protocol)
//! and which are *local pure policy* (a member's own choices, which may
//! differ between versions without breaking agreement):
//! - agreed rules: [`wire`], [`envelope`], [`event`], [`transport`], [`choice`],
//!   [`membership`], [`content`], [`catalogue`]'s digests and checks,
//!   [`exchange`], [`saved`]'s founder claim, and the sealing, commit and
//!   election rules in [`member`];
//! - local pure policy: [`clock`] (how a member estimates the mesh clock),
//!   [`pacing`] (what it sends to silent peers), [`fetch`] (which chunk it
//!   fetches from whom), [`playout`] (how it schedules its own audio),
//!   [`address`] (which addresses it keeps and hands on), and the timers
//!   in [`member::Config`].
//!
//! Modules, from the vocabulary up:
//! - [`ids`], [`time`]: identifiers and integer time.
//! - [`event`]: what a vote can ask for.
//! - [`transport`]: per-channel play state and exact position math.
//! - [`choice`]: the deterministic choice function over one round's votes.
//! - [`clock`]: NTP-style offset and drift estimation.
//! - [`content`]: content hashes naming stems, chunks and tracks.
//! - [`catalogue`]: which tracks the room holds, who holds which stems, and
//!   members' names.
//! - [`fetch`]: which chunk of a streamed stem to fetch next, from whom.
//! - [`exchange`]: the chunk transport's handshake, frames and messages.
//! - [`wire`]: the datagram format (postcard, bounded, versioned).
//! - [`envelope`]: authenticates every datagram and rejects replays.
//! - [`refusal`]: tells a sender its datagrams failed authentication (a
//!   controller with the wrong secret), rate-limited.
//! - [`pacing`]: keeps the send buffer for peers that answer (addresses
//!   silent for a second get a datagram per round).
//! - [`playout`]: per-node playback timing (the schedule of states, exact
//!   positions, the DAC's emission times).
//! - [`address`]: members' addresses, handed to newcomers in referrals.
//! - [`saved`]: the room state a speaker keeps on disk across power cuts.
//! - [`member`]: the state machine of one member (rounds, election, sealing,
//!   commit, membership, state transfer).
//!
//! The protocol itself is specified in `docs/protocol.md`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod address;
pub mod catalogue;
pub mod choice;
pub mod clock;
pub mod content;
pub mod envelope;
pub mod event;
pub mod exchange;
pub mod fetch;
pub mod ids;
pub mod member;
pub mod membership;
pub mod pacing;
pub mod playout;
pub mod refusal;
pub mod saved;
pub mod time;
pub mod transport;
pub mod wire;

pub use ids::{BootId, Channel, MemberId, RoomId, Round, Term};
pub use time::{LocalTime, MeshTime, Nanos};
