//! The deterministic choice function: what a round's votes decide.
//!
//! Every member runs [`choose`] on the same sealed vote set of a round and
//! applies the result with [`Transport::apply`](crate::transport::Transport::apply)
//! at the round's `apply_at`; agreement on the playing state follows from
//! agreement on the set. The function is not a majority vote: each kind of
//! action has a precedence rule (pause beats play, the furthest seek wins,
//! the quietest volume wins, the most specific channel wins, a load replaces
//! everything), so one member's vote is enough to act and simultaneous
//! conflicting votes still resolve.
//!
//! Invariant: the result is a pure function of the *set* of votes, the
//! channel count and the loaded track's length. It must not depend on the order of the slice, on
//! duplicates, on the local clock or on which member computes it. Any change
//! to these rules changes what a room plays and is a protocol change: it
//! needs a protocol version bump, or old and new members will diverge.
//!
//! Specified in `docs/protocol.md`, section "Choice function".

use crate::content::TrackId;
use crate::event::{Event, Vote};
use crate::ids::Channel;
use crate::transport::{Frames, Gain, MAX_CHANNELS};

/// What one round decided for one channel. `None` leaves that aspect alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ChannelChoice {
    /// `Some(true)`: play; `Some(false)`: pause.
    pub run: Option<bool>,
    /// Jump to this timeline position.
    pub seek: Option<Frames>,
    /// Set this gain (at most [`Gain::MAX`]).
    pub gain: Option<Gain>,
}

/// A track a round decided to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LoadChoice {
    /// The track.
    pub track: TrackId,
    /// Its channel count, `1..=MAX_CHANNELS`.
    pub channels: u8,
    /// Its length in timeline frames.
    pub length: Frames,
}

/// What one round decided, per channel: entry `i` is for `Channel::Stem(i)`.
///
/// [`choose`] returns one entry per channel of the track (the `All` channel
/// is already spread over them); a round in which nobody voted gives entries
/// that are all [empty](ChannelChoice::is_empty). A round that loads a track
/// has `load` set and no channel entries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Choice {
    /// The track to load instead of the current one, if any.
    pub load: Option<LoadChoice>,
    /// One entry per channel, indexed by stem.
    pub channels: heapless::Vec<ChannelChoice, MAX_CHANNELS>,
}

impl ChannelChoice {
    /// Whether this leaves the channel as it was.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.run.is_none() && self.seek.is_none() && self.gain.is_none()
    }
}

impl Choice {
    /// Whether nothing is asked to change.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.load.is_none() && self.channels.iter().all(ChannelChoice::is_empty)
    }
}

/// Decides what the votes of one round do to a track of `channel_count`
/// channels (at most [`MAX_CHANNELS`]; more are ignored) and `length`
/// frames (`None`: no track loaded, positions unbounded).
///
/// The rules, each explained in `docs/protocol.md` ("Choice function"):
/// 0. Per member, only the vote with the lowest `seq` counts. If a member has
///    two *different* events under that `seq` it is equivocating and none of
///    its votes count this round. Votes for a stem the track lacks are
///    ignored; a gain above 100 counts as 100.
/// 1. A vote on `Channel::All` acts on every channel, except that on a
///    channel with a stem vote of the same kind (play/pause, seek or volume)
///    the stem votes of that kind replace the `All` votes of that kind.
/// 2. Pause beats play.
/// 3. Of several seeks, the greatest target wins.
/// 4. Of several volumes, the lowest gain wins.
/// 5. Different kinds combine: a seek with a pause or a play sets both, and a
///    volume combines with anything.
/// 6. A seek beyond `length` is refused (ignored); a seek to `length`
///    itself (the end) is allowed.
/// 7. A load with 1 to [`MAX_CHANNELS`] channels replaces everything: if
///    the round counts one, every other vote of the round is ignored (they
///    were cast for the track being replaced, whose channel numbers mean
///    nothing in the new one). Of several loads, the greatest
///    `(track, channels, length)` wins. Loads with 0 or too many channels
///    are ignored.
///
/// Cost is quadratic in `votes.len()` (rule 0 compares every pair) and needs
/// no allocation; the caller bounds the set (one vote per member per round).
#[must_use]
pub fn choose(votes: &[Vote], channel_count: usize, length: Option<Frames>) -> Choice {
    let counted = || votes.iter().filter(|v| counts(v, votes));
    // Rule 7: a load, if any, is the whole decision.
    let load = counted()
        .filter_map(|v| match v.event {
            Event::Load {
                track,
                channels,
                length,
            } if (1..=MAX_CHANNELS).contains(&usize::from(channels)) => Some(LoadChoice {
                track,
                channels,
                length,
            }),
            _ => None,
        })
        .max();
    if load.is_some() {
        return Choice {
            load,
            channels: heapless::Vec::new(),
        };
    }
    let count = channel_count.min(MAX_CHANNELS);
    let mut all = Merged::default();
    let mut stems = [Merged::default(); MAX_CHANNELS];
    for vote in counted() {
        // Rule 6: past the end is refused.
        if let (Event::Seek { to, .. }, Some(end)) = (vote.event, length)
            && to > end
        {
            continue;
        }
        let merged = match vote.event.channel() {
            Channel::All => &mut all,
            Channel::Stem(i) => match stems[..count].get_mut(usize::from(i)) {
                Some(stem) => stem,
                None => continue,
            },
        };
        merged.add(&vote.event);
    }
    let mut choice = Choice::default();
    for stem in &stems[..count] {
        // Rule 1: kind by kind, the stem's own votes win over All's.
        let channel = ChannelChoice {
            run: stem.run().or(all.run()),
            seek: stem.seek.or(all.seek),
            gain: stem.gain.or(all.gain),
        };
        choice
            .channels
            .push(channel)
            .expect("count is clamped to MAX_CHANNELS");
    }
    choice
}

