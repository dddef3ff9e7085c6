//! Where the samples go: the [`Sink`] trait and its backends, chosen by
//! name from [`BACKENDS`] (the default first, as librespot's audio backends).
//!
//! | name                         | for                                                    |
//! |------------------------------|--------------------------------------------------------|
//! | `alsa:<pcm>` (default)       | a speaker: any ALSA PCM by name (`default`, `hw:0`, `plug:jack`, `file:…`) |
//! | `wav:<path>`                 | a file of exactly what would have been played          |
//! | `null`                       | discarding, counting: a node without sound hardware    |
//! | `virtual:<ppm>[,offset_ns]`  | a simulated DAC with its own crystal: sync measurement |
//!
//! A string whose part before `:` is not a backend name is handed whole to
//! the default backend, so `default`, `hw:0,0` and `plug:jack` are ALSA
//! PCM names. The ALSA backend exists only with the `alsa` cargo feature
//! (on by default); the others always compile, so CI and machines without
//! libasound2-dev can build and test the node.
//!
//! Sample format at the trait: interleaved `f32` in `[-1, 1]`, the format
//! the decoder and the gain stage produce, so a mix or a gain never loses
//! precision before the sink. Each backend converts once, to what its
//! device accepts (see [`f32_to_i16`]: round to nearest, clamp; no dither,
//! so a 16-bit source at unity gain comes out bit-identical).
//!
//! Invariant for implementors: [`Sink::write`] is called only from the
//! output thread, must not allocate or take a lock once the sink is open,
//! and may block only until the device has room. Every frame passed to
//! `write` is either written or reported as not written (see
//! [`SinkError::Xrun`]): the engine's frame count must equal the device's.

use std::sync::Arc;

use super::StreamSpec;

#[cfg(feature = "alsa")]
mod alsa_pcm;
mod null;
mod paced;
mod virtual_dac;
mod wav;

#[cfg(feature = "alsa")]
pub use alsa_pcm::AlsaSink;
pub use null::NullSink;
pub use paced::paced;
pub use virtual_dac::{ManualClock, MonotonicRawClock, VirtualDac, VirtualDacConfig, VirtualProbe};
pub use wav::WavSink;

/// What the engine asks a sink for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkRequest {
    /// Rate and channel count of the samples that will be written.
    pub spec: StreamSpec,
    /// Frames per period: the unit the output thread writes and the
    /// device's interrupt interval.
    pub period_frames: u32,
    /// Periods in the device buffer (its latency is about
    /// `period_frames * periods`).
    pub periods: u32,
}

impl Default for SinkRequest {
    /// 48 kHz stereo, 256-frame periods (5.3 ms), 4 periods (21 ms).
    fn default() -> Self {
        SinkRequest {
            spec: StreamSpec {
                rate: 48_000,
                channels: 2,
            },
            period_frames: 256,
            periods: 4,
        }
    }
}

/// The device's sample format, as the sink writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleFormat {
    /// Signed 16-bit little-endian.
    S16,
    /// Signed 32-bit little-endian.
    S32,
    /// 32-bit float little-endian.
    F32,
}

/// What a sink actually opened with; may differ from the request (ALSA
/// rounds periods, buffer sizes and even rates to what the device can do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SinkConfig {
    /// Rate and channels the device runs at.
    pub spec: StreamSpec,
    /// Frames per period.
    pub period_frames: u32,
    /// Frames the device buffer holds.
    pub buffer_frames: u32,
    /// What the samples are converted to.
    pub format: SampleFormat,
}

/// Why a sink failed. Only [`SinkError::Xrun`] is recoverable (by
/// [`Sink::recover`]); the others mean the sink must be reopened or the
/// configuration fixed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The device ran out of frames (underrun) and stopped. `written` frames
    /// of this `write` call did reach it; call [`Sink::recover`] and write
    /// the rest.
    #[error("xrun: the device ran dry ({written} frames of this write reached it)")]
    Xrun {
        /// Frames of the failed call that were written.
        written: usize,
    },
    /// The output name's backend is unknown.
    #[error("unknown output backend '{name}' (known: {})", backend_names().join(", "))]
    UnknownBackend {
        /// The name given.
        name: String,
    },
    /// The output name is malformed for its backend.
    #[error("output '{spec}': {problem}")]
    BadSpec {
        /// The full output string.
        spec: String,
        /// What is wrong, and the expected form.
        problem: String,
    },
    /// The device refused the requested shape (rate, channels, format).
    #[error("output cannot play {what}")]
    Unsupported {
        /// What was refused.
        what: String,
    },
    /// An ALSA call failed.
    #[cfg(feature = "alsa")]
    #[error("ALSA {op}: {source}")]
    Alsa {
        /// What we were doing.
        op: &'static str,
        /// ALSA's error.
        #[source]
        source: alsa::Error,
    },
    /// Writing the WAV file failed.
    #[error("{}: {source}", path.display())]
    Wav {
        /// The file.
        path: std::path::PathBuf,
        /// hound's error.
        #[source]
        source: hound::Error,
    },
}

