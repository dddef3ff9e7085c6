//! After a power cut, speakers starting together let the one with the
//! newest saved state found the room, so the room comes back as it was
//! last agreed, paused; a speaker that joins a room that has decided
//! since, whatever its file says, adopts the room's state.

use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::ids::Channel;
use autoharmonize_protocol::member::Config;
use autoharmonize_protocol::saved::SavedState;
use autoharmonize_protocol::time::MeshTime;
use autoharmonize_protocol::transport::{Frames, Gain, Transport};
use autoharmonize_tests::sim::{NetConfig, Sim, ms};

/// A saved state of revision `rev`: 4 channels at `secs` seconds, gain `gain`.
fn saved(rev: u64, secs: u64, gain: u8) -> SavedState {
    let mut t = Transport::new(4, MeshTime(0), Gain(gain));
    for c in t.channels.iter_mut() {
        c.anchor_pos = Frames::from_secs(secs);
        c.playing = true;
    }
    t.revision = rev;
    SavedState::capture(&t, MeshTime(0))
}

fn transport(sim: &Sim, i: usize) -> Transport {
    sim.member(i)
        .and_then(|m| m.transport().cloned())
        .expect("in a room")
}

#[test]
fn the_newest_saved_state_comes_back_and_a_late_file_undoes_nothing() {
    for seed in 0..20 {
        let n = 4;
        let peers: Vec<Vec<usize>> = (0..n)
            .map(|i| (0..n).filter(|&j| j != i).collect())
            .collect();
        let net = NetConfig {
            loss: 0.02,
            jitter: ms(2),
            ..NetConfig::default()
        };
        let mut sim = Sim::with_static_peers(seed, n, 0, net, Config::default(), &peers);
        // The newest file is on a speaker chosen by the seed; the others
        // hold older states, one none at all.
        let newest = (seed as usize) % n;
        for i in 0..n {
            let state = match i {
                _ if i == newest => Some(saved(90, 61, 33)),
                _ if i == (newest + 1) % n => None,
                _ => Some(saved(80 + i as u64, 10, 70)),
            };
            sim.set_saved(i, state);
        }
        for i in 0..n {
            sim.run_until(sim.now() + ms(i as u64 * 30));
            sim.start(i);
        }
        assert!(
            sim.run_until_converged(2, ms(10_000)).is_some(),
            "seed {seed}: {:?}",
            sim.rooms()
        );
        for i in 0..n {
            let t = transport(&sim, i);
            assert!(t.restored, "seed {seed}, speaker {i}: shown as restored");
            assert_eq!(t.revision, 90, "seed {seed}, speaker {i}: the newest state");
            for c in &t.channels {
                assert!(!c.playing, "seed {seed}: comes back paused");
                assert_eq!(c.gain, Gain(33));
                assert_eq!(c.anchor_pos, Frames::from_secs(61));
            }
        }
        // The room decides something; then a speaker restarts with a file
        // claiming a much newer state: the room's decision stands.
        assert!(sim.cast(
            0,
            Event::Volume {
                channel: Channel::All,
                gain: Gain(12)
            }
        ));
        sim.run_until(sim.now() + ms(1_000));
        let decided = transport(&sim, 0);
        assert!(!decided.restored, "seed {seed}: a decision clears restored");
        assert_eq!(decided.revision, 91);
        let late = (newest + 2) % n;
        sim.crash(late);
        sim.run_until(sim.now() + ms(1_500));
        sim.set_saved(late, Some(saved(5_000, 100, 99)));
        sim.start(late);
        assert!(
            sim.run_until_converged(2, ms(10_000)).is_some(),
            "seed {seed}: {:?}",
            sim.rooms()
        );
        for i in 0..n {
            let t = transport(&sim, i);
            assert!(
                t.channels.iter().all(|c| c.gain == Gain(12)),
                "seed {seed}, speaker {i}: undone"
            );
            assert_eq!(t.revision, 91, "seed {seed}, speaker {i}");
        }
        sim.finish();
        sim.assert_invariants();
    }
}
