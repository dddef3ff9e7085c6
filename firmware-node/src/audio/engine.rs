//! The two audio threads and the lock-free ring between them.
//!
//! `ah-audio-dec` (SCHED_FIFO ten below the output thread where permitted,
//! see `DecoderLoop`) reads an [`AudioSource`], maps its
//! channels to the sink's and pushes interleaved `f32` frames into a
//! `ringbuf` SPSC ring, staying up to the ring's capacity ahead of the
//! playhead. `ah-audio-out` (SCHED_FIFO where permitted) pops one period at
//! a time, applies the gain with a ramp, and writes it to the [`Sink`],
//! which blocks until the device has room: the device's clock paces the
//! whole pipeline.
//!
//! Why this shape: the output thread has a deadline every period (5 ms at
//! 256 frames) and anything it waits on besides the device — a lock held by
//! a thread that was preempted, the allocator, a log line, disk I/O — can
//! miss it and click. So it owns everything it touches, allocated before
//! its loop; it hears from the outside only through atomics (gain target,
//! stop) and speaks only through atomics (counters) and a second SPSC ring
//! of [`Timing`] samples for the drift controller.
//!
//! Invariants a change must not break:
//! - the output loop (`OutputLoop::iterate`) does not allocate, lock, log
//!   or block except inside `Sink::write`/`delay`/`recover`
//!   (`tests/audio_no_alloc.rs` checks the allocation part on the real
//!   thread);
//! - every period written has exactly `period` frames except the last one
//!   of a drain, so `frames_written` is the device's frame count;
//! - an empty ring on a real-time sink becomes silence and one counted
//!   underrun, never a wait; after the source ended (or failed) silence is
//!   expected and not counted, so a speaker whose stem is broken keeps its
//!   place in the room, silent and in sync;
//! - for a producer that receives timings, no frame it made before it
//!   heard of an xrun is heard after it (played as silence instead): the
//!   device restarted, so those frames would be late by the stall.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use ringbuf::traits::{Consumer as _, Observer as _, Producer as _, Split as _};
use ringbuf::{HeapCons, HeapProd, HeapRb};
use tracing::{debug, error, warn};

use super::StreamSpec;
use super::decode::{AudioSource, DecodeError, map_channels};
use super::output::{SharedTime, Sink, SinkError};

/// Name of the output thread (visible in `top -H`, `ps -L`).
pub const OUTPUT_THREAD: &str = "ah-audio-out";
/// Name of the decoder thread.
pub const DECODER_THREAD: &str = "ah-audio-dec";

/// Capacity of the [`Timing`] ring: at 5 ms periods, 320 ms of history if
/// nobody reads it (then the newest are dropped and counted).
const TIMING_CAPACITY: usize = 64;

/// Wraps one output-loop iteration; see [`EngineConfig::iteration_hook`].
pub type IterationHook = fn(&mut dyn FnMut());

/// How the engine runs.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Capacity of the sample ring, in frames: how far the decoder may run
    /// ahead of the playhead (default 0.5 s at 48 kHz).
    pub ring_frames: u32,
    /// The output starts once this many frames are in the ring (or the
    /// source has ended), so the first periods do not underrun while the
    /// decoder warms up. At most `ring_frames` − 1024 (the decoder pushes
    /// 1024-frame chunks); `ring_frames` is at least 2048.
    pub prefill_frames: u32,
    /// Gain at start, linear, `0.0..=1.0`.
    pub initial_gain: f32,
    /// Duration of a full-scale gain ramp (0 → 1) in milliseconds; smaller
    /// changes take proportionally less. Default 5 ms: long enough not to
    /// click, short enough to sound instant.
    pub ramp_ms: u32,
    /// SCHED_FIFO priority for the output thread (1–99), or `None` not to
    /// ask. Refusal (no CAP_SYS_NICE, no rtprio limit) is reported once as
    /// a warning and in [`Counters::realtime`].
    pub realtime_priority: Option<u8>,
    /// Called around every iteration of the output loop, on the output
    /// thread, with the iteration as argument; it must call it exactly once.
    /// For instrumentation only: the allocation test wraps iterations in
    /// `assert_no_alloc`, a profiler could time them. `None` in a node.
    pub iteration_hook: Option<IterationHook>,
    /// Frames the decoder thread produces at a time (it waits for this much
    /// room in the ring). Default 1024; the synchronised player uses less,
    /// so that what it renders is decided closer to when it is heard.
    pub chunk_frames: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ring_frames: 24_000,
            prefill_frames: 4_800,
            initial_gain: 1.0,
            ramp_ms: 5,
            realtime_priority: Some(70),
            iteration_hook: None,
            chunk_frames: 1024,
        }
    }
}

