//! Regression found by the chaos soak (`chaos --seed 7`, long isolation
//! then heal): a speaker alone past the solo timeout founds a room of its
//! own and decides there; when it merges back into the larger room, its
//! status must show only the decisions of the room it names. It used to
//! keep the solo room's, whose rounds (mesh time, shared by both rooms)
//! overlap the room's with other digests: a monitor read two digests for
//! one round of one room. Since the fix the decision list starts afresh
//! when the node changes room.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use autoharmonize_tests::netns;
use autoharmonize_tests::room::{Discovery, Room};

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");

#[test]
fn merged_speaker_reports_only_its_new_rooms_decisions() {
    if !netns::require_root_or_skip("merged_speaker_reports_only_its_new_rooms_decisions") {
        return;
    }
    let mut room = Room::new("ahsolo", 3, Path::new(BIN), Discovery::StaticPeers);
    room.start_all();
    let all = [0, 1, 2];
    assert!(
        room.wait_for(Duration::from_secs(5), |r| r.agree_on(&all))
            .is_some(),
        "no room"
    );
    let main_room = room.status(0).expect("status")["room"].clone();
    let lone = 2;
    room.lab().link_down(lone).expect("link down");
    // Alone for the solo timeout (10 s): a room of its own, writable.
    let solo = room.wait_for(Duration::from_secs(15), |r| {
        r.status(lone)
            .is_some_and(|s| s["room"] != main_room && s["writable"] == true)
    });
    assert!(
        solo.is_some(),
        "the lone speaker founded no room of its own"
    );
    let (code, body) = room.cast(lone, r#"{"event":"volume","channel":"all","gain":21}"#);
    assert_eq!(code, 200, "the solo room refused a vote: {body}");
    assert!(
        room.wait_for(Duration::from_secs(3), |r| r
            .status(lone)
            .is_some_and(|s| s["channels"][0]["gain"] == 21))
            .is_some(),
        "the solo vote was not applied"
    );
    // Heal at once, while the solo decision is among the last few.
    room.lab().link_up(lone).expect("link up");
    let mut first = None;
    let merged = room.wait_for(Duration::from_secs(5), |r| match r.status(lone) {
        Some(s) if s["room"] == main_room => {
            first.get_or_insert(s);
            true
        }
        _ => false,
    });
    if merged.is_none() {
        room.dump_logs();
    }
    assert!(merged.is_some(), "the lone speaker did not merge back");
    let first = first.expect("status");
    let stale: Vec<&serde_json::Value> = first["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .filter(|d| {
            d["votes"]
                .as_array()
                .is_some_and(|vs| vs.iter().any(|v| v["event"] == "volume" && v["gain"] == 21))
        })
        .collect();
    assert!(
        stale.is_empty(),
        "the merged speaker shows the solo room's decision under {main_room}: {stale:?}"
    );
    // And every node agrees on the digest of every round it shows.
    assert!(
        room.wait_for(Duration::from_secs(3), |r| r.agree_on(&all))
            .is_some()
    );
    let mut digests: HashMap<u64, String> = HashMap::new();
    for i in all {
        let s = room.status(i).expect("status");
        assert_eq!(s["room"], main_room);
        for d in s["decisions"].as_array().expect("decisions") {
            let round = d["round"].as_u64().expect("round");
            let digest = d["digest"].as_str().expect("digest").to_owned();
            let seen = digests.entry(round).or_insert_with(|| digest.clone());
            assert_eq!(*seen, digest, "node {i}: round {round} has two digests");
        }
    }
}
