//! Three real node processes holding one track of named stems (drums,
//! bass, keys): the CLI takes those names wherever it takes a channel
//! number (`play drums`, `volume BASS 40`, `seek keys 0:03`), applies them
//! to the right channel on every node, and refuses an unknown name with
//! the list of valid ones (exit 2).

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
fn channels_are_named_by_the_loaded_tracks_stems() {
    let room = LoopRoom::start_with_libraries(&[vec![alpha()], vec![alpha()], vec![alpha()]]);
    room.wait_formed(3, Duration::from_secs(15));
    let out = controller(&room, &["load", "Song Alpha"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

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
