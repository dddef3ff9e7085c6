//! A node frozen with SIGSTOP for 3 s is treated like a crashed one (dropped
//! from the view while the others keep deciding); after SIGCONT it rejoins
//! without disturbing them.

use std::path::Path;
use std::time::Duration;

use autoharmonize_tests::netns;
use autoharmonize_tests::room::{Discovery, Room};

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");

#[test]
fn frozen_node_is_dropped_and_rejoins() {
    if !netns::require_root_or_skip("frozen_node_is_dropped_and_rejoins") {
        return;
    }
    let mut room = Room::new("ahstop", 4, Path::new(BIN), Discovery::StaticPeers);
    room.start_all();
    let all = [0, 1, 2, 3];
    assert!(
        room.wait_for(Duration::from_secs(5), |r| r.agree_on(&all))
            .is_some()
    );
    let frozen = 1;
    let others = [0, 2, 3];
    room.freeze(frozen);
    let dropped = room.wait_for(Duration::from_millis(2_500), |r| r.agree_on(&others));
    let commit_before = room
        .status(0)
        .and_then(|s| s["commit_round"].as_u64())
        .expect("alive");
    std::thread::sleep(Duration::from_millis(500));
    let commit_after = room
        .status(0)
        .and_then(|s| s["commit_round"].as_u64())
        .expect("alive");
    room.thaw(frozen);
    if dropped.is_none() {
        room.dump_logs();
    }
    assert!(dropped.is_some(), "the frozen node was not dropped");
    assert!(
        commit_after >= commit_before + 3,
        "the others stopped deciding"
    );
    let back = room.wait_for(Duration::from_secs(5), |r| r.agree_on(&all));
    if back.is_none() {
        room.dump_logs();
    }
    assert!(back.is_some(), "the thawed node did not rejoin");
}
