//! A speaker playing a stem it does not hold, measured from outside: three
//! node processes in network namespaces; hosts 1 and 2 hold the timecode
//! track (each its own copy of the file), host 0 has no media at all and
//! streams its stem from them. Every node plays on a recording virtual
//! DAC, so host 0's emissions can be compared with a holder's, instant by
//! instant (the method of [`crate::sync_run`]).
//!
//! Shared by the CI test (`firmware-node/tests/stream_netns.rs`) and the
//! benchmark (`bench-stream`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::rig::monotonic_raw_ns;
use crate::room::{Discovery, Room};
use crate::sync_run::RIGS;
use crate::timecode::{self, Series};

/// Frames per second of the timeline.
pub const RATE: u64 = 48_000;
/// The streaming node.
pub const STREAMER: usize = 0;
/// The holders.
pub const HOLDERS: [usize; 2] = [1, 2];

/// The lab: a room of three, the holders' stem files, the recordings.
pub struct StreamLab {
    /// The room.
    pub room: Room,
    /// Each host's DAC recording (host 0's changes on restart).
    pub records: Vec<PathBuf>,
    /// Each holder's copy of the stem (index 1 and 2; 0 unused).
    pub files: Vec<PathBuf>,
    restarts: usize,
    delay_ms: u64,
}

fn args(i: usize, record: &Path, delay_ms: u64) -> Vec<String> {
    let mut a = RIGS[i].args(record);
    a.extend(["--channel".to_owned(), "0".to_owned()]);
    if i == STREAMER {
        a.push("--test-link-delay-ms".to_owned());
        a.push(delay_ms.to_string());
    } else {
        a.push("--track".to_owned());
        a.push("timecode".to_owned());
    }
    a
}

impl StreamLab {
    /// Starts the holders (a room with the track loaded), then the
    /// streamer, waits until all three agree with audio running and the
    /// DAC fits have settled, and sets unity gain (the timecode's values
    /// are its positions).
    ///
    /// # Errors
    /// A node does not start or the room does not form.
    pub fn start(bin: &Path, track_seconds: u64, delay_ms: u64) -> anyhow::Result<StreamLab> {
        let mut room = Room::new("st", 3, bin, Discovery::StaticPeers);
        let base = room.dir().join("timecode-base.wav");
        timecode::write_wav(&base, track_seconds * RATE, 1)?;
        let mut files = vec![PathBuf::new()];
        for h in HOLDERS {
            let track = room.dir().join(format!("media{h}")).join("timecode");
            std::fs::create_dir_all(&track)?;
            std::fs::write(
                track.join("track.toml"),
                "title = \"Timecode\"\nstems = [\"tc\"]\n",
            )?;
            let file = track.join("tc.wav");
            std::fs::copy(&base, &file)?;
            files.push(file);
            let media = room.dir().join(format!("media{h}"));
            room.set_media_dir(h, &media);
        }
        let empty = room.dir().join("media0");
        std::fs::create_dir_all(&empty)?;
        room.set_media_dir(STREAMER, &empty);
        let records: Vec<PathBuf> = (0..3)
            .map(|i| room.dir().join(format!("dac{i}.txt")))
            .collect();
        for (i, record) in records.iter().enumerate() {
            let a = args(i, record, delay_ms);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            room.set_args(i, &a);
        }
        for h in HOLDERS {
            room.start(h);
        }
        let holders_ready = |r: &Room| {
            r.agree_on(&HOLDERS)
                && HOLDERS.iter().all(|&i| {
                    r.status(i)
                        .is_some_and(|s| s["audio"]["running"] == true && !s["track"].is_null())
                })
        };
        if room
            .wait_for(Duration::from_secs(20), holders_ready)
            .is_none()
        {
            room.dump_logs();
            anyhow::bail!("the holders did not form a room with the track loaded");
        }
        room.start(STREAMER);
        let mut lab = StreamLab {
            room,
            records,
            files,
            restarts: 0,
            delay_ms,
        };
        lab.wait_streamer_joined()?;
        std::thread::sleep(Duration::from_secs(2));
        lab.cast(r#"{"event":"volume","channel":"all","gain":100}"#);
        std::thread::sleep(Duration::from_millis(300));
        Ok(lab)
    }

    fn wait_streamer_joined(&mut self) -> anyhow::Result<()> {
        let all = [0, 1, 2];
        let alive: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&i| self.room.running(i))
            .collect();
        if self
            .room
            .wait_for(Duration::from_secs(20), |r| {
                r.agree_on(&alive)
                    && r.status(STREAMER)
                        .is_some_and(|s| s["audio"]["running"] == true)
            })
            .is_none()
        {
            self.room.dump_logs();
            anyhow::bail!("the streaming node did not join the room with audio running");
        }
        Ok(())
    }

    /// Casts a vote through a holder (host 2, which is never killed).
    pub fn cast(&self, json: &str) {
        let (code, body) = self.room.cast(HOLDERS[1], json);
        if code != 200 {
            eprintln!("cast {json}: {code} {body}");
        }
    }

    /// Seeks everyone to `frame`; returns the true time of the cast.
    pub fn seek(&self, frame: u64) -> u64 {
        let t = monotonic_raw_ns();
        self.cast(&format!(
            r#"{{"event":"seek","channel":"all","to":{frame}}}"#
        ));
        t
    }

