//! The node's loopback HTTP endpoint: what it knows, as JSON, and a way for
//! local tools (tests, a button daemon, the controller on the same machine)
//! to cast a vote as if a button on the speaker had been pressed.
//!
//! `GET /status` returns [`NodeStatus`]; `POST /cast` takes a [`CastRequest`].
//! It listens on loopback only (the config refuses anything else): the page
//! has no password, so it must not be reachable from the network.
//!
//! Invariant: this module never touches the protocol state itself; it reads
//! the last snapshot the mesh loop published and sends commands to it.

use std::net::SocketAddr;
use std::sync::Arc;

use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::ids::Channel;
use autoharmonize_protocol::member::{CastError, Counters};
use autoharmonize_protocol::transport::{Frames, Gain};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

/// Everything the node knows, as published by the mesh loop.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeStatus {
    /// This speaker's member id (16 hex digits).
    pub id: String,
    /// Speaker name.
    pub name: String,
    /// Incarnation (boot epoch).
    pub boot: u32,
    /// The room, as `founded-round/founder`, if in one.
    pub room: Option<String>,
    /// Leadership term.
    pub term: u64,
    /// The leader (time reference) it follows.
    pub leader: Option<String>,
    /// Whether this node leads.
    pub is_leader: bool,
    /// Current round on the mesh clock.
    pub round: Option<u64>,
    /// Mesh time now, in ns.
    pub mesh_time_ns: Option<u64>,
    /// This node's local clock at the same instant as `mesh_time_ns`, in
    /// ns: the pair shows the clock mapping (tests compare it with the
    /// offsets and skews they gave each node).
    pub local_time_ns: u64,
    /// Committed round.
    pub commit_round: u64,
    /// Digest of the committed state (hex).
    pub digest: String,
    /// Whether votes cast here can be decided now (false: read-only).
    pub writable: bool,
    /// Bound on the mesh clock error, in µs (0 for the reference).
    pub clock_error_us: Option<u64>,
    /// Own votes waiting for a decision.
    pub pending_votes: usize,
    /// The committed view.
    pub view: Vec<ViewMember>,
    /// Channels of the committed transport state.
    pub channels: Vec<ChannelStatus>,
    /// The most recent decisions (newest last).
    pub decisions: Vec<DecisionStatus>,
    /// This node's most recent own votes (newest last).
    pub own_votes: Vec<OwnVoteStatus>,
    /// Protocol counters.
    pub protocol: Counters,
    /// Envelope (authentication) counters.
    pub envelope: EnvelopeCounters,
    /// The audio player, if audio runs.
    pub audio: Option<crate::audio::player::AudioStatus>,
    /// The track the room has loaded (agreed state), if any.
    pub track: Option<LoadedTrackStatus>,
    /// The room's catalogue: every track some member holds (shared with
    /// the mesh loop's cache, see [`crate::catalogue::ViewCache`]).
    pub tracks: Arc<[crate::catalogue::TrackStatus]>,
    /// Whether every member's catalogue index has arrived.
    pub catalogue_complete: bool,
    /// The room's state was restored from a speaker's saved state when
    /// the room formed (after a power cut), and nothing was decided since.
    pub restored: bool,
    /// Revision of the room's state: how many decisions changed it (see
    /// `protocol::transport::Transport::revision`).
    pub revision: u64,
}

/// The track the room has loaded.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LoadedTrackStatus {
    /// Track id (32 hex digits).
    pub id: String,
    /// Its first 8 hex digits.
    pub short_id: String,
    /// Title, once the catalogue describes it.
    pub title: Option<String>,
    /// Length in 48 kHz frames (agreed: seeks beyond it are refused).
    pub length_frames: u64,
    /// Channel names, once the catalogue describes it.
    pub channels: Vec<String>,
}

/// A member of the view.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ViewMember {
    /// Member id (hex).
    pub id: String,
    /// Incarnation.
    pub boot: u32,
    /// The name it gave (config `name`), once its catalogue index arrived.
    pub name: Option<String>,
    /// `speaker` or `controller`.
    pub role: String,
    /// Stem it plays, if announced.
    pub stem: Option<u8>,
    /// Bound on its mesh clock error, in µs, once it has an estimate.
    pub clock_error_us: Option<u32>,
    /// Audio queued ahead of its DAC, in ms.
    pub buffer_ms: Option<u16>,
    /// Its output underruns since it started.
    pub xruns: Option<u32>,
    /// Milliseconds since its last heartbeat reached this node (0 for this
    /// node itself); `None` if none has yet.
    pub last_heard_ms: Option<u64>,
}

/// One of this node's own votes and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct OwnVoteStatus {
    /// Its sequence number (as `POST /cast` returned it).
    pub seq: u32,
    /// The event (its fields inline, as `POST /cast` takes them).
    #[serde(flatten)]
    pub event: EventStatus,
    /// `pending`, `decided` or `dropped` (never decided: no quorum, or
    /// the node moved to another room).
    pub state: String,
    /// Mesh instant (ns) at which the decision carrying it takes effect.
    pub apply_at: Option<u64>,
}

