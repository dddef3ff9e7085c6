//! A member killed without a goodbye (kill -9) is out of every live member's
//! view, and the room is deciding rounds again, within 1 s — whichever member
//! dies, the leader included. (Issue target: "A crashed member is out of the
//! view and no longer awaited within 1 s of mesh time".)

use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn crashed_member_is_removed_within_one_second() {
    let net = NetConfig {
        loss: 0.02,
        jitter: ms(30),
        ..NetConfig::default()
    };
    let mut worst_removal = 0;
    let mut worst_gap = 0;
    for seed in 0..10 {
        let mut sim = Sim::new(seed, 6, 0, net.clone());
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: no room"
        );
        for k in 0..4 {
            // Alternate between killing the leader and a follower.
            let victim = if k % 2 == 0 {
                sim.leader().expect("a formed room has a leader")
            } else {
                (sim.leader().expect("leader") + 1 + k) % sim.len()
            };
            let id = sim.id(victim);
            sim.crash(victim);
            let crashed = sim.now();
            let commits_before = sim.metrics.decisions.len();
            while !sim.holders_of(id).is_empty() && sim.now() < crashed + ms(3_000) {
                sim.run_until(sim.now() + ms(10));
            }
            let removal = sim.now() - crashed;
            assert!(
                removal <= ms(1_000),
                "seed {seed}: member {id} still in a view {} ms after its crash",
                removal / 1_000_000
            );
            worst_removal = worst_removal.max(removal);
            // Rounds are decided again: the first commit after the crash.
            let first_commit = sim.metrics.decisions[commits_before..]
                .iter()
                .map(|d| d.0)
                .min()
                .expect("commits continue");
            worst_gap = worst_gap.max(first_commit - crashed);
            sim.start(victim);
            assert!(
                sim.run_until_converged(2, ms(5_000)).is_some(),
                "seed {seed}: restarted member did not rejoin: {:?}",
                sim.rooms()
            );
        }
        sim.assert_invariants();
    }
    println!(
        "worst removal {} ms, worst time to next commit {} ms",
        worst_removal / 1_000_000,
        worst_gap / 1_000_000
    );
    assert!(worst_gap <= ms(1_000));
}
