//! Four real node processes, each in its own network namespace, play the
//! timecode stem on virtual DACs at −150, −50, +50 and +150 ppm with node
//! clocks offset by seconds and skewed by up to ±100 ppm, through a seek
//! and a pause; their recorded emissions are compared instant by instant
//! (see `autoharmonize_tests::sync_run`). Needs root (namespaces); with
//! `CI=true` a missing prerequisite fails.
//!
//! Asserts: every seek heard within 1 ms on all nodes (the bound),
//! and inter-node sync error p99 ≤ 100 µs. The 50 µs target is
//! measured over 10 minutes by `bench-sync` (docs/benchmarks.md); this
//! test runs beside the rest of the suite on a shared 2-core machine,
//! where it measured p50 17 µs and p99 29 µs with other builds loading
//! both cores (load average 7), so its bound guards against regressions
//! without failing on a noisy neighbour. Xruns are printed, not asserted,
//! for the same reason (the soak benchmark counts them).

mod audio_support;

use autoharmonize_tests::sync_run::{self, SyncReport};

#[test]
fn four_nodes_play_in_sync_through_seeks_and_pauses() {
    if !audio_support::prerequisite(
        nix::unistd::Uid::effective().is_root(),
        "root (network namespaces)",
    ) {
        return;
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_autoharmonize-node"));
    let r = sync_run::run(bin, 40, 20).expect("the sync run completes");
    let q = |v: &[f64], x| SyncReport::quantile(v, x);
    eprintln!(
        "{} of {} instants readable; spread p50 {:.1} µs p99 {:.1} µs max {:.1} µs; seek change spreads {:?} µs; nodes (xruns, underruns, recues, late) {:?}",
        r.spreads_us.len(),
        r.instants,
        q(&r.spreads_us, 0.5),
        q(&r.spreads_us, 0.99),
        q(&r.spreads_us, 1.0),
        r.change_spreads_us,
        r.nodes
    );
    assert!(
        r.spreads_us.len() > r.instants / 2,
        "too few readable instants: {} of {}",
        r.spreads_us.len(),
        r.instants
    );
    assert!(
        q(&r.spreads_us, 0.99) <= 100.0,
        "sync p99 {:.1} µs",
        q(&r.spreads_us, 0.99)
    );
    assert_eq!(
        r.change_spreads_us.len(),
        r.seeks + 1,
        "every seek's change was seen on all nodes"
    );
    assert!(
        r.change_spreads_us.iter().all(|&s| s <= 1_000.0),
        "a change was heard more than 1 ms apart: {:?}",
        r.change_spreads_us
    );
}
