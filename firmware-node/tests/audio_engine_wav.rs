//! The engine end to end without hardware: a stem through the decoder
//! thread, the ring and the output thread into a WAV sink comes out as the
//! decoded stem times the gain, bit for bit, with a mono stem spread to
//! stereo; and a source that fails midway leaves the output running,
//! silent, without counting underruns.

mod audio_support;

use std::sync::Arc;
use std::time::Duration;

use audio_support::{samples, write_wav};
use autoharmonize_node::audio::StreamSpec;
use autoharmonize_node::audio::decode::{AudioSource, DecodeError};
use autoharmonize_node::audio::engine::{Engine, EngineConfig, EngineError, SourceState};
use autoharmonize_node::audio::output::{
    ManualClock, SinkRequest, VirtualDac, VirtualDacConfig, WavSink, f32_to_i16,
};
use autoharmonize_node::audio::track::{StemChoice, Track};

fn request(channels: u16) -> SinkRequest {
    SinkRequest {
        spec: StreamSpec {
            rate: 48_000,
            channels,
        },
        period_frames: 256,
        periods: 4,
    }
}

#[test]
fn a_stem_reaches_a_wav_file_exactly_with_gain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frames = 48_000 + 77; // not a whole number of periods
    let pcm = samples(frames, 1, 5);
    write_wav(&dir.path().join("vocals.wav"), 48_000, 1, &pcm);
    let track = Track::open(dir.path()).expect("track");
    let source = track
        .open_source(&StemChoice::Name("vocals".into()))
        .expect("source");
    let out = dir.path().join("out.wav");
    let sink = WavSink::create(&out, &request(2)).expect("wav sink");
    let config = EngineConfig {
        initial_gain: 0.5,
        realtime_priority: None,
        ..EngineConfig::default()
    };
    let engine = Engine::start(
        source,
        Box::new(sink),
        config,
        Arc::new(ManualClock::new(0)),
    )
    .expect("starts");
    let counters = engine.finish(Duration::from_secs(20)).expect("plays");
    assert_eq!(counters.frames_written, frames as u64);
    assert_eq!(counters.underruns, 0);
    assert_eq!(counters.source, SourceState::Ended);

    let got: Vec<i16> = hound::WavReader::open(&out)
        .expect("readable WAV")
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples");
    let want: Vec<i16> = pcm
        .iter()
        .flat_map(|&s| {
            let v = f32_to_i16(f32::from(s) / 32_768.0 * 0.5);
            [v, v]
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "WAV output differs from decoded stem × 0.5");
}

/// A source that yields `ok_frames` of a constant and then fails.
struct Failing {
    ok_frames: u64,
    position: u64,
}

impl AudioSource for Failing {
    fn spec(&self) -> StreamSpec {
        StreamSpec {
            rate: 48_000,
            channels: 2,
        }
    }
    fn read(&mut self, out: &mut [f32]) -> Result<usize, DecodeError> {
        if self.position >= self.ok_frames {
            return Err(DecodeError::NoDecodableAudio {
                path: "failing".into(),
                skipped: 1,
            });
        }
        let n = (out.len() / 2).min((self.ok_frames - self.position) as usize);
        out[..n * 2].fill(0.25);
        self.position += n as u64;
        Ok(n)
    }
    fn seek(&mut self, frame: u64) -> Result<(), DecodeError> {
        self.position = frame;
        Ok(())
    }
    fn position(&self) -> u64 {
        self.position
    }
    fn skipped_packets(&self) -> u64 {
        0
    }
}

#[test]
fn a_failing_source_leaves_silence_in_sync() {
    let clock = Arc::new(ManualClock::new(0));
    let dac = VirtualDac::new(&request(2), VirtualDacConfig::default(), clock.clone());
    let probe = dac.probe();
    let source = Box::new(Failing {
        ok_frames: 10_000,
        position: 0,
    });
    let config = EngineConfig {
        realtime_priority: None,
        prefill_frames: 10_000,
        ..EngineConfig::default()
    };
    let engine = Engine::start(source, Box::new(dac), config, clock.clone()).expect("starts");
    // The virtual DAC on a manual clock runs as fast as the output thread:
    // wait for a few seconds of simulated playback.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while engine.counters().frames_written < 48_000 * 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let c = engine.counters();
    assert_eq!(c.source, SourceState::Failed);
    assert!(c.frames_written >= 48_000 * 3, "the output keeps going");
    assert_eq!(c.underruns, 0, "silence after a failure is not an underrun");
    assert_eq!(c.xruns, 0);
    assert!(probe.emission_ns(0).is_some(), "the virtual DAC is running");
    match engine.stop() {
        Err(EngineError::Decode(DecodeError::NoDecodableAudio { .. })) => {}
        other => panic!("stop should report the decode error, got {other:?}"),
    }
}
