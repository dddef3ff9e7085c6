//! The Raspberry Pi build of the node (aarch64, the binary inside the
//! arm64 package) as one speaker of a room with two x86 speakers, each in
//! its own network namespace: the arm64 one runs under `qemu-aarch64-static`
//! (Debian's qemu-user-static). It joins the room, follows decisions cast on
//! the x86 speakers, its own vote reaches them, and it plays its stem into a
//! WAV file: the tone of its own stem while the room plays, silence once it
//! is paused.
//!
//! The binary: `AUTOHARMONIZE_ARM64_NODE` names it. `scripts/test-all.sh`
//! cross-builds the arm64 package in its background job, unpacks it and
//! runs this test once it is there (the main `cargo test` run skips it).
//! Without the variable, or without qemu or root, the test fails under
//! `CI=true` and skips loudly elsewhere.
//!
//! What it does not measure: emulated timing is not a Pi's (the emulator
//! runs the node several times slower than a native build, on a shared
//! machine), so the deadlines are generous and no sync figure is asserted;
//! `bench-sync` measures sync on native builds. mDNS is off because
//! qemu-user does not emulate the `IP_MULTICAST_IF` socket option that
//! every mDNS send needs (docs/deploy.md); the speakers list each other as
//! static peers, which is also how a real room without multicast works.

mod audio_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use autoharmonize_tests::netns;
use autoharmonize_tests::room::{Discovery, Room};

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");
const TEST: &str = "arm64_node_joins_follows_and_plays_under_qemu";
/// The environment variable naming the arm64 node binary.
const ARM64_NODE: &str = "AUTOHARMONIZE_ARM64_NODE";
/// The emulator (qemu-user-static).
const QEMU: &str = "qemu-aarch64-static";
/// The arm64 speaker's host; 0 and 1 run the x86 build.
const ARM: usize = 2;
/// Each stem is one sine tone, so a recording tells whose stem it holds.
const TONES_HZ: [f64; 3] = [330.0, 550.0, 880.0];
const STEMS: [&str; 3] = ["low", "mid", "high"];
const RATE: usize = 48_000;
const TRACK_SECONDS: usize = 90;
/// Generous: an emulated node starts and answers several times slower.
const DEADLINE: Duration = Duration::from_secs(60);

/// The arm64 binary, if every prerequisite is there.
fn prerequisites() -> Option<PathBuf> {
    if !netns::require_root_or_skip(TEST)
        || !netns::require_command_or_skip(TEST, QEMU, "--version")
    {
        return None;
    }
    let bin = std::env::var_os(ARM64_NODE).map(PathBuf::from);
    let usable = bin.as_ref().is_some_and(|b| b.is_file());
    let reason = match &bin {
        Some(b) => format!("{ARM64_NODE}={} is not a file", b.display()),
        None => format!(
            "{ARM64_NODE} is not set (scripts/test-all.sh sets it to the binary of the arm64 \
             package it builds; by hand: scripts/build-deb.sh --arch arm64, then \
             dpkg-deb -x the package and point {ARM64_NODE} at its usr/bin/autoharmonize-node)"
        ),
    };
    if !netns::require_or_skip(TEST, usable, &reason) {
        return None;
    }
    bin
}

/// Writes the track folder `tone`: one 16-bit stereo WAV stem per tone.
fn write_track(media: &Path) {
    let dir = media.join("tone");
    std::fs::create_dir_all(&dir).expect("track folder");
    let names: Vec<String> = STEMS.iter().map(|s| format!("\"{s}\"")).collect();
    std::fs::write(
        dir.join("track.toml"),
        format!("title = \"Tones\"\nstems = [{}]\n", names.join(", ")),
    )
    .expect("track.toml");
    for (stem, hz) in STEMS.iter().zip(TONES_HZ) {
        let samples: Vec<i16> = (0..RATE * TRACK_SECONDS)
            .flat_map(|i| {
                let s = (i as f64 * hz * std::f64::consts::TAU / RATE as f64).sin();
                let v = (s * 16_000.0) as i16;
                [v, v]
            })
            .collect();
        audio_support::write_wav(&dir.join(format!("{stem}.wav")), 48_000, 2, &samples);
    }
}

