//! Discovery over real mDNS between processes on a private network of
//! namespaces (`autoharmonize_tests::netns::Lab`), never on the machine's
//! own network:
//! - three speakers each report the other two, with the right member id,
//!   address and port, within 2 s of the last start;
//! - after one is SIGKILLed (no goodbye) the others report nothing, and its
//!   restart on a new port is reported with the new address;
//! - a peer announcing another protocol version is never reported, and is
//!   warned about once however often it re-announces;
//! - speakers on one host that name `lo` (demos) find each other there;
//! - a standard mDNS browser (`avahi-browse`, with its own avahi-daemon and
//!   D-Bus inside the namespace) sees the speakers and their TXT `id`.
//!
//! The speakers are this test binary itself, re-run inside a host's
//! namespace on the ignored `discovery_probe` test (as `netns_lab.rs` does),
//! so nothing but `ip` is needed but for the avahi test.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use autoharmonize_node::discovery::{Discovery, DiscoveryConfig, PeerEvent, SERVICE_TYPE};
use autoharmonize_protocol::MemberId;
use autoharmonize_protocol::wire::VERSION;
use autoharmonize_tests::netns::{self, Lab};

const PROBE_ENV: &str = "AH_DISCOVERY_PROBE";
/// Discovery must report every peer within this long of the last start.
const FIND_WITHIN: Duration = Duration::from_secs(2);
/// Bound on everything else the test waits for.
const PATIENCE: Duration = Duration::from_secs(10);

/// Distinct in the first 8 hex digits, as random ids are, so instance
/// names differ as they would in a room.
fn id(host: usize) -> MemberId {
    MemberId(((host as u64 + 1) << 56) | 0x5eed)
}

#[test]
fn speakers_find_each_other_and_a_crash_reports_nothing() {
    const TEST: &str = "speakers_find_each_other_and_a_crash_reports_nothing";
    if !netns::require_root_or_skip(TEST) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new("disc", 3).expect("lab builds");
    let port = |host: usize| 7700 + host as u16;

    let mut probes: Vec<Probe> = (0..3)
        .map(|h| Probe::speaker(&mut lab, h, id(h), port(h), dir.path()))
        .collect();
    let last_start = Instant::now();
    for (h, probe) in probes.iter_mut().enumerate() {
        let others: Vec<usize> = (0..3).filter(|o| *o != h).collect();
        for &o in &others {
            let want = vec![SocketAddr::new(lab.addr(o).expect("host").into(), port(o))];
            let at = probe.expect_seen(id(o), &want, last_start + PATIENCE);
            let took = at.saturating_duration_since(last_start);
            eprintln!("host {h} found host {o} {took:?} after the last start");
            assert!(
                took <= FIND_WITHIN,
                "host {h} found host {o} after {took:?}"
            );
        }
    }

    // A crash sends no goodbye: the survivors must stay silent (no removal,
    // no flapping) while its records sit in their caches.
    probes[2].process().kill().expect("SIGKILL host 2");
    let quiet_until = Instant::now() + Duration::from_secs(3);
    for probe in &mut probes[..2] {
        assert_eq!(probe.lines_until(quiet_until), Vec::<String>::new());
        assert!(
            probe.process().try_wait().expect("status").is_none(),
            "alive"
        );
    }

    // Restarted with the same id on another port: reported anew.
    let new_port = 7710;
    probes[2] = Probe::speaker(&mut lab, 2, id(2), new_port, dir.path());
    let restart = Instant::now();
    let want = vec![SocketAddr::new(lab.addr(2).expect("host").into(), new_port)];
    for (h, probe) in probes[..2].iter_mut().enumerate() {
        let took = probe
            .expect_seen(id(2), &want, restart + PATIENCE)
            .saturating_duration_since(restart);
        eprintln!("host {h} saw the restart {took:?} after it");
        assert!(
            took <= FIND_WITHIN,
            "host {h} saw the restart after {took:?}"
        );
    }
    for o in 0..2 {
        let want = vec![SocketAddr::new(lab.addr(o).expect("host").into(), port(o))];
        probes[2].expect_seen(id(o), &want, restart + PATIENCE);
    }

    // Clean shutdown: goodbye sent, daemon stopped, bounded.
    for probe in probes {
        let (lines, stderr) = probe.stop(Instant::now() + PATIENCE);
        assert!(
            lines.iter().any(|l| l == "stopped ok"),
            "{lines:?}\n{stderr}"
        );
    }
}

