//! Transport state per channel and the exact position math.
//!
//! Every member must agree, to the frame, on where each stem is at any mesh
//! instant, or the speakers drift apart (the seed computed positions in
//! floats and drifted). So a channel's state is only an anchor: whether it
//! plays, the position it had at one mesh instant, and its gain. Its position
//! at any other instant is derived from that anchor, never accumulated.
//!
//! Invariant: a position is a pure function of (state, mesh time), computed
//! with integer arithmetic only, and therefore identical on every member
//! given the same state. No float, no local clock, no platform-dependent
//! rounding may enter here. Re-anchoring discards the sub-frame remainder, so
//! [`Transport::apply`] re-anchors only when the timeline really changes
//! (a seek, or play/pause that flips the run state), never for volume.
//!
//! Specified in `docs/protocol.md`, section "Transport state".

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

use crate::choice::Choice;
use crate::content::TrackId;
use crate::time::{MeshTime, NANOS_PER_SEC, Nanos};

/// Frames per second of the shared timeline. Positions on the wire are
/// frames at this rate; each node converts to its file's and device's rate.
pub const TIMELINE_RATE: u64 = 48_000;

/// Most channels (stems) a track can have.
pub const MAX_CHANNELS: usize = 8;

/// A position or length on the timeline, in frames at [`TIMELINE_RATE`].
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
pub struct Frames(pub u64);

/// A channel's volume in percent, `0..=100`.
///
/// The field is public because the type crosses the wire; a value above 100
/// decoded from a datagram is not rejected but read as 100 (see
/// [`Gain::clamped`]), so a buggy or hostile member cannot make a room louder
/// than full scale.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize,
)]
pub struct Gain(pub u8);

/// The agreed state of one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
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

/// The track a room plays, as the transport state records it: which one,
/// and how long it is (seeks beyond `length` are refused).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize,
)]
pub struct LoadedTrack {
    /// The track's content identity.
    pub id: TrackId,
    /// Its length in timeline frames.
    pub length: Frames,
}

/// The agreed state of every channel of the current track.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Transport {
    /// One entry per channel, indexed by `Channel::Stem(i)`.
    pub channels: heapless::Vec<ChannelState, MAX_CHANNELS>,
    /// The loaded track; `None` in a room where no track was ever loaded
    /// (its channel count then comes from the founder's configuration and
    /// positions are unbounded).
    pub track: Option<LoadedTrack>,
    /// How many decisions changed this state since the room's lineage
    /// began: every applied round with an effect adds one, and a room
    /// restored after a power cut carries on from the saved revision. It
    /// orders saved states (`crate::saved`), nothing else.
    pub revision: u64,
    /// The state was restored from a speaker's saved state when the room
    /// formed, and nobody has decided anything since: the mixer says so.
    pub restored: bool,
}

/// Whether the channels of a track play, as one value for the "All" channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunState {
    /// Every channel plays.
    Playing,
    /// Every channel is paused (also the state of a track with no channels).
    Paused,
    /// Some channels play and others are paused.
    Mixed,
}

/// The "All" channel as a user sees it: an aggregate of every channel,
/// computed on demand and never stored or voted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AllSummary {
    /// Playing, paused, or a mix of both.
    pub run: RunState,
    /// Integer mean (rounded down) of the channels' positions.
    pub position: Frames,
    /// Integer mean (rounded down) of the channels' gains.
    pub gain: Gain,
}

impl Frames {
    /// The start of the timeline.
    pub const ZERO: Frames = Frames(0);

    /// The number of whole frames that fit in `d`: `floor(d * rate / 1 s)`.
    ///
    /// Exact (computed in `u128`); it cannot overflow, since `u64::MAX` ns is
    /// fewer than `u64::MAX` frames, but saturates anyway so that a change of
    /// rate can never turn this into a wrap.
    #[must_use]
    pub const fn from_nanos(d: Nanos) -> Frames {
        let frames = (d.0 as u128) * (TIMELINE_RATE as u128) / (NANOS_PER_SEC as u128);
        Frames(saturate(frames))
    }

