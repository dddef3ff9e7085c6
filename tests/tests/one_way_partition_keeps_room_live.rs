//! One-way partitions, where livelocks hide: a member that can hear but not
//! be heard (or the reverse) must not stop the others from deciding, must
//! not be able to depose a working leader forever, and must rejoin on heal.

use autoharmonize_tests::sim::{NetConfig, Sim, ms};

fn longest_gap_among(sim: &Sim, nodes: &[usize], from: u64, to: u64) -> u64 {
    let mut times: Vec<u64> = sim
        .metrics
        .decisions
        .iter()
        .filter(|d| nodes.contains(&d.1) && d.0 >= from && d.0 <= to)
        .map(|d| d.0)
        .collect();
    times.sort_unstable();
    times.dedup();
    let mut gap = times.first().map_or(to - from, |&t| t - from);
    for w in times.windows(2) {
        gap = gap.max(w[1] - w[0]);
    }
    gap.max(to - times.last().copied().unwrap_or(from))
}

#[test]
fn deaf_or_mute_member_does_not_stall_the_room() {
    let net = NetConfig {
        loss: 0.01,
        jitter: ms(20),
        ..NetConfig::default()
    };
    for seed in 0..12 {
        let mut sim = Sim::new(seed, 5, 0, net.clone());
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: no room"
        );
        let leader = sim.leader().expect("leader");
        // Seeds alternate: the leader goes mute, the leader goes deaf, a
        // follower goes mute, a follower goes deaf.
        let victim = if seed % 4 < 2 {
            leader
        } else {
            (leader + 1) % 5
        };
        let mute = seed % 2 == 0;
        for other in (0..5).filter(|&o| o != victim) {
            if mute {
                sim.block(victim, other);
            } else {
                sim.block(other, victim);
            }
        }
        let cut = sim.now();
        sim.run_with_votes(ms(5_000), 2.0);
        let rest: Vec<usize> = (0..5).filter(|&o| o != victim).collect();
        let gap = longest_gap_among(&sim, &rest, cut, sim.now());
        assert!(
            gap <= ms(1_000),
            "seed {seed}: victim {victim} (mute: {mute}): the others went {} ms without a decision",
            gap / 1_000_000
        );
        sim.heal();
        assert!(
            sim.run_until_converged(2, ms(3_000)).is_some(),
            "seed {seed}: no convergence after heal: {:?}",
            sim.rooms()
        );
        sim.finish();
        sim.assert_invariants();
    }
}
