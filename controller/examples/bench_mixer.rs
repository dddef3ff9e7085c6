//! Benchmark of the web mixer: click to applied on every node, and page load
//! to the first live state, against real node processes on loopback and the
//! mixer in headless chromium. Writes its section of `docs/benchmarks.md`.
//!
//! ```text
//! cargo run -p autoharmonize-controller --example bench_mixer -- [--actions 100] [--loads 20] [--write docs/benchmarks.md]
//! ```
//!
//! Click to applied: the play/pause button of All is clicked `--actions`
//! times. The click instant is read from `CLOCK_MONOTONIC_RAW` just before
//! the WebDriver click is sent (WebDriver's dispatch is included); the
//! applied instant is the decision's `apply_at`, read from every node's
//! status (all three must hold the same decision and state). On one machine
//! the room's mesh clock is the founding leader's `CLOCK_MONOTONIC_RAW`, so
//! both are on the same clock (checked below).
//!
//! Page load: `performance.now()` at the first live state pushed over the
//! WebSocket, i.e. from navigation start, over `--loads` fresh loads.

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::time::Duration;

use autoharmonize_node::clock::LocalClock;
use serde_json::Value;
use support::webdriver::Browser;
use support::{LoopRoom, Mixer, wait_for};

const START: &str = "<!-- bench_mixer:start -->";
const END: &str = "<!-- bench_mixer:end -->";

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The newest decision on node `i` whose votes include `needle`, as
/// (round, apply_at).
fn decision(room: &LoopRoom, i: usize, needle: &str, after_round: u64) -> Option<(u64, u64)> {
    let s = room.status(i)?;
    s["decisions"].as_array()?.iter().rev().find_map(|d| {
        let round = d["round"].as_u64()?;
        let hit = round > after_round
            && d["votes"]
                .as_array()?
                .iter()
                .any(|v| v.as_str().is_some_and(|v| v.contains(needle)));
        hit.then(|| (round, d["apply_at"].as_u64().unwrap_or(0)))
    })
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cpu}, {cores} cores visible, shared with other builds")
}

