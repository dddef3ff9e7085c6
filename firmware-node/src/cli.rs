//! The command line of `autoharmonize-node`: config flags plus logging flags.
//!
//! Help texts are written for a person installing a speaker, not for the
//! developers: each option says what it changes in words and names its
//! config-file key, so the two can be looked up in either direction.

use clap::Parser;

use crate::config::ConfigArgs;
use crate::logging::LogArgs;

/// Exit code for a configuration a person must fix (also used by clap for
/// unusable flags). A systemd unit can stop restarting on it with
/// `RestartPreventExitStatus=2`.
pub const EXIT_CONFIG: u8 = 2;

/// Parsed command line.
#[derive(Parser, Clone, Debug)]
#[command(
    name = "autoharmonize-node",
    version,
    about = "Autoharmonize speaker daemon: finds the other speakers in the room and plays its part of the song in sync with them.",
    long_about = "Autoharmonize speaker daemon: finds the other speakers in the room and plays \
its part of the song in sync with them.\n\n\
Settings come from /etc/autoharmonize/node.toml (or the file given with --config); \
every setting can also be given as an option below, and an option wins over the file. \
Only the room's secret is required (secret_file in the file, or --secret-file); \
if the default config file does not exist, the options alone are used.",
    after_long_help = "Exit status: 0 on a clean stop, 1 on a runtime failure, 2 when the \
configuration must be fixed (the reason is printed as one line starting with \
\"config error:\")."
)]
pub struct Cli {
    /// Configuration keys.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Logging options.
    #[command(flatten)]
    pub log: LogArgs,
    /// Test-only options (hidden).
    #[command(flatten)]
    pub test: TestArgs,
}

/// Options for tests that run several nodes on one machine. Hidden from
/// `--help`: a speaker never needs them. Documented in docs/testing.md.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct TestArgs {
    /// Shift this node's clock by this many milliseconds (test only).
    #[arg(long, hide = true, value_name = "MS", default_value_t = 0)]
    pub test_clock_offset_ms: u64,
    /// Make this node's clock run fast (positive) or slow by this many parts
    /// per million (test only).
    #[arg(
        long,
        hide = true,
        value_name = "PPM",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub test_clock_skew_ppm: f64,
    /// On SIGUSR1, wedge the mesh loop (and so the systemd watchdog pings)
    /// while the rest of the node runs on (test only).
    #[arg(long, hide = true)]
    pub test_stall_on_sigusr1: bool,
    /// Delay every chunk request this node sends, and every answer it
    /// receives, by this many milliseconds: a far link for the streaming
    /// benchmark, since the kernel has no netem (test only, 0 to 10000).
    #[arg(long, hide = true, value_name = "MS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub test_link_delay_ms: u64,
    /// Read button presses from this named pipe instead of GPIO pins, one
    /// per line (`play_pause`, `volume_up [hold_ms]`, `volume_down
    /// [hold_ms]`): how the chaos harness presses buttons (test only).
    #[arg(long, hide = true, value_name = "PATH")]
    pub test_buttons_fifo: Option<std::path::PathBuf>,
}

impl TestArgs {
    /// The node's clock, with the test offset and skew if any.
    #[must_use]
    pub fn clock(&self) -> crate::clock::LocalClock {
        if self.test_clock_offset_ms == 0 && self.test_clock_skew_ppm == 0.0 {
            crate::clock::LocalClock::system()
        } else {
            crate::clock::LocalClock::skewed(
                std::time::Duration::from_millis(self.test_clock_offset_ms),
                self.test_clock_skew_ppm,
            )
        }
    }
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
    fn every_config_option_names_its_key() {
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if [
                "config",
                "log_format",
                "log_level",
                "help",
                "version",
                "test_clock_offset_ms",
                "test_clock_skew_ppm",
                "test_stall_on_sigusr1",
                "test_link_delay_ms",
                "test_buttons_fifo",
            ]
            .contains(&id)
            {
                continue;
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            assert!(help.contains("[key: "), "--{id} help lacks its key: {help}");
        }
    }
}
