//! Entry point of `autoharmonize-node`: parse, set up logging, load the
//! configuration and identity, then run. Logic lives in the library.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use autoharmonize_node::audio::player::{Player, PlayerConfig, Remote, stem_index};
use autoharmonize_node::audio::track::StemChoice;
use autoharmonize_node::cli::{Cli, EXIT_CONFIG};
use autoharmonize_node::config::{ChannelSpec, Config, ConfigError};
use autoharmonize_node::discovery::{self, Discovery, DiscoveryConfig};
use autoharmonize_node::library::{self, Library};
use autoharmonize_node::mesh::{self, Mesh, MeshSetup};
use autoharmonize_node::notify::Supervisor;
use autoharmonize_node::stream::link::LinkOptions;
use autoharmonize_node::stream::{RoomHolders, StreamConfig, Streaming};
use autoharmonize_node::{gpio, identity, logging, room_state, status};
use autoharmonize_protocol::envelope::GroupKey;
use autoharmonize_protocol::exchange::LinkKey;
use autoharmonize_protocol::transport::LoadedTrack;
use autoharmonize_protocol::{BootId, MemberId};
use clap::Parser as _;
use std::sync::Arc;
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
    let clock = cli.test.clock();
    let mut player_config = player_config(config);
    let room = Arc::new(RoomHolders::new(config.peers.clone()));
    // Like audio, streaming is not worth leaving the room over: without it
    // this speaker plays only what it holds, and says why.
    match start_streaming(cli, config, &key, &player_config.library, Arc::clone(&room)) {
        Ok(streaming) => {
            player_config.remote = Some(Remote {
                streaming,
                room: Arc::clone(&room),
            });
        }
        Err(e) => {
            tracing::error!("streaming disabled (stems this speaker lacks stay silent): {e:#}")
        }
    }
    let default = player_config
        .default_track
        .and_then(|id| player_config.library.get(id));
    // The room this speaker founds starts with its default track; its
    // channel index of that track goes in the view.
    let channels = default.map_or(FALLBACK_CHANNELS, |t| t.stems.len());
    let stem = default.and_then(|t| stem_index(&t.track, &player_config.stem));
    let founding_track = default.map(|t| LoadedTrack {
        id: t.id(),
        length: t.info.length,
    });
    let library = player_config.library.holdings();
    // Audio before the mesh: a speaker that cannot open its output still
    // joins the room (it may come back after a reconfiguration), and says so.
    let player = match Player::start(&player_config, Arc::new(clock)) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!("audio disabled: {e:#}");
            None
        }
    };
    let mut member_config =
        mesh::member_config(config.heartbeat_ms, stem.and_then(|s| u8::try_from(s).ok()));
    member_config.channels = u8::try_from(channels).unwrap_or(u8::MAX);
    member_config.track = founding_track;
    // A room this speaker founds after a power cut comes back as it was.
    member_config.restored = room_state::load(&config.state_dir);
    let saver = match room_state::Saver::spawn(config.state_dir.clone()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!("the room state will not be saved (a power cut forgets it): {e}");
            None
        }
    };
    let supervisor = Supervisor::from_env();
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
        // The node's own player reports its health to the mesh directly;
        // this channel is for embedders without one (it stays at zero).
        let (_health_tx, health_rx) = tokio::sync::watch::channel(mesh::AudioHealth::default());
        let (mut mesh, status_rx) = Mesh::new(MeshSetup {
            id: member,
            boot,
            name: config.name.clone(),
            member: member_config,
            key,
            socket,
            peers: config.peers.clone(),
            clock,
            player,
            health: health_rx,
            library,
            saver,
        });
        let mut watchdog = supervisor.watchdog();
        if cli.test.test_stall_on_sigusr1 {
            watchdog
                .stall_on_sigusr1()
                .context("installing the test stall signal")?;
        }
        mesh.set_watchdog(watchdog);
        // Stems this speaker lacks are fetched from the holders the room's
        // catalogue names.
        room.attach(mesh.catalogue());
        let (commands_tx, commands_rx) = mpsc::channel(16);
        // Buttons cast through the same channel as the status endpoint.
        let _gpio = match &cli.test.test_buttons_fifo {
            Some(path) => {
                gpio::start_test_fifo(path, &config.gpio, status_rx.clone(), commands_tx.clone())
            }
            None => gpio::start(&config.gpio, status_rx.clone(), commands_tx.clone()),
        };
        let (discovered_tx, discovered_rx) = mpsc::channel(64);
        let discovery = if config.mdns {
            let port = socket_port;
            let d = Discovery::start(&DiscoveryConfig::new(config, member, port))
                .context("starting mDNS discovery (use --no-mdns and --peer to do without)")?;
            info!(service = %d.fullname(), "advertising and browsing over mDNS");
            Some(Arc::new(d))
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
        // Installed before READY: a SIGTERM right after it must stop the
        // node cleanly, not kill it with the default disposition.
        let shutdown = shutdown_signal();
        // READY=1, the one place it is sent: the mesh socket is bound, the
        // status endpoint listens and the mesh loop starts right below.
        // Whatever must be up before systemd starts dependent units (the
        // audio output) goes before this line.
        supervisor.ready();
        let result = mesh
            .run(shutdown, commands_rx, discovered_rx)
            .await
            .context("the mesh socket failed");
        supervisor.stopping();
        if let Some(d) = discovery.and_then(|d| Arc::try_unwrap(d).ok()) {
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

/// Starts the chunk exchange (TCP, on the mesh's port) and the chunk
/// cache, and serves this speaker's stems from a background thread (their
/// manifests may need hashing; the mesh does not wait for it).
fn start_streaming(
    cli: &Cli,
    config: &Config,
    key: &GroupKey,
    library: &Arc<Library>,
    room: Arc<RoomHolders>,
) -> anyhow::Result<Arc<Streaming>> {
    let streaming = Arc::new(Streaming::start(
        &StreamConfig {
            listen: config.listen,
            cache_dir: config.cache_dir.clone(),
            cache_max_bytes: config.cache_max_bytes,
            link: LinkOptions {
                delay: std::time::Duration::from_millis(cli.test.test_link_delay_ms),
            },
        },
        LinkKey::from_group(key),
        room,
    )?);
    let s = Arc::clone(&streaming);
    let library = Arc::clone(library);
    std::thread::Builder::new()
        .name("ah-hash".into())
        .spawn(move || {
            for stem in library.tracks().iter().flat_map(|t| t.stems.iter()) {
                match library.manifest(stem.hash) {
                    Ok(m) => s.serve_file(stem.path.clone(), m),
                    Err(e) => warn!("cannot serve stem {}: {e}", stem.name),
                }
            }
        })
        .context("starting the stem hashing thread")?;
    Ok(streaming)
}

/// Channels of a room founded by a speaker without any track (the
/// protocol's default room size).
const FALLBACK_CHANNELS: usize = 4;

/// The player's settings from the node's configuration: the library (the
/// media directory, plus the `track` folder if it lies outside), and the
/// default track (`track`, else the media directory's first track folder,
/// as the library's one scan of the media directory found it).
fn player_config(config: &Config) -> PlayerConfig {
    let configured = config
        .audio
        .track
        .as_deref()
        .map(|t| library::configured_folder(&config.media_dir, t));
    let extra: Vec<std::path::PathBuf> = match &configured {
        Some(dir) if !dir.starts_with(&config.media_dir) => vec![dir.clone()],
        _ => Vec::new(),
    };
    let library = Arc::new(Library::open(&config.media_dir, &extra, &config.state_dir));
    let track_dir = match configured {
        Some(dir) => Ok(dir),
        None => library.first_folder().map(Path::to_owned).ok_or_else(|| {
            format!(
                "no track (a folder of stems) in {}",
                config.media_dir.display()
            )
        }),
    };
    let default_track = match &track_dir {
        Ok(dir) => match library.by_folder(dir) {
            Some(t) => Some(t.id()),
            None => {
                warn!(
                    "the track {} is not a usable track folder; the room starts with no track and this speaker plays silence in sync until one is loaded",
                    dir.display()
                );
                None
            }
        },
        Err(problem) => {
            warn!("{problem}; playing silence in sync until a track is loaded");
            None
        }
    };
    PlayerConfig {
        library,
        default_track,
        stem: match &config.channel {
            ChannelSpec::All => StemChoice::All,
            ChannelSpec::Index(i) => StemChoice::Index(usize::from(*i)),
            ChannelSpec::Name(n) => StemChoice::Name(n.clone()),
        },
        output: config.output.clone(),
        latency_offset_ms: config.audio.latency_offset_ms,
        channel_map: config.audio.channel_map,
        // 10.7 ms periods, 64 ms of device buffer: room for a busy or
        // virtualised machine's scheduling stalls (cyclictest measured up to
        // 30 ms for a SCHED_FIFO thread on the shared CI VM) without an xrun.
        period_frames: 512,
        periods: 6,
        remote: None,
    }
}

/// Resolves on SIGTERM (systemd stop) or SIGINT (Ctrl-C). The handlers are
/// installed when this is called, not when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            warn!("cannot listen for signals; stop the node with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    }
}
