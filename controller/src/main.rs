//! Entry point of `autoharmonize`: parse, set up logging, read the secret,
//! join the room, then serve the mixer or run one verb (or run the demo,
//! `demo_cmd`). Logic lives in the library; this file maps outcomes to
//! messages and exit codes.

mod demo_cmd;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use autoharmonize_controller::access::{self, Access};
use autoharmonize_controller::action::{self, ActionError};
use autoharmonize_controller::cli::{Cli, RoomArgs, Verb, exit};
use autoharmonize_controller::link::{self, Link, LinkConfig, LinkError};
use autoharmonize_controller::mixer::{self, Connection};
use autoharmonize_controller::pending::Pending;
use autoharmonize_controller::{errln, out, outln, position, report, web};
use autoharmonize_node::logging;
use autoharmonize_node::status::NodeStatus;
use autoharmonize_protocol::Channel;
use autoharmonize_protocol::event::Event;
use clap::Parser as _;
use tracing::{info, warn};

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl std::fmt::Display) -> Failure {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

impl From<LinkError> for Failure {
    fn from(e: LinkError) -> Failure {
        let code = match e {
            LinkError::WrongSecret | LinkError::NoSpeaker(_) | LinkError::NoAnswer => {
                exit::UNREACHABLE
            }
            LinkError::ReadOnly => exit::READ_ONLY,
            LinkError::Secret(_)
            | LinkError::Bind { .. }
            | LinkError::Discovery(_)
            | LinkError::NothingToContact => exit::USAGE,
            LinkError::Refused(autoharmonize_protocol::member::CastError::Invalid(_)) => {
                exit::USAGE
            }
            _ => exit::FAILED,
        };
        Failure::new(code, e)
    }
}

impl From<ActionError> for Failure {
    fn from(e: ActionError) -> Failure {
        Failure::new(exit::USAGE, e)
    }
}

/// `--json` after a verb was applied.
#[derive(serde::Serialize)]
struct Applied {
    /// Always true: a verb that was not applied reports an error instead.
    applied: bool,
    /// The event the verb cast, as the mixer's API takes it.
    event: action::Action,
    /// The room's state once it was applied.
    state: mixer::MixerState,
}

/// `--json` after a failure.
#[derive(serde::Serialize)]
struct ErrorReport<'a> {
    /// What went wrong, for a person.
    error: &'a str,
    /// The exit status it maps to.
    exit: u8,
}

