//! A sink without a clock of its own (a WAV file, the null output) paced
//! like a device: a virtual DAC at the nominal rate decides when each frame
//! is "emitted", and the inner sink receives the frames as they are
//! written. So a node without sound hardware plays in real time, in sync,
//! and a WAV output holds exactly what a speaker would have played.
//!
//! Including an xrun: a speaker whose buffer ran dry is silent until its
//! device runs again, so the frames of the new run are held back until it
//! starts and the inner sink first receives the silence the dry device
//! "played" (one zero frame per tick without a frame). The file's frame
//! index stays its time: a glitch is a gap, never a shift of the rest.

use super::virtual_dac::{VirtualDac, VirtualDacConfig};
use super::{SharedTime, Sink, SinkConfig, SinkError, SinkRequest, VirtualProbe};

/// See the module doc.
pub(crate) struct Paced {
    clock: VirtualDac,
    inner: Box<dyn Sink>,
    /// After an xrun, until the next run starts: the tick from which the
    /// device was dry.
    dry_from: Option<i128>,
    /// Frames of a run not started yet, after an xrun (at most a buffer:
    /// a run starts when the buffer is full). Allocated once.
    held: Vec<f32>,
    /// One period of silence, for writing gaps. Allocated once.
    zeros: Vec<f32>,
}

impl std::fmt::Debug for Paced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paced")
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// `inner` paced by a virtual DAC on `time` (a 0 ppm crystal: the clock
/// itself).
#[must_use]
pub fn paced(inner: Box<dyn Sink>, time: SharedTime) -> Box<dyn Sink> {
    let c = inner.config();
    let req = SinkRequest {
        spec: c.spec,
        period_frames: c.period_frames,
        periods: (c.buffer_frames / c.period_frames.max(1)).max(2),
    };
    let clock = VirtualDac::new(&req, VirtualDacConfig::default(), time);
    let vc = clock.config();
    let ch = usize::from(vc.spec.channels);
    Box::new(Paced {
        held: Vec::with_capacity((vc.buffer_frames + vc.period_frames) as usize * ch),
        zeros: vec![0.0; vc.period_frames.max(1) as usize * ch],
        dry_from: None,
        clock,
        inner,
    })
}

impl Sink for Paced {
    fn config(&self) -> SinkConfig {
        SinkConfig {
            format: self.inner.config().format,
            ..self.clock.config()
        }
    }

    fn is_realtime(&self) -> bool {
        true
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), SinkError> {
        let result = self.clock.write(samples);
        let written = match &result {
            Ok(()) => samples.len(),
            Err(SinkError::Xrun { written }) => written * usize::from(self.config().spec.channels),
            Err(_) => 0,
        };
        let samples = &samples[..written];
        match (self.dry_from, self.clock.start_tick()) {
            (Some(dry), Some(start)) => {
                // The new run started: the silence, then what waited.
                self.dry_from = None;
                self.write_silence(start - dry)?;
                self.inner.write(&self.held)?;
                self.held.clear();
                self.inner.write(samples)?;
            }
            (Some(_), None) => {
                let room = self.held.capacity() - self.held.len();
                self.held
                    .extend_from_slice(&samples[..samples.len().min(room)]);
            }
            (None, _) => self.inner.write(samples)?,
        }
        self.note_dry();
        result
    }

    fn delay(&mut self) -> Result<i64, SinkError> {
        let d = self.clock.delay();
        self.note_dry();
        d
    }

    fn recover(&mut self) -> Result<(), SinkError> {
        self.clock.recover()
    }

    fn xruns(&self) -> u64 {
        self.clock.xruns()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.clock.finish()?;
        // A run too short to start on its own (the song ended within a
        // buffer of an xrun) was played out by `finish` above: its frames,
        // without the gap, whose end is not known.
        if self.dry_from.take().is_some() {
            self.inner.write(&self.held)?;
            self.held.clear();
        }
        self.inner.finish()
    }