/// Rule 0: whether `vote` is its member's one vote of the round in `votes`.
///
/// Exact copies (a vote relayed by several members) count as one vote;
/// since every merge rule is idempotent, counting each copy is the same.
fn counts(vote: &Vote, votes: &[Vote]) -> bool {
    votes
        .iter()
        .all(|other| other.member != vote.member || other.seq > vote.seq || other == vote)
}

/// The votes of one channel (or of `All`), each kind merged by its rule.
/// Every merge is commutative and idempotent, which is what makes
/// [`choose`] independent of order and duplicates.
#[derive(Clone, Copy, Debug, Default)]
struct Merged {
    play: bool,
    pause: bool,
    seek: Option<Frames>,
    gain: Option<Gain>,
}

impl Merged {
    fn add(&mut self, event: &Event) {
        match *event {
            Event::Play { .. } => self.play = true,
            Event::Pause { .. } => self.pause = true,
            // Rule 3: the furthest seek wins; a max needs no tie-break by
            // member or arrival order.
            Event::Seek { to, .. } => self.seek = self.seek.max(Some(to)),
            // Rule 4: the quietest wins; `Option`'s order puts `None` first,
            // so take the min of present values only.
            Event::Volume { gain, .. } => {
                let gain = gain.clamped();
                self.gain = Some(self.gain.map_or(gain, |g| g.min(gain)));
            }
            // Handled before any channel is merged (rule 7).
            Event::Load { .. } => {}
        }
    }