/// Why the engine cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The sink runs at another rate than the source; resampling is not
    /// part of the engine yet. Retrying does not help; open the sink at the
    /// source's rate (ALSA `plug:` PCMs convert).
    #[error("the source is {source_rate} Hz but the output runs at {sink_rate} Hz")]
    RateMismatch {
        /// The source's rate.
        source_rate: u32,
        /// The sink's rate.
        sink_rate: u32,
    },
    /// A thread could not be spawned (out of memory or thread limit).
    #[error("cannot spawn thread {name}: {source}")]
    Spawn {
        /// The thread's name.
        name: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The output thread ended on a fatal sink error (device unplugged,
    /// disk full); reopen the sink.
    #[error("output: {0}")]
    Sink(#[from] SinkError),
    /// The decoder ended on an error; the output played silence from then.
    #[error("decoder: {0}")]
    Decode(#[from] DecodeError),
    /// A thread panicked (a bug).
    #[error("thread {0} panicked")]
    Panicked(&'static str),
}

/// State of the source as the decoder thread reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceState {
    /// Still producing frames.
    Running,
    /// Reached its end; the rest of the ring plays out.
    Ended,
    /// Stopped on an error (logged, and returned by [`Engine::stop`]).
    Failed,
}

/// Whether the output thread got real-time scheduling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Realtime {
    /// The thread has not tried yet.
    Pending,
    /// SCHED_FIFO granted.
    Granted,
    /// Refused by the system (reported once as a warning).
    Refused,
    /// Not asked for ([`EngineConfig::realtime_priority`] is `None`).
    NotRequested,
}

/// One observation of the output: after `frames_written` frames had been
/// handed to the sink, it reported `delay` frames still queued before the
/// DAC, at `at_ns` on the engine's time source. So the frame with index
/// `frames_written` reaches the DAC at about `at_ns + delay / rate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timing {
    /// Frames written to the sink so far.
    pub frames_written: u64,
    /// Frames queued in the sink at that moment.
    pub delay: i64,
    /// When (ns on the engine's [`super::output::TimeSource`]).
    pub at_ns: u64,
    /// Silent frames the output inserted so far (underruns): frame `k` of
    /// what the decoder pushed has device index `k + underrun_frames` if
    /// no underrun happens between its push and its playing.
    pub underrun_frames: u64,
    /// Xruns so far: a change means the device restarted.
    pub xruns: u64,
}

/// What the decoder thread runs to make the frames the sink plays: a plain
/// [`AudioSource`] (wrapped by [`Engine::start`]) or the synchronised
/// player's renderer.
pub trait Producer: Send {
    /// Fills `out` (interleaved, the sink's channel count; a whole number
    /// of frames) with the frames that follow and returns how many it
    /// wrote; 0 means the end. `device_frame` is the device's index of the
    /// first of them (frames pushed before plus the output's underrun
    /// silence), so a producer can tell when they will be heard.
    ///
    /// # Errors
    /// A decode error ends the producer; the output plays silence from then.
    fn produce(&mut self, out: &mut [f32], device_frame: u64) -> Result<usize, DecodeError>;

    /// One observation of the output, oldest first. Only producers started
    /// with [`Engine::start_producer`] receive them.
    fn observe(&mut self, _timing: Timing) {}

    /// Packets skipped as undecodable so far.
    fn skipped_packets(&self) -> u64 {
        0
    }
}

/// An [`AudioSource`] played as it is, its channels mapped to the sink's.
struct SourceProducer {
    source: Box<dyn AudioSource>,
    src_ch: usize,
    out_ch: usize,
    buf: Vec<f32>,
}

impl Producer for SourceProducer {
    fn produce(&mut self, out: &mut [f32], _device_frame: u64) -> Result<usize, DecodeError> {
        let frames = out.len() / self.out_ch;
        let want = frames * self.src_ch;
        if self.buf.len() < want {
            self.buf.resize(want, 0.0);
        }
        let n = self.source.read(&mut self.buf[..want])?;
        if n == 0 {
            debug!(position = self.source.position(), "source ended");
        }
        map_channels(
            &self.buf[..n * self.src_ch],
            self.src_ch,
            &mut out[..n * self.out_ch],
            self.out_ch,
            1.0,
            false,
        );
        Ok(n)
    }

    fn skipped_packets(&self) -> u64 {
        self.source.skipped_packets()
    }
}

/// A snapshot of the engine's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Frames handed to the sink (silence included).
    pub frames_written: u64,
    /// Periods that found the ring short while the source was running.
    pub underruns: u64,
    /// Silent frames inserted by those underruns.
    pub underrun_frames: u64,
    /// Xruns the sink reported (and the loop recovered from).
    pub xruns: u64,
    /// Frames in the ring at the last period.
    pub ring_fill_frames: u64,
    /// The sink's delay at the last period, in frames.
    pub delay_frames: i64,
    /// Frames the decoder pushed into the ring.
    pub decoded_frames: u64,
    /// Packets the source skipped as undecodable.
    pub skipped_packets: u64,
    /// Timing samples dropped because nobody read them.
    pub timings_dropped: u64,
    /// The source's state.
    pub source: SourceState,
    /// The output thread's scheduling.
    pub realtime: Realtime,
    /// Whether the output loop is running.
    pub running: bool,
}

