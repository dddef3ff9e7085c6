//! An exact half split: the side holding the reference (the longest-lived
//! speaker) keeps deciding, the other half is read-only.

use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn the_half_with_the_reference_keeps_deciding() {
    for seed in 0..10 {
        let mut sim = Sim::new(seed, 4, 0, NetConfig::default());
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: no room"
        );
        let leader = sim.leader().expect("leader");
        let st = sim
            .member(leader)
            .expect("alive")
            .status(sim.local_now(leader));
        let reference = st.view.first().expect("non-empty view").id;
        let r = (0..4)
            .find(|&i| sim.id(i) == reference)
            .expect("reference runs");
        let partner = (r + 1 + seed as usize % 3) % 4;
        let with_ref = vec![r, partner];
        let without: Vec<usize> = (0..4).filter(|i| !with_ref.contains(i)).collect();
        sim.partition(&with_ref);
        let cut = sim.now();
        sim.run_with_votes(ms(4_000), 2.0);
        let late = cut + ms(1_500);
        let decided_by = |side: &[usize]| {
            sim.metrics
                .decisions
                .iter()
                .filter(|d| side.contains(&d.1) && d.0 > late)
                .count()
        };
        assert!(
            decided_by(&with_ref) > 30,
            "seed {seed}: reference side stalled: {} decisions after {} ms, {} in total",
            decided_by(&with_ref),
            late / 1_000_000,
            sim.metrics.decisions.len()
        );
        assert_eq!(
            decided_by(&without),
            0,
            "seed {seed}: the other half decided"
        );
        sim.heal();
        assert!(
            sim.run_until_converged(2, ms(3_000)).is_some(),
            "seed {seed}: {:?}",
            sim.rooms()
        );
        sim.finish();
        sim.assert_invariants();
    }
}
