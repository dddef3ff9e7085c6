//! Shared by the `audio_*` integration tests: deterministic test stems
//! (WAV through hound, FLAC through the pure-Rust flacenc, so no CLI is
//! needed), full decodes, and the rule for missing prerequisites.

#![allow(dead_code, unreachable_pub)] // each test binary uses a subset

use std::path::Path;

use autoharmonize_node::audio::decode::{AudioSource, StemDecoder};

/// `frames` frames of `channels`-channel 16-bit audio: a 440 Hz sine under
/// deterministic noise (odd values included, so rounding is exercised),
/// different per channel and per `seed`.
pub fn samples(frames: usize, channels: u16, seed: u32) -> Vec<i16> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let mut out = Vec::with_capacity(frames * usize::from(channels));
    for i in 0..frames {
        for c in 0..channels {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = ((x >> 16) as i32 & 0x1fff) - 0x1000;
            let phase = (i as f64) * 440.0 * std::f64::consts::TAU / 48_000.0 + f64::from(c);
            let sine = (phase.sin() * 12_000.0) as i32;
            out.push((sine + noise).clamp(-32_768, 32_767) as i16);
        }
    }
    out
}

/// Writes `samples` as a 16-bit WAV.
pub fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create test WAV");
    for s in samples {
        w.write_sample(*s).expect("write test WAV");
    }
    w.finalize().expect("finalize test WAV");
}

/// Writes `samples` as a 16-bit FLAC with fixed blocks of `block_size`.
pub fn write_flac(path: &Path, rate: u32, channels: u16, samples: &[i16], block_size: usize) {
    use flacenc::component::BitRepr as _;
    use flacenc::error::Verify as _;

    let wide: Vec<i32> = samples.iter().map(|&s| i32::from(s)).collect();
    let mut config = flacenc::config::Encoder::default();
    config.block_size = block_size;
    let config = config.into_verified().expect("valid flacenc config");
    let source =
        flacenc::source::MemSource::from_samples(&wide, usize::from(channels), 16, rate as usize);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .expect("encode test FLAC");
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream.write(&mut sink).expect("serialise test FLAC");
    let mut bytes = sink.as_slice().to_vec();
    // flacenc writes the short last block's size as STREAMINFO's minimum
    // block size; the FLAC spec excludes the last block (the `flac` CLI
    // writes min = max for fixed blocks), and symphonia 0.6 then takes the
    // stream for variable-blocksize and fails with UnexpectedEof. Set
    // min = max (bytes 8..10 and 10..12: after "fLaC" and the 4-byte
    // metadata block header).
    let max = [bytes[10], bytes[11]];
    bytes[8..10].copy_from_slice(&max);
    std::fs::write(path, bytes).expect("write test FLAC");
}

/// Everything `source` yields from its position on, reading `chunk`
/// frames at a time.
pub fn read_to_end(source: &mut dyn AudioSource, chunk: usize) -> Vec<f32> {
    let ch = usize::from(source.spec().channels);
    let mut buf = vec![0.0f32; chunk * ch];
    let mut out = Vec::new();
    loop {
        let n = source.read(&mut buf).expect("decodes");
        out.extend_from_slice(&buf[..n * ch]);
        if n < chunk {
            return out;
        }
    }
}

/// The whole file, decoded.
pub fn decode_file(path: &Path) -> Vec<f32> {
    let mut dec = StemDecoder::open(path).expect("opens");
    read_to_end(&mut dec, 1000)
}

/// Whether a test may run: `true` if `ok`; otherwise fails under CI
/// (`CI=true`) and prints a loud skip notice locally.
pub fn prerequisite(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(!ci, "prerequisite missing under CI: {what}");
    eprintln!();
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    eprintln!("!!! SKIPPED: {what}");
    eprintln!("!!! (with CI=true this is a failure; see docs/audio.md for packages)");
    eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
    false
}

/// Whether `bin` is an executable on `PATH`.
pub fn on_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(bin).is_file()))
}

/// Compares two sample slices bit for bit and reports the first difference.
pub fn assert_bits_eq(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got
        .iter()
        .zip(want)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        panic!("{what}: sample {i} differs: {} vs {}", got[i], want[i]);
    }
}
