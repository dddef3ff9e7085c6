//! The synchronised renderer: decides, for every frame the DAC will play,
//! which sample of the stem belongs there, and makes it.
//!
//! It runs on the decoder thread as the engine's [`Producer`]. For each
//! block of device frames it asks three questions:
//!
//! 1. *When will these frames be heard?* The output thread's observations
//!    (frames written − device delay, at a local instant) feed an
//!    [`EmissionFit`]; the fitted line, plus the speaker's latency trim,
//!    gives each device frame's local emission time, and the mesh clock
//!    turns that into mesh time.
//! 2. *What should be playing then?* The [`Schedule`] of agreed transport
//!    states gives each channel's exact position and gain at that mesh
//!    instant, switching at each decision's `apply_at` to the frame.
//! 3. *Where is the voice now?* Each voice (one per stem played) knows the
//!    stem position of its next output frame. The resampler (rubato's
//!    polynomial `Async`) consumes exactly the stem frames the schedule
//!    advances over the block — which already contains the DAC's drift —
//!    less a share of the current error, bounded to ±[`MAX_CORRECTION_PPM`]
//!    so a correction is never audible as pitch. An error beyond
//!    [`RECUE_MS`] (a start, a join mid-song, a seek, a big clock step) is
//!    not slewed but re-cued: fade out, seek the decoder exactly, fade in.
//!
//! Transitions are shaped, not cut: the sound before a pause or seek fades
//! out over [`RAMP_MS`] ending exactly at `apply_at`; new sound fades in
//! from `apply_at`; a gain change ramps from `apply_at`. So every speaker
//! changes audibly at the same mesh instant.
//!
//! Nothing here is real-time: it runs ahead of the output thread by the
//! ring's length, which is why decisions must arrive before `apply_at`
//! minus that lead (the mesh's apply delay leaves about 100 ms; the ring
//! and device buffer take ~60 ms). A decision learnt late takes effect at
//! the first frame not yet rendered.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use autoharmonize_protocol::LocalTime;
use autoharmonize_protocol::clock::MeshClock;
use autoharmonize_protocol::content::TrackId;
use autoharmonize_protocol::playout::{Change, EmissionFit, Schedule, change_at, exact_position};
use autoharmonize_protocol::transport::{ChannelState, TIMELINE_RATE, Transport};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Async, FixedAsync, PolynomialDegree, Resampler as _};
use tracing::{info, warn};

use super::StreamSpec;
use super::decode::{AudioSource, DecodeError};
use super::engine::{Producer, Timing};

/// Length of every fade and gain ramp.
pub const RAMP_MS: u32 = 3;
/// A position error beyond this is re-cued rather than slewed.
pub const RECUE_MS: u32 = 5;
/// Largest speed change used to correct a position error (0.2 %: 3.5
/// cents of pitch, for a second or two at most).
pub const MAX_CORRECTION_PPM: f64 = 2_000.0;
/// Time over which a position error is corrected (the loop's time constant).
const CORRECTION_TAU_S: f64 = 0.5;
/// Observations in the emission fit's window (~2.7 s at 256-frame periods).
const FIT_WINDOW: usize = 512;
/// Largest block rendered at once; the engine's chunk must not exceed it.
pub const MAX_BLOCK: usize = 1024;

/// Which of a stem's channels a speaker plays (a per-speaker setting).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelMap {
    /// Left to left, right to right (a mono stem to both).
    #[default]
    Stereo,
    /// The stem's left channel on every output channel.
    Left,
    /// The stem's right channel on every output channel.
    Right,
    /// The mean of the stem's channels on every output channel.
    Mono,
}

impl ChannelMap {
    /// Parses `stereo`, `left`, `right` or `mono`.
    ///
    /// # Errors
    /// The accepted names, for a config error.
    pub fn parse(s: &str) -> Result<ChannelMap, String> {
        match s {
            "stereo" => Ok(ChannelMap::Stereo),
            "left" => Ok(ChannelMap::Left),
            "right" => Ok(ChannelMap::Right),
            "mono" => Ok(ChannelMap::Mono),
            other => Err(format!(
                "'{other}' is not a channel map (stereo, left, right or mono)"
            )),
        }
    }

