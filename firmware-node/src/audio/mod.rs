//! The audio engine's foundations: stems on disk, decoding, output backends
//! and the real-time output thread.
//!
//! The pipeline, in the order samples travel (details in `docs/audio.md`):
//!
//! ```text
//! track folder ─ track ─▶ AudioSource (decode: one stem, or the mix-down of all)
//!     ─▶ decoder thread `ah-audio-dec` ─▶ ringbuf SPSC (f32, interleaved)
//!     ─▶ output thread `ah-audio-out` (gain ramp) ─▶ Sink (alsa / wav / null / virtual)
//! ```
//!
//! - [`track`]: a folder of stem files and the choice of which one to play.
//! - [`decode`]: symphonia decoding to interleaved `f32`, sample-exact seeking,
//!   the mix-down of all stems.
//! - [`output`]: the [`output::Sink`] trait and its backends chosen by name.
//! - [`engine`]: the two threads and the lock-free ring between them.
//!
//! Invariant across the module: samples are interleaved `f32` in `[-1, 1]`
//! from the decoder to the sink, which alone converts them to the device's
//! format; frame positions inside a file are `u64` frames at the file's own
//! rate, and only [`file_frame_at`] converts a timeline position
//! ([`Frames`] at [`TIMELINE_RATE`]) into one.

use autoharmonize_protocol::transport::{Frames, TIMELINE_RATE};

pub mod decode;
pub mod engine;
pub mod output;
pub mod player;
pub mod render;
pub mod track;

/// The shape of a stream of interleaved samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamSpec {
    /// Frames per second.
    pub rate: u32,
    /// Samples per frame (interleaved).
    pub channels: u16,
}

impl StreamSpec {
    /// Samples in `frames` frames.
    #[must_use]
    pub fn samples(self, frames: usize) -> usize {
        frames * usize::from(self.channels)
    }
}

/// The frame of a file at `rate` that plays at timeline position `pos`:
/// `floor(pos * rate / TIMELINE_RATE)`, exact (computed in `u128`).
///
/// For a 48 kHz file this is the identity. Resampling to the device rate
/// is the drift controller's job; this only places a seek.
#[must_use]
pub fn file_frame_at(pos: Frames, rate: u32) -> u64 {
    let f = u128::from(pos.0) * u128::from(rate) / u128::from(TIMELINE_RATE);
    u64::try_from(f).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_frame_at_converts_exactly() {
        assert_eq!(file_frame_at(Frames(48_000), 48_000), 48_000);
        assert_eq!(file_frame_at(Frames(48_000), 44_100), 44_100);
        // 1 frame at 48 kHz is 0.91875 frames at 44.1 kHz: rounded down.
        assert_eq!(file_frame_at(Frames(1), 44_100), 0);
        assert_eq!(file_frame_at(Frames(u64::MAX), 96_000), u64::MAX);
    }
}
