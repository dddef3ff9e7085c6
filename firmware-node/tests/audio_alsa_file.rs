//! The real ALSA library, no sound card: a stem played through the `alsa:`
//! backend into ALSA's `file` plugin (over the `null` PCM) is captured to a
//! raw file, which must equal the decoded stem times the gain, byte for
//! byte (S16_LE; the gain is applied in `f32` and rounded to nearest by
//! `f32_to_i16`, no dither, so there is nothing to allow 1 LSB for).
//!
//! The PCM is the `file` definition every alsa-lib ships in
//! `/usr/share/alsa/alsa.conf` (`type file`, `slave.pcm null`, arguments
//! `FILE` and `FORMAT`), addressed as `file:FILE=<path>,FORMAT=raw`. That
//! is the same PCM a custom asoundrc would define, without having to point
//! `ALSA_CONFIG_PATH` somewhere: setting the environment in a test process
//! is `unsafe` in Rust 2024 (the crate forbids unsafe) and would leak into
//! the other tests of the binary.
//!
//! The `null` PCM consumes instantly, so the output loop outruns any
//! decoder; the ring and prefill hold the whole stem so the comparison is
//! not disturbed by underrun silence (and the test asserts there was none).

#![cfg(feature = "alsa")]

mod audio_support;

use std::sync::Arc;
use std::time::Duration;

use audio_support::{samples, write_flac, write_wav};
use autoharmonize_node::audio::StreamSpec;
use autoharmonize_node::audio::engine::{Engine, EngineConfig};
use autoharmonize_node::audio::output::{self, ManualClock, SampleFormat, SinkRequest, f32_to_i16};
use autoharmonize_node::audio::track::{StemChoice, Track};

fn play_and_capture(stem_file: &str, pcm: &[i16], frames: usize, gain: f32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let stem = dir.path().join(stem_file);
    if stem_file.ends_with(".flac") {
        write_flac(&stem, 48_000, 2, pcm, 4096);
    } else {
        write_wav(&stem, 48_000, 2, pcm);
    }
    let capture = dir.path().join("capture.raw");
    let name = format!("alsa:file:FILE={},FORMAT=raw", capture.display());
    let req = SinkRequest {
        spec: StreamSpec {
            rate: 48_000,
            channels: 2,
        },
        period_frames: 256,
        periods: 4,
    };
    let sink = output::open(&name, &req).expect("the ALSA file plugin opens");
    let cfg = sink.config();
    assert_eq!(cfg.format, SampleFormat::S16);
    assert_eq!(cfg.spec, req.spec);
    let track = Track::open(dir.path()).expect("track");
    let source = track.open_source(&StemChoice::Index(0)).expect("source");
    let whole = u32::try_from(frames).expect("small");
    let config = EngineConfig {
        initial_gain: gain,
        ring_frames: whole + 1024,
        prefill_frames: whole,
        realtime_priority: None,
        ..EngineConfig::default()
    };
    let engine =
        Engine::start(source, sink, config, Arc::new(ManualClock::new(0))).expect("starts");
    let c = engine.finish(Duration::from_secs(30)).expect("plays");
    assert_eq!(c.underruns, 0);
    assert_eq!(c.xruns, 0);
    assert_eq!(c.frames_written, frames as u64);

    let got = std::fs::read(&capture).expect("the plugin wrote the capture");
    let want: Vec<u8> = pcm
        .iter()
        .flat_map(|&s| f32_to_i16(f32::from(s) / 32_768.0 * gain).to_le_bytes())
        .collect();
    assert_eq!(got.len(), want.len(), "captured length");
    if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
        panic!("capture differs at byte {i} (frame {})", i / 4);
    }
}

#[test]
fn a_wav_stem_is_captured_exactly_at_unity_gain() {
    let frames = 48_000 * 2 + 100;
    play_and_capture("drums.wav", &samples(frames, 2, 21), frames, 1.0);
}

#[test]
fn a_flac_stem_is_captured_exactly_with_gain() {
    let frames = 48_000 * 2 + 333;
    play_and_capture("bass.flac", &samples(frames, 2, 22), frames, 0.7);
}
