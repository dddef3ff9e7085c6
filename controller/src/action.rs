//! What a person asks the room to do, from the command line or the mixer,
//! checked before it becomes a vote.
//!
//! Both front ends go through [`Action`] → [`check`] → protocol
//! [`Event`], so the CLI and the web page refuse the same inputs with the
//! same words. The protocol would drop a vote for a channel the track lacks
//! without saying why; checking here gives the person a reason instead.

use autoharmonize_node::catalogue::{TrackStatus, find_track};
use autoharmonize_node::status::NodeStatus;
use autoharmonize_protocol::Channel;
use autoharmonize_protocol::content::TrackId;
use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::transport::{Frames, Gain};
use serde::{Deserialize, Serialize};

use crate::position::{self, PositionError};

/// Why an action was refused before any vote was cast.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The channel is neither `all`, a number nor a name of the loaded
    /// track's channels (listed; empty when the room has no names).
    #[error(
        "{text:?} is not a channel: use \"all\", a channel number (0, 1, ...){}",
        names_hint(names)
    )]
    NotAChannel {
        /// What was typed.
        text: String,
        /// The names it could have been.
        names: Vec<String>,
    },
    /// A name was given, but the loaded track's description (and with it
    /// the names of its channels) has not arrived yet. Retrying helps.
    #[error(
        "{0:?} is not a channel number, and the names of the loaded track's channels are not \
         known yet (its description has not arrived): use a channel number, or try again"
    )]
    NamesNotKnown(String),
    /// Several channels of the track have this name.
    #[error(
        "{name:?} names several channels ({}): use the number",
        list_numbers(channels)
    )]
    AmbiguousName {
        /// The name.
        name: String,
        /// The channels called so.
        channels: Vec<u8>,
    },
    /// The track has no such channel.
    #[error("unknown channel {channel}: the track has {count} channel(s), 0 to {last}", last = count.saturating_sub(1))]
    UnknownChannel {
        /// The channel asked for.
        channel: u8,
        /// Channels the track has.
        count: usize,
    },
    /// The room has no track with channels yet.
    #[error("the room has no channels yet (no track is loaded)")]
    NoChannels,
    /// Volume outside 0..=100.
    #[error("volume {0} is out of range: use 0 to 100")]
    VolumeRange(String),
    /// A seek beyond the track's end.
    #[error("{to} is past the end of the track ({length})")]
    SeekPastEnd {
        /// Target, as typed back.
        to: String,
        /// Track length.
        length: String,
    },
    /// The seek target is not a time.
    #[error(transparent)]
    Position(#[from] PositionError),
    /// The track name picks no track, or several.
    #[error(transparent)]
    Track(#[from] autoharmonize_node::catalogue::FindError),
    /// The catalogue describes the track in a way no vote can carry.
    #[error("track {0} cannot be loaded: {1}")]
    BadTrack(String, &'static str),
}

fn names_hint(names: &[String]) -> String {
    if names.is_empty() {
        String::new()
    } else {
        format!(" or a name: {}", names.join(", "))
    }
}

fn list_numbers(channels: &[u8]) -> String {
    channels
        .iter()
        .map(u8::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The names a channel may be called by: the loaded track's stem names, in
/// channel order. `None` while a track is loaded whose description has not
/// arrived; empty when no track is loaded (the room's channels have no
/// names then).
#[must_use]
pub fn channel_names(st: &NodeStatus) -> Option<&[String]> {
    match &st.track {
        None => Some(&[]),
        Some(t) if t.channels.is_empty() => None,
        Some(t) => Some(&t.channels),
    }
}

/// A channel as a person names it: `all`, a stem number, or the name of a
/// stem of the loaded track (`names`, see [`channel_names`]), all without
/// regard to case. A number always means a position, even if a stem is
/// called `1`.
///
/// # Errors
/// [`ActionError::NotAChannel`] (listing the names),
/// [`ActionError::NamesNotKnown`], [`ActionError::AmbiguousName`].
pub fn parse_channel(text: &str, names: Option<&[String]>) -> Result<Channel, ActionError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("all") {
        return Ok(Channel::All);
    }
    if let Ok(n) = t.parse::<u8>() {
        return Ok(Channel::Stem(n));
    }
    let Some(names) = names else {
        return Err(ActionError::NamesNotKnown(text.to_owned()));
    };
    let lower = t.to_lowercase();
    let matching: Vec<u8> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| !lower.is_empty() && n.trim().to_lowercase() == lower)
        .filter_map(|(i, _)| u8::try_from(i).ok())
        .collect();
    match matching[..] {
        [i] => Ok(Channel::Stem(i)),
        [] => Err(ActionError::NotAChannel {
            text: text.to_owned(),
            names: names.to_vec(),
        }),
        _ => Err(ActionError::AmbiguousName {
            name: t.to_owned(),
            channels: matching,
        }),
    }
}

/// A volume as typed: an integer percentage 0 to 100.
///
/// # Errors
/// [`ActionError::VolumeRange`].
pub fn parse_volume(text: &str) -> Result<Gain, ActionError> {
    text.trim()
        .parse::<u8>()
        .ok()
        .and_then(Gain::new)
        .ok_or_else(|| ActionError::VolumeRange(text.to_owned()))
}

/// A channel as JSON carries it: a stem number, or text (`"all"` or a
/// stem's name). Read from anything JSON holds, so that a wrong value is
/// refused by [`parse_channel`] with the same words as on the command line
/// rather than by the JSON decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelArg {
    /// A stem number.
    Number(u64),
    /// `"all"` or a stem's name (anything else is refused when resolved).
    Text(String),
}

impl ChannelArg {
    /// The channel it names, given the loaded track's channel `names`
    /// (see [`channel_names`]).
    ///
    /// # Errors
    /// As [`parse_channel`].
    pub fn resolve(&self, names: Option<&[String]>) -> Result<Channel, ActionError> {
        match self {
            ChannelArg::Number(n) => parse_channel(&n.to_string(), names),
            ChannelArg::Text(t) => parse_channel(t, names),
        }
    }
}

impl From<Channel> for ChannelArg {
    fn from(c: Channel) -> ChannelArg {
        match c {
            Channel::All => ChannelArg::Text("all".into()),
            Channel::Stem(i) => ChannelArg::Number(u64::from(i)),
        }
    }
}

impl Serialize for ChannelArg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ChannelArg::Number(n) => s.serialize_u64(*n),
            ChannelArg::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for ChannelArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ChannelArg, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => match n.as_u64() {
                Some(n) => ChannelArg::Number(n),
                None => ChannelArg::Text(n.to_string()),
            },
            serde_json::Value::String(s) => ChannelArg::Text(s),
            other => ChannelArg::Text(other.to_string()),
        })
    }
}

