//! Suspect before evict: at 10 % loss and 30 ms jitter, no live member is
//! ever removed from the view, because silence is judged on direct and
//! relayed evidence ("a peer that hears you is proof you are alive").

use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn no_live_member_is_evicted_under_heavy_loss() {
    let net = NetConfig {
        loss: 0.10,
        jitter: ms(30),
        ..NetConfig::default()
    };
    for seed in 0..6 {
        let mut sim = Sim::new(seed, 8, 1, net.clone());
        assert!(
            sim.run_until_converged(2, ms(8_000)).is_some(),
            "seed {seed}: no room"
        );
        let formed = sim.now();
        sim.run_with_votes(ms(60_000), 1.0);
        sim.finish();
        sim.assert_invariants();
        let evicted: Vec<_> = sim
            .metrics
            .removals
            .iter()
            .filter(|r| r.0 > formed)
            .collect();
        assert!(
            evicted.is_empty(),
            "seed {seed}: live members evicted: {evicted:?}"
        );
        assert!(
            sim.run_until_converged(2, ms(1_000)).is_some(),
            "seed {seed}: {:?}",
            sim.rooms()
        );
    }
}
