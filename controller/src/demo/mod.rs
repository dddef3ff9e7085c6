//! `autoharmonize demo`: a whole room on this computer. It synthesizes a
//! four-stem song ([`music`]), starts one real `autoharmonize-node` process
//! per speaker on loopback with static peers ([`room`]), and then the
//! binary joins them as a controller and serves the mixer.
//!
//! Why loopback and static peers: the demo must never announce itself or
//! vote on the user's network; nodes listen on 127.0.0.1 only, with mDNS
//! off.
//!
//! This file holds the demo's pure decisions (where things go, which
//! output, which ports, each node's command line), unit-tested; [`room`]
//! runs them. Invariant: every process the demo starts is owned by a
//! [`room::Room`], which stops it on every way out.

pub mod music;
pub mod room;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use music::Stem;

/// Most speakers a demo starts (the room's channel limit).
pub const MAX_NODES: u8 = 8;

/// First port tried for the nodes' mesh sockets (UDP) and status
/// endpoints (TCP); above the node's defaults (7710, 7711) so a real node
/// on this computer is left alone.
pub const BASE_PORT: u16 = 7720;

/// The folder of the song inside the media folder.
pub const TRACK: &str = "demo-song";

/// Where each node sends its sound, as asked on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputChoice {
    /// The sound card if this computer has one, else WAV files.
    Auto,
    /// A WAV file per speaker in the demo folder.
    Wav,
    /// This output for every node (`default`, `hw:0,0`, `null`, …; see
    /// `autoharmonize-node --help`).
    Named(String),
}

impl OutputChoice {
    /// Parses `auto`, `wav` or an output name.
    ///
    /// # Errors
    /// An empty name.
    pub fn parse(s: &str) -> Result<OutputChoice, String> {
        match s.trim() {
            "" => Err(
                "an output name is required (auto, wav, or a node output such as default)".into(),
            ),
            "auto" => Ok(OutputChoice::Auto),
            "wav" => Ok(OutputChoice::Wav),
            "wav:" => Ok(OutputChoice::Wav),
            other if other.starts_with("wav:") => Err(format!(
                "'{other}': the demo names the WAV files itself; use --output wav (they go to --dir)"
            )),
            other => Ok(OutputChoice::Named(other.to_owned())),
        }
    }
}

/// What node `index` writes to: the `--output` it gets, and where a person
/// finds the sound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// A sound device (ALSA PCM name).
    Device(String),
    /// A WAV file.
    Wav(PathBuf),
    /// Another output name, passed through.
    Other(String),
}

impl Sink {
    /// The node's `--output` argument.
    #[must_use]
    pub fn arg(&self) -> String {
        match self {
            // Prefixed: a PCM named like another backend (`null`) is ALSA's.
            Sink::Device(pcm) => format!("alsa:{pcm}"),
            Sink::Wav(p) => format!("wav:{}", p.display()),
            Sink::Other(o) => o.clone(),
        }
    }
}

impl std::fmt::Display for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Device(pcm) => write!(f, "sound device '{pcm}'"),
            Sink::Wav(p) => write!(f, "{}", p.display()),
            Sink::Other(o) => write!(f, "output '{o}'"),
        }
    }
}

/// Whether this computer has an ALSA playback device: a `pcm…p` node in
/// `/dev/snd` (given as `snd` so tests can point elsewhere).
#[must_use]
pub fn has_playback_device(snd: &Path) -> bool {
    std::fs::read_dir(snd).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("pcm") && name.ends_with('p')
        })
    })
}

/// The sink of node `index` for `choice`.
#[must_use]
pub fn sink_for(choice: &OutputChoice, has_device: bool, dir: &Path, index: usize) -> Sink {
    match choice {
        OutputChoice::Auto if has_device => Sink::Device("default".into()),
        OutputChoice::Auto | OutputChoice::Wav => {
            Sink::Wav(dir.join(format!("speaker{index}-{}.wav", stem_of(index).name())))
        }
        // As the node reads it: a name whose prefix is not one of its other
        // backends is an ALSA PCM name (`default`, `hw:0,0`, `plug:jack`).
        OutputChoice::Named(n) => {
            match n.split_once(':').map_or(n.as_str(), |(prefix, _)| prefix) {
                "null" | "virtual" | "wav" => Sink::Other(n.clone()),
                "alsa" => Sink::Device(n.strip_prefix("alsa:").unwrap_or("default").to_owned()),
                _ => Sink::Device(n.clone()),
            }
        }
    }
}

