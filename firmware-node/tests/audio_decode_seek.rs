//! Sample-exact seeking: after `seek(n)` a stem yields exactly what reading
//! from frame 0 and skipping `n` frames yields, bit for bit, for WAV and
//! FLAC, at packet boundaries and between them, backwards and forwards.
//! Also: a damaged packet becomes silence of the same length (positions
//! after it do not shift), and a truncated file plays what it has.

mod audio_support;

use std::path::Path;

use audio_support::{assert_bits_eq, decode_file, read_to_end, samples, write_flac, write_wav};
use autoharmonize_node::audio::decode::{AudioSource, StemDecoder};

const FRAMES: usize = 48_000 * 3 + 123;

fn check_seeks(path: &Path, packet: u64) {
    let full = decode_file(path);
    let mut dec = StemDecoder::open(path).expect("opens");
    let ch = usize::from(dec.spec().channels);
    assert_eq!(full.len(), FRAMES * ch, "{}: length", path.display());
    let last = FRAMES as u64 - 1;
    // Boundaries of the 2nd and 10th packets, both sides; mid-packet;
    // first and last frame; in backwards and forwards order.
    let targets = [
        packet,
        packet - 1,
        packet + 1,
        10 * packet,
        3 * packet + packet / 2,
        0,
        last,
        77_777,
        1,
        FRAMES as u64,
    ];
    for &n in &targets {
        dec.seek(n).expect("seeks");
        assert_eq!(dec.position(), n);
        let got = read_to_end(&mut dec, 997);
        let from = (n as usize * ch).min(full.len());
        assert_bits_eq(&got, &full[from..], &format!("{} seek {n}", path.display()));
    }
    // A seek in the middle of reading, then a partial read.
    dec.seek(5_000).expect("seeks");
    let mut buf = vec![0.0f32; 300 * ch];
    assert_eq!(dec.read(&mut buf).ok(), Some(300));
    dec.seek(4_000).expect("seeks");
    assert_eq!(dec.read(&mut buf).ok(), Some(300));
    assert_bits_eq(&buf, &full[4_000 * ch..4_300 * ch], "re-seek backwards");
    assert_eq!(dec.skipped_packets(), 0);
}

#[test]
fn wav_seeks_are_sample_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("drums.wav");
    let pcm = samples(FRAMES, 2, 1);
    write_wav(&path, 48_000, 2, &pcm);
    let full = decode_file(&path);
    // The decoder is the exact inverse of the encoder's 16-bit samples.
    let expect: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32_768.0).collect();
    assert_bits_eq(&full, &expect, "wav decode");
    // symphonia's WAV reader makes packets of 1152 frames at most; any
    // block size works since every frame is checked around the targets.
    check_seeks(&path, 1152);
}

#[test]
fn flac_seeks_are_sample_exact() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (block, channels) in [(4096usize, 2u16), (1152, 1)] {
        let path = dir.path().join(format!("bass-{block}-{channels}.flac"));
        let pcm = samples(FRAMES, channels, 2);
        write_flac(&path, 48_000, channels, &pcm, block);
        let full = decode_file(&path);
        let expect: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32_768.0).collect();
        assert_bits_eq(&full, &expect, "flac decode");
        check_seeks(&path, block as u64);
    }
}

#[test]
fn a_damaged_flac_frame_becomes_silence_of_its_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("vocals.flac");
    let pcm = samples(FRAMES, 2, 3);
    write_flac(&path, 48_000, 2, &pcm, 4096);
    let mut bytes = std::fs::read(&path).expect("read");
    // Damage the middle of the file (inside some frame's payload).
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0xa5;
    }
    std::fs::write(&path, &bytes).expect("write");
    let mut dec = StemDecoder::open(&path).expect("the header is intact");
    let got = read_to_end(&mut dec, 1000);
    // symphonia's FLAC reader resynchronises past a frame whose CRC fails,
    // so the damage shows as a gap in timestamps rather than a decode error.
    assert!(
        dec.skipped_packets() + dec.filled_frames() > 0,
        "the damaged frame was noticed"
    );
    let expect: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32_768.0).collect();
    // Same length: every frame after the damage keeps its position.
    assert_eq!(got.len(), expect.len());
    let differing: Vec<usize> = (0..FRAMES)
        .filter(|&f| got[f * 2..f * 2 + 2] != expect[f * 2..f * 2 + 2])
        .collect();
    let (first, last) = (differing[0], differing[differing.len() - 1]);
    // Only what the damaged packets held differs, and it is silence.
    assert!(last - first < 2 * 4096, "damage spans {first}..={last}");
    assert!(got[first * 2..=last * 2 + 1].iter().all(|&s| s == 0.0));
    assert_bits_eq(
        &got[(last + 1) * 2..],
        &expect[(last + 1) * 2..],
        "after damage",
    );
}

#[test]
fn a_truncated_file_plays_what_it_has() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("other.flac");
    let pcm = samples(FRAMES, 2, 4);
    write_flac(&path, 48_000, 2, &pcm, 4096);
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("write");
    let mut dec = StemDecoder::open(&path).expect("opens");
    let got = read_to_end(&mut dec, 1000);
    let expect: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32_768.0).collect();
    assert!(got.len() > expect.len() / 4 && got.len() < expect.len());
    // What it has is exact up to the last whole frame.
    let whole = got.len() - 2 * 4096;
    assert_bits_eq(&got[..whole], &expect[..whole], "truncated prefix");
}