    /// Rule 2: pause beats play.
    fn run(&self) -> Option<bool> {
        if self.pause {
            Some(false)
        } else if self.play {
            Some(true)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;
    use crate::ids::MemberId;
    use crate::time::MeshTime;
    use crate::transport::Transport;

    // ---- Helpers -------------------------------------------------------

    /// The choice for a room with no track loaded (unbounded positions):
    /// what most tests below exercise.
    fn choose(votes: &[Vote], channel_count: usize) -> Choice {
        super::choose(votes, channel_count, None)
    }

    fn vote(member: u64, seq: u32, event: Event) -> Vote {
        Vote {
            member: MemberId(member),
            seq,
            event,
        }
    }

    /// Votes with one event each from members 1, 2, 3, ... (all `seq` 1).
    fn votes(events: &[Event]) -> Vec<Vote> {
        events
            .iter()
            .zip(1..)
            .map(|(&event, member)| vote(member, 1, event))
            .collect()
    }

    fn stem(i: u8) -> Channel {
        Channel::Stem(i)
    }
    fn play(channel: Channel) -> Event {
        Event::Play { channel }
    }
    fn pause(channel: Channel) -> Event {
        Event::Pause { channel }
    }
    fn seek(channel: Channel, to: u64) -> Event {
        Event::Seek {
            channel,
            to: Frames(to),
        }
    }
    fn volume(channel: Channel, gain: u8) -> Event {
        Event::Volume {
            channel,
            gain: Gain(gain),
        }
    }

    const NONE: ChannelChoice = ChannelChoice {
        run: None,
        seek: None,
        gain: None,
    };
    const PLAY: ChannelChoice = ChannelChoice {
        run: Some(true),
        ..NONE
    };
    const PAUSE: ChannelChoice = ChannelChoice {
        run: Some(false),
        ..NONE
    };
    fn seek_to(to: u64) -> ChannelChoice {
        ChannelChoice {
            seek: Some(Frames(to)),
            ..NONE
        }
    }
    fn gain(g: u8) -> ChannelChoice {
        ChannelChoice {
            gain: Some(Gain(g)),
            ..NONE
        }
    }

    /// The choice for the event set, checked against the reference model.
    fn decide(events: &[Event], channel_count: usize) -> Vec<ChannelChoice> {
        let votes = votes(events);
        let choice = choose(&votes, channel_count);
        assert_eq!(choice, reference(&votes, channel_count, None));
        choice.channels.to_vec()
    }

    /// Calls `f` with every permutation of `items` (Heap's algorithm,
    /// iterative), the identity first.
    fn for_each_permutation<T: Clone>(items: &[T], mut f: impl FnMut(&[T])) {
        let mut a = items.to_vec();
        let mut c = vec![0; a.len()];
        f(&a);
        let mut i = 1;
        while i < a.len() {
            if c[i] < i {
                let j = if i % 2 == 0 { 0 } else { c[i] };
                a.swap(j, i);
                f(&a);
                c[i] += 1;
                i = 1;
            } else {
                c[i] = 0;
                i += 1;
            }
        }
    }

    // ---- Reference model: the spec, written as plainly as possible -----

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Run,
        Seek,
        Volume,
        Load,
    }

    fn kind(event: &Event) -> Kind {
        match event {
            Event::Play { .. } | Event::Pause { .. } => Kind::Run,
            Event::Seek { .. } => Kind::Seek,
            Event::Volume { .. } => Kind::Volume,
            Event::Load { .. } => Kind::Load,
        }
    }

    /// Rule 0, by sorting and grouping instead of pairwise comparison.
    fn counted(votes: &[Vote], channel_count: usize) -> Vec<Event> {
        let mut sorted = votes.to_vec();
        sorted.sort();
        sorted.dedup();
        let mut out = Vec::new();
        for group in sorted.chunk_by(|a, b| a.member == b.member) {
            let lowest: Vec<&Vote> = group.iter().filter(|v| v.seq == group[0].seq).collect();
            if lowest.len() == 1 {
                out.push(lowest[0].event);
            }
        }
        let in_range = |e: &Event| match e.channel() {
            Channel::All => true,
            Channel::Stem(i) => usize::from(i) < channel_count.min(MAX_CHANNELS),
        };
        out.into_iter().filter(in_range).collect()
    }

    /// Rule 1: the events of `kind` that act on stem `i`.
    fn effective(events: &[Event], i: usize, k: Kind) -> Vec<Event> {
        let of = |channel: Channel| -> Vec<Event> {
            events
                .iter()
                .filter(|e| kind(e) == k && e.channel() == channel)
                .copied()
                .collect()
        };
        let specific = of(Channel::Stem(u8::try_from(i).unwrap()));
        if specific.is_empty() {
            of(Channel::All)
        } else {
            specific
        }
    }

    fn reference(votes: &[Vote], channel_count: usize, length: Option<Frames>) -> Choice {
        let events = counted(votes, channel_count);
        // Rule 7: the greatest valid load, alone.
        let mut loads: Vec<LoadChoice> = events
            .iter()
            .filter_map(|e| match *e {
                Event::Load {
                    track,
                    channels,
                    length,
                } if channels >= 1 && usize::from(channels) <= MAX_CHANNELS => Some(LoadChoice {
                    track,
                    channels,
                    length,
                }),
                _ => None,
            })
            .collect();
        loads.sort();
        if let Some(&load) = loads.last() {
            return Choice {
                load: Some(load),
                channels: heapless::Vec::new(),
            };
        }
        // Rule 6: seeks past the end never happened.
        let events: Vec<Event> = events
            .into_iter()
            .filter(|e| !matches!((e, length), (Event::Seek { to, .. }, Some(end)) if *to > end))
            .collect();
        let mut choice = Choice::default();
        for i in 0..channel_count.min(MAX_CHANNELS) {
            let runs = effective(&events, i, Kind::Run);
            let run = if runs.iter().any(|e| matches!(e, Event::Pause { .. })) {
                Some(false)
            } else if runs.is_empty() {
                None
            } else {
                Some(true)
            };
            let seek = effective(&events, i, Kind::Seek)
                .iter()
                .filter_map(|e| match e {
                    Event::Seek { to, .. } => Some(*to),
                    _ => None,
                })
                .max();
            let gain = effective(&events, i, Kind::Volume)
                .iter()
                .filter_map(|e| match e {
                    Event::Volume { gain, .. } => Some(gain.clamped()),
                    _ => None,
                })
                .min();
            choice
                .channels
                .push(ChannelChoice { run, seek, gain })
                .unwrap();
        }
        choice
    }

    // ---- Primitives alone ----------------------------------------------

    #[test]
    fn no_votes_change_nothing() {
        let choice = choose(&[], 3);
        assert_eq!(choice.channels.len(), 3);
        assert!(choice.is_empty());
        assert!(choose(&[], 0).channels.is_empty());
    }

    #[test]
    fn play_alone() {
        assert_eq!(decide(&[play(stem(1))], 3), [NONE, PLAY, NONE]);
        assert_eq!(decide(&[play(Channel::All)], 3), [PLAY; 3]);
    }

    #[test]
    fn pause_alone() {
        assert_eq!(decide(&[pause(stem(0))], 2), [PAUSE, NONE]);
        assert_eq!(decide(&[pause(Channel::All)], 2), [PAUSE; 2]);
    }

    #[test]
    fn seek_alone() {
        assert_eq!(decide(&[seek(stem(2), 960)], 3), [NONE, NONE, seek_to(960)]);
        assert_eq!(decide(&[seek(Channel::All, 960)], 2), [seek_to(960); 2]);
    }

    #[test]
    fn volume_alone() {
        assert_eq!(decide(&[volume(stem(0), 30)], 2), [gain(30), NONE]);
        assert_eq!(decide(&[volume(Channel::All, 30)], 2), [gain(30); 2]);
    }

    #[test]
    fn choice_is_not_empty_when_one_channel_changes() {
        let choice = choose(&votes(&[volume(stem(1), 5)]), 3);
        assert!(!choice.is_empty());
        assert!(choice.channels[0].is_empty());
        assert!(!choice.channels[1].is_empty());
    }

    // ---- Conflicting pairs ---------------------------------------------

    #[test]
    fn two_seeks_greatest_target_wins() {
        assert_eq!(
            decide(&[seek(stem(0), 100), seek(stem(0), 50)], 1),
            [seek_to(100)]
        );
        assert_eq!(
            decide(&[seek(Channel::All, 7), seek(Channel::All, 70_000)], 2),
            [seek_to(70_000); 2]
        );
        // Same target from two members: one seek.
        assert_eq!(
            decide(&[seek(stem(0), 9), seek(stem(0), 9)], 1),
            [seek_to(9)]
        );
    }

    #[test]
    fn seek_and_pause_pause_at_target() {
        let expected = ChannelChoice {
            run: Some(false),
            seek: Some(Frames(48_000)),
            gain: None,
        };
        assert_eq!(
            decide(&[seek(stem(0), 48_000), pause(stem(0))], 1),
            [expected]
        );
        assert_eq!(
            decide(&[pause(Channel::All), seek(Channel::All, 48_000)], 2),
            [expected; 2]
        );
    }

    #[test]
    fn seek_and_play_play_from_target() {
        let expected = ChannelChoice {
            run: Some(true),
            seek: Some(Frames(5)),
            gain: None,
        };
        assert_eq!(decide(&[play(stem(0)), seek(stem(0), 5)], 1), [expected]);
    }

    #[test]
    fn play_and_pause_pause_wins() {
        assert_eq!(decide(&[play(stem(0)), pause(stem(0))], 1), [PAUSE]);
        assert_eq!(decide(&[pause(stem(0)), play(stem(0))], 1), [PAUSE]);
        assert_eq!(
            decide(&[play(Channel::All), pause(Channel::All)], 2),
            [PAUSE; 2]
        );
    }

    #[test]
    fn two_volumes_lowest_wins() {
        assert_eq!(
            decide(&[volume(stem(0), 80), volume(stem(0), 20)], 1),
            [gain(20)]
        );
        assert_eq!(
            decide(&[volume(Channel::All, 0), volume(Channel::All, 100)], 2),
            [gain(0); 2]
        );
    }

    #[test]
    fn volume_on_a_channel_and_on_all() {
        // The stem keeps its own gain even though All asked for less; the
        // other channels take All's.
        assert_eq!(
            decide(&[volume(stem(1), 90), volume(Channel::All, 10)], 3),
            [gain(10), gain(90), gain(10)]
        );
        assert_eq!(
            decide(&[volume(Channel::All, 90), volume(stem(1), 10)], 3),
            [gain(90), gain(10), gain(90)]
        );
    }

    #[test]
    fn volume_combines_with_every_kind() {
        let expected = ChannelChoice {
            run: Some(false),
            seek: Some(Frames(3)),
            gain: Some(Gain(42)),
        };
        assert_eq!(
            decide(&[volume(stem(0), 42), seek(stem(0), 3), pause(stem(0))], 1),
            [expected]
        );
    }

    #[test]
    fn all_vs_specific_run() {
        // A stem-specific play keeps that stem playing through a pause on All.
        assert_eq!(
            decide(&[pause(Channel::All), play(stem(1))], 3),
            [PAUSE, PLAY, PAUSE]
        );
        assert_eq!(
            decide(&[play(Channel::All), pause(stem(2))], 3),
            [PLAY, PLAY, PAUSE]
        );
    }

    #[test]
    fn all_vs_specific_seek() {
        // The stem's seek wins on the stem even though All's target is greater.
        assert_eq!(
            decide(&[seek(Channel::All, 1_000), seek(stem(0), 10)], 2),
            [seek_to(10), seek_to(1_000)]
        );
    }

    #[test]
    fn all_vs_specific_only_overrides_the_same_kind() {
        // A stem volume does not shield the stem from a pause on All.
        assert_eq!(
            decide(&[pause(Channel::All), volume(stem(0), 50)], 2),
            [
                ChannelChoice {
                    run: Some(false),
                    gain: Some(Gain(50)),
                    ..NONE
                },
                PAUSE
            ]
        );
        // A stem seek does not shield the stem from a volume on All.
        assert_eq!(
            decide(&[volume(Channel::All, 5), seek(stem(1), 4)], 2),
            [
                gain(5),
                ChannelChoice {
                    seek: Some(Frames(4)),
                    gain: Some(Gain(5)),
                    ..NONE
                }
            ]
        );
    }

    // ---- Rule 0: which votes count -------------------------------------

    #[test]
    fn only_the_lowest_seq_of_a_member_counts() {
        let set = [
            vote(7, 3, pause(Channel::All)),
            vote(7, 2, seek(stem(0), 10)),
            vote(8, 1, play(Channel::All)),
        ];
        assert_eq!(
            choose(&set, 2).channels,
            [
                ChannelChoice {
                    run: Some(true),
                    seek: Some(Frames(10)),
                    gain: None
                },
                PLAY
            ]
        );
    }

    #[test]
    fn lowest_seq_is_taken_before_range_filtering() {
        // The member's vote of this round is for a stem the track lacks; its
        // later vote belongs to a later round.
        let set = [vote(1, 1, pause(stem(5))), vote(1, 2, pause(stem(0)))];
        assert!(choose(&set, 2).is_empty());
    }

    #[test]
    fn equivocating_member_is_ignored() {
        let set = [
            vote(1, 4, play(stem(0))),
            vote(1, 4, pause(stem(0))),
            vote(1, 5, volume(stem(0), 0)),
            vote(2, 1, seek(stem(0), 3)),
        ];
        assert_eq!(choose(&set, 1).channels, [seek_to(3)]);
    }

    #[test]
    fn relayed_copies_count_once() {
        let v = vote(1, 1, volume(stem(0), 10));
        assert_eq!(choose(&[v, v, v], 1).channels, [gain(10)]);
    }

    #[test]
    fn stems_the_track_lacks_are_ignored() {
        assert!(choose(&votes(&[pause(stem(2)), seek(stem(200), 1)]), 2).is_empty());
        // Indices past MAX_CHANNELS too, even when asked for more channels.
        let choice = choose(&votes(&[play(stem(9))]), 20);
        assert_eq!(choice.channels.len(), MAX_CHANNELS);
        assert!(choice.is_empty());
    }

    #[test]
    fn gains_above_100_count_as_100() {
        assert_eq!(decide(&[volume(stem(0), 250)], 1), [gain(100)]);
        assert_eq!(
            decide(&[volume(stem(0), 255), volume(stem(0), 90)], 1),
            [gain(90)]
        );
        assert_eq!(
            decide(&[volume(stem(0), 101), volume(stem(0), 100)], 1),
            [gain(100)]
        );
    }

    // ---- Permutations ----------------------------------------------------

    #[test]
    fn heaps_algorithm_visits_every_permutation_once() {
        let mut seen = Vec::new();
        for_each_permutation(&[1, 2, 3, 4], |p| seen.push(p.to_vec()));
        assert_eq!(seen.len(), 24);
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 24);
    }

