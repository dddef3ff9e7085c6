//! Deterministic simulation of synchronised playback: the real renderer
//! (resampler, emission fit, schedule, fades) driven by simulated DACs with
//! crystal errors, node clocks with offsets and skews, and jittery timing
//! observations — no threads, no sleeping. Each speaker plays the timecode
//! stem; its emitted samples are decoded at their true emission instants
//! and compared with where the agreed schedule says the track is.
//!
//! Target (issue 5): sync error p99 ≤ 1 frame at 48 kHz, against the
//! schedule and between speakers.

use autoharmonize_node::audio::StreamSpec;
use autoharmonize_node::audio::decode::{AudioSource, DecodeError};
use autoharmonize_node::audio::engine::{Producer, Timing};
use autoharmonize_node::audio::render::{
    ChannelMap, RenderConfig, RenderStats, Renderer, SharedTimeline, Voice,
};
use autoharmonize_protocol::clock::MeshClock;
use autoharmonize_protocol::transport::{ChannelState, Frames, Gain, Transport};
use autoharmonize_protocol::{LocalTime, MeshTime};
use autoharmonize_tests::timecode;
use std::sync::Arc;

const RATE: f64 = 48_000.0;
const PERIOD: u64 = 256;
const BUFFER: u64 = 1_024;
const RING: u64 = 2_048;
const T0: f64 = 1e12;

/// The timecode stem, generated on the fly.
struct Timecode {
    pos: u64,
}

impl AudioSource for Timecode {
    fn spec(&self) -> StreamSpec {
        StreamSpec {
            rate: 48_000,
            channels: 1,
        }
    }
    fn read(&mut self, out: &mut [f32]) -> Result<usize, DecodeError> {
        for s in out.iter_mut() {
            *s = timecode::value(self.pos);
            self.pos += 1;
        }
        Ok(out.len())
    }
    fn seek(&mut self, frame: u64) -> Result<(), DecodeError> {
        self.pos = frame;
        Ok(())
    }
    fn position(&self) -> u64 {
        self.pos
    }
    fn skipped_packets(&self) -> u64 {
        0
    }
}

/// One simulated speaker.
struct Speaker {
    renderer: Renderer,
    /// DAC frames per true second.
    dac_rate: f64,
    /// DAC start (true ns).
    start: f64,
    skew: f64,
    offset: f64,
    pushed: u64,
    /// Channel 0 of every frame pushed.
    out: Vec<f32>,
    seed: u64,
}

impl Speaker {
    fn new(
        dac_ppm: f64,
        skew_ppm: f64,
        offset_s: f64,
        clock_err_ns: f64,
        sched: &[(f64, Transport)],
    ) -> Speaker {
        let skew = skew_ppm * 1e-6;
        let offset = offset_s * 1e9;
        let timeline = Arc::new(SharedTimeline::default());
        // mesh = true time + clock error; local = true·(1+skew) + offset.
        let local0 = T0 * (1.0 + skew) + offset;
        let rate_ppb = ((1.0 / (1.0 + skew) - 1.0) * 1e9).round() as i64;
        let clock = MeshClock::new(
            LocalTime(local0 as u64),
            MeshTime((T0 + clock_err_ns) as u64),
            rate_ppb,
        );
        timeline.update(|t| {
            t.clock = Some(clock);
            let (first, rest) = sched.split_first().expect("a schedule");
            t.schedule.replaced(first.1.clone());
            for (at, tr) in rest {
                t.schedule.decided(MeshTime(*at as u64), tr.clone());
            }
        });
        let device = StreamSpec {
            rate: 48_000,
            channels: 2,
        };
        let voice = Voice::new(0, Box::new(Timecode { pos: 0 }), 48_000).expect("voice");
        let renderer = Renderer::new(
            vec![voice],
            RenderConfig {
                device,
                latency_offset_ns: 0,
                map: ChannelMap::Stereo,
            },
            timeline,
            Arc::new(RenderStats::default()),
        );
        Speaker {
            renderer,
            dac_rate: RATE * (1.0 + dac_ppm * 1e-6),
            start: T0 + 0.2e9,
            skew,
            offset,
            pushed: 0,
            out: Vec::new(),
            seed: (dac_ppm.to_bits() ^ skew_ppm.to_bits()) | 1,
        }
    }

    fn emission(&self, k: u64) -> f64 {
        self.start + k as f64 * 1e9 / self.dac_rate
    }

    /// Advances to true time `t`: one output-thread observation, then the
    /// decoder tops the ring up.
    fn step(&mut self, t: f64) {
        let emitted = if t < self.start {
            0
        } else {
            ((t - self.start) * self.dac_rate / 1e9).floor() as u64 + 1
        };
        let written = (emitted + BUFFER).min(self.pushed);
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        // 0–40 µs late, as a busy machine's output thread would be.
        let jitter = (self.seed % 40_000) as f64;
        if t >= self.start {
            self.renderer.observe(Timing {
                frames_written: written,
                delay: (written - emitted.min(written)) as i64,
                at_ns: (t * (1.0 + self.skew) + self.offset + jitter) as u64,
                underrun_frames: 0,
                xruns: 0,
            });
        }
        let mut buf = vec![0.0f32; 2 * PERIOD as usize];
        while self.pushed < written + RING {
            let n = self
                .renderer
                .produce(&mut buf, self.pushed)
                .expect("renders");
            assert_eq!(n, PERIOD as usize);
            self.out.extend(buf.chunks_exact(2).map(|f| f[0]));
            self.pushed += PERIOD;
        }
    }
}