/// A vote's event as the status shows it: fields, not debug text, in the
/// shape `POST /cast` takes (`{"event": "seek", "channel": 1, "to": …}`),
/// plus the load's track as 32 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum EventStatus {
    /// Play a channel.
    Play {
        /// `"all"` or a channel number.
        channel: ChannelName,
    },
    /// Pause a channel.
    Pause {
        /// `"all"` or a channel number.
        channel: ChannelName,
    },
    /// Seek a channel.
    Seek {
        /// `"all"` or a channel number.
        channel: ChannelName,
        /// Target, in 48 kHz frames.
        to: u64,
    },
    /// Set a channel's volume.
    Volume {
        /// `"all"` or a channel number.
        channel: ChannelName,
        /// Percent.
        gain: u8,
    },
    /// Load a track.
    Load {
        /// Track id (32 hex digits).
        track: String,
        /// Its channel count.
        channels: u8,
        /// Its length in 48 kHz frames.
        length: u64,
    },
}

/// A channel as JSON: the string `"all"` or the channel's number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ChannelName {
    /// Every channel (serialized as `"all"`).
    All(AllTag),
    /// One channel, by number.
    Stem(u8),
}

/// The literal `"all"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AllTag {
    /// `"all"`.
    All,
}

impl From<Channel> for ChannelName {
    fn from(c: Channel) -> ChannelName {
        match c {
            Channel::All => ChannelName::All(AllTag::All),
            Channel::Stem(i) => ChannelName::Stem(i),
        }
    }
}

impl From<Event> for EventStatus {
    fn from(e: Event) -> EventStatus {
        match e {
            Event::Play { channel } => EventStatus::Play {
                channel: channel.into(),
            },
            Event::Pause { channel } => EventStatus::Pause {
                channel: channel.into(),
            },
            Event::Seek { channel, to } => EventStatus::Seek {
                channel: channel.into(),
                to: to.0,
            },
            Event::Volume { channel, gain } => EventStatus::Volume {
                channel: channel.into(),
                gain: gain.0,
            },
            Event::Load {
                track,
                channels,
                length,
            } => EventStatus::Load {
                track: track.0.iter().map(|b| format!("{b:02x}")).collect(),
                channels,
                length: length.0,
            },
        }
    }
}

/// A decided vote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VoteStatus {
    /// The member that cast it (16 hex digits).
    pub member: String,
    /// Its sequence number.
    pub seq: u32,
    /// What it asked for.
    #[serde(flatten)]
    pub event: EventStatus,
}

/// One channel's agreed state.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ChannelStatus {
    /// Playing or paused.
    pub playing: bool,
    /// Position now, in 48 kHz frames.
    pub position: u64,
    /// Anchor position.
    pub anchor_pos: u64,
    /// Anchor mesh time (ns).
    pub anchor_at: u64,
    /// Gain in percent.
    pub gain: u8,
}

/// One committed round.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DecisionStatus {
    /// Round.
    pub round: u64,
    /// Term that sealed it.
    pub term: u64,
    /// Mesh time it takes effect (ns).
    pub apply_at: u64,
    /// Votes that took effect.
    pub votes: Vec<VoteStatus>,
    /// Membership changes.
    pub changes: Vec<String>,
    /// Digest after it (hex).
    pub digest: String,
}

/// Datagrams dropped before the protocol saw them, by reason.
#[derive(Clone, Debug, Default, Serialize)]
#[allow(missing_docs)]
pub struct EnvelopeCounters {
    pub opened: u64,
    pub short: u64,
    pub oversized: u64,
    pub wrong_version: u64,
    pub forged: u64,
    /// Refusal notices naming this member: another member could not
    /// authenticate our datagrams (another secret). Unauthenticated,
    /// only reported (see `protocol::refusal`).
    pub refused: u64,
    /// Refusal notices sent to the senders of forged datagrams.
    pub refusals_sent: u64,
    pub reflected: u64,
    pub stale_epoch: u64,
    pub replayed: u64,
    pub too_old: u64,
    pub send_errors: u64,
    /// Datagrams not sent because the socket's send buffer was full: with
    /// the link down the kernel holds packets while it resolves peers'
    /// addresses. Dropped, like any lost datagram, rather than stall the
    /// mesh loop until the buffer drains (seconds).
    pub send_full: u64,
    /// Datagrams held back because their address has been silent for a
    /// second (an unplugged or absent peer) while the socket's send queue
    /// was long: such an address then gets one per round, so the kernel's
    /// queue for it cannot fill the send buffer.
    pub paced: u64,
}

/// A vote to cast, as JSON: `{"event": "play", "channel": "all"}`,
/// `{"event": "seek", "channel": 1, "to": 480000}`,
/// `{"event": "volume", "channel": "all", "gain": 40}`.
#[derive(Clone, Debug, Deserialize)]
pub struct CastRequest {
    /// `play`, `pause`, `seek` or `volume`.
    pub event: String,
    /// `"all"` or a stem index.
    pub channel: serde_json::Value,
    /// Seek target in 48 kHz frames.
    pub to: Option<u64>,
    /// Volume in percent.
    pub gain: Option<u8>,
}