    /// The length of `self` frames in nanoseconds, rounded down (saturating).
    ///
    /// A frame lasts 20 833.3 ns, so the result is generally a fraction of a
    /// nanosecond short of the frame boundary and
    /// `Frames::from_nanos(f.to_nanos())` may be `f - 1`. Use
    /// [`Frames::to_nanos_ceil`] to find the instant a position is reached.
    #[must_use]
    pub const fn to_nanos(self) -> Nanos {
        let nanos = (self.0 as u128) * (NANOS_PER_SEC as u128) / (TIMELINE_RATE as u128);
        Nanos(saturate(nanos))
    }

    /// The shortest duration that contains `self` whole frames (rounded up,
    /// saturating): a channel playing from an anchor reaches
    /// `anchor_pos + self` exactly `self.to_nanos_ceil()` after `anchor_at`,
    /// so `Frames::from_nanos(f.to_nanos_ceil()) == f`.
    #[must_use]
    pub const fn to_nanos_ceil(self) -> Nanos {
        let nanos = ((self.0 as u128) * (NANOS_PER_SEC as u128)).div_ceil(TIMELINE_RATE as u128);
        Nanos(saturate(nanos))
    }

    /// `s` seconds of timeline (saturating).
    #[must_use]
    pub const fn from_secs(s: u64) -> Frames {
        Frames(s.saturating_mul(TIMELINE_RATE))
    }

    /// `self + other`, saturating at the end of the timeline.
    #[must_use]
    pub const fn saturating_add(self, other: Frames) -> Frames {
        Frames(self.0.saturating_add(other.0))
    }

    /// `self - other`, saturating at the start of the timeline.
    #[must_use]
    pub const fn saturating_sub(self, other: Frames) -> Frames {
        Frames(self.0.saturating_sub(other.0))
    }

    /// `ceil(d * rate / 1 s)`: what a playing channel's position drops by
    /// when extrapolated backwards over `d` (see
    /// [`ChannelState::position_at`]).
    const fn from_nanos_ceil(d: Nanos) -> Frames {
        let frames = ((d.0 as u128) * (TIMELINE_RATE as u128)).div_ceil(NANOS_PER_SEC as u128);
        Frames(saturate(frames))
    }
}

/// `x` as a `u64`, or `u64::MAX` if it does not fit.
const fn saturate(x: u128) -> u64 {
    if x > u64::MAX as u128 {
        u64::MAX
    } else {
        x as u64
    }
}

impl Gain {
    /// Full volume (100 %).
    pub const MAX: Gain = Gain(100);

    /// Silence.
    pub const MUTE: Gain = Gain(0);

    /// The volume of a room's channels before anyone set one.
    pub const DEFAULT: Gain = Gain(80);

    /// `percent` as a gain, or `None` above 100.
    #[must_use]
    pub const fn new(percent: u8) -> Option<Gain> {
        if percent <= Gain::MAX.0 {
            Some(Gain(percent))
        } else {
            None
        }
    }

    /// This gain with values above 100 (possible only from the wire) read as
    /// 100. Everything that acts on a gain goes through this first.
    #[must_use]
    pub const fn clamped(self) -> Gain {
        if self.0 > Gain::MAX.0 {
            Gain::MAX
        } else {
            self
        }
    }
}

impl ChannelState {
    /// A channel that holds `pos` from mesh instant `at` on, at volume `gain`.
    #[must_use]
    pub const fn paused_at(pos: Frames, at: MeshTime, gain: Gain) -> ChannelState {
        ChannelState {
            playing: false,
            anchor_pos: pos,
            anchor_at: at,
            gain,
        }
    }

    /// The channel's position at mesh instant `t`: the exact position
    /// `anchor_pos + (t - anchor_at) * rate` rounded down to a whole frame
    /// when playing, `anchor_pos` when paused.
    ///
    /// Before `anchor_at` a playing channel is extrapolated backwards (still
    /// rounding the exact value down, and saturating at frame 0), so the
    /// position never decreases as `t` grows, across the anchor too.
    #[must_use]
    pub const fn position_at(&self, t: MeshTime) -> Frames {
        if !self.playing {
            return self.anchor_pos;
        }
        if t.0 >= self.anchor_at.0 {
            self.anchor_pos
                .saturating_add(Frames::from_nanos(t.since(self.anchor_at)))
        } else {
            // floor(anchor - x) = anchor - ceil(x)
            self.anchor_pos
                .saturating_sub(Frames::from_nanos_ceil(self.anchor_at.since(t)))
        }
    }
}

