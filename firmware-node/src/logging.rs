//! Log output: `tracing` events to stderr, human-readable by default or one
//! JSON object per line for log collectors.
//!
//! Which events show: `--log-level` if given, else `RUST_LOG`, else `info`.
//! Both take `tracing-subscriber` filter directives, so
//! `info,autoharmonize_node=debug` works as well as a bare level. Under
//! systemd (detected by `JOURNAL_STREAM`) human output drops its own
//! timestamps, since the journal stamps every line already.
//!
//! Invariant: stdout carries no logs; it stays free for future command output.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Filter used when neither `--log-level` nor `RUST_LOG` is set.
pub const DEFAULT_FILTER: &str = "info";

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per event, for log collectors.
    Json,
}

/// Command-line flags for logging.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct LogArgs {
    /// How log lines look: "human" for people reading the journal, "json"
    /// for log collection tools.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// How much to log: error, warn, info, debug or trace, or a filter such
    /// as "info,autoharmonize_node=debug". Overrides the RUST_LOG
    /// environment variable. [default: info]
    #[arg(long, value_name = "LEVEL", value_parser = parse_filter)]
    pub log_level: Option<String>,
}

/// Why logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// A global `tracing` subscriber was already installed (only possible
    /// when `init` is called twice in one process).
    #[error("logging is already set up: {0}")]
    AlreadySet(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

fn parse_filter(text: &str) -> Result<String, String> {
    // A bare word parses as a target name ("verbose" would enable the
    // target `verbose` and silence everything else), so it must be a level.
    let bare = !text.contains(['=', ',', '[']);
    if bare
        && text
            .parse::<tracing_subscriber::filter::LevelFilter>()
            .is_err()
    {
        return Err(format!(
            "'{text}' is not a level (error, warn, info, debug, trace or off)"
        ));
    }
    EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// Installs the global subscriber. Returns a warning to log if `RUST_LOG`
/// was set but unusable (logging is up by then, so the caller can log it).
///
/// # Errors
/// [`LoggingError::AlreadySet`] if called twice.
pub fn init(args: &LogArgs) -> Result<Option<String>, LoggingError> {
    let (filter, warning) = filter(args);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr piped into `head`, which
        // has exited) is lost; by default the subscriber then reports that
        // with `eprintln!` on the same broken stderr, which panics.
        .log_internal_errors(false);
    let result = match args.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Human => {
            let builder = builder.with_ansi(std::io::stderr().is_terminal());
            if std::env::var_os("JOURNAL_STREAM").is_some() {
                builder.without_time().try_init()
            } else {
                builder.try_init()
            }
        }
    };
    result.map_err(LoggingError::AlreadySet)?;
    Ok(warning)
}

fn filter(args: &LogArgs) -> (EnvFilter, Option<String>) {
    if let Some(directives) = &args.log_level {
        // Validated by `parse_filter` when the flag was parsed.
        if let Ok(filter) = EnvFilter::builder().parse(directives) {
            return (filter, None);
        }
    }
    match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => match EnvFilter::builder().parse(&text) {
            Ok(filter) => (filter, None),
            Err(e) => (
                EnvFilter::new(DEFAULT_FILTER),
                Some(format!(
                    "RUST_LOG={text:?} is not a valid filter ({e}); logging at {DEFAULT_FILTER}"
                )),
            ),
        },
        _ => (EnvFilter::new(DEFAULT_FILTER), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_level_accepts_levels_and_directives() {
        assert!(parse_filter("debug").is_ok());
        assert!(parse_filter("info,autoharmonize_node=trace").is_ok());
        assert!(parse_filter("loud").is_err());
    }
}