    /// Adds the frames of `src` (`src_ch` channels each) times `gain` into
    /// `dst` (`dst_ch` channels each): [`ChannelMap::mix`] for a block, with
    /// a tight loop for the common stereo-to-stereo case.
    fn mix_block(self, src: &[f32], src_ch: usize, dst: &mut [f32], dst_ch: usize, gain: f32) {
        if self == ChannelMap::Stereo && src_ch == dst_ch {
            for (d, s) in dst.iter_mut().zip(src) {
                *d += s * gain;
            }
            return;
        }
        for (frame, d) in src.chunks_exact(src_ch).zip(dst.chunks_exact_mut(dst_ch)) {
            self.mix(frame, d, gain);
        }
    }

    /// Adds frame `src` (`src.len()` channels) times `gain` into `dst`.
    fn mix(self, src: &[f32], dst: &mut [f32], gain: f32) {
        let last = src.len().saturating_sub(1);
        let pick = |c: usize| src[c.min(last)];
        match self {
            ChannelMap::Stereo => {
                for (c, d) in dst.iter_mut().enumerate() {
                    // A mono stem reaches every channel; a wider stem's
                    // extra channels are dropped.
                    *d += pick(c) * gain;
                }
            }
            ChannelMap::Left | ChannelMap::Right | ChannelMap::Mono => {
                let v = match self {
                    ChannelMap::Left => src[0],
                    ChannelMap::Right => pick(1),
                    _ => src.iter().sum::<f32>() / src.len() as f32,
                };
                for d in dst.iter_mut() {
                    *d += v * gain;
                }
            }
        }
    }
}

/// A volume in percent as an amplitude: a cubic curve (a slider's middle
/// sounds like half as loud, not barely quieter); 100 is exactly 1.
#[must_use]
pub fn amplitude(percent: u8) -> f32 {
    let x = f32::from(percent.min(100)) / 100.0;
    x * x * x
}

/// What the mesh loop tells the renderer: the agreed states and the clock.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// The agreed transport states and when each holds.
    pub schedule: Schedule,
    /// Local to mesh time, once the node knows it.
    pub clock: Option<MeshClock>,
}

/// The [`Timeline`] shared between the mesh loop (writer) and the renderer
/// (reader, on the decoder thread). A version counter spares the renderer
/// the lock when nothing changed, and the renderer never waits for it.
#[derive(Debug, Default)]
pub struct SharedTimeline {
    inner: Mutex<Timeline>,
    version: AtomicU64,
}

impl SharedTimeline {
    /// Changes the timeline.
    pub fn update(&self, f: impl FnOnce(&mut Timeline)) {
        let mut t = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut t);
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Copies the timeline into `local` if it changed since version `seen`
    /// (and updates `seen`). Never waits: the
    /// renderer runs at real-time priority and the writer does not, so
    /// waiting for the lock could stall it for as long as the busiest
    /// process keeps the writer off the CPU. If the writer holds the lock,
    /// the renderer keeps its copy and looks again next block.
    fn refresh(&self, local: &mut Timeline, seen: &mut u64) {
        let v = self.version.load(Ordering::Acquire);
        if v == *seen {
            return;
        }
        let t = match self.inner.try_lock() {
            Ok(t) => t,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        *seen = self.version.load(Ordering::Acquire);
        // Copied into the renderer's own buffers: no allocation on the
        // real-time thread once they have grown to the schedule's size.
        local.clock = t.clock;
        local.schedule.clone_from(&t.schedule);
    }
}

/// What the renderer reports (atomics; read by the status endpoint).
#[derive(Debug, Default)]
pub struct RenderStats {
    /// Position error of the first voice at the last block, in ns of
    /// playback (+ = ahead), as the renderer itself measures it.
    pub error_ns: AtomicI64,
    /// Re-cues (starts, seeks, corrections too large to slew).
    pub recues: AtomicU64,
    /// Correction applied at the last block, in ppb of speed.
    pub correction_ppb: AtomicI64,
    /// The DAC's rate against the local clock, in ppb (+ = fast).
    pub dac_rate_ppb: AtomicI64,
    /// Blocks rendered as silence because timing was not known yet.
    pub untimed_blocks: AtomicU64,
    /// Frames the renderer had to play later than scheduled (decisions
    /// learnt after the frames they apply to were rendered).
    pub late_changes: AtomicU64,
}

/// One stem being played: a decoder, a resampler and where it is.
pub struct Voice {
    channel: usize,
    source: Box<dyn AudioSource>,
    src_ch: usize,
    /// File frames per timeline frame.
    scale: f64,
    /// Output frames per input frame at nominal speed.
    nominal_ratio: f64,
    resampler: Async<f32>,
    /// The resampler's delay, in input frames (measured at start).
    delay_in: f64,
    input: Vec<f32>,
    output: Vec<f32>,
    /// File position (fractional frames) of the next output frame.
    pos: f64,
    cued: bool,
    /// Fading out before a re-cue or after a late stop.
    fading: bool,
    /// Fade envelope, 0–1.
    env: f32,
    /// Current gain (amplitude), ramping towards the state's.
    gain: f32,
    /// The state it followed at its last block.
    following: Option<ChannelState>,
    ended: bool,
}

impl std::fmt::Debug for Voice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Voice")
            .field("channel", &self.channel)
            .field("pos", &self.pos)
            .field("cued", &self.cued)
            .finish_non_exhaustive()
    }
}

