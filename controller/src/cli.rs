//! The command line of `autoharmonize`: how to reach the room, then one verb.
//!
//! Help texts are for a person at a laptop: each option says what it
//! changes. Exit codes are part of the interface ([`exit`]) so scripts can
//! tell a typo from a room that cannot be reached.

use std::net::SocketAddr;
use std::path::PathBuf;

use autoharmonize_node::logging::LogArgs;
use clap::{Parser, Subcommand};

/// Exit codes.
pub mod exit {
    /// The action was applied (or the question answered).
    pub const OK: u8 = 0;
    /// Something failed at run time (the vote was not decided in time).
    pub const FAILED: u8 = 1;
    /// The command line or the input is wrong (unknown channel, volume out
    /// of range, seek past the end, unreadable secret).
    pub const USAGE: u8 = 2;
    /// The room cannot be reached: no speaker answered, they rejected the
    /// secret, or none of the room's speakers answers any more.
    pub const UNREACHABLE: u8 = 3;
    /// The controller is on the minority side of a partition: read-only.
    pub const READ_ONLY: u8 = 4;
}

/// Parsed command line.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "autoharmonize",
    version,
    args_override_self = true,
    about = "See and steer an Autoharmonize room from a laptop: a web mixer and command-line verbs.",
    long_about = "See and steer an Autoharmonize room from a laptop.\n\n\
The controller joins the speakers' mesh with the room's group secret, as a member that \
owns no speaker: it votes and observes, and the speakers never depend on it. Without a \
command it serves the web mixer on http://127.0.0.1:8080; the other commands act once \
and return when the room has applied the decision. After joining they wait briefly (up to \
2 s) for the names of the speakers, the track's title and its channels, and print what has \
not arrived by then as \"not known yet\". Output written to a reader that has gone away \
(`status | head -1`) is dropped quietly; the exit status still says how the command went.",
    after_long_help = "Examples:\n  \
autoharmonize demo                                      # a room of 4 speakers on this computer\n  \
autoharmonize --secret-file room.secret                 # web mixer on 127.0.0.1:8080\n  \
autoharmonize --secret-file room.secret play\n  \
autoharmonize --secret-file room.secret seek all 1:30\n  \
autoharmonize --secret-file room.secret volume bass 40\n  \
autoharmonize --secret-file room.secret volume 2 40 --json\n\n\
Channels are `all`, a number (0, 1, ...) or the loaded track's channel names, in any case. \
--json prints one object of plain fields (the event as POST /api/act takes it, and the \
room's state).\n\n\
Exit status: 0 applied, 1 failed (not decided in time), 2 bad input or options, \
3 the room cannot be reached (no speaker found, wrong secret, or no speaker answering any more), 4 read-only (this controller \
is cut off from the majority of the speakers)."
)]
pub struct Cli {
    /// How to reach the room.
    #[command(flatten)]
    pub room: RoomArgs,
    /// Print results as JSON (one object) for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// What to do (default: serve the web mixer).
    #[command(subcommand)]
    pub verb: Option<Verb>,
}

/// How to find and join the room.
#[derive(clap::Args, Clone, Debug)]
pub struct RoomArgs {
    /// File holding the room's group secret (the speakers' secret_file).
    /// Also read from the AUTOHARMONIZE_SECRET_FILE environment variable.
    #[arg(long, value_name = "PATH", global = true)]
    pub secret_file: Option<PathBuf>,
    /// A speaker to contact directly, ADDR[:PORT] (port 7710 by default).
    /// Repeat for several. Needed where mDNS does not work.
    #[arg(long = "peer", value_name = "ADDR[:PORT]", value_parser = autoharmonize_node::config::parse_peer, global = true)]
    pub peers: Vec<SocketAddr>,
    /// Do not look for speakers over mDNS. Then at least one --peer is
    /// needed (or a fixed --bind port that the speakers list as a peer):
    /// without one the controller stops at once, exit status 2.
    #[arg(long, global = true)]
    pub no_mdns: bool,
    /// Run mDNS only on this network interface (repeatable; default: all
    /// but loopback).
    #[arg(long = "mdns-interface", value_name = "IFACE", global = true)]
    pub mdns_interfaces: Vec<String>,
    /// UDP address of the controller's own mesh socket (port 0: any free).
    #[arg(
        long,
        value_name = "ADDR:PORT",
        default_value = "0.0.0.0:0",
        global = true
    )]
    pub bind: SocketAddr,
    /// The room's heartbeat in ms (the controller adopts the room's once
    /// joined; this only matters until then).
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=1000), global = true)]
    pub heartbeat_ms: u64,
    /// Seconds to look for the room before saying no speaker was found.
    #[arg(long, value_name = "SECONDS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600), global = true)]
    pub wait: u64,
    /// The name the room shows for this controller (at most 32 bytes are
    /// sent). Default: this computer's hostname, marked "(controller)".
    #[arg(long, value_name = "NAME", global = true)]
    pub name: Option<String>,
}

