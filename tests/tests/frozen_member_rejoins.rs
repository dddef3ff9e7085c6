//! A member frozen for 3 s (SIGSTOP) is treated like a crashed one: the
//! others keep deciding and drop it; when it resumes (SIGCONT) it rejoins
//! without disturbing them, whether it was a follower or the leader.

use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn frozen_member_is_dropped_then_rejoins() {
    let net = NetConfig {
        loss: 0.02,
        jitter: ms(20),
        ..NetConfig::default()
    };
    for seed in 0..10 {
        let mut sim = Sim::new(seed, 5, 0, net.clone());
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: no room"
        );
        let leader = sim.leader().expect("leader");
        let victim = if seed % 2 == 0 {
            leader
        } else {
            (leader + 2) % 5
        };
        let id = sim.id(victim);
        sim.freeze(victim, ms(3_000));
        let frozen = sim.now();
        sim.run_with_votes(ms(1_500), 2.0);
        let others: Vec<usize> = (0..5).filter(|&i| i != victim).collect();
        assert!(
            sim.holders_of(id).iter().all(|h| *h == victim),
            "seed {seed}: still in the others' view 1.5 s after freezing"
        );
        let decided = sim
            .metrics
            .decisions
            .iter()
            .filter(|d| d.0 > frozen + ms(1_000) && others.contains(&d.1))
            .count();
        assert!(decided > 10, "seed {seed}: the others stopped deciding");
        sim.run_with_votes(ms(1_600), 2.0); // thaws at 3 s
        assert!(
            sim.run_until_converged(2, ms(3_000)).is_some(),
            "seed {seed}: did not rejoin: {:?}",
            sim.rooms()
        );
        sim.finish();
        sim.assert_invariants();
    }
}
