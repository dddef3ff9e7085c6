//! A room of real `autoharmonize-node` processes on loopback (static peers,
//! no mDNS: multicast only runs in test-made namespaces), and helpers to run
//! the controller against it.
//!
//! Invariant: every process a [`LoopRoom`] or [`Mixer`] starts is killed by
//! its pid when it drops, and its temporary directory is removed.

#![allow(dead_code, unreachable_pub)]

pub mod webdriver;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where cargo puts binaries for this build (`target/<profile>`): an
/// integration test runs from `target/<profile>/deps`, an example from
/// `target/<profile>/examples`.
fn profile_dir() -> PathBuf {
    std::env::current_exe()
        .expect("own path")
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/<kind>")
        .to_path_buf()
}

/// `cargo build`s one binary of this workspace for the current profile
/// (a no-op when fresh) and returns its path: `cargo test -p` and
/// `cargo run --example` build no other package's binaries.
fn build_bin(package: &str, bin: &str) -> PathBuf {
    let dir = profile_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    if dir.ends_with("release") {
        cmd.args(["build", "--release", "-p", package, "--bin", bin]);
    } else {
        // Exactly the units `cargo test --workspace` builds (features
        // unified with the dev-dependencies'), so after it this is a
        // no-op: `-p` alone resolves features for one package and rebuilt
        // some 40 crates (3 minutes of a fresh CI run).
        cmd.args(["build", "--workspace", "--bins", "--tests"]);
    }
    eprintln!("building {bin}: {cmd:?}");
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building {bin} failed");
    dir.join(bin)
}

/// The controller binary under test.
pub fn controller_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match option_env!("CARGO_BIN_EXE_autoharmonize") {
        Some(p) => PathBuf::from(p),
        None => build_bin("autoharmonize-controller", "autoharmonize"),
    })
    .clone()
}

/// The node binary, built for the controller tests.
pub fn node_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("autoharmonize-node", "autoharmonize-node"))
        .clone()
}

/// A loopback port free for both UDP and TCP, never handed out twice by
/// this process. A node binds its mesh port for UDP and its chunk exchange
/// on the same number for TCP, and status ports are TCP: checking one
/// protocol only let a mesh port collide with a status port chosen a
/// moment before ("binding the chunk exchange …: Address already in use").
pub fn free_udp_port() -> u16 {
    free_port_pair()
}

/// A free TCP port on loopback (also free for UDP; see [`free_udp_port`]).
pub fn free_tcp_port() -> u16 {
    free_port_pair()
}

fn free_port_pair() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    for _ in 0..1_000 {
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && GIVEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(port)
        {
            return port;
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// `GET path` on loopback `port`; the body if the answer is 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http(port, "GET", path, None, &[]).and_then(|(code, body)| (code == 200).then_some(body))
}

/// One HTTP/1.1 request (5 s to answer); the status code and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    http_within(Duration::from_secs(5), port, method, path, body, headers)
}

/// One HTTP/1.1 request, waiting up to `timeout` for the answer.
pub fn http_within(
    timeout: Duration,
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    // Read the head, then exactly the body: some servers (chromedriver)
    // keep the connection open despite `Connection: close`.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let code = head.split(' ').nth(1)?.parse().ok()?;
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &raw[head_end..];
        let done = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let body = if chunked { dechunk(&body) } else { body };
    Some((code, body))
}

/// A request whose answer has no body to wait for (a WebSocket upgrade):
/// the status code and the head.
pub fn http_head_only(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 1024];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&raw).into_owned();
    let code = head.split(' ').nth(1)?.parse().ok()?;
    Some((code, head))
}

