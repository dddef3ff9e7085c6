//! Heartbeats carry each member's health: a controller's status lists every
//! other view member with the clock error, buffer level and xruns from its
//! last heartbeat, and how long ago that was.

use autoharmonize_protocol::wire::Health;
use autoharmonize_tests::sim::{NetConfig, Sim, ms};

#[test]
fn a_controller_sees_every_members_health() {
    for seed in 0..4 {
        // Processes 0..3 are speakers, 3 a controller.
        let mut sim = Sim::new(seed, 3, 1, NetConfig::default());
        assert!(
            sim.run_until_converged(2, ms(5_000)).is_some(),
            "seed {seed}: no room"
        );
        sim.member_mut(1)
            .expect("speaker 1 runs")
            .set_audio_health(40, 3);
        sim.run_until(sim.now() + ms(3_000));
        let leader = sim.leader().expect("a leader");
        let at = sim.local_now(3);
        let st = sim.member(3).expect("controller runs").status(at);
        assert_eq!(st.peers.len(), 3, "seed {seed}: every speaker, not itself");
        for p in &st.peers {
            let h = p
                .health
                .unwrap_or_else(|| panic!("seed {seed}: no heartbeat from {}", p.id));
            let ago = p.last_heard.expect("heard").as_millis();
            // Followers send every round, the leader beacons every 2.
            assert!(ago <= 400, "seed {seed}: {} last heard {ago} ms ago", p.id);
            if p.id == sim.id(leader) {
                assert_eq!(h.clock_error_us, 0, "seed {seed}: the reference");
            } else {
                assert!(
                    h.clock_error_us != Health::CLOCK_UNKNOWN && h.clock_error_us < 50_000,
                    "seed {seed}: {h:?}"
                );
            }
            if p.id == sim.id(1) {
                assert_eq!((h.buffer_ms, h.xruns), (40, 3), "seed {seed}");
            } else {
                assert_eq!((h.buffer_ms, h.xruns), (0, 0), "seed {seed}");
            }
        }
        // Its own health as it reports it.
        assert_eq!((st.health.buffer_ms, st.health.xruns), (0, 0));
        sim.finish();
        sim.assert_invariants();
    }
}
