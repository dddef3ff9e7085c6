//! `autoharmonize demo` as a person runs it, with real processes: four
//! speakers on loopback writing WAV files, the mixer on its printed URL.
//! Play is pressed through the mixer's JSON API; Ctrl-C (SIGINT to the
//! demo) must stop everything: exit 0, every speaker process gone, and
//! each speaker's WAV holds silence until play, then its own stem (it
//! correlates with the stem it was given, not with the others).

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use support::{free_tcp_port, free_udp_port, http, http_get, wait_for};

const STEMS: [&str; 4] = ["drums", "bass", "chords", "lead"];
const RATE: usize = 48_000;

/// The demo and the speakers it printed; all killed by pid on drop, so a
/// failing assertion leaves no process behind.
struct Running {
    demo: Child,
    pids: Vec<i32>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.demo.kill();
        let _ = self.demo.wait();
        for &pid in &self.pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn gone(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_err()
}

/// Left channel of a 16-bit WAV as f32.
fn left(path: &Path) -> Vec<f32> {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(r.spec().channels, 2, "{}", path.display());
    r.samples::<i16>()
        .step_by(2)
        .map(|s| f32::from(s.expect("a sample")) / 32768.0)
        .collect()
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// Blocks a window is judged in: 10 ms of a 0.5 s window.
const BLOCKS: usize = 50;

/// Whether each of the [`BLOCKS`] blocks of `a` has sound: a speaker's
/// output has gaps of digital silence where its device ran dry (an xrun)
/// and came back; those say nothing about which stem it plays.
fn sounding(a: &[f32]) -> Vec<bool> {
    a.chunks(a.len().div_ceil(BLOCKS))
        .map(|c| c.iter().any(|v| v.abs() > 1e-4))
        .collect()
}

/// Normalised correlation of `a` with `b[from..]` over the blocks where
/// `a` has sound.
fn correlation(a: &[f32], b: &[f32], from: usize) -> f32 {
    let b = &b[from..from + a.len()];
    let size = a.len().div_ceil(BLOCKS);
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    for ((x, y), on) in a.chunks(size).zip(b.chunks(size)).zip(sounding(a)) {
        if on {
            ab += x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
            aa += x.iter().map(|p| p * p).sum::<f32>();
            bb += y.iter().map(|q| q * q).sum::<f32>();
        }
    }
    ab / (aa * bb).sqrt().max(f32::MIN_POSITIVE)
}

/// Means of every 4 samples: a quarter of the work for a coarse search.
fn decimate(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(4)
        .map(|c| c.iter().sum::<f32>() / 4.0)
        .collect()
}

/// The shift in −`max_lag`..=`max_lag` frames at which `a` correlates best
/// with `b` from `from`, and that correlation: a coarse search on 4×
/// decimated signals, then frame by frame around its best.
fn best_lag(a: &[f32], b: &[f32], from: usize, max_lag: usize) -> (isize, f32) {
    let (a4, b4) = (decimate(a), decimate(&b[from - max_lag..]));
    let coarse = (0..=2 * max_lag / 4)
        .map(|k| (k, correlation(&a4, &b4, k)))
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .map_or(max_lag, |(k, _)| 4 * k);
    (coarse.saturating_sub(6)..=(coarse + 6).min(2 * max_lag))
        .map(|k| {
            (
                k as isize - max_lag as isize,
                correlation(a, b, from - max_lag + k),
            )
        })
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .expect("a lag")
}

#[test]
fn demo_plays_every_stem_and_ctrl_c_stops_every_speaker() {
    support::node_bin(); // built next to the controller, where the demo looks
    let dir = tempfile::tempdir().expect("temporary directory");
    let port = free_tcp_port();
    let mut child = Command::new(support::controller_bin())
        .args([
            "demo",
            "--nodes",
            "4",
            "--seconds",
            "20",
            "--output",
            "wav",
            "--paused",
        ])
        .arg("--dir")
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--base-port", &free_udp_port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the demo starts");
    let out = Arc::new(Mutex::new(Vec::<String>::new()));
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let out = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                eprintln!("demo| {line}");
                out.lock().expect("lines").push(line);
            }
        });
    }
    let mut running = Running {
        demo: child,
        pids: Vec::new(),
    };
    let said = |s: &str| out.lock().expect("lines").iter().any(|l| l.contains(s));
    let url = format!("http://127.0.0.1:{port}/");
    assert!(
        wait_for(Duration::from_secs(45), || said(&url)),
        "the demo printed no mixer URL"
    );

    // The speakers it lists, by pid.
    running.pids = out
        .lock()
        .expect("lines")
        .iter()
        .filter(|l| l.trim_start().starts_with("demo-"))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "pid")?;
            words.get(i + 1)?.parse().ok()
        })
        .collect();
    assert_eq!(running.pids.len(), 4, "four speakers listed");
    assert!(running.pids.iter().all(|&p| !gone(p)), "every speaker runs");

    // The mixer: its page, and a live room of four paused channels.
    assert!(
        http_get(port, "/")
            .expect("the page")
            .contains("new WebSocket")
    );
    let state = |port| -> serde_json::Value {
        serde_json::from_str(&http_get(port, "/api/state").expect("the state")).expect("JSON")
    };
    let s = state(port);
    assert_eq!(s["connection"], "live", "{s}");
    assert_eq!(s["channels"].as_array().map(Vec::len), Some(4), "{s}");
    assert_eq!(s["all"]["run"], "paused", "{s}");
    assert_eq!(s["all"]["gain"], 80, "{s}");

    // A second of silence on record, then play.
    std::thread::sleep(Duration::from_secs(1));
    let (code, body) = http(
        port,
        "POST",
        "/api/act",
        Some(r#"{"op":"play","channel":"all"}"#),
        &[],
    )
    .expect("an answer");
    assert_eq!(code, 200, "{body}");
    assert!(
        wait_for(Duration::from_secs(5), || state(port)["all"]["run"]
            == "playing"),
        "the room plays"
    );
    std::thread::sleep(Duration::from_secs(4));

    // Ctrl-C.
    let demo_pid = i32::try_from(running.demo.id()).expect("a pid");
    kill(Pid::from_raw(demo_pid), Signal::SIGINT).expect("SIGINT");
    let exited = wait_for(Duration::from_secs(20), || {
        running.demo.try_wait().ok().flatten().is_some()
    });
    assert!(exited, "the demo stopped after Ctrl-C");
    let status = running.demo.wait().expect("status");
    assert_eq!(status.code(), Some(0), "exit status");
    for &pid in &running.pids {
        assert!(gone(pid), "speaker pid {pid} is gone");
    }
    assert!(wait_for(Duration::from_secs(2), || said(
        "Everything of this demo is in"
    )));
    assert!(
        !said("stopped by itself") && !said("killed"),
        "every speaker stopped on SIGTERM"
    );

    // Each WAV: silence while paused, then its own stem.
    let stems: Vec<Vec<f32>> = STEMS
        .iter()
        .map(|s| left(&dir.path().join(format!("media/demo-song/{s}.wav"))))
        .collect();
    for (i, name) in STEMS.iter().enumerate() {
        let wav = dir.path().join(format!("speaker{i}-{name}.wav"));
        assert!(
            said(&wav.display().to_string()),
            "the demo names {}",
            wav.display()
        );
        let x = left(&wav);
        let onset = x
            .iter()
            .position(|s| s.abs() > 0.005)
            .expect("sound after play");
        assert!(
            onset > RATE / 2,
            "{name}: silent until play (sound from frame {onset})"
        );
        assert!(x.len() > onset + 3 * RATE, "{name}: 3 s played after play");
        assert!(
            rms(&x[onset..onset + 3 * RATE]) > 0.02,
            "{name}: loud enough"
        );
        // Five 0.5 s windows from 0.1 s after the first sound, each against
        // every stem around the same place (±20 ms: the first sound is
        // found within a few ms). A speaker whose output stalled (an xrun:
        // on a loaded VM the output threads miss their deadline now and
        // then) has ~0.1 s of silence in its file, then the song at its
        // time again: windows are judged where they have sound, and must
        // have it for half their length. Most windows (three of five) must
        // show the speaker's own stem, clearly.
        let first = |s: &[f32]| s.iter().position(|v| v.abs() > 0.005 / 0.52).unwrap_or(0);
        let takes: Vec<&[f32]> = (0..5)
            .map(|w| {
                let from = onset + RATE / 10 + w * RATE * 55 / 100;
                &x[from..from + RATE / 2]
            })
            .collect();
        let heard: Vec<usize> = takes
            .iter()
            .map(|t| sounding(t).into_iter().filter(|&on| on).count())
            .collect();
        let windows: Vec<Vec<f32>> = (0..5)
            .map(|w| {
                let from = RATE / 10 + w * RATE * 55 / 100;
                let take = takes[w];
                // Where its own stem fits best; the others at that place.
                let (lag, _) = best_lag(take, &stems[i], first(&stems[i]) + from, RATE / 50);
                stems
                    .iter()
                    .map(|s| {
                        let at = (first(s) + from).saturating_add_signed(lag);
                        correlation(take, s, at)
                    })
                    .collect()
            })
            .collect();
        eprintln!(
            "{name}: correlations with drums, bass, chords, lead per window: {windows:?}; \
             10 ms blocks with sound: {heard:?} of {BLOCKS}"
        );
        let own = windows
            .iter()
            .zip(&heard)
            .filter(|&(c, &heard)| {
                heard >= BLOCKS / 2
                    && c[i] > 0.9
                    && c.iter()
                        .enumerate()
                        .all(|(j, &other)| j == i || other < c[i] - 0.3)
            })
            .count();
        assert!(
            own >= 3,
            "{name}: plays its stem in {own} windows of 5 ({windows:?})"
        );
    }
}
