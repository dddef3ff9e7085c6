//! Entry point of `autoharmonize-node`: parse, set up logging, load the
//! configuration and identity, then run. Logic lives in the library.

use std::process::ExitCode;

use autoharmonize_node::cli::{Cli, EXIT_CONFIG};
use autoharmonize_node::config::{Config, ConfigError};
use autoharmonize_node::{logging, member_id};
use autoharmonize_protocol::MemberId;
use clap::Parser as _;
use tracing::{debug, info, warn};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_warning = match logging::init(&cli.log) {
        Ok(warning) => warning,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(warning) = log_warning {
        warn!("{warning}");
    }
    let (config, member) = match prepare(&cli) {
        Ok(prepared) => prepared,
        Err(e) => {
            // One line, no log decoration: it is what a person reads first.
            eprintln!("config error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(&config, member) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Everything a person may have to fix before the node can run.
fn prepare(cli: &Cli) -> Result<(Config, MemberId), ConfigError> {
    let config = Config::load(&cli.config)?;
    for warning in &config.warnings {
        warn!("{warning}");
    }
    debug!(?config, "resolved configuration");
    let member = member_id::load_or_create(&config.state_dir)?;
    Ok((config, member))
}

fn run(config: &Config, member: MemberId) -> anyhow::Result<()> {
    info!(
        %member,
        name = %config.name,
        listen = %config.listen,
        "autoharmonize-node starting"
    );
    // The mesh, discovery, audio and GPIO loops replace this.
    info!("the mesh is not wired yet; exiting");
    Ok(())
}