#[test]
fn peer_with_another_protocol_version_is_ignored() {
    const TEST: &str = "peer_with_another_protocol_version_is_ignored";
    if !netns::require_root_or_skip(TEST) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new("discv", 3).expect("lab builds");
    let foreign_version = VERSION.wrapping_add(98);
    let mut speaker = Probe::speaker(&mut lab, 0, id(0), 7700, dir.path());
    let mut foreign = Probe::spawn(
        &mut lab,
        1,
        &format!("foreign {} 7701 {foreign_version}", id(1)),
        dir.path(),
    );
    let other = Probe::speaker(&mut lab, 2, id(2), 7702, dir.path());

    // The foreign peer re-announces on a new port several times; meanwhile
    // a peer of our version is found, so the network demonstrably works.
    let want = vec![SocketAddr::new(lab.addr(2).expect("host").into(), 7702)];
    speaker.expect_seen(id(2), &want, Instant::now() + PATIENCE);
    let announced = foreign.wait_for("announced 5 times", Instant::now() + PATIENCE);
    assert!(announced.is_some(), "the foreign peer re-announced");
    let later = speaker.lines_until(Instant::now() + Duration::from_secs(1));
    assert_eq!(later, Vec::<String>::new(), "nothing reported after");

    let (lines, stderr) = speaker.stop(Instant::now() + PATIENCE);
    assert!(
        !lines.iter().any(|l| l.contains(&id(1).to_string())),
        "the foreign peer is never reported: {lines:?}"
    );
    let warning = format!(
        "peer {} speaks protocol v{foreign_version}, we speak v{VERSION}",
        id(1)
    );
    assert_eq!(stderr.matches(&warning).count(), 1, "warned once: {stderr}");
    other.stop(Instant::now() + PATIENCE);
    foreign.stop(Instant::now() + PATIENCE);
}

/// Demos run several speakers on one computer: naming `lo` makes them find
/// each other there, at 127.0.0.1 and their own ports.
#[test]
fn speakers_on_one_host_find_each_other_over_loopback() {
    const TEST: &str = "speakers_on_one_host_find_each_other_over_loopback";
    if !netns::require_root_or_skip(TEST) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new("discl", 1).expect("lab builds");
    let mut probes: Vec<Probe> = (0..2)
        .map(|i| {
            let role = format!("speaker {} {} lo", id(i), 7700 + i);
            Probe::spawn(&mut lab, 0, &role, dir.path())
        })
        .collect();
    for (i, probe) in probes.iter_mut().enumerate() {
        let o = 1 - i;
        let want = vec![SocketAddr::from(([127, 0, 0, 1], 7700 + o as u16))];
        probe.expect_seen(id(o), &want, Instant::now() + PATIENCE);
    }
    for probe in probes {
        let (lines, stderr) = probe.stop(Instant::now() + PATIENCE);
        assert!(
            lines.iter().any(|l| l == "stopped ok"),
            "{lines:?}\n{stderr}"
        );
    }
}

