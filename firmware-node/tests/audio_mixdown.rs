//! The `all` channel: the stems of a track summed with 1/sqrt(n) headroom,
//! a mono stem spread to both channels, the mix as long as the longest stem.

mod audio_support;

use audio_support::{assert_bits_eq, read_to_end, samples, write_flac, write_wav};
use autoharmonize_node::audio::StreamSpec;
use autoharmonize_node::audio::track::{StemChoice, Track, TrackError};

#[test]
fn all_mixes_every_stem_with_headroom() {
    let dir = tempfile::tempdir().expect("tempdir");
    let drums = samples(48_000, 2, 10);
    let bass = samples(30_000, 1, 11); // mono and shorter
    let keys = samples(40_000, 2, 12);
    write_flac(&dir.path().join("drums.flac"), 48_000, 2, &drums, 4096);
    write_wav(&dir.path().join("bass.wav"), 48_000, 1, &bass);
    write_wav(&dir.path().join("keys.wav"), 48_000, 2, &keys);
    let track = Track::open(dir.path()).expect("track");
    let mut all = track.open_source(&StemChoice::All).expect("mixdown");
    assert_eq!(
        all.spec(),
        StreamSpec {
            rate: 48_000,
            channels: 2
        }
    );
    let got = read_to_end(all.as_mut(), 777);

    // The same arithmetic, in the same order (stems in track order: bass,
    // drums, keys), so the comparison can be exact.
    let g = 1.0 / 3.0f32.sqrt();
    let f = |s: i16| f32::from(s) / 32_768.0;
    let mut want = vec![0.0f32; 48_000 * 2];
    for i in 0..48_000 {
        for c in 0..2 {
            let mut acc = 0.0f32;
            if i < 30_000 {
                acc += f(bass[i]) * g;
            }
            acc += f(drums[i * 2 + c]) * g;
            if i < 40_000 {
                acc += f(keys[i * 2 + c]) * g;
            }
            want[i * 2 + c] = acc;
        }
    }
    assert_bits_eq(&got, &want, "mixdown");

    // Seeking the mix seeks every stem.
    all.seek(35_000).expect("seek");
    let tail = read_to_end(all.as_mut(), 500);
    assert_bits_eq(&tail, &want[35_000 * 2..], "mixdown after seek");
}

#[test]
fn stems_at_different_rates_cannot_be_mixed() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_wav(&dir.path().join("a.wav"), 48_000, 2, &samples(100, 2, 1));
    write_wav(&dir.path().join("b.wav"), 44_100, 2, &samples(100, 2, 2));
    let track = Track::open(dir.path()).expect("track");
    let err = track.open_source(&StemChoice::All).err();
    assert!(matches!(&err, Some(TrackError::Decode { .. })), "{err:?}");
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("44100 Hz, but the other stems are 48000 Hz"),
        "{msg}"
    );
    // One stem alone is fine.
    assert!(track.open_source(&StemChoice::Index(1)).is_ok());
}

#[test]
fn a_corrupt_stem_is_named_in_the_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("drums.flac"), [7u8; 1000]).expect("write");
    let track = Track::open(dir.path()).expect("the folder itself is fine");
    let err = track
        .open_source(&StemChoice::Name("drums".into()))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.starts_with("stem 'drums': "), "{err}");
    assert!(err.contains("drums.flac"), "{err}");
}
