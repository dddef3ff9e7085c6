//! Decoding stem files with symphonia into interleaved `f32` at the file's
//! own rate and channel count, with sample-exact seeking, and the mix-down
//! of several stems for a speaker configured for `all`.
//!
//! Why the position bookkeeping: every speaker must emit the same frame at
//! the same instant, so "where am I in the file" cannot be a count of what
//! was returned so far (a skipped packet or an inexact seek would shift the
//! whole stem for the rest of the song). Instead each decoded packet is
//! placed by its own timestamp, converted to frames, and the decoder returns
//! exactly the frames from [`AudioSource::position`] on: frames before it
//! are discarded (after a seek symphonia lands on the packet at or before
//! the target), a gap after it (a packet that failed to decode) is filled
//! with silence of the same length.
//!
//! Invariant: after `seek(n)`, the next frames read are frames `n, n+1, …`
//! of the file, bit-identical to reading from frame 0 and skipping `n`
//! (verified for WAV and FLAC by `tests/audio_decode_seek.rs`; for lossy
//! codecs the position is exact but the first few milliseconds after a seek
//! come from a decoder that warmed up on [`LOSSY_PREROLL_FRAMES`] rather
//! than on the whole file, which may differ in the last bits).
//!
//! Errors follow symphonia's contract: a packet that fails to decode is
//! skipped and counted ([`AudioSource::skipped_packets`]) and its frames
//! become silence; every other error ends the stream with a
//! [`DecodeError`].

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::well_known::{
    CODEC_ID_AAC, CODEC_ID_MP1, CODEC_ID_MP2, CODEC_ID_MP3, CODEC_ID_VORBIS,
};
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::{Error as SymError, SeekErrorKind};
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::units::{TimeBase, Timestamp};

use super::StreamSpec;

/// Frames decoded and discarded before a seek target for lossy codecs, whose
/// decoders need previous packets (overlapping transforms) to reproduce a
/// frame: more than two packets of MP3 (1152), AAC (1024) or Vorbis (≤ 2048
/// overlap). Lossless codecs decode each packet on its own and use 0.
pub const LOSSY_PREROLL_FRAMES: u64 = 4096;

/// Largest gap between packets (in seconds of the file) filled with
/// silence; a larger jump in timestamps is a broken container, and the
/// position follows the timestamps instead of inventing minutes of silence.
const MAX_GAP_SECONDS: u64 = 1;

/// Most consecutive packets that may fail to decode while opening a file
/// before it is declared corrupt.
const MAX_PRIMING_FAILURES: u64 = 64;

/// Why a stem cannot be decoded. Only [`DecodeError::Open`] can go away by
/// retrying (the file may appear); the others are properties of the file.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file cannot be opened (missing, permissions).
    #[error("{}: cannot open: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The container is not recognised, the codec is not supported, the
    /// stream is corrupt beyond one packet, or reading failed midway.
    #[error("{}: {source}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// symphonia's error.
        #[source]
        source: SymError,
    },
    /// The file holds no audio track.
    #[error("{}: no audio track", path.display())]
    NoAudioTrack {
        /// The file.
        path: PathBuf,
    },
    /// No packet of the file could be decoded.
    #[error("{}: corrupt: no decodable audio ({skipped} packets failed)", path.display())]
    NoDecodableAudio {
        /// The file.
        path: PathBuf,
        /// Packets that failed.
        skipped: u64,
    },
    /// The decoded audio changed rate or channel count midway (chained
    /// streams); not supported.
    #[error("{}: audio changed from {from:?} to {to:?} midway", path.display())]
    SpecChanged {
        /// The file.
        path: PathBuf,
        /// The shape so far.
        from: StreamSpec,
        /// The new shape.
        to: StreamSpec,
    },
    /// Stems mixed down together have different sample rates.
    #[error("{}: {rate} Hz, but the other stems are {expected} Hz", path.display())]
    RateMismatch {
        /// The odd stem's file.
        path: PathBuf,
        /// Its rate.
        rate: u32,
        /// The first stem's rate.
        expected: u32,
    },
}

