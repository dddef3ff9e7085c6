//! A stem that says where it is: the instrument for measuring sync.
//!
//! Every sample of the timecode stem encodes its own position: a sawtooth
//! from 0.1 to 0.9 over [`PERIOD`] frames. A speaker that plays it at unity
//! gain emits, at each instant, a value that tells which frame of the track
//! it is playing — independent of anything the node believes about itself.
//! Comparing two speakers' emissions at the same true instant gives their
//! sync error. Polynomial resampling reproduces a ramp exactly, so only the
//! few frames around each wrap and any fade are unusable; [`Series`]
//! rejects them by checking that neighbouring readings advance as time does.
//!
//! Values are written as 32-bit float WAV so quantisation adds nothing.

use std::path::Path;

/// Frames per sawtooth period (100 ms): errors up to ±50 ms are measurable.
pub const PERIOD: u64 = 4_800;
const LO: f32 = 0.1;
const SPAN: f32 = 0.8;
/// Frames per nanosecond at 48 kHz.
const FRAMES_PER_NS: f64 = 48_000.0 / 1e9;

/// The timecode's sample at `frame`.
#[must_use]
pub fn value(frame: u64) -> f32 {
    LO + SPAN * (frame % PERIOD) as f32 / PERIOD as f32
}

/// The phase (frame within the period) a sample encodes, if it is one.
#[must_use]
pub fn phase(v: f32) -> Option<f64> {
    let p = f64::from((v - LO) / SPAN) * PERIOD as f64;
    (4.0..PERIOD as f64 - 4.0).contains(&p).then_some(p)
}

/// `a − b` on the circle of one period, in `[-PERIOD/2, PERIOD/2)`.
#[must_use]
pub fn circular_diff(a: f64, b: f64) -> f64 {
    let p = PERIOD as f64;
    (a - b + p / 2.0).rem_euclid(p) - p / 2.0
}

/// Writes `frames` frames of timecode, `channels` channels each, as 32-bit
/// float WAV at 48 kHz.
///
/// # Errors
/// The file cannot be written.
pub fn write_wav(path: &Path, frames: u64, channels: u16) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for f in 0..frames {
        for _ in 0..channels {
            w.write_sample(value(f))?;
        }
    }
    w.finalize()
}

/// One speaker's emissions: (true emission time in ns, sample value),
/// ordered by time.
#[derive(Clone, Debug, Default)]
pub struct Series {
    points: Vec<(u64, f32)>,
}

impl Series {
    /// A series from its points (sorted here).
    #[must_use]
    pub fn new(mut points: Vec<(u64, f32)>) -> Series {
        points.sort_by_key(|p| p.0);
        Series { points }
    }

    /// Reads the `<emission_ns> <value>` lines a recording virtual DAC writes.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn read(path: &Path) -> std::io::Result<Series> {
        let text = std::fs::read_to_string(path)?;
        let points = text
            .lines()
            .filter_map(|l| {
                let (t, v) = l.split_once(' ')?;
                Some((t.parse().ok()?, v.parse().ok()?))
            })
            .collect();
        Ok(Series::new(points))
    }

    /// Points held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// First and last emission time.
    #[must_use]
    pub fn span(&self) -> Option<(u64, u64)> {
        Some((self.points.first()?.0, self.points.last()?.0))
    }

    /// The phase being emitted at true instant `t`, interpolated between
    /// the readings around it; `None` unless both readings are timecode,
    /// at most `max_gap_ns` apart, and advance as time does (within half a
    /// frame: no wrap, fade, pause or jump between them).
    #[must_use]
    pub fn phase_at(&self, t: u64, max_gap_ns: u64) -> Option<f64> {
        let i = self.points.partition_point(|p| p.0 <= t);
        let (ta, va) = *self.points.get(i.checked_sub(1)?)?;
        let (tb, vb) = *self.points.get(i)?;
        if tb - ta > max_gap_ns {
            return None;
        }
        let (pa, pb) = (phase(va)?, phase(vb)?);
        let expected = (tb - ta) as f64 * FRAMES_PER_NS;
        let got = circular_diff(pb, pa);
        if (got - expected).abs() > 0.5 {
            return None;
        }
        Some(pa + got * (t - ta) as f64 / (tb - ta) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode_to_their_phase() {
        for f in [5u64, 100, 2_400, 4_795] {
            let p = phase(value(f)).expect("timecode");
            assert!((p - f as f64).abs() < 0.01, "{f}: {p}");
        }
        assert!(phase(0.0).is_none());
        assert!(phase(value(0)).is_none(), "too close to the wrap");
        assert!((circular_diff(10.0, 4_790.0) - 20.0).abs() < 1e-9);
        assert!((circular_diff(4_790.0, 10.0) + 20.0).abs() < 1e-9);
    }

    #[test]
    fn series_interpolates_and_rejects_discontinuities() {
        let npf = 1e9 / 48_000.0;
        let pts: Vec<(u64, f32)> = (0..200u64)
            .map(|k| ((k as f64 * 48.0 * npf) as u64 + 1_000, value(k * 48 + 10)))
            .collect();
        let s = Series::new(pts);
        let t = (10.5 * 48.0 * npf) as u64 + 1_000;
        let p = s.phase_at(t, 2_000_000).expect("inside");
        assert!((p - (10.5 * 48.0 + 10.0)).abs() < 0.05, "{p}");
        // Across the wrap (frame 4800, between k = 99 and 100) exact
        // samples still advance consistently, modulo the period.
        let t = (99.5 * 48.0 * npf) as u64 + 1_000;
        assert!(s.phase_at(t, 2_000_000).is_some());
        // A smeared reading (as a resampler makes at the wrap): rejected.
        let mut pts = s.points.clone();
        pts[100].1 = 0.5;
        let s = Series::new(pts);
        assert!(s.phase_at(t, 2_000_000).is_none());
        // A paused (silent) reading: rejected.
        let s = Series::new(vec![(0, 0.5), (1_000_000, 0.0)]);
        assert!(s.phase_at(500_000, 2_000_000).is_none());
    }
}