impl Transport {
    /// A track of `channel_count` channels (at most [`MAX_CHANNELS`]; more
    /// are dropped), all paused at frame 0 from `at`, at volume `gain`
    /// (clamped to 100).
    #[must_use]
    pub fn new(channel_count: usize, at: MeshTime, gain: Gain) -> Transport {
        let mut channels = heapless::Vec::new();
        channels
            .resize(
                channel_count.min(MAX_CHANNELS),
                ChannelState::paused_at(Frames::ZERO, at, gain.clamped()),
            )
            .expect("the length is clamped to the capacity");
        Transport {
            channels,
            track: None,
            revision: 0,
            restored: false,
        }
    }

    /// `track` loaded with `channel_count` channels (clamped as in
    /// [`Transport::new`]), all paused at frame 0 from `at`, at `gain`.
    #[must_use]
    pub fn loaded(track: LoadedTrack, channel_count: usize, at: MeshTime, gain: Gain) -> Transport {
        Transport {
            track: Some(track),
            ..Transport::new(channel_count, at, gain)
        }
    }

    /// The loaded track's length, if a track is loaded: the last position a
    /// seek may name.
    #[must_use]
    pub fn length(&self) -> Option<Frames> {
        self.track.map(|t| t.length)
    }

    /// How many channels the track has.
    #[must_use]
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// The state of channel `i`, if the track has it.
    #[must_use]
    pub fn channel(&self, i: usize) -> Option<&ChannelState> {
        self.channels.get(i)
    }

    /// Applies one round's decided actions, taking effect at mesh instant
    /// `at` (the round's `apply_at`, the same on every member).
    ///
    /// Per channel: a seek, or a run change that flips playing/paused,
    /// re-anchors the channel at `at` (at the seek target, or else at its
    /// position at `at`) with the new run state. A seek always re-anchors,
    /// even to the current position, because it names an exact frame. Play
    /// on a playing channel or pause on a paused one, without a seek, changes
    /// nothing: re-anchoring would only throw away the sub-frame remainder. A
    /// gain is set (clamped to 100) without re-anchoring.
    ///
    /// Channels beyond the choice's length are left alone and entries beyond
    /// the track's channel count are ignored, so a choice made for another
    /// channel count cannot panic here.
    ///
    /// A load replaces the whole state: the new track's channels, paused at
    /// frame 0 from `at`, at the room's current volume (the All channel's
    /// gain, so a room turned down stays down; [`Gain::DEFAULT`] when the
    /// old track had no channels). The choice's channel entries are then
    /// ignored: they were decided for the old track.
    ///
    /// A round that changes anything (any load does) adds one to
    /// [`Transport::revision`] and clears [`Transport::restored`].
    pub fn apply(&mut self, choice: &Choice, at: MeshTime) {
        if choice.is_empty() {
            return;
        }
        let before = self.clone();
        self.apply_choice(choice, at);
        // A load rebuilds the state: the lineage's count carries over.
        (self.revision, self.restored) = (before.revision, before.restored);
        if *self != before || choice.load.is_some() {
            // A round that changed something: one more revision, and the
            // state is the room's own now, no longer the restored one.
            self.revision = self.revision.saturating_add(1);
            self.restored = false;
        }
    }

    fn apply_choice(&mut self, choice: &Choice, at: MeshTime) {
        if let Some(load) = choice.load {
            let gain = if self.channels.is_empty() {
                Gain::DEFAULT
            } else {
                self.summary(at).gain
            };
            *self = Transport::loaded(
                LoadedTrack {
                    id: load.track,
                    length: load.length,
                },
                usize::from(load.channels),
                at,
                gain,
            );
            return;
        }
        for (state, change) in self.channels.iter_mut().zip(choice.channels.iter()) {
            let playing = change.run.unwrap_or(state.playing);
            if change.seek.is_some() || playing != state.playing {
                state.anchor_pos = match change.seek {
                    Some(to) => to,
                    None => state.position_at(at),
                };
                state.anchor_at = at;
                state.playing = playing;
            }
            if let Some(gain) = change.gain {
                state.gain = gain.clamped();
            }
        }
    }