    /// Sets of six votes where every rule is in play at once.
    fn conflicting_sets() -> Vec<Vec<Vote>> {
        vec![
            votes(&[
                seek(stem(0), 100),
                seek(stem(0), 200),
                pause(stem(0)),
                play(stem(0)),
                volume(stem(0), 70),
                volume(stem(0), 30),
            ]),
            votes(&[
                seek(Channel::All, 500),
                seek(stem(1), 5),
                pause(Channel::All),
                play(stem(2)),
                volume(Channel::All, 10),
                volume(stem(0), 99),
            ]),
            vec![
                vote(1, 1, pause(stem(0))),
                vote(1, 2, play(Channel::All)),
                vote(2, 3, seek(Channel::All, 9)),
                vote(2, 3, seek(Channel::All, 9)),
                vote(3, 1, volume(stem(2), 255)),
                vote(3, 1, volume(stem(2), 0)),
            ],
        ]
    }

    #[test]
    fn every_permutation_of_conflicting_sets_gives_the_same_choice() {
        for set in conflicting_sets() {
            let expected = reference(&set, 3, None);
            let mut n = 0;
            for_each_permutation(&set, |p| {
                assert_eq!(choose(p, 3), expected, "permutation {p:?}");
                n += 1;
            });
            assert_eq!(n, 720);
        }
    }

