//! What the mixer shows, computed from what the controller's mesh member
//! knows: the connection (live, read-only, wrong secret, no speaker), one
//! row per channel plus All, and the members with their health.
//!
//! Pure: the web page, `status` and `members` all render a [`MixerState`],
//! so they cannot disagree. All is the protocol's own summary
//! (`Transport::summary`), never a second implementation of it.

use std::time::Duration;

use autoharmonize_node::catalogue::TrackStatus;
use autoharmonize_node::status::{ChannelStatus, NodeStatus, ViewMember};
use autoharmonize_protocol::transport::{ChannelState, Frames, Gain, RunState, Transport};
use autoharmonize_protocol::{Channel, MeshTime};
use serde::Serialize;

use crate::action::ChannelArg;
use crate::pending::Pending;
use crate::position;

/// How the controller stands with the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Connection {
    /// Looking for the room.
    Joining,
    /// In the room; votes can be decided.
    Live,
    /// In the room, on a side without a majority: it shows the last agreed
    /// state and accepts no changes until the partition heals.
    ReadOnly,
    /// In the room, but no speaker of it has been heard for
    /// [`SILENT_AFTER`]: all are off, or the network to them is down. What
    /// they play is unknown, so positions stop where one was last heard.
    NoAnswer,
    /// Speakers answer, but their datagrams fail authentication here, or
    /// they refuse ours (refusal notices): the secrets differ.
    WrongSecret,
    /// Nothing answered at all.
    NoSpeaker,
}

impl Connection {
    /// How the controller stands, from its member's status after looking
    /// for the room for `waited`; `give_up` is when silence means nobody is
    /// there.
    #[must_use]
    pub fn of(st: &NodeStatus, waited: Duration, give_up: Duration) -> Connection {
        if st.room.is_some() {
            if silent_for(st, waited).is_some_and(|s| s >= SILENT_AFTER) {
                Connection::NoAnswer
            } else if st.writable {
                Connection::Live
            } else {
                Connection::ReadOnly
            }
        } else if st.envelope.forged > 0 || st.envelope.refused > 0 {
            // Datagrams came that failed authentication here, or speakers
            // sent refusal notices: ours failed there.
            Connection::WrongSecret
        } else if waited >= give_up {
            Connection::NoSpeaker
        } else {
            Connection::Joining
        }
    }

    /// What to tell a person.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Connection::Joining => "Looking for the speakers…",
            Connection::Live => "Live",
            Connection::ReadOnly => {
                "Read-only: this controller is cut off from the majority of the speakers. \
                 They keep playing the last agreed state; controls come back when the network heals."
            }
            Connection::NoAnswer => {
                "No speaker is answering: none has been heard for a few seconds (switched off, \
                 or the network between them and this computer is down). What they play now is \
                 unknown; the positions shown are from when one was last heard."
            }
            Connection::WrongSecret => {
                "Wrong secret: speakers answer, but this controller's datagrams fail \
                 authentication there (or theirs here): the group secret is likely not the \
                 room's (check --secret-file against the speakers' secret_file)."
            }
            Connection::NoSpeaker => {
                "No speaker found: nothing answered on the network \
                 (are the speakers on, on this network, and is --peer or mDNS right?)."
            }
        }
    }
}

/// Silence from every speaker of the room after which the controller says
/// that no speaker is answering: twenty heartbeats, far past the 600 ms in
/// which a live room evicts a dead member (so one dead speaker among live
/// ones never looks like this), and past a loaded machine's late rounds.
pub const SILENT_AFTER: Duration = Duration::from_secs(2);

/// How long since the most recently heard speaker of the view was heard,
/// for a controller that started `waited` ago; `None` when not in a room.
/// A speaker never heard counts as silent since the controller started
/// (a fresh controller has not heard everyone yet), and a view without
/// speakers as silent for ever: nobody is there to answer.
#[must_use]
pub fn silent_for(st: &NodeStatus, waited: Duration) -> Option<Duration> {
    st.room.as_ref()?;
    let heard = st
        .view
        .iter()
        .filter(|m| m.role != "controller" && m.id != st.id)
        .map(|m| m.last_heard_ms.map_or(waited, Duration::from_millis))
        .min();
    Some(heard.unwrap_or(Duration::MAX))
}

