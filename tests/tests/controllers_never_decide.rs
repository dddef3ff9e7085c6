//! Controllers vote and observe but never count toward a majority: a room of
//! two speakers and three laptops keeps deciding when every laptop closes
//! its lid, and three laptops cannot decide without a speaker.

use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::ids::Channel;
use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn laptops_do_not_change_who_decides() {
    for seed in 0..8 {
        // Processes 0 and 1 are speakers, 2..5 controllers.
        let mut sim = Sim::new(seed, 2, 3, NetConfig::default());
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: no room"
        );
        // A controller's vote is decided like any other.
        assert!(
            sim.cast(
                3,
                Event::Play {
                    channel: Channel::All
                }
            ),
            "seed {seed}"
        );
        sim.run_until(sim.now() + ms(500));
        // All laptops go away: the speakers keep deciding.
        for c in 2..5 {
            sim.crash(c);
        }
        let gone = sim.now();
        sim.run_with_votes(ms(2_000), 2.0);
        let speaker_commits = sim
            .metrics
            .decisions
            .iter()
            .filter(|d| d.0 > gone + ms(500) && d.1 < 2)
            .count();
        assert!(speaker_commits > 20, "seed {seed}: speakers stalled");
        // Laptops back, speakers cut off: the laptops cannot decide.
        for c in 2..5 {
            sim.start(c);
        }
        sim.run_until(sim.now() + ms(2_000));
        sim.partition(&[0, 1]);
        let cut = sim.now();
        sim.run_until(sim.now() + ms(3_000));
        let laptop_commits = sim
            .metrics
            .decisions
            .iter()
            .filter(|d| d.0 > cut + ms(500) && d.1 >= 2)
            .count();
        assert_eq!(laptop_commits, 0, "seed {seed}: controllers decided alone");
        sim.finish();
        sim.assert_invariants();
    }
}