    #[test]
    fn conflicting_sets_decide_as_specified() {
        let sets = conflicting_sets();
        assert_eq!(
            choose(&sets[0], 1).channels,
            [ChannelChoice {
                run: Some(false),
                seek: Some(Frames(200)),
                gain: Some(Gain(30)),
            }]
        );
        assert_eq!(
            choose(&sets[1], 3).channels,
            [
                ChannelChoice {
                    run: Some(false),
                    seek: Some(Frames(500)),
                    gain: Some(Gain(99)),
                },
                ChannelChoice {
                    run: Some(false),
                    seek: Some(Frames(5)),
                    gain: Some(Gain(10)),
                },
                ChannelChoice {
                    run: Some(true),
                    seek: Some(Frames(500)),
                    gain: Some(Gain(10)),
                },
            ]
        );
        // Member 1 pauses stem 0 (its seq 2 waits), member 2's copies count
        // once, member 3 equivocates.
        assert_eq!(
            choose(&sets[2], 3).channels,
            [
                ChannelChoice {
                    run: Some(false),
                    seek: Some(Frames(9)),
                    gain: None,
                },
                seek_to(9),
                seek_to(9),
            ]
        );
    }

    // ---- Loads and the track's length ------------------------------------

    fn load(track: u8, channels: u8, length: u64) -> Event {
        Event::Load {
            track: TrackId([track; 16]),
            channels,
            length: Frames(length),
        }
    }

