//! Measurement, not a check of speed: the CPU time this machine spends
//! decoding one second of 48 kHz stereo 16-bit FLAC, on the thread that
//! decodes (from `/proc/thread-self/schedstat`, so other load on the
//! machine does not inflate it). Ignored by default; run with
//!
//! ```text
//! cargo test --release -p autoharmonize-node --test audio_decode_cost -- --ignored --nocapture
//! ```
//!
//! The stem is 60 s of a sine under noise, encoded by flacenc (block 4096)
//! and, when the `flac` CLI is installed, also by reference `flac -5`
//! (block 4608 at 48 kHz): lossless decoding cost grows with the bits to
//! unpack, so noisy material is a pessimistic case. The only assertion is
//! that every frame was decoded.

mod audio_support;

use std::path::Path;
use std::process::Command;

use audio_support::{on_path, read_to_end, samples, write_flac, write_wav};
use autoharmonize_node::audio::decode::StemDecoder;

const SECONDS: usize = 60;

/// CPU time of the calling thread, in ns.
fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux schedstat");
    s.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("schedstat's first field is ns on CPU")
}

fn measure(path: &Path, what: &str) {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    // Warm the page cache and the decoder's tables once.
    let _ = read_to_end(&mut StemDecoder::open(path).expect("opens"), 4096);
    let mut best = u64::MAX;
    for _ in 0..3 {
        let t0 = thread_cpu_ns();
        let mut dec = StemDecoder::open(path).expect("opens");
        let out = read_to_end(&mut dec, 1024);
        let cpu = thread_cpu_ns() - t0;
        assert_eq!(out.len(), 48_000 * SECONDS * 2, "every frame decoded");
        best = best.min(cpu);
    }
    let per_second_us = best as f64 / SECONDS as f64 / 1000.0;
    println!(
        "{what}: {:.0} kbit/s, decode CPU {per_second_us:.0} µs per second of audio \
         = {:.3} % of one core",
        size as f64 * 8.0 / SECONDS as f64 / 1000.0,
        per_second_us / 10_000.0,
    );
}

#[test]
#[ignore = "measurement; run explicitly (see the module doc)"]
fn flac_decode_cost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pcm = samples(48_000 * SECONDS, 2, 41);
    let fe = dir.path().join("flacenc.flac");
    write_flac(&fe, 48_000, 2, &pcm, 4096);
    measure(&fe, "flacenc FLAC");
    if on_path("flac") {
        let wav = dir.path().join("ref.wav");
        write_wav(&wav, 48_000, 2, &pcm);
        let reference = dir.path().join("ref.flac");
        let ok = Command::new("flac")
            .args(["-5", "-s", "-f", "-o"])
            .arg(&reference)
            .arg(&wav)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            measure(&reference, "flac -5 FLAC");
        }
    }
    let wav = dir.path().join("plain.wav");
    write_wav(&wav, 48_000, 2, &pcm);
    measure(&wav, "WAV (PCM)");
}
