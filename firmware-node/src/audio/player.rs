//! The node's player: opens the output and the engine with the
//! synchronised renderer, plays the stem of whichever track the room loaded
//! (looked up by id in the node's [`Library`]), and is what the mesh loop
//! talks to.
//!
//! Failure policy (a speaker must stay in the room): a track this speaker
//! does not hold, a stem that is missing or corrupt, plays silence in sync
//! and says why in the log and the status; an output that cannot be opened
//! is an error (the node then runs without audio, reported in status).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use autoharmonize_protocol::MeshTime;
use autoharmonize_protocol::clock::MeshClock;
use autoharmonize_protocol::content::TrackId;
use autoharmonize_protocol::transport::Transport;
use serde::Serialize;
use tracing::{info, warn};

use super::StreamSpec;
use super::decode::{AudioSource, Silence, StemDecoder};
use super::engine::{Counters, Engine, EngineConfig, Realtime, SourceState};
use super::output::{self, SharedTime, SinkRequest};
use super::render::{
    ChannelMap, RenderConfig, RenderStats, Renderer, SharedTimeline, TrackVoices, Voice,
};
use super::track::{Selection, StemChoice, Track};
use crate::library::Library;
use crate::stream::{LateStem, RoomHolders, Streaming, StreamingStatus};

/// What a node's player needs.
#[derive(Clone, Debug)]
pub struct PlayerConfig {
    /// The tracks this speaker holds.
    pub library: Arc<Library>,
    /// The track played while the room has loaded none (a room founded
    /// by a speaker without a library), if this speaker has one.
    pub default_track: Option<TrackId>,
    /// The stem to play, or all.
    pub stem: StemChoice,
    /// The output by name (see [`output::open`]).
    pub output: String,
    /// Extra latency after the DAC to compensate, in ms (may be negative).
    pub latency_offset_ms: i32,
    /// Which stem channels go out.
    pub channel_map: ChannelMap,
    /// Device period in frames.
    pub period_frames: u32,
    /// Periods in the device buffer.
    pub periods: u32,
    /// Where stems this speaker does not hold are streamed from, if
    /// streaming runs.
    pub remote: Option<Remote>,
}

/// Streaming of stems this speaker does not hold: the service, and the
/// room's catalogue naming each track's stems and their holders.
#[derive(Clone, Debug)]
pub struct Remote {
    /// The chunk exchange, cache and fetchers.
    pub streaming: Arc<Streaming>,
    /// The catalogue (track descriptions, holders).
    pub room: Arc<RoomHolders>,
}

/// Audio as the status endpoint shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AudioStatus {
    /// Track title, if a track is open.
    pub track: Option<String>,
    /// The id of the track the voices play (hex), if one is loaded.
    pub track_id: Option<String>,
    /// What this speaker plays (stem names).
    pub stems: Vec<String>,
    /// Problems with the track or stems (playing silence instead).
    pub problems: Vec<String>,
    /// The output in use.
    pub output: String,
    /// Frames written to the device.
    pub frames_written: u64,
    /// Ring fill in ms (the buffer level).
    pub buffer_ms: u64,
    /// Device delay in ms.
    pub device_delay_ms: f64,
    /// Underruns (periods filled with silence).
    pub underruns: u64,
    /// Device xruns.
    pub xruns: u64,
    /// Position error the renderer measures against the schedule, µs.
    pub sync_error_us: f64,
    /// Speed correction in use, ppm.
    pub correction_ppm: f64,
    /// The DAC's rate against the local clock, ppm.
    pub dac_rate_ppm: f64,
    /// Re-cues so far.
    pub recues: u64,
    /// Changes applied late (learnt after their frames were rendered).
    pub late_changes: u64,
    /// Whether the output thread got real-time priority.
    pub realtime: bool,
    /// Whether the output is running.
    pub running: bool,
    /// Stems streamed from peers, the cache and the exchange.
    pub streaming: Option<StreamingStatus>,
}