#[test]
fn avahi_browse_sees_speakers_and_their_ids() {
    const TEST: &str = "avahi_browse_sees_speakers_and_their_ids";
    if !netns::require_root_or_skip(TEST)
        || !netns::require_command_or_skip(TEST, "avahi-browse", "--version")
        || !netns::require_command_or_skip(TEST, "avahi-daemon", "--version")
        || !netns::require_command_or_skip(TEST, "dbus-daemon", "--version")
    {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let mut lab = Lab::new("disca", 3).expect("lab builds");
    let (bus, _daemons) = start_avahi(&mut lab, 0, dir.path());
    let _speakers: Vec<Probe> = (1..3)
        .map(|h| Probe::speaker(&mut lab, h, id(h), 7700 + h as u16, dir.path()))
        .collect();

    let deadline = Instant::now() + PATIENCE;
    let mut last = String::new();
    while Instant::now() < deadline {
        let mut browse = Command::new("timeout");
        browse
            .args(["5", "avahi-browse", "-rpt", "_autoharmonize._udp"])
            .env("DBUS_SYSTEM_BUS_ADDRESS", &bus);
        let out = lab.output(0, browse).expect("avahi-browse runs");
        last = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let found = (1..3)
            .filter(|&h| {
                // =;eth0;IPv4;NAME;_autoharmonize._udp;local;HOST;ADDR;PORT;"ch=all" "v=1" "id=..."
                last.lines().any(|line| {
                    let f: Vec<&str> = line.split(';').collect();
                    f.len() >= 10
                        && f[0] == "="
                        && f[7] == lab.addr(h).expect("host").to_string()
                        && f[8] == (7700 + h).to_string()
                        && f[9].contains(&format!("\"id={}\"", id(h)))
                        && f[9].contains(&format!("\"v={VERSION}\""))
                })
            })
            .count();
        if found == 2 {
            eprintln!("avahi-browse output:\n{last}");
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("avahi-browse did not see both speakers within {PATIENCE:?}; last output:\n{last}");
}

/// Starts a private D-Bus system bus and an avahi-daemon on it inside
/// `host`, and returns the bus address for `avahi-browse`. Both are killed
/// with the lab. The daemon gets a private `/run` (inside the mount
/// namespace `ip netns exec` creates), so its pid file never meets a
/// machine-wide avahi.
fn start_avahi(lab: &mut Lab, host: usize, dir: &Path) -> (String, Reaped) {
    let socket = dir.join("bus");
    let bus = format!("unix:path={}", socket.display());
    let bus_conf = dir.join("bus.conf");
    std::fs::write(
        &bus_conf,
        format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>{bus}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#
        ),
    )
    .expect("bus config");
    let mut dbus = Command::new("dbus-daemon");
    dbus.arg(format!("--config-file={}", bus_conf.display()))
        .args(["--nofork", "--nopidfile", "--nosyslog"]);
    // Its log goes to a file: as root without CAP_SYS_RESOURCE it always
    // complains that it cannot raise its fd limit, which is harmless.
    let dbus_log = dir.join("dbus.log");
    let log = std::fs::File::create(&dbus_log).expect("dbus log");
    let dbus = lab
        .spawn_with_stdio(host, dbus, Stdio::null(), Stdio::from(log))
        .expect("dbus-daemon starts");
    let deadline = Instant::now() + PATIENCE;
    while !socket.exists() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(&dbus_log).unwrap_or_default();
            panic!("dbus-daemon did not create {}: {log}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let avahi_conf = dir.join("avahi-daemon.conf");
    std::fs::write(
        &avahi_conf,
        "[server]\nhost-name=ah-avahi-browser\nuse-ipv4=yes\nuse-ipv6=no\n\
         allow-interfaces=eth0\nenable-dbus=yes\n\
         [wide-area]\nenable-wide-area=no\n\
         [publish]\npublish-hinfo=no\npublish-workstation=no\n",
    )
    .expect("avahi config");
    let mut avahi = Command::new("sh");
    avahi
        .args([
            "-c",
            "mount -t tmpfs tmpfs /run && exec avahi-daemon --no-drop-root --no-chroot \
             --no-rlimits --no-proc-title -f \"$1\"",
            "sh",
        ])
        .arg(&avahi_conf)
        .env("DBUS_SYSTEM_BUS_ADDRESS", &bus);
    let mut avahi = lab
        .spawn_with_stdio(host, avahi, Stdio::null(), Stdio::piped())
        .expect("avahi-daemon starts");
    let stderr = avahi.stderr.take().expect("piped stderr");
    let daemons = Reaped(vec![dbus, avahi]);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let ready = line.contains("Server startup complete");
            if tx.send(line).is_err() || ready {
                return;
            }
        }
    });
    let deadline = Instant::now() + PATIENCE;
    let mut log = Vec::new();
    while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if line.contains("Server startup complete") {
            return (bus, daemons);
        }
        log.push(line);
    }
    panic!("avahi-daemon did not start: {}", log.join("\n"));
}

/// Child processes killed and reaped when dropped, so none is left a zombie
/// (the lab would kill them too, but only a parent can reap).
struct Reaped(Vec<Child>);