// `Shared::stop` is 0 while running.
const STOP_NOW: u8 = 1;
const STOP_DRAIN: u8 = 2;

const SRC_RUNNING: u8 = 0;
const SRC_ENDED: u8 = 1;
const SRC_FAILED: u8 = 2;

const RT_PENDING: u8 = 0;
const RT_GRANTED: u8 = 1;
const RT_REFUSED: u8 = 2;
const RT_NOT_REQUESTED: u8 = 3;

/// Everything the threads and the handle share: atomics only.
#[derive(Debug, Default)]
struct Shared {
    stop: AtomicU8,
    /// Target gain, `f32` bits.
    gain_target: AtomicU32,
    frames_written: AtomicU64,
    underruns: AtomicU64,
    underrun_frames: AtomicU64,
    xruns: AtomicU64,
    ring_fill: AtomicU64,
    delay: AtomicI64,
    decoded: AtomicU64,
    skipped: AtomicU64,
    timings_dropped: AtomicU64,
    /// The xrun count the producer has seen in its timings (stored with
    /// `Release` after [`Shared::fresh_from`]): frames it pushed before
    /// that were made for a device timing that no longer holds.
    producer_xruns: AtomicU64,
    /// Push index (frames pushed before) of the first frame the producer
    /// made after seeing [`Shared::producer_xruns`] xruns.
    fresh_from: AtomicU64,
    source: AtomicU8,
    realtime: AtomicU8,
    running: AtomicBool,
    /// The decoder thread, which the output thread unparks each time it
    /// frees room in the ring: the decoder refills at once and sleeps
    /// otherwise, instead of polling (fewer wake-ups, and no lag between
    /// room appearing and the refill).
    decoder_thread: std::sync::OnceLock<std::thread::Thread>,
}

/// The running engine. Dropping it stops both threads (without draining).
pub struct Engine {
    shared: Arc<Shared>,
    spec: StreamSpec,
    /// `None` when the timings go to the producer.
    timings: Option<HeapCons<Timing>>,
    output: Option<JoinHandle<Result<(), SinkError>>>,
    decoder: Option<JoinHandle<Result<(), DecodeError>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("spec", &self.spec)
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts decoding `source` and playing it on `sink`, reading time for
    /// [`Timing`] samples from `time`.
    ///
    /// # Errors
    /// [`EngineError::RateMismatch`] or [`EngineError::Spawn`].
    pub fn start(
        source: Box<dyn AudioSource>,
        sink: Box<dyn Sink>,
        config: EngineConfig,
        time: SharedTime,
    ) -> Result<Engine, EngineError> {
        let sink_spec = sink.config().spec;
        let src_spec = source.spec();
        if sink_spec.rate != src_spec.rate {
            return Err(EngineError::RateMismatch {
                source_rate: src_spec.rate,
                sink_rate: sink_spec.rate,
            });
        }
        let producer = SourceProducer {
            source,
            src_ch: usize::from(src_spec.channels),
            out_ch: usize::from(sink_spec.channels),
            buf: Vec::new(),
        };
        Engine::spawn(Box::new(producer), sink, config, time, false)
    }

    /// Starts `producer` (which makes frames in the sink's spec) playing on
    /// `sink`. The [`Timing`] samples go to [`Producer::observe`] on the
    /// decoder thread, not to [`Engine::drain_timings`].
    ///
    /// # Errors
    /// [`EngineError::Spawn`].
    pub fn start_producer(
        producer: Box<dyn Producer>,
        sink: Box<dyn Sink>,
        config: EngineConfig,
        time: SharedTime,
    ) -> Result<Engine, EngineError> {
        Engine::spawn(producer, sink, config, time, true)
    }