/// What the voices play now: written by the renderer's track source on a
/// track change, read by the status endpoint.
#[derive(Clone, Debug, Default)]
struct NowPlaying {
    track_id: Option<TrackId>,
    title: Option<String>,
    stems: Vec<String>,
    problems: Vec<String>,
}

/// The running player.
pub struct Player {
    engine: Engine,
    timeline: Arc<SharedTimeline>,
    stats: Arc<RenderStats>,
    playing: Arc<Mutex<NowPlaying>>,
    output: String,
    streaming: Option<Arc<Streaming>>,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

/// The renderer's [`TrackVoices`]: voices of a track from the library.
struct LibraryVoices {
    library: Arc<Library>,
    default_track: Option<TrackId>,
    stem: StemChoice,
    device: StreamSpec,
    playing: Arc<Mutex<NowPlaying>>,
    remote: Option<Remote>,
}

impl TrackVoices for LibraryVoices {
    fn voices(&mut self, track: Option<TrackId>) -> Vec<Voice> {
        let id = track.or(self.default_track);
        let mut now = NowPlaying {
            track_id: id,
            ..NowPlaying::default()
        };
        let voices = match id.and_then(|id| self.library.get(id)) {
            Some(t) => {
                now.title = Some(t.track.title().to_owned());
                open_voices(&t.track, &self.stem, self.device, &mut now)
            }
            None => {
                let info = id
                    .zip(self.remote.as_ref())
                    .and_then(|(id, r)| r.room.track(id));
                match (info, &self.remote) {
                    (Some(info), Some(remote)) => {
                        now.title = Some(info.title.to_string());
                        streamed_voices(
                            &info,
                            &self.stem,
                            self.device,
                            &self.library,
                            remote,
                            &mut now,
                        )
                    }
                    (None, Some(remote)) if id.is_some() && self.stem != StemChoice::All => {
                        let id = id.expect("checked above");
                        now.problems.push(format!(
                            "track {id} is not described by the room's catalogue yet; silence in sync until it is, then streaming"
                        ));
                        let ch = fallback_channels(&self.stem)[0];
                        let late = LateStem::new(
                            Arc::clone(&remote.room),
                            Arc::clone(&remote.streaming),
                            id,
                            self.stem.clone(),
                            self.device,
                        );
                        Voice::new(ch, Box::new(late), self.device.rate)
                            .map(|v| vec![v])
                            .unwrap_or_else(|_| silent_voices(&self.stem, self.device))
                    }
                    _ => {
                        now.problems.push(match id {
                            Some(id) => format!(
                                "track {id} is neither in this speaker's library nor described by the room's catalogue yet"
                            ),
                            None => "no track loaded and none in this speaker's library".to_owned(),
                        });
                        silent_voices(&self.stem, self.device)
                    }
                }
            }
        };
        for p in &now.problems {
            warn!("{p}; playing silence in its place");
        }
        info!(
            track = now.title.as_deref().unwrap_or("(none)"),
            stems = ?now.stems,
            "voices ready"
        );
        *self.playing.lock().unwrap_or_else(PoisonError::into_inner) = now;
        voices
    }
}

impl Player {
    /// Opens everything and starts playing (silence until the mesh knows
    /// the time and the state). `time` is the node's local clock.
    ///
    /// # Errors
    /// The output cannot be opened, or the threads cannot start.
    pub fn start(config: &PlayerConfig, time: SharedTime) -> anyhow::Result<Player> {
        let device = StreamSpec {
            rate: 48_000,
            channels: 2,
        };
        let req = SinkRequest {
            spec: device,
            period_frames: config.period_frames,
            periods: config.periods,
        };
        let sink = output::open(&config.output, &req)
            .map_err(|e| anyhow::anyhow!("opening the output '{}': {e}", config.output))?;
        let sink = if sink.is_realtime() {
            sink
        } else {
            // A file or the null output has no clock of its own: pace it
            // like a device, so it plays (and records) in real time.
            output::paced(sink, Arc::clone(&time))
        };
        let device = sink.config().spec;
        let playing = Arc::new(Mutex::new(NowPlaying::default()));
        let mut source = LibraryVoices {
            library: Arc::clone(&config.library),
            default_track: config.default_track,
            stem: config.stem.clone(),
            device,
            playing: Arc::clone(&playing),
            remote: config.remote.clone(),
        };
        let voices = source.voices(None);
        let timeline = Arc::new(SharedTimeline::default());
        let stats = Arc::new(RenderStats::default());
        let renderer = Renderer::new(
            voices,
            RenderConfig {
                device,
                latency_offset_ns: i64::from(config.latency_offset_ms) * 1_000_000,
                map: config.channel_map,
            },
            Arc::clone(&timeline),
            Arc::clone(&stats),
        )
        .with_tracks(Box::new(source), config.default_track);
        let period = sink.config().period_frames;
        let engine_config = EngineConfig {
            // 21 ms ahead of the device (plus its own buffer): decisions
            // arrive about 100 ms before they take effect.
            ring_frames: 1_024,
            prefill_frames: 512,
            chunk_frames: period.clamp(64, 512),
            ..EngineConfig::default()
        };
        let engine = Engine::start_producer(Box::new(renderer), sink, engine_config, time)?;
        info!(
            output = %config.output,
            latency_offset_ms = config.latency_offset_ms,
            channel_map = ?config.channel_map,
            "audio started"
        );
        Ok(Player {
            engine,
            timeline,
            stats,
            playing,
            output: config.output.clone(),
            streaming: config.remote.as_ref().map(|r| Arc::clone(&r.streaming)),
        })
    }

