//! Seeded random fault schedules over a whole room (in the spirit of
//! TigerBeetle's VOPR): crashes and restarts, goodbyes, partitions of every
//! shape including one-way ones, frozen processes and late event loops, under
//! loss, duplication and jitter, with votes flowing throughout. Every run
//! must keep agreement and validity, and once the faults stop the room must
//! come back together and decide again. A failure prints its seed; replay it
//! with `AUTOHARMONIZE_SEED=<seed>`.
//!
//! `AUTOHARMONIZE_SEEDS` sets how many seeds run (default 300).

use autoharmonize_tests::sim::{NetConfig, Sim, ms};
use rand::Rng;

fn run_seed(seed: u64) {
    let net = NetConfig {
        loss: 0.03,
        duplicate: 0.01,
        jitter: ms(25),
        ..NetConfig::default()
    };
    let speakers = 3 + (seed % 5) as usize;
    let mut sim = Sim::new(seed, speakers, 1, net);
    let n = sim.len();
    sim.run_until(ms(2_000));
    let end = sim.now() + ms(20_000);
    while sim.now() < end {
        let wait = sim.rng().random_range(ms(200)..ms(1_500));
        sim.run_with_votes(wait, 3.0);
        let victim = sim.rng().random_range(0..n);
        match sim.rng().random_range(0..10) {
            0 => sim.crash(victim),
            1 => sim.stop(victim),
            2 | 3 => {
                if !sim.alive(victim) {
                    sim.start(victim);
                }
            }
            4 => {
                let size = sim.rng().random_range(1..=n / 2);
                let mut side: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    let j = sim.rng().random_range(0..=i);
                    side.swap(i, j);
                }
                side.truncate(size);
                sim.partition(&side);
            }
            5 => {
                let other = sim.rng().random_range(0..n);
                sim.block(victim, other);
            }
            6 => {
                let dur = sim.rng().random_range(ms(200)..ms(3_500));
                sim.freeze(victim, dur);
            }
            7 => {
                let lag = sim.rng().random_range(0..ms(300));
                sim.set_loop_lag(victim, lag);
            }
            _ => sim.heal(),
        }
    }
    // Faults stop: heal, restart the dead, clear lags; the room must form
    // again and decide.
    sim.heal();
    for i in 0..n {
        sim.set_loop_lag(i, 0);
        if !sim.alive(i) {
            sim.start(i);
        }
    }
    let converged = sim.run_until_converged(2, ms(15_000));
    sim.finish();
    sim.assert_invariants();
    assert!(
        converged.is_some(),
        "seed {seed}: the room did not come back together: {:?}",
        sim.rooms()
    );
    let before = sim.metrics.decisions.len();
    sim.run_until(sim.now() + ms(1_000));
    assert!(
        sim.metrics.decisions.len() > before + 5 * n,
        "seed {seed}: no progress after the faults stopped"
    );
}

#[test]
fn random_faults_keep_agreement_and_the_room_recovers() {
    if let Some(seed) = std::env::var("AUTOHARMONIZE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_seed(seed);
        return;
    }
    let seeds: u64 = std::env::var("AUTOHARMONIZE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for seed in 0..seeds {
        run_seed(seed);
    }
}