impl Drop for Reaped {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A probe process and its output: stdout lines after "probe: ", stamped on
/// arrival, and its whole stderr (the node's logs) once it exits.
struct Probe {
    child: Reaped,
    lines: mpsc::Receiver<(Instant, String)>,
    /// Every line received so far.
    seen: Vec<(Instant, String)>,
    stderr: Option<JoinHandle<String>>,
    stop_file: PathBuf,
}

impl Probe {
    fn speaker(lab: &mut Lab, host: usize, id: MemberId, port: u16, dir: &Path) -> Probe {
        Probe::spawn(lab, host, &format!("speaker {id} {port} ,"), dir)
    }

    fn spawn(lab: &mut Lab, host: usize, role: &str, dir: &Path) -> Probe {
        // Unique per spawn, so a restarted probe does not see its
        // predecessor's stop request.
        static SPAWNED: AtomicUsize = AtomicUsize::new(0);
        let stop_file = dir.join(format!("stop-{}", SPAWNED.fetch_add(1, Ordering::Relaxed)));
        let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
        cmd.args([
            "--exact",
            "discovery_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(PROBE_ENV, format!("{role} {}", stop_file.display()))
        .env_remove("RUST_LOG");
        let mut child = lab.spawn(host, cmd).expect("probe starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test discovery_probe ... " first.
                if let Some(at) = line.find("probe: ") {
                    let text = line[at + "probe: ".len()..].to_owned();
                    if tx.send((Instant::now(), text)).is_err() {
                        return;
                    }
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Probe {
            child: Reaped(vec![child]),
            lines,
            seen: Vec::new(),
            stderr: Some(stderr),
            stop_file,
        }
    }

    /// Receives lines until `until`, or until one satisfies `stop`; returns
    /// the lines received by this call.
    fn receive(&mut self, until: Instant, stop: impl Fn(&str) -> bool) -> Vec<String> {
        let mut got = Vec::new();
        while let Ok((at, line)) = self
            .lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            self.seen.push((at, line.clone()));
            let done = stop(&line);
            got.push(line);
            if done {
                break;
            }
        }
        got
    }

    /// When the probe printed `want`, waiting for it up to `deadline`.
    fn wait_for(&mut self, want: &str, deadline: Instant) -> Option<Instant> {
        if !self.seen.iter().any(|(_, l)| l == want) {
            self.receive(deadline, |l| l == want);
        }
        self.seen.iter().find(|(_, l)| l == want).map(|(at, _)| *at)
    }

    /// When the probe reported peer `id` at exactly `addrs` (our version).
    fn expect_seen(&mut self, id: MemberId, addrs: &[SocketAddr], deadline: Instant) -> Instant {
        let want = format!("seen {id} v{VERSION} {}", join(addrs));
        match self.wait_for(&want, deadline) {
            Some(at) => at,
            None => panic!("no {want:?} before the deadline; {}", self.describe()),
        }
    }

    /// What the probe printed, and if it ended, how and its logs.
    fn describe(&mut self) -> String {
        let lines: Vec<String> = self.seen.iter().map(|(_, l)| l.clone()).collect();
        match self.process().try_wait() {
            Ok(Some(status)) => {
                let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default());
                format!(
                    "printed {lines:?}, exited with {status}, stderr:\n{}",
                    stderr.unwrap_or_default()
                )
            }
            _ => format!("printed {lines:?}, still running"),
        }
    }

    /// Every line that arrives before `until`.
    fn lines_until(&mut self, until: Instant) -> Vec<String> {
        self.receive(until, |_| false)
    }

    /// Asks the probe to shut discovery down and exit; returns every line it
    /// printed and its stderr.
    fn stop(mut self, deadline: Instant) -> (Vec<String>, String) {
        std::fs::write(&self.stop_file, "").expect("stop file");
        loop {
            if let Some(status) = self.process().try_wait().expect("status") {
                assert!(status.success(), "probe exited with {status}");
                break;
            }
            assert!(Instant::now() < deadline, "probe did not stop in time");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The pipe is closed: this drains what is left and returns.
        self.lines_until(deadline);
        let lines = self.seen.iter().map(|(_, l)| l.clone()).collect();
        let stderr = self.stderr.take().expect("stopped once");
        (lines, stderr.join().expect("stderr reader"))
    }

    fn process(&mut self) -> &mut Child {
        &mut self.child.0[0]
    }
}

fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Helper run inside a namespace by the tests above; does nothing otherwise.
/// `AH_DISCOVERY_PROBE` is one of
/// - `speaker ID PORT IFACES STOP_FILE`: runs [`Discovery`] for speaker `ID`
///   with mesh port `PORT` on the comma-separated `IFACES` (`,` for every
///   interface but loopback), and prints each
///   [`PeerEvent`] as `probe: seen ID vVERSION ADDR,ADDR` until
///   `STOP_FILE` exists, then `probe: stopped ok` after a clean shutdown;
/// - `foreign ID PORT VERSION STOP_FILE`: announces a speaker of protocol
///   version `VERSION` with plain mdns-sd, re-announcing on a new port every
///   300 ms, and prints `probe: announced 5 times` after the fifth.
#[test]
#[ignore = "helper: run inside a namespace by the tests of this file"]
fn discovery_probe() {
    let Ok(role) = std::env::var(PROBE_ENV) else {
        return;
    };
    let args: Vec<&str> = role.split(' ').collect();
    match args.as_slice() {
        ["speaker", id, port, ifaces, stop] => run_speaker(
            parse_id(id),
            port_arg(port),
            ifaces
                .split(',')
                .filter(|i| !i.is_empty())
                .map(str::to_owned)
                .collect(),
            Path::new(stop),
        ),
        ["foreign", id, port, version, stop] => run_foreign(
            parse_id(id),
            port_arg(port),
            version.parse().expect("version"),
            Path::new(stop),
        ),
        _ => panic!("unknown probe role {role:?}"),
    }
}

fn parse_id(text: &str) -> MemberId {
    MemberId(u64::from_str_radix(text, 16).expect("hex member id"))
}

fn port_arg(text: &str) -> u16 {
    text.parse().expect("port")
}

fn run_speaker(id: MemberId, port: u16, interfaces: Vec<String>, stop: &Path) {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("warn,autoharmonize_node=debug")
        .init();
    let config = DiscoveryConfig {
        name: format!("probe {id}"),
        id,
        channel: "all".into(),
        port,
        interfaces,
        ipv6: false,
    };
    let discovery = Discovery::start(&config).expect("discovery starts");
    println!("probe: ready {}", discovery.fullname());
    // The mesh awaits events on tokio; do the same, with a timeout that
    // cancels the wait every 50 ms (next_event is cancel-safe).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime");
    while !stop.exists() {
        let next =
            async { tokio::time::timeout(Duration::from_millis(50), discovery.next_event()).await };
        if let Ok(Some(PeerEvent::Seen { id, addrs, version })) = runtime.block_on(next) {
            println!("probe: seen {id} v{version} {}", join(&addrs));
        }
    }
    match discovery.shutdown() {
        Ok(()) => println!("probe: stopped ok"),
        Err(e) => println!("probe: stop failed: {e}"),
    }
}

fn run_foreign(id: MemberId, port: u16, version: u8, stop: &Path) {
    let daemon = mdns_sd::ServiceDaemon::new().expect("mdns daemon");
    daemon
        .disable_interface(vec![
            mdns_sd::IfKind::LoopbackV4,
            mdns_sd::IfKind::LoopbackV6,
            mdns_sd::IfKind::IPv6,
        ])
        .expect("interfaces");
    let mut announced: u16 = 0;
    while !stop.exists() {
        let properties = [
            ("id", id.to_string()),
            ("v", version.to_string()),
            ("ch", "all".to_owned()),
        ];
        let info = mdns_sd::ServiceInfo::new(
            SERVICE_TYPE,
            &format!("foreign-{id}"),
            &format!("ah-{id}.local."),
            (),
            port + announced,
            &properties[..],
        )
        .expect("service info")
        .enable_addr_auto();
        daemon.register(info).expect("register");
        announced += 1;
        if announced == 5 {
            println!("probe: announced 5 times");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = daemon.shutdown();
}