    /// A decision: `transport` holds from `apply_at` on.
    pub fn decided(&self, apply_at: MeshTime, transport: Transport) {
        self.timeline
            .update(|t| t.schedule.decided(apply_at, transport));
    }

    /// The whole state was replaced (joined a room, caught up).
    pub fn replaced(&self, transport: Transport) {
        self.timeline.update(|t| t.schedule.replaced(transport));
    }

    /// The mesh clock changed (or became known).
    pub fn clock(&self, clock: Option<MeshClock>) {
        self.timeline.update(|t| t.clock = clock);
    }

    /// The engine's counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.engine.counters()
    }

    /// The status snapshot.
    #[must_use]
    pub fn status(&self) -> AudioStatus {
        let c = self.engine.counters();
        let rate = f64::from(self.engine.spec().rate.max(1));
        let s = &self.stats;
        let now = self
            .playing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        AudioStatus {
            track: now.title,
            track_id: now.track_id.map(|t| t.to_string()),
            stems: now.stems,
            problems: now.problems,
            output: self.output.clone(),
            frames_written: c.frames_written,
            buffer_ms: c.ring_fill_frames * 1000 / rate as u64,
            device_delay_ms: c.delay_frames as f64 * 1000.0 / rate,
            underruns: c.underruns,
            xruns: c.xruns,
            sync_error_us: s.error_ns.load(Ordering::Relaxed) as f64 / 1e3,
            correction_ppm: s.correction_ppb.load(Ordering::Relaxed) as f64 / 1e3,
            dac_rate_ppm: s.dac_rate_ppb.load(Ordering::Relaxed) as f64 / 1e3,
            recues: s.recues.load(Ordering::Relaxed),
            late_changes: s.late_changes.load(Ordering::Relaxed),
            realtime: c.realtime == Realtime::Granted,
            running: c.running && c.source != SourceState::Failed,
            streaming: self.streaming.as_ref().map(|s| s.status()),
        }
    }

    /// Stops the threads.
    pub fn stop(self) {
        if let Err(e) = self.engine.stop() {
            warn!("audio stopped with an error: {e}");
        }
    }
}

/// The channel indices a speaker set to `stem` plays when the track's
/// stems are unknown: the index given, else channel 0.
fn fallback_channels(stem: &StemChoice) -> Vec<usize> {
    match stem {
        StemChoice::Index(i) => vec![*i],
        _ => vec![0],
    }
}

