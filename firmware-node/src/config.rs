//! The node's configuration: a TOML file (default
//! [`DEFAULT_CONFIG_PATH`]) overridden key by key by command-line flags,
//! validated into a [`Config`] before anything else starts.
//!
//! Invariant: a [`Config`] value is always valid. Every check (ranges,
//! addresses, the group secret's length and readability) happens in
//! [`Config::load`], and every failure becomes one [`ConfigError`] whose
//! `Display` is a single line naming where the value came from (file or
//! flag), the key and the problem, so a person installing a speaker can fix
//! it from the journal alone. Nothing else in the node re-validates.
//!
//! Precedence, per key: command-line flag, then config file, then default.
//! List keys (`peers`, `mdns_interfaces`) given by flags replace the file's
//! list rather than extend it.
//!
//! What is required: only the group secret (`secret_file`), because a
//! speaker without it cannot talk to its room and a default path would hide
//! a forgotten installation step. A missing config file at the default path
//! is therefore not an error when `--secret-file` is given; a missing file
//! named by `--config` is.

use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::audio::render::ChannelMap;

/// Where the node looks for its config file when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/autoharmonize/node.toml";
/// UDP port of the heartbeat mesh (`listen`), and the port assumed for a
/// static peer given without one. Unassigned by IANA; chosen next to
/// [`DEFAULT_STATUS_PORT`] so one firewall rule range covers both.
pub const DEFAULT_PORT: u16 = 7710;
/// TCP port of the loopback-only HTTP status page (`status_listen`).
pub const DEFAULT_STATUS_PORT: u16 = 7711;
/// Default directory of the persistent member id.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/autoharmonize";
/// Default directory of the audio files (stems) this speaker can play.
pub const DEFAULT_MEDIA_DIR: &str = "/var/lib/autoharmonize/media";
/// Default audio output name.
pub const DEFAULT_OUTPUT: &str = "default";
/// Default heartbeat period, the protocol's own default.
pub const DEFAULT_HEARTBEAT_MS: u64 = 100;
/// Shortest heartbeat accepted: below this a Pi's scheduling jitter and Wi-Fi
/// latency are a large fraction of a round and members would be evicted
/// spuriously.
pub const MIN_HEARTBEAT_MS: u64 = 20;
/// Longest heartbeat accepted: above this a button press takes seconds to
/// reach every speaker and failure detection becomes sluggish.
pub const MAX_HEARTBEAT_MS: u64 = 1000;
/// Shortest group secret accepted, in bytes (128 bits).
pub const MIN_SECRET_LEN: usize = 16;
/// Longest group secret accepted, in bytes: bounds what is read from a file
/// that may be pointed at the wrong place (a log, a device).
pub const MAX_SECRET_LEN: usize = 4096;
/// Longest speaker name, in bytes: a DNS label, since the name is announced
/// as the mDNS instance name.
pub const MAX_NAME_LEN: usize = 63;
/// Most static peers: as many as a room can hold.
pub const MAX_PEERS: usize = autoharmonize_protocol::wire::MAX_MEMBERS;
/// Longest network interface name on Linux (`IFNAMSIZ` - 1).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;
/// Highest GPIO number on a Raspberry Pi's 40-pin header (BCM numbering).
pub const MAX_GPIO_PIN: u8 = 27;
/// Default time a button's level must stay unchanged before a press or a
/// release counts (`gpio.debounce_ms`). Typical tactile switches bounce for
/// 1 to 10 ms.
pub const DEFAULT_DEBOUNCE_MS: u64 = 20;
/// Shortest debounce accepted: below this, bounces count as presses.
pub const MIN_DEBOUNCE_MS: u64 = 1;
/// Longest debounce accepted: above this, quick presses are lost.
pub const MAX_DEBOUNCE_MS: u64 = 250;
/// Default volume change per press of a volume button, in percent points.
pub const DEFAULT_VOLUME_STEP: u8 = 5;
/// Largest volume step accepted (half the range per press).
pub const MAX_VOLUME_STEP: u8 = 50;