    fn load_choice(track: u8, channels: u8, length: u64) -> LoadChoice {
        LoadChoice {
            track: TrackId([track; 16]),
            channels,
            length: Frames(length),
        }
    }

    #[test]
    fn a_load_replaces_every_other_vote_of_its_round() {
        let set = votes(&[
            play(Channel::All),
            seek(stem(0), 100),
            load(7, 3, 48_000),
            volume(Channel::All, 10),
        ]);
        let choice = super::choose(&set, 2, Some(Frames(1_000)));
        assert_eq!(choice.load, Some(load_choice(7, 3, 48_000)));
        assert!(choice.channels.is_empty());
        assert!(!choice.is_empty());
        assert_eq!(choice, reference(&set, 2, Some(Frames(1_000))));
    }

    #[test]
    fn of_several_loads_the_greatest_wins_in_any_order() {
        let set = votes(&[load(3, 2, 10), load(9, 1, 5), load(9, 1, 4), load(1, 8, 99)]);
        for_each_permutation(&set, |p| {
            assert_eq!(
                super::choose(p, 4, None).load,
                Some(load_choice(9, 1, 5)),
                "permutation {p:?}"
            );
        });
    }

    #[test]
    fn loads_without_channels_or_with_too_many_are_ignored() {
        let too_many = u8::try_from(MAX_CHANNELS + 1).unwrap();
        let set = votes(&[load(9, 0, 10), load(8, too_many, 10), play(stem(0))]);
        let choice = choose(&set, 1);
        assert_eq!(choice.load, None);
        assert_eq!(choice.channels.to_vec(), [PLAY]);
    }

    #[test]
    fn seeks_past_the_end_are_refused_and_the_end_itself_is_allowed() {
        let end = Some(Frames(480_000));
        let past = votes(&[seek(Channel::All, 480_001)]);
        assert!(super::choose(&past, 2, end).is_empty());
        let at_end = votes(&[seek(Channel::All, 480_000)]);
        assert_eq!(
            super::choose(&at_end, 2, end).channels.to_vec(),
            [seek_to(480_000); 2]
        );
        // A refused seek does not hide a valid one on the same channel, nor
        // the other kinds of the same vote set.
        let mixed = votes(&[seek(stem(0), 900_000), seek(stem(0), 5), pause(stem(0))]);
        assert_eq!(
            super::choose(&mixed, 1, end).channels.to_vec(),
            [ChannelChoice {
                run: Some(false),
                seek: Some(Frames(5)),
                gain: None
            }]
        );
        // Without a loaded track nothing is past the end.
        assert_eq!(choose(&past, 1).channels.to_vec(), [seek_to(480_001)]);
    }