/// The stem node `index` plays: drums, bass, chords, lead, then again.
#[must_use]
pub fn stem_of(index: usize) -> Stem {
    Stem::ALL[index % Stem::ALL.len()]
}

/// `count` ports from `start` up for which `free` holds, skipping
/// `taken`; `None` if the port range runs out first.
pub fn pick_ports(
    start: u16,
    count: usize,
    taken: &[u16],
    mut free: impl FnMut(u16) -> bool,
) -> Option<Vec<u16>> {
    let mut ports = Vec::with_capacity(count);
    for p in start..=u16::MAX {
        if ports.len() == count {
            break;
        }
        if !taken.contains(&p) && free(p) {
            ports.push(p);
        }
    }
    (ports.len() == count).then_some(ports)
}

/// Everything that differs between the demo's nodes.
#[derive(Clone, Debug)]
pub struct NodePlan {
    /// 0-based.
    pub index: usize,
    /// The node's name in the room.
    pub name: String,
    /// Mesh socket (UDP, loopback).
    pub mesh: SocketAddr,
    /// Status endpoint (TCP, loopback).
    pub status: SocketAddr,
    /// Where its sound goes.
    pub sink: Sink,
    /// Its log file.
    pub log: PathBuf,
}

/// The demo's folder layout.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The demo folder.
    pub dir: PathBuf,
}

impl Layout {
    /// The room's secret.
    #[must_use]
    pub fn secret(&self) -> PathBuf {
        self.dir.join("secret")
    }
    /// The media folder (holds the song's folder).
    #[must_use]
    pub fn media(&self) -> PathBuf {
        self.dir.join("media")
    }
    /// The song's folder.
    #[must_use]
    pub fn track(&self) -> PathBuf {
        self.media().join(TRACK)
    }
    /// Node `i`'s state folder (identity, boot epochs).
    #[must_use]
    pub fn state(&self, i: usize) -> PathBuf {
        self.dir.join(format!("state{i}"))
    }
    /// The folder of the nodes' logs.
    #[must_use]
    pub fn logs(&self) -> PathBuf {
        self.dir.join("logs")
    }
}

/// The plans of `sinks.len()` nodes on the given ports.
#[must_use]
pub fn plan(
    layout: &Layout,
    mesh_ports: &[u16],
    status_ports: &[u16],
    sinks: Vec<Sink>,
) -> Vec<NodePlan> {
    let lo = |p: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, p));
    sinks
        .into_iter()
        .zip(mesh_ports.iter().zip(status_ports))
        .enumerate()
        .map(|(index, (sink, (&m, &s)))| NodePlan {
            index,
            name: match index / Stem::ALL.len() {
                0 => format!("demo-{}", stem_of(index).name()),
                round => format!("demo-{}{}", stem_of(index).name(), round + 1),
            },
            mesh: lo(m),
            status: lo(s),
            sink,
            log: layout.logs().join(format!("node{index}.log")),
        })
        .collect()
}

/// Node `node`'s command line (without the program): its own settings,
/// and every other node of `all` (plus `extra_peers`) as a static peer.
#[must_use]
pub fn node_args(
    layout: &Layout,
    node: &NodePlan,
    all: &[NodePlan],
    extra_peers: &[SocketAddr],
) -> Vec<String> {
    let path = |p: PathBuf| p.display().to_string();
    let mut args = vec![
        "--secret-file".into(),
        path(layout.secret()),
        "--state-dir".into(),
        path(layout.state(node.index)),
        "--media-dir".into(),
        path(layout.media()),
        "--track".into(),
        TRACK.into(),
        "--channel".into(),
        (node.index % Stem::ALL.len()).to_string(),
        "--name".into(),
        node.name.clone(),
        "--no-mdns".into(),
        "--listen".into(),
        node.mesh.to_string(),
        "--status-listen".into(),
        node.status.to_string(),
        "--output".into(),
        node.sink.arg(),
        "--log-level".into(),
        "info".into(),
    ];
    let peers = all.iter().filter(|n| n.index != node.index).map(|n| n.mesh);
    for p in peers.chain(extra_peers.iter().copied()) {
        args.push("--peer".into());
        args.push(p.to_string());
    }
    args
}

