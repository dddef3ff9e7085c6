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
    /// The room cannot be reached: no speaker answered, or they rejected
    /// the secret.
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
and return when the room has applied the decision.",
    after_long_help = "Examples:\n  \
autoharmonize --secret-file room.secret                 # web mixer on 127.0.0.1:8080\n  \
autoharmonize --secret-file room.secret play\n  \
autoharmonize --secret-file room.secret seek all 1:30\n  \
autoharmonize --secret-file room.secret volume 2 40 --json\n\n\
Exit status: 0 applied, 1 failed (not decided in time), 2 bad input or options, \
3 the room cannot be reached (no speaker, wrong secret), 4 read-only (this controller \
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
    /// Do not look for speakers over mDNS (use --peer).
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
        /// `all` or a channel number.
        #[arg(default_value = "all")]
        channel: String,
    },
    /// Pause a channel, or all (the default).
    Pause {
        /// `all` or a channel number.
        #[arg(default_value = "all")]
        channel: String,
    },
    /// Move a channel (or all) to a position.
    Seek {
        /// `all` or a channel number.
        channel: String,
        /// Position: m:ss, h:mm:ss, or seconds, optionally with .fff.
        time: String,
    },
    /// Set a channel's (or every channel's) volume.
    Volume {
        /// `all` or a channel number.
        channel: String,
        /// Volume in percent, 0 to 100.
        percent: String,
    },
    /// List the tracks the room knows.
    Tracks,
    /// Load a track on every speaker.
    Load {
        /// The track's id.
        track: String,
    },
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
}