/// A stream of interleaved `f32` frames with a position: one decoded stem,
/// a mix-down, or silence.
///
/// Implementations live on the decoder thread; nothing here is real-time.
pub trait AudioSource: Send {
    /// The stream's rate and channel count (fixed for its lifetime).
    fn spec(&self) -> StreamSpec;

    /// Fills `out` (interleaved; its length a multiple of the channel count)
    /// with the frames from [`AudioSource::position`] on and returns how
    /// many frames it wrote; fewer than asked only at the end of the
    /// stream, `0` once ended.
    ///
    /// # Errors
    /// An unrecoverable error (see the module doc); the stream is over.
    fn read(&mut self, out: &mut [f32]) -> Result<usize, DecodeError>;

    /// Moves to frame `frame` (at the stream's own rate), exactly. A frame
    /// past the end leaves the stream ended.
    ///
    /// # Errors
    /// The container cannot seek; the stream is in an unspecified position.
    fn seek(&mut self, frame: u64) -> Result<(), DecodeError>;

    /// The frame the next [`AudioSource::read`] starts at.
    fn position(&self) -> u64;

    /// Packets that failed to decode and were replaced by silence, since
    /// opening.
    fn skipped_packets(&self) -> u64;
}

/// One stem file, decoded.
pub struct StemDecoder {
    path: PathBuf,
    reader: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    /// Known after the first packet decodes; always `Some` once `open`
    /// returned.
    spec: Option<StreamSpec>,
    time_base: Option<TimeBase>,
    preroll: u64,
    total_frames: Option<u64>,
    /// Frame index of the next frame `read` returns.
    position: u64,
    /// Frames of silence to return before `pending` (a gap in the stream).
    pending_silence: u64,
    /// The last decoded packet, interleaved; `pending[start..end]` is still
    /// to be returned.
    pending: Vec<f32>,
    pending_start: usize,
    pending_end: usize,
    ended: bool,
    skipped: u64,
    filled: u64,
    discontinuities: u64,
}

