//! The `virtual:<ppm>[,offset_ns]` sink: a simulated DAC whose crystal runs
//! `ppm` parts per million fast (or slow, if negative) against a supplied
//! clock, and which knows the true time at which each frame it was given is
//! emitted. The instrument for measuring sync between nodes: give every
//! node's virtual DAC a different crystal error, read
//! [`VirtualProbe::emission_ns`] for the frames that carry the same song
//! position, and the spread is the sync error.
//!
//! The model, kept close to an ALSA playback device so the engine cannot
//! tell the difference: a buffer of `buffer_frames`; writes fill it; the
//! stream starts when it is full (start threshold = buffer size, as the
//! ALSA backend sets); from then the crystal emits one frame per tick, tick
//! `k` falling at true time `offset_ns + k·10⁹ / (rate·(1 + ppm·10⁻⁶))` —
//! so `offset_ns` is the phase of the crystal's tick grid against the
//! clock, and the first frame of a run goes out on the first tick at or
//! after the start. If a tick finds the buffer empty the stream stops (an
//! xrun) until [`Sink::recover`]. Nothing is stored but counts: samples are
//! discarded, emission times are computed exactly from the run's first
//! tick, in integer nanoseconds.
//!
//! With `,record=<path>` it also writes, for every 48th frame (1 ms), a
//! line `<true emission ns> <channel 0 sample>`: the record a sync test
//! reads from outside the node process (see `tests/src/timecode.rs`).
//!
//! Invariant: for every frame of the current run, `emission_ns(i)` is the
//! same value before, during and after it is emitted, and
//! [`Sink::delay`] equals the frames written minus those whose emission
//! time has passed. Only the current run is remembered: frames of a run
//! ended by an xrun are forgotten (a measured run with an xrun is a failed
//! run anyway).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering, fence};
use std::time::Duration;

use super::{SampleFormat, SharedTime, Sink, SinkConfig, SinkError, SinkRequest, TimeSource};

const NS_PER_S: i128 = 1_000_000_000;
/// Largest crystal error accepted, in ppm: real crystals are within ±100.
const MAX_PPM: f64 = 10_000.0;

/// The crystal of a virtual DAC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtualDacConfig {
    /// Crystal error in parts per billion (+ = runs fast).
    pub ppb: i64,
    /// Phase of the tick grid: tick 0 falls at this clock time (ns).
    pub offset_ns: i64,
}

impl VirtualDacConfig {
    /// Parses `<ppm>[,offset_ns]`, e.g. `-150`, `12.5,2500000`.
    ///
    /// # Errors
    /// A one-line description of what is wrong.
    pub fn parse(arg: &str) -> Result<VirtualDacConfig, String> {
        let (ppm, offset) = match arg.split_once(',') {
            Some((p, o)) => (p, Some(o)),
            None => (arg, None),
        };
        let ppm: f64 = ppm
            .trim()
            .parse()
            .map_err(|_| format!("'{ppm}' is not a number of ppm"))?;
        if !ppm.is_finite() || ppm.abs() > MAX_PPM {
            return Err(format!("ppm must be within ±{MAX_PPM}"));
        }
        let offset_ns = match offset {
            Some(o) => o
                .trim()
                .parse()
                .map_err(|_| format!("'{o}' is not an offset in whole nanoseconds"))?,
            None => 0,
        };
        Ok(VirtualDacConfig {
            ppb: (ppm * 1000.0).round() as i64,
            offset_ns,
        })
    }
}

/// The tick grid: pure integer math shared by the DAC and its probe.
#[derive(Clone, Copy, Debug)]
struct Crystal {
    rate: i128,
    /// `10⁹ + ppb`: ticks per nominal tick, in billionths.
    scale: i128,
    offset: i128,
}

impl Crystal {
    fn new(rate: u32, dac: VirtualDacConfig) -> Crystal {
        Crystal {
            rate: i128::from(rate),
            scale: NS_PER_S + i128::from(dac.ppb),
            offset: i128::from(dac.offset_ns),
        }
    }

    /// True time of tick `k`: `offset + floor(k·10¹⁸ / (rate·scale))`.
    fn tick_time(self, k: i128) -> i128 {
        self.offset + (k * NS_PER_S * NS_PER_S).div_euclid(self.rate * self.scale)
    }