impl Voice {
    /// A voice playing transport channel `channel` from `source`, resampled
    /// to `device_rate`.
    ///
    /// # Errors
    /// The resampler refuses the rates (beyond its range).
    pub fn new(
        channel: usize,
        source: Box<dyn AudioSource>,
        device_rate: u32,
    ) -> Result<Voice, String> {
        let spec = source.spec();
        let src_ch = usize::from(spec.channels.max(1));
        let nominal_ratio = f64::from(device_rate) / f64::from(spec.rate.max(1));
        let make = || {
            Async::<f32>::new_poly(
                nominal_ratio,
                1.05,
                PolynomialDegree::Cubic,
                MAX_BLOCK,
                src_ch,
                FixedAsync::Output,
            )
            .map_err(|e| format!("resampler for {} Hz → {device_rate} Hz: {e}", spec.rate))
        };
        let resampler = make()?;
        let delay_in = measure_delay(make()?, nominal_ratio);
        Ok(Voice {
            channel,
            source,
            src_ch,
            scale: f64::from(spec.rate) / TIMELINE_RATE as f64,
            nominal_ratio,
            input: vec![0.0; resampler.input_frames_max() * src_ch],
            output: vec![0.0; MAX_BLOCK * src_ch],
            resampler,
            delay_in,
            pos: 0.0,
            cued: false,
            fading: false,
            env: 0.0,
            gain: 0.0,
            following: None,
            ended: false,
        })
    }

    /// Seeks so that the next output frame is file frame `target`.
    fn cue(&mut self, target: f64) -> Result<(), DecodeError> {
        let start = (target + self.delay_in).max(0.0).floor();
        self.source.seek(start as u64)?;
        self.resampler.reset();
        self.pos = start - self.delay_in;
        self.cued = true;
        self.fading = false;
        self.env = 0.0;
        self.ended = false;
        Ok(())
    }

    /// Resamples `len` frames, consuming `consume` input frames, into
    /// `self.output`.
    fn resample(&mut self, len: usize, consume: f64) -> Result<(), DecodeError> {
        let ratio =
            (len as f64 / consume).clamp(self.nominal_ratio / 1.04, self.nominal_ratio * 1.04);
        // Both calls fail only for values outside what was checked above.
        let _ = rubato::Adjustable::set_resample_ratio(&mut self.resampler, ratio, false);
        let _ = rubato::Resizable::set_chunk_size(&mut self.resampler, len);
        let need = self.resampler.input_frames_next();
        let buf = &mut self.input[..need * self.src_ch];
        let got = if self.ended {
            0
        } else {
            self.source.read(buf)?
        };
        if got < need {
            self.ended = true;
            buf[got * self.src_ch..].fill(0.0);
        }
        let inp = InterleavedSlice::new(&self.input[..need * self.src_ch], self.src_ch, need);
        let out =
            InterleavedSlice::new_mut(&mut self.output[..len * self.src_ch], self.src_ch, len);
        if let (Ok(inp), Ok(mut out)) = (inp, out)
            && self
                .resampler
                .process_into_buffer(&inp, &mut out, None)
                .is_ok()
        {
            self.pos += len as f64 / ratio;
        } else {
            // Cannot happen with the sizes above; stay silent rather than
            // play garbage, and re-cue.
            self.output[..len * self.src_ch].fill(0.0);
            self.cued = false;
        }
        Ok(())
    }
}

