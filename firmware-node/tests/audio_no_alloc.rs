//! The output loop does not allocate in steady state, on its real thread.
//!
//! This test binary's global allocator is `assert_no_alloc`'s, which counts
//! (de)allocations made by a thread inside `assert_no_alloc(|| …)` (the
//! `warn_debug` feature counts instead of aborting). The engine's
//! [`EngineConfig::iteration_hook`] wraps every output-loop iteration in it
//! and adds the thread's violation count to a static; other threads (the
//! decoder, this test) allocate freely. The run covers every branch of the
//! loop body: full periods, underruns (the virtual DAC on a manual clock
//! runs faster than the decoder), gain ramps, and xruns with recovery
//! (forced by jumping the clock).

// `assert_no_alloc` checks (and has `violation_count`) only with debug
// assertions; in a release build this file is empty rather than vacuous.
#![cfg(debug_assertions)]

mod audio_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use assert_no_alloc::{AllocDisabler, assert_no_alloc, violation_count};
use audio_support::{samples, write_wav};
use autoharmonize_node::audio::StreamSpec;
use autoharmonize_node::audio::engine::{Engine, EngineConfig};
use autoharmonize_node::audio::output::{
    ManualClock, SinkRequest, TimeSource as _, VirtualDac, VirtualDacConfig,
};
use autoharmonize_node::audio::track::{StemChoice, Track};

#[global_allocator]
static ALLOCATOR: AllocDisabler = AllocDisabler;

static VIOLATIONS: AtomicU32 = AtomicU32::new(0);
static ITERATIONS: AtomicU64 = AtomicU64::new(0);

/// Runs one iteration with allocation forbidden and records the result.
fn guarded(iteration: &mut dyn FnMut()) {
    let before = violation_count();
    assert_no_alloc(iteration);
    VIOLATIONS.fetch_add(violation_count() - before, Ordering::Relaxed);
    ITERATIONS.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn the_instrument_sees_an_allocation() {
    // If this fails, the allocator is not counting and the test below
    // proves nothing.
    let before = violation_count();
    assert_no_alloc(|| {
        let v = std::hint::black_box(vec![1u8; 64]);
        drop(v);
    });
    assert!(violation_count() > before);
}

#[test]
fn the_output_loop_does_not_allocate() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_wav(
        &dir.path().join("drums.wav"),
        48_000,
        2,
        &samples(48_000 * 20, 2, 9),
    );
    let track = Track::open(dir.path()).expect("track");
    let source = track.open_source(&StemChoice::Index(0)).expect("source");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let req = SinkRequest {
        spec: StreamSpec {
            rate: 48_000,
            channels: 2,
        },
        period_frames: 256,
        periods: 4,
    };
    let dac = VirtualDac::new(
        &req,
        VirtualDacConfig {
            ppb: 50_000,
            offset_ns: 0,
        },
        clock.clone(),
    );
    let config = EngineConfig {
        realtime_priority: None,
        iteration_hook: Some(guarded),
        ..EngineConfig::default()
    };
    let engine = Engine::start(source, Box::new(dac), config, clock.clone()).expect("starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut step = 0u32;
    // At least 200 steps of the test thread (so the clock jumps below
    // happen) and 20 000 iterations of the output loop.
    while (step < 200 || ITERATIONS.load(Ordering::Relaxed) < 20_000) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
        step += 1;
        // Gain changes (ramps) and, now and then, a clock jump the DAC
        // sees as running dry (xrun, recover).
        engine.set_gain(if step.is_multiple_of(2) { 0.2 } else { 0.9 });
        if step.is_multiple_of(10) {
            clock.sleep_until_ns(clock.now_ns() + 50_000_000);
        }
    }
    let c = engine.counters();
    let iterations = ITERATIONS.load(Ordering::Relaxed);
    let stopped = engine.stop();
    eprintln!("{iterations} iterations, {c:?}");
    assert!(iterations >= 20_000, "ran {iterations} iterations");
    assert!(c.xruns > 0, "the xrun path was exercised");
    assert!(c.underruns > 0, "the underrun path was exercised");
    assert!(c.frames_written > 48_000, "real audio went through");
    assert_eq!(
        VIOLATIONS.load(Ordering::Relaxed),
        0,
        "the output loop allocated"
    );
    assert!(stopped.is_ok(), "{stopped:?}");
}