/// The decision on host `i` whose votes include `needle`: (round,
/// apply_at, digest).
fn decision(room: &Room, i: usize, needle: &str) -> Option<(u64, u64, String)> {
    let s = room.status(i)?;
    s["decisions"].as_array()?.iter().find_map(|d| {
        d["votes"]
            .as_array()?
            .iter()
            .any(|v| v["event"] == needle)
            .then(|| {
                (
                    d["round"].as_u64().unwrap_or(0),
                    d["apply_at"].as_u64().unwrap_or(0),
                    d["digest"].as_str().unwrap_or("").to_owned(),
                )
            })
    })
}

/// Casts `json` on host `from` and waits until every host applied the
/// decision carrying it in the same round, at the same instant, to the
/// same state; returns how long that took.
fn cast_and_follow(room: &Room, from: usize, json: &str, needle: &str) -> Duration {
    let (code, body) = room.cast(from, json);
    assert_eq!(code, 200, "cast {json} on host {from} refused: {body}");
    let took = room.wait_for(DEADLINE, |r| {
        (0..3).all(|i| decision(r, i, needle).is_some())
    });
    if took.is_none() {
        room.dump_logs();
    }
    let took = took.unwrap_or_else(|| panic!("{needle} from host {from} not applied everywhere"));
    let outcomes: Vec<_> = (0..3)
        .map(|i| decision(room, i, needle).expect("applied"))
        .collect();
    assert!(
        outcomes.windows(2).all(|w| w[0] == w[1]),
        "{needle}: different round, apply_at or state: {outcomes:?}"
    );
    eprintln!("{needle} cast on host {from}: applied everywhere after {took:?}");
    took
}

/// Every channel of host `i` in the state `check` wants.
fn channels(room: &Room, i: usize, check: impl Fn(&serde_json::Value) -> bool) -> bool {
    room.status(i)
        .and_then(|s| s["channels"].as_array().cloned())
        .is_some_and(|c| !c.is_empty() && c.iter().all(&check))
}

/// RMS and zero-crossing frequency of each 100 ms block of channel 0.
fn blocks(path: &Path) -> Vec<(f64, f64)> {
    let mut reader = hound::WavReader::open(path).expect("the arm64 node's WAV is readable");
    let spec = reader.spec();
    assert_eq!((spec.sample_rate, spec.channels), (48_000, 2), "{spec:?}");
    let left: Vec<f64> = reader
        .samples::<i16>()
        .step_by(2)
        .map(|s| f64::from(s.expect("sample")) / 32_768.0)
        .collect();
    left.chunks_exact(RATE / 10)
        .map(|b| {
            let rms = (b.iter().map(|x| x * x).sum::<f64>() / b.len() as f64).sqrt();
            let crossings = b
                .windows(2)
                .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
                .count();
            (rms, crossings as f64 * 10.0 / 2.0)
        })
        .collect()
}