    fn spawn(
        producer: Box<dyn Producer>,
        sink: Box<dyn Sink>,
        config: EngineConfig,
        time: SharedTime,
        timings_to_producer: bool,
    ) -> Result<Engine, EngineError> {
        let sink_spec = sink.config().spec;
        let ch = usize::from(sink_spec.channels);
        let chunk = (config.chunk_frames as usize).clamp(16, 8192);
        let ring_frames = (config.ring_frames as usize)
            .max(2 * chunk)
            .max(2 * sink.config().period_frames as usize);
        let (producer_ring, consumer) = HeapRb::<f32>::new(ring_frames * ch).split();
        let (timing_tx, timing_rx) = HeapRb::<Timing>::new(TIMING_CAPACITY).split();
        let shared = Arc::new(Shared::default());
        shared.gain_target.store(
            config.initial_gain.clamp(0.0, 1.0).to_bits(),
            Ordering::Relaxed,
        );
        shared.running.store(true, Ordering::Relaxed);

        let output = OutputLoop::new(
            sink,
            consumer,
            timing_tx,
            Arc::clone(&shared),
            &config,
            time,
            timings_to_producer,
        );
        // The decoder needs a chunk's room to push, so a prefill closer to
        // the capacity than that would never be reached.
        let prefill = (config.prefill_frames as usize).min(ring_frames - chunk);
        let out_shared = Arc::clone(&shared);
        let rt = config.realtime_priority;
        let hook = config.iteration_hook;
        let output = std::thread::Builder::new()
            .name(OUTPUT_THREAD.to_owned())
            .spawn(move || output_thread(output, out_shared, prefill, rt, hook))
            .map_err(|source| EngineError::Spawn {
                name: OUTPUT_THREAD,
                source,
            })?;

        let (timings, dec_timings) = if timings_to_producer {
            (None, Some(timing_rx))
        } else {
            (Some(timing_rx), None)
        };
        let dec = DecoderLoop {
            realtime_priority: config
                .realtime_priority
                .map(|p| p.saturating_sub(10).max(1)),
            producer,
            ring: producer_ring,
            timings: dec_timings,
            shared: Arc::clone(&shared),
            channels: ch,
            chunk,
            nap: nap_for(chunk, sink_spec.rate),
        };
        let decoder = std::thread::Builder::new()
            .name(DECODER_THREAD.to_owned())
            .spawn(move || dec.run());
        let decoder = match decoder {
            Ok(d) => d,
            Err(source) => {
                shared.stop.store(STOP_NOW, Ordering::Release);
                let _ = output.join();
                return Err(EngineError::Spawn {
                    name: DECODER_THREAD,
                    source,
                });
            }
        };
        Ok(Engine {
            shared,
            spec: sink_spec,
            timings,
            output: Some(output),
            decoder: Some(decoder),
        })
    }

    /// The shape of what is played.
    #[must_use]
    pub fn spec(&self) -> StreamSpec {
        self.spec
    }

    /// Sets the gain target (linear, clamped to `0.0..=1.0`); the output
    /// ramps to it (see [`EngineConfig::ramp_ms`]).
    pub fn set_gain(&self, gain: f32) {
        let g = if gain.is_nan() {
            0.0
        } else {
            gain.clamp(0.0, 1.0)
        };
        self.shared
            .gain_target
            .store(g.to_bits(), Ordering::Relaxed);
    }

    /// The counters now.
    #[must_use]
    pub fn counters(&self) -> Counters {
        let s = &self.shared;
        Counters {
            frames_written: s.frames_written.load(Ordering::Relaxed),
            underruns: s.underruns.load(Ordering::Relaxed),
            underrun_frames: s.underrun_frames.load(Ordering::Relaxed),
            xruns: s.xruns.load(Ordering::Relaxed),
            ring_fill_frames: s.ring_fill.load(Ordering::Relaxed),
            delay_frames: s.delay.load(Ordering::Relaxed),
            decoded_frames: s.decoded.load(Ordering::Relaxed),
            skipped_packets: s.skipped.load(Ordering::Relaxed),
            timings_dropped: s.timings_dropped.load(Ordering::Relaxed),
            source: match s.source.load(Ordering::Acquire) {
                SRC_RUNNING => SourceState::Running,
                SRC_ENDED => SourceState::Ended,
                _ => SourceState::Failed,
            },
            realtime: match s.realtime.load(Ordering::Relaxed) {
                RT_PENDING => Realtime::Pending,
                RT_GRANTED => Realtime::Granted,
                RT_REFUSED => Realtime::Refused,
                _ => Realtime::NotRequested,
            },
            running: s.running.load(Ordering::Acquire),
        }
    }

    /// Takes the [`Timing`] samples gathered since the last call, oldest
    /// first (none for an engine started with [`Engine::start_producer`]).
    pub fn drain_timings(&mut self, mut f: impl FnMut(Timing)) {
        if let Some(timings) = self.timings.as_mut() {
            while let Some(t) = timings.try_pop() {
                f(t);
            }
        }
    }

    /// Whether the output loop has ended (drained, or failed).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.output.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops at once: the output thread leaves its loop after the current
    /// period, frames in the ring and the device buffer are dropped.
    ///
    /// # Errors
    /// The error that ended either thread, if one did (sink first).
    pub fn stop(mut self) -> Result<Counters, EngineError> {
        self.shared.stop.store(STOP_NOW, Ordering::Release);
        self.join()
    }