    #[test]
    fn applying_a_load_resets_the_channels_at_the_room_volume() {
        let t0 = MeshTime(1_000_000_000);
        let mut t = Transport::new(2, t0, Gain(40));
        t.apply(&choose(&votes(&[play(Channel::All)]), 2), t0);
        let at = t0.plus(crate::time::Nanos::from_secs(3));
        t.apply(&super::choose(&votes(&[load(5, 3, 960)]), 2, None), at);
        assert_eq!(t.channel_count(), 3);
        assert_eq!(t.length(), Some(Frames(960)));
        assert_eq!(t.track.map(|l| l.id), Some(TrackId([5; 16])));
        for c in &t.channels {
            assert_eq!(
                *c,
                crate::transport::ChannelState::paused_at(Frames::ZERO, at, Gain(40))
            );
        }
        // From a room without channels, the default volume.
        let mut empty = Transport::new(0, t0, Gain::MAX);
        empty.apply(&super::choose(&votes(&[load(5, 1, 960)]), 0, None), at);
        assert_eq!(empty.channel(0).map(|c| c.gain), Some(Gain::DEFAULT));
    }

    // ---- Properties over arbitrary vote sets ---------------------------

    fn arb_channel() -> impl Strategy<Value = Channel> {
        // Stems up to 9, so some fall outside the track and past MAX_CHANNELS.
        prop_oneof![Just(Channel::All), (0u8..10).prop_map(Channel::Stem)]
    }

    fn arb_event() -> impl Strategy<Value = Event> {
        // Few distinct targets and gains, so ties and repeats are common.
        let to = prop_oneof![4 => 0u64..4, 1 => any::<u64>()].prop_map(Frames);
        let gain = prop_oneof![4 => 0u8..=3, 2 => 98u8..=102, 1 => any::<u8>()].prop_map(Gain);
        prop_oneof![
            arb_channel().prop_map(|channel| Event::Play { channel }),
            arb_channel().prop_map(|channel| Event::Pause { channel }),
            (arb_channel(), to).prop_map(|(channel, to)| Event::Seek { channel, to }),
            (arb_channel(), gain).prop_map(|(channel, gain)| Event::Volume { channel, gain }),
        ]
    }

    fn arb_vote() -> impl Strategy<Value = Vote> {
        // Few members and seqs, so rule 0 is exercised.
        (0u64..6, 1u32..4, arb_event()).prop_map(|(m, seq, event)| vote(m, seq, event))
    }

    fn arb_votes(max: usize) -> impl Strategy<Value = Vec<Vote>> {
        proptest::collection::vec(arb_vote(), 0..=max)
    }

    /// Channel counts around the interesting edges: none, some, all, too many.
    fn arb_count() -> impl Strategy<Value = usize> {
        0usize..=MAX_CHANNELS + 2
    }

    /// Any event, loads included (few tracks, channel counts around the
    /// valid range, so ties and invalid loads are common).
    fn arb_event_or_load() -> impl Strategy<Value = Event> {
        let loads = (0u8..3, 0u8..=10, 0u64..3).prop_map(|(t, c, l)| load(t, c, l));
        prop_oneof![6 => arb_event(), 1 => loads]
    }

    fn arb_votes_or_loads(max: usize) -> impl Strategy<Value = Vec<Vote>> {
        let one = (0u64..6, 1u32..4, arb_event_or_load()).prop_map(|(m, s, e)| vote(m, s, e));
        proptest::collection::vec(one, 0..=max)
    }

    fn arb_length() -> impl Strategy<Value = Option<Frames>> {
        proptest::option::of((0u64..5).prop_map(Frames))
    }

    proptest! {
        /// With loads and a track length, the choice is still the reference
        /// model's and independent of order.
        #[test]
        fn with_loads_and_length_matches_reference_in_any_order(
            set in arb_votes_or_loads(16),
            n in arb_count(),
            length in arb_length(),
            seed in any::<u64>(),
        ) {
            let choice = super::choose(&set, n, length);
            prop_assert_eq!(&choice, &reference(&set, n, length));
            let mut shuffled = set.clone();
            // A seeded Fisher-Yates shuffle (xorshift), no RNG crate needed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let j = usize::try_from(x % (i as u64 + 1)).unwrap();
                shuffled.swap(i, j);
            }
            prop_assert_eq!(super::choose(&shuffled, n, length), choice);
        }

        #[test]
        fn matches_reference_model(set in arb_votes(24), n in arb_count()) {
            prop_assert_eq!(choose(&set, n), reference(&set, n, None));
        }

        #[test]
        fn every_permutation_of_small_sets_agrees(set in arb_votes(6), n in arb_count()) {
            let expected = choose(&set, n);
            let mut result = Ok(());
            for_each_permutation(&set, |p| {
                if result.is_ok() && choose(p, n) != expected {
                    result = Err(format!("{p:?}"));
                }
            });
            prop_assert!(result.is_ok(), "differs for permutation {:?}", result);
        }

        #[test]
        fn shuffle_invariant(
            (set, shuffled) in arb_votes(40).prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
            n in arb_count(),
        ) {
            prop_assert_eq!(choose(&set, n), choose(&shuffled, n));
        }