/// An action, as JSON: what the mixer page and `POST /api/act` send, and
/// what `--json` prints for the event a verb cast. One type both ways, so
/// an event printed by the CLI is a request the API takes:
/// `{"op":"play","channel":"all"}`, `{"op":"seek","channel":1,"ms":90000}`,
/// `{"op":"volume","channel":"all","gain":40}`,
/// `{"op":"load","track":"<title or id prefix>"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Action {
    /// Play a channel (or all).
    Play {
        /// `"all"` or a stem number.
        channel: ChannelArg,
    },
    /// Pause a channel (or all).
    Pause {
        /// `"all"` or a stem number.
        channel: ChannelArg,
    },
    /// Move a channel (or all) to a position.
    Seek {
        /// `"all"` or a stem number.
        channel: ChannelArg,
        /// Target in milliseconds.
        ms: u64,
    },
    /// Set a channel's (or every channel's) volume.
    Volume {
        /// `"all"` or a stem number.
        channel: ChannelArg,
        /// Percent, 0 to 100.
        gain: u64,
    },
    /// Load a track on every speaker.
    Load {
        /// Title, unique start of a title, or id prefix (the CLI prints
        /// the full id).
        track: String,
    },
}

impl Action {
    /// The action an event is (what a verb cast, for `--json`).
    #[must_use]
    pub fn of(event: &Event) -> Action {
        match *event {
            Event::Play { channel } => Action::Play {
                channel: channel.into(),
            },
            Event::Pause { channel } => Action::Pause {
                channel: channel.into(),
            },
            Event::Seek { channel, to } => Action::Seek {
                channel: channel.into(),
                ms: position::millis(to),
            },
            Event::Volume { channel, gain } => Action::Volume {
                channel: channel.into(),
                gain: u64::from(gain.0),
            },
            Event::Load { track, .. } => Action::Load {
                track: track.to_string(),
            },
        }
    }

