//! The controller given a single speaker that is not the room's leader
//! (`--peer` one follower, no mDNS) still reaches the room: the follower
//! refers it to the leader. Its verbs apply on every speaker.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{LoopRoom, controller_bin, wait_for};

#[test]
fn a_controller_given_one_follower_steers_the_room() {
    let room = LoopRoom::start(3);
    room.wait_formed(3, Duration::from_secs(20));
    let follower = (0..room.len())
        .find(|&i| room.status(i).is_some_and(|s| s["is_leader"] == false))
        .expect("a follower");
    for gain in ["37", "58"] {
        let out = Command::new(controller_bin())
            .arg("--secret-file")
            .arg(room.secret(false))
            .args(["--no-mdns", "--bind", "127.0.0.1:0", "--peer"])
            .arg(format!("127.0.0.1:{}", room.mesh_port(follower)))
            .args(["volume", "all", gain])
            .output()
            .expect("controller runs");
        assert!(
            out.status.success(),
            "through follower {follower}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let g: u64 = gain.parse().expect("number");
        let applied = wait_for(Duration::from_secs(5), || {
            (0..room.len()).all(|i| {
                room.status(i).is_some_and(|s| {
                    s["channels"]
                        .as_array()
                        .is_some_and(|c| c.iter().all(|c| c["gain"] == g))
                })
            })
        });
        assert!(applied, "volume {gain} not applied on every speaker");
    }
}