    /// The last tick whose time is `<= t`.
    fn last_tick(self, t: i128) -> i128 {
        // tick_time(k) <= t  ⇔  k·10¹⁸ < (t − offset + 1)·rate·scale
        let bound = (t - self.offset + 1) * self.rate * self.scale;
        let den = NS_PER_S * NS_PER_S;
        // largest k with k·den < bound
        (bound - 1).div_euclid(den)
    }

    /// The first tick whose time is `>= t`.
    fn first_tick_from(self, t: i128) -> i128 {
        self.last_tick(t - 1) + 1
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Filling the buffer; starts when it is full.
    Prepared,
    /// Emitting one frame per tick from `start_tick` on.
    Running { start_tick: i128 },
    /// Ran dry at tick `dry_tick` (the first that found no frame); waits
    /// for `recover`.
    Xrun { dry_tick: i128 },
}

/// A simulated DAC (see the module doc).
pub struct VirtualDac {
    config: SinkConfig,
    crystal: Crystal,
    clock: SharedTime,
    state: State,
    /// Write index of the next frame.
    written: u64,
    /// Write index of the current run's first frame.
    run_first: u64,
    xruns: u64,
    probe: VirtualProbe,
    recorder: Option<Recorder>,
}

impl std::fmt::Debug for VirtualDac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtualDac")
            .field("config", &self.config)
            .field("crystal", &self.crystal)
            .field("state", &self.state)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

/// Shared view of a [`VirtualDac`]'s emission schedule; readable from any
/// thread without locks (a sequence counter guards the two values that
/// change together).
#[derive(Clone, Debug)]
pub struct VirtualProbe(Arc<ProbeShared>);

#[derive(Debug)]
struct ProbeShared {
    crystal: Crystal,
    seq: AtomicU64,
    running: AtomicBool,
    run_first: AtomicU64,
    start_tick: AtomicI64,
    xruns: AtomicU64,
}

impl VirtualProbe {
    /// The current run, if the DAC is emitting: (first write index, its tick).
    fn run(&self) -> Option<(u64, i128)> {
        let p = &self.0;
        loop {
            let s1 = p.seq.load(Ordering::Acquire);
            if !s1.is_multiple_of(2) {
                std::hint::spin_loop();
                continue;
            }
            let running = p.running.load(Ordering::Relaxed);
            let first = p.run_first.load(Ordering::Relaxed);
            let tick = p.start_tick.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if p.seq.load(Ordering::Relaxed) == s1 {
                return running.then_some((first, i128::from(tick)));
            }
        }
    }

    /// The true time (ns on the DAC's clock) at which the frame with write
    /// index `index` (frames written to the sink before it, since opening)
    /// is emitted in the current run — past, present or, for frames not yet
    /// written, the time it will go out if written in time. `None` when the
    /// DAC is not running or `index` precedes the current run.
    #[must_use]
    pub fn emission_ns(&self, index: u64) -> Option<u64> {
        let (first, start_tick) = self.run()?;
        let k = start_tick + i128::from(index.checked_sub(first)?);
        u64::try_from(self.0.crystal.tick_time(k)).ok()
    }

    /// The write index of the frame emitted at true time `t_ns` in the
    /// current run (the last one emitted at or before it), or `None` if
    /// the run had not started then.
    #[must_use]
    pub fn frame_at(&self, t_ns: u64) -> Option<u64> {
        let (first, start_tick) = self.run()?;
        let k = self.0.crystal.last_tick(i128::from(t_ns));
        let n = u64::try_from(k - start_tick).ok()?;
        first.checked_add(n)
    }

    /// Xruns so far.
    #[must_use]
    pub fn xruns(&self) -> u64 {
        self.0.xruns.load(Ordering::Relaxed)
    }

