//! What the command-line verbs print: the same [`MixerState`] the web page
//! shows, as aligned text for people (`--json` prints the state itself).
//!
//! After an action the report shows what the room *decided* for the
//! channel, which may differ from what was asked when another controller
//! acted in the same round (say, a greater seek target won); the note says
//! so, and both controllers print the same decided state.

use autoharmonize_protocol::Channel;
use autoharmonize_protocol::event::Event;
use std::fmt::Write as _;

use crate::action::ChannelArg;
use crate::mixer::{ChannelView, HolderView, MemberView, MixerState};
use crate::position;

/// What a row is called: `All`, `1 bass`, or `Channel 1` while the
/// channel has no name (no track loaded, or its description not arrived).
fn channel_name(c: &ChannelView) -> String {
    match (&c.channel, &c.name) {
        (ChannelArg::Number(n), Some(name)) => format!("{n} {name}"),
        (ChannelArg::Number(n), None) => format!("Channel {n}"),
        (ChannelArg::Text(_), _) => "All".to_owned(),
    }
}

fn channel_line(c: &ChannelView, width: usize) -> String {
    format!(
        "{:<width$} {:<8} {:>8}  vol {:>3}{}",
        channel_name(c),
        c.run,
        c.position,
        c.gain,
        if c.pending { "  (pending)" } else { "" }
    )
}

/// The width of the name column for these rows (at least 11).
fn name_width<'a>(rows: impl Iterator<Item = &'a ChannelView>) -> usize {
    rows.map(|c| channel_name(c).chars().count())
        .max()
        .unwrap_or(0)
        .max(11)
}

/// The `track:` line: title (or a note that it is not known yet), id
/// prefix and length.
fn track_line(m: &MixerState) -> String {
    match &m.track {
        Some(t) => match &t.title {
            Some(title) => format!("track: {title} ({}, {})", t.short_id, t.length),
            None => format!("track: {} (title not known yet), {}", t.short_id, t.length),
        },
        None => "track: (none loaded)".to_owned(),
    }
}

/// A member as a list shows it: its name (or a note that it is not known
/// yet), marked as the leader and as this controller.
fn member_label(p: &MemberView) -> String {
    let mut name = p.label();
    if p.is_leader {
        name.push_str(" *leader");
    }
    if p.is_self {
        name.push_str(" (me)");
    }
    name
}

/// `status`: connection, members, the track, then All and every channel.
#[must_use]
pub fn status(m: &MixerState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "room: {}", m.room.as_deref().unwrap_or("(none)"));
    let _ = writeln!(out, "connection: {}", m.message);
    let members: Vec<String> = m.members.iter().map(member_label).collect();
    let _ = writeln!(
        out,
        "members: {}",
        if members.is_empty() {
            "(none)".to_owned()
        } else {
            members.join(", ")
        }
    );
    let _ = writeln!(out, "{}", track_line(m));
    if m.restored {
        let _ = writeln!(
            out,
            "restored: the room came back as it was before it stopped (paused where it stood)"
        );
    }
    let width = name_width(std::iter::once(&m.all).chain(&m.channels));
    let _ = writeln!(out, "{}", channel_line(&m.all, width));
    for c in &m.channels {
        let _ = writeln!(out, "{}", channel_line(c, width));
    }
    out
}

/// The channel a member plays, as `members` shows it.
fn member_channel(p: &MemberView) -> String {
    match (&p.channel, &p.channel_name) {
        (None, _) => "-".to_owned(),
        (Some(ChannelArg::Number(n)), Some(name)) => format!("{n} {name}"),
        (Some(ChannelArg::Number(n)), None) => n.to_string(),
        (Some(ChannelArg::Text(t)), _) => t.clone(),
    }
}

/// `members`: one line per member.
#[must_use]
pub fn members(m: &MixerState) -> String {
    let names: Vec<String> = m.members.iter().map(member_label).collect();
    let channels: Vec<String> = m.members.iter().map(member_channel).collect();
    let nw = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .max(28);
    let cw = channels
        .iter()
        .map(|c| c.chars().count())
        .max()
        .unwrap_or(0)
        .max(7);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<nw$} {:<cw$} {:<18} {:>7} {:>6} {:>10}",
        "NAME", "CHANNEL", "CLOCK SYNC", "BUFFER", "XRUNS", "LAST HEARD"
    );
    for ((p, name), channel) in m.members.iter().zip(&names).zip(&channels) {
        let clock = match p.clock_error_us {
            Some(e) => format!("{} ±{e}µs", p.clock),
            None => p.clock.to_owned(),
        };
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<nw$} {:<cw$} {:<18} {:>7} {:>6} {:>10}",
            name,
            channel,
            clock,
            opt(p.buffer_ms.map(|b| format!("{b}ms"))),
            opt(p.xruns.map(|x| x.to_string())),
            opt(p.last_heard_ms.map(|l| format!("{l}ms"))),
        );
    }
    out
}

