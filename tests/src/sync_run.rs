//! Sync between real node processes, measured from outside: four nodes in
//! network namespaces play the timecode stem on virtual DACs with different
//! crystal errors, node clocks offset by seconds and skewed, while the test
//! seeks and pauses; each DAC records what it emits and when (true time),
//! and the recordings are compared instant by instant.
//!
//! Shared by the CI test (`firmware-node/tests/audio_sync_netns.rs`, 40 s)
//! and the benchmark (`bench-sync`, 10 minutes).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::room::{Discovery, Room};
use crate::timecode::{self, Series};

/// Crystal errors of the four DACs (ppm), as the issue asks.
pub const DAC_PPM: [f64; 4] = [-150.0, -50.0, 50.0, 150.0];
/// Node clock offsets (ms) and skews (ppm).
pub const CLOCK_OFFSET_MS: [u64; 4] = [0, 3_000, 17_000, 1_234];
/// Node clock skews (ppm).
pub const CLOCK_SKEW_PPM: [f64; 4] = [0.0, 100.0, -100.0, 40.0];

/// Length of the timecode track (s): seeks stay inside it.
const TRACK_SECONDS: u64 = 90;

/// What a run measured.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Spread (max − min) of the four nodes' positions at each instant
    /// where all four were readable, in µs, sorted.
    pub spreads_us: Vec<f64>,
    /// For each seek: spread of the instants at which the nodes' sound
    /// changed, in µs, sorted.
    pub change_spreads_us: Vec<f64>,
    /// Instants examined (1 ms apart) and those where all four read.
    pub instants: usize,
    /// Seeks and pauses cast.
    pub seeks: usize,
    /// Pauses cast.
    pub pauses: usize,
    /// Per node: (xruns, underruns, recues, late changes) at the end.
    pub nodes: Vec<(u64, u64, u64, u64)>,
}

impl SyncReport {
    /// The `q`-quantile (0–1) of a sorted list.
    #[must_use]
    pub fn quantile(sorted: &[f64], q: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        sorted[((sorted.len() - 1) as f64 * q).round() as usize]
    }
}