    fn publish(&self, run: Option<(u64, i128)>) {
        let p = &self.0;
        let s = p.seq.load(Ordering::Relaxed);
        p.seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        p.running.store(run.is_some(), Ordering::Relaxed);
        if let Some((first, tick)) = run {
            p.run_first.store(first, Ordering::Relaxed);
            p.start_tick
                .store(i64::try_from(tick).unwrap_or(i64::MAX), Ordering::Relaxed);
        }
        p.seq.store(s + 2, Ordering::Release);
    }
}

impl VirtualDac {
    /// A virtual DAC for `req`, crystal `dac`, reading true time from
    /// `clock`. The buffer is `period_frames * periods` frames.
    #[must_use]
    pub fn new(req: &SinkRequest, dac: VirtualDacConfig, clock: SharedTime) -> VirtualDac {
        let crystal = Crystal::new(req.spec.rate, dac);
        let probe = VirtualProbe(Arc::new(ProbeShared {
            crystal,
            seq: AtomicU64::new(0),
            running: AtomicBool::new(false),
            run_first: AtomicU64::new(0),
            start_tick: AtomicI64::new(0),
            xruns: AtomicU64::new(0),
        }));
        VirtualDac {
            config: SinkConfig {
                spec: req.spec,
                period_frames: req.period_frames.max(1),
                buffer_frames: req.period_frames.max(1).saturating_mul(req.periods.max(1)),
                format: SampleFormat::F32,
            },
            crystal,
            clock,
            state: State::Prepared,
            written: 0,
            run_first: 0,
            xruns: 0,
            probe,
            recorder: None,
        }
    }

    /// Also writes `<emission_ns> <sample>` lines to `path`: channel 0 of
    /// every [`RECORD_EVERY`]th frame with the true time it is emitted, for
    /// measuring sync from outside the process (see the module doc).
    ///
    /// # Errors
    /// The file cannot be created or the writer thread cannot start.
    pub fn record_to(&mut self, path: &std::path::Path) -> std::io::Result<()> {
        self.recorder = Some(Recorder::start(path, self.crystal)?);
        Ok(())
    }

    /// The probe (also reachable as [`Sink::virtual_probe`]).
    #[must_use]
    pub fn probe(&self) -> VirtualProbe {
        self.probe.clone()
    }

    /// While run dry (after an xrun, before `recover`): the tick from which
    /// no frame went out.
    pub(super) fn dry_tick(&self) -> Option<i128> {
        match self.state {
            State::Xrun { dry_tick } => Some(dry_tick),
            _ => None,
        }
    }

    /// The tick the current run's first frame goes out on, once running.
    pub(super) fn start_tick(&self) -> Option<i128> {
        match self.state {
            State::Running { start_tick } => Some(start_tick),
            _ => None,
        }
    }

    /// Frames of the current run emitted by true time `now`.
    fn emitted(&self, start_tick: i128, now: i128) -> u64 {
        u64::try_from(self.crystal.last_tick(now) - start_tick + 1).unwrap_or(0)
    }

    /// Brings the state up to `now`: detects running dry.
    fn poll(&mut self, now: i128) {
        if let State::Running { start_tick } = self.state {
            let queued_total = self.written - self.run_first;
            // The tick that wanted frame `queued_total` of the run has come.
            if self.emitted(start_tick, now) > queued_total {
                self.state = State::Xrun {
                    dry_tick: start_tick + i128::from(queued_total),
                };
                self.xruns += 1;
                self.probe.0.xruns.store(self.xruns, Ordering::Relaxed);
                self.probe.publish(None);
            }
        }
    }

    fn start(&mut self, now: i128) {
        let start_tick = self.crystal.first_tick_from(now);
        self.state = State::Running { start_tick };
        self.probe.publish(Some((self.run_first, start_tick)));
        if let Some(r) = &mut self.recorder {
            r.push(Record::Run {
                first: self.run_first,
                tick: start_tick,
            });
        }
    }

    fn now(&self) -> i128 {
        i128::from(self.clock.now_ns())
    }