/// An audio output.
///
/// Call order: open (through [`open`] or a backend's constructor), then
/// [`Sink::write`] periods; [`Sink::delay`] at any time; after
/// [`SinkError::Xrun`], [`Sink::recover`] before writing again; finally
/// [`Sink::finish`] to play out what is queued. Dropping without `finish`
/// discards queued frames.
pub trait Sink: Send {
    /// What the sink opened with.
    fn config(&self) -> SinkConfig;

    /// Whether the sink consumes frames at a clock of its own (a device,
    /// the virtual DAC) and so underruns if fed late. `false` for the WAV
    /// and null sinks, which take frames as fast as they come: the engine
    /// then waits for the decoder instead of inserting silence.
    fn is_realtime(&self) -> bool;

    /// Writes `samples` (interleaved, a whole number of frames), blocking
    /// until the device has room for all of them.
    ///
    /// # Errors
    /// [`SinkError::Xrun`] (recoverable; it says how many frames of this
    /// call were written), or a fatal error.
    fn write(&mut self, samples: &[f32]) -> Result<(), SinkError>;

    /// Frames written but not yet emitted by the DAC: the frame written
    /// next reaches the DAC this many frame periods from now. Negative only
    /// in an xrun (ALSA's convention).
    ///
    /// # Errors
    /// As [`Sink::write`].
    fn delay(&mut self) -> Result<i64, SinkError>;

    /// Restarts the device after [`SinkError::Xrun`] (ALSA `prepare`):
    /// queued frames are dropped and the next writes refill the buffer.
    ///
    /// # Errors
    /// The device cannot be restarted; reopen it.
    fn recover(&mut self) -> Result<(), SinkError>;

    /// Xruns since the sink was opened.
    fn xruns(&self) -> u64;

    /// Blocks until every written frame has been emitted, then stops.
    ///
    /// # Errors
    /// A fatal device or file error.
    fn finish(&mut self) -> Result<(), SinkError>;

    /// The emission record, for the `virtual` sink only.
    fn virtual_probe(&self) -> Option<VirtualProbe> {
        None
    }
}

/// Opens a sink from its argument (the part after `name:`, if any).
pub type OpenFn = fn(arg: Option<&str>, req: &SinkRequest) -> Result<Box<dyn Sink>, SinkError>;

/// The backends by name; the first is the default, used for a name no
/// backend claims.
pub const BACKENDS: &[(&str, OpenFn)] = &[
    #[cfg(feature = "alsa")]
    ("alsa", alsa_pcm::open),
    ("wav", wav::open),
    ("null", null::open),
    ("virtual", virtual_dac::open),
];

/// The names in [`BACKENDS`], default first.
#[must_use]
pub fn backend_names() -> Vec<&'static str> {
    BACKENDS.iter().map(|(n, _)| *n).collect()
}

/// Opens the output named `spec` (see the module doc for the forms).
///
/// # Errors
/// [`SinkError::UnknownBackend`] when no backend claims the name and there
/// is no default (a build without ALSA given an ALSA name),
/// [`SinkError::BadSpec`], or the backend's own error.
pub fn open(spec: &str, req: &SinkRequest) -> Result<Box<dyn Sink>, SinkError> {
    let (name, arg) = match spec.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (spec, None),
    };
    if let Some((_, open)) = BACKENDS.iter().find(|(n, _)| *n == name) {
        return open(arg, req);
    }
    // Not a backend name: the whole string is the default backend's argument
    // (an ALSA PCM name such as `default` or `hw:0,0`), unless the default
    // is not an external device.
    match BACKENDS.first() {
        #[cfg(feature = "alsa")]
        Some(("alsa", open)) => open(Some(spec), req),
        _ => Err(SinkError::UnknownBackend {
            name: name.to_owned(),
        }),
    }
}