/// One row of the mixer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelView {
    /// `"all"` or the stem number.
    pub channel: ChannelArg,
    /// The stem's name in the loaded track; null for All, without a
    /// track, or until the track's description has arrived.
    pub name: Option<String>,
    /// `playing`, `paused` or (All only) `mixed`.
    pub run: &'static str,
    /// Position at `MixerState::mesh_time_ns`, in ms.
    pub position_ms: u64,
    /// The same as `m:ss`.
    pub position: String,
    /// Volume, percent.
    pub gain: u8,
    /// A vote of ours on it waits for its decision.
    pub pending: bool,
}

/// A member of the room, with its health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Member id (hex).
    pub id: String,
    /// Its name (config `name`, from the room's catalogue); null until
    /// that has arrived (see [`MemberView::label`]).
    pub name: Option<String>,
    /// `speaker` or `controller`.
    pub role: String,
    /// The stem number it plays, `"all"`, or none for a controller.
    pub channel: Option<ChannelArg>,
    /// The name of the stem it plays in the loaded track, once known.
    pub channel_name: Option<String>,
    /// `good` (≤ 0.2 ms), `fair` (≤ 1 ms), `poor`, or `unknown`.
    pub clock: &'static str,
    /// Bound on its clock error, µs.
    pub clock_error_us: Option<u32>,
    /// Audio queued ahead of its DAC, ms.
    pub buffer_ms: Option<u16>,
    /// Output underruns since it started.
    pub xruns: Option<u32>,
    /// Milliseconds since it was last heard.
    pub last_heard_ms: Option<u64>,
    /// This controller.
    pub is_self: bool,
    /// The room's leader (time reference).
    pub is_leader: bool,
}

impl MemberView {
    /// What to call it: its name, or its role and short id with a note
    /// that the name has not arrived.
    #[must_use]
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!(
                "{} {} (name not known yet)",
                self.role,
                self.id.get(..8).unwrap_or(&self.id)
            ),
        }
    }
}

impl TrackView {
    /// What to call it: its title, or its short id with a note that the
    /// title has not arrived.
    #[must_use]
    pub fn label(&self) -> String {
        match &self.title {
            Some(t) => t.clone(),
            None => format!("{} (title not known yet)", self.short_id),
        }
    }
}

/// Everything the mixer shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MixerState {
    /// How the controller stands with the room.
    pub connection: Connection,
    /// What to tell a person about it.
    pub message: &'static str,
    /// Whether controls may be used.
    pub writable: bool,
    /// The room, if joined.
    pub room: Option<String>,
    /// Mesh time of the positions, ns: now, or when a speaker was last
    /// heard if none is answering.
    pub mesh_time_ns: Option<u64>,
    /// Whether playing channels move on from their position as time
    /// passes (false when no speaker answers: what they do is unknown).
    pub advancing: bool,
    /// The All channel: the aggregate of every channel.
    pub all: ChannelView,
    /// One row per channel.
    pub channels: Vec<ChannelView>,
    /// The room's members.
    pub members: Vec<MemberView>,
    /// The track the room plays, if one is loaded.
    pub track: Option<TrackView>,
    /// Every track the room holds (the picker's choices).
    pub tracks: Vec<TrackChoice>,
    /// The room came back from a power cut as it was (paused where it
    /// stood) and nobody has decided anything since.
    pub restored: bool,
}

/// The loaded track.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrackView {
    /// Track id (hex).
    pub id: String,
    /// Its first 8 hex digits.
    pub short_id: String,
    /// Title; null until the catalogue describes the track.
    pub title: Option<String>,
    /// Length in ms.
    pub length_ms: u64,
    /// Length as `m:ss`.
    pub length: String,
    /// Channel names, in order (empty until described).
    pub channels: Vec<String>,
}

