//! Three real node processes holding one track of named stems (drums,
//! bass, keys). A fresh controller's `status`, `members` and verb output
//! name the track, the speakers and the channels (it waits briefly for the
//! catalogue that carries them, rather than printing ids); the CLI takes
//! those names wherever it takes a channel number (`play drums`, `volume
//! BASS 40`, `seek keys 0:03`), applies them to the right channel on every
//! node, and refuses an unknown name with the list of valid ones (exit 2).

mod support;

use std::time::Duration;

use support::{LoopRoom, TrackSpec, controller, wait_for};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn alpha() -> TrackSpec {
    TrackSpec {
        folder: "alpha",
        title: "Song Alpha",
        stems: vec![("drums", 8, 220), ("bass", 8, 110), ("keys", 8, 440)],
    }
}

/// Channel `i` of every node, as the nodes' own status shows it.
fn everywhere(room: &LoopRoom, i: usize, holds: impl Fn(&serde_json::Value) -> bool) -> bool {
    (0..room.len()).all(|n| room.status(n).is_some_and(|s| holds(&s["channels"][i])))
}

#[test]
fn a_fresh_controller_shows_and_takes_names() {
    let room = LoopRoom::start_with_libraries(&[vec![alpha()], vec![alpha()], vec![alpha()]]);
    room.wait_formed(3, Duration::from_secs(15));
    let out = controller(&room, &["load", "Song Alpha"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Every run below is a fresh controller, which has just joined.
    let out = controller(&room, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!said.contains("not known yet"), "{said}");
    assert!(said.contains("track: Song Alpha ("), "{said}");
    let members = said
        .lines()
        .find_map(|l| l.strip_prefix("members: "))
        .expect("a members line");
    for name in ["speaker0", "speaker1", "speaker2"] {
        assert!(members.contains(name), "{said}");
    }
    for row in ["0 drums ", "1 bass ", "2 keys "] {
        assert!(said.lines().any(|l| l.starts_with(row)), "{row}: {said}");
    }

    let out = controller(&room, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    assert_eq!(json["track"]["title"], "Song Alpha");
    assert_eq!(json["channels"][1]["name"], "bass");
    for m in json["members"].as_array().expect("members") {
        if m["role"] == "speaker" {
            assert!(
                m["name"].as_str().is_some_and(|n| n.starts_with("speaker")),
                "{m}"
            );
            assert!(m["channel_name"].is_string(), "{m}");
        }
    }

    let out = controller(&room, &["members"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    for (name, stem) in [
        ("speaker0", "0 drums"),
        ("speaker1", "1 bass"),
        ("speaker2", "2 keys"),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(name) && l.contains(stem)),
            "{name} {stem}: {listing}"
        );
    }

    let out = controller(&room, &["volume", "BASS", "40"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).starts_with("applied: 1 bass "), "{}", text(&out));
    let out = controller(&room, &["volume", "BASS", "40", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    assert_eq!(json["event"]["channel"], 1, "{json}");
    assert!(everywhere(&room, 1, |c| c["gain"] == 40));
    assert!(everywhere(&room, 0, |c| c["gain"] != 40));

    let out = controller(&room, &["play", "drums"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(everywhere(&room, 0, |c| c["playing"] == true));
    assert!(everywhere(&room, 2, |c| c["playing"] == false));

    let out = controller(&room, &["seek", "keys", "0:03"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let at_3s = wait_for(Duration::from_secs(2), || {
        everywhere(&room, 2, |c| c["anchor_pos"] == 48_000 * 3)
    });
    assert!(at_3s, "keys not at 0:03 on every node");

    // An unknown name: exit 2, the names it could have been, nothing cast.
    let before = room.status(0).expect("status")["channels"].clone();
    let out = controller(&room, &["pause", "vocals"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("\"vocals\" is not a channel")
            && text(&out).contains("or a name: drums, bass, keys"),
        "{}",
        text(&out)
    );
    assert_eq!(
        room.status(0).expect("status")["channels"][0]["playing"],
        before[0]["playing"]
    );
}
