//! Five real speakers, each configured with one static peer only (the
//! speaker before it; no mDNS), started at once: they form one room, since
//! a member reached through a follower refers the newcomer to the leader.
//! Then the first speaker of the chain (whom only the second knows) is
//! killed and restarted: it comes back into the same room.

use std::path::Path;
use std::time::Duration;

use autoharmonize_tests::netns;
use autoharmonize_tests::room::{Discovery, Room};

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");

#[test]
fn a_chain_of_static_peers_forms_one_room() {
    if !netns::require_root_or_skip("a_chain_of_static_peers_forms_one_room") {
        return;
    }
    let mut room = Room::new("ahchain", 5, Path::new(BIN), Discovery::Chain);
    room.start_all();
    let all: Vec<usize> = (0..5).collect();
    // Generous: the figure (about a second) is bench-mesh's to report.
    let formed = room.wait_for(Duration::from_secs(20), |r| r.agree_on(&all));
    if formed.is_none() {
        room.dump_logs();
    }
    assert!(formed.is_some(), "the chain did not form one room");
    let room_id = room.status(0).expect("status")["room"].clone();
    for victim in [4, 0] {
        room.kill9(victim);
        let others: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
        assert!(
            room.wait_for(Duration::from_secs(10), |r| r.agree_on(&others))
                .is_some(),
            "node {victim} was not dropped"
        );
        room.start(victim);
        let back = room.wait_for(Duration::from_secs(20), |r| r.agree_on(&all));
        if back.is_none() {
            room.dump_logs();
        }
        assert!(back.is_some(), "node {victim} did not come back");
        let now = room.status(victim).expect("status")["room"].clone();
        assert_eq!(now, room_id, "node {victim} joined the room, not a new one");
    }
}
