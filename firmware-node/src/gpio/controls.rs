//! What a button press means: the vote it casts, given the room's agreed
//! state and this speaker's own votes still in flight.
//!
//! Events on the wire are absolute (`Play`, `Pause`, `Volume { gain }`),
//! never toggles or deltas, so that every member applies the same thing
//! whatever it missed. A button, though, is a toggle or a delta, and a person
//! presses faster than the room decides (a vote takes two or three
//! heartbeats). So the buttons remember what they last asked for (the
//! *intent*) and build the next press on it while it is in flight: three
//! quick presses of volume-up from 50 % cast 55, 60 and 65, not 55 three
//! times; two quick presses of play/pause cast Pause then Play.
//!
//! Invariant: the intent is only a base for the next press; the agreed state
//! is what the room decided. The intent is dropped as soon as a status
//! snapshot taken after the cast shows no own vote pending (the vote was
//! decided, or dropped), and after [`INTENT_TTL`] in any case, so a lost
//! vote cannot leave the buttons working from a value nobody agreed on.
//!
//! All buttons act on the `All` channel: a speaker's buttons control the
//! room as one instrument.

use std::time::Duration;

use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::ids::Channel;
use autoharmonize_protocol::transport::Gain;
use tokio::time::Instant;

use crate::status::NodeStatus;

/// Longest an intent is trusted without the room confirming it.
pub const INTENT_TTL: Duration = Duration::from_secs(5);

/// A button's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Button {
    /// Toggles play and pause of every channel.
    PlayPause,
    /// Raises the volume of every channel by the configured step.
    VolumeUp,
    /// Lowers the volume of every channel by the configured step.
    VolumeDown,
}

impl Button {
    /// Every button, in a fixed order (indexes of per-button arrays).
    pub const ALL: [Button; 3] = [Button::PlayPause, Button::VolumeUp, Button::VolumeDown];

    /// Index into per-button arrays.
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Button::PlayPause => 0,
            Button::VolumeUp => 1,
            Button::VolumeDown => 2,
        }
    }

    /// Whether holding the button repeats it (volume does, play/pause does
    /// not: a held play/pause toggling on and off would be useless).
    #[must_use]
    pub fn repeats(self) -> bool {
        !matches!(self, Button::PlayPause)
    }
}

/// The part of the agreed state the buttons build on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// Some channel plays (a mixed state counts as playing, so the toggle
    /// pauses everything).
    pub playing: bool,
    /// Mean gain of the channels (rounded down, as the protocol's "All"
    /// summary does); `None` without a track.
    pub gain: Option<u8>,
}

impl Agreed {
    /// Reads it from a status snapshot.
    #[must_use]
    pub fn of(status: &NodeStatus) -> Agreed {
        let n = status.channels.len();
        let gain = (n > 0).then(|| {
            let sum: usize = status.channels.iter().map(|c| usize::from(c.gain)).sum();
            u8::try_from(sum / n).unwrap_or(Gain::MAX.0)
        });
        Agreed {
            playing: status.channels.iter().any(|c| c.playing),
            gain,
        }
    }
}

/// The press-to-vote mapping, with the intent of votes in flight.
#[derive(Clone, Debug)]
pub struct Controls {
    step: u8,
    playing: Option<(bool, Instant)>,
    gain: Option<(u8, Instant)>,
}

impl Controls {
    /// Volume buttons move by `step` percent points.
    #[must_use]
    pub fn new(step: u8) -> Controls {
        Controls {
            step,
            playing: None,
            gain: None,
        }
    }

    /// The vote a press of `button` casts now, or `None` when it would
    /// change nothing (no track to act on, volume already at its limit).
    #[must_use]
    pub fn event_for(&mut self, button: Button, now: Instant, agreed: Agreed) -> Option<Event> {
        self.expire(now);
        let channel = Channel::All;
        match button {
            Button::PlayPause => {
                agreed.gain?;
                let playing = self.playing.map_or(agreed.playing, |(p, _)| p);
                Some(if playing {
                    Event::Pause { channel }
                } else {
                    Event::Play { channel }
                })
            }
            Button::VolumeUp | Button::VolumeDown => {
                let base = self.gain.map(|(g, _)| g).or(agreed.gain)?;
                let target = if button == Button::VolumeUp {
                    base.saturating_add(self.step).min(Gain::MAX.0)
                } else {
                    base.saturating_sub(self.step)
                };
                (target != base).then(|| Event::Volume {
                    channel,
                    gain: Gain::new(target).expect("clamped to 0..=100"),
                })
            }
        }
    }

    /// The room accepted `event` for a vote: the next press builds on it.
    pub fn cast(&mut self, event: Event, now: Instant) {
        match event {
            Event::Play { .. } => self.playing = Some((true, now)),
            Event::Pause { .. } => self.playing = Some((false, now)),
            Event::Volume { gain, .. } => self.gain = Some((gain.0, now)),
            _ => {}
        }
    }