/// A track of the room's catalogue, for the picker and `tracks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrackChoice {
    /// Track id (hex).
    pub id: String,
    /// Its first 8 hex digits.
    pub short_id: String,
    /// Title.
    pub title: String,
    /// Length as `m:ss`.
    pub length: String,
    /// Length in 48 kHz frames.
    pub length_frames: u64,
    /// Channel names in order.
    pub channels: Vec<String>,
    /// Who holds which of its stems.
    pub holders: Vec<HolderView>,
    /// Whether this is the loaded track.
    pub loaded: bool,
}

/// A member holding stems of a track.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HolderView {
    /// Member id (hex).
    pub id: String,
    /// Its name, once the catalogue gave it.
    pub name: Option<String>,
    /// The stems it holds, by name (the number where a name is missing).
    pub stems: Vec<String>,
    /// Whether it holds every stem of the track.
    pub all: bool,
}

impl HolderView {
    /// `name (stems)` or `name (all)`; until the name is known, the id's
    /// first 8 digits and a note saying so.
    #[must_use]
    pub fn label(&self) -> String {
        let name = self.name.clone().unwrap_or_else(|| {
            format!(
                "{} [name not known yet]",
                self.id.chars().take(8).collect::<String>()
            )
        });
        if self.all {
            format!("{name} (all)")
        } else {
            format!("{name} ({})", self.stems.join(", "))
        }
    }
}

/// The picker's entry for a catalogue track.
fn choice(t: &TrackStatus, loaded: Option<&str>) -> TrackChoice {
    let length = Frames(t.length_frames);
    TrackChoice {
        id: t.id.clone(),
        short_id: t.id.chars().take(8).collect(),
        title: t.title.clone(),
        length: position::format(length),
        length_frames: t.length_frames,
        channels: t.channels.clone(),
        holders: t
            .holders
            .iter()
            .map(|h| {
                let stems: Vec<String> = h
                    .stems
                    .iter()
                    .map(|&i| {
                        t.channels
                            .get(usize::from(i))
                            .cloned()
                            .unwrap_or_else(|| i.to_string())
                    })
                    .collect();
                HolderView {
                    id: h.id.clone(),
                    name: h.name.clone(),
                    all: stems.len() == t.channels.len(),
                    stems,
                }
            })
            .collect(),
        loaded: loaded == Some(t.id.as_str()),
    }
}

/// The protocol transport a status describes (the status carries the
/// agreed anchors of every channel).
#[must_use]
pub fn transport_of(channels: &[ChannelStatus]) -> Transport {
    let mut t = Transport::new(channels.len(), MeshTime(0), Gain::MAX);
    for (state, c) in t.channels.iter_mut().zip(channels) {
        *state = ChannelState {
            playing: c.playing,
            anchor_pos: Frames(c.anchor_pos),
            anchor_at: MeshTime(c.anchor_at),
            gain: Gain(c.gain),
        };
    }
    t
}

fn row(
    channel: Channel,
    name: Option<String>,
    run: &'static str,
    pos: Frames,
    gain: Gain,
    pending: bool,
) -> ChannelView {
    ChannelView {
        channel: channel.into(),
        name,
        run,
        position_ms: position::millis(pos),
        position: position::format(pos),
        gain: gain.0,
        pending,
    }
}

/// Clock-sync health in words.
#[must_use]
pub fn clock_health(error_us: Option<u32>) -> &'static str {
    match error_us {
        None => "unknown",
        Some(e) if e <= 200 => "good",
        Some(e) if e <= 1_000 => "fair",
        Some(_) => "poor",
    }
}

/// The loaded track's name for channel `i`, once described.
fn stem_name(st: &NodeStatus, i: u8) -> Option<String> {
    st.track
        .as_ref()
        .and_then(|t| t.channels.get(usize::from(i)).cloned())
}

