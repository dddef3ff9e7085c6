//! The CLI against three real node processes on loopback: each verb returns
//! once its decision is applied, and every node's status then shows it; bad
//! input, a wrong secret and an empty network give clear errors and their
//! exit codes (`--no-mdns` without a peer at once).

mod support;

use std::time::Duration;

use support::{LoopRoom, controller, controller_with_secret};

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn verbs_apply_on_every_node_and_bad_input_is_refused() {
    let room = LoopRoom::start(3);
    room.wait_formed(3, Duration::from_secs(10));

    // play: every node's every channel plays once the verb returns.
    let out = controller(&room, &["play", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    assert_eq!(json["applied"], true);
    assert_eq!(json["state"]["all"]["run"], "playing");
    for i in 0..room.len() {
        let s = room.status(i).expect("status");
        let channels = s["channels"].as_array().expect("channels");
        assert!(!channels.is_empty());
        assert!(
            channels.iter().all(|c| c["playing"] == true),
            "node {i}: {channels:?}"
        );
    }

    // volume on one channel; --json gives the event as fields.
    let gain0 = room.status(0).expect("status")["channels"][0]["gain"].clone();
    let out = controller(&room, &["volume", "1", "40", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    assert_eq!(
        json["event"],
        serde_json::json!({"op": "volume", "channel": 1, "gain": 40})
    );
    assert_eq!(json["state"]["channels"][1]["channel"], 1);
    assert_eq!(json["state"]["all"]["channel"], "all");
    for i in 0..room.len() {
        let s = room.status(i).expect("status");
        assert_eq!(s["channels"][1]["gain"], 40, "node {i}");
        assert_eq!(s["channels"][0]["gain"], gain0, "node {i}: only channel 1");
    }

    // seek all: every channel anchored at 1:00 at the same instant everywhere.
    let out = controller(&room, &["seek", "all", "1:00"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let anchors: Vec<(u64, u64)> = (0..room.len())
        .map(|i| {
            let s = room.status(i).expect("status");
            (
                s["channels"][2]["anchor_pos"].as_u64().expect("anchor"),
                s["channels"][2]["anchor_at"].as_u64().expect("anchor"),
            )
        })
        .collect();
    assert!(anchors.iter().all(|a| a.0 == 48_000 * 60), "{anchors:?}");
    assert!(anchors.windows(2).all(|w| w[0] == w[1]), "{anchors:?}");

    // pause one channel: All becomes mixed.
    let out = controller(&room, &["pause", "0", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON result");
    assert_eq!(json["state"]["channels"][0]["run"], "paused");
    assert_eq!(json["state"]["all"]["run"], "mixed");

    // status and members.
    let out = controller(&room, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    assert_eq!(json["connection"], "live");
    assert_eq!(json["channels"][1]["gain"], 40);
    let out = controller(&room, &["members"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listing = String::from_utf8_lossy(&out.stdout);
    // Members by the names they gave (`--name speakerN`).
    for name in ["speaker0", "speaker1", "speaker2"] {
        assert_eq!(
            listing.lines().filter(|l| l.starts_with(name)).count(),
            1,
            "{listing}"
        );
    }
    assert!(listing.contains("(me)"), "the controller lists itself");

    // Two controllers seek channel 3 at the same moment: both return
    // applied, the nodes agree on one of the targets, and a controller
    // whose target lost says the room decided otherwise.
    let spawn = |to: &str| {
        std::process::Command::new(support::controller_bin())
            .arg("--secret-file")
            .arg(room.secret(false))
            .args(["--no-mdns", "--bind", "127.0.0.1:0"])
            .args(room.peer_args())
            .args(["seek", "3", to])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("controller runs")
    };
    let (a, b) = (spawn("0:20"), spawn("0:40"));
    let (a, b) = (
        a.wait_with_output().expect("first controller"),
        b.wait_with_output().expect("second controller"),
    );
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    assert_eq!(b.status.code(), Some(0), "{}", text(&b));
    let anchors: Vec<u64> = (0..room.len())
        .map(|i| {
            room.status(i).expect("status")["channels"][3]["anchor_pos"]
                .as_u64()
                .expect("anchor")
        })
        .collect();
    assert!(anchors.windows(2).all(|w| w[0] == w[1]), "{anchors:?}");
    assert!(
        anchors[0] == 48_000 * 20 || anchors[0] == 48_000 * 40,
        "{anchors:?}"
    );
    let winner = anchors[0] / 48_000;
    for (out, target) in [(&a, 20), (&b, 40)] {
        let said = text(out);
        assert_eq!(
            said.contains("decided otherwise"),
            target != winner && said.contains(&format!("0:{winner}")),
            "target 0:{target}, room at 0:{winner}: {said}"
        );
    }

    // Bad input: exit 2 with a reason, and nothing changes on the nodes.
    let before = room.status(0).expect("status")["channels"].clone();
    for (args, says) in [
        (&["volume", "all", "101"][..], "out of range"),
        (&["play", "9"][..], "unknown channel 9"),
        (&["seek", "all", "1:61"][..], "below 60"),
        (&["seek", "bass", "1:00"][..], "not a channel"),
    ] {
        let out = controller(&room, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    assert_eq!(
        room.status(0).expect("status")["channels"][1]["gain"],
        before[1]["gain"]
    );
    assert_eq!(
        room.status(0).expect("status")["channels"][0]["playing"],
        before[0]["playing"]
    );

    // Wrong secret and nobody there: exit 3, said plainly.
    let port = room.controller_port.to_string();
    let bind = format!("127.0.0.1:{port}");
    let out = controller_with_secret(&room, true, &["--wait", "2", "--bind", &bind, "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("wrong secret"), "{}", text(&out));
    // The same from a port no speaker knows (the usual case with --peer):
    // the speakers never send it a sealed datagram, but their refusal
    // notices say that its datagrams fail authentication there.
    let out = controller_with_secret(&room, true, &["--wait", "2", "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("wrong secret"), "{}", text(&out));
    assert!(!text(&out).contains("no speaker found"), "{}", text(&out));
    let notices: u64 = (0..room.len())
        .filter_map(|i| room.status(i)?["envelope"]["refusals_sent"].as_u64())
        .sum();
    assert!(notices > 0, "the speakers sent refusal notices");
    let out = std::process::Command::new(support::controller_bin())
        .args(["--secret-file"])
        .arg(room.secret(false))
        .args(["--no-mdns", "--bind", "127.0.0.1:0", "--wait", "1"])
        .args(["--peer", &format!("127.0.0.1:{}", support::free_udp_port())])
        .arg("status")
        .output()
        .expect("controller runs");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("no speaker found"), "{}", text(&out));

    // No mDNS and no peer: nothing to contact, said at once (a 600 s
    // wait would have to pass before any other answer), exit 2.
    let out = std::process::Command::new(support::controller_bin())
        .args(["--secret-file"])
        .arg(room.secret(false))
        .args(["--no-mdns", "--wait", "600", "status"])
        .output()
        .expect("controller runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("nothing to contact"), "{}", text(&out));
}
