//! `autoharmonize demo`, the command: the library's demo pieces
//! ([`autoharmonize_controller::demo`]) strung together with the mixer, in
//! order, saying what happens at each step. It lives in the binary because
//! it prints and maps failures to exit codes.
//!
//! Order matters: signals are taken over before any speaker starts (a
//! Ctrl-C at any moment ends in the same orderly stop), the mixer stops
//! before the speakers (the controller says goodbye to a live room), and
//! the [`Room`] stops every speaker on every way out.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use autoharmonize_controller::cli::{Cli, DemoArgs, exit};
use autoharmonize_controller::demo::room::{self, AudioReport, Room};
use autoharmonize_controller::demo::{self, Layout, NodePlan, Sink, music};
use autoharmonize_controller::link::{Link, LinkConfig, LinkError};
use autoharmonize_controller::{out, outln};
use autoharmonize_protocol::Channel;
use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::transport::Gain;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{Failure, serve};

/// How long the speakers have to answer on their status endpoints.
const START_WITHIN: Duration = Duration::from_secs(15);

/// How long a speaker has to stop after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(5);

/// Ports tried for the mixer when `--listen` is not given.
const MIXER_PORTS: std::ops::RangeInclusive<u16> = 8080..=8099;

/// Runs the demo until Ctrl-C or SIGTERM.
pub(crate) fn run(cli: &Cli, args: &DemoArgs) -> Result<(), Failure> {
    // The room options are global (they come before or after any verb);
    // the demo makes its room itself, so one given here is a mistake.
    let any_port = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    if cli.room.secret_file.is_some()
        || !cli.room.peers.is_empty()
        || !cli.room.mdns_interfaces.is_empty()
        || cli.room.bind != any_port
        || cli.json
    {
        return Err(Failure::new(
            exit::USAGE,
            "the demo makes its own room: --secret-file, --peer, --mdns-interface, --bind \
             and --json do not apply to it",
        ));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::FAILED, format!("starting the event loop: {e}")))?;
    runtime.block_on(demo(args))
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed), taken over
/// for the whole run.
struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "Ctrl-C",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

fn failed(e: impl std::fmt::Display) -> Failure {
    Failure::new(exit::FAILED, e)
}

