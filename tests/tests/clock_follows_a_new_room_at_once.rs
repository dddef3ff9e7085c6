//! Regression (chaos soak, seed 1, the 60-minute run of 2026-12-07, the
//! first of its three sync violations): a speaker that moves to another
//! room (a merge, a re-founded room) starts its mesh clock estimate over.
//! It used its first estimate, from one exchange, until the fourth
//! exchange, while the error bound it reported (and the node's audio start
//! gate read) was already the tighter one of the later exchanges: a
//! speaker started playing 400 µs off the room. The mapping in use must be
//! within the bound the member reports for it, from the first exchange on.

use autoharmonize_protocol::time::Nanos;
use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn a_merged_speakers_clock_is_within_its_reported_bound() {
    // Fast links with up to 0.5 ms of jitter: the first exchange can be a
    // poor one and the next ones good.
    let net = NetConfig {
        base_latency: (50_000, 100_000),
        jitter: 500_000,
        ..NetConfig::default()
    };
    let mut checked = 0;
    for seed in 0..8 {
        let mut sim = Sim::new(seed, 4, 0, net.clone());
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: no room"
        );
        let leader = sim.leader().expect("leader");
        let lone = (leader + 1) % 4;
        let room = sim
            .member(leader)
            .expect("alive")
            .status(sim.local_now(leader))
            .room;
        // Alone past the solo timeout: a room of its own, its own clock.
        sim.partition(&[lone]);
        sim.run_until(sim.now() + ms(11_000));
        sim.heal();
        let until = sim.now() + ms(2_000);
        while sim.now() < until {
            sim.run_until(sim.now() + ms(5));
            let Some(leader) = sim.leader() else { continue };
            let me = sim.member(lone).expect("alive").status(sim.local_now(lone));
            if me.room != room || leader == lone {
                continue;
            }
            let (Some(bound), Some(mine), Some(theirs)) = (
                me.clock_error,
                sim.member(lone)
                    .and_then(|m| m.mesh_time(sim.local_now(lone))),
                sim.member(leader)
                    .and_then(|m| m.mesh_time(sim.local_now(leader))),
            ) else {
                continue;
            };
            let err = mine.0.abs_diff(theirs.0);
            // The bound is exact in the simulation (causal stamps, drift
            // within limits); 2 ns of rounding.
            assert!(
                err <= bound.0 + 2,
                "seed {seed}: {err} ns off the room, reported bound {:?}",
                Nanos(bound.0)
            );
            checked += 1;
        }
        sim.finish();
        sim.assert_invariants();
    }
    assert!(checked > 1_000, "only {checked} instants checked");
}
