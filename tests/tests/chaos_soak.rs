//! The chaos soak in CI: two fixed seeds, about a minute each, five real
//! speakers in network namespaces, the real controller and fake buttons
//! voting, random faults of every kind (see `autoharmonize_tests::chaos`
//! and docs/chaos.md). Every invariant must hold: agreement, a read-only
//! minority, convergence after each heal, sync, no xruns outside deliberate
//! starvation, no panic. A failure prints each violation with its time,
//! seed and the faults before it; rerun one seed for an hour with
//! `cargo run --release -p autoharmonize-tests --bin chaos -- --seed N`.
//!
//! `AUTOHARMONIZE_CHAOS_SECONDS` changes the length of each seed's run
//! (default 50).

use std::time::Duration;

use autoharmonize_tests::chaos::{self, ChaosConfig};
use autoharmonize_tests::netns;

/// Seeds of the CI run, chosen once and fixed (new ones found by the
/// benchmark's long runs go here when they found a bug).
const SEEDS: [u64; 2] = [11, 2026];

/// Heal bound in CI: twice the benchmark's (`chaos::HEAL_BOUND`, 5 rounds
/// plus 250 ms of measuring). CI machines are shared and, while these tests
/// run, compile the release package in the background; the hour-long
/// benchmark saw one heal in 586 just over the strict bound, and a room
/// that fails to converge (a merge that never happens, a member never
/// readmitted) is off by seconds, not by 100 ms.
const CI_HEAL_BOUND: Duration = Duration::from_millis(1_500);

/// Sync bound in CI: a slip of 1 ms (48 frames) for 50 ms; the benchmark
/// holds 250 µs (`chaos::SYNC_BOUND_US`). A lost anchor, a skipped or
/// doubled period or a wrong rate estimate goes far past either.
const CI_SYNC_BOUND_US: f64 = 1_000.0;

#[test]
fn chaos_soak_keeps_every_invariant() {
    if !netns::require_root_or_skip("chaos_soak_keeps_every_invariant") {
        return;
    }
    let seconds: u64 = std::env::var("AUTOHARMONIZE_CHAOS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let node_bin = chaos::build_workspace_bin("autoharmonize-node", "autoharmonize-node");
    let controller_bin = chaos::build_workspace_bin("autoharmonize-controller", "autoharmonize");
    let mut failures = Vec::new();
    let mut faults = 0;
    let mut spreads = 0;
    let mut heals = 0;
    for seed in SEEDS {
        let cfg = ChaosConfig {
            nodes: 5,
            duration: Duration::from_secs(seconds),
            seed,
            node_bin: node_bin.clone(),
            controller_bin: controller_bin.clone(),
            verbose: true,
            keep_logs: None,
            heal_bound: CI_HEAL_BOUND,
            sync_bound_us: CI_SYNC_BOUND_US,
        };
        let r = chaos::run(&cfg).expect("the chaos run starts");
        println!(
            "seed {seed}: {} faults {:?}, {} heals, {} rejoins, {} sync instants (p99 {:.1} µs, max {:.1} µs), {} minority checks, controller {:?}, stall {:?}",
            r.fault_count(),
            r.faults,
            r.heals.len(),
            r.rejoins.len(),
            r.spreads_us.len(),
            r.sync_quantile(0.99),
            r.sync_quantile(1.0),
            r.minority_checks,
            r.controller,
            r.longest_stall
        );
        faults += r.fault_count();
        spreads += r.spreads_us.len();
        heals += r.heals.len() + r.rejoins.len();
        failures.extend(r.violations.iter().map(ToString::to_string));
    }
    assert!(
        failures.is_empty(),
        "invariant violations:\n{}",
        failures.join("\n")
    );
    // The checks must have had something to check.
    assert!(faults >= 10, "only {faults} faults injected");
    assert!(heals >= 5, "only {heals} heals measured");
    assert!(spreads >= 1_000, "only {spreads} sync instants measured");
}