/// 32 random bytes as hex: a room secret (the node needs ≥ 16 bytes).
///
/// # Errors
/// If the OS has no randomness.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            dir: PathBuf::from("/tmp/d"),
        }
    }

    #[test]
    fn outputs_parse_and_resolve() {
        assert_eq!(OutputChoice::parse("auto"), Ok(OutputChoice::Auto));
        assert_eq!(OutputChoice::parse("wav"), Ok(OutputChoice::Wav));
        assert!(OutputChoice::parse("").is_err());
        assert!(OutputChoice::parse("wav:/x.wav").is_err());
        let d = Path::new("/tmp/d");
        assert_eq!(
            sink_for(&OutputChoice::Auto, true, d, 1),
            Sink::Device("default".into())
        );
        assert_eq!(
            sink_for(&OutputChoice::Auto, false, d, 1),
            Sink::Wav(d.join("speaker1-bass.wav"))
        );
        assert_eq!(
            sink_for(&OutputChoice::Wav, true, d, 5),
            Sink::Wav(d.join("speaker5-bass.wav"))
        );
        let named = |n: &str| sink_for(&OutputChoice::parse(n).expect("parses"), false, d, 0);
        assert_eq!(named("hw:0,0"), Sink::Device("hw:0,0".into()));
        assert_eq!(named("virtual:10"), Sink::Other("virtual:10".into()));
        assert_eq!(named("alsa:hw:0,0"), Sink::Device("hw:0,0".into()));
        assert_eq!(named("default"), Sink::Device("default".into()));
        assert_eq!(named("alsa"), Sink::Device("default".into()));
        assert_eq!(named("null"), Sink::Other("null".into()));
        assert_eq!(Sink::Wav(d.join("a.wav")).arg(), "wav:/tmp/d/a.wav");
        assert_eq!(named("alsa:null").arg(), "alsa:null");
        assert_eq!(named("null").arg(), "null");
        assert_eq!(named("default").arg(), "alsa:default");
    }

    #[test]
    fn playback_device_is_a_pcm_playback_node() {
        let dir = tempfile::tempdir().expect("temporary directory");
        assert!(!has_playback_device(&dir.path().join("absent")));
        std::fs::write(dir.path().join("controlC0"), "").expect("file");
        std::fs::write(dir.path().join("pcmC0D0c"), "").expect("file");
        assert!(!has_playback_device(dir.path()), "capture only");
        std::fs::write(dir.path().join("pcmC0D0p"), "").expect("file");
        assert!(has_playback_device(dir.path()));
    }

    #[test]
    fn ports_skip_busy_and_taken_ones() {
        let busy = [7721, 7723];
        let got = pick_ports(7720, 3, &[7722], |p| !busy.contains(&p)).expect("ports");
        assert_eq!(got, [7720, 7724, 7725]);
        assert_eq!(pick_ports(65534, 3, &[], |_| true), None);
        assert_eq!(
            pick_ports(65534, 2, &[], |_| true),
            Some(vec![65534, 65535])
        );
    }

    #[test]
    fn nodes_play_the_stems_in_turn_and_list_each_other() {
        let l = layout();
        let sinks = (0..5)
            .map(|i| sink_for(&OutputChoice::Wav, false, &l.dir, i))
            .collect();
        let plans = plan(&l, &[1, 2, 3, 4, 5], &[11, 12, 13, 14, 15], sinks);
        let names: Vec<&str> = plans.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "demo-drums",
                "demo-bass",
                "demo-chords",
                "demo-lead",
                "demo-drums2"
            ]
        );
        let extra: SocketAddr = "127.0.0.1:99".parse().expect("addr");
        let args = node_args(&l, &plans[4], &plans, &[extra]);
        let value = |flag: &str| {
            let i = args.iter().position(|a| a == flag).expect(flag);
            args[i + 1].clone()
        };
        assert_eq!(value("--channel"), "0");
        assert_eq!(value("--listen"), "127.0.0.1:5");
        assert_eq!(value("--status-listen"), "127.0.0.1:15");
        assert_eq!(value("--output"), "wav:/tmp/d/speaker4-drums.wav");
        assert_eq!(value("--state-dir"), "/tmp/d/state4");
        assert_eq!(value("--track"), TRACK);
        assert!(args.iter().any(|a| a == "--no-mdns"));
        let peers: Vec<&String> = args
            .iter()
            .zip(args.iter().skip(1))
            .filter(|(f, _)| *f == "--peer")
            .map(|(_, p)| p)
            .collect();
        assert_eq!(
            peers,
            [
                "127.0.0.1:1",
                "127.0.0.1:2",
                "127.0.0.1:3",
                "127.0.0.1:4",
                "127.0.0.1:99"
            ]
        );
        assert_eq!(plans[4].log, PathBuf::from("/tmp/d/logs/node4.log"));
    }

    #[test]
    fn secrets_are_long_and_fresh() {
        let a = new_secret().expect("randomness");
        assert_eq!(a.len(), 64);
        assert_ne!(a, new_secret().expect("randomness"));
    }
}
