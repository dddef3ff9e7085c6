//! A stem played while it streams in: an [`AudioSource`] over the chunk
//! cache that plays silence, in sync, wherever data is not there yet, and
//! rejoins the music at the right frame once it arrives.
//!
//! How it stays in sync: the position advances by every frame asked for,
//! whether decoded or silent, exactly as [`crate::audio::decode::Silence`]
//! does for a missing file; so the renderer's idea of where the stem is
//! never drifts. When the decoder hits a chunk that is not cached, the
//! [`CacheReader`] fails that read at once (it never waits for the
//! network) and records the chunk as demanded, which the fetcher asks for
//! before anything else. The block plays silent; once the chunk is cached,
//! the decoder is re-seeked exactly to the current position (symphonia's
//! reader state after a failed read is not trusted; a seek resets it) and
//! the music resumes on the frame that belongs there.
//!
//! Shape: the renderer fixes a voice's shape when it starts, before the
//! stem's header may have arrived, so a streamed stem presents the device's
//! shape and maps the stem's channels to it (mono to both, etc.). A stem
//! whose rate differs from the device's cannot be played this way (no
//! resampling of streamed stems yet): it is reported and stays silent.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use autoharmonize_protocol::content::StemHash;
use symphonia::core::io::MediaSource;
use tracing::{info, warn};

use super::cache::{NO_DEMAND, StemView};
use crate::audio::StreamSpec;
use crate::audio::decode::{AudioSource, DecodeError, StemDecoder, map_channels};

/// What the decoder side and the fetcher share about one streamed stem.
#[derive(Debug)]
pub struct StreamShared {
    /// The stem.
    pub stem: StemHash,
    /// Its cache view, once the manifest is known.
    pub view: OnceLock<Arc<StemView>>,
    /// Bytes of file per second of playback (set once the decoder knows
    /// the stem's length; 0 before).
    pub playback_bps: AtomicU64,
    /// Frames played as silence because data was missing.
    pub starved_frames: AtomicU64,
    /// Times the music resumed after missing data.
    pub rejoins: AtomicU64,
    /// A problem that keeps the stem silent for good, if any.
    pub problem: Mutex<Option<String>>,
}

impl StreamShared {
    /// Shared state for `stem`, nothing known yet.
    #[must_use]
    pub fn new(stem: StemHash) -> StreamShared {
        StreamShared {
            stem,
            view: OnceLock::new(),
            playback_bps: AtomicU64::new(0),
            starved_frames: AtomicU64::new(0),
            rejoins: AtomicU64::new(0),
            problem: Mutex::new(None),
        }
    }
}

/// symphonia's view of a cached stem: a seekable byte stream whose reads
/// fail at once (`WouldBlock`) where a chunk is missing, recording which.
#[derive(Debug)]
pub struct CacheReader {
    view: Arc<StemView>,
    pos: u64,
    missing: Arc<AtomicU64>,
}

impl CacheReader {
    /// A reader over `view`, reporting missing chunks into `missing`.
    #[must_use]
    pub fn new(view: Arc<StemView>, missing: Arc<AtomicU64>) -> CacheReader {
        CacheReader {
            view,
            pos: 0,
            missing,
        }
    }
}

impl Read for CacheReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.view.read_at(self.pos, buf) {
            Ok(n) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(chunk) => {
                self.missing.store(chunk, Ordering::Release);
                // Not Interrupted (read_exact would spin) nor UnexpectedEof
                // (the decoder would take it for the end).
                Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    "chunk not cached yet",
                ))
            }
        }
    }
}

impl Seek for CacheReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let len = self.view.manifest().len;
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let pos = pos
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = pos;
        Ok(pos)
    }
}

impl MediaSource for CacheReader {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.view.manifest().len)
    }
}

/// The [`AudioSource`] of a streamed stem (see the module doc).
pub struct StreamedStem {
    shared: Arc<StreamShared>,
    spec: StreamSpec,
    decoder: Option<StemDecoder>,
    missing: Arc<AtomicU64>,
    /// The chunk the decoder waits for.
    stalled: Option<u64>,
    /// The decoder must be moved to `position` before the next read.
    needs_seek: bool,
    position: u64,
    failed: bool,
    ended: bool,
    scratch: Vec<f32>,
    /// Keeps the fetcher running while the stem plays (it holds a `Weak`).
    _alive: Arc<()>,
}

impl std::fmt::Debug for StreamedStem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedStem")
            .field("stem", &self.shared.stem)
            .field("position", &self.position)
            .field("stalled", &self.stalled)
            .finish_non_exhaustive()
    }
}

impl StreamedStem {
    /// A streamed stem presenting shape `spec` (the device's), fed by the
    /// fetcher through `shared`; `alive` is the token the fetcher watches.
    #[must_use]
    pub fn new(shared: Arc<StreamShared>, spec: StreamSpec, alive: Arc<()>) -> StreamedStem {
        StreamedStem {
            shared,
            spec,
            decoder: None,
            missing: Arc::new(AtomicU64::new(NO_DEMAND)),
            stalled: None,
            needs_seek: false,
            position: 0,
            failed: false,
            ended: false,
            scratch: Vec::new(),
            _alive: alive,
        }
    }

    fn fail(&mut self, problem: String) {
        warn!(stem = %self.shared.stem, "{problem}; playing silence in its place");
        *self
            .shared
            .problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(problem);
        self.failed = true;
    }

    /// The chunk the last failed decoder call waited for, if that is why
    /// it failed (and clears the record).
    fn take_missing(&self) -> Option<u64> {
        let m = self.missing.swap(NO_DEMAND, Ordering::AcqRel);
        (m != NO_DEMAND).then_some(m)
    }