/// `GET path` with another `Host` header than the address connected to.
pub fn http_as_host(port: u16, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let code = resp.split(' ').nth(1)?.parse().ok()?;
    Some((code, resp))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Node processes on loopback, each with its own mesh and status port.
pub struct LoopRoom {
    pub dir: tempfile::TempDir,
    /// A port every node lists as a static peer, so a controller bound to
    /// it is known to the nodes before it is authenticated (as mDNS would
    /// make it known): the nodes' beacons then reach even a controller
    /// with the wrong secret, which is how it can tell.
    pub controller_port: u16,
    pub mesh_ports: Vec<u16>,
    pub status_ports: Vec<u16>,
    children: Vec<Option<Child>>,
    /// Node `i`'s own media folder (its library), if it was given one;
    /// otherwise every node uses the room's folder, which holds no track.
    media: Vec<Option<PathBuf>>,
}

/// A track for a node's library: its folder name, its title and its stems
/// as (name, seconds, tone frequency in Hz).
#[derive(Clone, Debug)]
pub struct TrackSpec {
    pub folder: &'static str,
    pub title: &'static str,
    pub stems: Vec<(&'static str, u32, u32)>,
}

/// Writes a 48 kHz mono 16-bit WAV of a sine tone.
pub fn write_tone(path: &Path, seconds: u32, hz: u32) {
    let frames = 48_000 * seconds;
    let mut b = Vec::with_capacity(44 + 2 * frames as usize);
    let data = frames * 2;
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    for v in [1u16, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&48_000u32.to_le_bytes());
    b.extend_from_slice(&96_000u32.to_le_bytes());
    for v in [2u16, 16] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data.to_le_bytes());
    for i in 0..frames {
        let x = (f64::from(i) * f64::from(hz) * std::f64::consts::TAU / 48_000.0).sin();
        b.extend_from_slice(&((x * 8_000.0) as i16).to_le_bytes());
    }
    std::fs::write(path, b).expect("tone written");
}

impl LoopRoom {
    /// Starts `n` nodes, node `i` playing stem `i`, every one listing the
    /// others as static peers.
    pub fn start(n: usize) -> LoopRoom {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(
            dir.path().join("secret"),
            "correct horse battery staple 42\n",
        )
        .expect("secret");
        std::fs::write(
            dir.path().join("wrong-secret"),
            "this is not the room's secret\n",
        )
        .expect("secret");
        for f in ["secret", "wrong-secret"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }
        let mesh_ports: Vec<u16> = (0..n).map(|_| free_udp_port()).collect();
        let status_ports: Vec<u16> = (0..n).map(|_| free_tcp_port()).collect();
        let mut room = LoopRoom {
            dir,
            controller_port: free_udp_port(),
            mesh_ports,
            status_ports,
            children: (0..n).map(|_| None).collect(),
            media: (0..n).map(|_| None).collect(),
        };
        for i in 0..n {
            room.start_node(i);
        }
        room
    }

    /// Starts one node per library, node `i` holding the tracks of
    /// `libraries[i]` in its own media folder, playing stem `i` to the
    /// null output (paced like a device).
    pub fn start_with_libraries(libraries: &[Vec<TrackSpec>]) -> LoopRoom {
        let mut room = LoopRoom::start(0);
        let n = libraries.len();
        room.mesh_ports = (0..n).map(|_| free_udp_port()).collect();
        room.status_ports = (0..n).map(|_| free_tcp_port()).collect();
        room.children = (0..n).map(|_| None).collect();
        room.media = (0..n).map(|_| None).collect();
        for (i, lib) in libraries.iter().enumerate() {
            let media = room.dir.path().join(format!("media{i}"));
            for t in lib {
                let folder = media.join(t.folder);
                std::fs::create_dir_all(&folder).expect("track folder");
                let names: Vec<String> = t.stems.iter().map(|s| format!("{:?}", s.0)).collect();
                std::fs::write(
                    folder.join("track.toml"),
                    format!("title = {:?}\nstems = [{}]\n", t.title, names.join(", ")),
                )
                .expect("track.toml");
                for &(name, seconds, hz) in &t.stems {
                    write_tone(&folder.join(format!("{name}.wav")), seconds, hz);
                }
            }
            room.media[i] = Some(media);
        }
        for i in 0..n {
            room.start_node(i);
        }
        room
    }

    fn start_node(&mut self, i: usize) {
        let d = self.dir.path();
        // Appended to, so a restarted node's log follows its earlier runs.
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(d.join(format!("node{i}.log")))
            .expect("log file");
        let mut cmd = Command::new(node_bin());
        cmd.arg("--secret-file")
            .arg(d.join("secret"))
            .arg("--state-dir")
            .arg(d.join(format!("state{i}")))
            .arg("--media-dir")
            .arg(
                self.media
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| d.to_path_buf()),
            )
            .arg("--name")
            .arg(format!("speaker{i}"))
            .arg("--channel")
            .arg(i.to_string())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.mesh_ports[i]))
            .arg("--status-listen")
            .arg(format!("127.0.0.1:{}", self.status_ports[i]))
            .arg("--no-mdns")
            .arg("--log-level")
            .arg("info");
        if self.media.get(i).is_some_and(Option::is_some) {
            cmd.arg("--output").arg("null");
        }
        for (j, p) in self.mesh_ports.iter().enumerate() {
            if j != i {
                cmd.arg("--peer").arg(format!("127.0.0.1:{p}"));
            }
        }
        cmd.arg("--peer")
            .arg(format!("127.0.0.1:{}", self.controller_port));
        cmd.stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log));
        self.children[i] = Some(cmd.spawn().expect("node starts"));
    }

    /// Starts node `i` again (after [`LoopRoom::kill`]), with the same
    /// state directory, media and ports.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.start_node(i);
    }

    /// Node `i`'s mesh port.
    pub fn mesh_port(&self, i: usize) -> u16 {
        self.mesh_ports[i]
    }

    /// Kills node `i` (SIGKILL, by pid).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// `--peer` arguments for a controller.
    pub fn peer_args(&self) -> Vec<String> {
        self.mesh_ports
            .iter()
            .flat_map(|p| ["--peer".to_owned(), format!("127.0.0.1:{p}")])
            .collect()
    }

    pub fn secret(&self, wrong: bool) -> PathBuf {
        self.dir
            .path()
            .join(if wrong { "wrong-secret" } else { "secret" })
    }

    /// Node `i`'s status JSON.
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let body = http_get(self.status_ports[i], "/status")?;
        serde_json::from_str(&body).ok()
    }

    /// Waits until every node is in one room whose view holds `members`
    /// members; panics with the logs after `within`.
    pub fn wait_formed(&self, members: usize, within: Duration) {
        let formed = wait_for(within, || {
            let rooms: Vec<Option<String>> = (0..self.len())
                .map(|i| {
                    let s = self.status(i)?;
                    let ok = s["view"].as_array()?.len() == members && s["writable"] == true;
                    ok.then(|| s["room"].as_str().map(str::to_owned))?
                })
                .collect();
            rooms.iter().all(Option::is_some) && rooms.windows(2).all(|w| w[0] == w[1])
        });
        if !formed {
            self.dump_logs();
            panic!("the nodes did not form one room of {members} within {within:?}");
        }
    }

    pub fn dump_logs(&self) {
        for i in 0..self.len() {
            let log = std::fs::read_to_string(self.dir.path().join(format!("node{i}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("----- node {i} (last lines) -----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

impl Drop for LoopRoom {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Polls `cond` every 20 ms until it holds or `within` passes.
pub fn wait_for(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the controller once with `args` after the room options.
pub fn controller(room: &LoopRoom, args: &[&str]) -> Output {
    controller_with_secret(room, false, args)
}

/// Like [`controller`], with the wrong secret if `wrong`.
pub fn controller_with_secret(room: &LoopRoom, wrong: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new(controller_bin());
    cmd.arg("--secret-file")
        .arg(room.secret(wrong))
        .arg("--no-mdns")
        .arg("--bind")
        .arg("127.0.0.1:0")
        .args(room.peer_args())
        .args(args);
    let out = cmd.output().expect("controller runs");
    eprintln!(
        "$ autoharmonize {} -> {:?}\nstdout: {}\nstderr: {}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A running `autoharmonize serve`.
pub struct Mixer {
    pub port: u16,
    child: Child,
    pub stdout: PathBuf,
}

impl Mixer {
    /// Starts the mixer on loopback (or on `listen`), waiting until it answers.
    pub fn start(room: &LoopRoom, listen: Option<&str>) -> Mixer {
        let port = free_tcp_port();
        let listen = listen.map_or_else(|| format!("127.0.0.1:{port}"), |l| format!("{l}:{port}"));
        let out = room.dir.path().join(format!("mixer{port}.out"));
        let file = std::fs::File::create(&out).expect("mixer output");
        // A room without speakers has no peer to give: bind the port the
        // (absent) speakers would list, or the controller refuses to start
        // with nothing to contact.
        let bind = if room.mesh_ports.is_empty() {
            format!("127.0.0.1:{}", room.controller_port)
        } else {
            "127.0.0.1:0".to_owned()
        };
        let child = Command::new(controller_bin())
            .arg("--secret-file")
            .arg(room.secret(false))
            .arg("--no-mdns")
            .arg("--bind")
            .arg(bind)
            .args(room.peer_args())
            .args(["serve", "--listen", &listen])
            .stdout(Stdio::from(file.try_clone().expect("file")))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("mixer starts");
        let m = Mixer {
            port,
            child,
            stdout: out,
        };
        let up = wait_for(Duration::from_secs(10), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "the mixer did not listen: {}", m.output());
        m
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Mixer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