/// The row an event's channel shows.
#[must_use]
pub fn row_of(m: &MixerState, channel: Channel) -> Option<&ChannelView> {
    match channel {
        Channel::All => Some(&m.all),
        Channel::Stem(i) => m.channels.get(usize::from(i)),
    }
}

/// `tracks`: one line per track of the room's catalogue (`*` marks the
/// loaded one), with its holders; a note if the catalogue is incomplete.
#[must_use]
pub fn tracks(m: &MixerState, complete: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:<8}  {:<28} {:>7}  {:<30}  HOLDERS",
        "ID", "TITLE", "LENGTH", "CHANNELS"
    );
    for t in &m.tracks {
        let _ = writeln!(
            out,
            "{} {:<8}  {:<28} {:>7}  {:<30}  {}",
            if t.loaded { "*" } else { " " },
            t.short_id,
            t.title,
            t.length,
            t.channels.join(", "),
            t.holders
                .iter()
                .map(HolderView::label)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if m.tracks.is_empty() {
        let _ = writeln!(out, "(no track: no member of the room holds one)");
    }
    if !complete {
        let _ = writeln!(
            out,
            "note: some members' catalogues have not arrived yet; the list may be incomplete"
        );
    }
    out
}

/// After an action: what the room decided for the channel, and a note if
/// that is not what was asked.
#[must_use]
pub fn applied(event: &Event, m: &MixerState) -> String {
    if let Event::Load { track, .. } = event {
        let ok = m.track.as_ref().is_some_and(|t| t.id == track.to_string());
        let mut out = format!("loaded on every speaker: {}\n", track_line(m));
        if !ok {
            out = format!(
                "applied, but the room plays another track: {}\nnote: another load won in the same round (see docs/protocol.md, Choice function)\n",
                track_line(m)
            );
        }
        return out;
    }
    let Some(row) = row_of(m, event.channel()) else {
        return "applied\n".into();
    };
    let asked = match *event {
        Event::Play { .. } => row.run == "playing",
        Event::Pause { .. } => row.run == "paused",
        // A playing channel has moved on since the instant it was applied;
        // a second's slack covers the wait for a fresh status.
        Event::Seek { to, .. } => {
            let want = position::millis(to);
            row.position_ms >= want && row.position_ms <= want + 1_000
        }
        Event::Volume { gain, .. } => row.gain == gain.0,
        // A load is reported by the `load` verb itself (the track line).
        Event::Load { .. } => true,
    };
    let mut out = format!("applied: {}\n", channel_line(row, 0));
    if !asked {
        out.push_str(
            "note: the room decided otherwise (another vote in the same round won; see docs/protocol.md, Choice function)\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mixer::{Connection, TrackView};
    use autoharmonize_protocol::transport::{Frames, Gain};

    fn view(channel: Channel, run: &'static str, ms: u64, gain: u8) -> ChannelView {
        ChannelView {
            channel: channel.into(),
            name: None,
            run,
            position_ms: ms,
            position: position::format(Frames::from_nanos(
                autoharmonize_protocol::Nanos::from_millis(ms),
            )),
            gain,
            pending: false,
        }
    }

    fn state() -> MixerState {
        MixerState {
            connection: Connection::Live,
            message: Connection::Live.message(),
            writable: true,
            room: Some("5/00000000000000aa".into()),
            mesh_time_ns: Some(0),
            advancing: true,
            all: view(Channel::All, "mixed", 45_000, 50),
            channels: vec![
                view(Channel::Stem(0), "playing", 90_000, 40),
                view(Channel::Stem(1), "paused", 0, 60),
            ],
            members: vec![MemberView {
                id: "00000000000000aa".into(),
                name: Some("kitchen".into()),
                role: "speaker".into(),
                channel: Some(ChannelArg::Number(0)),
                channel_name: None,
                clock: "good",
                clock_error_us: Some(12),
                buffer_ms: Some(40),
                xruns: Some(0),
                last_heard_ms: Some(80),
                is_self: false,
                is_leader: true,
            }],
            track: None,
            tracks: Vec::new(),
            restored: false,
        }
    }

    #[test]
    fn status_says_when_the_room_was_restored() {
        let mut m = state();
        assert!(!status(&m).contains("restored"));
        m.restored = true;
        assert!(status(&m).lines().any(|l| l.starts_with("restored: ")));
    }

    #[test]
    fn status_lists_all_then_channels() {
        let s = status(&state());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 7);
        assert_eq!(lines[2], "members: kitchen *leader");
        assert_eq!(lines[3], "track: (none loaded)");
        assert!(lines[4].starts_with("All") && lines[4].contains("mixed"));
        assert!(
            lines[5].contains("Channel 0")
                && lines[5].contains("1:30")
                && lines[5].contains("vol  40")
        );
    }

    /// The state once a track of named stems is loaded, described or not.
    fn with_track(described: bool) -> MixerState {
        let mut m = state();
        let names = ["drums", "bass"];
        for (c, n) in m.channels.iter_mut().zip(names) {
            c.name = described.then(|| n.to_owned());
        }
        m.members[0].channel_name = described.then(|| "drums".to_owned());
        m.track = Some(TrackView {
            id: "ab".repeat(16),
            short_id: "abababab".into(),
            title: described.then(|| "Morning".to_owned()),
            length_ms: 185_000,
            length: "3:05".into(),
            channels: if described {
                names.iter().map(|&n| n.to_owned()).collect()
            } else {
                Vec::new()
            },
        });
        m
    }

    #[test]
    fn titles_and_names_are_shown_or_said_to_be_unknown() {
        let s = status(&with_track(true));
        assert!(s.contains("track: Morning (abababab, 3:05)"), "{s}");
        assert!(s.contains("\n0 drums     playing"), "{s}");
        assert!(s.contains("\n1 bass      paused"), "{s}");
        let s = members(&with_track(true));
        assert!(s.contains("kitchen *leader"), "{s}");
        assert!(s.contains(" 0 drums "), "{s}");

        let mut m = with_track(false);
        m.members[0].name = None;
        let s = status(&m);
        assert!(
            s.contains("track: abababab (title not known yet), 3:05"),
            "{s}"
        );
        assert!(
            s.contains("members: speaker 00000000 (name not known yet) *leader"),
            "{s}"
        );
        assert!(s.contains("\nChannel 0"), "{s}");
        let s = members(&m);
        assert!(
            s.contains("speaker 00000000 (name not known yet) *leader"),
            "{s}"
        );
    }

    #[test]
    fn members_show_health() {
        let s = members(&state());
        assert!(s.contains("kitchen *leader"));
        assert!(s.contains("good ±12µs"));
        assert!(s.contains("40ms"));
    }

    #[test]
    fn tracks_list_marks_the_loaded_one_and_notes_an_incomplete_catalogue() {
        let mut m = state();
        m.tracks = vec![crate::mixer::TrackChoice {
            id: "ab".repeat(16),
            short_id: "abababab".into(),
            title: "Morning".into(),
            length: "3:05".into(),
            length_frames: 48_000 * 185,
            channels: vec!["drums".into(), "bass".into()],
            holders: vec![
                HolderView {
                    id: "00000000000000aa".into(),
                    name: Some("kitchen".into()),
                    stems: vec!["drums".into(), "bass".into()],
                    all: true,
                },
                HolderView {
                    id: "00000000000000bb".into(),
                    name: Some("hall".into()),
                    stems: vec!["bass".into()],
                    all: false,
                },
            ],
            loaded: true,
        }];
        let s = tracks(&m, true);
        let line = s.lines().nth(1).expect("a track line");
        assert!(line.starts_with("* abababab  Morning"), "{s}");
        assert!(line.contains("3:05") && line.contains("drums, bass"), "{s}");
        assert!(line.ends_with("kitchen (all); hall (bass)"), "{s}");
        assert!(!s.contains("note"));
        assert!(tracks(&m, false).contains("may be incomplete"));
        m.tracks.clear();
        assert!(tracks(&m, true).contains("no member of the room holds one"));
    }

    #[test]
    fn applied_notes_a_different_outcome() {
        let m = state();
        let ok = applied(
            &Event::Volume {
                channel: Channel::Stem(0),
                gain: Gain(40),
            },
            &m,
        );
        assert!(ok.starts_with("applied: Channel 0") && !ok.contains("note"));
        let other = applied(
            &Event::Seek {
                channel: Channel::Stem(0),
                to: Frames(48_000 * 10),
            },
            &m,
        );
        assert!(other.contains("decided otherwise"), "{other}");
        let seek = applied(
            &Event::Seek {
                channel: Channel::Stem(0),
                to: Frames(48_000 * 90),
            },
            &m,
        );
        assert!(!seek.contains("note"), "{seek}");
    }
}