    /// The "All" channel at mesh instant `t`: [`RunState::Playing`] if every
    /// channel plays, [`RunState::Paused`] if every channel is paused,
    /// [`RunState::Mixed`] otherwise; position and gain are integer means,
    /// rounded down.
    ///
    /// A track with no channels is summarised as paused at frame 0 with gain
    /// 0: nothing plays and nothing is audible, and it is the value a fresh
    /// empty [`Transport`] would have whatever gain it was created with.
    #[must_use]
    pub fn summary(&self, t: MeshTime) -> AllSummary {
        let count = self.channels.len();
        if count == 0 {
            return AllSummary {
                run: RunState::Paused,
                position: Frames::ZERO,
                gain: Gain::MUTE,
            };
        }
        let playing = self.channels.iter().filter(|c| c.playing).count();
        let run = if playing == count {
            RunState::Playing
        } else if playing == 0 {
            RunState::Paused
        } else {
            RunState::Mixed
        };
        // u128 and u32 sums cannot overflow with at most MAX_CHANNELS terms,
        // and a mean never exceeds its largest term, so the casts back are exact.
        let positions: u128 = self
            .channels
            .iter()
            .map(|c| u128::from(c.position_at(t).0))
            .sum();
        let gains: u32 = self
            .channels
            .iter()
            .map(|c| u32::from(c.gain.clamped().0))
            .sum();
        let n = count as u128;
        AllSummary {
            run,
            position: Frames(saturate(positions / n)),
            gain: Gain(u8::try_from(gains / n as u32).unwrap_or(Gain::MAX.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;
    use crate::choice::ChannelChoice;

    const T0: MeshTime = MeshTime(5_000_000_000);

    fn playing_at(pos: Frames, at: MeshTime) -> ChannelState {
        ChannelState {
            playing: true,
            ..ChannelState::paused_at(pos, at, Gain::MAX)
        }
    }

    /// A choice with `change` on every one of `n` channels.
    fn choice_all(n: usize, change: ChannelChoice) -> Choice {
        let mut choice = Choice::default();
        for _ in 0..n {
            choice.channels.push(change).unwrap();
        }
        choice
    }

    /// A choice with `change` on channel `i` of `n` and nothing elsewhere.
    fn choice_one(n: usize, i: usize, change: ChannelChoice) -> Choice {
        let mut choice = choice_all(n, ChannelChoice::default());
        choice.channels[i] = change;
        choice
    }

    const PLAY: ChannelChoice = ChannelChoice {
        run: Some(true),
        seek: None,
        gain: None,
    };
    const PAUSE: ChannelChoice = ChannelChoice {
        run: Some(false),
        seek: None,
        gain: None,
    };

    fn volume(g: u8) -> ChannelChoice {
        ChannelChoice {
            gain: Some(Gain(g)),
            ..ChannelChoice::default()
        }
    }

    fn seek(to: u64, run: Option<bool>) -> ChannelChoice {
        ChannelChoice {
            run,
            seek: Some(Frames(to)),
            gain: None,
        }
    }

    #[test]
    fn conversions_are_exact_at_whole_units() {
        assert_eq!(Frames::from_nanos(Nanos::from_secs(1)), Frames(48_000));
        assert_eq!(Frames::from_secs(1), Frames(48_000));
        assert_eq!(Frames::from_nanos(Nanos::from_millis(100)), Frames(4_800));
        assert_eq!(Frames(48_000).to_nanos(), Nanos::from_secs(1));
        assert_eq!(Frames(48_000).to_nanos_ceil(), Nanos::from_secs(1));
        // 3 frames = 62 500 ns exactly.
        assert_eq!(Frames(3).to_nanos(), Nanos(62_500));
        assert_eq!(Frames::from_nanos(Nanos(62_500)), Frames(3));
    }

    #[test]
    fn conversions_round_down_between_frames() {
        // One frame lasts 20 833.33 ns.
        assert_eq!(Frames::from_nanos(Nanos(20_833)), Frames(0));
        assert_eq!(Frames::from_nanos(Nanos(20_834)), Frames(1));
        assert_eq!(Frames(1).to_nanos(), Nanos(20_833));
        assert_eq!(Frames(1).to_nanos_ceil(), Nanos(20_834));
    }

    #[test]
    fn conversions_saturate() {
        assert_eq!(Frames(u64::MAX).to_nanos(), Nanos(u64::MAX));
        assert_eq!(Frames(u64::MAX).to_nanos_ceil(), Nanos(u64::MAX));
        assert_eq!(Frames::from_secs(u64::MAX), Frames(u64::MAX));
        // u64::MAX ns is 18 446 744 073.7 s; times 48 000, rounded down.
        assert_eq!(
            Frames::from_nanos(Nanos(u64::MAX)),
            Frames(885_443_715_538_058)
        );
    }

    #[test]
    fn gain_bounds() {
        assert_eq!(Gain::new(0), Some(Gain(0)));
        assert_eq!(Gain::new(100), Some(Gain::MAX));
        assert_eq!(Gain::new(101), None);
        assert_eq!(Gain(255).clamped(), Gain::MAX);
        assert_eq!(Gain(101).clamped(), Gain::MAX);
        assert_eq!(Gain(37).clamped(), Gain(37));
    }

    #[test]
    fn one_second_of_play_is_exactly_48000_frames() {
        let c = playing_at(Frames(1_000), T0);
        assert_eq!(c.position_at(T0), Frames(1_000));
        assert_eq!(c.position_at(T0.plus(Nanos::from_secs(1))), Frames(49_000));
        // An hour later, still exact.
        assert_eq!(
            c.position_at(T0.plus(Nanos::from_secs(3_600))),
            Frames(1_000 + 3_600 * 48_000)
        );
    }

    #[test]
    fn paused_position_does_not_move() {
        let c = ChannelState::paused_at(Frames(777), T0, Gain::MAX);
        assert_eq!(c.position_at(MeshTime(0)), Frames(777));
        assert_eq!(c.position_at(T0.plus(Nanos::from_secs(60))), Frames(777));
    }

    #[test]
    fn playing_position_extrapolates_backwards_and_saturates_at_zero() {
        let c = playing_at(Frames(48_000), T0);
        assert_eq!(c.position_at(MeshTime(T0.0 - 500_000_000)), Frames(24_000));
        // 1 ns before the anchor the exact position is 47 999.99995.
        assert_eq!(c.position_at(MeshTime(T0.0 - 1)), Frames(47_999));
        assert_eq!(c.position_at(MeshTime(0)), Frames(0));
    }

    #[test]
    fn new_transport_is_paused_at_zero_and_clamped() {
        let t = Transport::new(3, T0, Gain(80));
        assert_eq!(t.channel_count(), 3);
        for i in 0..3 {
            assert_eq!(
                t.channel(i),
                Some(&ChannelState::paused_at(Frames::ZERO, T0, Gain(80)))
            );
        }
        assert_eq!(t.channel(3), None);
        assert_eq!(
            Transport::new(MAX_CHANNELS + 5, T0, Gain::MAX).channel_count(),
            MAX_CHANNELS
        );
        assert_eq!(
            Transport::new(1, T0, Gain(200)).channel(0).unwrap().gain,
            Gain::MAX
        );
    }

    #[test]
    fn play_then_pause_holds_the_position_reached() {
        let mut t = Transport::new(2, T0, Gain::MAX);
        t.apply(&choice_all(2, PLAY), T0);
        let later = T0.plus(Nanos::from_millis(2_500));
        t.apply(&choice_one(2, 0, PAUSE), later);
        let paused = t.channel(0).unwrap();
        assert!(!paused.playing);
        assert_eq!(paused.anchor_pos, Frames(120_000));
        assert_eq!(paused.anchor_at, later);
        assert_eq!(
            paused.position_at(later.plus(Nanos::from_secs(10))),
            Frames(120_000)
        );
        // The other channel still plays from its original anchor.
        assert_eq!(t.channel(1), Some(&playing_at(Frames::ZERO, T0)));
        // Resume: continues from where it stopped.
        let resume = later.plus(Nanos::from_secs(10));
        t.apply(&choice_one(2, 0, PLAY), resume);
        assert_eq!(
            t.channel(0)
                .unwrap()
                .position_at(resume.plus(Nanos::from_secs(1))),
            Frames(168_000)
        );
    }

    #[test]
    fn redundant_play_or_pause_does_not_reanchor() {
        let mut t = Transport::new(1, T0, Gain::MAX);
        let before = t.clone();
        t.apply(&choice_all(1, PAUSE), T0.plus(Nanos(12_345)));
        assert_eq!(t, before);

        t.apply(&choice_all(1, PLAY), T0);
        let playing = t.clone();
        t.apply(&choice_all(1, PLAY), T0.plus(Nanos(31_337)));
        assert_eq!(t, playing);
    }

    #[test]
    fn seek_while_paused_stays_paused_at_target() {
        let mut t = Transport::new(1, T0, Gain::MAX);
        let at = T0.plus(Nanos::from_secs(3));
        t.apply(&choice_all(1, seek(96_000, None)), at);
        assert_eq!(
            t.channel(0),
            Some(&ChannelState::paused_at(Frames(96_000), at, Gain::MAX))
        );
    }

    #[test]
    fn seek_while_playing_keeps_playing_from_target() {
        let mut t = Transport::new(1, T0, Gain::MAX);
        t.apply(&choice_all(1, PLAY), T0);
        let at = T0.plus(Nanos::from_secs(3));
        t.apply(&choice_all(1, seek(10, None)), at);
        assert_eq!(t.channel(0), Some(&playing_at(Frames(10), at)));
    }

    #[test]
    fn seek_with_pause_or_play_sets_both() {
        let at = T0.plus(Nanos::from_secs(1));

        let mut t = Transport::new(1, T0, Gain::MAX);
        t.apply(&choice_all(1, PLAY), T0);
        t.apply(&choice_all(1, seek(500, Some(false))), at);
        assert_eq!(
            t.channel(0),
            Some(&ChannelState::paused_at(Frames(500), at, Gain::MAX))
        );

        let mut t = Transport::new(1, T0, Gain::MAX);
        t.apply(&choice_all(1, seek(500, Some(true))), at);
        assert_eq!(t.channel(0), Some(&playing_at(Frames(500), at)));
    }

    #[test]
    fn seek_to_current_position_still_reanchors() {
        let mut t = Transport::new(1, T0, Gain::MAX);
        t.apply(&choice_all(1, PLAY), T0);
        // 1.5 frames in: position 1, remainder half a frame.
        let at = T0.plus(Nanos(31_250));
        t.apply(&choice_all(1, seek(1, None)), at);
        assert_eq!(t.channel(0), Some(&playing_at(Frames(1), at)));
    }

    #[test]
    fn volume_sets_gain_without_reanchoring() {
        let mut t = Transport::new(2, T0, Gain::MAX);
        t.apply(&choice_all(2, PLAY), T0);
        t.apply(&choice_one(2, 1, volume(40)), T0.plus(Nanos(1)));
        assert_eq!(t.channel(0), Some(&playing_at(Frames::ZERO, T0)));
        assert_eq!(
            t.channel(1),
            Some(&ChannelState {
                gain: Gain(40),
                ..playing_at(Frames::ZERO, T0)
            })
        );
        // A gain above 100 from the wire is applied as 100.
        t.apply(&choice_one(2, 1, volume(250)), T0.plus(Nanos(2)));
        assert_eq!(t.channel(1).unwrap().gain, Gain::MAX);
    }

    #[test]
    fn many_volume_changes_cause_no_drift() {
        let mut t = Transport::new(1, T0, Gain::MAX);
        t.apply(&choice_all(1, PLAY), T0);
        // 10 000 volume changes at instants that fall between frames, 100 ms
        // plus an odd number of nanoseconds apart.
        let mut at = T0;
        for i in 0..10_000u64 {
            at = at.plus(Nanos(100_000_000 + 7_919 + i % 13));
            t.apply(&choice_all(1, volume((i % 101) as u8)), at);
        }
        let c = t.channel(0).unwrap();
        assert_eq!((c.anchor_pos, c.anchor_at), (Frames::ZERO, T0));
        let elapsed = at.since(T0);
        assert_eq!(c.position_at(at), Frames::from_nanos(elapsed));
        assert_eq!(
            c.position_at(T0.plus(Nanos::from_secs(1_000))),
            Frames(48_000_000)
        );
    }

    #[test]
    fn apply_ignores_length_mismatch() {
        let mut t = Transport::new(2, T0, Gain::MAX);
        t.apply(&choice_all(1, PLAY), T0);
        assert!(t.channel(0).unwrap().playing);
        assert!(!t.channel(1).unwrap().playing);
        t.apply(&choice_all(MAX_CHANNELS, PLAY), T0);
        assert_eq!(t.channel_count(), 2);
        assert!(t.channel(1).unwrap().playing);
        let before = t.clone();
        t.apply(&Choice::default(), T0.plus(Nanos::from_secs(1)));
        assert_eq!(t, before);
    }

    #[test]
    fn summary_of_uniform_channels() {
        let mut t = Transport::new(3, T0, Gain(60));
        assert_eq!(
            t.summary(T0.plus(Nanos::from_secs(9))),
            AllSummary {
                run: RunState::Paused,
                position: Frames::ZERO,
                gain: Gain(60)
            }
        );
        t.apply(&choice_all(3, PLAY), T0);
        assert_eq!(
            t.summary(T0.plus(Nanos::from_secs(2))),
            AllSummary {
                run: RunState::Playing,
                position: Frames(96_000),
                gain: Gain(60)
            }
        );
    }

    #[test]
    fn summary_of_mixed_channels_uses_floor_means() {
        let mut t = Transport::new(3, T0, Gain::MAX);
        t.apply(&choice_one(3, 0, seek(10, Some(true))), T0);
        t.apply(&choice_one(3, 1, seek(3, None)), T0);
        t.apply(&choice_one(3, 1, volume(0)), T0);
        t.apply(&choice_one(3, 2, volume(1)), T0);
        // Positions 10, 3, 0 => 13 / 3 = 4; gains 100, 0, 1 => 101 / 3 = 33.
        assert_eq!(
            t.summary(T0),
            AllSummary {
                run: RunState::Mixed,
                position: Frames(4),
                gain: Gain(33)
            }
        );
    }

    #[test]
    fn summary_of_huge_positions_does_not_overflow() {
        let mut t = Transport::new(MAX_CHANNELS, T0, Gain::MAX);
        t.apply(&choice_all(MAX_CHANNELS, seek(u64::MAX, None)), T0);
        assert_eq!(t.summary(T0).position, Frames(u64::MAX));
    }

    #[test]
    fn summary_of_empty_track() {
        assert_eq!(
            Transport::new(0, T0, Gain::MAX).summary(T0),
            AllSummary {
                run: RunState::Paused,
                position: Frames::ZERO,
                gain: Gain::MUTE
            }
        );
    }

    proptest! {
        #[test]
        fn ceil_nanos_round_trip(f in 0u64..=u64::MAX / 20_834) {
            // to_nanos_ceil is the first instant at which `f` frames have passed.
            let reached = Frames(f).to_nanos_ceil();
            prop_assert_eq!(Frames::from_nanos(reached), Frames(f));
            if f > 0 {
                prop_assert_eq!(Frames::from_nanos(Nanos(reached.0 - 1)), Frames(f - 1));
            }
        }

        #[test]
        fn floor_nanos_never_overshoots(d in any::<u64>()) {
            prop_assert!(Frames::from_nanos(Nanos(d)).to_nanos() <= Nanos(d));
        }

        #[test]
        fn position_is_monotonic_in_time(
            anchor_pos in any::<u64>(),
            anchor_at in any::<u64>(),
            t in any::<u64>(),
            dt in 0u64..10_000_000_000,
        ) {
            let c = playing_at(Frames(anchor_pos), MeshTime(anchor_at));
            let t2 = MeshTime(t).plus(Nanos(dt));
            prop_assert!(c.position_at(MeshTime(t)) <= c.position_at(t2));
        }

        #[test]
        fn position_equals_floor_of_exact_value(
            anchor_pos in 0u64..1 << 40,
            anchor_at in 0u64..1 << 50,
            t in 0u64..1 << 50,
        ) {
            let c = playing_at(Frames(anchor_pos), MeshTime(anchor_at));
            let exact_times_1e9 = i128::from(anchor_pos) * 1_000_000_000
                + (i128::from(t) - i128::from(anchor_at)) * 48_000;
            let expected = exact_times_1e9.div_euclid(1_000_000_000).max(0);
            prop_assert_eq!(i128::from(c.position_at(MeshTime(t)).0), expected);
        }

        #[test]
        fn volume_changes_never_move_the_timeline(
            gains in proptest::collection::vec((1u64..1_000_000_000, any::<u8>()), 1..50),
        ) {
            let mut t = Transport::new(1, T0, Gain::MAX);
            t.apply(&choice_all(1, PLAY), T0);
            let mut at = T0;
            for (dt, g) in gains {
                at = at.plus(Nanos(dt));
                t.apply(&choice_all(1, volume(g)), at);
                prop_assert_eq!(t.channel(0).unwrap().gain, Gain(g).clamped());
            }
            prop_assert_eq!(t.channel(0).unwrap().position_at(at), Frames::from_nanos(at.since(T0)));
        }
    }
}