/// Command-line flags for every config key. Each flag overrides the same key
/// of the config file.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConfigArgs {
    /// Configuration file to read. Without this option the speaker reads
    /// /etc/autoharmonize/node.toml if that file exists, and runs on flags
    /// alone if it does not.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Name this speaker shows in the mixer and announces on the network
    /// (at most 63 bytes). [default: the computer's hostname] [key: name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Which part of the song this speaker plays: a stem name such as
    /// "drums", a stem number counted from 0, or "all" for the whole mix.
    /// [default: all] [key: channel]
    #[arg(long, value_name = "STEM")]
    pub channel: Option<String>,

    /// File holding the room's shared secret (at least 16 bytes; every
    /// speaker of a room needs the same one). Create it with e.g.
    /// `openssl rand -base64 32`, and keep it readable only by the speaker's
    /// user. Required. [key: secret_file]
    #[arg(long, value_name = "PATH")]
    pub secret_file: Option<PathBuf>,

    /// This speaker's library: a folder of track folders (or one track
    /// folder), every track of which is offered to the room.
    /// [default: /var/lib/autoharmonize/media] [key: media_dir]
    #[arg(long, value_name = "DIR")]
    pub media_dir: Option<PathBuf>,

    /// How often speakers exchange heartbeats, in milliseconds (20 to 1000).
    /// Smaller reacts faster to buttons but costs more network traffic;
    /// every speaker of a room should use the same value. [default: 100]
    /// [key: heartbeat_ms]
    #[arg(long, value_name = "MS")]
    pub heartbeat_ms: Option<u64>,

    /// Audio device to play through, by name ("default" is the system's
    /// default sound card). [default: default] [key: output]
    #[arg(long, value_name = "NAME")]
    pub output: Option<String>,

    /// Track a room founded by this speaker starts with: a folder of stems
    /// inside the media directory (by name), or a path (added to the
    /// library). The room then plays whatever track it loads. [default: the
    /// media directory itself if it holds stems, else its first track
    /// folder in name order] [key: track]
    #[arg(long, value_name = "FOLDER")]
    pub track: Option<String>,

    /// Extra delay of this speaker's amplifier or HDMI link, in
    /// milliseconds (-1000 to 1000): the speaker plays that much earlier so
    /// it is heard in time with the others. [default: 0]
    /// [key: latency_offset_ms]
    #[arg(long, value_name = "MS", allow_hyphen_values = true)]
    pub latency_offset_ms: Option<i64>,

    /// Which channels of the stem to play: "stereo", "left", "right", or
    /// "mono" (both folded down). [default: stereo] [key: channel_map]
    #[arg(long, value_name = "MAP")]
    pub channel_map: Option<String>,

    /// Address and UDP port this speaker listens on for other speakers.
    /// [default: 0.0.0.0:7710] [key: listen]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,

    /// Address of another speaker to contact directly, for networks where
    /// automatic discovery does not work; repeat for several. The port
    /// defaults to 7710. Replaces the file's list. [key: peers]
    #[arg(long = "peer", value_name = "ADDR[:PORT]")]
    pub peers: Vec<String>,

    /// Find other speakers automatically on the local network (mDNS).
    /// [default: on] [key: mdns]
    #[arg(long, overrides_with = "no_mdns")]
    pub mdns: bool,

    /// Do not look for other speakers automatically; only the --peer
    /// addresses (and speakers that contact this one) are used. [key: mdns]
    #[arg(long, overrides_with = "mdns")]
    pub no_mdns: bool,

    /// Network interface to run discovery on, e.g. "wlan0"; repeat for
    /// several. Without it, every interface is used. Replaces the file's
    /// list. [key: mdns_interfaces]
    #[arg(long = "mdns-interface", value_name = "IFACE")]
    pub mdns_interfaces: Vec<String>,

    /// GPIO pin (BCM number, 0 to 27) of the play/pause button.
    /// [default: none] [key: gpio.play_pause]
    #[arg(long, value_name = "PIN")]
    pub gpio_play_pause: Option<u8>,

    /// GPIO pin (BCM number, 0 to 27) of the volume-up button.
    /// [default: none] [key: gpio.volume_up]
    #[arg(long, value_name = "PIN")]
    pub gpio_volume_up: Option<u8>,

    /// GPIO pin (BCM number, 0 to 27) of the volume-down button.
    /// [default: none] [key: gpio.volume_down]
    #[arg(long, value_name = "PIN")]
    pub gpio_volume_down: Option<u8>,

    /// GPIO pin (BCM number, 0 to 27) of the status LED.
    /// [default: none] [key: gpio.led]
    #[arg(long, value_name = "PIN")]
    pub gpio_led: Option<u8>,

    /// How long a button must stay still before a press counts, in
    /// milliseconds (1 to 250); raise it if one press counts twice.
    /// [default: 20] [key: gpio.debounce_ms]
    #[arg(long, value_name = "MS")]
    pub gpio_debounce_ms: Option<u64>,

    /// How much one press of a volume button changes the volume, in percent
    /// points (1 to 50). [default: 5] [key: gpio.volume_step]
    #[arg(long, value_name = "PERCENT")]
    pub gpio_volume_step: Option<u8>,

    /// Buttons connect their pin to ground when pressed; the pin's internal
    /// pull-up holds it high otherwise. [default: on] [key: gpio.active_low]
    #[arg(long, overrides_with = "gpio_active_high")]
    pub gpio_active_low: bool,

    /// Buttons connect their pin to 3.3 V when pressed; the pin's internal
    /// pull-down holds it low otherwise. [key: gpio.active_low]
    #[arg(long, overrides_with = "gpio_active_low")]
    pub gpio_active_high: bool,

    /// Directory where the speaker keeps its permanent identity; it must
    /// survive reboots and updates. [default: /var/lib/autoharmonize]
    /// [key: state_dir]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,

    /// Address and TCP port of the status page, reachable only from this
    /// computer (a loopback address is required). [default: 127.0.0.1:7711]
    /// [key: status_listen]
    #[arg(long, value_name = "ADDR:PORT")]
    pub status_listen: Option<String>,

    /// Directory where stems fetched from other speakers are cached, chunk
    /// by chunk (verified again at every start).
    /// [default: the state directory's "chunks" folder] [key: cache_dir]
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Most disk space the chunk cache may use: bytes, or a number with K,
    /// M or G (at least 16M); the least recently played chunks go first.
    /// [default: 1G] [key: cache_max]
    #[arg(long, value_name = "SIZE")]
    pub cache_max: Option<String>,
}

/// The validated configuration of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Speaker name (non-empty, at most [`MAX_NAME_LEN`] bytes, no control
    /// characters).
    pub name: String,
    /// What this speaker plays.
    pub channel: ChannelSpec,
    /// Where the group secret was read from.
    pub secret_file: PathBuf,
    /// The group secret itself (at least [`MIN_SECRET_LEN`] bytes).
    pub secret: GroupSecret,
    /// Directory of the audio files.
    pub media_dir: PathBuf,
    /// Heartbeat period in milliseconds, within
    /// [`MIN_HEARTBEAT_MS`]..=[`MAX_HEARTBEAT_MS`].
    pub heartbeat_ms: u64,
    /// Audio output name.
    pub output: String,
    /// Audio settings of this speaker.
    pub audio: AudioSettings,
    /// UDP address of the mesh socket.
    pub listen: SocketAddr,
    /// Static peers (deduplicated, at most [`MAX_PEERS`]).
    pub peers: Vec<SocketAddr>,
    /// Whether mDNS discovery runs.
    pub mdns: bool,
    /// Interfaces for mDNS; empty means all.
    pub mdns_interfaces: Vec<String>,
    /// Buttons and LED: pins (distinct, each at most [`MAX_GPIO_PIN`]) and
    /// how presses are read.
    pub gpio: GpioConfig,
    /// Directory of the persistent member id.
    pub state_dir: PathBuf,
    /// Loopback TCP address of the HTTP status page.
    pub status_listen: SocketAddr,
    /// Directory of the chunk cache of streamed stems.
    pub cache_dir: PathBuf,
    /// Size bound of the chunk cache, bytes (at least [`MIN_CACHE_BYTES`]).
    pub cache_max_bytes: u64,
    /// Things that work but that a person may want to fix (e.g. a
    /// world-readable secret). The caller logs them once logging is up.
    pub warnings: Vec<String>,
}

/// Per-speaker audio settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AudioSettings {
    /// The track folder (name in the media directory, or a path); `None`
    /// picks one (see [`ConfigArgs::track`]).
    pub track: Option<String>,
    /// Latency trim in ms, within ±[`MAX_LATENCY_OFFSET_MS`].
    pub latency_offset_ms: i32,
    /// Which stem channels go out.
    pub channel_map: ChannelMap,
}

/// Default size bound of the chunk cache (`cache_max`): 1 GiB, a few
/// dozen FLAC stems.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;
/// Smallest `cache_max` accepted: the prefetch window (at most 64 chunks
/// of 64 KiB = 4 MiB) several times over.
pub const MIN_CACHE_BYTES: u64 = 16 << 20;

/// Largest latency trim accepted, in ms.
pub const MAX_LATENCY_OFFSET_MS: i64 = 1_000;

/// The part of the song a speaker plays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelSpec {
    /// The whole mix (the protocol's `Channel::All`).
    All,
    /// A stem by its index in the track's channel list.
    Index(u8),
    /// A stem by name, resolved against each track's stems when it loads.
    Name(String),
}

