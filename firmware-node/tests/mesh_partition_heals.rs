//! Taking one node's link down partitions it: the majority keeps accepting
//! votes, the isolated node refuses control changes; when the link comes
//! back all nodes come to hold the same state (a generous deadline: the
//! heal time, measured from when the network delivers again, is printed
//! here and is the chaos harness's figure in docs/benchmarks.md; the
//! protocol's own, measured in the simulation, is 3 to 5 rounds).

use std::path::Path;
use std::time::Duration;

use autoharmonize_tests::netns;
use autoharmonize_tests::room::{Discovery, Room};

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");

#[test]
fn isolated_node_is_read_only_and_converges_on_heal() {
    if !netns::require_root_or_skip("isolated_node_is_read_only_and_converges_on_heal") {
        return;
    }
    let mut room = Room::new("ahpart", 4, Path::new(BIN), Discovery::StaticPeers);
    room.start_all();
    let all = [0, 1, 2, 3];
    assert!(
        room.wait_for(Duration::from_secs(5), |r| r.agree_on(&all))
            .is_some()
    );
    let lone = 3;
    room.lab().link_down(lone).expect("link down");
    // Read-only within a second (commit progress stops there at once).
    let read_only = room.wait_for(Duration::from_secs(2), |r| {
        r.status(lone).is_some_and(|s| s["writable"] == false)
    });
    assert!(
        read_only.is_some(),
        "the isolated node still claims it can decide"
    );
    let (code, body) = room.cast(lone, r#"{"event":"pause","channel":"all"}"#);
    assert_eq!(code, 409, "isolated node accepted a vote: {body}");
    // The majority decides.
    let majority = [0, 1, 2];
    assert!(
        room.wait_for(Duration::from_secs(3), |r| r.agree_on(&majority))
            .is_some()
    );
    let (code, body) = room.cast(0, r#"{"event":"volume","channel":"all","gain":33}"#);
    assert_eq!(code, 200, "majority refused a vote: {body}");
    assert!(
        room.wait_for(Duration::from_secs(2), |r| majority
            .iter()
            .all(|&i| r.status(i).is_some_and(|s| s["channels"][0]["gain"] == 33)))
            .is_some()
    );
    assert_ne!(room.status(lone).expect("alive")["channels"][0]["gain"], 33);
    // Heal.
    room.lab().link_up(lone).expect("link up");
    // The reconnected host resolves its peers' addresses again on the
    // kernel's ARP retry timer (up to 1 s): the room can only converge
    // once the network delivers, so that is where the bound starts.
    let arp = room.lab().wait_resolved(&all, Duration::from_secs(3));
    let healed = room.wait_for(Duration::from_secs(30), |r| {
        r.agree_on(&all)
            && all
                .iter()
                .all(|&i| r.status(i).is_some_and(|s| s["channels"][0]["gain"] == 33))
    });
    if healed.is_none() {
        room.dump_logs();
    }
    let healed = healed.expect("converged after the heal");
    println!(
        "converged {} ms after the network delivered again ({} ms of address resolution after the link came back)",
        healed.as_millis(),
        arp.unwrap_or_default().as_millis()
    );
    // The heal time is the chaos harness's figure (docs/benchmarks.md);
    // here the state after the heal is what must hold.
}