    fn sleep_until(&self, t: i128) {
        self.clock
            .sleep_until_ns(u64::try_from(t.max(0)).unwrap_or(u64::MAX));
    }
}

pub(super) fn open(arg: Option<&str>, req: &SinkRequest) -> Result<Box<dyn Sink>, SinkError> {
    let arg = arg.unwrap_or("0");
    let (crystal, record) = match arg.split_once(",record=") {
        Some((c, path)) => (c, Some(path)),
        None => (arg, None),
    };
    let bad = |problem: String| SinkError::BadSpec {
        spec: format!("virtual:{arg}"),
        problem: format!("{problem} (expected virtual:<ppm>[,offset_ns][,record=<path>])"),
    };
    let dac = VirtualDacConfig::parse(crystal).map_err(bad)?;
    let mut sink = VirtualDac::new(req, dac, Arc::new(MonotonicRawClock));
    if let Some(path) = record {
        sink.record_to(std::path::Path::new(path))
            .map_err(|e| bad(format!("cannot record to {path}: {e}")))?;
    }
    Ok(Box::new(sink))
}

/// Frames between two recorded ones (1 ms at 48 kHz).
pub(crate) const RECORD_EVERY: u64 = 48;

/// What the DAC hands its recorder.
#[derive(Clone, Copy, Debug)]
enum Record {
    /// A run started: write index `first` goes out on tick `tick`.
    Run { first: u64, tick: i128 },
    /// The sample (channel 0) of write index `index`.
    Frame { index: u64, value: f32 },
    /// The run ended (xrun): frames after this wait for the next run.
    Stopped,
}

/// The recording side of a virtual DAC: the output thread pushes into a
/// lock-free ring, a writer thread turns records into lines. Frames written
/// before their run started wait until it does (their emission time is not
/// known before).
struct Recorder {
    tx: ringbuf::HeapProd<Record>,
    dropped: u64,
}

impl Recorder {
    fn start(path: &std::path::Path, crystal: Crystal) -> std::io::Result<Recorder> {
        use ringbuf::traits::Split as _;
        let file = std::fs::File::create(path)?;
        let (tx, rx) = ringbuf::HeapRb::<Record>::new(1 << 16).split();
        std::thread::Builder::new()
            .name("ah-dac-record".into())
            .spawn(move || record_thread(rx, std::io::BufWriter::new(file), crystal))?;
        Ok(Recorder { tx, dropped: 0 })
    }

    fn push(&mut self, r: Record) {
        use ringbuf::traits::Producer as _;
        if self.tx.try_push(r).is_err() {
            self.dropped += 1;
        }
    }
}

fn record_thread(
    mut rx: ringbuf::HeapCons<Record>,
    mut out: std::io::BufWriter<std::fs::File>,
    crystal: Crystal,
) {
    use ringbuf::traits::{Consumer as _, Observer as _};
    use std::io::Write as _;
    let mut run: Option<(u64, i128)> = None;
    let mut waiting: Vec<(u64, f32)> = Vec::new();
    loop {
        let mut idle = true;
        while let Some(r) = rx.try_pop() {
            idle = false;
            match r {
                Record::Run { first, tick } => {
                    run = Some((first, tick));
                    for (index, value) in waiting.drain(..) {
                        if index >= first {
                            let t = crystal.tick_time(tick + i128::from(index - first));
                            let _ = writeln!(out, "{t} {value}");
                        }
                    }
                }
                Record::Stopped => run = None,
                Record::Frame { index, value } => match run {
                    Some((first, tick)) if index >= first && waiting.is_empty() => {
                        let t = crystal.tick_time(tick + i128::from(index - first));
                        let _ = writeln!(out, "{t} {value}");
                    }
                    _ => waiting.push((index, value)),
                },
            }
        }
        if idle {
            let _ = out.flush();
            if rx.write_is_held() {
                std::thread::sleep(Duration::from_millis(50));
            } else {
                break;
            }
        }
    }
    let _ = out.flush();
}

impl Sink for VirtualDac {
    fn config(&self) -> SinkConfig {
        self.config
    }

