//! What a person asks the room to do, from the command line or the mixer,
//! checked before it becomes a vote.
//!
//! Both front ends go through [`Request`] → [`check`] → protocol
//! [`Event`], so the CLI and the web page refuse the same inputs with the
//! same words. The protocol would drop a vote for a channel the track lacks
//! without saying why; checking here gives the person a reason instead.

use autoharmonize_node::catalogue::{TrackStatus, find_track};
use autoharmonize_protocol::Channel;
use autoharmonize_protocol::content::TrackId;
use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::transport::{Frames, Gain};
use serde::Deserialize;

use crate::position::{self, PositionError};

/// Why an action was refused before any vote was cast.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// The channel is neither `all` nor a number.
    #[error("{0:?} is not a channel: use \"all\" or a channel number (0, 1, ...)")]
    NotAChannel(String),
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
    /// An operation the mixer does not know.
    #[error("unknown action {0:?} (play, pause, seek, volume, load)")]
    UnknownOp(String),
    /// A field the operation needs is missing.
    #[error("{0}")]
    Missing(&'static str),
}

/// A channel as a person names it: `all` or a stem number.
///
/// # Errors
/// [`ActionError::NotAChannel`].
pub fn parse_channel(text: &str) -> Result<Channel, ActionError> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("all") {
        return Ok(Channel::All);
    }
    t.parse::<u8>()
        .map(Channel::Stem)
        .map_err(|_| ActionError::NotAChannel(text.to_owned()))
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

/// An action from the mixer page, as JSON:
/// `{"op":"play","channel":"all"}`, `{"op":"seek","channel":1,"ms":90000}`,
/// `{"op":"volume","channel":"all","gain":40}`.
#[derive(Clone, Debug, Deserialize)]
pub struct Request {
    /// `play`, `pause`, `seek` or `volume`.
    pub op: String,
    /// `"all"` or a stem number (unused by `load`).
    #[serde(default)]
    pub channel: serde_json::Value,
    /// Seek target in milliseconds.
    #[serde(default)]
    pub ms: Option<u64>,
    /// Volume in percent.
    #[serde(default)]
    pub gain: Option<serde_json::Value>,
    /// Track to load (`load`): title or id prefix.
    #[serde(default)]
    pub track: Option<String>,
}

impl Request {
    /// The event it asks for (not yet checked against the track); a load
    /// is resolved against the room's `tracks`.
    ///
    /// # Errors
    /// [`ActionError`] for an unknown operation, channel, value or track.
    pub fn event(&self, tracks: &[TrackStatus]) -> Result<Event, ActionError> {
        if self.op == "load" {
            let query = self
                .track
                .as_deref()
                .ok_or(ActionError::Missing("load needs \"track\""))?;
            return load_event(tracks, query);
        }
        let channel = match &self.channel {
            serde_json::Value::String(s) => parse_channel(s)?,
            serde_json::Value::Number(n) => parse_channel(&n.to_string())?,
            other => return Err(ActionError::NotAChannel(other.to_string())),
        };
        match self.op.as_str() {
            "play" => Ok(Event::Play { channel }),
            "pause" => Ok(Event::Pause { channel }),
            "seek" => {
                let ms = self.ms.ok_or(ActionError::Missing("seek needs \"ms\""))?;
                Ok(Event::Seek {
                    channel,
                    to: Frames::from_nanos(autoharmonize_protocol::Nanos(
                        ms.saturating_mul(1_000_000),
                    )),
                })
            }
            "volume" => {
                let gain = match &self.gain {
                    Some(serde_json::Value::Number(n)) => parse_volume(&n.to_string())?,
                    Some(other) => return Err(ActionError::VolumeRange(other.to_string())),
                    None => return Err(ActionError::Missing("volume needs \"gain\"")),
                };
                Ok(Event::Volume { channel, gain })
            }
            other => Err(ActionError::UnknownOp(other.to_owned())),
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

    fn req(json: &str) -> Request {
        serde_json::from_str(json).expect("valid JSON")
    }

    #[test]
    fn channels_and_volumes_as_typed() {
        assert_eq!(parse_channel("all"), Ok(Channel::All));
        assert_eq!(parse_channel("ALL"), Ok(Channel::All));
        assert_eq!(parse_channel("2"), Ok(Channel::Stem(2)));
        assert!(matches!(
            parse_channel("bass"),
            Err(ActionError::NotAChannel(_))
        ));
        assert!(matches!(
            parse_channel("-1"),
            Err(ActionError::NotAChannel(_))
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
    fn mixer_requests_become_events() {
        assert_eq!(
            req(r#"{"op":"play","channel":"all"}"#).event(&[]),
            Ok(Event::Play {
                channel: Channel::All
            })
        );
        assert_eq!(
            req(r#"{"op":"seek","channel":1,"ms":1000}"#).event(&[]),
            Ok(Event::Seek {
                channel: Channel::Stem(1),
                to: Frames(48_000)
            })
        );
        assert_eq!(
            req(r#"{"op":"volume","channel":"all","gain":40}"#).event(&[]),
            Ok(Event::Volume {
                channel: Channel::All,
                gain: Gain(40)
            })
        );
        assert!(
            req(r#"{"op":"volume","channel":"all","gain":140}"#)
                .event(&[])
                .is_err()
        );
        assert!(
            req(r#"{"op":"volume","channel":"all","gain":"x"}"#)
                .event(&[])
                .is_err()
        );
        assert!(req(r#"{"op":"seek","channel":0}"#).event(&[]).is_err());
        assert!(req(r#"{"op":"jump","channel":0}"#).event(&[]).is_err());
        assert!(req(r#"{"op":"play","channel":null}"#).event(&[]).is_err());
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
        assert_eq!(
            req(r#"{"op":"load","track":"aaaaaaaa"}"#).event(&tracks),
            Ok(morning)
        );
        assert!(matches!(
            req(r#"{"op":"load"}"#).event(&tracks),
            Err(ActionError::Missing(_))
        ));
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
