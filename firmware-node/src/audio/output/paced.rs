//! A sink without a clock of its own (a WAV file, the null output) paced
//! like a device: a virtual DAC at the nominal rate decides when each frame
//! is "emitted", and the inner sink receives the frames as they are
//! written. So a node without sound hardware plays in real time, in sync,
//! and a WAV output holds exactly what a speaker would have played.

use super::virtual_dac::{VirtualDac, VirtualDacConfig};
use super::{SharedTime, Sink, SinkConfig, SinkError, SinkRequest, VirtualProbe};

/// See the module doc.
pub(crate) struct Paced {
    clock: VirtualDac,
    inner: Box<dyn Sink>,
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
    Box::new(Paced {
        clock: VirtualDac::new(&req, VirtualDacConfig::default(), time),
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
        self.inner.write(&samples[..written])?;
        result
    }

    fn delay(&mut self) -> Result<i64, SinkError> {
        self.clock.delay()
    }

    fn recover(&mut self) -> Result<(), SinkError> {
        self.clock.recover()
    }

    fn xruns(&self) -> u64 {
        self.clock.xruns()
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.clock.finish()?;
        self.inner.finish()
    }

    fn virtual_probe(&self) -> Option<VirtualProbe> {
        self.clock.virtual_probe()
    }
}