fn member(m: &ViewMember, st: &NodeStatus) -> MemberView {
    let channel = match (m.role.as_str(), m.stem) {
        ("controller", _) => None,
        (_, Some(s)) => Some(Channel::Stem(s).into()),
        (_, None) => Some(Channel::All.into()),
    };
    MemberView {
        id: m.id.clone(),
        name: m.name.clone(),
        role: m.role.clone(),
        channel,
        channel_name: m.stem.and_then(|s| stem_name(st, s)),
        clock: clock_health(m.clock_error_us),
        clock_error_us: m.clock_error_us,
        buffer_ms: m.buffer_ms,
        xruns: m.xruns,
        last_heard_ms: m.last_heard_ms,
        is_self: m.id == st.id,
        is_leader: st.leader.as_deref() == Some(m.id.as_str()),
    }
}

/// The mixer's view of `st`, with our `pending` votes, for a controller
/// that has looked for the room for `waited`.
#[must_use]
pub fn state(
    st: &NodeStatus,
    pending: &Pending,
    waited: Duration,
    give_up: Duration,
) -> MixerState {
    state_held(st, pending, waited, give_up, &mut Held::default())
}

/// The instant at which positions are held while no speaker answers,
/// kept from one state to the next by a long-running mixer: each status
/// places "last heard" a little differently (whole milliseconds, a clock
/// estimate that still moves), and the held positions must not jitter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held(Option<u64>);

/// [`state`], with positions held at `held`'s instant while no speaker
/// answers (set at the first such state, cleared when one answers again).
#[must_use]
pub fn state_held(
    st: &NodeStatus,
    pending: &Pending,
    waited: Duration,
    give_up: Duration,
    held: &mut Held,
) -> MixerState {
    let connection = Connection::of(st, waited, give_up);
    let t = transport_of(&st.channels);
    // Nobody answers: show the room as it was when a speaker was last
    // heard, rather than positions that move on for all we know.
    let at = match (connection, st.mesh_time_ns, silent_for(st, waited)) {
        (Connection::NoAnswer, Some(now), Some(silent)) => {
            let last_heard =
                now.saturating_sub(u64::try_from(silent.as_nanos()).unwrap_or(u64::MAX));
            Some(*held.0.get_or_insert(last_heard))
        }
        (_, now, _) => {
            held.0 = None;
            now
        }
    };
    let now = MeshTime(at.unwrap_or(0));
    let channels = t
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let i = u8::try_from(i).unwrap_or(u8::MAX);
            let stem = Channel::Stem(i);
            row(
                stem,
                stem_name(st, i),
                if c.playing { "playing" } else { "paused" },
                c.position_at(now),
                c.gain,
                pending.is_pending(stem),
            )
        })
        .collect();
    let s = t.summary(now);
    let run = match s.run {
        RunState::Playing => "playing",
        RunState::Paused => "paused",
        RunState::Mixed => "mixed",
    };
    MixerState {
        connection,
        message: connection.message(),
        writable: connection == Connection::Live,
        room: st.room.clone(),
        mesh_time_ns: at,
        advancing: connection != Connection::NoAnswer,
        all: row(
            Channel::All,
            None,
            run,
            s.position,
            s.gain,
            pending.is_pending(Channel::All),
        ),
        channels,
        members: st.view.iter().map(|m| member(m, st)).collect(),
        track: st.track.as_ref().map(|t| {
            let length = Frames(t.length_frames);
            TrackView {
                id: t.id.clone(),
                short_id: t.short_id.clone(),
                title: t.title.clone(),
                length_ms: position::millis(length),
                length: position::format(length),
                channels: t.channels.clone(),
            }
        }),
        tracks: st
            .tracks
            .iter()
            .map(|t| choice(t, st.track.as_ref().map(|l| l.id.as_str())))
            .collect(),
        restored: st.restored,
    }
}