/// `x` as a signed 16-bit sample: `round(x * 32768)`, clamped to
/// `[-32768, 32767]` (NaN becomes 0).
///
/// The exact inverse of symphonia's `i16 → f32` (`s / 32768`), so 16-bit
/// files at unity gain pass bit-identical. Rounding (not truncation, as
/// symphonia's own `f32 → i16`) keeps the error of a gain within ±½ LSB
/// and unbiased. No dither: at 16 bits the undithered error sits near
/// −96 dBFS, and a deterministic conversion lets tests compare bytes.
#[must_use]
#[inline]
pub fn f32_to_i16(x: f32) -> i16 {
    // `as` saturates and maps NaN to 0.
    (x * 32_768.0).round() as i16
}

/// `x` as a signed 32-bit sample: `round(x * 2^31)`, clamped (NaN → 0).
#[must_use]
#[inline]
pub fn f32_to_i32(x: f32) -> i32 {
    (f64::from(x) * 2_147_483_648.0).round() as i32
}

/// Converts interleaved `samples` to little-endian bytes of `format` into
/// `out`, which must hold exactly `samples.len() * bytes_per_sample`.
#[cfg(feature = "alsa")]
pub(crate) fn encode(format: SampleFormat, samples: &[f32], out: &mut [u8]) {
    match format {
        SampleFormat::S16 => {
            for (s, o) in samples.iter().zip(out.chunks_exact_mut(2)) {
                o.copy_from_slice(&f32_to_i16(*s).to_le_bytes());
            }
        }
        SampleFormat::S32 => {
            for (s, o) in samples.iter().zip(out.chunks_exact_mut(4)) {
                o.copy_from_slice(&f32_to_i32(*s).to_le_bytes());
            }
        }
        SampleFormat::F32 => {
            for (s, o) in samples.iter().zip(out.chunks_exact_mut(4)) {
                o.copy_from_slice(&s.to_le_bytes());
            }
        }
    }
}

impl SampleFormat {
    /// Bytes per sample.
    #[must_use]
    pub fn bytes(self) -> usize {
        match self {
            SampleFormat::S16 => 2,
            SampleFormat::S32 | SampleFormat::F32 => 4,
        }
    }
}

/// The clock a sink or the engine reads "true" time from: the machine's
/// clock in a node, a hand-advanced one in a deterministic test.
///
/// The one seam through which the virtual DAC sees time, so a test can run
/// minutes of audio in milliseconds and a multi-process test can put every
/// node's DAC on the same machine clock.
pub trait TimeSource: Send + Sync {
    /// Now, in nanoseconds from the clock's origin.
    fn now_ns(&self) -> u64;
    /// Blocks until [`TimeSource::now_ns`] is at least `t` (a simulated
    /// clock simply advances to `t`).
    fn sleep_until_ns(&self, t: u64);
}

/// A shared [`TimeSource`].
pub type SharedTime = Arc<dyn TimeSource>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i16_conversion_inverts_symphonia_and_clamps() {
        for s in [i16::MIN, -12_345, -1, 0, 1, 12_345, i16::MAX] {
            assert_eq!(f32_to_i16(f32::from(s) / 32_768.0), s);
        }
        assert_eq!(f32_to_i16(1.0), i16::MAX);
        assert_eq!(f32_to_i16(-2.0), i16::MIN);
        assert_eq!(f32_to_i16(f32::NAN), 0);
        assert_eq!(f32_to_i32(-1.0), i32::MIN);
        assert_eq!(f32_to_i32(1.0), i32::MAX);
    }

    #[test]
    fn names_resolve_to_backends() {
        let req = SinkRequest::default();
        assert!(matches!(
            open("null", &req).map(|s| s.is_realtime()),
            Ok(false)
        ));
        assert!(matches!(
            open("virtual:12.5,1000", &req).map(|s| s.is_realtime()),
            Ok(true)
        ));
        assert!(matches!(
            open("virtual:lots", &req).err(),
            Some(SinkError::BadSpec { .. })
        ));
        assert!(matches!(
            open("wav", &req).err(),
            Some(SinkError::BadSpec { .. })
        ));
        if !cfg!(feature = "alsa") {
            assert!(matches!(
                open("hw:0", &req).err(),
                Some(SinkError::UnknownBackend { .. })
            ));
        }
        assert_eq!(backend_names().last(), Some(&"virtual"));
    }
}