    fn is_realtime(&self) -> bool {
        true
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), SinkError> {
        let n = (samples.len() / usize::from(self.config.spec.channels)) as u64;
        let buffer = u64::from(self.config.buffer_frames);
        let mut done = 0u64;
        while done < n {
            let now = self.now();
            self.poll(now);
            let queued = match self.state {
                State::Xrun { .. } => {
                    return Err(SinkError::Xrun {
                        written: usize::try_from(done).unwrap_or(usize::MAX),
                    });
                }
                State::Prepared => self.written - self.run_first,
                State::Running { start_tick } => {
                    (self.written - self.run_first).saturating_sub(self.emitted(start_tick, now))
                }
            };
            let space = buffer.saturating_sub(queued);
            // Like ALSA's avail_min: wake for a period's room, not a frame's.
            let want = (n - done).min(u64::from(self.config.period_frames));
            if space >= want || (space > 0 && self.state == State::Prepared) {
                let k = space.min(n - done);
                if let Some(r) = &mut self.recorder {
                    let ch = usize::from(self.config.spec.channels);
                    for i in done..done + k {
                        let index = self.written + (i - done);
                        if index.is_multiple_of(RECORD_EVERY) {
                            let value = samples[usize::try_from(i).unwrap_or(0) * ch];
                            r.push(Record::Frame { index, value });
                        }
                    }
                }
                self.written += k;
                done += k;
                if self.state == State::Prepared && self.written - self.run_first >= buffer {
                    self.start(now);
                }
            } else if let State::Running { start_tick } = self.state {
                // Room for `want` once the run has emitted this many frames.
                let need = (self.written - self.run_first) + want - buffer;
                let tick = start_tick + i128::from(need) - 1;
                self.sleep_until(self.crystal.tick_time(tick));
            }
        }
        Ok(())
    }

    fn delay(&mut self) -> Result<i64, SinkError> {
        let now = self.now();
        self.poll(now);
        let queued = match self.state {
            State::Xrun { .. } => return Err(SinkError::Xrun { written: 0 }),
            State::Prepared => self.written - self.run_first,
            State::Running { start_tick } => {
                (self.written - self.run_first).saturating_sub(self.emitted(start_tick, now))
            }
        };
        Ok(i64::try_from(queued).unwrap_or(i64::MAX))
    }

    fn recover(&mut self) -> Result<(), SinkError> {
        if let Some(r) = &mut self.recorder {
            r.push(Record::Stopped);
        }
        self.state = State::Prepared;
        self.run_first = self.written;
        self.probe.publish(None);
        Ok(())
    }

    fn xruns(&self) -> u64 {
        self.xruns
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        let now = self.now();
        self.poll(now);
        if self.state == State::Prepared && self.written > self.run_first {
            self.start(now);
        }
        if let State::Running { start_tick } = self.state {
            let last = start_tick + i128::from(self.written - self.run_first) - 1;
            self.sleep_until(self.crystal.tick_time(last));
        }
        // Stopped: the record of the run stays readable through the probe.
        self.state = State::Prepared;
        self.run_first = self.written;
        Ok(())
    }

    fn virtual_probe(&self) -> Option<VirtualProbe> {
        Some(self.probe.clone())
    }
}

/// The machine's `CLOCK_MONOTONIC_RAW`: never slewed by NTP, shared by all
/// processes of the machine (so every node's virtual DAC on one machine
/// measures against the same time), and the clock the node's protocol
/// clock reads.
#[derive(Clone, Copy, Debug, Default)]
pub struct MonotonicRawClock;

impl TimeSource for MonotonicRawClock {
    fn now_ns(&self) -> u64 {
        let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_RAW)
            .expect("CLOCK_MONOTONIC_RAW exists on Linux");
        u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
            + u64::try_from(ts.tv_nsec()).unwrap_or(0)
    }

    fn sleep_until_ns(&self, t: u64) {
        loop {
            let now = self.now_ns();
            if now >= t {
                return;
            }
            std::thread::sleep(Duration::from_nanos(t - now));
        }
    }
}

/// A clock that moves only when told to, or when someone sleeps on it
/// (sleeping advances it to the wake-up time): deterministic tests run
/// minutes of virtual DAC time in milliseconds.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// A clock reading `t` ns.
    #[must_use]
    pub fn new(t: u64) -> ManualClock {
        ManualClock(AtomicU64::new(t))
    }

    /// Moves the clock forward by `d` ns.
    pub fn advance(&self, d: u64) {
        self.0.fetch_add(d, Ordering::SeqCst);
    }
}

