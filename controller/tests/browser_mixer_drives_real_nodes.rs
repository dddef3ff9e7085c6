//! The web mixer in a real headless chromium, against three real node
//! processes: press play on All, drag channel 1's volume slider, drag the
//! All seek slider. Each action is applied on every node (read from the
//! nodes' own status), and the page showed the channel pending, then the
//! decided state. A killed speaker leaves the member list live; with
//! every speaker killed the page says that none answers and its position
//! stops.
//!
//! Needs chromium and chromedriver: under `CI=true` their absence fails the
//! test; elsewhere it is skipped with a message. The screenshot goes to the
//! test's target directory; with `UPDATE_SCREENSHOT=1` also to
//! `docs/img/mixer.png` (the README's picture).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::webdriver::{self, Browser};
use support::{LoopRoom, Mixer, wait_for};

/// Whether `holds` is true of every node's channel list.
fn on_every_node(room: &LoopRoom, holds: impl Fn(&[Value]) -> bool) -> bool {
    (0..room.len()).all(|i| {
        room.status(i)
            .and_then(|s| s["channels"].as_array().map(|c| holds(c)))
            .unwrap_or(false)
    })
}

/// The page's log of rendered states for `channel`: (pending, run, gain).
fn shown(b: &Browser, channel: &str) -> Vec<(bool, String, u64, u64)> {
    let v = b.eval(&format!(
        "return window.ahLog.map(s => s.rows.find(r => r.channel === '{channel}')).filter(r => r);"
    ));
    v.as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (
                        r["pending"] == true,
                        r["run"].as_str().unwrap_or("").to_owned(),
                        r["gain"].as_u64().unwrap_or(0),
                        r["position_ms"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The last action the page sent.
fn last_sent(b: &Browser) -> Value {
    b.eval("return window.ahSent.length ? window.ahSent[window.ahSent.length - 1].action : null;")
}

/// Whether the log shows the channel pending and, later, not pending with
/// `done` true for that row.
fn pending_then(
    log: &[(bool, String, u64, u64)],
    done: impl Fn(&(bool, String, u64, u64)) -> bool,
) -> bool {
    let Some(first) = log.iter().position(|r| r.0) else {
        return false;
    };
    log[first..].iter().any(|r| !r.0 && done(r))
}

#[test]
fn the_mixer_in_chromium_drives_real_nodes() {
    if !webdriver::prerequisites("browser_mixer_drives_real_nodes") {
        return;
    }
    let mut room = LoopRoom::start(3);
    room.wait_formed(3, Duration::from_secs(10));
    let mixer = Mixer::start(&room, None);
    let live = wait_for(Duration::from_secs(10), || {
        support::http_get(mixer.port, "/api/state")
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .is_some_and(|s| {
                s["connection"] == "live" && s["channels"].as_array().is_some_and(|c| c.len() == 4)
            })
    });
    assert!(live, "the mixer never went live: {}", mixer.output());

    let b = Browser::start(1000, 860);
    let started = Instant::now();
    b.goto(&format!("http://127.0.0.1:{}/", mixer.port));
    let first_live = wait_for(Duration::from_secs(5), || {
        b.eval("return window.ahFirstLive;").is_number()
    });
    assert!(first_live, "the page never showed a live state");
    println!(
        "page load to first live state: {:.0} ms (navigation start to first live WebSocket state; goto returned after {:?})",
        b.eval("return window.ahFirstLive;")
            .as_f64()
            .unwrap_or(f64::NAN),
        started.elapsed()
    );
    assert!(
        wait_for(Duration::from_secs(5), || b.find(".row[data-channel='3'] .volume").is_some()),
        "no row for channel 3: {}",
        b.eval("return document.getElementById('rows').outerHTML + JSON.stringify(window.ahLog.slice(-1));")
    );
    let members = b.eval("return document.querySelectorAll('#members tbody tr').length;");
    assert_eq!(members, 4, "three speakers and this controller");

    // Play on All.
    let play = b
        .find(".row[data-channel='all'] .run")
        .expect("All's play button");
    b.click(&play);
    let everywhere = wait_for(Duration::from_secs(3), || {
        on_every_node(&room, |c| c.iter().all(|c| c["playing"] == true))
    });
    assert!(everywhere, "play was not applied on every node");
    assert!(
        wait_for(Duration::from_secs(2), || pending_then(
            &shown(&b, "all"),
            |r| r.1 == "playing"
        )),
        "All was not shown pending, then playing: {:?}",
        shown(&b, "all")
    );

    // Drag channel 1's volume slider to the left.
    let before = room.status(0).expect("status")["channels"][1]["gain"]
        .as_u64()
        .expect("gain");
    let vol = b
        .find(".row[data-channel='1'] .volume")
        .expect("volume slider");
    b.drag(&vol, -60);
    let sent = last_sent(&b);
    assert_eq!(sent["op"], "volume", "{sent}");
    assert_eq!(sent["channel"], 1, "{sent}");
    let gain = sent["gain"].as_u64().expect("gain sent");
    assert_ne!(gain, before, "the drag moved the slider");
    let everywhere = wait_for(Duration::from_secs(3), || {
        on_every_node(&room, |c| c.get(1).is_some_and(|c| c["gain"] == gain))
    });
    assert!(everywhere, "volume {gain} was not applied on every node");
    assert!(
        wait_for(Duration::from_secs(2), || pending_then(
            &shown(&b, "1"),
            |r| r.2 == gain
        )),
        "channel 1 was not shown pending, then at {gain}: {:?}",
        shown(&b, "1")
    );

    // Drag the All seek slider.
    let seek = b
        .find(".row[data-channel='all'] .seek")
        .expect("seek slider");
    b.drag(&seek, 120);
    let sent = last_sent(&b);
    assert_eq!(sent["op"], "seek", "{sent}");
    let ms = sent["ms"].as_u64().expect("ms sent");
    let frames = ms * 48;
    let everywhere = wait_for(Duration::from_secs(3), || {
        on_every_node(&room, |c| c.iter().all(|c| c["anchor_pos"] == frames))
    });
    assert!(everywhere, "seek to {ms} ms was not applied on every node");
    assert!(
        wait_for(Duration::from_secs(2), || pending_then(
            &shown(&b, "all"),
            |r| r.3 >= ms && r.3 < ms + 2_000
        )),
        "All was not shown pending, then at {ms} ms: {:?}",
        shown(&b, "all")
    );

    // Let the health figures arrive, then the picture for the README.
    std::thread::sleep(Duration::from_millis(600));
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mixer.png");
    b.screenshot(&shot);
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img/mixer.png");
        b.screenshot(&docs);
        println!("screenshot saved to {}", docs.display());
    }

    // A speaker leaves: its row goes.
    room.kill(2);
    let gone = wait_for(Duration::from_secs(4), || {
        b.eval("return document.querySelectorAll('#members tbody tr').length;") == 3
    });
    assert!(gone, "the killed speaker stayed in the member list");

    // Every speaker gone: the page says nobody answers, and the playing
    // room's shown position stops instead of running on.
    room.kill(0);
    room.kill(1);
    let silent = wait_for(Duration::from_secs(10), || {
        b.eval("return document.getElementById('banner').textContent;")
            .as_str()
            .is_some_and(|t| t.contains("No speaker is answering"))
    });
    assert!(silent, "the page never said that no speaker answers");
    let shown_time =
        || b.eval("return document.querySelector(\".row[data-channel='all'] .time\").textContent;");
    let before = shown_time();
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(shown_time(), before, "the shown position ran on");
}