fn channel(playing: bool, pos_s: f64, at: f64) -> Transport {
    let mut t = Transport::new(1, MeshTime(0), Gain(100));
    t.channels[0] = ChannelState {
        playing,
        anchor_pos: Frames((pos_s * RATE) as u64),
        anchor_at: MeshTime(at as u64),
        gain: Gain(100),
    };
    t
}

/// Where the schedule says the track is at true instant `t` (mesh = true).
fn expected(sched: &[(f64, Transport)], t: f64) -> Option<f64> {
    let (_, tr) = sched.iter().rev().find(|(at, _)| *at <= t)?;
    let c = tr.channels[0];
    c.playing
        .then(|| c.anchor_pos.0 as f64 + (t - c.anchor_at.0 as f64) * RATE / 1e9)
}

#[test]
fn four_speakers_stay_within_a_frame() {
    let s = |x: f64| T0 + x * 1e9;
    let sched = vec![
        (0.0, channel(false, 0.0, 0.0)),
        (s(1.0), channel(true, 0.0, s(1.0))),
        (s(15.0), channel(true, 100.0, s(15.0))),
        (s(25.0), channel(false, 110.0, s(25.0))),
        (s(26.0), channel(true, 110.0, s(26.0))),
        (s(33.0), channel(true, 2.5, s(33.0))),
    ];
    let end = s(45.0);
    let mut speakers = vec![
        Speaker::new(-150.0, 100.0, 3.0, 4_000.0, &sched),
        Speaker::new(-50.0, -100.0, 1_000.0, -3_000.0, &sched),
        Speaker::new(50.0, 37.0, 0.5, 0.0, &sched),
        Speaker::new(150.0, -80.0, 20.0, 2_000.0, &sched),
    ];
    let mut t = T0;
    while t < end {
        for sp in &mut speakers {
            sp.step(t);
        }
        t += PERIOD as f64 * 1e9 / RATE;
    }
    // Every 1 ms of true time, each speaker's emitted phase vs the schedule.
    let transitions: Vec<f64> = sched.iter().map(|(at, _)| *at).collect();
    let mut errors = Vec::new();
    let mut signed = vec![(0.0f64, 0usize); speakers.len()];
    let mut spreads = Vec::new();
    let mut missing = 0usize;
    let mut probe = s(2.0);
    while probe < end - 1e9 {
        let settled = transitions
            .iter()
            .all(|&at| !(at - 0.01e9..at + 0.5e9).contains(&probe));
        if let (true, Some(want)) = (settled, expected(&sched, probe)) {
            let mut here = Vec::new();
            for (i, sp) in speakers.iter().enumerate() {
                // The frame emitted at `probe` and its neighbour.
                let k = ((probe - sp.start) * sp.dac_rate / 1e9).floor() as usize;
                let (ta, tb) = (sp.emission(k as u64), sp.emission(k as u64 + 1));
                let (Some(pa), Some(pb)) =
                    (timecode::phase(sp.out[k]), timecode::phase(sp.out[k + 1]))
                else {
                    missing += 1;
                    continue;
                };
                let step = timecode::circular_diff(pb, pa);
                let got = pa + step * (probe - ta) / (tb - ta);
                let err = timecode::circular_diff(got, want % timecode::PERIOD as f64);
                errors.push(err.abs());
                signed[i].0 += err;
                signed[i].1 += 1;
                here.push(err);
            }
            if here.len() == speakers.len() {
                let (lo, hi) = here
                    .iter()
                    .fold((f64::MAX, f64::MIN), |(l, h), &e| (l.min(e), h.max(e)));
                spreads.push(hi - lo);
            }
        }
        probe += 1e6;
    }
    for (i, (sum, n)) in signed.iter().enumerate() {
        eprintln!("speaker {i}: mean error {:+.3} frames", sum / *n as f64);
    }
    errors.sort_by(f64::total_cmp);
    let p = |q: f64| errors[((errors.len() - 1) as f64 * q) as usize];
    eprintln!(
        "sync vs schedule over {} readings: p50 {:.3} p99 {:.3} max {:.3} frames ({} near wraps skipped)",
        errors.len(),
        p(0.5),
        p(0.99),
        p(1.0),
        missing
    );
    spreads.sort_by(f64::total_cmp);
    let spread99 = spreads[(spreads.len() - 1) * 99 / 100];
    eprintln!(
        "spread between speakers over {} instants: p99 {spread99:.3} frames",
        spreads.len()
    );
    assert!(errors.len() > 100_000, "{} readings", errors.len());
    assert!(p(0.99) <= 1.0, "p99 {:.3} frames", p(0.99));
    assert!(spread99 <= 1.0, "spread p99 {spread99:.3} frames");
}