/// Silent voices, in sync, for a track this speaker cannot play.
fn silent_voices(stem: &StemChoice, device: StreamSpec) -> Vec<Voice> {
    fallback_channels(stem)
        .into_iter()
        .filter_map(|ch| Voice::new(ch, Box::new(Silence::new(device)), device.rate).ok())
        .collect()
}

/// The voices of `track` for the channel setting `stem`: one per stem
/// played, silence for any that cannot be opened (each problem recorded in
/// `now`).
fn open_voices(
    track: &Track,
    stem: &StemChoice,
    device: StreamSpec,
    now: &mut NowPlaying,
) -> Vec<Voice> {
    let silent = |channel: usize| -> Option<Voice> {
        Voice::new(channel, Box::new(Silence::new(device)), device.rate).ok()
    };
    let chosen: Vec<usize> = match stem {
        StemChoice::All => (0..track.stems().len()).collect(),
        other => match track.pick(other) {
            Ok(Selection::One(i, _)) => vec![i],
            Ok(Selection::All(_)) => (0..track.stems().len()).collect(),
            Err(e) => {
                now.problems.push(format!("{e}"));
                Vec::new()
            }
        },
    };
    let mut voices = Vec::new();
    for i in chosen {
        let stem = &track.stems()[i];
        now.stems.push(stem.name.clone());
        let source: Box<dyn AudioSource> = match StemDecoder::open(&stem.path) {
            Ok(d) => Box::new(d),
            Err(e) => {
                now.problems.push(format!("stem {}: {e}", stem.name));
                Box::new(Silence::new(device))
            }
        };
        match Voice::new(i, source, device.rate) {
            Ok(v) => voices.push(v),
            Err(e) => {
                now.problems.push(format!("stem {}: {e}", stem.name));
                voices.extend(silent(i));
            }
        }
    }
    if voices.is_empty() {
        voices.extend(silent(0));
    }
    voices
}

/// The voices of a track this speaker does not hold, from the room's
/// description of it: each stem played is streamed from its holders (or
/// decoded locally if this speaker holds that very stem in another track).
fn streamed_voices(
    info: &autoharmonize_protocol::catalogue::TrackInfo,
    stem: &StemChoice,
    device: StreamSpec,
    library: &Library,
    remote: &Remote,
    now: &mut NowPlaying,
) -> Vec<Voice> {
    let names: Vec<&str> = info.stems.iter().map(|s| s.name.as_str()).collect();
    let chosen: Vec<usize> = match stem {
        StemChoice::All => (0..names.len()).collect(),
        StemChoice::Index(i) if *i < names.len() => vec![*i],
        StemChoice::Name(n) if names.contains(&n.as_str()) => {
            names.iter().position(|s| s == n).into_iter().collect()
        }
        other => {
            now.problems.push(format!(
                "this speaker's channel '{other}' is not a stem of the loaded track (it has: {})",
                names.join(", ")
            ));
            Vec::new()
        }
    };
    let mut voices = Vec::new();
    for i in chosen {
        let s = &info.stems[i];
        now.stems.push(s.name.to_string());
        let source: Box<dyn AudioSource> = match library
            .stem_file(s.hash)
            .map(|f| StemDecoder::open(&f.path))
        {
            Some(Ok(d)) => Box::new(d),
            _ => {
                info!(stem = %s.name, hash = %s.hash, "streaming the stem from the room");
                Box::new(remote.streaming.stream(s.hash, device))
            }
        };
        match Voice::new(i, source, device.rate) {
            Ok(v) => voices.push(v),
            Err(e) => now.problems.push(format!("stem {}: {e}", s.name)),
        }
    }
    if voices.is_empty() {
        return silent_voices(stem, device);
    }
    voices
}

/// The stem index a speaker set to `stem` plays in `track` (`None` for
/// all, or a name the track lacks), for the view.
#[must_use]
pub fn stem_index(track: &Track, stem: &StemChoice) -> Option<usize> {
    match track.pick(stem) {
        Ok(Selection::One(i, _)) => Some(i),
        _ => match stem {
            StemChoice::Index(i) => Some(*i),
            _ => None,
        },
    }
}
