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
use crate::mixer::{ChannelView, HolderView, MixerState};
use crate::position;

fn channel_line(c: &ChannelView) -> String {
    let name = match &c.channel {
        ChannelArg::Number(n) => format!("Channel {n}"),
        ChannelArg::Text(_) => "All".to_owned(),
    };
    format!(
        "{name:<11} {:<8} {:>8}  vol {:>3}{}",
        c.run,
        c.position,
        c.gain,
        if c.pending { "  (pending)" } else { "" }
    )
}

/// The `track:` line: title, id prefix and length.
fn track_line(m: &MixerState) -> String {
    match &m.track {
        Some(t) => format!("track: {} ({}, {})", t.title, t.short_id, t.length),
        None => "track: (none loaded)".to_owned(),
    }
}

/// `status`: connection, the track, then All and every channel.
#[must_use]
pub fn status(m: &MixerState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "room: {}", m.room.as_deref().unwrap_or("(none)"));
    let _ = writeln!(out, "connection: {}", m.message);
    let _ = writeln!(out, "{}", track_line(m));
    let _ = writeln!(out, "{}", channel_line(&m.all));
    for c in &m.channels {
        let _ = writeln!(out, "{}", channel_line(c));
    }
    out
}

/// `members`: one line per member.
#[must_use]
pub fn members(m: &MixerState) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:<7} {:<18} {:>7} {:>6} {:>10}",
        "NAME", "CHANNEL", "CLOCK SYNC", "BUFFER", "XRUNS", "LAST HEARD"
    );
    for p in &m.members {
        let mut name = p.name.clone();
        if p.is_leader {
            name.push_str(" *leader");
        }
        if p.is_self {
            name.push_str(" (me)");
        }
        let clock = match p.clock_error_us {
            Some(e) => format!("{} ±{e}µs", p.clock),
            None => p.clock.to_owned(),
        };
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<28} {:<7} {:<18} {:>7} {:>6} {:>10}",
            name,
            match &p.channel {
                None => "-".to_owned(),
                Some(ChannelArg::Number(n)) => n.to_string(),
                Some(ChannelArg::Text(t)) => t.clone(),
            },
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
    let mut out = format!("applied: {}\n", channel_line(row));
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
    use crate::mixer::{Connection, MemberView};
    use autoharmonize_protocol::transport::{Frames, Gain};

    fn view(channel: Channel, run: &'static str, ms: u64, gain: u8) -> ChannelView {
        ChannelView {
            channel: channel.into(),
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
            all: view(Channel::All, "mixed", 45_000, 50),
            channels: vec![
                view(Channel::Stem(0), "playing", 90_000, 40),
                view(Channel::Stem(1), "paused", 0, 60),
            ],
            members: vec![MemberView {
                id: "00000000000000aa".into(),
                name: "speaker 00000000".into(),
                role: "speaker".into(),
                channel: Some(ChannelArg::Number(0)),
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
        }
    }

    #[test]
    fn status_lists_all_then_channels() {
        let s = status(&state());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[2], "track: (none loaded)");
        assert!(lines[3].starts_with("All") && lines[3].contains("mixed"));
        assert!(
            lines[4].contains("Channel 0")
                && lines[4].contains("1:30")
                && lines[4].contains("vol  40")
        );
    }

    #[test]
    fn members_show_health() {
        let s = members(&state());
        assert!(s.contains("speaker 00000000 *leader"));
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
