//! A member that can reach any one member of a room — leader or not —
//! joins that room: the member it reached refers it to the leader and
//! the view (`Referral`), and it never founds a room of its own while it
//! hears of a live one. Simulated with partial knowledge of peers: each
//! process starts knowing only its static peers (no mDNS), as on a network
//! that filters multicast.

use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::ids::Channel;
use autoharmonize_protocol::member::Config;
use autoharmonize_protocol::transport::Gain;
use autoharmonize_tests::sim::{self, NetConfig, Sim, ms};

#[test]
fn a_chain_of_static_peers_forms_one_room() {
    // Speaker i knows only speaker i - 1; all start at once.
    for seed in 0..40 {
        let n = 5;
        let peers: Vec<Vec<usize>> = (0..n)
            .map(|i| (i > 0).then(|| i - 1).into_iter().collect())
            .collect();
        let mut sim =
            Sim::with_static_peers(seed, n, 0, NetConfig::default(), Config::default(), &peers);
        for i in 0..n {
            sim.start(i);
        }
        let took = sim.run_until_converged(2, ms(10_000));
        assert!(took.is_some(), "seed {seed}: rooms {:?}", sim.rooms());
        sim.finish();
        sim.assert_invariants();
    }
}

#[test]
fn a_newcomer_that_knows_only_a_follower_joins_without_founding() {
    for seed in 0..20 {
        // Speakers 0..3 know each other; speaker 3 is configured, once the
        // room formed, with only one of its followers.
        let mut peers: Vec<Vec<usize>> = vec![vec![1, 2], vec![0, 2], vec![0, 1]];
        peers.push(Vec::new());
        let mut sim =
            Sim::with_static_peers(seed, 4, 0, NetConfig::default(), Config::default(), &peers);
        for i in 0..3 {
            sim.start(i);
        }
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}"
        );
        let leader = sim.leader().expect("a leader");
        let follower = (0..3).find(|&i| i != leader).expect("a follower");
        sim.set_static_peers(3, &[follower]);
        let joined_at = sim.now();
        sim.start(3);
        let took = sim.run_until_converged(2, ms(5_000));
        assert!(took.is_some(), "seed {seed}: rooms {:?}", sim.rooms());
        assert!(
            took.expect("checked") < ms(2_000),
            "seed {seed}: joined in {} ms",
            took.expect("checked") / 1_000_000
        );
        assert!(
            !founded_since(&sim, 3, joined_at),
            "seed {seed}: founded a room of its own"
        );
        sim.finish();
        sim.assert_invariants();
    }
}

/// Whether process `i` committed anything in a room it founded itself
/// since true time `since` (a room of its own, however short-lived).
fn founded_since(sim: &Sim, i: usize, since: u64) -> bool {
    let id = sim.id(i);
    sim.metrics
        .decisions
        .iter()
        .any(|&(t, p, room, _)| t >= since && p == i && room.founder == id)
}

#[test]
fn a_controller_that_knows_only_a_follower_votes_in_the_room() {
    for seed in 0..10 {
        // Three speakers that know each other; the controller (process 3)
        // knows one speaker that is not the lowest id's... any of them.
        let mut peers: Vec<Vec<usize>> = vec![vec![1, 2], vec![0, 2], vec![0, 1]];
        peers.push(vec![(seed as usize) % 3]);
        let mut sim =
            Sim::with_static_peers(seed, 3, 1, NetConfig::default(), Config::default(), &peers);
        for i in 0..4 {
            sim.start(i);
        }
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: {:?}",
            sim.rooms()
        );
        assert!(
            sim.cast(
                3,
                Event::Volume {
                    channel: Channel::All,
                    gain: Gain(33),
                }
            ),
            "seed {seed}: the controller takes votes"
        );
        sim.run_until(sim.now() + ms(1_000));
        for i in 0..3 {
            let t = sim
                .member(i)
                .and_then(|m| m.transport().cloned())
                .expect("state");
            assert!(
                t.channels.iter().all(|c| c.gain == Gain(33)),
                "seed {seed}: speaker {i}"
            );
        }
        sim.finish();
        sim.assert_invariants();
    }
}

#[test]
fn random_partial_knowledge_never_splits_the_room() {
    let starts: u64 = std::env::var("AUTOHARMONIZE_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(100, |s: u64| s.clamp(100, 1_000));
    let split: Vec<(u64, String)> = (0..starts)
        .filter_map(|seed| sim::partial_knowledge_start(seed).split.map(|r| (seed, r)))
        .collect();
    assert!(
        split.is_empty(),
        "{} of {starts} starts split: {split:?}",
        split.len()
    );
}

#[test]
fn a_restarted_speaker_comes_back_through_the_member_it_remembers() {
    // A chain: each speaker knows only the one before it. A speaker that
    // restarts knowing only one member (a follower by now, as a rule)
    // comes back into the room rather than founding one.
    for seed in 0..10 {
        let peers: Vec<Vec<usize>> = vec![vec![], vec![0], vec![1], vec![2]];
        let mut sim =
            Sim::with_static_peers(seed, 4, 0, NetConfig::default(), Config::default(), &peers);
        for i in 0..4 {
            sim.start(i);
        }
        assert!(
            sim.run_until_converged(2, ms(10_000)).is_some(),
            "seed {seed}: {:?}",
            sim.rooms()
        );
        let lone = if sim.leader() == Some(3) { 2 } else { 3 };
        sim.crash(lone);
        sim.run_until(sim.now() + ms(2_000));
        let back_at = sim.now();
        sim.start(lone);
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: {:?}",
            sim.rooms()
        );
        assert!(
            !founded_since(&sim, lone, back_at),
            "seed {seed}: founded a room of its own"
        );
        sim.finish();
        sim.assert_invariants();
    }
}
