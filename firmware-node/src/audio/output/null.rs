//! The `null` sink: accepts every frame at once and discards it, counting.
//!
//! For a node without sound hardware (CI, a controller-only machine) and for
//! tests of the output loop. It has no clock: it is not real-time, so the
//! engine paces it by the decoder rather than by a device.

use super::{SampleFormat, Sink, SinkConfig, SinkError, SinkRequest};

/// Discards frames; counts them.
#[derive(Debug)]
pub struct NullSink {
    config: SinkConfig,
    frames: u64,
}

impl NullSink {
    /// A null sink with the requested shape.
    #[must_use]
    pub fn new(req: &SinkRequest) -> NullSink {
        NullSink {
            config: SinkConfig {
                spec: req.spec,
                period_frames: req.period_frames,
                buffer_frames: req.period_frames.saturating_mul(req.periods),
                format: SampleFormat::F32,
            },
            frames: 0,
        }
    }

    /// Frames written since opening.
    #[must_use]
    pub fn frames(&self) -> u64 {
        self.frames
    }
}

pub(super) fn open(arg: Option<&str>, req: &SinkRequest) -> Result<Box<dyn Sink>, SinkError> {
    if let Some(a) = arg.filter(|a| !a.is_empty()) {
        return Err(SinkError::BadSpec {
            spec: format!("null:{a}"),
            problem: "the null output takes no argument".to_owned(),
        });
    }
    Ok(Box::new(NullSink::new(req)))
}

impl Sink for NullSink {
    fn config(&self) -> SinkConfig {
        self.config
    }

    fn is_realtime(&self) -> bool {
        false
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), SinkError> {
        self.frames += (samples.len() / usize::from(self.config.spec.channels)) as u64;
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