/// Runs four nodes of `bin` for `seconds` of playback, seeking every
/// `every` seconds and pausing for a second half-way between seeks.
///
/// # Errors
/// A node does not start, the room does not form, or a recording is
/// missing.
pub fn run(bin: &Path, seconds: u64, every: u64) -> anyhow::Result<SyncReport> {
    let mut room = Room::new("sy", 4, bin, Discovery::StaticPeers);
    // One timecode file, reached through four stem names (the nodes are
    // told the track by name, so the file's own folder is never taken for
    // a track).
    let base = room.dir().join("timecode-base");
    std::fs::create_dir_all(&base)?;
    let stem = base.join("timecode.wav");
    timecode::write_wav(&stem, TRACK_SECONDS * 48_000, 1)?;
    let track = room.dir().join("timecode");
    std::fs::create_dir_all(&track)?;
    std::fs::write(
        track.join("track.toml"),
        "title = \"Timecode\"\nstems = [\"a\", \"b\", \"c\", \"d\"]\n",
    )?;
    for name in ["a", "b", "c", "d"] {
        std::os::unix::fs::symlink(&stem, track.join(format!("{name}.wav")))?;
    }
    let records: Vec<PathBuf> = (0..4)
        .map(|i| room.dir().join(format!("dac{i}.txt")))
        .collect();
    for i in 0..4 {
        let output = format!("virtual:{},0,record={}", DAC_PPM[i], records[i].display());
        let offset = CLOCK_OFFSET_MS[i].to_string();
        let skew = CLOCK_SKEW_PPM[i].to_string();
        let channel = i.to_string();
        room.set_args(
            i,
            &[
                "--output",
                &output,
                "--test-clock-offset-ms",
                &offset,
                "--test-clock-skew-ppm",
                &skew,
                "--channel",
                &channel,
                "--track",
                "timecode",
            ],
        );
    }
    room.start_all();
    let all = [0, 1, 2, 3];
    if room
        .wait_for(Duration::from_secs(20), |r| {
            r.agree_on(&all)
                && (0..4).all(|i| r.status(i).is_some_and(|s| s["audio"]["running"] == true))
        })
        .is_none()
    {
        room.dump_logs();
        anyhow::bail!("the four nodes did not form a room with audio running");
    }
    // Let the DAC fits and clock estimates settle a little, as a room that
    // has been on for a while would be.
    std::thread::sleep(Duration::from_secs(3));
    let cast = |json: &str| {
        let (code, body) = room.cast(0, json);
        if code != 200 {
            eprintln!("cast {json}: {code} {body}");
        }
    };
    let mut report = SyncReport::default();
    let mut seeks = Vec::new(); // (approximate true time, target frame)
    let start = Instant::now();
    // Unity gain: the timecode's values are its positions.
    cast(r#"{"event":"volume","channel":"all","gain":100}"#);
    std::thread::sleep(Duration::from_millis(300));
    seeks.push((monotonic_raw_ns(), 0u64));
    cast(r#"{"event":"seek","channel":"all","to":0}"#);
    cast(r#"{"event":"play","channel":"all"}"#);
    let mut k = 1u64;
    while start.elapsed() < Duration::from_secs(seconds) {
        let next = Duration::from_secs(k * every);
        let half = next - Duration::from_secs(every / 2);
        if start.elapsed() >= half && report.pauses < usize::try_from(k).unwrap_or(0) {
            cast(r#"{"event":"pause","channel":"all"}"#);
            std::thread::sleep(Duration::from_secs(1));
            cast(r#"{"event":"play","channel":"all"}"#);
            report.pauses += 1;
        }
        if start.elapsed() >= next {
            let to = (k * 7 % 60) * 48_000 + 1_234;
            seeks.push((monotonic_raw_ns(), to));
            cast(&format!(r#"{{"event":"seek","channel":"all","to":{to}}}"#));
            report.seeks += 1;
            k += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 0..4 {
        let s = room.status(i).unwrap_or_default();
        let a = &s["audio"];
        let n = |k: &str| a[k].as_u64().unwrap_or(u64::MAX);
        report
            .nodes
            .push((n("xruns"), n("underruns"), n("recues"), n("late_changes")));
    }
    for i in 0..4 {
        room.terminate(i);
    }
    let series: Vec<Series> = records
        .iter()
        .map(|p| Series::read(p))
        .collect::<std::io::Result<_>>()?;
    analyse(&series, &seeks, &mut report);
    Ok(report)
}

/// Fills the spreads of `report` from the four recordings.
fn analyse(series: &[Series], seeks: &[(u64, u64)], report: &mut SyncReport) {
    let from = series
        .iter()
        .filter_map(|s| s.span().map(|p| p.0))
        .max()
        .unwrap_or(0);
    let to = series
        .iter()
        .filter_map(|s| s.span().map(|p| p.1))
        .min()
        .unwrap_or(0);
    let mut t = from;
    while t < to {
        report.instants += 1;
        let phases: Option<Vec<f64>> = series.iter().map(|s| s.phase_at(t, 2_000_000)).collect();
        if let Some(p) = phases {
            let rel: Vec<f64> = p
                .iter()
                .map(|&x| timecode::circular_diff(x, p[0]))
                .collect();
            let lo = rel.iter().copied().fold(f64::MAX, f64::min);
            let hi = rel.iter().copied().fold(f64::MIN, f64::max);
            report.spreads_us.push((hi - lo) / 48_000.0 * 1e6);
        }
        t += 1_000_000;
    }
    report.spreads_us.sort_by(f64::total_cmp);
    // Each seek: when did each node start playing from the target? The first
    // readable instant after the cast whose phase lies just past the target
    // phase dates the change.
    for &(cast_at, target) in seeks {
        let target_phase = (target % timecode::PERIOD) as f64;
        let mut changes = Vec::new();
        for s in series {
            let mut t = cast_at;
            let end = cast_at + 1_500_000_000;
            let mut found = None;
            while t < end {
                if let Some(p) = s.phase_at(t, 2_000_000) {
                    let d = timecode::circular_diff(p, target_phase);
                    // Between 10 and 40 ms into the new position: past the
                    // fade-in, before another sawtooth period could alias.
                    if (480.0..1_920.0).contains(&d) {
                        found = Some(t as f64 - d / 48_000.0 * 1e9);
                        break;
                    }
                }
                t += 1_000_000;
            }
            if let Some(f) = found {
                changes.push(f);
            }
        }
        if changes.len() == series.len() {
            let lo = changes.iter().copied().fold(f64::MAX, f64::min);
            let hi = changes.iter().copied().fold(f64::MIN, f64::max);
            report.change_spreads_us.push((hi - lo) / 1e3);
        }
    }
    report.change_spreads_us.sort_by(f64::total_cmp);
}

/// The machine's CLOCK_MONOTONIC_RAW (the virtual DACs' true time).
pub fn monotonic_raw_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_RAW)
        .map(|ts| {
            u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(ts.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}