/// The resampler's delay in input frames, measured: a ramp goes in, and the
/// output's lag behind it comes out.
fn measure_delay(mut r: Async<f32>, ratio: f64) -> f64 {
    let ch = r.nbr_channels();
    let mut fed = 0usize;
    let mut out = vec![0.0f32; MAX_BLOCK * ch];
    let mut produced = 0usize;
    let mut last = (0usize, 0.0f32);
    for _ in 0..4 {
        let need = r.input_frames_next();
        let input: Vec<f32> = (0..need)
            .flat_map(|i| std::iter::repeat_n((fed + i) as f32, ch))
            .collect();
        let (Ok(inp), Ok(mut o)) = (
            InterleavedSlice::new(&input[..], ch, need),
            InterleavedSlice::new_mut(&mut out[..], ch, MAX_BLOCK),
        ) else {
            return 0.0;
        };
        let Ok((nin, nout)) = r.process_into_buffer(&inp, &mut o, None) else {
            return 0.0;
        };
        fed += nin;
        produced += nout;
        last = (produced - 1, out[(nout - 1) * ch]);
    }
    // Output frame k carries input position k / ratio − delay.
    last.0 as f64 / ratio - f64::from(last.1)
}

/// Where a renderer gets the voices of a track when the room loads another
/// one: the node's library (see `audio::player`). Called on the decoder
/// thread, between blocks; it may open files (a track change is rare, and
/// the new track starts paused, so a slow open costs no audible frame).
pub trait TrackVoices: Send {
    /// The voices (one per stem this speaker plays) of `track`, or of the
    /// speaker's default track for `None` (a room that never loaded one).
    /// Never empty: a track this speaker cannot play gives a silent voice.
    fn voices(&mut self, track: Option<TrackId>) -> Vec<Voice>;
}

/// The synchronised renderer (see the module doc).
pub struct Renderer {
    timeline: Arc<SharedTimeline>,
    seen: u64,
    local: Timeline,
    fit: EmissionFit,
    device_rate: u32,
    out_ch: usize,
    latency_offset_ns: f64,
    map: ChannelMap,
    /// Amplitude applied to the sum of the voices (1/√n for a mix-down).
    mix_gain: f32,
    voices: Vec<Voice>,
    ramp_frames: f32,
    recue_frames: f64,
    last_xruns: u64,
    /// Whether the device's current run has been seen emitting.
    run: DeviceRun,
    stats: Arc<RenderStats>,
    timed: bool,
    /// Silent after an xrun until the device's timing is re-learnt: an
    /// expected gap, not worth a warning.
    restarting: bool,
    /// Voices for other tracks, and the track the current voices play.
    tracks: Option<(Box<dyn TrackVoices>, Option<TrackId>)>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("voices", &self.voices)
            .field("device_rate", &self.device_rate)
            .finish_non_exhaustive()
    }
}

/// How a [`Renderer`] plays.
#[derive(Clone, Copy, Debug)]
pub struct RenderConfig {
    /// The device's shape.
    pub device: StreamSpec,
    /// Extra delay after the DAC (amplifier, HDMI), in ns: the renderer
    /// plays that much earlier.
    pub latency_offset_ns: i64,
    /// Which stem channels go out.
    pub map: ChannelMap,
}

