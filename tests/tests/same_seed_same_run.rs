//! The simulation is deterministic: the same seed gives the same run, down
//! to every commit of every member at the same instant (what makes a
//! failing seed worth printing).

use autoharmonize_tests::sim::{NetConfig, Sim, ms};

/// Every commit as (time, process, round, term), datagrams delivered, votes cast.
type Trace = (Vec<(u64, usize, u64, u64)>, u64, u64);

fn trace(seed: u64) -> Trace {
    let net = NetConfig {
        loss: 0.05,
        duplicate: 0.02,
        jitter: ms(30),
        ..NetConfig::default()
    };
    let mut sim = Sim::new(seed, 6, 1, net);
    sim.run_with_votes(ms(5_000), 4.0);
    sim.partition(&[0, 1]);
    sim.run_with_votes(ms(2_000), 4.0);
    sim.heal();
    sim.crash(2);
    sim.run_with_votes(ms(3_000), 4.0);
    sim.finish();
    let decisions = sim
        .metrics
        .decisions
        .iter()
        .map(|&(t, i, _, e)| (t, i, e.round.0, e.term.0))
        .collect();
    (decisions, sim.metrics.delivered, sim.metrics.votes_cast)
}

#[test]
fn same_seed_gives_the_same_trace() {
    for seed in [3, 17, 99] {
        let a = trace(seed);
        let b = trace(seed);
        assert!(a.0.len() > 100, "seed {seed}: the run decided things");
        assert_eq!(a, b, "seed {seed}: two runs differ");
    }
    assert_ne!(trace(3).0, trace(4).0, "different seeds, different runs");
}
