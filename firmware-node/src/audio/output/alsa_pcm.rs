//! The `alsa:<pcm>` sink: any ALSA playback PCM by name — `default`, a card
//! (`hw:0,0`), a plugin chain (`plug:jack`, `file:FILE=/tmp/x.raw`).
//!
//! Opened blocking, interleaved read/write access, with the period and
//! buffer sizes the engine asks for (ALSA rounds them to what the device
//! can do; [`Sink::config`] reports the result). Sample format: the first
//! the device accepts of S16_LE, S32_LE, FLOAT_LE — S16 first because every
//! DAC takes it and a 16-bit source then passes bit-exact. The stream
//! starts when the buffer is full (start threshold = buffer size), so the
//! first period never underruns while the rest is still being written.
//!
//! Invariant: after `open`, [`Sink::write`] and [`Sink::delay`] call only
//! `snd_pcm_writei`, `snd_pcm_delay`, `snd_pcm_prepare` and `snd_pcm_drain`
//! on the PCM, and convert into a byte buffer allocated at open: no Rust
//! allocation, no lock (the alsa crate's typed `io_i16()` would query the
//! hardware parameters, which mallocs, on every call; raw bytes do not).

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};
use nix::errno::Errno;

use super::{SampleFormat, Sink, SinkConfig, SinkError, SinkRequest, encode};
use crate::audio::StreamSpec;

/// An open ALSA playback PCM.
pub struct AlsaSink {
    name: String,
    pcm: PCM,
    config: SinkConfig,
    /// One period of converted samples.
    bytes: Vec<u8>,
    xruns: u64,
}

impl std::fmt::Debug for AlsaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlsaSink")
            .field("name", &self.name)
            .field("config", &self.config)
            .field("xruns", &self.xruns)
            .finish_non_exhaustive()
    }
}

fn alsa_err(op: &'static str) -> impl Fn(alsa::Error) -> SinkError {
    move |source| SinkError::Alsa { op, source }
}

impl AlsaSink {
    /// Opens PCM `name` for `req`.
    ///
    /// # Errors
    /// [`SinkError::Alsa`] if the PCM cannot be opened or configured,
    /// [`SinkError::Unsupported`] if it refuses the channel count or every
    /// sample format.
    pub fn open(name: &str, req: &SinkRequest) -> Result<AlsaSink, SinkError> {
        let pcm = PCM::new(name, Direction::Playback, false).map_err(alsa_err("open"))?;
        let format = {
            let hwp = HwParams::any(&pcm).map_err(alsa_err("hw_params_any"))?;
            hwp.set_access(Access::RWInterleaved)
                .map_err(alsa_err("set_access"))?;
            hwp.set_channels(u32::from(req.spec.channels))
                .map_err(|_| SinkError::Unsupported {
                    what: format!("{} channels on '{name}'", req.spec.channels),
                })?;
            hwp.set_rate_near(req.spec.rate, ValueOr::Nearest)
                .map_err(alsa_err("set_rate_near"))?;
            let format = [
                (Format::S16LE, SampleFormat::S16),
                (Format::S32LE, SampleFormat::S32),
                (Format::FloatLE, SampleFormat::F32),
            ]
            .into_iter()
            .find(|(f, _)| hwp.set_format(*f).is_ok())
            .map(|(_, s)| s)
            .ok_or_else(|| SinkError::Unsupported {
                what: format!("S16_LE, S32_LE or FLOAT_LE on '{name}'"),
            })?;
            let period = i64::from(req.period_frames.max(16));
            hwp.set_period_size_near(period, ValueOr::Nearest)
                .map_err(alsa_err("set_period_size_near"))?;
            hwp.set_buffer_size_near(period * i64::from(req.periods.max(2)))
                .map_err(alsa_err("set_buffer_size_near"))?;
            pcm.hw_params(&hwp).map_err(alsa_err("hw_params"))?;
            format
        };
        let (rate, channels, period_frames, buffer_frames) = {
            let hwp = pcm
                .hw_params_current()
                .map_err(alsa_err("hw_params_current"))?;
            (
                hwp.get_rate().map_err(alsa_err("get_rate"))?,
                hwp.get_channels().map_err(alsa_err("get_channels"))?,
                hwp.get_period_size().map_err(alsa_err("get_period_size"))?,
                hwp.get_buffer_size().map_err(alsa_err("get_buffer_size"))?,
            )
        };
        {
            let swp = pcm
                .sw_params_current()
                .map_err(alsa_err("sw_params_current"))?;
            swp.set_start_threshold(buffer_frames)
                .map_err(alsa_err("set_start_threshold"))?;
            swp.set_avail_min(period_frames)
                .map_err(alsa_err("set_avail_min"))?;
            pcm.sw_params(&swp).map_err(alsa_err("sw_params"))?;
        }
        let to_u32 = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
        let config = SinkConfig {
            spec: StreamSpec {
                rate,
                channels: u16::try_from(channels).unwrap_or(u16::MAX),
            },
            period_frames: to_u32(period_frames),
            buffer_frames: to_u32(buffer_frames),
            format,
        };
        let bytes = vec![0u8; config.spec.samples(config.period_frames as usize) * format.bytes()];
        Ok(AlsaSink {
            name: name.to_owned(),
            pcm,
            config,
            bytes,
            xruns: 0,
        })
    }