impl Renderer {
    /// A renderer playing `voices` (one per stem; their sum is scaled by
    /// 1/√n) on a device of `config.device`, following `timeline`.
    #[must_use]
    pub fn new(
        voices: Vec<Voice>,
        config: RenderConfig,
        timeline: Arc<SharedTimeline>,
        stats: Arc<RenderStats>,
    ) -> Renderer {
        let rate = config.device.rate.max(1);
        let n = voices.len().max(1) as f32;
        Renderer {
            timeline,
            seen: u64::MAX,
            local: Timeline::default(),
            fit: EmissionFit::new(rate, FIT_WINDOW),
            device_rate: rate,
            out_ch: usize::from(config.device.channels.max(1)),
            latency_offset_ns: config.latency_offset_ns as f64,
            map: config.map,
            mix_gain: 1.0 / n.sqrt(),
            voices,
            ramp_frames: (rate * RAMP_MS / 1000) as f32,
            recue_frames: f64::from(rate * RECUE_MS / 1000),
            last_xruns: 0,
            run: DeviceRun::Waiting(None),
            stats,
            timed: false,
            restarting: false,
            tracks: None,
        }
    }

    /// Lets the renderer follow track loads: `voices` (the ones given to
    /// [`Renderer::new`]) play `current`; when the agreed state names
    /// another track, `source` gives the voices of that one.
    #[must_use]
    pub fn with_tracks(mut self, source: Box<dyn TrackVoices>, current: Option<TrackId>) -> Self {
        self.tracks = Some((source, current));
        self
    }

    /// Swaps the voices if the state in force names another track. The new
    /// track's channels start paused at frame 0, so the new voices start
    /// silent and cue when the room plays.
    fn follow_track(&mut self, state: &Transport) {
        let Some((source, current)) = &mut self.tracks else {
            return;
        };
        let want = state.track.map(|t| t.id);
        if want == *current {
            return;
        }
        info!(from = ?current, to = ?want, "track changed: switching voices");
        self.voices = source.voices(want);
        *current = want;
        self.mix_gain = 1.0 / (self.voices.len().max(1) as f32).sqrt();
    }

    /// Mesh time (ns) at which device frame `frame` is heard, if known:
    /// once the DAC's rate has been measured (before that the speaker stays
    /// silent rather than play from a guessed rate and converge audibly).
    fn mesh_time_of(&self, frame: u64) -> Option<f64> {
        if !self.fit.rate_known() {
            return None;
        }
        let local = self.fit.local_time_of(frame)? + self.latency_offset_ns;
        let clock = self.local.clock?;
        let whole = local.max(0.0).floor();
        let mesh = clock.to_mesh(LocalTime(whole as u64)).0 as f64;
        Some(mesh + (local - whole) * (1.0 + clock.rate_ppb() as f64 * 1e-9))
    }

