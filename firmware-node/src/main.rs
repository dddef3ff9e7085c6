//! Entry point of `autoharmonize-node`: parse, set up logging, load the
//! configuration and identity, then run. Logic lives in the library.

use std::process::ExitCode;

use anyhow::Context as _;
use autoharmonize_node::cli::{Cli, EXIT_CONFIG};
use autoharmonize_node::config::{ChannelSpec, Config, ConfigError};
use autoharmonize_node::discovery::{self, Discovery, DiscoveryConfig};
use autoharmonize_node::mesh::{self, Mesh, MeshSetup};
use autoharmonize_node::{identity, logging, status};
use autoharmonize_protocol::seal::GroupKey;
use autoharmonize_protocol::{BootId, MemberId};
use clap::Parser as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
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
    let (config, member, boot) = match prepare(&cli) {
        Ok(prepared) => prepared,
        Err(e) => {
            // One line, no log decoration: it is what a person reads first.
            eprintln!("config error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match run(&cli, &config, member, boot) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Everything a person may have to fix before the node can run.
fn prepare(cli: &Cli) -> Result<(Config, MemberId, BootId), ConfigError> {
    let config = Config::load(&cli.config)?;
    for warning in &config.warnings {
        warn!("{warning}");
    }
    debug!(?config, "resolved configuration");
    let member = identity::load_or_create(&config.state_dir)?;
    let boot = identity::next_boot_epoch(&config.state_dir)?;
    Ok((config, member, boot))
}

fn run(cli: &Cli, config: &Config, member: MemberId, boot: BootId) -> anyhow::Result<()> {
    info!(
        %member,
        boot = boot.0,
        name = %config.name,
        listen = %config.listen,
        "autoharmonize-node starting"
    );
    let key = GroupKey::new(config.secret.as_bytes()).context("the group secret")?;
    let stem = match config.channel {
        ChannelSpec::Index(i) => Some(i),
        ChannelSpec::All | ChannelSpec::Name(_) => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(async {
        let socket = UdpSocket::bind(config.listen)
            .await
            .with_context(|| format!("binding the mesh socket to {}", config.listen))?;
        let socket_port = socket
            .local_addr()
            .map_or(config.listen.port(), |a| a.port());
        let listener = status::bind(config.status_listen)
            .await
            .with_context(|| format!("binding the status endpoint to {}", config.status_listen))?;
        // The audio engine fills this (buffer level, xruns); the mesh sends
        // it in every heartbeat. Until it is wired, the node reports zeros.
        let (_health_tx, health_rx) = tokio::sync::watch::channel(mesh::AudioHealth::default());
        let (mesh, status_rx) = Mesh::new(MeshSetup {
            id: member,
            boot,
            name: config.name.clone(),
            member: mesh::member_config(config.heartbeat_ms, stem),
            key,
            socket,
            peers: config.peers.clone(),
            clock: cli.test.clock(),
            health: health_rx,
        });
        let (commands_tx, commands_rx) = mpsc::channel(16);
        let (discovered_tx, discovered_rx) = mpsc::channel(64);
        let discovery = if config.mdns {
            let port = socket_port;
            let d = Discovery::start(&DiscoveryConfig::new(config, member, port))
                .context("starting mDNS discovery (use --no-mdns and --peer to do without)")?;
            info!(service = %d.fullname(), "advertising and browsing over mDNS");
            Some(std::sync::Arc::new(d))
        } else {
            info!(peers = config.peers.len(), "mDNS off: static peers only");
            None
        };
        if let Some(d) = discovery.clone() {
            tokio::spawn(discovery::feed_mesh(d, discovered_tx));
        }
        tokio::spawn(async move {
            if let Err(e) = status::serve(listener, status_rx, commands_tx).await {
                warn!("status endpoint stopped: {e}");
            }
        });
        info!(status = %config.status_listen, "status endpoint listening");
        let result = mesh
            .run(shutdown_signal(), commands_rx, discovered_rx)
            .await
            .context("the mesh socket failed");
        if let Some(d) = discovery.and_then(|d| std::sync::Arc::try_unwrap(d).ok()) {
            // Goodbye over mDNS too, so browsers drop us at once.
            if let Err(e) = tokio::task::spawn_blocking(move || d.shutdown()).await {
                warn!("stopping discovery: {e}");
            }
        }
        result
    })?;
    info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot listen for signals; stop the node with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}
