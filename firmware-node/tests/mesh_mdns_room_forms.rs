//! Nodes with mDNS only (no static peers), one per network namespace, find
//! each other and agree on the view (the time it takes is printed; a
//! loaded machine may take longer than a room of Pis, so it is no bound).

use std::path::Path;
use std::time::Duration;

use autoharmonize_tests::netns;
use autoharmonize_tests::room::{Discovery, Room};

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");

#[test]
fn nodes_discover_each_other_over_mdns_and_form_a_room() {
    if !netns::require_root_or_skip("nodes_discover_each_other_over_mdns_and_form_a_room") {
        return;
    }
    let mut room = Room::new("ahmdns", 4, Path::new(BIN), Discovery::Mdns);
    room.start_all();
    let all = [0, 1, 2, 3];
    let formed = room.wait_for(Duration::from_secs(30), |r| r.agree_on(&all));
    if formed.is_none() {
        room.dump_logs();
    }
    let formed = formed.expect("one room over mDNS");
    println!(
        "room formed over mDNS {} ms after the last start",
        formed.as_millis()
    );
    // The formation time is a figure for bench-mesh, not a bound here: a
    // loaded CI machine may be slow, a room that never forms fails above.
}