async fn demo(args: &DemoArgs) -> Result<(), Failure> {
    let mut signals =
        Signals::new().map_err(|e| failed(format!("cannot take over Ctrl-C: {e}")))?;
    let program = room::find_node_binary().map_err(failed)?;
    let layout = Layout {
        dir: demo_dir(args.dir.as_deref())?,
    };
    write_secret(&layout.secret())?;
    outln!("Autoharmonize demo in {}", layout.dir.display());

    out!(
        "Synthesizing a {}-second song in A minor (drums, bass, chords, lead)... ",
        args.seconds
    );
    let started = Instant::now();
    let (track, song) = (layout.track(), music::Song::new(args.seconds));
    let synth = tokio::task::spawn_blocking(move || music::write_track(&track, &song));
    tokio::select! {
        written = synth => written
            .map_err(|e| failed(format!("synthesizing the song: {e}")))?
            .map_err(failed)?,
        s = signals.recv() => {
            outln!("\n{s}: stopped before any speaker started.");
            return Ok(());
        }
    }
    outln!("{:.1} s.", started.elapsed().as_secs_f64());

    let n = usize::from(args.nodes);
    let udp_free = |p| std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
    let tcp_free = |p| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
    let no_ports = || {
        failed(format!(
            "no free ports on 127.0.0.1 from {}",
            args.base_port
        ))
    };
    // One more UDP port than speakers: the controller's, which every
    // speaker lists as a peer.
    let udp = demo::pick_ports(args.base_port, n + 1, &[], udp_free).ok_or_else(no_ports)?;
    let tcp = demo::pick_ports(args.base_port, n, &udp, tcp_free).ok_or_else(no_ports)?;
    let controller = SocketAddr::from((Ipv4Addr::LOCALHOST, udp[n]));
    let has_device = demo::has_playback_device(Path::new("/dev/snd"));
    if args.output == demo::OutputChoice::Auto && !has_device {
        outln!(
            "No sound device here (/dev/snd has no playback device): each speaker writes a WAV file."
        );
    }
    let sinks = (0..n)
        .map(|i| demo::sink_for(&args.output, has_device, &layout.dir, i))
        .collect();
    let plans = demo::plan(&layout, &udp[..n], &tcp, sinks);
    outln!("Starting {n} speakers ({})...", program.display());
    let room = Arc::new(
        Room::start(&program, &plans, |p| {
            demo::node_args(&layout, p, &plans, &[controller])
        })
        .map_err(failed)?,
    );

    let outcome = tokio::select! {
        r = run_room(args, &layout, &plans, &room, controller) => r,
        s = signals.recv() => {
            outln!("\n{s}: stopping the demo...");
            Ok(Ending::Stopped)
        }
    };
    let ending = match outcome {
        Ok(Ending::Serving(link, listen)) => {
            let watcher = tokio::spawn(watch(room.clone()));
            let all_gone = {
                let room = room.clone();
                async move {
                    while room.running() > 0 {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            };
            let shutdown = async move {
                tokio::select! {
                    s = signals.recv() => {
                        outln!("\n{s}: stopping the demo...");
                    }
                    () = all_gone => {
                        outln!("Every speaker has stopped; stopping the demo.");
                    }
                }
            };
            let served = serve(link, listen, shutdown).await;
            watcher.abort();
            served
        }
        Ok(Ending::Stopped) => Ok(()),
        Err(e) => Err(e),
    };
    let stopping = room.clone();
    let stopped = tokio::task::spawn_blocking(move || stopping.stop(STOP_WITHIN))
        .await
        .unwrap_or_default();
    let died = stopped.iter().filter(|s| s.exited_before).count();
    for s in &stopped {
        let how = match (s.exited_before, s.killed, s.status) {
            (true, _, Some(st)) => format!("had stopped by itself ({st})"),
            (_, true, _) => format!("did not stop within {STOP_WITHIN:?}: killed"),
            _ => "stopped".to_owned(),
        };
        outln!("  {} (pid {}) {how}", s.plan.name, s.pid);
    }
    recordings(&plans);
    outln!(
        "Everything of this demo is in {} (song: media/{}, logs: logs/).",
        layout.dir.display(),
        demo::TRACK
    );
    ending?;
    if died > 0 {
        return Err(failed(format!(
            "{died} speaker(s) stopped by themselves during the demo; see their logs in {}",
            layout.logs().display()
        )));
    }
    Ok(())
}

/// How the start-up ended.
enum Ending {
    /// The room is up: serve the mixer with this link on this address.
    Serving(Link, SocketAddr),
    /// A signal came first.
    Stopped,
}

/// Waits for the speakers, joins them, sets the volume (and plays), and
/// says what each speaker does.
async fn run_room(
    args: &DemoArgs,
    layout: &Layout,
    plans: &[NodePlan],
    room: &Room,
    controller: SocketAddr,
) -> Result<Ending, Failure> {
    wait_ready(plans, room).await?;
    let (secret, _) = autoharmonize_node::config::read_secret(&layout.secret())
        .map_err(|e| failed(format!("the demo's secret: {e}")))?;
    let link = Link::start(&LinkConfig {
        secret: secret.as_bytes().to_vec(),
        bind: controller,
        peers: plans.iter().map(|p| p.mesh).collect(),
        mdns: false,
        mdns_interfaces: Vec::new(),
        heartbeat_ms: 100,
        give_up: Duration::from_secs(10),
        name: Some("demo mixer".into()),
    })
    .await
    .map_err(failed)?;
    link.joined().await.map_err(failed)?;
    settle(&link, plans.len()).await;
    let gain = Gain::new(args.volume).unwrap_or(Gain::MAX);
    let volume = Event::Volume {
        channel: Channel::All,
        gain,
    };
    act(&link, volume)
        .await
        .map_err(|e| failed(format!("setting the volume: {e}")))?;
    if !args.paused {
        let play = Event::Play {
            channel: Channel::All,
        };
        act(&link, play)
            .await
            .map_err(|e| failed(format!("starting to play: {e}")))?;
    }
    describe(plans, room).await;

    let exe = std::env::current_exe()
        .map_or_else(|_| "autoharmonize".into(), |p| p.display().to_string());
    let peer = plans
        .first()
        .map(|p| p.mesh.to_string())
        .unwrap_or_default();
    if args.paused {
        outln!("The room is paused at 0:00: press play on All in the mixer.");
    } else {
        outln!("The room is playing at {}% volume.", args.volume);
    }
    outln!("What to try:");
    outln!("  - pause or turn down one speaker's row: the others play on, in step");
    outln!("  - seek All: every speaker jumps at the same instant");
    outln!("  - kill a speaker (kill PID, from the list above): the room plays on without it");
    outln!("  - the command line, from another terminal:");
    outln!(
        "      {exe} --secret-file {} --no-mdns --peer {peer} status",
        layout.secret().display()
    );
    outln!("Ctrl-C stops the mixer and every speaker.");
    Ok(Ending::Serving(link, mixer_address(args.listen)))
}

/// Waits (at most [`START_WITHIN`]) until the controller sees all
/// `speakers` in a writable room: speakers that start together form the
/// room over a few rounds, and a vote cast meanwhile may meet a read-only
/// room. A speaker that never joins is reported by [`describe`], so this
/// only waits.
async fn settle(link: &Link, speakers: usize) {
    let deadline = Instant::now() + START_WITHIN;
    let mut status = link.subscribe();
    while Instant::now() < deadline {
        let st = link.status();
        let in_view = st.view.iter().filter(|m| m.role == "speaker").count();
        if st.writable && in_view >= speakers {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), status.changed()).await;
    }
}

/// [`Link::act`], tried again (three times, half a second apart) while
/// the room is still settling: read-only, or the vote lost in a change.
async fn act(link: &Link, event: Event) -> Result<(), LinkError> {
    let mut tries = 0;
    loop {
        match link.act(event).await {
            Ok(_) => return Ok(()),
            Err(LinkError::ReadOnly | LinkError::Dropped | LinkError::Timeout(_)) if tries < 3 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits until every speaker's status endpoint answers; a speaker that
/// exits first ends the demo with its log's last lines.
async fn wait_ready(plans: &[NodePlan], room: &Room) -> Result<(), Failure> {
    let deadline = Instant::now() + START_WITHIN;
    loop {
        if let Some(gone) = room.exited().into_iter().next() {
            let tail = room::log_tail(&gone.plan.log, 8).join("\n    ");
            return Err(failed(format!(
                "speaker {} stopped at start ({}); the end of {}:\n    {tail}",
                gone.plan.name,
                gone.status,
                gone.plan.log.display()
            )));
        }
        let mut all = true;
        for p in plans {
            all &= room::fetch_status(p.status).await.is_ok();
        }
        if all {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(failed(format!(
                "the speakers did not answer within {START_WITHIN:?}; see their logs in {}",
                plans
                    .first()
                    .and_then(|p| p.log.parent())
                    .map_or_else(String::new, |d| d.display().to_string())
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints each speaker's stem and output from its own status, warning
/// about any that makes no sound.
async fn describe(plans: &[NodePlan], room: &Room) {
    outln!("Speakers (each its own process, on 127.0.0.1):");
    let pids = room.pids();
    let mut silent = Vec::new();
    for (p, pid) in plans.iter().zip(pids) {
        let report = match room::fetch_status(p.status).await {
            Ok(st) => AudioReport::of(&st),
            Err(e) => {
                outln!("  {:<14} pid {pid:<7} status unavailable: {e}", p.name);
                continue;
            }
        };
        let stems = if report.stems.is_empty() {
            "nothing".to_owned()
        } else {
            report.stems.join("+")
        };
        let to = match &p.sink {
            Sink::Wav(path) => format!("writes {}", path.display()),
            other => format!("plays on {other}"),
        };
        outln!("  {:<14} pid {pid:<7} {stems:<7} {to}", p.name);
        if !report.ok() {
            silent.push((p, report));
        }
    }
    for (p, r) in silent {
        let why = match (&r.output, r.running) {
            // The node says why in its log: "audio disabled: <cause>".
            (None, _) => room::log_tail(&p.log, 200)
                .iter()
                .rev()
                .find_map(|l| {
                    l.split_once("audio disabled: ")
                        .map(|(_, why)| why.to_owned())
                })
                .unwrap_or_else(|| "its output did not open".to_owned()),
            (Some(o), false) => format!("its output {o} is not running"),
            (Some(_), true) => r.problems.join("; "),
        };
        outln!(
            "WARNING: {} makes no sound: {why} (log: {})",
            p.name,
            p.log.display()
        );
    }
}

/// Reports every speaker that stops by itself while the demo runs.
async fn watch(room: Arc<Room>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for gone in room.exited() {
            outln!(
                "Speaker {} stopped by itself ({}); the others play on. Its log: {}",
                gone.plan.name,
                gone.status,
                gone.plan.log.display()
            );
            for line in room::log_tail(&gone.plan.log, 5) {
                outln!("    {line}");
            }
        }
    }
}

/// `--listen`, else the first free port of [`MIXER_PORTS`], else any.
fn mixer_address(listen: Option<SocketAddr>) -> SocketAddr {
    listen.unwrap_or_else(|| {
        let free = |p| std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok();
        let port = MIXER_PORTS.clone().find(|&p| free(p)).unwrap_or(0);
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    })
}

/// Says where the WAV files are and how much each holds.
fn recordings(plans: &[NodePlan]) {
    let wavs: Vec<&PathBuf> = plans
        .iter()
        .filter_map(|p| match &p.sink {
            Sink::Wav(path) => Some(path),
            _ => None,
        })
        .collect();
    if wavs.is_empty() {
        return;
    }
    outln!("What the speakers played (WAV, 48 kHz stereo):");
    for path in wavs {
        let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
        let what = match hound::WavReader::open(path) {
            // A speaker killed before closing its file leaves the header's
            // length at zero; the samples are there all the same.
            Ok(r) if r.duration() == 0 && bytes > 1024 => {
                format!("{bytes} bytes, not closed: its speaker was killed")
            }
            Ok(r) => {
                let spec = r.spec();
                format!(
                    "{:.1} s",
                    f64::from(r.duration()) / f64::from(spec.sample_rate.max(1))
                )
            }
            Err(e) => format!("unreadable: {e}"),
        };
        outln!("  {} ({what})", path.display());
    }
}

/// The demo folder: `--dir` (created), else a new temporary one, kept.
fn demo_dir(dir: Option<&Path>) -> Result<PathBuf, Failure> {
    match dir {
        Some(d) => std::fs::create_dir_all(d)
            .and_then(|()| d.canonicalize())
            .map_err(|e| {
                Failure::new(exit::USAGE, format!("the demo folder {}: {e}", d.display()))
            }),
        None => tempfile::Builder::new()
            .prefix("autoharmonize-demo-")
            .tempdir()
            .map(tempfile::TempDir::keep)
            .map_err(|e| failed(format!("creating a temporary folder: {e}"))),
    }
}

/// Creates the room's secret (mode 600) unless the folder has one already.
fn write_secret(path: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let secret =
        demo::new_secret().map_err(|e| failed(format!("no randomness for the secret: {e}")))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match file {
        Ok(mut f) => f
            .write_all(format!("{secret}\n").as_bytes())
            .map_err(|e| failed(format!("writing {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(failed(format!("creating {}: {e}", path.display()))),
    }
}