    /// Asks the output to end after the source's last frame instead of
    /// playing silence after it, and to let the sink play out its buffer
    /// (`Sink::finish`); returns at once. [`Engine::is_finished`] tells when
    /// it is done; [`Engine::finish`] also waits.
    pub fn end_with_source(&self) {
        let _ =
            self.shared
                .stop
                .compare_exchange(0, STOP_DRAIN, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Plays to the end: waits until the source has ended, the ring is
    /// empty and the sink has emitted everything (`Sink::finish`), or
    /// until `timeout`, then stops. Returns the final counters.
    ///
    /// # Errors
    /// As [`Engine::stop`].
    pub fn finish(mut self, timeout: Duration) -> Result<Counters, EngineError> {
        self.end_with_source();
        let deadline = std::time::Instant::now() + timeout;
        while !self.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        self.shared.stop.store(STOP_NOW, Ordering::Release);
        self.join()
    }

    fn join(&mut self) -> Result<Counters, EngineError> {
        let out = self.output.take().map(JoinHandle::join);
        let dec = self.decoder.take().map(JoinHandle::join);
        match out {
            Some(Err(_)) => return Err(EngineError::Panicked(OUTPUT_THREAD)),
            Some(Ok(Err(e))) => return Err(e.into()),
            _ => {}
        }
        match dec {
            Some(Err(_)) => return Err(EngineError::Panicked(DECODER_THREAD)),
            Some(Ok(Err(e))) => return Err(e.into()),
            _ => {}
        }
        Ok(self.counters())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if self.output.is_some() || self.decoder.is_some() {
            self.shared.stop.store(STOP_NOW, Ordering::Release);
            let _ = self.join();
        }
    }
}

/// The longest the decoder sleeps when the ring has no room for a chunk:
/// two chunks' playing time. The output thread unparks it whenever it takes
/// frames, so this bound only matters if a wake-up were lost; the decoder
/// still hands the producer the output's timings at least this often.
fn nap_for(chunk: usize, rate: u32) -> Duration {
    Duration::from_micros(chunk as u64 * 2_000_000 / u64::from(rate.max(1)))
}

/// The decoder thread: runs the producer, keeps the ring topped up, and
/// hands the producer the output's timing observations.
struct DecoderLoop {
    /// SCHED_FIFO priority, below the output thread's: the ring is short
    /// (tens of ms), so an ordinary thread starved by a busy machine would
    /// let it run dry.
    realtime_priority: Option<u8>,
    producer: Box<dyn Producer>,
    ring: HeapProd<f32>,
    timings: Option<HeapCons<Timing>>,
    shared: Arc<Shared>,
    channels: usize,
    chunk: usize,
    nap: Duration,
}

impl DecoderLoop {
    fn run(mut self) -> Result<(), DecodeError> {
        if let Some(p) = self.realtime_priority
            && let Err(e) = set_realtime(p)
        {
            debug!("no real-time priority for the decoder thread: {e}");
        }
        let mut buf = vec![0.0f32; self.chunk * self.channels];
        let mut pushed = 0u64;
        let mut xruns_seen = 0u64;
        // Set once: a second `run` on the same engine cannot happen.
        let _ = self.shared.decoder_thread.set(std::thread::current());
        let result = loop {
            if self.shared.stop.load(Ordering::Acquire) == STOP_NOW {
                break Ok(());
            }
            if let Some(timings) = self.timings.as_mut() {
                let before = xruns_seen;
                while let Some(t) = timings.try_pop() {
                    xruns_seen = xruns_seen.max(t.xruns);
                    self.producer.observe(t);
                }
                if xruns_seen != before {
                    // From here on the producer knows: what it pushed
                    // before is stale (the output silences it).
                    self.shared.fresh_from.store(pushed, Ordering::Relaxed);
                    self.shared
                        .producer_xruns
                        .store(xruns_seen, Ordering::Release);
                }
            }
            if self.ring.vacant_len() < buf.len() {
                // Until the output takes frames (it unparks us) or the nap
                // ends; a spurious wake-up only loops.
                std::thread::park_timeout(self.nap);
                continue;
            }
            let device_frame = pushed + self.shared.underrun_frames.load(Ordering::Relaxed);
            match self.producer.produce(&mut buf, device_frame) {
                Ok(0) => {
                    self.shared.source.store(SRC_ENDED, Ordering::Release);
                    break Ok(());
                }
                Ok(n) => {
                    let n = n.min(self.chunk);
                    // Only this thread pushes, so the room checked above is
                    // still there: whole frames always go in.
                    let done = self.ring.push_slice(&buf[..n * self.channels]);
                    debug_assert_eq!(done, n * self.channels);
                    pushed += n as u64;
                    self.shared.decoded.fetch_add(n as u64, Ordering::Relaxed);
                    self.shared
                        .skipped
                        .store(self.producer.skipped_packets(), Ordering::Relaxed);
                }
                Err(e) => {
                    error!("decoding stopped, playing silence: {e}");
                    self.shared.source.store(SRC_FAILED, Ordering::Release);
                    break Err(e);
                }
            }
        };
        self.shared
            .skipped
            .store(self.producer.skipped_packets(), Ordering::Relaxed);
        result
    }
}

/// Asks for SCHED_FIFO at `priority` for the calling thread.
fn set_realtime(priority: u8) -> Result<(), String> {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let value = ThreadPriorityValue::try_from(priority.clamp(1, 99)).map_err(|e| e.to_owned())?;
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .map_err(|e| e.to_string())
}

fn output_thread(
    mut out: OutputLoop,
    shared: Arc<Shared>,
    prefill: usize,
    rt: Option<u8>,
    hook: Option<IterationHook>,
) -> Result<(), SinkError> {
    match rt {
        None => shared.realtime.store(RT_NOT_REQUESTED, Ordering::Relaxed),
        Some(p) => match set_realtime(p) {
            Ok(()) => {
                shared.realtime.store(RT_GRANTED, Ordering::Relaxed);
                debug!(priority = p, "output thread runs SCHED_FIFO");
            }
            Err(e) => {
                shared.realtime.store(RT_REFUSED, Ordering::Relaxed);
                warn!(
                    "no real-time priority for the audio output thread ({e}); \
                     playback may glitch under load (grant CAP_SYS_NICE or an rtprio limit)"
                );
            }
        },
    }
    // Before the loop, waiting is allowed: let the decoder get ahead.
    while out.consumer.occupied_len() < prefill * out.channels
        && shared.source.load(Ordering::Acquire) == SRC_RUNNING
        && shared.stop.load(Ordering::Acquire) != STOP_NOW
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut result = Ok(());
    let mut go_on = true;
    while go_on {
        let mut step = || match out.iterate() {
            Ok(more) => go_on = more,
            Err(e) => {
                result = Err(e);
                go_on = false;
            }
        };
        match hook {
            Some(h) => h(&mut step),
            None => step(),
        }
    }
    if result.is_ok() && shared.stop.load(Ordering::Acquire) == STOP_DRAIN {
        result = out.sink.finish();
    }
    shared.running.store(false, Ordering::Release);
    if let Err(e) = &result {
        error!("audio output stopped: {e}");
    }
    result
}

/// The output thread's state and its loop body. Everything it needs is
/// allocated in [`OutputLoop::new`].
struct OutputLoop {
    sink: Box<dyn Sink>,
    consumer: HeapCons<f32>,
    timings: HeapProd<Timing>,
    shared: Arc<Shared>,
    time: SharedTime,
    channels: usize,
    period: usize,
    realtime_sink: bool,
    /// One period, interleaved.
    buf: Vec<f32>,
    gain: f32,
    /// Largest gain change per frame.
    ramp_step: f32,
    /// Whether frames the producer made before it saw an xrun are played
    /// as silence (see [`OutputLoop::mute_stale`]).
    mute_stale_frames: bool,
    /// Frames taken from the ring so far: the push index of the next one.
    popped: u64,
}

impl OutputLoop {
    fn new(
        sink: Box<dyn Sink>,
        consumer: HeapCons<f32>,
        timings: HeapProd<Timing>,
        shared: Arc<Shared>,
        config: &EngineConfig,
        time: SharedTime,
        mute_stale_frames: bool,
    ) -> OutputLoop {
        let sc = sink.config();
        let channels = usize::from(sc.spec.channels);
        let period = sc.period_frames.max(1) as usize;
        let ramp_frames = (u64::from(sc.spec.rate) * u64::from(config.ramp_ms) / 1000).max(1);
        OutputLoop {
            realtime_sink: sink.is_realtime(),
            sink,
            consumer,
            timings,
            shared,
            time,
            channels,
            period,
            buf: vec![0.0; period * channels],
            gain: config.initial_gain.clamp(0.0, 1.0),
            ramp_step: 1.0 / ramp_frames as f32,
            mute_stale_frames,
            popped: 0,
        }
    }

    /// One period: take frames (or silence), apply gain, write, observe.
    /// Returns whether to go on. No allocation, lock or log in here.
    fn iterate(&mut self) -> Result<bool, SinkError> {
        let stop = self.shared.stop.load(Ordering::Acquire);
        if stop == STOP_NOW {
            return Ok(false);
        }
        let source_done = self.shared.source.load(Ordering::Acquire) != SRC_RUNNING;
        let ch = self.channels;
        let mut frames = self.take(0);
        if frames < self.period {
            // Read again after seeing the source done: frames pushed just
            // before it ended must not be mistaken for missing ones.
            let source_done = source_done || {
                let done = self.shared.source.load(Ordering::Acquire) != SRC_RUNNING;
                if done {
                    frames += self.take(frames);
                }
                done
            };
            if source_done && stop == STOP_DRAIN {
                if frames == 0 {
                    return Ok(false);
                }
                // The last, partial period of a drain: no padding.
                self.apply_gain(frames);
                self.write(frames)?;
                return Ok(false);
            }
            if !self.realtime_sink {
                if source_done {
                    if frames > 0 {
                        self.apply_gain(frames);
                        self.write(frames)?;
                    }
                    // A file must not grow with silence after the end.
                    std::thread::sleep(Duration::from_millis(1));
                    return Ok(true);
                }
                // No deadline to miss: wait for the decoder instead of
                // writing silence into a file.
                while frames < self.period
                    && self.shared.source.load(Ordering::Acquire) == SRC_RUNNING
                    && self.shared.stop.load(Ordering::Acquire) != STOP_NOW
                {
                    std::thread::yield_now();
                    frames += self.take(frames);
                }
                if frames < self.period {
                    // The source just ended or we are stopping: come back.
                    if frames > 0 {
                        self.apply_gain(frames);
                        self.write(frames)?;
                    }
                    return Ok(true);
                }
            } else {
                if !source_done {
                    self.shared.underruns.fetch_add(1, Ordering::Relaxed);
                    self.shared
                        .underrun_frames
                        .fetch_add((self.period - frames) as u64, Ordering::Relaxed);
                }
                self.buf[frames * ch..].fill(0.0);
                frames = self.period;
            }
        }
        self.apply_gain(frames);
        self.write(frames)?;
        Ok(true)
    }

    /// Moves what the ring holds into the period buffer from frame `from`
    /// on; returns the frames taken. Taking frames makes room, so the
    /// decoder is unparked (a futex wake at most: no allocation, no lock).
    fn take(&mut self, from: usize) -> usize {
        let ch = self.channels;
        let n = self.consumer.pop_slice(&mut self.buf[from * ch..]) / ch;
        if n > 0
            && let Some(decoder) = self.shared.decoder_thread.get()
        {
            decoder.unpark();
        }
        self.mute_stale(from, n);
        self.popped += n as u64;
        n
    }

    /// Silences those of the `n` frames just taken (at `from` in the
    /// period buffer) that the producer made before it saw the last xrun.
    ///
    /// Why: a synchronised producer renders each frame for the instant the
    /// device was going to play it. An xrun stops the device; it restarts
    /// later, so everything already in the ring — and whatever the
    /// producer makes until it hears of the xrun — would play late by the
    /// length of the stall: audible wrong sound, tens of ms of it. Silence
    /// keeps the device's frame count (so the producer's device indices
    /// stay exact) and the producer, which re-learns the timing, fades in
    /// at the right place. Not for a plain source (no timing to re-learn:
    /// playing on is right there).
    fn mute_stale(&mut self, from: usize, n: usize) {
        let xruns = self.shared.xruns.load(Ordering::Relaxed);
        if !self.mute_stale_frames || n == 0 || xruns == 0 {
            return;
        }
        let stale = if self.shared.producer_xruns.load(Ordering::Acquire) < xruns {
            n
        } else {
            let fresh_from = self.shared.fresh_from.load(Ordering::Relaxed);
            usize::try_from(fresh_from.saturating_sub(self.popped)).map_or(n, |s| s.min(n))
        };
        let ch = self.channels;
        self.buf[from * ch..(from + stale) * ch].fill(0.0);
    }

    /// Multiplies the first `frames` frames by the gain, moving it towards
    /// the target by at most `ramp_step` per frame.
    fn apply_gain(&mut self, frames: usize) {
        let target = f32::from_bits(self.shared.gain_target.load(Ordering::Relaxed));
        let ch = self.channels;
        for frame in self.buf[..frames * ch].chunks_exact_mut(ch) {
            if self.gain != target {
                let d = target - self.gain;
                self.gain = if d.abs() <= self.ramp_step {
                    target
                } else {
                    self.gain + self.ramp_step.copysign(d)
                };
            }
            if self.gain != 1.0 {
                for s in frame {
                    *s *= self.gain;
                }
            }
        }
    }

    /// Writes the first `frames` frames, recovering from xruns.
    fn write(&mut self, frames: usize) -> Result<(), SinkError> {
        let ch = self.channels;
        let mut off = 0;
        // Bounded: a device that xruns on every write of one period is
        // broken, not late.
        for _ in 0..8 {
            match self.sink.write(&self.buf[off * ch..frames * ch]) {
                Ok(()) => {
                    off = frames;
                    break;
                }
                Err(SinkError::Xrun { written }) => {
                    self.shared.xruns.fetch_add(1, Ordering::Relaxed);
                    off += written;
                    self.sink.recover()?;
                    if self.mute_stale_frames {
                        // The rest of this period was made for the old run.
                        self.buf[off * ch..frames * ch].fill(0.0);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        if off < frames {
            return Err(SinkError::Xrun { written: off });
        }
        let written = self
            .shared
            .frames_written
            .fetch_add(frames as u64, Ordering::Relaxed)
            + frames as u64;
        let delay = match self.sink.delay() {
            Ok(d) => d,
            Err(SinkError::Xrun { .. }) => {
                self.shared.xruns.fetch_add(1, Ordering::Relaxed);
                self.sink.recover()?;
                0
            }
            Err(e) => return Err(e),
        };
        self.shared.delay.store(delay, Ordering::Relaxed);
        self.shared.ring_fill.store(
            (self.consumer.occupied_len() / ch) as u64,
            Ordering::Relaxed,
        );
        let timing = Timing {
            frames_written: written,
            delay,
            at_ns: self.time.now_ns(),
            underrun_frames: self.shared.underrun_frames.load(Ordering::Relaxed),
            xruns: self.shared.xruns.load(Ordering::Relaxed),
        };
        if self.timings.try_push(timing).is_err() {
            self.shared.timings_dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::audio::output::{MonotonicRawClock, SampleFormat, SinkConfig};

    /// Xruns the scripted sink reports.
    const XRUNS: u64 = 3;
    const PERIOD: u32 = 256;
    /// Frames of sound a run must have had before the sink xruns (or, for
    /// the last run, before the test ends): by the producer's progress,
    /// not the clock, so a starved test machine only makes it slower.
    const SOUND_PER_RUN: usize = 4 * PERIOD as usize;

    /// What the scripted sink saw: for every frame written, the run it was
    /// written in (xruns before it) and its channel-0 sample.
    #[derive(Default)]
    struct Seen {
        frames: Vec<(u64, f32)>,
        /// Frames of sound written in the current run.
        sound_in_run: usize,
        run: u64,
    }

    impl Seen {
        fn done(&self) -> bool {
            self.run == XRUNS && self.sound_in_run >= SOUND_PER_RUN
        }
    }

    /// A device paced at 0.5 ms per period that runs dry half-way through
    /// a write once the run has had [`SOUND_PER_RUN`] frames of sound,
    /// [`XRUNS`] times.
    struct ScriptedSink {
        seen: Arc<Mutex<Seen>>,
    }

    impl Sink for ScriptedSink {
        fn config(&self) -> SinkConfig {
            SinkConfig {
                spec: StreamSpec {
                    rate: 48_000,
                    channels: 2,
                },
                period_frames: PERIOD,
                buffer_frames: 4 * PERIOD,
                format: SampleFormat::F32,
            }
        }
        fn is_realtime(&self) -> bool {
            true
        }
        fn write(&mut self, samples: &[f32]) -> Result<(), SinkError> {
            std::thread::sleep(Duration::from_micros(500));
            let mut seen = self.seen.lock().expect("not poisoned");
            let frames: Vec<f32> = samples.chunks_exact(2).map(|f| f[0]).collect();
            let xrun = seen.run < XRUNS && seen.sound_in_run >= SOUND_PER_RUN;
            let written = if xrun { frames.len() / 2 } else { frames.len() };
            let run = seen.run;
            seen.frames
                .extend(frames[..written].iter().map(|&v| (run, v)));
            seen.sound_in_run += frames[..written].iter().filter(|&&v| v != 0.0).count();
            if xrun {
                return Err(SinkError::Xrun { written });
            }
            Ok(())
        }
        fn delay(&mut self) -> Result<i64, SinkError> {
            Ok(i64::from(2 * PERIOD))
        }
        fn recover(&mut self) -> Result<(), SinkError> {
            let mut seen = self.seen.lock().expect("not poisoned");
            seen.run += 1;
            seen.sound_in_run = 0;
            Ok(())
        }
        fn xruns(&self) -> u64 {
            self.seen.lock().expect("not poisoned").run
        }
        fn finish(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    /// Makes frames whose value says how many xruns it had heard of:
    /// `1 + xruns`.
    struct EpochProducer {
        xruns: u64,
    }

    impl Producer for EpochProducer {
        fn produce(&mut self, out: &mut [f32], _device_frame: u64) -> Result<usize, DecodeError> {
            out.fill(1.0 + self.xruns as f32);
            Ok(out.len() / 2)
        }
        fn observe(&mut self, t: Timing) {
            self.xruns = t.xruns;
        }
    }

    #[test]
    fn frames_made_before_an_xrun_are_not_played_after_it() {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let sink = ScriptedSink {
            seen: Arc::clone(&seen),
        };
        let config = EngineConfig {
            ring_frames: 4_096,
            prefill_frames: 2_048,
            chunk_frames: 256,
            realtime_priority: None,
            ..EngineConfig::default()
        };
        let engine = Engine::start_producer(
            Box::new(EpochProducer { xruns: 0 }),
            Box::new(sink),
            config,
            Arc::new(MonotonicRawClock),
        )
        .expect("starts");
        // Each run must bring sound back for the next xrun to come.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !seen.lock().expect("not poisoned").done() {
            let s = seen.lock().expect("not poisoned");
            assert!(
                std::time::Instant::now() < deadline,
                "no sound in run {} ({} frames of it so far)",
                s.run,
                s.sound_in_run
            );
            drop(s);
            std::thread::sleep(Duration::from_millis(5));
        }
        let counters = engine.stop().expect("stops cleanly");
        assert_eq!(counters.xruns, XRUNS);
        let seen = seen.lock().expect("not poisoned");
        for (i, &(run, v)) in seen.frames.iter().enumerate() {
            // 0: silence (muted, or an underrun); else made after hearing
            // of this run's xrun.
            assert!(
                v == 0.0 || v == 1.0 + run as f32,
                "frame {i} of run {run} was made for run {}",
                v - 1.0
            );
        }
    }
}