    /// The PCM name it was opened with.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Maps a write/delay error: EPIPE (underrun) and ESTRPIPE (suspended)
    /// are xruns the caller recovers from, the rest are fatal.
    fn classify(&mut self, op: &'static str, e: alsa::Error, written: usize) -> SinkError {
        let errno = e.errno();
        if errno == Errno::EPIPE as i32 || errno == Errno::ESTRPIPE as i32 {
            self.xruns += 1;
            SinkError::Xrun { written }
        } else {
            SinkError::Alsa { op, source: e }
        }
    }
}

pub(super) fn open(arg: Option<&str>, req: &SinkRequest) -> Result<Box<dyn Sink>, SinkError> {
    let name = arg.filter(|a| !a.is_empty()).unwrap_or("default");
    Ok(Box::new(AlsaSink::open(name, req)?))
}

impl Sink for AlsaSink {
    fn config(&self) -> SinkConfig {
        self.config
    }

    fn is_realtime(&self) -> bool {
        true
    }

    fn write(&mut self, samples: &[f32]) -> Result<(), SinkError> {
        let ch = usize::from(self.config.spec.channels);
        let sample_bytes = self.config.format.bytes();
        let chunk = self.bytes.len() / (ch * sample_bytes);
        let total = samples.len() / ch;
        let mut off = 0;
        while off < total {
            let n = chunk.min(total - off);
            let bytes = &mut self.bytes[..n * ch * sample_bytes];
            encode(
                self.config.format,
                &samples[off * ch..(off + n) * ch],
                bytes,
            );
            let mut done = 0;
            while done < n {
                let result = self
                    .pcm
                    .io_bytes()
                    .writei(&self.bytes[done * ch * sample_bytes..n * ch * sample_bytes]);
                match result {
                    Ok(k) => done += k,
                    Err(e)
                        if e.errno() == Errno::EAGAIN as i32
                            || e.errno() == Errno::EINTR as i32 => {}
                    Err(e) => return Err(self.classify("writei", e, off + done)),
                }
            }
            off += n;
        }
        Ok(())
    }

    fn delay(&mut self) -> Result<i64, SinkError> {
        match self.pcm.delay() {
            Ok(d) => Ok(d),
            Err(e) => Err(self.classify("delay", e, 0)),
        }
    }

    fn recover(&mut self) -> Result<(), SinkError> {
        // After a suspend the device may need resuming first; a failed
        // resume (not supported, or still suspended) falls back to prepare,
        // as alsa-lib's own snd_pcm_recover does.
        if self.pcm.state() == alsa::pcm::State::Suspended {
            let _ = self.pcm.resume();
        }
        self.pcm.prepare().map_err(alsa_err("prepare"))
    }

    fn xruns(&self) -> u64 {
        self.xruns
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if self.pcm.state() == alsa::pcm::State::Prepared {
            // Fewer frames than the start threshold were written: start so
            // that drain plays them instead of discarding them.
            let _ = self.pcm.start();
        }
        self.pcm.drain().map_err(alsa_err("drain"))
    }
}