#[test]
fn arm64_node_joins_follows_and_plays_under_qemu() {
    let Some(arm64) = prerequisites() else {
        return;
    };
    let arm64 = arm64.to_str().expect("UTF-8 path").to_owned();
    let mut room = Room::new("ahqemu", 3, Path::new(BIN), Discovery::StaticPeers);
    let media = room.dir().join("media");
    write_track(&media);
    let wavs: Vec<PathBuf> = (0..3)
        .map(|i| room.dir().join(format!("out{i}.wav")))
        .collect();
    for (i, wav) in wavs.iter().enumerate() {
        let output = format!("wav:{}", wav.display());
        let channel = i.to_string();
        room.set_media_dir(i, &media);
        room.set_args(
            i,
            &[
                "--track",
                "tone",
                "--channel",
                &channel,
                "--output",
                &output,
            ],
        );
    }
    room.set_launcher(ARM, Path::new(QEMU), &[&arm64]);
    room.start_all();

    // Joins: one room, all three in every view.
    let formed = room.wait_for(DEADLINE, |r| r.agree_on(&[0, 1, 2]));
    if formed.is_none() {
        room.dump_logs();
    }
    let formed = formed.expect("the arm64 node and the x86 nodes form one room");
    eprintln!("room of 2 x86 + 1 emulated arm64 formed {formed:?} after the starts");
    let status = room.status(ARM).expect("arm64 status");
    assert_eq!(status["audio"]["running"], true, "arm64 audio: {status}");
    assert_eq!(status["audio"]["stems"][0], STEMS[ARM], "{status}");

    // Follows decisions cast on x86 nodes, in the same round as they do.
    cast_and_follow(&room, 0, r#"{"event":"play","channel":"all"}"#, "play");
    assert!(channels(&room, ARM, |c| c["playing"] == true));
    cast_and_follow(
        &room,
        1,
        r#"{"event":"seek","channel":"all","to":1440000}"#,
        "seek",
    );
    let anchors: Vec<(u64, u64)> = (0..3)
        .map(|i| {
            let s = room.status(i).expect("status");
            (
                s["channels"][ARM]["anchor_pos"].as_u64().unwrap_or(0),
                s["channels"][ARM]["anchor_at"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        anchors.iter().all(|a| a == &anchors[0]) && anchors[0].0 == 1_440_000,
        "seek anchors: {anchors:?}"
    );
    // Its own vote reaches the room.
    cast_and_follow(
        &room,
        ARM,
        r#"{"event":"volume","channel":"all","gain":60}"#,
        "volume",
    );
    for i in 0..3 {
        assert!(channels(&room, i, |c| c["gain"] == 60), "host {i} gain");
    }
    // Let it play for a few seconds, then pause.
    std::thread::sleep(Duration::from_secs(4));
    cast_and_follow(&room, 0, r#"{"event":"pause","channel":"all"}"#, "pause");
    assert!(channels(&room, ARM, |c| c["playing"] == false));
    std::thread::sleep(Duration::from_secs(3));
    let before_stop = room.status(ARM).expect("arm64 status");
    eprintln!(
        "arm64 audio before stopping (emulated timing, not asserted): {}",
        before_stop["audio"]
    );

    // Stops cleanly on SIGTERM, so the WAV file is complete.
    let code = room.terminate(ARM);
    if code != Some(0) {
        room.dump_logs();
    }
    assert_eq!(code, Some(0), "the arm64 node's exit on SIGTERM");

    // Plays to the file: its own stem's tone while playing, then silence.
    let b = blocks(&wavs[ARM]);
    let want = TONES_HZ[ARM];
    let tone = |&(rms, hz): &(f64, f64)| rms > 0.05 && (hz - want).abs() < want * 0.05;
    let silent = |&(rms, _): &(f64, f64)| rms < 1e-4;
    let loud = b.iter().filter(|x| tone(x)).count();
    let other = b
        .iter()
        .filter(|(rms, hz)| *rms > 0.05 && (hz - want).abs() >= want * 0.05)
        .count();
    let tail_silent = b.iter().rev().take_while(|x| silent(x)).count();
    eprintln!(
        "arm64 WAV: {} blocks of 100 ms, {loud} with its {want} Hz tone, {other} loud with \
         another pitch, last {tail_silent} silent",
        b.len()
    );
    assert!(
        loud >= 20,
        "at least 2 s of the arm64 node's own stem in its file"
    );
    // Seeks, ramps and an emulated node's underruns cut a few blocks;
    // another stem's tone would fill as many blocks as its own.
    assert!(
        other * 3 <= loud,
        "the file holds another pitch: {other} blocks"
    );
    assert!(
        tail_silent >= 15,
        "the paused room's last 1.5 s or more are silence in the file"
    );
}
