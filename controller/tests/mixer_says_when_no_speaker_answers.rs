//! Every speaker of a playing room dies while the mixer runs: the mixer
//! stops saying it is live or read-only ("they keep playing") and says
//! that no speaker is answering, and the positions it shows stop moving
//! (what the speakers do is unknown), in its JSON state as on the page.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{LoopRoom, Mixer, wait_for};

fn state(mixer: &Mixer) -> Option<Value> {
    support::http_get(mixer.port, "/api/state").and_then(|b| serde_json::from_str(&b).ok())
}

#[test]
fn the_mixer_says_no_speaker_is_answering_and_stops_the_clock() {
    let mut room = LoopRoom::start(2);
    room.wait_formed(2, Duration::from_secs(10));
    let mixer = Mixer::start(&room, None);
    let live = wait_for(Duration::from_secs(10), || {
        state(&mixer).is_some_and(|s| s["connection"] == "live")
    });
    assert!(live, "the mixer never went live: {}", mixer.output());
    let (code, body) = support::http(
        mixer.port,
        "POST",
        "/api/act",
        Some(r#"{"op":"play","channel":"all"}"#),
        &[],
    )
    .expect("answers");
    assert_eq!(code, 200, "{body}");
    let playing = wait_for(Duration::from_secs(5), || {
        state(&mixer).is_some_and(|s| s["all"]["run"] == "playing" && s["all"]["pending"] == false)
    });
    assert!(playing, "play was not applied");

    for i in 0..room.len() {
        room.kill(i);
    }
    let mut seen = Vec::new();
    let silent = wait_for(Duration::from_secs(15), || {
        let s = state(&mixer);
        if let Some(s) = &s {
            seen.push(s["connection"].clone());
        }
        s.is_some_and(|s| s["connection"] == "no_answer")
    });
    assert!(silent, "never said no_answer; connections seen: {seen:?}");
    let a = state(&mixer).expect("state");
    assert!(
        a["message"]
            .as_str()
            .is_some_and(|m| m.contains("No speaker is answering")),
        "{a}"
    );
    assert_eq!(a["advancing"], false, "{a}");
    assert_eq!(a["writable"], false, "{a}");
    assert_eq!(a["all"]["run"], "playing", "the last agreed state: {a}");
    // The position shown does not move while nobody answers.
    std::thread::sleep(Duration::from_millis(1_000));
    let b = state(&mixer).expect("state");
    assert_eq!(b["connection"], "no_answer", "{b}");
    assert_eq!(
        a["all"]["position_ms"], b["all"]["position_ms"],
        "the shown position moved on: {a} then {b}"
    );
    assert_eq!(a["mesh_time_ns"], b["mesh_time_ns"]);
    // Acting is refused with the reason.
    let (code, body) = support::http(
        mixer.port,
        "POST",
        "/api/act",
        Some(r#"{"op":"pause","channel":"all"}"#),
        &[],
    )
    .expect("answers");
    assert_eq!(code, 400, "{body}");
}