    /// Makes the decoder ready to read at `position`, if the data allows.
    fn ready(&mut self) -> bool {
        if self.failed {
            return false;
        }
        let Some(view) = self.shared.view.get().cloned() else {
            return false;
        };
        if let Some(c) = self.stalled {
            if !view.has(c) {
                // Keep the fetcher pointed at it (a seek may have moved
                // the playhead hint away).
                view.want(c);
                return false;
            }
            self.stalled = None;
        }
        if self.decoder.is_none() {
            let _ = self.take_missing();
            let label = PathBuf::from(format!("stem {}", self.shared.stem));
            let reader = CacheReader::new(Arc::clone(&view), Arc::clone(&self.missing));
            match StemDecoder::open_source(&label, Box::new(reader)) {
                Ok(d) => {
                    let spec = d.spec();
                    if spec.rate != self.spec.rate {
                        self.fail(format!(
                            "streamed stem {} is {} Hz; streamed stems must match the output's {} Hz",
                            self.shared.stem, spec.rate, self.spec.rate
                        ));
                        return false;
                    }
                    if let Some(total) = d.total_frames().filter(|&t| t > 0) {
                        let bps = u128::from(view.manifest().len) * u128::from(spec.rate)
                            / u128::from(total);
                        self.shared
                            .playback_bps
                            .store(u64::try_from(bps).unwrap_or(u64::MAX), Ordering::Relaxed);
                    }
                    info!(stem = %self.shared.stem, rate = spec.rate, channels = spec.channels, "streamed stem opened");
                    self.decoder = Some(d);
                    self.needs_seek = true;
                }
                Err(e) => {
                    self.stall_or_fail(&e);
                    return false;
                }
            }
        }
        if self.needs_seek {
            let _ = self.take_missing();
            let pos = self.position;
            let Some(d) = self.decoder.as_mut() else {
                return false;
            };
            match d.seek(pos) {
                Ok(()) => {
                    self.needs_seek = false;
                    self.ended = false;
                }
                Err(e) => {
                    self.stall_or_fail(&e);
                    return false;
                }
            }
        }
        true
    }

    /// After a decoder error: if it read a chunk that is not there yet,
    /// wait for that chunk (it was asked for first); otherwise the file is
    /// bad and the stem fails.
    fn stall_or_fail(&mut self, e: &dyn std::fmt::Display) {
        if let Some(c) = self.take_missing() {
            self.stalled = Some(c);
        } else {
            self.fail(format!("streamed stem {}: {e}", self.shared.stem));
        }
    }

    fn silence(&mut self, out: &mut [f32]) -> usize {
        out.fill(0.0);
        let n = out.len() / usize::from(self.spec.channels.max(1));
        self.position += n as u64;
        if !self.failed {
            self.shared
                .starved_frames
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }

    /// Where the decoder should look next after a seek to `frame`: the
    /// chunk holding it, estimated from the stem's byte rate (exact for
    /// WAV, close for FLAC), so prefetching starts there before the
    /// decoder has even asked.
    fn hint_playhead(&self, frame: u64) {
        let (Some(view), Some(d)) = (self.shared.view.get(), self.decoder.as_ref()) else {
            return;
        };
        let Some(total) = d.total_frames().filter(|&t| t > 0) else {
            return;
        };
        let len = view.manifest().len;
        let byte = u128::from(frame.min(total)) * u128::from(len) / u128::from(total);
        let chunk =
            u64::try_from(byte).unwrap_or(u64::MAX) / autoharmonize_protocol::content::CHUNK_SIZE;
        view.set_playhead(chunk);
    }
}

impl AudioSource for StreamedStem {
    fn spec(&self) -> StreamSpec {
        self.spec
    }

    fn read(&mut self, out: &mut [f32]) -> Result<usize, DecodeError> {
        let out_ch = usize::from(self.spec.channels.max(1));
        let frames = out.len() / out_ch;
        if self.ended {
            return Ok(0);
        }
        let was_stalled = self.stalled.is_some() || self.decoder.is_none();
        if !self.ready() {
            return Ok(self.silence(out));
        }
        let Some(d) = self.decoder.as_mut() else {
            return Ok(self.silence(out));
        };
        let ch = usize::from(d.spec().channels.max(1));
        self.scratch.resize(frames * ch, 0.0);
        let _ = self.missing.swap(NO_DEMAND, Ordering::AcqRel);
        match d.read(&mut self.scratch) {
            Ok(n) => {
                if was_stalled && n > 0 {
                    self.shared.rejoins.fetch_add(1, Ordering::Relaxed);
                }
                map_channels(
                    &self.scratch[..n * ch],
                    ch,
                    &mut out[..n * out_ch],
                    out_ch,
                    1.0,
                    false,
                );
                self.position += n as u64;
                if n < frames {
                    self.ended = true;
                }
                Ok(n)
            }
            Err(e) => {
                if let Some(c) = self.take_missing() {
                    // Whatever the decoder produced of this block is
                    // dropped: the block plays silent and the decoder
                    // resumes exactly after it.
                    self.stalled = Some(c);
                    self.needs_seek = true;
                } else {
                    self.fail(format!("streamed stem {}: {e}", self.shared.stem));
                }
                Ok(self.silence(out))
            }
        }
    }

    fn seek(&mut self, frame: u64) -> Result<(), DecodeError> {
        self.position = frame;
        self.ended = false;
        self.stalled = None;
        self.needs_seek = self.decoder.is_some();
        self.hint_playhead(frame);
        Ok(())
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn skipped_packets(&self) -> u64 {
        self.decoder
            .as_ref()
            .map_or(0, AudioSource::skipped_packets)
    }
}
