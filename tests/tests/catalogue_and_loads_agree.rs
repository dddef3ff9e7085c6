//! Under loss and jitter, every member (the controller included) learns the
//! room's tracks, who holds which stems and every member's name; a load
//! voted by the controller gives every member the same transport state, a
//! seek past the new track's end is refused, and two loads in one round
//! resolve to the same track everywhere.

use autoharmonize_protocol::Channel;
use autoharmonize_protocol::catalogue::{StemInfo, TrackInfo, bounded};
use autoharmonize_protocol::content::{StemHash, TrackId};
use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::member::CastError;
use autoharmonize_protocol::transport::{Frames, MAX_CHANNELS};
use autoharmonize_tests::sim::{NetConfig, Sim, ms};

fn track(title: &str, seed: u8, stems: usize, seconds: u64) -> TrackInfo {
    let stems: heapless::Vec<StemInfo, MAX_CHANNELS> = (0..stems)
        .map(|i| StemInfo {
            name: bounded(&format!("stem{i}")),
            hash: StemHash([seed.wrapping_mul(16).wrapping_add(i as u8); 32]),
        })
        .collect();
    TrackInfo {
        id: TrackId::of(stems.iter().map(|s| (s.name.as_str(), s.hash))),
        title: bounded(title),
        length: Frames::from_secs(seconds),
        stems,
    }
}

fn load(t: &TrackInfo) -> Event {
    Event::Load {
        track: t.id,
        channels: t.stems.len() as u8,
        length: t.length,
    }
}

#[test]
fn catalogue_converges_and_loads_agree_under_loss() {
    let tracks = [
        track("one", 1, 2, 60),
        track("two", 2, 3, 30),
        track("three", 3, 4, 90),
    ];
    for seed in 0..6 {
        let net = NetConfig {
            loss: 0.1,
            jitter: 3_000_000,
            ..NetConfig::default()
        };
        // Processes 0..4 are speakers, 4 a controller.
        let mut sim = Sim::new(seed, 4, 1, net);
        assert!(
            sim.run_until_converged(2, ms(8_000)).is_some(),
            "seed {seed}: no room"
        );
        // Speaker i holds track i (the last holds two), stems partly.
        let libraries: [Vec<(TrackInfo, u8)>; 4] = [
            vec![(tracks[0].clone(), 0b11)],
            vec![(tracks[1].clone(), 0b101), (tracks[0].clone(), 0b01)],
            vec![(tracks[2].clone(), 0b1111)],
            vec![],
        ];
        for (i, lib) in libraries.iter().enumerate() {
            sim.member_mut(i)
                .expect("runs")
                .set_library(&format!("speaker{i}"), lib.clone());
        }
        sim.member_mut(4)
            .expect("runs")
            .set_library("laptop", Vec::new());
        sim.run_until(sim.now() + ms(4_000));

        for i in 0..5 {
            let c = sim.member(i).expect("runs").catalogue();
            assert!(c.is_complete(), "seed {seed}: member {i} incomplete");
            let mut ids: Vec<TrackId> = c.tracks().map(|t| t.id).collect();
            ids.sort();
            let mut want: Vec<TrackId> = tracks.iter().map(|t| t.id).collect();
            want.sort();
            assert_eq!(ids, want, "seed {seed}: member {i}");
            assert_eq!(c.track(tracks[1].id), Some(&tracks[1]));
            // Stem 0 of track one: held by speakers 0 and 1.
            let mut want = vec![sim.id(0), sim.id(1)];
            want.sort();
            assert_eq!(
                c.holders(tracks[0].stems[0].hash),
                want,
                "seed {seed}: member {i}"
            );
            // Stem 1 of track two: nobody (mask 0b101).
            assert!(c.holders(tracks[1].stems[1].hash).is_empty());
            for j in 0..4 {
                assert_eq!(
                    c.name(sim.id(j)),
                    Some(format!("speaker{j}").as_str()),
                    "seed {seed}: member {i} names {j}"
                );
            }
            assert_eq!(c.name(sim.id(4)), Some("laptop"));
        }

        // The controller loads track three: every member, the same state.
        assert!(sim.cast(4, load(&tracks[2])), "seed {seed}: load cast");
        sim.run_until(sim.now() + ms(2_000));
        let states: Vec<_> = (0..5)
            .map(|i| sim.member(i).expect("runs").transport().cloned())
            .collect();
        let first = states[0].clone().expect("a state");
        assert_eq!(first.track.map(|t| t.id), Some(tracks[2].id), "seed {seed}");
        assert_eq!(first.length(), Some(Frames::from_secs(90)));
        assert_eq!(first.channel_count(), 4);
        assert!(
            states.iter().all(|s| s.as_ref() == Some(&first)),
            "seed {seed}: {states:?}"
        );

        // A seek past its end is refused at the voter.
        let past = Event::Seek {
            channel: Channel::All,
            to: Frames::from_secs(91),
        };
        let at = sim.local_now(4);
        assert_eq!(
            sim.member_mut(4).expect("runs").cast(at, past),
            Err(CastError::Invalid("seek past the end of the track"))
        );

        // Two loads at once: one track wins everywhere.
        assert!(sim.cast(0, load(&tracks[0])));
        assert!(sim.cast(2, load(&tracks[1])));
        sim.run_until(sim.now() + ms(2_000));
        let ids: Vec<Option<TrackId>> = (0..5)
            .map(|i| {
                sim.member(i)
                    .and_then(|m| m.transport())
                    .and_then(|t| t.track)
                    .map(|t| t.id)
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "seed {seed}: {ids:?}");
        assert!(
            ids[0] == Some(tracks[0].id) || ids[0] == Some(tracks[1].id),
            "seed {seed}: {ids:?}"
        );
        sim.finish();
        sim.assert_invariants();
    }
}
