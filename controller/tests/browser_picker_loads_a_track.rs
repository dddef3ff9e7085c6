//! The mixer's track picker in a real headless chromium, against two real
//! node processes with libraries: the picker lists the room's tracks with
//! the loaded one selected; choosing another and pressing Load switches the
//! track on every node (read from the nodes' own status), and the page then
//! shows the new track.
//!
//! Needs chromium and chromedriver: under `CI=true` their absence fails the
//! test; elsewhere it is skipped with a message.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::webdriver::{self, Browser};
use support::{LoopRoom, Mixer, TrackSpec, wait_for};

fn library() -> Vec<TrackSpec> {
    vec![
        TrackSpec {
            folder: "first",
            title: "First Light",
            stems: vec![("drums", 4, 220), ("bass", 4, 110)],
        },
        TrackSpec {
            folder: "second",
            title: "Second Wind",
            stems: vec![("a", 3, 330), ("b", 3, 440), ("c", 3, 550)],
        },
    ]
}

#[test]
fn the_picker_loads_a_track_on_every_node() {
    if !webdriver::prerequisites("browser_picker_loads_a_track") {
        return;
    }
    let room = LoopRoom::start_with_libraries(&[library(), library()]);
    room.wait_formed(2, Duration::from_secs(15));
    let mixer = Mixer::start(&room, None);
    let state = || {
        support::http_get(mixer.port, "/api/state")
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .unwrap_or(Value::Null)
    };
    let ready = wait_for(Duration::from_secs(10), || {
        let s = state();
        s["connection"] == "live" && s["tracks"].as_array().is_some_and(|t| t.len() == 2)
    });
    assert!(ready, "the mixer never listed both tracks: {}", state());
    let s = state();
    let loaded = s["track"]["id"]
        .as_str()
        .expect("a loaded track")
        .to_owned();
    let other_track = s["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .find(|t| t["id"] != loaded.as_str())
        .expect("another track")
        .clone();
    let other = other_track["id"].as_str().expect("id").to_owned();
    let other_title = other_track["title"].as_str().expect("title").to_owned();

    let b = Browser::start(1000, 860);
    b.goto(&format!("http://127.0.0.1:{}/", mixer.port));
    assert!(
        wait_for(Duration::from_secs(5), || {
            b.eval("return document.querySelectorAll('#picker option').length;") == 2
        }),
        "the picker does not list both tracks"
    );
    assert_eq!(
        b.eval("return document.getElementById('picker').value;"),
        Value::String(loaded.clone()),
        "the loaded track is selected"
    );
    // Choose the other track as a person would (the change event marks the
    // picker as touched), then press Load.
    b.eval(&format!(
        "const p = document.getElementById('picker'); p.value = '{other}'; \
         p.dispatchEvent(new Event('change')); return null;"
    ));
    let load = b.find("#load").expect("the Load button");
    b.click(&load);
    let everywhere = wait_for(Duration::from_secs(5), || {
        (0..room.len()).all(|i| {
            room.status(i).is_some_and(|s| {
                s["track"]["id"] == other.as_str()
                    && s["channels"].as_array().map(Vec::len) == Some(3)
            })
        })
    });
    assert!(everywhere, "the load was not applied on every node");
    assert_eq!(
        b.eval("return window.ahSent[window.ahSent.length - 1].action;"),
        serde_json::json!({ "op": "load", "track": other })
    );
    assert!(
        wait_for(Duration::from_secs(3), || {
            b.eval("return document.getElementById('track').textContent;")
                .as_str()
                .is_some_and(|t| t.starts_with(&other_title))
                && b.eval("return window.ahLog[window.ahLog.length - 1].track;") == other.as_str()
        }),
        "the page did not show the new track: {}",
        b.eval("return document.getElementById('track').textContent;")
    );
}