/// One thing to do.
#[derive(Subcommand, Clone, Debug)]
pub enum Verb {
    /// Serve the web mixer (the default).
    Serve {
        /// Where the mixer listens. Loopback needs no token; any other
        /// address prints an access token (and its QR code) that every
        /// request must carry.
        #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Show the room: connection, channels, All.
    Status,
    /// List the room's members with their health.
    Members,
    /// Play a channel, or all (the default).
    Play {
        /// `all`, a channel number, or the name of one of the loaded
        /// track's channels (`drums`; any case), as `status` lists them.
        #[arg(default_value = "all")]
        channel: String,
    },
    /// Pause a channel, or all (the default).
    Pause {
        /// `all`, a channel number, or the name of one of the loaded
        /// track's channels (`drums`; any case), as `status` lists them.
        #[arg(default_value = "all")]
        channel: String,
    },
    /// Move a channel (or all) to a position.
    Seek {
        /// `all`, a channel number, or the name of one of the loaded
        /// track's channels (`drums`; any case), as `status` lists them.
        channel: String,
        /// Position: m:ss, h:mm:ss, or seconds, optionally with .fff.
        time: String,
    },
    /// Set a channel's (or every channel's) volume.
    Volume {
        /// `all`, a channel number, or the name of one of the loaded
        /// track's channels (`drums`; any case), as `status` lists them.
        channel: String,
        /// Volume in percent, 0 to 100.
        percent: String,
    },
    /// List the tracks the room holds: id, title, length, channels and
    /// which speaker holds which stems.
    Tracks,
    /// Load a track on every speaker (paused at the start; then `play`).
    Load {
        /// The track: its title, a unique start of its title, or the start
        /// of its id (at least 4 hex digits), as `tracks` lists them.
        track: String,
    },
    /// Start a whole room on this computer: speakers playing a generated
    /// song, and the mixer. Ctrl-C stops everything.
    #[command(
        long_about = "Start a whole room on this computer and open the mixer on it.\n\n\
Synthesizes a song in four stems (drums, bass, chords, lead), starts one autoharmonize-node \
process per speaker on 127.0.0.1 with static peers (nothing is sent to the network, no mDNS), \
each playing its stem, and joins them as a controller serving the web mixer. Sound goes to the \
default sound device if this computer has one, else every speaker writes a WAV file into the \
demo folder. Ctrl-C (or SIGTERM) stops the mixer and every speaker, and says where the files are.\n\n\
The node binary is looked for next to this program, then on PATH. The room options \
(--secret-file, --peer, --no-mdns, --mdns-interface, --bind, --heartbeat-ms, --wait, --json) \
are for the other commands: the demo makes its own room."
    )]
    Demo(DemoArgs),
}

/// Options of `autoharmonize demo`.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// How many speakers (node processes). They play drums, bass, chords,
    /// lead, then the same again.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=i64::from(crate::demo::MAX_NODES)))]
    pub nodes: u8,
    /// Folder for the song, the room secret, the speakers' state, logs and
    /// WAV files (created if needed). Default: a new folder in the system's
    /// temporary directory, kept afterwards and printed.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Where the mixer listens (default 127.0.0.1:8080, or the next free
    /// port up to 8099).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Length of the generated song in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u32).range(5..=600))]
    pub seconds: u32,
    /// Where the speakers' sound goes: `auto` (the default sound device if
    /// there is one, else WAV files), `wav` (a WAV file per speaker in the
    /// demo folder), or a node output name for every speaker (`default`,
    /// `hw:0,0`, `null`).
    #[arg(long, value_name = "OUTPUT", default_value = "auto", value_parser = crate::demo::OutputChoice::parse)]
    pub output: crate::demo::OutputChoice,
    /// The room's volume at start, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 80, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub volume: u8,
    /// Start paused (press play in the mixer) instead of playing at once.
    #[arg(long)]
    pub paused: bool,
    /// First port tried for the speakers' mesh (UDP) and status (TCP)
    /// sockets on 127.0.0.1; busy ports are skipped.
    #[arg(long, value_name = "PORT", default_value_t = crate::demo::BASE_PORT, value_parser = clap::value_parser!(u16).range(1024..))]
    pub base_port: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn verbs_parse() {
        let c = Cli::try_parse_from(["autoharmonize", "--secret-file", "s", "seek", "all", "1:30"])
            .expect("parses");
        assert!(
            matches!(c.verb, Some(Verb::Seek { ref channel, ref time }) if channel == "all" && time == "1:30")
        );
        let c = Cli::try_parse_from(["autoharmonize", "play", "--json", "--peer", "10.0.0.2"])
            .expect("parses");
        assert!(c.json);
        assert_eq!(c.room.peers, ["10.0.0.2:7710".parse().expect("addr")]);
        assert!(matches!(c.verb, Some(Verb::Play { ref channel }) if channel == "all"));
        let c = Cli::try_parse_from(["autoharmonize"]).expect("parses");
        assert!(c.verb.is_none());
        assert!(Cli::try_parse_from(["autoharmonize", "seek", "all"]).is_err());
        assert!(Cli::try_parse_from(["autoharmonize", "--heartbeat-ms", "5"]).is_err());
    }

    #[test]
    fn demo_options_have_defaults_and_limits() {
        let c = Cli::try_parse_from(["autoharmonize", "demo"]).expect("parses");
        let Some(Verb::Demo(d)) = c.verb else {
            panic!("not the demo: {:?}", c.verb)
        };
        assert_eq!(
            (d.nodes, d.seconds, d.volume, d.paused),
            (4, 120, 80, false)
        );
        assert_eq!(d.output, crate::demo::OutputChoice::Auto);
        assert_eq!(d.listen, None);
        let c = Cli::try_parse_from(["autoharmonize", "demo", "--nodes", "8", "--output", "wav"])
            .expect("parses");
        assert!(
            matches!(c.verb, Some(Verb::Demo(ref d)) if d.nodes == 8 && d.output == crate::demo::OutputChoice::Wav)
        );
        for bad in [
            &["--nodes", "0"][..],
            &["--nodes", "9"],
            &["--seconds", "1"],
            &["--output", ""],
        ] {
            let args = ["autoharmonize", "demo"].iter().chain(bad).copied();
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