impl std::fmt::Debug for StemDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StemDecoder")
            .field("path", &self.path)
            .field("spec", &self.spec)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl StemDecoder {
    /// Opens `path`, finds its audio track and decodes up to its first
    /// packet to learn the true output shape (a container may state it
    /// wrongly, e.g. AAC with SBR doubles the rate).
    ///
    /// # Errors
    /// [`DecodeError::Open`], [`DecodeError::Format`] (not audio, or
    /// corrupt), [`DecodeError::NoAudioTrack`],
    /// [`DecodeError::NoDecodableAudio`].
    pub fn open(path: &Path) -> Result<StemDecoder, DecodeError> {
        let file = File::open(path).map_err(|source| DecodeError::Open {
            path: path.to_owned(),
            source,
        })?;
        StemDecoder::open_source(path, Box::new(file))
    }

    /// Like [`StemDecoder::open`], reading the file's bytes from `source`
    /// (e.g. a stem streamed from peers); `path` names it in errors and its
    /// extension hints the format.
    ///
    /// # Errors
    /// As [`StemDecoder::open`], except [`DecodeError::Open`].
    pub fn open_source(
        path: &Path,
        source: Box<dyn symphonia::core::io::MediaSource>,
    ) -> Result<StemDecoder, DecodeError> {
        let mss = MediaSourceStream::new(source, Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let fmt_err = |source| DecodeError::Format {
            path: path.to_owned(),
            source,
        };
        let reader = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(fmt_err)?;
        let track =
            reader
                .default_track(TrackType::Audio)
                .ok_or_else(|| DecodeError::NoAudioTrack {
                    path: path.to_owned(),
                })?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| DecodeError::NoAudioTrack {
                path: path.to_owned(),
            })?;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(fmt_err)?;
        let lossy = [
            CODEC_ID_MP1,
            CODEC_ID_MP2,
            CODEC_ID_MP3,
            CODEC_ID_AAC,
            CODEC_ID_VORBIS,
        ]
        .contains(&params.codec);
        let declared = match (params.sample_rate, params.channels.as_ref()) {
            (Some(rate), Some(ch)) => u16::try_from(ch.count())
                .ok()
                .map(|channels| StreamSpec { rate, channels }),
            _ => None,
        };
        let mut dec = StemDecoder {
            path: path.to_owned(),
            track_id: track.id,
            time_base: track.time_base,
            total_frames: track.num_frames,
            preroll: if lossy { LOSSY_PREROLL_FRAMES } else { 0 },
            reader,
            decoder,
            spec: None,
            position: 0,
            pending_silence: 0,
            pending: Vec::new(),
            pending_start: 0,
            pending_end: 0,
            ended: false,
            skipped: 0,
            filled: 0,
            discontinuities: 0,
        };
        while dec.spec.is_none() && !dec.ended {
            dec.fetch()?;
            if dec.skipped >= MAX_PRIMING_FAILURES {
                break;
            }
        }
        if dec.spec.is_none() {
            // An empty but valid file still has a shape if its header says so.
            match declared {
                Some(spec) if dec.skipped == 0 => dec.spec = Some(spec),
                _ => {
                    return Err(DecodeError::NoDecodableAudio {
                        path: path.to_owned(),
                        skipped: dec.skipped,
                    });
                }
            }
        }
        Ok(dec)
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The length in frames, if the container states it.
    #[must_use]
    pub fn total_frames(&self) -> Option<u64> {
        self.total_frames
    }

    /// Frames of silence inserted where packets were missing (skipped as
    /// undecodable by us, or dropped by the container reader when it
    /// resynchronised after damage).
    #[must_use]
    pub fn filled_frames(&self) -> u64 {
        self.filled
    }

    /// Times the stream's timestamps jumped by more than
    /// a second (`MAX_GAP_SECONDS`) and the position followed them.
    #[must_use]
    pub fn discontinuities(&self) -> u64 {
        self.discontinuities
    }

    fn shape(&self) -> StreamSpec {
        self.spec
            .expect("open() returns only once the shape is known")
    }

    /// `ts` (in the track's time base) in frames at the file's rate.
    fn ts_to_frames(&self, ts: i128, rate: u32) -> i128 {
        match self.time_base {
            Some(tb) => (ts * i128::from(tb.numer.get()) * i128::from(rate))
                .div_euclid(i128::from(tb.denom.get())),
            None => ts,
        }
    }

    /// The latest timestamp at or before frame `frame`.
    fn frame_to_ts(&self, frame: u64, rate: u32) -> i64 {
        let ts = match self.time_base {
            Some(tb) => {
                i128::from(frame) * i128::from(tb.denom.get())
                    / (i128::from(tb.numer.get()) * i128::from(rate))
            }
            None => i128::from(frame),
        };
        i64::try_from(ts).unwrap_or(i64::MAX)
    }

    /// Reads and decodes packets until one yields frames at or after the
    /// position (stored in `pending`), or the stream ends.
    fn fetch(&mut self) -> Result<(), DecodeError> {
        loop {
            let packet = match self.reader.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.ended = true;
                    return Ok(());
                }
                // Some readers report the end of a truncated file this way:
                // play what there is.
                Err(SymError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.ended = true;
                    return Ok(());
                }
                Err(source) => {
                    return Err(DecodeError::Format {
                        path: self.path.clone(),
                        source,
                    });
                }
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let buf = match self.decoder.decode(&packet) {
                Ok(buf) => buf,
                // symphonia: "If a DecodeError or IoError is returned, the
                // packet is undecodeable and should be discarded."
                Err(SymError::DecodeError(_) | SymError::IoError(_)) => {
                    self.skipped += 1;
                    continue;
                }
                Err(source) => {
                    return Err(DecodeError::Format {
                        path: self.path.clone(),
                        source,
                    });
                }
            };
            let to = StreamSpec {
                rate: buf.spec().rate(),
                channels: u16::try_from(buf.spec().channels().count()).unwrap_or(u16::MAX),
            };
            match self.spec {
                None => self.spec = Some(to),
                Some(from) if from != to => {
                    return Err(DecodeError::SpecChanged {
                        path: self.path.clone(),
                        from,
                        to,
                    });
                }
                Some(_) => {}
            }
            let decoded = buf.frames();
            buf.copy_to_vec_interleaved::<f32>(&mut self.pending);

            let rate = to.rate;
            let ch = usize::from(to.channels);
            let trim_start = self.ts_to_frames(i128::from(packet.trim_start.get()), rate);
            let trim_end = self.ts_to_frames(i128::from(packet.trim_end.get()), rate);
            let valid = self.ts_to_frames(i128::from(packet.dur.get()), rate);
            // Decoders trim encoder delay and padding themselves (gapless
            // is on); if one did not, its buffer has the untrimmed length.
            let (mut lo, hi) = if (trim_start > 0 || trim_end > 0)
                && decoded as i128 == trim_start + valid + trim_end
            {
                let lo = usize::try_from(trim_start).unwrap_or(decoded).min(decoded);
                let hi = decoded.saturating_sub(usize::try_from(trim_end).unwrap_or(decoded));
                (lo, hi.max(lo))
            } else {
                (0, decoded)
            };
            // The first valid frame's place on the file's timeline.
            let start = self.ts_to_frames(i128::from(packet.pts.get()), rate) + trim_start;
            let end = start + (hi - lo) as i128;
            let pos = i128::from(self.position);
            if end <= pos {
                // Entirely before the position: pre-roll after a seek.
                continue;
            }
            if start < pos {
                lo += usize::try_from(pos - start).expect("pos - start < end - start <= hi - lo");
            } else if start > pos {
                let gap = start - pos;
                if gap <= i128::from(MAX_GAP_SECONDS * u64::from(rate)) {
                    self.pending_silence = u64::try_from(gap).expect("0 < gap <= a few seconds");
                    self.filled += self.pending_silence;
                } else {
                    self.position = u64::try_from(start).expect("start > pos >= 0");
                    self.discontinuities += 1;
                }
            }
            self.pending_start = lo * ch;
            self.pending_end = hi * ch;
            return Ok(());
        }
    }
}

