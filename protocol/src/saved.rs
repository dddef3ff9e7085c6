//! The room state a speaker keeps on disk, so that a room that lost power
//! comes back as it was: its track, each channel's position, gain and
//! pause.
//!
//! A saved state is clock-free: the mesh clock of the room that saved it is
//! gone after a restart, so positions are stored as frames, not anchors.
//! A room restored from it starts with every channel *paused* at its saved
//! position (a room that comes back from a power cut should not blast music
//! at whoever is resetting the breaker), carries on the saved
//! [`Transport::revision`], and is marked [`Transport::restored`] until its
//! first decision.
//!
//! Which saved state wins is decided before the room exists: members that
//! start together defer to the one whose saved state is newest
//! ([`crate::membership::founder_precedes`] over `JoinRequest::claim`), and
//! that member founds the room from its own file. A member that joins an
//! existing room adopts the room's state: a saved file never undoes a
//! decision a room has made (`docs/protocol.md`, "Restoring after a power
//! cut").
//!
//! Invariant: [`SavedState::decode`] accepts exactly what
//! [`SavedState::encode`] produced (magic, version, checksum over all of
//! it), never panics, and bounds what it reads.

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

use crate::time::MeshTime;
use crate::transport::{ChannelState, Frames, Gain, LoadedTrack, MAX_CHANNELS, Transport};

/// First bytes of a saved-state file.
pub const MAGIC: [u8; 4] = *b"AHRS";
/// Version of the saved-state format (after the magic).
pub const FORMAT: u8 = 1;
/// Bytes of checksum at the end of the file.
const CHECKSUM: usize = 8;

/// One channel as it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct SavedChannel {
    /// Where it was, in timeline frames.
    pub position: Frames,
    /// Whether it was playing (it comes back paused either way).
    pub playing: bool,
    /// Its gain.
    pub gain: Gain,
}

/// The room's state at one instant, as a speaker keeps it on disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub struct SavedState {
    /// The state's [`Transport::revision`]: newer states have higher ones.
    pub revision: u64,
    /// The loaded track.
    pub track: Option<LoadedTrack>,
    /// Every channel of it.
    pub channels: heapless::Vec<SavedChannel, MAX_CHANNELS>,
}

/// Why a saved-state file was not accepted. Nothing here is worth a retry:
/// the file is ignored and the room starts as a fresh one would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SavedError {
    /// Not a saved-state file (wrong magic or too short).
    #[error("not an Autoharmonize state file")]
    NotOurs,
    /// Written by another version of the format.
    #[error("state file format {0} (this build reads {FORMAT})")]
    Format(u8),
    /// The checksum does not match: a torn or corrupted write.
    #[error("state file is corrupt (checksum mismatch)")]
    Corrupt,
    /// The checksum matched but the content is not a state.
    #[error("state file content is malformed")]
    Malformed,
}

/// Largest encoded saved state.
pub const MAX_SAVED_SIZE: usize = MAGIC.len() + 1 + SavedState::POSTCARD_MAX_SIZE + CHECKSUM;

impl SavedState {
    /// The state `t` describes at mesh instant `at`.
    #[must_use]
    pub fn capture(t: &Transport, at: MeshTime) -> SavedState {
        let channels = t
            .channels
            .iter()
            .map(|c| SavedChannel {
                position: c.position_at(at),
                playing: c.playing,
                gain: c.gain,
            })
            .collect();
        SavedState {
            revision: t.revision,
            track: t.track,
            channels,
        }
    }

    /// The transport a room restored from this state starts with at mesh
    /// instant `at`: every channel paused at its position (clamped to the
    /// track's length), gains kept, marked restored.
    #[must_use]
    pub fn transport(&self, at: MeshTime) -> Transport {
        let end = self.track.map_or(Frames(u64::MAX), |t| t.length);
        let channels = self
            .channels
            .iter()
            .map(|c| ChannelState::paused_at(c.position.min(end), at, c.gain.clamped()))
            .collect();
        Transport {
            channels,
            track: self.track,
            revision: self.revision,
            restored: true,
        }
    }

    /// Whether any channel was playing.
    #[must_use]
    pub fn was_playing(&self) -> bool {
        self.channels.iter().any(|c| c.playing)
    }