    /// Restarts the streamer with an empty cache and a new recording;
    /// returns the true time of the spawn.
    ///
    /// # Errors
    /// It does not rejoin.
    pub fn restart_streamer_cold(&mut self) -> anyhow::Result<u64> {
        self.room.kill9(STREAMER);
        let state = self.room.dir().join(format!("state{STREAMER}"));
        let _ = std::fs::remove_dir_all(state.join("chunks"));
        self.restarts += 1;
        self.records[STREAMER] = self.room.dir().join(format!("dac0-{}.txt", self.restarts));
        let a = args(STREAMER, &self.records[STREAMER], self.delay_ms);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.room.set_args(STREAMER, &a);
        let t = monotonic_raw_ns();
        self.room.start(STREAMER);
        self.wait_streamer_joined()?;
        Ok(t)
    }

    /// The streamer's streaming status (its one streamed stem).
    #[must_use]
    pub fn stream_status(&self) -> serde_json::Value {
        self.room
            .status(STREAMER)
            .map(|s| s["audio"]["streaming"]["stems"][0].clone())
            .unwrap_or_default()
    }

    /// Stops every node and reads the recordings of `hosts`.
    ///
    /// # Errors
    /// A recording cannot be read.
    pub fn finish(self, hosts: &[usize]) -> anyhow::Result<Vec<Series>> {
        let paths: Vec<PathBuf> = hosts.iter().map(|&i| self.records[i].clone()).collect();
        self.finish_paths(&paths)
    }

    /// Stops every node and reads the recordings at `paths` (before the
    /// room's directory goes).
    ///
    /// # Errors
    /// A recording cannot be read.
    pub fn finish_paths(mut self, paths: &[PathBuf]) -> anyhow::Result<Vec<Series>> {
        for i in 0..3 {
            if self.room.running(i) {
                self.room.terminate(i);
            }
        }
        paths
            .iter()
            .map(|p| Series::read(p).map_err(Into::into))
            .collect()
    }

    /// Prints every node's log (for a failing test).
    pub fn dump_logs(&self) {
        self.room.dump_logs();
    }
}

/// Spreads (µs) between `a` and `b` at every ms of `[from, to)` where both
/// are readable, and the share of those instants where `b` was readable
/// that `a` was too.
#[must_use]
pub fn spreads(a: &Series, b: &Series, from: u64, to: u64) -> (Vec<f64>, f64) {
    let mut out = Vec::new();
    let (mut both, mut b_only) = (0u64, 0u64);
    let mut t = from;
    while t < to {
        if let Some(pb) = b.phase_at(t, 2_000_000) {
            match a.phase_at(t, 2_000_000) {
                Some(pa) => {
                    both += 1;
                    out.push(timecode::circular_diff(pa, pb).abs() / RATE as f64 * 1e6);
                }
                None => b_only += 1,
            }
        }
        t += 1_000_000;
    }
    out.sort_by(f64::total_cmp);
    let share = both as f64 / (both + b_only).max(1) as f64;
    (out, share)
}

/// The first instant at or after `from` from which `a` plays in sync with
/// `b` (within 1 ms of timecode) for 20 consecutive ms, if any before `to`.
#[must_use]
pub fn audible_in_sync(a: &Series, b: &Series, from: u64, to: u64) -> Option<u64> {
    let mut t = from;
    let mut run_start = None;
    while t < to {
        let ok = match (a.phase_at(t, 2_000_000), b.phase_at(t, 2_000_000)) {
            (Some(pa), Some(pb)) => timecode::circular_diff(pa, pb).abs() < 48.0,
            _ => false,
        };
        match (ok, run_start) {
            (true, None) => run_start = Some(t),
            (true, Some(s)) if t - s >= 20_000_000 => return Some(s),
            (false, _) => run_start = None,
            _ => {}
        }
        t += 1_000_000;
    }
    None
}

/// When `s` started playing from `target` after `from`: the first
/// reading after `from` that breaks the continuity of what it played
/// before (a jump, not the timecode's own wrap) and lies 0–40 ms past the
/// target's phase, dated back to the target; if within 3 s. (The phase
/// alone repeats every 100 ms, so the jump is what dates the change.)
#[must_use]
pub fn changed_to(s: &Series, target: u64, from: u64) -> Option<u64> {
    let target_phase = (target % timecode::PERIOD) as f64;
    let frames_per_ns = RATE as f64 / 1e9;
    let mut anchor: Option<(u64, f64)> = None;
    let mut t = from;
    while t < from + 3_000_000_000 {
        if let Some(p) = s.phase_at(t, 2_000_000) {
            match anchor {
                None => anchor = Some((t, p)),
                Some((ta, pa)) => {
                    let expected = pa + (t - ta) as f64 * frames_per_ns;
                    if timecode::circular_diff(p, expected).abs() > 24.0 {
                        let d = timecode::circular_diff(p, target_phase);
                        if (0.0..1_920.0).contains(&d) {
                            return Some(t - (d / frames_per_ns) as u64);
                        }
                        // Not the target: a re-cue or another jump; follow it.
                    }
                    anchor = Some((t, p));
                }
            }
        }
        t += 1_000_000;
    }
    None
}
