//! Lifeguard's lesson: a member whose own event loop runs late must not
//! accuse the others of the silence it caused itself. The leader's timers
//! fire 250 ms late for a while (a stalled Pi, a GC-like pause); nobody
//! is evicted.

use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn a_late_leader_evicts_nobody() {
    for seed in 0..8 {
        let mut sim = Sim::new(seed, 5, 0, NetConfig::default());
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: no room"
        );
        let start = sim.now();
        let leader = sim.leader().expect("leader");
        sim.set_loop_lag(leader, ms(250));
        sim.run_with_votes(ms(3_000), 1.0);
        sim.set_loop_lag(leader, 0);
        sim.run_with_votes(ms(2_000), 1.0);
        sim.finish();
        sim.assert_invariants();
        let removed: Vec<_> = sim
            .metrics
            .removals
            .iter()
            .filter(|r| r.0 > start)
            .collect();
        assert!(removed.is_empty(), "seed {seed}: evicted {removed:?}");
        assert!(
            sim.run_until_converged(2, ms(1_000)).is_some(),
            "seed {seed}: {:?}",
            sim.rooms()
        );
    }
}