    /// The file's bytes: magic, format, postcard, then a checksum of all
    /// that came before.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_SAVED_SIZE);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT);
        let mut buf = [0u8; SavedState::POSTCARD_MAX_SIZE];
        let body =
            postcard::to_slice(self, &mut buf).expect("POSTCARD_MAX_SIZE bounds every saved state");
        out.extend_from_slice(body);
        let sum = checksum(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Reads a file written by [`SavedState::encode`].
    pub fn decode(bytes: &[u8]) -> Result<SavedState, SavedError> {
        if bytes.len() < MAGIC.len() + 1 + CHECKSUM || bytes[..MAGIC.len()] != MAGIC {
            return Err(SavedError::NotOurs);
        }
        if bytes.len() > MAX_SAVED_SIZE {
            return Err(SavedError::Corrupt);
        }
        let (content, sum) = bytes.split_at(bytes.len() - CHECKSUM);
        if checksum(content) != sum {
            return Err(SavedError::Corrupt);
        }
        let format = content[MAGIC.len()];
        if format != FORMAT {
            return Err(SavedError::Format(format));
        }
        match postcard::take_from_bytes::<SavedState>(&content[MAGIC.len() + 1..]) {
            Ok((s, [])) => Ok(s),
            _ => Err(SavedError::Malformed),
        }
    }
}

fn checksum(bytes: &[u8]) -> [u8; CHECKSUM] {
    let h = blake3::hash(bytes);
    let mut out = [0u8; CHECKSUM];
    out.copy_from_slice(&h.as_bytes()[..CHECKSUM]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::TrackId;
    use crate::time::Nanos;
    use proptest::prelude::*;

    fn playing_room() -> Transport {
        let track = LoadedTrack {
            id: TrackId([7; 16]),
            length: Frames::from_secs(180),
        };
        let mut t = Transport::loaded(track, 3, MeshTime(0), Gain::DEFAULT);
        t.channels[0] = ChannelState {
            playing: true,
            anchor_pos: Frames::from_secs(60),
            anchor_at: MeshTime(1_000_000_000),
            gain: Gain(40),
        };
        t.channels[1].anchor_pos = Frames::from_secs(30);
        t.revision = 17;
        t
    }

    #[test]
    fn a_restored_room_is_paused_where_it_stood_with_its_mix() {
        let t = playing_room();
        let at = MeshTime(1_000_000_000).plus(Nanos::from_millis(2_500));
        let saved = SavedState::capture(&t, at);
        assert_eq!(saved.revision, 17);
        assert!(saved.was_playing());
        assert_eq!(saved.channels[0].position, Frames(60 * 48_000 + 120_000));
        assert_eq!(saved.channels[1].position, Frames::from_secs(30));
        let back = SavedState::decode(&saved.encode()).expect("round trip");
        assert_eq!(back, saved);
        let restored = back.transport(MeshTime(5));
        assert!(restored.restored);
        assert_eq!(restored.revision, 17);
        assert_eq!(restored.track, t.track);
        for (i, c) in restored.channels.iter().enumerate() {
            assert!(!c.playing, "channel {i} comes back paused");
            assert_eq!(c.anchor_at, MeshTime(5));
            assert_eq!(
                c.position_at(MeshTime(10_000_000_000)),
                saved.channels[i].position
            );
            assert_eq!(c.gain, t.channels[i].gain);
        }
    }

    #[test]
    fn the_restored_flag_and_revision_follow_decisions() {
        let mut t = SavedState::capture(&playing_room(), MeshTime(0)).transport(MeshTime(0));
        t.apply(&crate::choice::Choice::default(), MeshTime(1));
        assert!(t.restored, "an empty round is no decision");
        assert_eq!(t.revision, 17);
        let pause = crate::choice::choose(
            &[crate::event::Vote {
                member: crate::ids::MemberId(1),
                seq: 1,
                event: crate::event::Event::Play {
                    channel: crate::ids::Channel::All,
                },
            }],
            3,
            t.length(),
        );
        t.apply(&pause, MeshTime(2));
        assert!(!t.restored);
        assert_eq!(t.revision, 18);
    }

    #[test]
    fn a_position_beyond_the_track_comes_back_at_its_end() {
        let mut saved = SavedState::capture(&playing_room(), MeshTime(0));
        saved.channels[2].position = Frames(u64::MAX);
        let t = saved.transport(MeshTime(0));
        assert_eq!(t.channels[2].anchor_pos, Frames::from_secs(180));
    }

    #[test]
    fn torn_and_foreign_files_are_refused() {
        let bytes = SavedState::capture(&playing_room(), MeshTime(0)).encode();
        for cut in 0..bytes.len() {
            assert!(SavedState::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[7] ^= 1;
        assert_eq!(SavedState::decode(&flipped), Err(SavedError::Corrupt));
        assert_eq!(
            SavedState::decode(b"hello world, no"),
            Err(SavedError::NotOurs)
        );
        let mut other = bytes.clone();
        other[4] = 9;
        let n = other.len() - CHECKSUM;
        let sum = checksum(&other[..n]);
        other[n..].copy_from_slice(&sum);
        assert_eq!(SavedState::decode(&other), Err(SavedError::Format(9)));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SavedState::decode(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.push(FORMAT);
            with_magic.extend_from_slice(&bytes);
            let _ = SavedState::decode(&with_magic);
        }
    }
}
