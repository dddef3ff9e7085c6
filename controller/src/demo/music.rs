//! The demo's song, synthesized at start so the repository carries no audio
//! files and the demo needs no download: four stems (drums, bass, chords,
//! lead) of one short piece in A minor at 110 BPM, over the progression
//! Am–F–C–G (i–VI–III–VII).
//!
//! Everything here is pure: [`render`] turns a [`Song`] and a [`Stem`] into
//! interleaved stereo samples, the same ones for the same seed on every
//! machine (a seeded xorshift, no clock, no OS randomness). Only
//! [`write_track`] touches the file system.
//!
//! Invariants a change must keep: every stem sounds from its first 20 ms
//! (the demo test aligns a node's recording with its stem from there), its
//! peak is exactly [`PEAK`] (so nothing clips, even summed by the node's
//! `all` mix-down, whose sink clamps), and every stem is as long as the
//! song.

use std::f32::consts::{FRAC_PI_4, TAU};
use std::path::Path;

/// Sample rate of the stems (the node's timeline rate).
pub const RATE: u32 = 48_000;

/// Peak amplitude of every stem after normalisation (−1.9 dBFS).
pub const PEAK: f32 = 0.8;

/// The song's title, as the mixer shows it.
pub const TITLE: &str = "Autoharmonize demo: A minor, 110 BPM";

/// The seed of the demo's song; any other gives another lead melody and
/// other drum details over the same chords.
pub const DEFAULT_SEED: u64 = 0x00A4_0110;

/// One part of the song; each speaker of the demo plays one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stem {
    /// Kick, snare, hi-hats and a crash every eight bars.
    Drums,
    /// Filtered saw with a sine sub, on the chords' roots.
    Bass,
    /// Detuned saw pads, pumping in eighths.
    Chords,
    /// A melody on the chords' tones, with an echo on the other side.
    Lead,
}

impl Stem {
    /// The stems in channel order (`track.toml` order).
    pub const ALL: [Stem; 4] = [Stem::Drums, Stem::Bass, Stem::Chords, Stem::Lead];

    /// The stem's name: its file name without `.wav`, and what the mixer shows.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Stem::Drums => "drums",
            Stem::Bass => "bass",
            Stem::Chords => "chords",
            Stem::Lead => "lead",
        }
    }
}

/// What to synthesize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Song {
    /// Length in seconds.
    pub seconds: u32,
    /// Tempo in beats per minute.
    pub bpm: u32,
    /// Seed of every random choice (melody, drum details).
    pub seed: u64,
}

impl Song {
    /// The demo's song, `seconds` long.
    #[must_use]
    pub fn new(seconds: u32) -> Song {
        Song {
            seconds,
            bpm: 110,
            seed: DEFAULT_SEED,
        }
    }

    /// Length in frames.
    #[must_use]
    pub fn frames(&self) -> usize {
        self.seconds as usize * RATE as usize
    }

    /// Frames per sixteenth note (the grid every part is placed on).
    fn step(&self) -> f64 {
        f64::from(RATE) * 60.0 / (f64::from(self.bpm.max(1)) * 4.0)
    }
}

/// Steps (sixteenths) per bar of 4/4.
const STEPS: usize = 16;

/// The progression, one chord a bar: root (MIDI, bass octave) and three
/// voiced tones (MIDI, around middle C) chosen so each moves little to the next.
const PROGRESSION: [(u8, [u8; 3]); 4] = [
    (33, [57, 60, 64]), // Am: A1 | A3 C4 E4
    (29, [57, 60, 65]), // F:  F1 | A3 C4 F4
    (36, [55, 60, 64]), // C:  C2 | G3 C4 E4
    (31, [55, 59, 62]), // G:  G1 | G3 B3 D4
];

fn hz(midi: u8) -> f32 {
    440.0 * 2f32.powf((f32::from(midi) - 69.0) / 12.0)
}