/// The `[gpio]` table: pins by role in BCM numbering (`None` means not
/// connected, the default, so a pin nobody wired is never driven) and how
/// button presses are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpioConfig {
    /// Play/pause button.
    pub play_pause: Option<u8>,
    /// Volume-up button.
    pub volume_up: Option<u8>,
    /// Volume-down button.
    pub volume_down: Option<u8>,
    /// Status LED (lit when the pin is high).
    pub led: Option<u8>,
    /// Debounce time in ms, within
    /// [`MIN_DEBOUNCE_MS`]..=[`MAX_DEBOUNCE_MS`].
    pub debounce_ms: u64,
    /// Volume change per press, in percent points, `1..=MAX_VOLUME_STEP`.
    pub volume_step: u8,
    /// A pressed button pulls its pin low (internal pull-up); otherwise
    /// high (internal pull-down).
    pub active_low: bool,
}

impl Default for GpioConfig {
    fn default() -> GpioConfig {
        GpioConfig {
            play_pause: None,
            volume_up: None,
            volume_down: None,
            led: None,
            debounce_ms: DEFAULT_DEBOUNCE_MS,
            volume_step: DEFAULT_VOLUME_STEP,
            active_low: true,
        }
    }
}

impl GpioConfig {
    /// Whether any button or the LED is connected.
    #[must_use]
    pub fn any_pin(&self) -> bool {
        self.play_pause.is_some()
            || self.volume_up.is_some()
            || self.volume_down.is_some()
            || self.led.is_some()
    }
}

/// The room's shared secret. Its `Debug` never shows the bytes, so the
/// resolved configuration can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupSecret(Vec<u8>);

impl GroupSecret {
    /// The secret's bytes (the file's contents without one trailing line
    /// ending).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for GroupSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupSecret(<{} bytes, redacted>)", self.0.len())
    }
}

/// Where a configuration value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The config file, with the line of the offending text when known.
    File {
        /// The file.
        path: PathBuf,
        /// 1-based line, when the parser reported a position.
        line: Option<usize>,
    },
    /// A command-line flag, e.g. `--heartbeat-ms`.
    Flag(&'static str),
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{}: line {line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Flag(flag) => f.write_str(flag),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// Why the node cannot start with the configuration (or persistent state) it
/// was given. None of these goes away by retrying: a person must fix the file
/// or the flag named, so the binary exits with code 2 (which a systemd unit
/// can exclude from restarts with `RestartPreventExitStatus=2`). Each
/// `Display` is a single line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` does not exist. (A missing file at the
    /// default path is not an error.)
    #[error("{}: no such file (given by --config)", path.display())]
    FileNotFound {
        /// The missing file.
        path: PathBuf,
    },
    /// The config file exists but cannot be read (permissions, a directory,
    /// not UTF-8).
    #[error("{}: cannot read: {source}", path.display())]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML.
    #[error("{}: line {line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// The parser's description.
        message: String,
    },
    /// A key is unknown, has the wrong type, or its value is out of range,
    /// malformed, or points at a file that is missing or unsuitable.
    #[error("{origin}: key '{key}': {problem}")]
    Invalid {
        /// Where the value came from.
        origin: Origin,
        /// The key, with its table (`gpio.led`) or index (`peers[1]`).
        key: String,
        /// What is wrong, in words.
        problem: String,
    },
    /// A required key has no value in the file or the flags.
    #[error("key '{key}' is required: {hint}")]
    Missing {
        /// The key.
        key: &'static str,
        /// How to supply it.
        hint: &'static str,
    },
    /// The state directory or the member id file cannot be created, read or
    /// written.
    #[error("{}: cannot {action}: {source}", path.display())]
    State {
        /// The directory or file.
        path: PathBuf,
        /// What was attempted ("create the directory", "read", ...).
        action: &'static str,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The member id file exists but does not hold a member id. It is never
    /// replaced silently: the speaker's identity would change under the room.
    #[error(
        "{}: {problem}; expected 16 hex digits (delete the file to give this speaker a new identity)",
        path.display()
    )]
    MemberIdCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        problem: String,
    },
}

impl Config {
    /// Reads the config file (see [`ConfigArgs::config`]), applies the flags
    /// over it, reads the group secret and validates everything.
    ///
    /// # Errors
    /// The first problem found, as one [`ConfigError`].
    pub fn load(args: &ConfigArgs) -> Result<Config, ConfigError> {
        let (path, text) = read_config_file(args.config.as_deref())?;
        let file = match (&path, &text) {
            (Some(path), Some(text)) => parse_file(path, text)?,
            _ => FileConfig::default(),
        };
        resolve(args, path, file, hostname)
    }
}

