//! A speaker that hears nobody for `solo_after` (10 s) forms a room of its
//! own and takes votes again; when the network heals it merges back into the
//! larger room and adopts that room's state.

use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::ids::Channel;
use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn lone_speaker_plays_on_then_merges_into_the_larger_room() {
    for seed in 0..6 {
        let mut sim = Sim::new(seed, 4, 0, NetConfig::default());
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
        sim.partition(&[lone]);
        sim.run_until(sim.now() + ms(9_000));
        assert!(
            !sim.cast(
                lone,
                Event::Play {
                    channel: Channel::All
                }
            ),
            "seed {seed}: read-only before the solo timeout"
        );
        sim.run_until(sim.now() + ms(1_500));
        let own = sim.member(lone).expect("alive").status(sim.local_now(lone));
        assert_ne!(own.room, room, "seed {seed}: formed a room of its own");
        assert_eq!(own.view.len(), 1);
        assert!(
            sim.cast(
                lone,
                Event::Seek {
                    channel: Channel::All,
                    to: autoharmonize_protocol::transport::Frames(48_000 * 60)
                }
            ),
            "seed {seed}: a lone speaker takes votes"
        );
        sim.run_until(sim.now() + ms(500));
        sim.heal();
        assert!(
            sim.run_until_converged(2, ms(3_000)).is_some(),
            "seed {seed}: no merge: {:?}",
            sim.rooms()
        );
        let merged = sim.member(lone).expect("alive").status(sim.local_now(lone));
        assert_eq!(merged.room, room, "seed {seed}: the larger room wins");
        sim.finish();
        sim.assert_invariants();
    }
}