    fn render_block(&mut self, out: &mut [f32], frame: u64, len: usize) -> Result<(), DecodeError> {
        let (Some(t0), Some(t1)) = (
            self.mesh_time_of(frame),
            self.mesh_time_of(frame + len as u64),
        ) else {
            return Ok(());
        };
        let ns_per_frame = (t1 - t0) / len as f64;
        let Some(state) = self.local.schedule.at(t0).cloned() else {
            return Ok(());
        };
        self.follow_track(&state);
        let next = self
            .local
            .schedule
            .next_change_after(t0)
            .and_then(|tc| Some((tc, self.local.schedule.at(tc)?.clone())));
        let ctx = BlockContext {
            t0,
            t1,
            ns_per_frame,
            ramp: self.ramp_frames,
            recue: self.recue_frames,
            map: self.map,
            mix_gain: self.mix_gain,
            out_ch: self.out_ch,
            device_rate: f64::from(self.device_rate),
        };
        for (i, voice) in self.voices.iter_mut().enumerate() {
            let report = render_voice(voice, &ctx, &state, next.as_ref(), out, len)?;
            if i == 0 {
                if let Some(err) = report.error_frames {
                    let ns = err / voice.scale * 1e9 / TIMELINE_RATE as f64;
                    self.stats.error_ns.store(ns as i64, Ordering::Relaxed);
                }
                self.stats
                    .correction_ppb
                    .store((report.correction * 1e9) as i64, Ordering::Relaxed);
            }
            if report.recued {
                self.stats.recues.fetch_add(1, Ordering::Relaxed);
            }
            if report.late {
                self.stats.late_changes.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// The device's run, as the observations show it: `Waiting(None)` until
/// the first observation of a run, `Waiting(Some(f))` while frame `f` stays
/// the next to go out (a device not started yet: its frames are queued, not
/// emitted, so such an observation would place the line early — and the fit
/// trusts early observations most), `Running` once frames go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeviceRun {
    Waiting(Option<u64>),
    Running,
}

/// What every voice of a block shares.
struct BlockContext {
    t0: f64,
    t1: f64,
    ns_per_frame: f64,
    ramp: f32,
    recue: f64,
    map: ChannelMap,
    mix_gain: f32,
    out_ch: usize,
    device_rate: f64,
}

#[derive(Default)]
struct VoiceReport {
    error_frames: Option<f64>,
    correction: f64,
    recued: bool,
    late: bool,
}

/// Renders one voice's share of a block (`len` frames, mesh instants
/// `ctx.t0..ctx.t1`, in which `state` holds throughout) into `out`.
fn render_voice(
    v: &mut Voice,
    ctx: &BlockContext,
    state: &Transport,
    next: Option<&(f64, Transport)>,
    out: &mut [f32],
    len: usize,
) -> Result<VoiceReport, DecodeError> {
    let mut report = VoiceReport::default();
    let Some(ch) = state.channel(v.channel).copied() else {
        v.cued = false;
        v.env = 0.0;
        return Ok(report);
    };
    // Did the state this voice follows just change under it?
    let mut forced = false;
    if let Some(prev) = v.following
        && prev != ch
    {
        match change_at(&prev, &ch, ctx.t0) {
            Change::Jumps => forced = true,
            Change::Stops if v.env > 0.0 && v.cued => {
                // The fade before the stop did not happen: learnt late.
                report.late = true;
                v.fading = true;
            }
            _ => {}
        }
        if forced && v.env > 0.0 && v.cued {
            report.late = true;
        }
    }
    v.following = Some(ch);
    let target_gain = amplitude(ch.gain.0);
    // Frames until the next change that ends this sound, if within reach.
    // A channel the next state lacks (a track with fewer stems was
    // loaded) ends too.
    let ends_in = next.and_then(|(tc, after)| {
        let ends = after
            .channel(v.channel)
            .is_none_or(|a| matches!(change_at(&ch, a, *tc), Change::Stops | Change::Jumps));
        ends.then(|| ((tc - ctx.t0) / ctx.ns_per_frame) as f32)
    });

    let fading_out = v.cued && v.fading;
    if !ch.playing && !fading_out {
        v.cued = false;
        v.env = 0.0;
        v.gain = target_gain;
        return Ok(report);
    }
    let mut consume;
    if ch.playing {
        let p0 = exact_position(&ch, ctx.t0) * v.scale;
        let p1 = exact_position(&ch, ctx.t1) * v.scale;
        if p1 <= 0.0 {
            v.cued = false;
            return Ok(report);
        }
        let err = v.pos - p0;
        let needs_cue = !v.cued || forced || err.abs() > ctx.recue * v.scale;
        if needs_cue && !v.fading {
            if v.cued && v.env > 0.0 {
                // Audible: fade out what plays before jumping.
                v.fading = true;
            } else {
                v.cue(p0.max(0.0))?;
                report.recued = true;
                v.gain = target_gain;
            }
        }
        let span = p1 - p0;
        if v.fading {
            consume = span;
        } else {
            let err = v.pos - p0;
            let k = (len as f64 / (CORRECTION_TAU_S * ctx.device_rate)).min(1.0);
            let limit = span * MAX_CORRECTION_PPM * 1e-6;
            let correction = (err * k).clamp(-limit, limit);
            consume = span - correction;
            report.error_frames = Some(err);
            report.correction = -correction / span;
        }
    } else {
        // Fading out after a late stop: keep the sound going meanwhile.
        consume = len as f64 / v.nominal_ratio;
    }
    consume = consume.max(len as f64 / v.nominal_ratio / 1.04);
    v.resample(len, consume)?;

    let ramp_step = 1.0 / ctx.ramp;
    let src = &v.output[..len * v.src_ch];
    let steady = !v.fading
        && v.env == 1.0
        && v.gain == target_gain
        && ends_in.is_none_or(|d| d >= len as f32 + ctx.ramp);
    if steady {
        // Nothing ramps in this block (the usual case): one gain for all.
        let g = v.gain * ctx.mix_gain;
        if g != 0.0 {
            ctx.map.mix_block(src, v.src_ch, out, ctx.out_ch, g);
        }
        return Ok(report);
    }
    for (i, (frame, dst)) in src
        .chunks_exact(v.src_ch)
        .zip(out.chunks_exact_mut(ctx.out_ch))
        .enumerate()
    {
        if v.fading {
            v.env = (v.env - ramp_step).max(0.0);
        } else {
            v.env = (v.env + ramp_step).min(1.0);
        }
        if let Some(d) = ends_in {
            // The fade before a stop or jump: the envelope itself comes
            // down, so at the change the sound is already silent.
            // The last frame before the change is silent.
            v.env = v.env.min(((d - i as f32 - 1.0) / ctx.ramp).clamp(0.0, 1.0));
        }
        let env = v.env;
        if v.gain != target_gain {
            let d = target_gain - v.gain;
            v.gain = if d.abs() <= ramp_step {
                target_gain
            } else {
                v.gain + ramp_step.copysign(d)
            };
        }
        let g = env * v.gain * ctx.mix_gain;
        if g != 0.0 {
            ctx.map.mix(frame, dst, g);
        }
    }
    if v.fading && v.env == 0.0 {
        // Silent now: the next block re-cues (or stays stopped).
        v.fading = false;
        v.cued = false;
    }
    Ok(report)
}

impl Producer for Renderer {
    fn produce(&mut self, out: &mut [f32], device_frame: u64) -> Result<usize, DecodeError> {
        self.timeline.refresh(&mut self.local, &mut self.seen);
        let n = (out.len() / self.out_ch).min(MAX_BLOCK);
        let out = &mut out[..n * self.out_ch];
        out.fill(0.0);
        let timed = self.mesh_time_of(device_frame).is_some() && !self.local.schedule.is_empty();
        if timed != self.timed {
            self.timed = timed;
            if self.restarting {
                self.restarting = !timed;
            } else if timed {
                info!(
                    dac_ppm = format_args!("{:+.1}", self.fit.rate_error_ppm()),
                    "audio timing known: playing in sync"
                );
            } else {
                warn!("audio timing lost: playing silence until it is known again");
            }
        }
        if !timed {
            self.stats.untimed_blocks.fetch_add(1, Ordering::Relaxed);
            for v in &mut self.voices {
                v.cued = false;
                v.env = 0.0;
            }
            return Ok(n);
        }
        // Split the block at every change of state, so each one lands on
        // its exact frame.
        let mut done = 0usize;
        while done < n {
            let frame = device_frame + done as u64;
            let mut len = n - done;
            if let (Some(t), Some(npf)) = (self.mesh_time_of(frame), self.mesh_ns_per_frame())
                && let Some(tc) = self.local.schedule.next_change_after(t)
            {
                let until = ((tc - t) / npf).ceil().max(1.0);
                if until < len as f64 {
                    len = until as usize;
                }
            }
            self.render_block(
                &mut out[done * self.out_ch..(done + len) * self.out_ch],
                frame,
                len,
            )?;
            done += len;
        }
        if let Some(t) = self.mesh_time_of(device_frame) {
            // States more than a second old cannot be needed again.
            self.local.schedule.forget_before(t - 1e9);
        }
        self.stats
            .dac_rate_ppb
            .store((self.fit.rate_error_ppm() * 1e3) as i64, Ordering::Relaxed);
        Ok(n)
    }

    fn observe(&mut self, t: Timing) {
        if t.xruns != self.last_xruns {
            info!(
                xruns = t.xruns,
                "audio device ran dry (xrun: the output thread was late); \
                 silent until it runs again, then back on the room's frame"
            );
            self.last_xruns = t.xruns;
            self.fit.reset();
            self.run = DeviceRun::Waiting(None);
            self.restarting = true;
            // What played before was cut by the xrun: come back with a
            // fade-in at the right place, not a fade-out of the wrong one.
            for v in &mut self.voices {
                v.cued = false;
                v.fading = false;
                v.env = 0.0;
            }
        }
        if let Some(at_dac) = t
            .frames_written
            .checked_sub(u64::try_from(t.delay).unwrap_or(0))
            && t.delay >= 0
        {
            match self.run {
                DeviceRun::Running => {}
                DeviceRun::Waiting(Some(f)) if at_dac > f => self.run = DeviceRun::Running,
                DeviceRun::Waiting(_) => {
                    self.run = DeviceRun::Waiting(Some(at_dac));
                    return;
                }
            }
            // Frame `at_dac` is the next to go out: on average half a
            // frame after the instant it was observed.
            let half = self.fit.ns_per_frame() / 2.0;
            self.fit
                .observe(at_dac, t.at_ns.saturating_add(half as u64));
        }
    }

    fn skipped_packets(&self) -> u64 {
        self.voices.iter().map(|v| v.source.skipped_packets()).sum()
    }
}

impl Renderer {
    fn mesh_ns_per_frame(&self) -> Option<f64> {
        let clock = self.local.clock?;
        Some(self.fit.ns_per_frame() * (1.0 + clock.rate_ppb() as f64 * 1e-9))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_maps() {
        let st = [0.25f32, -0.5];
        let mut d = [0.0f32; 2];
        ChannelMap::Stereo.mix(&st, &mut d, 1.0);
        assert_eq!(d, [0.25, -0.5]);
        let mut d = [0.0f32; 2];
        ChannelMap::Left.mix(&st, &mut d, 2.0);
        assert_eq!(d, [0.5, 0.5]);
        let mut d = [0.0f32; 2];
        ChannelMap::Right.mix(&st, &mut d, 1.0);
        assert_eq!(d, [-0.5, -0.5]);
        let mut d = [0.0f32; 2];
        ChannelMap::Mono.mix(&st, &mut d, 1.0);
        assert_eq!(d, [-0.125, -0.125]);
        let mut d = [0.0f32; 2];
        ChannelMap::Stereo.mix(&[0.5], &mut d, 1.0);
        assert_eq!(d, [0.5, 0.5]);
        // A block mixes as its frames would, one by one.
        for map in [ChannelMap::Stereo, ChannelMap::Mono, ChannelMap::Right] {
            for src_ch in [1usize, 2] {
                let src: Vec<f32> = (0..8 * src_ch).map(|i| i as f32 * 0.01).collect();
                let mut block = vec![0.1f32; 16];
                map.mix_block(&src, src_ch, &mut block, 2, 0.5);
                let mut frames = vec![0.1f32; 16];
                for (f, d) in src.chunks_exact(src_ch).zip(frames.chunks_exact_mut(2)) {
                    map.mix(f, d, 0.5);
                }
                assert_eq!(block, frames, "{map:?} from {src_ch} channels");
            }
        }
        assert_eq!(ChannelMap::parse("mono"), Ok(ChannelMap::Mono));
        assert!(ChannelMap::parse("both").is_err());
    }

    #[test]
    fn amplitude_curve() {
        assert_eq!(amplitude(100), 1.0);
        assert_eq!(amplitude(0), 0.0);
        assert_eq!(amplitude(250), 1.0);
        assert!((amplitude(50) - 0.125).abs() < 1e-6);
    }

    #[test]
    fn resampler_delay_is_measured() {
        let make = || {
            Async::<f32>::new_poly(
                1.0,
                1.05,
                PolynomialDegree::Cubic,
                MAX_BLOCK,
                2,
                FixedAsync::Output,
            )
            .expect("valid")
        };
        let d = measure_delay(make(), 1.0);
        assert!(d > 0.0 && d < 8.0, "{d}");
    }
}