/// xorshift64*: small, fast and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        // Never zero (xorshift's fixed point), and each part its own stream.
        Rng((seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-1, 1).
    fn noise(&mut self) -> f32 {
        self.unit() * 2.0 - 1.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One-pole low-pass; `high` gives the complementary high-pass.
struct OnePole {
    a: f32,
    y: f32,
}

impl OnePole {
    fn new(cutoff_hz: f32) -> OnePole {
        let mut f = OnePole { a: 0.0, y: 0.0 };
        f.set(cutoff_hz);
        f
    }

    fn set(&mut self, cutoff_hz: f32) {
        self.a = 1.0 - (-TAU * cutoff_hz / RATE as f32).exp();
    }

    fn low(&mut self, x: f32) -> f32 {
        self.y += self.a * (x - self.y);
        self.y
    }

    fn high(&mut self, x: f32) -> f32 {
        x - self.low(x)
    }
}

/// A naive sawtooth in [-1, 1] from a phase in [0, 1).
fn saw(phase: f32) -> f32 {
    2.0 * phase - 1.0
}

fn triangle(phase: f32) -> f32 {
    1.0 - 4.0 * (phase - 0.5).abs()
}

/// An exponential decay from 1 with time constant `tau` frames, one
/// multiplication a frame (an `exp` per frame made synthesis 3x slower).
struct Decay {
    v: f32,
    k: f32,
}

impl Decay {
    fn new(tau: f32) -> Decay {
        Decay {
            v: 1.0,
            k: (-1.0 / tau.max(1.0)).exp(),
        }
    }

    fn next(&mut self) -> f32 {
        let v = self.v;
        self.v *= self.k;
        v
    }
}

/// A note's loudness frame by frame: a linear attack, then an exponential
/// decay toward `sustain`, then a linear release over the last `release`
/// frames of `len`.
struct Envelope {
    i: usize,
    len: usize,
    attack: usize,
    sustain: f32,
    release: usize,
    decay: Decay,
}

impl Envelope {
    fn new(len: usize, attack: usize, decay_tau: f32, sustain: f32, release: usize) -> Envelope {
        Envelope {
            i: 0,
            len,
            attack,
            sustain,
            release,
            decay: Decay::new(decay_tau),
        }
    }

    fn next(&mut self) -> f32 {
        let i = self.i;
        self.i += 1;
        let a = if i < self.attack {
            i as f32 / self.attack as f32
        } else {
            self.sustain + (1.0 - self.sustain) * self.decay.next()
        };
        let left = self.len.saturating_sub(i);
        if left < self.release {
            a * left as f32 / self.release as f32
        } else {
            a
        }
    }
}

/// Two channels being mixed.
struct Stereo {
    l: Vec<f32>,
    r: Vec<f32>,
}

impl Stereo {
    fn new(frames: usize) -> Stereo {
        Stereo {
            l: vec![0.0; frames],
            r: vec![0.0; frames],
        }
    }

    /// Adds `len` samples of `voice` from frame `start`, placed at `pan`
    /// (−1 left … 1 right, constant power); frames past the end are dropped.
    fn add(&mut self, start: usize, len: usize, pan: f32, mut voice: impl FnMut(usize) -> f32) {
        let angle = (pan.clamp(-1.0, 1.0) + 1.0) * FRAC_PI_4;
        let (gl, gr) = (angle.cos(), angle.sin());
        let end = (start + len).min(self.l.len());
        for (i, frame) in (start..end).enumerate() {
            let s = voice(i);
            self.l[frame] += s * gl;
            self.r[frame] += s * gr;
        }
    }

    /// Normalised to [`PEAK`], faded out over the last second and
    /// interleaved.
    fn finish(self) -> Vec<f32> {
        let peak = self
            .l
            .iter()
            .chain(&self.r)
            .fold(0.0f32, |m, s| m.max(s.abs()));
        let scale = if peak > 0.0 { PEAK / peak } else { 0.0 };
        let n = self.l.len();
        let fade = (RATE as usize).min(n);
        let mut out = Vec::with_capacity(n * 2);
        for (i, (l, r)) in self.l.iter().zip(&self.r).enumerate() {
            let g = scale * ((n - i) as f32 / fade as f32).min(1.0);
            out.push(l * g);
            out.push(r * g);
        }
        out
    }
}

/// The song's grid: where bar `bar`, step `step` starts, in frames.
struct Grid {
    step: f64,
    bars: usize,
}

impl Grid {
    fn of(song: &Song) -> Grid {
        let step = song.step();
        let bars = (song.frames() as f64 / (step * STEPS as f64)).ceil() as usize;
        Grid { step, bars }
    }

    fn at(&self, bar: usize, step: f64) -> usize {
        ((bar as f64 * STEPS as f64 + step) * self.step).round() as usize
    }

    fn steps(&self, n: f64) -> usize {
        (n * self.step).round() as usize
    }
}

/// Renders one stem of `song`: interleaved stereo at [`RATE`],
/// `song.frames()` frames, peak [`PEAK`].
#[must_use]
pub fn render(song: &Song, stem: Stem) -> Vec<f32> {
    let mut out = Stereo::new(song.frames());
    let grid = Grid::of(song);
    match stem {
        Stem::Drums => drums(song, &grid, &mut out),
        Stem::Bass => bass(&grid, &mut out),
        Stem::Chords => chords(&grid, &mut out),
        Stem::Lead => lead(song, &grid, &mut out),
    }
    out.finish()
}

fn drums(song: &Song, grid: &Grid, out: &mut Stereo) {
    let mut rng = Rng::new(song.seed, 1);
    let ms = |m: f32| m * RATE as f32 / 1000.0;
    for bar in 0..grid.bars {
        // Kick on one and three, a pickup on bars 2 and 4 of each phrase.
        let mut kicks = vec![0.0, 8.0];
        if bar % 2 == 1 {
            kicks.push(10.0);
        }
        for &s in &kicks {
            let mut phase = 0.0f32;
            let (mut pitch, mut amp) = (Decay::new(ms(30.0)), Decay::new(ms(160.0)));
            out.add(grid.at(bar, s), grid.steps(4.0), 0.0, |i| {
                // Pitch falls from 150 Hz to 45 Hz: the thump.
                let f = 45.0 + 105.0 * pitch.next();
                phase = (phase + f / RATE as f32).fract();
                let click = if i < 48 {
                    0.3 * (1.0 - i as f32 / 48.0)
                } else {
                    0.0
                };
                (phase * TAU).sin() * amp.next() + click
            });
        }
        // Snare on two and four; a rising roll ends every fourth bar.
        let mut snares: Vec<(f64, f32)> = vec![(4.0, 0.8), (12.0, 0.8)];
        if bar % 4 == 3 {
            snares.extend([(13.0, 0.35), (14.0, 0.5), (15.0, 0.65)]);
        }
        for (s, vel) in snares {
            let mut hp = OnePole::new(1200.0);
            let mut phase = 0.0f32;
            let mut noise = Rng::new(song.seed, 100 + bar as u64 * 16 + s as u64);
            let (mut body, mut snap) = (Decay::new(ms(45.0)), Decay::new(ms(70.0)));
            out.add(grid.at(bar, s), grid.steps(3.0), 0.05, |_| {
                phase = (phase + 190.0 / RATE as f32).fract();
                let tone = (phase * TAU).sin() * body.next();
                let rattle = hp.high(noise.noise()) * snap.next();
                vel * (0.5 * tone + 0.8 * rattle)
            });
        }
        // Hats on the eighths (open on the last), ghost sixteenths at random.
        for s in 0..STEPS {
            let (vel, decay) = match s {
                14 => (0.35, 90.0),
                _ if s % 4 == 0 => (0.3, 18.0),
                _ if s % 2 == 0 => (0.22, 18.0),
                _ if rng.unit() < 0.35 => (0.1, 12.0),
                _ => continue,
            };
            let vel = vel * (0.85 + 0.3 * rng.unit());
            let mut hp = OnePole::new(7000.0);
            let mut noise = Rng::new(song.seed, 10_000 + bar as u64 * 16 + s as u64);
            let mut amp = Decay::new(ms(decay));
            out.add(grid.at(bar, s as f64), grid.steps(2.0), 0.35, |_| {
                vel * hp.high(noise.noise()) * amp.next()
            });
        }
        // A soft crash opens every eighth bar.
        if bar % 8 == 0 {
            let mut lp = OnePole::new(9000.0);
            let mut hp = OnePole::new(3000.0);
            let mut noise = Rng::new(song.seed, 1_000_000 + bar as u64);
            let mut amp = Decay::new(ms(700.0));
            out.add(grid.at(bar, 0.0), grid.steps(16.0), -0.4, |_| {
                0.25 * hp.high(lp.low(noise.noise())) * amp.next()
            });
        }
    }
}

fn bass(grid: &Grid, out: &mut Stereo) {
    // (step, length in steps, octave up): a syncopated eighths figure.
    const FIGURE: [(f64, f64, bool); 6] = [
        (0.0, 3.0, false),
        (3.0, 3.0, false),
        (6.0, 2.0, false),
        (8.0, 2.0, false),
        (10.0, 3.0, true),
        (14.0, 2.0, false),
    ];
    for bar in 0..grid.bars {
        let (root, _) = PROGRESSION[bar % PROGRESSION.len()];
        for (s, len, up) in FIGURE {
            let f = hz(root) * if up { 2.0 } else { 1.0 };
            let len = grid.steps(len) - grid.steps(0.25);
            let mut phase = 0.0f32;
            let mut sub = 0.0f32;
            let mut lp = OnePole::new(800.0);
            let mut closing = Decay::new(2400.0);
            let mut env = Envelope::new(len, 96, 6000.0, 0.7, 480);
            out.add(grid.at(bar, s), len, 0.0, |i| {
                phase = (phase + f / RATE as f32).fract();
                sub = (sub + hz(root) / RATE as f32).fract();
                // The filter closes after the attack: a plucked sound.
                let c = closing.next();
                if i % 16 == 0 {
                    lp.set(250.0 + 1200.0 * c);
                }
                env.next() * (0.6 * lp.low(saw(phase)) + 0.5 * (sub * TAU).sin())
            });
        }
    }
}

fn chords(grid: &Grid, out: &mut Stereo) {
    let release = grid.steps(2.0);
    for bar in 0..grid.bars {
        let (_, tones) = PROGRESSION[bar % PROGRESSION.len()];
        let len = grid.steps(STEPS as f64) + release;
        let beat = grid.steps(2.0) as f32;
        for (k, &tone) in tones.iter().enumerate() {
            // Two saws 8 cents apart, one on each side, and a soft triangle
            // an octave up in the middle.
            for (detune, pan) in [(-8.0f32, -0.6f32), (8.0, 0.6)] {
                let f = hz(tone) * 2f32.powf(detune / 1200.0);
                let mut phase = 0.37 * (k as f32 + 1.0) + detune.signum() * 0.1;
                let mut lp = OnePole::new(1800.0);
                let mut env = Envelope::new(len, 1900, 30_000.0, 0.8, release);
                out.add(grid.at(bar, 0.0), len, pan, |i| {
                    phase = (phase + f / RATE as f32).fract();
                    // Pumps in eighths: dips right after each eighth.
                    let pump = 0.65 + 0.35 * ((i as f32 % beat) / beat).min(1.0);
                    0.22 * env.next() * pump * lp.low(saw(phase))
                });
            }
            let f = hz(tone) * 2.0;
            let mut phase = 0.0f32;
            let mut env = Envelope::new(len, 1900, 30_000.0, 0.8, release);
            out.add(grid.at(bar, 0.0), len, 0.0, |_| {
                phase = (phase + f / RATE as f32).fract();
                0.08 * env.next() * triangle(phase)
            });
        }
    }
}

fn lead(song: &Song, grid: &Grid, out: &mut Stereo) {
    // Rhythms of one bar, in sixteenths; each sums to 16.
    const RHYTHMS: [&[u8]; 6] = [
        &[4, 4, 4, 4],
        &[2, 2, 4, 2, 2, 4],
        &[6, 2, 4, 4],
        &[3, 3, 2, 4, 4],
        &[8, 4, 4],
        &[2, 2, 2, 2, 4, 4],
    ];
    let mut rng = Rng::new(song.seed, 2);
    let mut dry = vec![0.0f32; out.l.len()];
    // Index into the current chord's tones over two octaves (0..6).
    let mut at = 3usize;
    for bar in 0..grid.bars {
        let (_, tones) = PROGRESSION[bar % PROGRESSION.len()];
        let pool: Vec<u8> = tones
            .iter()
            .map(|t| t + 12)
            .chain(tones.iter().map(|t| t + 24))
            .collect();
        // Phrases of four bars: the fourth bar answers with long notes.
        let rhythm = if bar % 4 == 3 {
            RHYTHMS[4]
        } else {
            RHYTHMS[rng.below(RHYTHMS.len())]
        };
        let mut s = 0.0;
        for (n, &dur) in rhythm.iter().enumerate() {
            let start = s;
            s += f64::from(dur);
            // A rest now and then, never on the song's first note.
            if (bar, n) != (0, 0) && rng.unit() < 0.12 {
                continue;
            }
            // Mostly steps to a neighbouring chord tone, sometimes a leap.
            at = match rng.below(6) {
                0 => rng.below(pool.len()),
                1 | 2 => at.saturating_sub(1),
                _ => (at + 1).min(pool.len() - 1),
            };
            let f = hz(pool[at]);
            let len = grid.steps(f64::from(dur)) - grid.steps(0.3);
            let from = grid.at(bar, start);
            let mut phase = 0.0f32;
            let mut lp = OnePole::new(3500.0);
            let mut env = Envelope::new(len, 400, 5000.0, 0.6, 2900);
            for (i, slot) in dry.iter_mut().skip(from).take(len).enumerate() {
                let t = i as f32 / RATE as f32;
                // Vibrato only after the note has settled.
                let vib = if t > 0.15 {
                    1.0 + 0.004 * (TAU * 5.5 * t).sin()
                } else {
                    1.0
                };
                phase = (phase + f * vib / RATE as f32).fract();
                let x = phase * TAU;
                // A hollow square-ish tone: odd harmonics.
                let tone = x.sin() + (3.0 * x).sin() / 3.0 + (5.0 * x).sin() / 5.0;
                *slot += 0.5 * env.next() * lp.low(tone);
            }
        }
    }
    // Dry slightly left, an echo three sixteenths later on the right.
    let delay = grid.steps(3.0);
    out.add(0, dry.len(), -0.3, |i| dry[i]);
    out.add(delay, dry.len(), 0.7, |i| 0.35 * dry[i]);
}

/// Why the track could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// A stem's WAV file could not be written.
    #[error("writing {}: {source}", path.display())]
    Wav {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: hound::Error,
    },
    /// The folder or `track.toml` could not be written.
    #[error("writing {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Writes `song` into the folder `dir` (created if needed) as a track the
/// node can open: `drums.wav`, `bass.wav`, `chords.wav`, `lead.wav` (16-bit
/// stereo at [`RATE`]) and a `track.toml` giving the title and the order.
///
/// # Errors
/// [`WriteError`] naming the file.
pub fn write_track(dir: &Path, song: &Song) -> Result<(), WriteError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| WriteError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    for stem in Stem::ALL {
        // One stem in memory at a time (46 MB for two minutes).
        let samples = render(song, stem);
        let path = dir.join(format!("{}.wav", stem.name()));
        write_wav(&path, &samples).map_err(|source| WriteError::Wav { path, source })?;
    }
    let names: Vec<String> = Stem::ALL
        .iter()
        .map(|s| format!("\"{}\"", s.name()))
        .collect();
    let manifest = format!("title = \"{TITLE}\"\nstems = [{}]\n", names.join(", "));
    let path = dir.join("track.toml");
    std::fs::write(&path, manifest).map_err(io(&path))
}

fn write_wav(path: &Path, samples: &[f32]) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    let len = u32::try_from(samples.len()).map_err(|_| hound::Error::TooWide)?;
    let mut fast = w.get_i16_writer(len);
    for &s in samples {
        // |s| ≤ PEAK < 1: no clamp needed, kept anyway for safety.
        fast.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16);
    }
    fast.flush()?;
    w.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    /// Normalised correlation of two signals of equal length.
    fn correlation(a: &[f32], b: &[f32]) -> f32 {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (rms(a) * rms(b) * a.len() as f32).max(f32::MIN_POSITIVE)
    }

    /// Energy at `f` Hz in the left channel of `x` (Goertzel).
    fn energy_at(x: &[f32], f: f32) -> f32 {
        let w = TAU * f / RATE as f32;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for s in x.iter().step_by(2) {
            let s0 = s + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - c * s1 * s2
    }

    fn stems(seconds: u32) -> Vec<Vec<f32>> {
        let song = Song::new(seconds);
        Stem::ALL.iter().map(|&s| render(&song, s)).collect()
    }

    #[test]
    fn stems_are_full_length_loud_enough_and_never_clip() {
        for (stem, x) in Stem::ALL.iter().zip(stems(12)) {
            assert_eq!(x.len(), 12 * RATE as usize * 2, "{stem:?}");
            let peak = x.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            assert!((peak - PEAK).abs() < 1e-3, "{stem:?}: peak {peak}");
            assert!(rms(&x) > 0.05, "{stem:?}: rms {}", rms(&x));
            // Sounding within the first 20 ms, and every second after.
            let first = x.iter().position(|s| s.abs() > 1e-3).unwrap_or(usize::MAX);
            assert!(first < 2 * 960, "{stem:?}: first sound at sample {first}");
            for second in x[..11 * 96_000].chunks(96_000) {
                assert!(rms(second) > 0.01, "{stem:?}: a silent second");
            }
        }
    }

    #[test]
    fn stems_differ_from_each_other() {
        let x = stems(8);
        for i in 0..x.len() {
            for j in i + 1..x.len() {
                let c = correlation(&x[i], &x[j]);
                assert!(c.abs() < 0.3, "stems {i} and {j} correlate at {c}");
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_song_and_another_seed_another_melody() {
        let song = Song::new(6);
        assert_eq!(render(&song, Stem::Lead), render(&song, Stem::Lead));
        assert_eq!(render(&song, Stem::Drums), render(&song, Stem::Drums));
        let other = Song { seed: 7, ..song };
        assert_ne!(render(&song, Stem::Lead), render(&other, Stem::Lead));
        // The chords do not depend on the seed.
        assert_eq!(render(&song, Stem::Chords), render(&other, Stem::Chords));
    }

    #[test]
    fn bass_and_chords_play_the_progression() {
        let song = Song::new(9);
        let bar = (song.step() * STEPS as f64) as usize * 2; // samples, interleaved
        let bass = render(&song, Stem::Bass);
        let chords = render(&song, Stem::Chords);
        // Bar 1 is A minor: A (55 Hz) in the bass rather than its
        // neighbours; A, C and E in the chords rather than B♭, C♯, F.
        let b = &bass[..bar];
        assert!(energy_at(b, 55.0) > 4.0 * energy_at(b, 58.27), "bass on A");
        assert!(
            energy_at(b, 55.0) > 4.0 * energy_at(b, 49.0),
            "bass on A, not G"
        );
        let c = &chords[bar / 8..bar];
        for (tone, neighbour) in [(220.0, 233.08), (261.63, 277.18), (329.63, 349.23)] {
            assert!(
                energy_at(c, tone) > 4.0 * energy_at(c, neighbour),
                "{tone} Hz in Am"
            );
        }
        // Bar 2 is F major: F in the bass (43.65 Hz), F (349 Hz) in the chords.
        let b = &bass[bar..2 * bar];
        assert!(energy_at(b, 43.65) > 4.0 * energy_at(b, 55.0), "bass on F");
        let c = &chords[bar + bar / 8..2 * bar];
        assert!(
            energy_at(c, 349.23) > 4.0 * energy_at(c, 329.63),
            "F, not E, in F"
        );
    }

    #[test]
    fn write_track_makes_a_folder_the_node_opens() {
        let dir = tempfile::tempdir().expect("temporary directory");
        write_track(dir.path(), &Song::new(2)).expect("written");
        let track = autoharmonize_node::audio::track::Track::open(dir.path()).expect("a track");
        assert_eq!(track.title(), TITLE);
        let names: Vec<&str> = track.stems().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["drums", "bass", "chords", "lead"]);
        let r = hound::WavReader::open(dir.path().join("lead.wav")).expect("a WAV");
        assert_eq!(r.spec().sample_rate, RATE);
        assert_eq!(r.spec().channels, 2);
        assert_eq!(r.len(), 2 * RATE * 2);
    }
}