/// Reads the config file: the one named by `--config` (which must exist), or
/// the default one if it exists.
fn read_config_file(
    explicit: Option<&Path>,
) -> Result<(Option<PathBuf>, Option<String>), ConfigError> {
    let path = explicit.unwrap_or_else(|| Path::new(DEFAULT_CONFIG_PATH));
    match std::fs::read_to_string(path) {
        Ok(text) => Ok((Some(path.to_path_buf()), Some(text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match explicit {
            Some(path) => Err(ConfigError::FileNotFound {
                path: path.to_path_buf(),
            }),
            None => Ok((None, None)),
        },
        Err(source) => Err(ConfigError::FileUnreadable {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The config file as written: every key optional, types loose enough that
/// range and format problems get our own messages instead of serde's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    name: Option<String>,
    channel: Option<ChannelValue>,
    secret_file: Option<PathBuf>,
    media_dir: Option<PathBuf>,
    heartbeat_ms: Option<i64>,
    output: Option<String>,
    track: Option<String>,
    latency_offset_ms: Option<i64>,
    channel_map: Option<String>,
    listen: Option<String>,
    peers: Option<Vec<String>>,
    mdns: Option<bool>,
    mdns_interfaces: Option<Vec<String>>,
    gpio: Option<GpioFile>,
    state_dir: Option<PathBuf>,
    status_listen: Option<String>,
    cache_dir: Option<PathBuf>,
    cache_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GpioFile {
    play_pause: Option<i64>,
    volume_up: Option<i64>,
    volume_down: Option<i64>,
    led: Option<i64>,
    debounce_ms: Option<i64>,
    volume_step: Option<i64>,
    active_low: Option<bool>,
}

/// `channel` may be written as a number or a string.
#[derive(Debug)]
enum ChannelValue {
    Index(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for ChannelValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ChannelValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a stem name, a stem number or \"all\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ChannelValue, E> {
                Ok(ChannelValue::Index(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ChannelValue, E> {
                Ok(ChannelValue::Index(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ChannelValue, E> {
                Ok(ChannelValue::Text(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let line_of = |span: Option<std::ops::Range<usize>>| {
        span.map(|s| 1 + text[..s.start.min(text.len())].matches('\n').count())
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: line_of(e.span()).unwrap_or(1),
        message: e.message().trim().to_owned(),
    })?;
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let message = e.inner().message().trim();
        // serde says "unknown field `x`, expected one of ..."; the key is
        // already named, so keep the useful part.
        let problem = match message.split_once(", expected") {
            Some((head, rest)) if head.starts_with("unknown field") => {
                format!("unknown key, expected{rest}")
            }
            _ => message.to_owned(),
        };
        ConfigError::Invalid {
            origin: Origin::File {
                path: path.to_path_buf(),
                line: line_of(e.inner().span()),
            },
            key,
            problem,
        }
    })
}

/// Which layer supplied a value.
#[derive(Clone, Copy)]
enum Layer {
    Flag(&'static str),
    File,
    Default,
}

/// Builds errors that name the right origin for each value.
struct Resolver {
    file: Option<PathBuf>,
}

impl Resolver {
    fn origin(&self, layer: Layer) -> Origin {
        match (layer, &self.file) {
            (Layer::Flag(flag), _) => Origin::Flag(flag),
            (Layer::File, Some(path)) => Origin::File {
                path: path.clone(),
                line: None,
            },
            (Layer::File, None) | (Layer::Default, _) => Origin::Default,
        }
    }

    fn invalid(&self, layer: Layer, key: impl Into<String>, problem: String) -> ConfigError {
        ConfigError::Invalid {
            origin: self.origin(layer),
            key: key.into(),
            problem,
        }
    }
}

/// Flag over file over nothing, remembering which one won.
fn pick<T>(flag: Option<T>, flag_name: &'static str, file: Option<T>) -> Option<(T, Layer)> {
    match (flag, file) {
        (Some(v), _) => Some((v, Layer::Flag(flag_name))),
        (None, Some(v)) => Some((v, Layer::File)),
        (None, None) => None,
    }
}

/// Like [`pick`] for list keys: a non-empty flag list replaces the file's.
fn pick_list(
    flag: &[String],
    flag_name: &'static str,
    file: Option<Vec<String>>,
) -> (Vec<String>, Layer) {
    if flag.is_empty() {
        match file {
            Some(list) => (list, Layer::File),
            None => (Vec::new(), Layer::Default),
        }
    } else {
        (flag.to_vec(), Layer::Flag(flag_name))
    }
}

/// This computer's hostname, if it is valid UTF-8: the default name of a
/// speaker (and of a controller).
#[must_use]
pub fn hostname() -> Option<String> {
    gethostname::gethostname().into_string().ok()
}

fn resolve(
    args: &ConfigArgs,
    file_path: Option<PathBuf>,
    file: FileConfig,
    default_name: impl FnOnce() -> Option<String>,
) -> Result<Config, ConfigError> {
    let r = Resolver { file: file_path };
    let mut warnings = Vec::new();

    let name = match pick(args.name.clone(), "--name", file.name) {
        Some((name, layer)) => check_name(&name).map_err(|p| r.invalid(layer, "name", p))?,
        None => {
            let host = default_name().ok_or_else(|| {
                r.invalid(
                    Layer::Default,
                    "name",
                    "no name is set and the hostname cannot be read; set one".into(),
                )
            })?;
            check_name(&host).map_err(|p| {
                r.invalid(
                    Layer::Default,
                    "name",
                    format!("the hostname does not work as a name ({p}); set one"),
                )
            })?
        }
    };

    let channel = match pick(
        args.channel.clone().map(ChannelValue::Text),
        "--channel",
        file.channel,
    ) {
        Some((value, layer)) => parse_channel(value).map_err(|p| r.invalid(layer, "channel", p))?,
        None => ChannelSpec::All,
    };

    let (secret_file, secret_layer) = pick(args.secret_file.clone(), "--secret-file", file.secret_file)
        .ok_or(ConfigError::Missing {
            key: "secret_file",
            hint: "set it in the config file or pass --secret-file PATH (every speaker of a room needs the same secret)",
        })?;
    let (secret, world_readable) =
        read_secret(&secret_file).map_err(|p| r.invalid(secret_layer, "secret_file", p))?;
    if world_readable {
        warnings.push(format!(
            "the group secret {} is readable by every user of this computer; \
             restrict it with `chmod 600` (or 640 with the speaker's group)",
            secret_file.display()
        ));
    }

    let (media_dir, media_layer) = pick(args.media_dir.clone(), "--media-dir", file.media_dir)
        .unwrap_or_else(|| (PathBuf::from(DEFAULT_MEDIA_DIR), Layer::Default));
    check_dir_path(&media_dir).map_err(|p| r.invalid(media_layer, "media_dir", p))?;
    match std::fs::metadata(&media_dir) {
        Ok(meta) if !meta.is_dir() => {
            return Err(r.invalid(
                media_layer,
                "media_dir",
                format!("{} is not a directory", media_dir.display()),
            ));
        }
        Ok(_) => {}
        Err(_) => warnings.push(format!(
            "the media directory {} does not exist: this speaker has nothing of its own to play",
            media_dir.display()
        )),
    }

    let heartbeat_ms = match pick(
        args.heartbeat_ms
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
        "--heartbeat-ms",
        file.heartbeat_ms,
    ) {
        Some((ms, layer)) => {
            check_heartbeat(ms).map_err(|p| r.invalid(layer, "heartbeat_ms", p))?
        }
        None => DEFAULT_HEARTBEAT_MS,
    };

    let output = match pick(args.output.clone(), "--output", file.output) {
        Some((output, layer)) => {
            if output.trim().is_empty() {
                return Err(r.invalid(layer, "output", "must not be empty".into()));
            }
            output
        }
        None => DEFAULT_OUTPUT.to_owned(),
    };

    let audio = resolve_audio(
        &r,
        args,
        file.track,
        file.latency_offset_ms,
        file.channel_map,
    )?;

    let listen = match pick(args.listen.clone(), "--listen", file.listen) {
        Some((text, layer)) => {
            parse_addr(&text, DEFAULT_PORT).map_err(|p| r.invalid(layer, "listen", p))?
        }
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), DEFAULT_PORT),
    };

    let (peer_texts, peers_layer) = pick_list(&args.peers, "--peer", file.peers);
    if peer_texts.len() > MAX_PEERS {
        return Err(r.invalid(
            peers_layer,
            "peers",
            format!(
                "{} peers given, at most {MAX_PEERS} are allowed",
                peer_texts.len()
            ),
        ));
    }
    let mut peers = Vec::with_capacity(peer_texts.len());
    for (i, text) in peer_texts.iter().enumerate() {
        let peer =
            parse_peer(text).map_err(|p| r.invalid(peers_layer, format!("peers[{i}]"), p))?;
        if !peers.contains(&peer) {
            peers.push(peer);
        }
    }

    let mdns = if args.no_mdns {
        false
    } else if args.mdns {
        true
    } else {
        file.mdns.unwrap_or(true)
    };
    if !mdns && peers.is_empty() {
        warnings.push(
            "mdns is off and no peers are configured: this speaker finds only the speakers \
             that contact it"
                .to_owned(),
        );
    }

    let (mdns_interfaces, ifaces_layer) = pick_list(
        &args.mdns_interfaces,
        "--mdns-interface",
        file.mdns_interfaces,
    );
    for (i, iface) in mdns_interfaces.iter().enumerate() {
        check_interface(iface)
            .map_err(|p| r.invalid(ifaces_layer, format!("mdns_interfaces[{i}]"), p))?;
    }

    let gpio = resolve_gpio(&r, args, file.gpio.unwrap_or_default())?;

    let (state_dir, state_layer) = pick(args.state_dir.clone(), "--state-dir", file.state_dir)
        .unwrap_or_else(|| (PathBuf::from(DEFAULT_STATE_DIR), Layer::Default));
    check_dir_path(&state_dir).map_err(|p| r.invalid(state_layer, "state_dir", p))?;

    let status_listen = match pick(
        args.status_listen.clone(),
        "--status-listen",
        file.status_listen,
    ) {
        Some((text, layer)) => {
            let addr = parse_addr(&text, DEFAULT_STATUS_PORT)
                .map_err(|p| r.invalid(layer, "status_listen", p))?;
            if !addr.ip().is_loopback() {
                return Err(r.invalid(
                    layer,
                    "status_listen",
                    format!(
                        "{addr} is not a loopback address; the status page has no \
                         authentication, so it must stay on 127.0.0.1 or ::1"
                    ),
                ));
            }
            addr
        }
        None => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_STATUS_PORT),
    };

    let cache_dir = match pick(args.cache_dir.clone(), "--cache-dir", file.cache_dir) {
        Some((dir, layer)) => {
            check_dir_path(&dir).map_err(|p| r.invalid(layer, "cache_dir", p))?;
            dir
        }
        None => state_dir.join("chunks"),
    };
    let cache_max_bytes = match pick(args.cache_max.clone(), "--cache-max", file.cache_max) {
        Some((text, layer)) => {
            let bytes =
                crate::stream::parse_size(&text).map_err(|p| r.invalid(layer, "cache_max", p))?;
            if bytes < MIN_CACHE_BYTES {
                return Err(r.invalid(
                    layer,
                    "cache_max",
                    format!(
                        "{text} is too small: the cache needs at least 16M to hold \
                         the chunks about to play"
                    ),
                ));
            }
            bytes
        }
        None => DEFAULT_CACHE_BYTES,
    };

    Ok(Config {
        file: r.file,
        name,
        channel,
        secret_file,
        secret,
        media_dir,
        heartbeat_ms,
        output,
        audio,
        listen,
        peers,
        mdns,
        mdns_interfaces,
        gpio,
        state_dir,
        status_listen,
        cache_dir,
        cache_max_bytes,
        warnings,
    })
}

/// The audio settings: flag over file, each checked.
fn resolve_audio(
    r: &Resolver,
    args: &ConfigArgs,
    track: Option<String>,
    latency_offset_ms: Option<i64>,
    channel_map: Option<String>,
) -> Result<AudioSettings, ConfigError> {
    let track = match pick(args.track.clone(), "--track", track) {
        Some((t, layer)) if t.trim().is_empty() => {
            return Err(r.invalid(layer, "track", "must not be empty".into()));
        }
        Some((t, _)) => Some(t),
        None => None,
    };
    let latency_offset_ms = match pick(
        args.latency_offset_ms,
        "--latency-offset-ms",
        latency_offset_ms,
    ) {
        Some((ms, layer)) if ms.abs() > MAX_LATENCY_OFFSET_MS => {
            return Err(r.invalid(
                layer,
                "latency_offset_ms",
                format!("{ms} is outside -{MAX_LATENCY_OFFSET_MS}..={MAX_LATENCY_OFFSET_MS}"),
            ));
        }
        Some((ms, _)) => i32::try_from(ms).unwrap_or(0),
        None => 0,
    };
    let channel_map = match pick(args.channel_map.clone(), "--channel-map", channel_map) {
        Some((m, layer)) => {
            ChannelMap::parse(&m).map_err(|p| r.invalid(layer, "channel_map", p))?
        }
        None => ChannelMap::Stereo,
    };
    Ok(AudioSettings {
        track,
        latency_offset_ms,
        channel_map,
    })
}

/// The `[gpio]` table: flag over file per key; pins in range and no pin used
/// twice.
fn resolve_gpio(
    r: &Resolver,
    args: &ConfigArgs,
    file: GpioFile,
) -> Result<GpioConfig, ConfigError> {
    let mut used: Vec<(u8, &str)> = Vec::with_capacity(4);
    let mut resolve_one = |role: &'static str,
                           flag: &'static str,
                           flag_value: Option<u8>,
                           file_value: Option<i64>|
     -> Result<Option<u8>, ConfigError> {
        let Some((pin, layer)) = pick(flag_value.map(i64::from), flag, file_value) else {
            return Ok(None);
        };
        let key = format!("gpio.{role}");
        let pin = check_pin(pin).map_err(|p| r.invalid(layer, key.as_str(), p))?;
        if let Some((_, other)) = used.iter().find(|(p, _)| *p == pin) {
            return Err(r.invalid(
                layer,
                key,
                format!("pin {pin} is already used by gpio.{other}"),
            ));
        }
        used.push((pin, role));
        Ok(Some(pin))
    };
    let debounce_ms = match pick(
        args.gpio_debounce_ms
            .map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
        "--gpio-debounce-ms",
        file.debounce_ms,
    ) {
        Some((ms, layer)) => check_range(ms, MIN_DEBOUNCE_MS, MAX_DEBOUNCE_MS)
            .map_err(|p| r.invalid(layer, "gpio.debounce_ms", p))?,
        None => DEFAULT_DEBOUNCE_MS,
    };
    let volume_step = match pick(
        args.gpio_volume_step.map(i64::from),
        "--gpio-volume-step",
        file.volume_step,
    ) {
        Some((step, layer)) => check_range(step, 1, u64::from(MAX_VOLUME_STEP))
            .map(|s| u8::try_from(s).expect("at most MAX_VOLUME_STEP"))
            .map_err(|p| r.invalid(layer, "gpio.volume_step", p))?,
        None => DEFAULT_VOLUME_STEP,
    };
    let active_low = if args.gpio_active_high {
        false
    } else if args.gpio_active_low {
        true
    } else {
        file.active_low.unwrap_or(true)
    };
    Ok(GpioConfig {
        debounce_ms,
        volume_step,
        active_low,
        play_pause: resolve_one(
            "play_pause",
            "--gpio-play-pause",
            args.gpio_play_pause,
            file.play_pause,
        )?,
        volume_up: resolve_one(
            "volume_up",
            "--gpio-volume-up",
            args.gpio_volume_up,
            file.volume_up,
        )?,
        volume_down: resolve_one(
            "volume_down",
            "--gpio-volume-down",
            args.gpio_volume_down,
            file.volume_down,
        )?,
        led: resolve_one("led", "--gpio-led", args.gpio_led, file.led)?,
    })
}

fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "'{name}' is {} bytes long, at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(name.to_owned())
}

fn parse_channel(value: ChannelValue) -> Result<ChannelSpec, String> {
    let index = |i: i64| {
        u8::try_from(i)
            .map(ChannelSpec::Index)
            .map_err(|_| format!("stem number {i} is out of range (0 to {})", u8::MAX))
    };
    match value {
        ChannelValue::Index(i) => index(i),
        ChannelValue::Text(text) => {
            let text = text.trim();
            if text.eq_ignore_ascii_case("all") {
                Ok(ChannelSpec::All)
            } else if let Ok(i) = text.parse::<i64>() {
                index(i)
            } else if text.is_empty() {
                Err("must be a stem name, a stem number or \"all\"".into())
            } else if text.len() > MAX_NAME_LEN {
                Err(format!("a stem name is at most {MAX_NAME_LEN} bytes"))
            } else {
                Ok(ChannelSpec::Name(text.to_owned()))
            }
        }
    }
}

/// Reads the group secret; returns it and whether the file is readable by
/// every user.
///
/// # Errors
/// A one-line reason.
pub fn read_secret(path: &Path) -> Result<(GroupSecret, bool), String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    // One byte more than the limit tells "too long" from "exactly the limit".
    file.take(MAX_SECRET_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > MAX_SECRET_LEN {
        return Err(format!(
            "{} is longer than {MAX_SECRET_LEN} bytes; is it the right file?",
            path.display()
        ));
    }
    // `echo secret > file` adds a line ending that nobody means as secret.
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(bytes.len() - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(bytes.len() - 1);
    }
    if bytes.len() < MIN_SECRET_LEN {
        return Err(format!(
            "the secret in {} is {} bytes, at least {MIN_SECRET_LEN} are required \
             (create one with `openssl rand -base64 32`)",
            path.display(),
            bytes.len()
        ));
    }
    Ok((GroupSecret(bytes), world_readable(&meta)))
}

#[cfg(unix)]
fn world_readable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o004 != 0
}

#[cfg(not(unix))]
fn world_readable(_meta: &std::fs::Metadata) -> bool {
    false
}

fn check_heartbeat(ms: i64) -> Result<u64, String> {
    check_range(ms, MIN_HEARTBEAT_MS, MAX_HEARTBEAT_MS)
}

/// `value` within `min..=max`, in the words the other range errors use.
fn check_range(value: i64, min: u64, max: u64) -> Result<u64, String> {
    match u64::try_from(value) {
        Ok(v) if v < min => Err(format!("{v} is below the minimum of {min}")),
        Ok(v) if v > max => Err(format!("{v} is above the maximum of {max}")),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("{value} is below the minimum of {min}")),
    }
}

fn check_pin(pin: i64) -> Result<u8, String> {
    u8::try_from(pin)
        .ok()
        .filter(|p| *p <= MAX_GPIO_PIN)
        .ok_or_else(|| {
            format!("{pin} is not a GPIO number of the 40-pin header (0 to {MAX_GPIO_PIN})")
        })
}

fn check_dir_path(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(())
    }
}

fn check_interface(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME_LEN {
        return Err(format!(
            "'{name}' is not an interface name (1 to {MAX_INTERFACE_NAME_LEN} bytes)"
        ));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("'{name}' is not an interface name"));
    }
    Ok(())
}

/// `ADDR:PORT`, or a bare address with `default_port`. IPv6 with a port is
/// written `[::1]:7711`.
fn parse_addr(text: &str, default_port: u16) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    Err(format!(
        "'{text}' is not an address like 192.168.1.20:{default_port} or [fe80::1]:{default_port} \
         (host names are not accepted)"
    ))
}

/// A peer's address as given on the command line or in the file
/// (`ADDR[:PORT]`, port 7710 by default).
///
/// # Errors
/// A one-line reason.
pub fn parse_peer(text: &str) -> Result<SocketAddr, String> {
    let addr = parse_addr(text, DEFAULT_PORT)?;
    if addr.ip().is_unspecified() || addr.ip().is_multicast() || addr.port() == 0 {
        return Err(format!("{addr} cannot be a peer's address"));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Write;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        config: ConfigArgs,
    }

    /// A temporary directory with a valid secret in it.
    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().expect("temp dir");
            let f = Fixture { dir };
            f.write("secret", "0123456789abcdef0123456789abcdef\n", 0o600);
            std::fs::create_dir(f.path("media")).expect("media dir");
            f
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn write(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
            let path = self.path(name);
            let mut file = std::fs::File::create(&path).expect("create");
            file.write_all(contents.as_bytes()).expect("write");
            set_mode(&path, mode);
            path
        }

        /// A config file with the secret and media dir set, plus `extra`.
        fn config(&self, extra: &str) -> PathBuf {
            let text = format!(
                "secret_file = {:?}\nmedia_dir = {:?}\nstate_dir = {:?}\n{extra}",
                self.path("secret"),
                self.path("media"),
                self.path("state"),
            );
            self.write("node.toml", &text, 0o644)
        }

        fn load(&self, extra: &str, flags: &[&str]) -> Result<Config, ConfigError> {
            let config = self.config(extra);
            let mut argv = vec!["node".to_owned(), "--config".to_owned()];
            argv.push(config.display().to_string());
            argv.extend(flags.iter().map(|s| (*s).to_owned()));
            let cli = TestCli::try_parse_from(argv).expect("flags parse");
            Config::load(&cli.config)
        }
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[cfg(not(unix))]
    fn set_mode(_path: &Path, _mode: u32) {}

    fn message(result: Result<Config, ConfigError>) -> String {
        match result {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn full_file_parses_with_every_key() {
        let f = Fixture::new();
        let config = f
            .load(
                r#"
                name = "kitchen"
                channel = "drums"
                heartbeat_ms = 50
                output = "hw:1,0"
                listen = "0.0.0.0:9000"
                peers = ["192.168.1.20", "192.168.1.21:7000", "192.168.1.20:7710"]
                mdns = false
                mdns_interfaces = ["wlan0"]
                status_listen = "[::1]:8000"
                [gpio]
                play_pause = 17
                volume_up = 22
                volume_down = 23
                led = 27
                debounce_ms = 30
                volume_step = 10
                active_low = false
                "#,
                &[],
            )
            .expect("valid config");
        assert_eq!(config.name, "kitchen");
        assert_eq!(config.channel, ChannelSpec::Name("drums".into()));
        assert_eq!(config.heartbeat_ms, 50);
        assert_eq!(config.output, "hw:1,0");
        assert_eq!(config.listen, "0.0.0.0:9000".parse().expect("addr"));
        // The bare address gets the default port, and its duplicate is dropped.
        assert_eq!(
            config.peers,
            vec![
                "192.168.1.20:7710".parse().expect("addr"),
                "192.168.1.21:7000".parse().expect("addr"),
            ]
        );
        assert!(!config.mdns);
        assert_eq!(config.mdns_interfaces, vec!["wlan0".to_owned()]);
        assert_eq!(config.status_listen, "[::1]:8000".parse().expect("addr"));
        assert_eq!(
            config.gpio,
            GpioConfig {
                play_pause: Some(17),
                volume_up: Some(22),
                volume_down: Some(23),
                led: Some(27),
                debounce_ms: 30,
                volume_step: 10,
                active_low: false,
            }
        );
        assert_eq!(
            config.secret.as_bytes(),
            b"0123456789abcdef0123456789abcdef"
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    }

    #[test]
    fn defaults_apply_to_absent_keys() {
        let f = Fixture::new();
        let config = f.load("", &[]).expect("valid config");
        assert_eq!(config.channel, ChannelSpec::All);
        assert_eq!(config.heartbeat_ms, DEFAULT_HEARTBEAT_MS);
        assert_eq!(config.output, "default");
        assert_eq!(config.listen, "0.0.0.0:7710".parse().expect("addr"));
        assert_eq!(
            config.status_listen,
            "127.0.0.1:7711".parse().expect("addr")
        );
        assert!(config.mdns);
        assert!(config.peers.is_empty());
        assert!(config.mdns_interfaces.is_empty());
        assert_eq!(config.gpio, GpioConfig::default());
        assert_eq!(config.gpio.debounce_ms, DEFAULT_DEBOUNCE_MS);
        assert_eq!(config.gpio.volume_step, DEFAULT_VOLUME_STEP);
        assert!(config.gpio.active_low);
        assert!(!config.gpio.any_pin());
        assert!(!config.name.is_empty(), "name defaults to the hostname");
    }

    #[test]
    fn channel_accepts_all_number_and_name() {
        let f = Fixture::new();
        for (text, want) in [
            ("channel = \"All\"", ChannelSpec::All),
            ("channel = 2", ChannelSpec::Index(2)),
            ("channel = \"3\"", ChannelSpec::Index(3)),
            ("channel = \"bass\"", ChannelSpec::Name("bass".into())),
        ] {
            assert_eq!(f.load(text, &[]).expect(text).channel, want, "{text}");
        }
        assert!(message(f.load("channel = 300", &[])).contains("key 'channel': stem number 300"));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let f = Fixture::new();
        let msg = message(f.load("heartbeat = 100", &[]));
        let path = f.path("node.toml");
        assert!(
            msg.starts_with(&format!(
                "{}: line 4: key 'heartbeat': unknown key, expected one of",
                path.display()
            )),
            "{msg}"
        );
        let msg = message(f.load("[gpio]\nbutton = 3", &[]));
        assert!(msg.contains("key 'gpio.button': unknown key"), "{msg}");
    }

    #[test]
    fn out_of_range_values_name_key_and_limit() {
        let f = Fixture::new();
        let path = f.path("node.toml");
        assert_eq!(
            message(f.load("heartbeat_ms = 5", &[])),
            format!(
                "{}: key 'heartbeat_ms': 5 is below the minimum of 20",
                path.display()
            )
        );
        assert!(
            message(f.load("heartbeat_ms = 5000", &[]))
                .ends_with("5000 is above the maximum of 1000")
        );
        assert!(
            message(f.load("heartbeat_ms = -1", &[])).ends_with("-1 is below the minimum of 20")
        );
        assert!(
            message(f.load("[gpio]\nled = 40", &[]))
                .contains("key 'gpio.led': 40 is not a GPIO number")
        );
        assert!(
            message(f.load("[gpio]\ndebounce_ms = 0", &[]))
                .ends_with("key 'gpio.debounce_ms': 0 is below the minimum of 1")
        );
        assert!(
            message(f.load("[gpio]\nvolume_step = 51", &[]))
                .ends_with("key 'gpio.volume_step': 51 is above the maximum of 50")
        );
        assert!(
            message(f.load("[gpio]\nvolume_step = -3", &[]))
                .ends_with("key 'gpio.volume_step': -3 is below the minimum of 1")
        );
        assert_eq!(
            message(f.load("", &["--gpio-debounce-ms", "1000"])),
            "--gpio-debounce-ms: key 'gpio.debounce_ms': 1000 is above the maximum of 250"
        );
        let msg = message(f.load("[gpio]\nactive_low = \"yes\"", &[]));
        assert!(msg.contains("key 'gpio.active_low': invalid type"), "{msg}");
        let msg = message(f.load("[gpio]\nled = 17\nplay_pause = 17", &[]));
        assert!(msg.contains("pin 17 is already used by gpio."), "{msg}");
        let name = "x".repeat(64);
        assert!(message(f.load(&format!("name = {name:?}"), &[])).contains("key 'name': "));
    }

    #[test]
    fn wrong_type_is_reported_with_key() {
        let f = Fixture::new();
        let msg = message(f.load("heartbeat_ms = \"fast\"", &[]));
        assert!(
            msg.contains("line 4: key 'heartbeat_ms': invalid type"),
            "{msg}"
        );
        let msg = message(f.load("peers = [1]", &[]));
        assert!(msg.contains("key 'peers[0]': invalid type"), "{msg}");
    }

    #[test]
    fn bad_addresses_are_rejected() {
        let f = Fixture::new();
        let msg = message(f.load("listen = \"speaker.local:7710\"", &[]));
        assert!(
            msg.contains("key 'listen': 'speaker.local:7710' is not an address"),
            "{msg}"
        );
        let msg = message(f.load("peers = [\"10.0.0.1\", \"10.0.0.2:99999\"]", &[]));
        assert!(
            msg.contains("key 'peers[1]': '10.0.0.2:99999' is not an address"),
            "{msg}"
        );
        let msg = message(f.load("peers = [\"0.0.0.0\"]", &[]));
        assert!(msg.contains("cannot be a peer"), "{msg}");
        let msg = message(f.load("status_listen = \"0.0.0.0:7711\"", &[]));
        assert!(
            msg.contains("key 'status_listen': 0.0.0.0:7711 is not a loopback address"),
            "{msg}"
        );
        let msg = message(f.load("mdns_interfaces = [\"a-very-long-interface\"]", &[]));
        assert!(msg.contains("key 'mdns_interfaces[0]'"), "{msg}");
    }

    #[test]
    fn syntax_error_is_one_line_with_line_number() {
        let f = Fixture::new();
        let msg = message(f.load("name = ", &[]));
        assert!(msg.contains("node.toml: line 4: "), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
    }

    #[test]
    fn flags_override_file() {
        let f = Fixture::new();
        let config = f
            .load(
                "name = \"file\"\nheartbeat_ms = 50\npeers = [\"10.0.0.1\"]\nmdns = true\n[gpio]\nled = 4",
                &[
                    "--name",
                    "flag",
                    "--heartbeat-ms",
                    "200",
                    "--peer",
                    "10.0.0.9:7000",
                    "--peer",
                    "10.0.0.8",
                    "--no-mdns",
                    "--gpio-led",
                    "5",
                    "--channel",
                    "all",
                ],
            )
            .expect("valid config");
        assert_eq!(config.name, "flag");
        assert_eq!(config.heartbeat_ms, 200);
        assert_eq!(
            config.peers,
            vec![
                "10.0.0.9:7000".parse().expect("addr"),
                "10.0.0.8:7710".parse().expect("addr"),
            ]
        );
        assert!(!config.mdns);
        assert_eq!(config.gpio.led, Some(5));
        // `--gpio-active-high` wins over the file's `active_low`.
        let config = f
            .load("[gpio]\nactive_low = true", &["--gpio-active-high"])
            .expect("valid config");
        assert!(!config.gpio.active_low);
        assert_eq!(config.channel, ChannelSpec::All);

        // `--mdns` turns discovery back on over a file that turned it off.
        assert!(f.load("mdns = false", &["--mdns"]).expect("valid").mdns);
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let f = Fixture::new();
        assert_eq!(
            message(f.load("", &["--heartbeat-ms", "5"])),
            "--heartbeat-ms: key 'heartbeat_ms': 5 is below the minimum of 20"
        );
    }

    #[test]
    fn missing_secret_file_is_reported() {
        let f = Fixture::new();
        let missing = f.path("nope");
        let msg = message(f.load("", &["--secret-file", missing.to_str().expect("utf-8")]));
        assert!(
            msg.starts_with(&format!(
                "--secret-file: key 'secret_file': cannot read {}: ",
                missing.display()
            )),
            "{msg}"
        );
    }

    #[test]
    fn secret_is_required() {
        let cli = TestCli::try_parse_from(["node", "--config", "/nonexistent/for/sure.toml"])
            .expect("flags parse");
        assert!(matches!(
            Config::load(&cli.config),
            Err(ConfigError::FileNotFound { .. })
        ));
        let f = Fixture::new();
        let empty = f.write("empty.toml", "", 0o644);
        let cli = TestCli::try_parse_from(["node", "--config", empty.to_str().expect("utf-8")])
            .expect("flags parse");
        let msg = Config::load(&cli.config)
            .map(|_| ())
            .expect_err("secret missing")
            .to_string();
        assert!(msg.starts_with("key 'secret_file' is required"), "{msg}");
    }

    #[test]
    fn short_secret_is_rejected() {
        let f = Fixture::new();
        // 15 bytes plus a newline that does not count.
        let short = f.write("short", "0123456789abcde\n", 0o600);
        let msg = message(f.load("", &["--secret-file", short.to_str().expect("utf-8")]));
        assert!(
            msg.contains("is 15 bytes, at least 16 are required"),
            "{msg}"
        );
    }

    #[test]
    fn world_readable_secret_warns() {
        let f = Fixture::new();
        let open = f.write("open", "0123456789abcdef0123", 0o644);
        let config = f
            .load("", &["--secret-file", open.to_str().expect("utf-8")])
            .expect("valid config");
        assert_eq!(config.secret.as_bytes(), b"0123456789abcdef0123");
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.contains("readable by every user")),
            "{:?}",
            config.warnings
        );
    }

    #[test]
    fn secret_never_appears_in_debug_output() {
        let f = Fixture::new();
        let config = f.load("", &[]).expect("valid config");
        let debug = format!("{config:?}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        assert!(debug.contains("32 bytes, redacted"), "{debug}");
    }

    #[test]
    fn cache_settings_default_and_are_checked() {
        let f = Fixture::new();
        let config = f.load("", &[]).expect("valid config");
        assert_eq!(config.cache_dir, config.state_dir.join("chunks"));
        assert_eq!(config.cache_max_bytes, DEFAULT_CACHE_BYTES);
        let config = f
            .load("cache_max = \"64M\"", &["--cache-dir", "/tmp/chunks"])
            .expect("valid config");
        assert_eq!(config.cache_max_bytes, 64 << 20);
        assert_eq!(config.cache_dir, PathBuf::from("/tmp/chunks"));
        let msg = message(f.load("cache_max = \"1M\"", &[]));
        assert!(msg.contains("key 'cache_max': 1M is too small"), "{msg}");
        let msg = message(f.load("", &["--cache-max", "lots"]));
        assert!(
            msg.contains("--cache-max") && msg.contains("'lots' is not a size"),
            "{msg}"
        );
    }

    /// The shipped example must stay valid, with its commented-out values
    /// switched on too.
    #[test]
    fn example_config_is_valid_with_every_value_enabled() {
        let example = include_str!("../../systemd/node.toml.example");
        let enabled: String = example
            .lines()
            .map(|line| match line.strip_prefix('#') {
                Some(rest)
                    if rest.split_once(" = ").is_some_and(|(k, _)| {
                        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    }) =>
                {
                    rest
                }
                _ => line,
            })
            .fold(String::new(), |acc, line| acc + line + "\n");
        let f = Fixture::new();
        for text in [example, enabled.as_str()] {
            let path = f.write("example.toml", text, 0o644);
            let file = parse_file(&path, text).expect("example parses");
            let args = ConfigArgs {
                secret_file: Some(f.path("secret")),
                ..ConfigArgs::default()
            };
            resolve(&args, Some(path), file, || Some("pi".into())).expect("example is valid");
        }
        assert!(
            enabled.contains("\nheartbeat_ms = 100\n"),
            "values were enabled"
        );
    }

    #[test]
    fn hostname_is_the_default_name() {
        let f = Fixture::new();
        let args = ConfigArgs {
            secret_file: Some(f.path("secret")),
            media_dir: Some(f.path("media")),
            ..ConfigArgs::default()
        };
        let config = resolve(&args, None, FileConfig::default(), || {
            Some("pi-kitchen".into())
        })
        .expect("valid config");
        assert_eq!(config.name, "pi-kitchen");
        let err = resolve(&args, None, FileConfig::default(), || None).expect_err("no name");
        assert!(
            err.to_string().starts_with("default: key 'name': "),
            "{err}"
        );
    }
}