    fn virtual_probe(&self) -> Option<VirtualProbe> {
        self.clock.virtual_probe()
    }
}

impl Paced {
    /// Remembers when the device ran dry, if it just did.
    fn note_dry(&mut self) {
        if self.dry_from.is_none() {
            self.dry_from = self.clock.dry_tick();
        }
    }

    /// `frames` frames of silence to the inner sink.
    fn write_silence(&mut self, frames: i128) -> Result<(), SinkError> {
        let ch = usize::from(self.clock.config().spec.channels);
        let mut left = usize::try_from(frames).unwrap_or(0);
        while left > 0 {
            let n = left.min(self.zeros.len() / ch);
            self.inner.write(&self.zeros[..n * ch])?;
            left -= n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::audio::StreamSpec;
    use crate::audio::output::{ManualClock, SampleFormat, TimeSource as _};

    /// An inner sink that keeps channel 0 of every frame.
    struct Keep(Arc<Mutex<Vec<f32>>>);

    impl Sink for Keep {
        fn config(&self) -> SinkConfig {
            SinkConfig {
                spec: StreamSpec {
                    rate: 48_000,
                    channels: 2,
                },
                period_frames: 240,
                buffer_frames: 960,
                format: SampleFormat::F32,
            }
        }
        fn is_realtime(&self) -> bool {
            false
        }
        fn write(&mut self, samples: &[f32]) -> Result<(), SinkError> {
            let mut kept = self.0.lock().expect("not poisoned");
            kept.extend(samples.chunks_exact(2).map(|f| f[0]));
            Ok(())
        }
        fn delay(&mut self) -> Result<i64, SinkError> {
            Ok(0)
        }
        fn recover(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
        fn xruns(&self) -> u64 {
            0
        }
        fn finish(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    /// One period whose frames all hold `v`.
    fn period(v: f32) -> Vec<f32> {
        vec![v; 480]
    }

    #[test]
    fn a_dry_spell_is_silence_in_the_record_not_a_shift() {
        let kept = Arc::new(Mutex::new(Vec::new()));
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let mut sink = paced(Box::new(Keep(Arc::clone(&kept))), clock.clone());
        // Ten periods (the run starts once four fill the buffer; writing
        // waits, which moves the manual clock on).
        for _ in 0..10 {
            sink.write(&period(1.0)).expect("no xrun yet");
        }
        // The output thread stalls 50 ms: 2400 ticks, of which the buffer
        // covered 960; the device is dry from then on.
        clock.advance(50_000_000);
        let err = sink.write(&period(2.0));
        assert!(
            matches!(err, Err(SinkError::Xrun { written: 0 })),
            "{err:?}"
        );
        sink.recover().expect("recovers");
        // Ticks fall every 1/48 000 s from 0; the first run started on the
        // one at 1 s. The new run starts on the first tick from now (the
        // buffer fills at once: writing takes no time on this clock).
        let restart = ((clock.now_ns() - 1_000_000_000) * 48_000).div_ceil(1_000_000_000);
        // The new run: held until its buffer is full, then it starts.
        for _ in 0..6 {
            sink.write(&period(2.0)).expect("runs");
        }
        sink.finish().expect("finishes");
        let kept = kept.lock().expect("not poisoned");
        let first = |v: f32| kept.iter().position(|&x| x == v).expect("present");
        let (old, new) = (first(1.0), first(2.0));
        assert_eq!(old, 0);
        assert_eq!(kept.iter().filter(|&&x| x == 1.0).count(), 2_400);
        // Frame index is time: the old run's 2400 frames, then silence
        // until the tick the new run started on, then the new run.
        let silence = &kept[2_400..new];
        assert!(silence.iter().all(|&x| x == 0.0));
        assert!(silence.len() > 1_000, "{} frames of silence", silence.len());
        assert_eq!(new as u64, restart, "the new run starts at its tick");
        assert_eq!(kept.iter().filter(|&&x| x == 2.0).count(), 1_440);
        assert_eq!(kept.len(), new + 1_440);
    }
}