/// The loaded track's length, if a track is loaded: what a seek may not
/// pass.
#[must_use]
pub fn loaded_length(st: &NodeStatus) -> Option<Frames> {
    st.track.as_ref().map(|t| Frames(t.length_frames))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVE_UP: Duration = Duration::from_secs(3);

    fn status() -> NodeStatus {
        NodeStatus {
            id: "00000000000000cc".into(),
            room: Some("1/00000000000000aa".into()),
            leader: Some("00000000000000aa".into()),
            writable: true,
            mesh_time_ns: Some(2_000_000_000),
            channels: vec![
                ChannelStatus {
                    playing: true,
                    anchor_pos: 0,
                    anchor_at: 1_000_000_000,
                    gain: 80,
                    ..ChannelStatus::default()
                },
                ChannelStatus {
                    playing: false,
                    anchor_pos: 48_000 * 3,
                    anchor_at: 0,
                    gain: 41,
                    ..ChannelStatus::default()
                },
            ],
            view: vec![
                ViewMember {
                    id: "00000000000000aa".into(),
                    role: "speaker".into(),
                    stem: Some(0),
                    clock_error_us: Some(0),
                    last_heard_ms: Some(30),
                    ..ViewMember::default()
                },
                ViewMember {
                    id: "00000000000000cc".into(),
                    role: "controller".into(),
                    clock_error_us: Some(4_000),
                    ..ViewMember::default()
                },
            ],
            ..NodeStatus::default()
        }
    }

    #[test]
    fn rows_and_the_all_summary() {
        let m = state(&status(), &Pending::default(), Duration::ZERO, GIVE_UP);
        assert_eq!(m.connection, Connection::Live);
        assert!(m.writable);
        assert_eq!(m.channels.len(), 2);
        assert_eq!(m.channels[0].run, "playing");
        assert_eq!(m.channels[0].position_ms, 1_000);
        assert_eq!(m.channels[1].run, "paused");
        assert_eq!(m.channels[1].position, "0:03");
        // All: mixed, mean position 2 s, mean gain 60 (rounded down).
        assert_eq!(m.all.run, "mixed");
        assert_eq!(m.all.position_ms, 2_000);
        assert_eq!(m.all.gain, 60);
        assert!(!m.all.pending);
    }

    #[test]
    fn pending_shows_on_the_channel_and_all() {
        let mut p = Pending::default();
        p.cast(1, Channel::Stem(1));
        let m = state(&status(), &p, Duration::ZERO, GIVE_UP);
        assert!(!m.channels[0].pending);
        assert!(m.channels[1].pending);
        assert!(m.all.pending);
    }

    #[test]
    fn names_and_titles_are_null_until_described() {
        let mut st = status();
        st.track = Some(autoharmonize_node::status::LoadedTrackStatus {
            id: "ab".repeat(16),
            short_id: "abababab".into(),
            length_frames: 48_000 * 60,
            ..Default::default()
        });
        let m = state(&st, &Pending::default(), Duration::ZERO, GIVE_UP);
        assert_eq!(m.members[0].name, None);
        assert_eq!(
            m.members[0].label(),
            "speaker 00000000 (name not known yet)"
        );
        let track = m.track.as_ref().expect("a track");
        assert_eq!(track.title, None);
        assert_eq!(track.label(), "abababab (title not known yet)");
        assert_eq!(m.channels[0].name, None);

        st.view[0].name = Some("kitchen".into());
        if let Some(t) = st.track.as_mut() {
            t.title = Some("Morning".into());
            t.channels = vec!["drums".into(), "bass".into()];
        }
        let m = state(&st, &Pending::default(), Duration::ZERO, GIVE_UP);
        assert_eq!(m.members[0].label(), "kitchen");
        assert_eq!(m.members[0].channel_name.as_deref(), Some("drums"));
        assert_eq!(m.channels[1].name.as_deref(), Some("bass"));
        assert_eq!(m.all.name, None);
        assert_eq!(
            m.track.as_ref().map(TrackView::label).as_deref(),
            Some("Morning")
        );
    }

    #[test]
    fn members_with_health() {
        let m = state(&status(), &Pending::default(), Duration::ZERO, GIVE_UP);
        assert_eq!(m.members.len(), 2);
        assert_eq!(m.members[0].channel, Some(ChannelArg::Number(0)));
        assert_eq!(m.members[0].clock, "good");
        assert!(m.members[0].is_leader && !m.members[0].is_self);
        assert_eq!(m.members[1].channel, None);
        assert_eq!(m.members[1].clock, "poor");
        assert!(m.members[1].is_self);
        assert_eq!(clock_health(Some(900)), "fair");
        assert_eq!(clock_health(None), "unknown");
    }

    #[test]
    fn no_speaker_heard_for_a_while_stops_the_positions() {
        let mut st = status();
        // Channel 0 plays from 1 s; now is 2 s; the speaker was heard 30 ms ago.
        let m = state(&st, &Pending::default(), Duration::ZERO, GIVE_UP);
        assert_eq!((m.connection, m.advancing), (Connection::Live, true));
        st.view[0].last_heard_ms = Some(1_999);
        assert_eq!(
            Connection::of(&st, Duration::ZERO, GIVE_UP),
            Connection::Live
        );
        st.view[0].last_heard_ms = Some(2_500);
        st.mesh_time_ns = Some(4_000_000_000);
        let m = state(&st, &Pending::default(), Duration::ZERO, GIVE_UP);
        assert_eq!(m.connection, Connection::NoAnswer);
        assert!(!m.writable && !m.advancing);
        assert!(
            m.message.contains("No speaker is answering"),
            "{}",
            m.message
        );
        // Shown at 1.5 s, when the speaker was last heard: 0.5 s played.
        assert_eq!(m.mesh_time_ns, Some(1_500_000_000));
        assert_eq!(m.channels[0].position_ms, 500);
        // Later: still the same, even where the last-heard figure lands a
        // little elsewhere (whole milliseconds, a clock still settling).
        let mut held = Held::default();
        let first = state_held(&st, &Pending::default(), Duration::ZERO, GIVE_UP, &mut held);
        st.view[0].last_heard_ms = Some(5_499);
        st.mesh_time_ns = Some(7_000_300_000);
        let later = state_held(&st, &Pending::default(), Duration::ZERO, GIVE_UP, &mut held);
        assert_eq!(later.channels[0].position_ms, 500);
        assert_eq!(later.mesh_time_ns, first.mesh_time_ns);
        // A speaker answers again: live positions, the hold is gone.
        st.view[0].last_heard_ms = Some(20);
        let back = state_held(&st, &Pending::default(), Duration::ZERO, GIVE_UP, &mut held);
        assert!(back.advancing && back.channels[0].position_ms > 5_000);
        assert_eq!(held, Held::default());
        // Read-only with a speaker heard is still read-only (they play on).
        st.view[0].last_heard_ms = Some(50);
        st.writable = false;
        assert_eq!(
            Connection::of(&st, Duration::ZERO, GIVE_UP),
            Connection::ReadOnly
        );
        // Never heard: silent only once the controller has waited as long.
        st.view[0].last_heard_ms = None;
        assert_eq!(
            Connection::of(&st, Duration::from_millis(500), GIVE_UP),
            Connection::ReadOnly
        );
        assert_eq!(
            Connection::of(&st, SILENT_AFTER, GIVE_UP),
            Connection::NoAnswer
        );
        // A view without any speaker: nobody answers.
        st.view.remove(0);
        assert_eq!(
            Connection::of(&st, Duration::ZERO, GIVE_UP),
            Connection::NoAnswer
        );
    }

    #[test]
    fn connection_states() {
        let mut st = status();
        st.writable = false;
        assert_eq!(
            Connection::of(&st, Duration::ZERO, GIVE_UP),
            Connection::ReadOnly
        );
        st.room = None;
        assert_eq!(
            Connection::of(&st, Duration::ZERO, GIVE_UP),
            Connection::Joining
        );
        assert_eq!(Connection::of(&st, GIVE_UP, GIVE_UP), Connection::NoSpeaker);
        st.envelope.refused = 1;
        assert_eq!(
            Connection::of(&st, GIVE_UP, GIVE_UP),
            Connection::WrongSecret,
            "refusal notices from the speakers"
        );
        st.envelope.refused = 0;
        st.envelope.forged = 3;
        assert_eq!(
            Connection::of(&st, Duration::ZERO, GIVE_UP),
            Connection::WrongSecret
        );
        let m = state(&st, &Pending::default(), GIVE_UP, GIVE_UP);
        assert!(!m.writable);
        assert!(m.message.contains("secret"));
    }
}
