//! Members that start together find each other, form one room, and agree on
//! every decision while votes flow.

use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn five_speakers_form_one_room_and_agree() {
    for seed in 0..20 {
        let mut sim = Sim::new(seed, 5, 1, NetConfig::default());
        sim.run_until(ms(3_000));
        assert!(sim.converged(2), "seed {seed}: rooms {:?}", sim.rooms());
        sim.run_with_votes(ms(10_000), 3.0);
        sim.run_until(sim.now() + ms(1_000));
        sim.finish();
        sim.assert_invariants();
        assert!(
            sim.metrics.votes_cast > 10,
            "seed {seed}: {:?}",
            sim.metrics.votes_cast
        );
        assert_eq!(
            sim.metrics.votes_applied, sim.metrics.votes_cast,
            "seed {seed}: every vote of a healthy room is applied"
        );
    }
}