impl CastRequest {
    /// The protocol event, or why the request is invalid.
    pub fn event(&self) -> Result<Event, String> {
        let channel = match &self.channel {
            serde_json::Value::String(s) if s == "all" => Channel::All,
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|i| u8::try_from(i).ok())
                .map(Channel::Stem)
                .ok_or_else(|| format!("channel {n} is not a stem index (0-255)"))?,
            other => {
                return Err(format!(
                    "channel must be \"all\" or a stem index, not {other}"
                ));
            }
        };
        match self.event.as_str() {
            "play" => Ok(Event::Play { channel }),
            "pause" => Ok(Event::Pause { channel }),
            "seek" => {
                let to = self.to.ok_or("seek needs \"to\" (frames at 48 kHz)")?;
                Ok(Event::Seek {
                    channel,
                    to: Frames(to),
                })
            }
            "volume" => {
                let gain = self
                    .gain
                    .and_then(Gain::new)
                    .ok_or("volume needs \"gain\" from 0 to 100")?;
                Ok(Event::Volume { channel, gain })
            }
            other => Err(format!(
                "unknown event {other:?} (play, pause, seek, volume)"
            )),
        }
    }
}

/// A command from the endpoint to the mesh loop.
#[derive(Debug)]
pub enum Command {
    /// Cast a vote; the reply carries its sequence number.
    Cast(Event, oneshot::Sender<Result<u32, CastError>>),
}

#[derive(Clone)]
struct AppState {
    status: watch::Receiver<Arc<NodeStatus>>,
    commands: mpsc::Sender<Command>,
}

/// Serves the endpoint on `listener` until the mesh loop goes away.
pub async fn serve(
    listener: tokio::net::TcpListener,
    status: watch::Receiver<Arc<NodeStatus>>,
    commands: mpsc::Sender<Command>,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/status", get(get_status))
        .route("/cast", post(cast))
        .with_state(AppState { status, commands });
    axum::serve(listener, app).await
}

/// Binds the endpoint's listener (loopback only, checked by the config).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn get_status(State(s): State<AppState>) -> Json<NodeStatus> {
    Json((**s.status.borrow()).clone())
}

async fn cast(
    State(s): State<AppState>,
    Json(req): Json<CastRequest>,
) -> (StatusCode, Json<serde_json::Value>) {
    let event = match req.event() {
        Ok(e) => e,
        Err(problem) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({ "error": problem })),
            );
        }
    };
    let (tx, rx) = oneshot::channel();
    if s.commands.send(Command::Cast(event, tx)).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "the node is shutting down" })),
        );
    }
    match rx.await {
        Ok(Ok(seq)) => (StatusCode::OK, Json(serde_json::json!({ "seq": seq }))),
        Ok(Err(e)) => {
            let code = match e {
                CastError::Invalid(_) => StatusCode::BAD_REQUEST,
                CastError::NotJoined | CastError::ReadOnly | CastError::QueueFull => {
                    StatusCode::CONFLICT
                }
            };
            (code, Json(serde_json::json!({ "error": e.to_string() })))
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": "the node is shutting down" })),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn votes_are_fields_in_the_shape_cast_takes() {
        let v = VoteStatus {
            member: "00000000000000aa".into(),
            seq: 3,
            event: Event::Seek {
                channel: Channel::Stem(1),
                to: Frames(480_000),
            }
            .into(),
        };
        assert_eq!(
            serde_json::to_string(&v).expect("serializes"),
            r#"{"member":"00000000000000aa","seq":3,"event":"seek","channel":1,"to":480000}"#
        );
        let all: EventStatus = Event::Volume {
            channel: Channel::All,
            gain: Gain(40),
        }
        .into();
        assert_eq!(
            serde_json::to_string(&all).expect("serializes"),
            r#"{"event":"volume","channel":"all","gain":40}"#
        );
        // What the status shows, `POST /cast` takes back.
        let text = serde_json::to_string(&all).expect("serializes");
        let back: CastRequest = serde_json::from_str(&text).expect("a cast request");
        assert_eq!(
            back.event().ok(),
            Some(Event::Volume {
                channel: Channel::All,
                gain: Gain(40)
            })
        );
    }

    fn req(json: &str) -> CastRequest {
        serde_json::from_str(json).expect("valid JSON")
    }

    #[test]
    fn cast_requests_map_to_events() {
        assert_eq!(
            req(r#"{"event":"play","channel":"all"}"#).event(),
            Ok(Event::Play {
                channel: Channel::All
            })
        );
        assert_eq!(
            req(r#"{"event":"seek","channel":2,"to":96000}"#).event(),
            Ok(Event::Seek {
                channel: Channel::Stem(2),
                to: Frames(96_000)
            })
        );
        assert!(
            req(r#"{"event":"volume","channel":"all","gain":101}"#)
                .event()
                .is_err()
        );
        assert!(req(r#"{"event":"seek","channel":"all"}"#).event().is_err());
        assert!(req(r#"{"event":"jump","channel":"all"}"#).event().is_err());
        assert!(req(r#"{"event":"play","channel":300}"#).event().is_err());
        assert!(req(r#"{"event":"play","channel":"bass"}"#).event().is_err());
    }
}