    /// A status snapshot published after the last cast: with no own vote
    /// pending, the agreed state already holds what the votes did.
    pub fn on_status(&mut self, pending_votes: usize) {
        if pending_votes == 0 {
            self.playing = None;
            self.gain = None;
        }
    }

    /// Whether a vote cast here is still waiting for the room.
    #[must_use]
    pub fn in_flight(&self) -> bool {
        self.playing.is_some() || self.gain.is_some()
    }

    fn expire(&mut self, now: Instant) {
        let fresh = |at: Instant| now.saturating_duration_since(at) < INTENT_TTL;
        self.playing = self.playing.filter(|(_, at)| fresh(*at));
        self.gain = self.gain.filter(|(_, at)| fresh(*at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ChannelStatus;

    const PLAYING_AT_50: Agreed = Agreed {
        playing: true,
        gain: Some(50),
    };

    fn volume(gain: u8) -> Event {
        Event::Volume {
            channel: Channel::All,
            gain: Gain(gain),
        }
    }

    #[test]
    fn agreed_state_is_read_from_the_channels() {
        let mut status = NodeStatus::default();
        assert_eq!(
            Agreed::of(&status),
            Agreed {
                playing: false,
                gain: None
            }
        );
        status.channels = vec![
            ChannelStatus {
                playing: false,
                gain: 40,
                ..ChannelStatus::default()
            },
            ChannelStatus {
                playing: true,
                gain: 45,
                ..ChannelStatus::default()
            },
        ];
        assert_eq!(
            Agreed::of(&status),
            Agreed {
                playing: true,
                gain: Some(42)
            }
        );
    }

    #[test]
    fn play_pause_toggles_the_agreed_state() {
        let now = Instant::now();
        let mut c = Controls::new(5);
        assert_eq!(
            c.event_for(Button::PlayPause, now, PLAYING_AT_50),
            Some(Event::Pause {
                channel: Channel::All
            })
        );
        let paused = Agreed {
            playing: false,
            ..PLAYING_AT_50
        };
        assert_eq!(
            c.event_for(Button::PlayPause, now, paused),
            Some(Event::Play {
                channel: Channel::All
            })
        );
    }

    #[test]
    fn presses_in_flight_build_on_each_other() {
        let now = Instant::now();
        let mut c = Controls::new(5);
        for want in [55, 60, 65] {
            let e = c.event_for(Button::VolumeUp, now, PLAYING_AT_50);
            assert_eq!(e, Some(volume(want)));
            c.cast(volume(want), now);
        }
        let pause = c.event_for(Button::PlayPause, now, PLAYING_AT_50);
        assert_eq!(
            pause,
            Some(Event::Pause {
                channel: Channel::All
            })
        );
        c.cast(pause.expect("some"), now);
        // The second quick press undoes the first, though the room still
        // plays.
        assert_eq!(
            c.event_for(Button::PlayPause, now, PLAYING_AT_50),
            Some(Event::Play {
                channel: Channel::All
            })
        );
        assert!(c.in_flight());
        // Decided: the agreed state is the base again.
        c.on_status(0);
        assert!(!c.in_flight());
        assert_eq!(
            c.event_for(Button::VolumeDown, now, PLAYING_AT_50),
            Some(volume(45))
        );
    }

    #[test]
    fn a_pending_snapshot_keeps_the_intent_and_ttl_drops_it() {
        let now = Instant::now();
        let mut c = Controls::new(10);
        c.cast(volume(60), now);
        c.on_status(1);
        assert_eq!(
            c.event_for(
                Button::VolumeUp,
                now + Duration::from_secs(1),
                PLAYING_AT_50
            ),
            Some(volume(70))
        );
        assert_eq!(
            c.event_for(Button::VolumeUp, now + INTENT_TTL, PLAYING_AT_50),
            Some(volume(60))
        );
    }

    #[test]
    fn volume_stops_at_its_limits_and_needs_a_track() {
        let now = Instant::now();
        let mut c = Controls::new(30);
        let loud = Agreed {
            playing: true,
            gain: Some(90),
        };
        assert_eq!(c.event_for(Button::VolumeUp, now, loud), Some(volume(100)));
        c.cast(volume(100), now);
        assert_eq!(c.event_for(Button::VolumeUp, now, loud), None);
        let quiet = Agreed {
            playing: true,
            gain: Some(10),
        };
        let mut c = Controls::new(30);
        assert_eq!(c.event_for(Button::VolumeDown, now, quiet), Some(volume(0)));
        let none = Agreed {
            playing: false,
            gain: None,
        };
        assert_eq!(c.event_for(Button::VolumeDown, now, none), None);
        assert_eq!(c.event_for(Button::PlayPause, now, none), None);
    }
}
