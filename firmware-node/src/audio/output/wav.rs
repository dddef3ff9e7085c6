//! The `wav:<path>` sink: writes what would have been played to a 16-bit
//! PCM WAV file, as fast as frames come (not real-time).
//!
//! For listening to a node's output without hardware and for comparing it
//! bit for bit: samples go through the same [`super::f32_to_i16`] as the
//! ALSA sink's S16 path, so a WAV capture and an ALSA `file` plugin capture
//! of the same stream are identical.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::{SampleFormat, Sink, SinkConfig, SinkError, SinkRequest, f32_to_i16};

/// Writes a 16-bit WAV file.
pub struct WavSink {
    path: PathBuf,
    config: SinkConfig,
    /// `None` once finished.
    writer: Option<hound::WavWriter<BufWriter<File>>>,
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink")
            .field("path", &self.path)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl WavSink {
    /// Creates (or truncates) `path`.
    ///
    /// # Errors
    /// [`SinkError::Wav`] if the file cannot be created.
    pub fn create(path: &Path, req: &SinkRequest) -> Result<WavSink, SinkError> {
        let spec = hound::WavSpec {
            channels: req.spec.channels,
            sample_rate: req.spec.rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(path, spec).map_err(|source| SinkError::Wav {
            path: path.to_owned(),
            source,
        })?;
        Ok(WavSink {
            path: path.to_owned(),
            config: SinkConfig {
                spec: req.spec,
                period_frames: req.period_frames,
                buffer_frames: req.period_frames.saturating_mul(req.periods),
                format: SampleFormat::S16,
            },
            writer: Some(writer),
        })
    }

    fn wav_err(&self, source: hound::Error) -> SinkError {
        SinkError::Wav {
            path: self.path.clone(),
            source,
        }
    }
}

pub(super) fn open(arg: Option<&str>, req: &SinkRequest) -> Result<Box<dyn Sink>, SinkError> {
    match arg.filter(|a| !a.is_empty()) {
        Some(path) => Ok(Box::new(WavSink::create(Path::new(path), req)?)),
        None => Err(SinkError::BadSpec {
            spec: "wav".to_owned(),
            problem: "expected wav:<path>".to_owned(),
        }),
    }
}

impl Sink for WavSink {
    fn config(&self) -> SinkConfig {
        self.config
    }

    fn is_realtime(&self) -> bool {
        false
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), SinkError> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let mut result = Ok(());
        for s in samples {
            if let Err(e) = writer.write_sample(f32_to_i16(*s)) {
                result = Err(e);
                break;
            }
        }
        result.map_err(|e| self.wav_err(e))
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
        match self.writer.take() {
            Some(w) => w.finalize().map_err(|e| self.wav_err(e)),
            None => Ok(()),
        }
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        // A WAV header states the data length; write it even if the caller
        // forgot `finish`, so the file stays readable.
        if let Some(w) = self.writer.take() {
            let _ = w.finalize();
        }
    }
}