    /// The event it asks for in the room `st` describes (not yet checked
    /// against the track): channel names are the loaded track's, a load is
    /// resolved against the room's tracks.
    ///
    /// # Errors
    /// [`ActionError`] for an unknown channel, value or track.
    pub fn event(&self, st: &NodeStatus) -> Result<Event, ActionError> {
        let names = channel_names(st);
        match self {
            Action::Play { channel } => Ok(Event::Play {
                channel: channel.resolve(names)?,
            }),
            Action::Pause { channel } => Ok(Event::Pause {
                channel: channel.resolve(names)?,
            }),
            Action::Seek { channel, ms } => Ok(Event::Seek {
                channel: channel.resolve(names)?,
                to: Frames::from_nanos(autoharmonize_protocol::Nanos(ms.saturating_mul(1_000_000))),
            }),
            Action::Volume { channel, gain } => Ok(Event::Volume {
                channel: channel.resolve(names)?,
                gain: parse_volume(&gain.to_string())?,
            }),
            Action::Load { track } => load_event(&st.tracks, track),
        }
    }
}

/// The vote that loads the track `query` names (a title, a unique title
/// prefix, or an id prefix of at least 4 hex digits) among the room's
/// `tracks`: its id, channel count and length come from the catalogue, so
/// every member applies the same state whether or not it holds the track.
///
/// # Errors
/// [`ActionError::Track`] if the name picks no track or several;
/// [`ActionError::BadTrack`] if the description cannot be voted.
pub fn load_event(tracks: &[TrackStatus], query: &str) -> Result<Event, ActionError> {
    let t = find_track(tracks, query, |t| (t.title.as_str(), t.id.clone()))?;
    let track: TrackId =
        t.id.parse()
            .map_err(|_| ActionError::BadTrack(t.id.clone(), "its id is not 32 hex digits"))?;
    let channels = u8::try_from(t.channels.len())
        .ok()
        .filter(|&n| (1..=8).contains(&n))
        .ok_or(ActionError::BadTrack(
            t.id.clone(),
            "it has no channels or too many",
        ))?;
    Ok(Event::Load {
        track,
        channels,
        length: Frames(t.length_frames),
    })
}

