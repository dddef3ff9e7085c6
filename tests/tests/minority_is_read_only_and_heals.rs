//! A partition cuts a minority off: the majority keeps deciding, the
//! minority keeps its last agreed state, refuses votes and commits nothing
//! new; after the heal every member holds the same state within 5 rounds.

use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::ids::Channel;
use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn minority_is_read_only_and_converges_after_heal() {
    let net = NetConfig {
        loss: 0.02,
        jitter: ms(30),
        ..NetConfig::default()
    };
    let mut worst_heal = 0;
    for seed in 0..12 {
        let mut sim = Sim::new(seed, 5, 0, net.clone());
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: no room"
        );
        sim.run_with_votes(ms(2_000), 2.0);
        // Cut off two members; every other seed the leader is among them.
        let leader = sim.leader().expect("formed room has a leader");
        let other = (leader + 1 + seed as usize % 3) % 5;
        let minority = if seed % 2 == 0 {
            vec![leader, other]
        } else {
            vec![(leader + 1) % 5, (leader + 2) % 5]
        };
        let majority: Vec<usize> = (0..5).filter(|i| !minority.contains(i)).collect();
        sim.partition(&minority);
        let cut = sim.now();
        sim.run_with_votes(ms(600), 2.0);
        // After detection the minority refuses control changes.
        for &i in &minority {
            let accepted = sim.cast(
                i,
                Event::Pause {
                    channel: Channel::All,
                },
            );
            assert!(
                !accepted,
                "seed {seed}: minority member {i} accepted a vote"
            );
        }
        let before = sim.metrics.decisions.len();
        sim.run_with_votes(ms(2_400), 2.0);
        let during = &sim.metrics.decisions[before..];
        assert!(
            during.iter().all(|d| !minority.contains(&d.1)),
            "seed {seed}: the minority committed during the partition"
        );
        let majority_commits = during.iter().filter(|d| majority.contains(&d.1)).count();
        assert!(
            majority_commits > 20 * majority.len(),
            "seed {seed}: majority stalled ({majority_commits} commits in 2.4 s)"
        );
        sim.heal();
        let healed = sim.run_until_converged(2, ms(3_000));
        let took =
            healed.unwrap_or_else(|| panic!("seed {seed}: no convergence {:?}", sim.rooms()));
        assert!(
            took <= ms(500),
            "seed {seed}: converged {} ms after heal (cut at {} ms)",
            took / 1_000_000,
            cut / 1_000_000
        );
        worst_heal = worst_heal.max(took);
        sim.run_with_votes(ms(2_000), 2.0);
        sim.finish();
        sim.assert_invariants();
    }
    println!("worst heal: {} ms", worst_heal / 1_000_000);
}
