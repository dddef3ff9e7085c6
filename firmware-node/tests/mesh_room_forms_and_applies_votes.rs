//! Real node processes, one per network namespace, with static peers: they
//! form one room (how fast is bench-mesh's figure), and a vote cast on one node
//! is applied by every node in the same round at the same `apply_at`.

use std::path::Path;
use std::time::Duration;

use autoharmonize_tests::netns;
use autoharmonize_tests::room::{Discovery, Room};

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");

#[test]
fn nodes_form_a_room_and_apply_a_vote_at_the_same_instant() {
    if !netns::require_root_or_skip("nodes_form_a_room_and_apply_a_vote_at_the_same_instant") {
        return;
    }
    let mut room = Room::new("ahform", 4, Path::new(BIN), Discovery::StaticPeers);
    room.start_all();
    let all = [0, 1, 2, 3];
    let formed = room.wait_for(Duration::from_secs(30), |r| r.agree_on(&all));
    if formed.is_none() {
        room.dump_logs();
    }
    let formed = formed.expect("one room with all four in the view");
    println!("room formed {} ms after the last start", formed.as_millis());
    // How fast is bench-mesh's figure; here only that it forms (above).

    let (code, body) = room.cast(2, r#"{"event":"seek","channel":"all","to":480000}"#);
    assert_eq!(code, 200, "cast refused: {body}");
    let applied = |r: &Room, i: usize| -> Option<(u64, u64, String)> {
        let s = r.status(i)?;
        s["decisions"].as_array()?.iter().find_map(|d| {
            let votes = d["votes"].as_array()?;
            votes
                .iter()
                .any(|v| v["event"] == "seek" && v["to"] == 480_000)
                .then(|| {
                    (
                        d["round"].as_u64().unwrap_or(0),
                        d["apply_at"].as_u64().unwrap_or(0),
                        d["digest"].as_str().unwrap_or("").to_string(),
                    )
                })
        })
    };
    let everywhere = room.wait_for(Duration::from_secs(2), |r| {
        all.iter().all(|&i| applied(r, i).is_some())
    });
    if everywhere.is_none() {
        room.dump_logs();
    }
    assert!(everywhere.is_some(), "the vote was not applied everywhere");
    let outcomes: Vec<_> = all
        .iter()
        .map(|&i| applied(&room, i).expect("applied"))
        .collect();
    assert!(
        outcomes.windows(2).all(|w| w[0] == w[1]),
        "different round, apply_at or state: {outcomes:?}"
    );
    // Every node's channel 0 is anchored at the sought frame.
    for &i in &all {
        let s = room.status(i).expect("status");
        assert_eq!(s["channels"][0]["anchor_pos"], 480_000, "node {i}");
        assert_eq!(s["channels"][0]["anchor_at"], outcomes[0].1, "node {i}");
    }
}