/// Checks `event` against the room's track: `channels` stems and, when
/// known, its `length`.
///
/// # Errors
/// [`ActionError::UnknownChannel`], [`ActionError::NoChannels`] or
/// [`ActionError::SeekPastEnd`].
pub fn check(event: &Event, channels: usize, length: Option<Frames>) -> Result<(), ActionError> {
    if matches!(event, Event::Load { .. }) {
        // Checked when it was resolved from the catalogue (`load_event`).
        return Ok(());
    }
    match event.channel() {
        Channel::Stem(i) if usize::from(i) >= channels => {
            return Err(ActionError::UnknownChannel {
                channel: i,
                count: channels,
            });
        }
        Channel::All if channels == 0 => return Err(ActionError::NoChannels),
        _ => {}
    }
    if let (Event::Seek { to, .. }, Some(length)) = (event, length)
        && *to > length
    {
        return Err(ActionError::SeekPastEnd {
            to: position::format(*to),
            length: position::format(length),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Action {
        serde_json::from_str(json).expect("a valid action")
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|&s| s.to_owned()).collect()
    }

    #[test]
    fn channels_and_volumes_as_typed() {
        let none: Option<&[String]> = Some(&[]);
        assert_eq!(parse_channel("all", none), Ok(Channel::All));
        assert_eq!(parse_channel("ALL", none), Ok(Channel::All));
        assert_eq!(parse_channel("2", none), Ok(Channel::Stem(2)));
        assert!(matches!(
            parse_channel("bass", none),
            Err(ActionError::NotAChannel { .. })
        ));
        assert!(matches!(
            parse_channel("-1", none),
            Err(ActionError::NotAChannel { .. })
        ));
        assert_eq!(parse_volume("0"), Ok(Gain(0)));
        assert_eq!(parse_volume("100"), Ok(Gain(100)));
        for bad in ["101", "-1", "50.5", "", "loud", "256"] {
            assert!(
                matches!(parse_volume(bad), Err(ActionError::VolumeRange(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn channels_by_the_names_of_the_loaded_tracks_stems() {
        let stems = names(&["Drums", "bass", "keys", "1"]);
        let known = Some(stems.as_slice());
        assert_eq!(parse_channel("drums", known), Ok(Channel::Stem(0)));
        assert_eq!(parse_channel(" BASS ", known), Ok(Channel::Stem(1)));
        assert_eq!(parse_channel("Keys", known), Ok(Channel::Stem(2)));
        // A number is a position, whatever the stems are called.
        assert_eq!(parse_channel("1", known), Ok(Channel::Stem(1)));
        assert_eq!(parse_channel("all", known), Ok(Channel::All));
        let e = parse_channel("vocals", known).expect_err("no such stem");
        assert_eq!(
            e.to_string(),
            "\"vocals\" is not a channel: use \"all\", a channel number (0, 1, ...) or a name: Drums, bass, keys, 1"
        );
        // No track loaded: no names to offer.
        assert_eq!(
            parse_channel("vocals", Some(&[]))
                .expect_err("no names")
                .to_string(),
            "\"vocals\" is not a channel: use \"all\", a channel number (0, 1, ...)"
        );
        // A track whose description has not arrived: say so.
        assert_eq!(
            parse_channel("bass", None),
            Err(ActionError::NamesNotKnown("bass".into()))
        );
        assert_eq!(parse_channel("3", None), Ok(Channel::Stem(3)));
        let twice = names(&["gtr", "GTR"]);
        assert_eq!(
            parse_channel("gtr", Some(&twice)),
            Err(ActionError::AmbiguousName {
                name: "gtr".into(),
                channels: vec![0, 1]
            })
        );
        assert!(parse_channel("", Some(&names(&[""]))).is_err());
    }

    #[test]
    fn names_come_from_the_loaded_track() {
        let mut st = NodeStatus::default();
        assert_eq!(channel_names(&st), Some(&[][..]));
        st.track = Some(autoharmonize_node::status::LoadedTrackStatus::default());
        assert_eq!(channel_names(&st), None, "loaded, not described yet");
        if let Some(t) = st.track.as_mut() {
            t.channels = names(&["drums", "bass"]);
        }
        assert_eq!(channel_names(&st), Some(&names(&["drums", "bass"])[..]));
        assert_eq!(
            req(r#"{"op":"volume","channel":"Bass","gain":40}"#).event(&st),
            Ok(Event::Volume {
                channel: Channel::Stem(1),
                gain: Gain(40)
            })
        );
    }

    #[test]
    fn mixer_requests_become_events() {
        assert_eq!(
            req(r#"{"op":"play","channel":"all"}"#).event(&NodeStatus::default()),
            Ok(Event::Play {
                channel: Channel::All
            })
        );
        assert_eq!(
            req(r#"{"op":"seek","channel":1,"ms":1000}"#).event(&NodeStatus::default()),
            Ok(Event::Seek {
                channel: Channel::Stem(1),
                to: Frames(48_000)
            })
        );
        assert_eq!(
            req(r#"{"op":"volume","channel":"all","gain":40}"#).event(&NodeStatus::default()),
            Ok(Event::Volume {
                channel: Channel::All,
                gain: Gain(40)
            })
        );
        for bad in [
            r#"{"op":"volume","channel":"all","gain":140}"#,
            r#"{"op":"volume","channel":"all","gain":1000}"#,
            r#"{"op":"play","channel":null}"#,
            r#"{"op":"play","channel":-1}"#,
            r#"{"op":"play","channel":1.5}"#,
        ] {
            assert!(req(bad).event(&NodeStatus::default()).is_err(), "{bad}");
        }
        // Refused by the decoder: no such operation, a missing or
        // mistyped field.
        for bad in [
            r#"{"op":"volume","channel":"all","gain":"x"}"#,
            r#"{"op":"seek","channel":0}"#,
            r#"{"op":"jump","channel":0}"#,
            r#"{"op":"load"}"#,
        ] {
            assert!(serde_json::from_str::<Action>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_print_as_fields_that_read_back_as_the_same_event() {
        let events = [
            Event::Play {
                channel: Channel::All,
            },
            Event::Pause {
                channel: Channel::Stem(2),
            },
            Event::Seek {
                channel: Channel::Stem(0),
                to: Frames(48_000 * 90),
            },
            Event::Volume {
                channel: Channel::Stem(1),
                gain: Gain(40),
            },
        ];
        for e in events {
            let json = serde_json::to_string(&Action::of(&e)).expect("serializes");
            assert_eq!(req(&json).event(&NodeStatus::default()), Ok(e), "{json}");
        }
        assert_eq!(
            serde_json::to_value(Action::of(&events[3])).expect("serializes"),
            serde_json::json!({"op": "volume", "channel": 1, "gain": 40})
        );
        assert_eq!(
            serde_json::to_value(Action::of(&events[0])).expect("serializes"),
            serde_json::json!({"op": "play", "channel": "all"})
        );
        assert_eq!(
            serde_json::to_value(Action::of(&events[2])).expect("serializes"),
            serde_json::json!({"op": "seek", "channel": 0, "ms": 90_000})
        );
    }

    fn track(id: char, title: &str, channels: usize) -> TrackStatus {
        TrackStatus {
            id: id.to_string().repeat(32),
            title: title.into(),
            length_frames: 48_000 * 90,
            channels: (0..channels).map(|i| format!("s{i}")).collect(),
            stems: Vec::new(),
            holders: Vec::new(),
        }
    }

    #[test]
    fn loads_resolve_titles_and_id_prefixes_and_refuse_the_rest() {
        let tracks = [
            track('a', "Morning", 2),
            track('b', "Mourning Dove", 3),
            track('c', "Broken", 0),
        ];
        let morning = Event::Load {
            track: "a".repeat(32).parse().unwrap_or(TrackId([0; 16])),
            channels: 2,
            length: Frames(48_000 * 90),
        };
        assert_eq!(load_event(&tracks, "morning"), Ok(morning));
        assert_eq!(load_event(&tracks, "aaaa"), Ok(morning));
        assert!(matches!(
            load_event(&tracks, "Mourn"),
            Ok(Event::Load { channels: 3, .. })
        ));
        // "Mo" matches two titles: ambiguous, both named.
        let ambiguous = load_event(&tracks, "Mo")
            .expect_err("two titles match")
            .to_string();
        assert!(
            ambiguous.contains("Morning") && ambiguous.contains("Mourning Dove"),
            "{ambiguous}"
        );
        let unknown = load_event(&tracks, "Evening")
            .expect_err("no title matches")
            .to_string();
        assert!(unknown.contains("no track called 'Evening'"), "{unknown}");
        assert!(matches!(
            load_event(&tracks, "Broken"),
            Err(ActionError::BadTrack(..))
        ));
        assert!(matches!(load_event(&[], "x"), Err(ActionError::Track(_))));
        // From the mixer page.
        let room = NodeStatus {
            tracks: tracks.to_vec().into(),
            ..NodeStatus::default()
        };
        assert_eq!(
            req(r#"{"op":"load","track":"aaaaaaaa"}"#).event(&room),
            Ok(morning)
        );
        let load = Action::of(&morning);
        assert_eq!(
            serde_json::to_value(&load).expect("serializes"),
            serde_json::json!({"op": "load", "track": "a".repeat(32)})
        );
        assert_eq!(load.event(&room), Ok(morning));
        // A load is not a channel action: a room without channels takes it.
        assert_eq!(check(&morning, 0, Some(Frames(1))), Ok(()));
    }

    #[test]
    fn checks_against_the_track() {
        let play = |c| Event::Play { channel: c };
        assert_eq!(check(&play(Channel::Stem(3)), 4, None), Ok(()));
        assert_eq!(
            check(&play(Channel::Stem(4)), 4, None),
            Err(ActionError::UnknownChannel {
                channel: 4,
                count: 4
            })
        );
        assert_eq!(
            check(&play(Channel::All), 0, None),
            Err(ActionError::NoChannels)
        );
        let seek = Event::Seek {
            channel: Channel::All,
            to: Frames(48_000 * 61),
        };
        assert_eq!(check(&seek, 2, None), Ok(()));
        assert_eq!(check(&seek, 2, Some(Frames(48_000 * 61))), Ok(()));
        assert_eq!(
            check(&seek, 2, Some(Frames(48_000 * 60))),
            Err(ActionError::SeekPastEnd {
                to: "1:01".into(),
                length: "1:00".into()
            })
        );
        let msg = check(&play(Channel::Stem(9)), 2, None)
            .expect_err("refused")
            .to_string();
        assert_eq!(msg, "unknown channel 9: the track has 2 channel(s), 0 to 1");
    }
}