/// Pretty JSON of one of the output types above or of the mixer's state
/// (plain data: serializing cannot fail).
fn to_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v)
        .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    // Verbs print their result; logs below warn would drown it.
    if cli.log.log_level.is_none()
        && std::env::var_os("RUST_LOG").is_none()
        && !matches!(cli.verb, None | Some(Verb::Serve { .. }))
    {
        cli.log.log_level = Some("warn".into());
    }
    match logging::init(&cli.log) {
        Ok(Some(warning)) => warn!("{warning}"),
        Ok(None) => {}
        Err(e) => {
            errln!("error: {e}");
            return ExitCode::from(exit::FAILED);
        }
    }
    match run(&cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            if cli.json {
                outln!(
                    "{}",
                    to_json(&ErrorReport {
                        error: &f.message,
                        exit: f.code
                    })
                );
            } else {
                errln!("error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

fn link_config(room: &RoomArgs) -> Result<LinkConfig, Failure> {
    let from_env = std::env::var_os("AUTOHARMONIZE_SECRET_FILE").map(std::path::PathBuf::from);
    let path = room
        .secret_file
        .as_ref()
        .or(from_env.as_ref())
        .ok_or_else(|| {
            Failure::new(
                exit::USAGE,
                "the room's secret is required: --secret-file PATH (or AUTOHARMONIZE_SECRET_FILE)",
            )
        })?;
    let (secret, world_readable) = autoharmonize_node::config::read_secret(path)
        .map_err(|e| Failure::new(exit::USAGE, format!("the group secret: {e}")))?;
    if world_readable {
        warn!(
            "the group secret {} is readable by every user of this computer",
            path.display()
        );
    }
    Ok(LinkConfig {
        secret: secret.as_bytes().to_vec(),
        bind: room.bind,
        peers: room.peers.clone(),
        mdns: !room.no_mdns,
        mdns_interfaces: room.mdns_interfaces.clone(),
        heartbeat_ms: room.heartbeat_ms,
        give_up: Duration::from_secs(room.wait),
        name: room.name.clone(),
    })
}

fn run(cli: &Cli) -> Result<(), Failure> {
    if let Some(Verb::Demo(args)) = &cli.verb {
        return demo_cmd::run(cli, args);
    }
    let cfg = link_config(&cli.room)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::FAILED, format!("starting the event loop: {e}")))?;
    runtime.block_on(async {
        let link = Link::start(&cfg).await?;
        match &cli.verb {
            None => {
                let listen = "127.0.0.1:8080".parse().expect("a valid address");
                serve(link, listen, shutdown_signal()).await
            }
            Some(Verb::Serve { listen }) => serve(link, *listen, shutdown_signal()).await,
            Some(verb) => {
                let r = one_verb(&link, verb, cli.json).await;
                link.stop().await;
                r
            }
        }
    })
}

/// The channel `text` names in the room: `all`, a number, or one of the
/// loaded track's channel names, which arrive with the catalogue a few
/// rounds after joining (waited for, at most `--wait`, only when needed).
async fn channel(link: &Link, st: &NodeStatus, text: &str) -> Result<Channel, Failure> {
    match action::parse_channel(text, action::channel_names(st)) {
        Err(ActionError::NamesNotKnown(_)) => {
            let st = link.described(link.give_up()).await;
            Ok(action::parse_channel(text, action::channel_names(&st))?)
        }
        r => Ok(r?),
    }
}

async fn one_verb(link: &Link, verb: &Verb, json: bool) -> Result<(), Failure> {
    // What can be checked without the room comes first: a typo in a time
    // or a volume fails at once. Channels are checked in the room, whose
    // loaded track names them.
    let to = match verb {
        Verb::Seek { time, .. } => Some(position::parse(time).map_err(ActionError::from)?),
        _ => None,
    };
    let gain = match verb {
        Verb::Volume { percent, .. } => Some(action::parse_volume(percent)?),
        _ => None,
    };
    link.joined().await?;
    // Names and titles arrive a few rounds after joining: wait for them
    // briefly, so what is printed names things (or says what is not known).
    let st = link.described(link::DESCRIBE_WAIT).await;
    let show =
        |st: &NodeStatus| mixer::state(st, &Pending::default(), link.waited(), link.give_up());
    // The catalogue arrives a few rounds after joining: `tracks` and `load`
    // wait for it (bounded), so a fresh controller does not list nothing.
    let event = match verb {
        Verb::Tracks => {
            let st = link.catalogue(link.give_up()).await;
            let m = show(&st);
            if json {
                outln!("{}", to_json(&m.tracks));
            } else {
                out!("{}", report::tracks(&m, st.catalogue_complete));
            }
            return Ok(());
        }
        Verb::Status | Verb::Members | Verb::Serve { .. } | Verb::Demo(_) => {
            let m = show(&st);
            if json {
                outln!("{}", to_json(&m));
            } else if matches!(verb, Verb::Members) {
                out!("{}", report::members(&m));
            } else {
                out!("{}", report::status(&m));
            }
            return Ok(());
        }
        Verb::Load { track } => {
            let st = link.catalogue(link.give_up()).await;
            action::load_event(&st.tracks, track)?
        }
        Verb::Play { channel: c } => Event::Play {
            channel: channel(link, &st, c).await?,
        },
        Verb::Pause { channel: c } => Event::Pause {
            channel: channel(link, &st, c).await?,
        },
        Verb::Seek { channel: c, .. } => Event::Seek {
            channel: channel(link, &st, c).await?,
            to: to.expect("parsed above for seek"),
        },
        Verb::Volume { channel: c, .. } => Event::Volume {
            channel: channel(link, &st, c).await?,
            gain: gain.expect("parsed above for volume"),
        },
    };
    let st = link.status();
    action::check(&event, st.channels.len(), mixer::loaded_length(&st))?;
    match Connection::of(&st, link.waited(), link.give_up()) {
        Connection::ReadOnly => return Err(LinkError::ReadOnly.into()),
        Connection::NoAnswer => return Err(LinkError::NoAnswer.into()),
        _ => {}
    }
    let st = link.act(event).await?;
    let m = show(&st);
    if json {
        let out = Applied {
            applied: true,
            event: action::Action::of(&event),
            state: m,
        };
        outln!("{}", to_json(&out));
    } else {
        out!("{}", report::applied(&event, &m));
    }
    Ok(())
}

/// The URLs a person can open, for a mixer listening on `listen`.
fn urls(listen: SocketAddr, token: Option<&str>) -> Vec<String> {
    let query = token
        .map(|t| format!("/?token={t}"))
        .unwrap_or_else(|| "/".into());
    let ips: Vec<std::net::IpAddr> = if listen.ip().is_unspecified() {
        if_addrs::get_if_addrs()
            .map(|ifs| {
                ifs.into_iter()
                    .filter(|i| !i.is_loopback() && i.ip().is_ipv4() == listen.is_ipv4())
                    .map(|i| i.ip())
                    .collect()
            })
            .unwrap_or_default()
    } else {
        vec![listen.ip()]
    };
    ips.into_iter()
        .map(|ip| format!("http://{}{query}", SocketAddr::new(ip, listen.port())))
        .collect()
}

/// Serves the mixer on `listen` until `shutdown` resolves.
async fn serve(
    link: Link,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Failure> {
    let access = Access::for_listen(listen)
        .map_err(|e| Failure::new(exit::FAILED, format!("no randomness for the token: {e}")))?;
    let listener = web::bind(listen)
        .await
        .map_err(|e| Failure::new(exit::USAGE, format!("cannot listen on {listen}: {e}")))?;
    let bound = listener.local_addr().unwrap_or(listen);
    let urls = urls(bound, access.token());
    outln!("Autoharmonize mixer:");
    for u in &urls {
        outln!("  {u}");
    }
    if let Some(token) = access.token() {
        outln!("The mixer is open to the network: every request needs the access token {token}.");
        if let Some(qr) = urls.first().and_then(|u| access::qr_text(u)) {
            outln!("Scan to open it on a phone:\n{qr}");
        }
    }
    info!(listen = %bound, token_required = access.token().is_some(), "mixer listening");
    web::serve(listener, link, access, shutdown)
        .await
        .map_err(|e| Failure::new(exit::FAILED, format!("the mixer stopped: {e}")))
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot listen for signals; stop the controller with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}