impl AudioSource for StemDecoder {
    fn spec(&self) -> StreamSpec {
        self.shape()
    }

    fn read(&mut self, out: &mut [f32]) -> Result<usize, DecodeError> {
        let ch = usize::from(self.shape().channels);
        let want = out.len() / ch;
        let mut done = 0;
        while done < want {
            if self.pending_silence > 0 {
                let n =
                    (want - done).min(usize::try_from(self.pending_silence).unwrap_or(usize::MAX));
                out[done * ch..(done + n) * ch].fill(0.0);
                self.pending_silence -= n as u64;
                self.position += n as u64;
                done += n;
            } else if self.pending_start < self.pending_end {
                let avail = (self.pending_end - self.pending_start) / ch;
                let n = avail.min(want - done);
                out[done * ch..(done + n) * ch].copy_from_slice(
                    &self.pending[self.pending_start..self.pending_start + n * ch],
                );
                self.pending_start += n * ch;
                self.position += n as u64;
                done += n;
            } else if self.ended {
                break;
            } else {
                self.fetch()?;
            }
        }
        Ok(done)
    }

    fn seek(&mut self, frame: u64) -> Result<(), DecodeError> {
        let rate = self.shape().rate;
        let target = frame.saturating_sub(self.preroll);
        let ts = Timestamp::new(self.frame_to_ts(target, rate));
        let past_end = match self.reader.seek(
            SeekMode::Accurate,
            SeekTo::Timestamp {
                ts,
                track_id: self.track_id,
            },
        ) {
            Ok(_) => false,
            Err(SymError::SeekError(SeekErrorKind::OutOfRange)) => true,
            // symphonia's FLAC reader reports a seek to exactly the end this
            // way; a truncated file ends there too. Either way: nothing to play.
            Err(SymError::IoError(e)) if e.kind() == io::ErrorKind::UnexpectedEof => true,
            Err(source) => {
                return Err(DecodeError::Format {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        self.decoder.reset();
        self.position = frame;
        self.pending_silence = 0;
        self.pending_start = 0;
        self.pending_end = 0;
        self.ended = past_end;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn skipped_packets(&self) -> u64 {
        self.skipped
    }
}

/// Every stem of a track summed into one stream, for a speaker configured
/// for `all`.
///
/// Headroom: the sum is scaled by `1/sqrt(n)` for `n` stems. Stems of one
/// song are largely uncorrelated, so this keeps the mix's loudness close to
/// one stem's (sums of uncorrelated signals grow as `sqrt(n)`), where `1/n`
/// would make the `all` speaker audibly quieter than the others. Peaks where
/// stems line up can still exceed full scale; the sink clamps them (hard
/// clip) rather than wrapping. The output has the largest channel count of
/// the stems (a mono stem is spread to every channel), and all stems must
/// share one rate. The mix ends when the longest stem ends; shorter stems
/// contribute silence after their end.
#[derive(Debug)]
pub struct Mixdown {
    stems: Vec<StemDecoder>,
    ended: Vec<bool>,
    spec: StreamSpec,
    gain: f32,
    scratch: Vec<f32>,
    position: u64,
}

impl Mixdown {
    /// Mixes `stems` (at least one).
    ///
    /// # Errors
    /// [`DecodeError::RateMismatch`] if the stems' rates differ.
    ///
    /// # Panics
    /// If `stems` is empty (a [`super::track::Track`] never is).
    pub fn new(stems: Vec<StemDecoder>) -> Result<Mixdown, DecodeError> {
        let first = stems.first().expect("a track has at least one stem").spec();
        let mut channels = first.channels;
        for s in &stems {
            let spec = s.spec();
            if spec.rate != first.rate {
                return Err(DecodeError::RateMismatch {
                    path: s.path.clone(),
                    rate: spec.rate,
                    expected: first.rate,
                });
            }
            channels = channels.max(spec.channels);
        }
        let n = stems.len();
        Ok(Mixdown {
            ended: vec![false; n],
            spec: StreamSpec {
                rate: first.rate,
                channels,
            },
            gain: 1.0 / (n as f32).sqrt(),
            scratch: Vec::new(),
            stems,
            position: 0,
        })
    }

    /// The gain applied to each stem: `1/sqrt(n)`.
    #[must_use]
    pub fn stem_gain(&self) -> f32 {
        self.gain
    }
}

impl AudioSource for Mixdown {
    fn spec(&self) -> StreamSpec {
        self.spec
    }

    fn read(&mut self, out: &mut [f32]) -> Result<usize, DecodeError> {
        let out_ch = usize::from(self.spec.channels);
        let frames = out.len() / out_ch;
        out.fill(0.0);
        let mut produced = 0;
        for (stem, ended) in self.stems.iter_mut().zip(self.ended.iter_mut()) {
            if *ended {
                continue;
            }
            let ch = usize::from(stem.spec().channels);
            self.scratch.resize(frames * ch, 0.0);
            let n = stem.read(&mut self.scratch)?;
            if n < frames {
                *ended = true;
            }
            map_channels(
                &self.scratch[..n * ch],
                ch,
                &mut out[..n * out_ch],
                out_ch,
                self.gain,
                true,
            );
            produced = produced.max(n);
        }
        self.position += produced as u64;
        Ok(produced)
    }

    fn seek(&mut self, frame: u64) -> Result<(), DecodeError> {
        for (stem, ended) in self.stems.iter_mut().zip(self.ended.iter_mut()) {
            stem.seek(frame)?;
            *ended = false;
        }
        self.position = frame;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn skipped_packets(&self) -> u64 {
        self.stems.iter().map(AudioSource::skipped_packets).sum()
    }
}

/// Endless silence in a given shape: what a speaker plays, in sync, when
/// its stem is missing or corrupt, so it stays in the room.
#[derive(Clone, Copy, Debug)]
pub struct Silence {
    spec: StreamSpec,
    position: u64,
}

impl Silence {
    /// Silence of shape `spec`.
    #[must_use]
    pub fn new(spec: StreamSpec) -> Silence {
        Silence { spec, position: 0 }
    }
}

impl AudioSource for Silence {
    fn spec(&self) -> StreamSpec {
        self.spec
    }

    fn read(&mut self, out: &mut [f32]) -> Result<usize, DecodeError> {
        out.fill(0.0);
        let n = out.len() / usize::from(self.spec.channels);
        self.position += n as u64;
        Ok(n)
    }

    fn seek(&mut self, frame: u64) -> Result<(), DecodeError> {
        self.position = frame;
        Ok(())
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn skipped_packets(&self) -> u64 {
        0
    }
}

/// Converts interleaved `src` (`src_ch` channels) into `dst` (`dst_ch`
/// channels, same frame count), scaled by `gain`, added to `dst` if `add`
/// or overwriting it otherwise.
///
/// Mapping: equal counts copy; a mono source goes to every channel; a mono
/// destination gets the mean of the source channels; otherwise channel `c`
/// takes source channel `c` and channels the source lacks stay silent.
pub(crate) fn map_channels(
    src: &[f32],
    src_ch: usize,
    dst: &mut [f32],
    dst_ch: usize,
    gain: f32,
    add: bool,
) {
    let put = |d: &mut f32, v: f32| {
        if add {
            *d += v * gain;
        } else {
            *d = v * gain;
        }
    };
    if src_ch == dst_ch {
        for (d, s) in dst.iter_mut().zip(src) {
            put(d, *s);
        }
    } else if src_ch == 1 {
        for (frame, s) in dst.chunks_exact_mut(dst_ch).zip(src) {
            for d in frame {
                put(d, *s);
            }
        }
    } else if dst_ch == 1 {
        let scale = 1.0 / src_ch as f32;
        for (d, frame) in dst.iter_mut().zip(src.chunks_exact(src_ch)) {
            put(d, frame.iter().sum::<f32>() * scale);
        }
    } else {
        for (dframe, sframe) in dst.chunks_exact_mut(dst_ch).zip(src.chunks_exact(src_ch)) {
            for (c, d) in dframe.iter_mut().enumerate() {
                put(d, sframe.get(c).copied().unwrap_or(0.0));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_mapping() {
        let mut dst = [0.0f32; 4];
        map_channels(&[0.5, -0.5], 1, &mut dst, 2, 1.0, false);
        assert_eq!(dst, [0.5, 0.5, -0.5, -0.5]);
        let mut mono = [0.0f32; 2];
        map_channels(&[1.0, 0.0, 0.5, 0.5], 2, &mut mono, 1, 1.0, false);
        assert_eq!(mono, [0.5, 0.5]);
        let mut acc = [1.0f32; 2];
        map_channels(&[1.0, 1.0], 2, &mut acc, 2, 0.5, true);
        assert_eq!(acc, [1.5, 1.5]);
        let mut wide = [9.0f32; 3];
        map_channels(&[0.25, 0.75], 2, &mut wide, 3, 1.0, false);
        assert_eq!(wide, [0.25, 0.75, 0.0]);
    }

    #[test]
    fn silence_keeps_position() {
        let mut s = Silence::new(StreamSpec {
            rate: 48_000,
            channels: 2,
        });
        let mut out = [1.0f32; 8];
        assert_eq!(s.read(&mut out).ok(), Some(4));
        assert!(out.iter().all(|&x| x == 0.0));
        s.seek(100).ok();
        assert_eq!(s.position(), 100);
    }

    #[test]
    fn garbage_is_a_format_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("noise.flac");
        std::fs::write(&path, [0x5au8; 4096]).expect("write");
        assert!(matches!(
            StemDecoder::open(&path),
            Err(DecodeError::Format { .. })
        ));
        assert!(matches!(
            StemDecoder::open(&dir.path().join("missing.flac")),
            Err(DecodeError::Open { .. })
        ));
    }
}