impl TimeSource for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }

    fn sleep_until_ns(&self, t: u64) {
        self.0.fetch_max(t, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::StreamSpec;

    fn req() -> SinkRequest {
        SinkRequest {
            spec: StreamSpec {
                rate: 48_000,
                channels: 2,
            },
            period_frames: 240,
            periods: 4,
        }
    }

    #[test]
    fn parse_accepts_ppm_and_offset() {
        assert_eq!(
            VirtualDacConfig::parse("-150"),
            Ok(VirtualDacConfig {
                ppb: -150_000,
                offset_ns: 0
            })
        );
        assert_eq!(
            VirtualDacConfig::parse("12.5,-7"),
            Ok(VirtualDacConfig {
                ppb: 12_500,
                offset_ns: -7
            })
        );
        assert!(VirtualDacConfig::parse("fast").is_err());
        assert!(VirtualDacConfig::parse("20000").is_err());
        assert!(VirtualDacConfig::parse("1,2.5").is_err());
    }

    #[test]
    fn crystal_ticks_are_consistent() {
        for ppb in [-150_000, 0, 37_123, 150_000] {
            let c = Crystal::new(
                48_000,
                VirtualDacConfig {
                    ppb,
                    offset_ns: 123,
                },
            );
            for k in [-5i128, 0, 1, 47_999, 48_000, 1 << 40] {
                let t = c.tick_time(k);
                assert_eq!(c.last_tick(t), k, "ppb {ppb} k {k}");
                assert_eq!(c.last_tick(t - 1), k - 1, "ppb {ppb} k {k}");
                assert_eq!(c.first_tick_from(t), k);
                assert_eq!(c.first_tick_from(t + 1), k + 1);
            }
        }
    }

    #[test]
    fn a_fast_crystal_emits_a_second_early() {
        // +100 ppm: 48 000 frames take 1 s / 1.0001 = 999 900.01 µs.
        let clock = Arc::new(ManualClock::new(1_000_000_000));
        let dac_cfg = VirtualDacConfig {
            ppb: 100_000,
            offset_ns: 0,
        };
        let mut dac = VirtualDac::new(&req(), dac_cfg, clock.clone());
        let probe = dac.probe();
        let period = vec![0.0f32; 240 * 2];
        for _ in 0..(48_000 / 240 + 4) {
            dac.write(&period)
                .expect("no xrun: the clock only moves when the writer waits");
        }
        let t0 = probe.emission_ns(0).expect("running");
        let t1 = probe.emission_ns(48_000).expect("running");
        // Each tick time is floored to the ns, so the difference of two is
        // the exact 999 900 009.999… ns rounded either way.
        assert!(
            (999_900_009..=999_900_010).contains(&(t1 - t0)),
            "{}",
            t1 - t0
        );
        assert_eq!(dac.xruns(), 0);
        // delay = written - emitted, and frame_at inverts emission_ns.
        let now = clock.now_ns();
        let delay = dac.delay().expect("running");
        let emitted_through = probe.frame_at(now).expect("running");
        assert_eq!(dac.written - (emitted_through + 1), delay as u64);
        assert_eq!(probe.frame_at(t1), Some(48_000));
        assert_eq!(probe.frame_at(t1 - 1), Some(47_999));
    }

    #[test]
    fn running_dry_is_an_xrun_and_recover_restarts() {
        let clock = Arc::new(ManualClock::new(0));
        let mut dac = VirtualDac::new(&req(), VirtualDacConfig::default(), clock.clone());
        let period = vec![0.0f32; 240 * 2];
        for _ in 0..4 {
            dac.write(&period).expect("prefill");
        }
        assert!(dac.probe().emission_ns(0).is_some());
        // 960 frames queued = 20 ms; let 30 ms pass.
        clock.advance(30_000_000);
        assert!(matches!(
            dac.write(&period),
            Err(SinkError::Xrun { written: 0 })
        ));
        assert_eq!(dac.xruns(), 1);
        assert_eq!(dac.probe().xruns(), 1);
        assert!(dac.probe().emission_ns(0).is_none());
        dac.recover().expect("recover");
        assert_eq!(dac.delay().ok(), Some(0));
        dac.write(&period).expect("after recover");
        assert_eq!(dac.delay().ok(), Some(240));
    }
}