        #[test]
        fn duplicates_invariant(
            set in arb_votes(20),
            copies in proptest::collection::vec(any::<prop::sample::Index>(), 0..20),
            n in arb_count(),
        ) {
            let mut with_copies = set.clone();
            if !set.is_empty() {
                with_copies.extend(copies.iter().map(|i| set[i.index(set.len())]));
            }
            prop_assert_eq!(choose(&set, n), choose(&with_copies, n));
        }

        #[test]
        fn one_entry_per_channel_and_channels_independent(set in arb_votes(20), n in arb_count()) {
            let full = choose(&set, n);
            prop_assert_eq!(full.channels.len(), n.min(MAX_CHANNELS));
            for m in 0..n.min(MAX_CHANNELS) {
                prop_assert_eq!(&choose(&set, m).channels[..], &full.channels[..m]);
            }
        }

        #[test]
        fn any_effective_pause_pauses_the_channel(set in arb_votes(20), n in arb_count()) {
            let choice = choose(&set, n);
            let events = counted(&set, n);
            for (i, c) in choice.channels.iter().enumerate() {
                let runs = effective(&events, i, Kind::Run);
                let paused = runs.iter().any(|e| matches!(e, Event::Pause { .. }));
                prop_assert_eq!(c.run == Some(false), paused);
                // And a stem-specific pause always pauses its stem.
                let stem_paused = events.contains(&pause(Channel::Stem(u8::try_from(i).unwrap())));
                prop_assert!(!stem_paused || c.run == Some(false));
            }
        }

        #[test]
        fn seek_is_the_max_of_effective_seeks(set in arb_votes(20), n in arb_count()) {
            let choice = choose(&set, n);
            let events = counted(&set, n);
            for (i, c) in choice.channels.iter().enumerate() {
                let max = effective(&events, i, Kind::Seek)
                    .iter()
                    .filter_map(|e| if let Event::Seek { to, .. } = e { Some(*to) } else { None })
                    .max();
                prop_assert_eq!(c.seek, max);
            }
        }

        #[test]
        fn gain_is_the_min_of_effective_gains(set in arb_votes(20), n in arb_count()) {
            let choice = choose(&set, n);
            let events = counted(&set, n);
            for (i, c) in choice.channels.iter().enumerate() {
                let min = effective(&events, i, Kind::Volume)
                    .iter()
                    .filter_map(|e| if let Event::Volume { gain, .. } = e { Some(gain.clamped()) } else { None })
                    .min();
                prop_assert_eq!(c.gain, min);
                prop_assert!(c.gain.is_none_or(|g| g <= Gain::MAX));
            }
        }

        /// Growing sets: votes from distinct members on stems only, added one
        /// at a time in random order. Every prefix agrees with its reversal
        /// and with the model, and each rule only ever moves one way: once
        /// paused stays paused, seeks only go further, gains only go down.
        #[test]
        fn growing_sets_move_monotonically(
            events in proptest::collection::vec(arb_event(), 1..16)
                .prop_map(|es| es.into_iter().filter(|e| e.channel() != Channel::All).collect::<Vec<_>>())
                .prop_shuffle(),
            n in 1usize..=MAX_CHANNELS,
        ) {
            let all = votes(&events);
            let mut previous = choose(&[], n);
            for k in 1..=all.len() {
                let prefix = &all[..k];
                let now = choose(prefix, n);
                let mut reversed = prefix.to_vec();
                reversed.reverse();
                prop_assert_eq!(&now, &choose(&reversed, n));
                prop_assert_eq!(&now, &reference(prefix, n, None));
                for (before, after) in previous.channels.iter().zip(now.channels.iter()) {
                    prop_assert!(before.run != Some(false) || after.run == Some(false));
                    prop_assert!(before.run.is_none() || after.run.is_some());
                    prop_assert!(after.seek >= before.seek);
                    if let Some(g) = before.gain {
                        prop_assert!(after.gain.is_some_and(|a| a <= g));
                    }
                }
                previous = now;
            }
        }

        /// A choice applied twice at the same instant is the same as once:
        /// every action is absolute.
        #[test]
        fn applying_a_choice_twice_is_applying_it_once(
            first in arb_votes(12),
            second in arb_votes(12),
            n in arb_count(),
            dt in 0u64..10_000_000_000,
        ) {
            let t0 = MeshTime(1_000_000_000);
            let mut transport = Transport::new(n, t0, Gain::MAX);
            transport.apply(&choose(&first, n), t0);
            let at = t0.plus(crate::time::Nanos(dt));
            let choice = choose(&second, n);
            transport.apply(&choice, at);
            let once = transport.clone();
            transport.apply(&choice, at);
            prop_assert_eq!(transport, once);
        }
    }
}