fn main() {
    let actions: usize = arg("--actions", "100").parse().expect("--actions N");
    let loads: usize = arg("--loads", "20").parse().expect("--loads N");
    let write = arg("--write", "");

    let room = LoopRoom::start(3);
    room.wait_formed(3, Duration::from_secs(15));
    let mixer = Mixer::start(&room, None);
    let live = wait_for(Duration::from_secs(10), || {
        support::http_get(mixer.port, "/api/state")
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .is_some_and(|s| s["connection"] == "live")
    });
    assert!(live, "the mixer never went live");
    let b = Browser::start(1000, 860);
    let url = format!("http://127.0.0.1:{}/", mixer.port);

    // Same clock check: a node's mesh time against our raw monotonic clock.
    let clock = LocalClock::system();
    let before = clock.now().0;
    let mesh = room
        .status(0)
        .and_then(|s| s["mesh_time_ns"].as_u64())
        .unwrap_or(0);
    let after = clock.now().0;
    let skew_ms = (i128::from(mesh) - i128::from(before)) as f64 / 1e6;
    assert!(
        mesh + 100_000_000 >= before && mesh <= after + 100_000_000,
        "the mesh clock is not this machine's CLOCK_MONOTONIC_RAW (off by {skew_ms} ms): was the room founded with a test clock offset?"
    );

    let mut first_live = Vec::new();
    for _ in 0..loads {
        b.goto(&url);
        let ok = wait_for(Duration::from_secs(5), || {
            b.eval("return window.ahFirstLive;").is_number()
        });
        assert!(ok, "no live state after a page load");
        first_live.push(
            b.eval("return window.ahFirstLive;")
                .as_f64()
                .unwrap_or(f64::NAN),
        );
    }

    let mut latencies = Vec::new();
    let mut from_page = Vec::new();
    let mut last_round = 0;
    for n in 0..actions {
        assert!(wait_for(Duration::from_secs(5), || b
            .find(".row[data-channel='all'] .run:not([disabled])")
            .is_some()));
        let playing = room.status(0).expect("status")["channels"][0]["playing"] == true;
        let needle = if playing {
            "Pause { channel: All }"
        } else {
            "Play { channel: All }"
        };
        let button = b
            .find(".row[data-channel='all'] .run")
            .expect("All's button");
        let clicked = clock.now().0;
        b.click(&button);
        let mut found = Vec::new();
        let ok = wait_for(Duration::from_secs(5), || {
            found = (0..room.len())
                .filter_map(|i| decision(&room, i, needle, last_round))
                .collect();
            found.len() == room.len()
        });
        assert!(ok, "action {n} ({needle}) not applied on every node");
        assert!(
            found.windows(2).all(|w| w[0] == w[1]),
            "nodes disagree: {found:?}"
        );
        let (round, apply_at) = found[0];
        last_round = round;
        // Wait for the instant itself, so the next click starts from the new state.
        let everywhere = wait_for(Duration::from_secs(2), || {
            (0..room.len()).all(|i| {
                room.status(i).is_some_and(|s| {
                    s["channels"][0]["playing"] != playing
                        && s["mesh_time_ns"].as_u64().unwrap_or(0) >= apply_at
                })
            })
        });
        assert!(everywhere, "state after action {n} not on every node");
        latencies.push(apply_at.saturating_sub(clicked) as f64 / 1e6);
        // The page's click handler sent the vote at this wall-clock instant
        // (ms since the epoch); map it to CLOCK_MONOTONIC_RAW through the
        // offset between the two clocks now.
        let sent_epoch_ms = b
            .eval("const s = window.ahSent[window.ahSent.length - 1]; return performance.timeOrigin + s.t;")
            .as_f64()
            .unwrap_or(f64::NAN);
        let raw_now = clock.now().0 as f64;
        let wall_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_nanos() as f64);
        let sent_raw = sent_epoch_ms * 1e6 - (wall_now - raw_now);
        from_page.push((apply_at as f64 - sent_raw) / 1e6);
    }
    from_page.sort_by(f64::total_cmp);
    latencies.sort_by(f64::total_cmp);
    first_live.sort_by(f64::total_cmp);

    let mut section = String::new();
    let _ = writeln!(section, "{START}");
    let _ = writeln!(section, "## Web mixer (controller)\n");
    let _ = writeln!(
        section,
        "Command: `cargo run -p autoharmonize-controller --example bench_mixer -- --actions {actions} --loads {loads} --write docs/benchmarks.md`  \nMachine: {}  \nSetup: 3 `autoharmonize-node` processes and the mixer on loopback (dev profile), 100 ms heartbeat, 120 ms apply delay, headless Chromium via chromedriver.\n",
        machine()
    );
    let _ = writeln!(section, "| figure | n | p50 | p99 | max | target |");
    let _ = writeln!(section, "| --- | --- | --- | --- | --- | --- |");
    let _ = writeln!(
        section,
        "| click → applied on every node (ms) | {} | {:.0} | {:.0} | {:.0} | p99 ≤ 300 |",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        section,
        "| page's click event → applied on every node (ms) | {} | {:.0} | {:.0} | {:.0} | p99 ≤ 300 |",
        from_page.len(),
        percentile(&from_page, 50.0),
        percentile(&from_page, 99.0),
        from_page.last().copied().unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        section,
        "| page load → first live state (ms) | {} | {:.0} | {:.0} | {:.0} | ≤ 500 |",
        first_live.len(),
        percentile(&first_live, 50.0),
        percentile(&first_live, 99.0),
        first_live.last().copied().unwrap_or(f64::NAN)
    );
    let _ = writeln!(
        section,
        "\nClick → applied runs from the WebDriver click (taken on `CLOCK_MONOTONIC_RAW` just before the command is sent, so chromedriver's dispatch is included) to the decision's `apply_at`, the mesh instant at which every node applies it (the same on all three, checked). The page's click event → applied starts instead when the page's click handler sends the vote (`performance.timeOrigin + now()`, mapped to `CLOCK_MONOTONIC_RAW` through the wall-clock offset). The floor is the protocol's: a vote waits for the end of its round (0–100 ms) and then the 120 ms apply delay, so 120–220 ms. Page load runs from navigation start to the first live state the WebSocket pushes."
    );
    let _ = writeln!(section, "{END}");
    print!("{section}");

    if !write.is_empty() {
        let doc = std::fs::read_to_string(&write).unwrap_or_default();
        let updated = match (doc.find(START), doc.find(END)) {
            (Some(s), Some(e)) if e > s => format!(
                "{}{}{}",
                &doc[..s],
                section.trim_end(),
                &doc[e + END.len()..]
            ),
            _ => format!("{}\n{}", doc.trim_end(), section),
        };
        std::fs::write(&write, updated).expect("write the benchmarks file");
        eprintln!("wrote {write}");
    }
}
