//! A room of real `autoharmonize-node` processes, one per network namespace
//! of a [`Lab`], for multi-process tests: start, kill -9, SIGTERM, SIGSTOP,
//! partition, read each node's status, cast votes.
//!
//! Status and votes go through each node's loopback endpoint, which only its
//! own namespace can reach; a short-lived thread enters that namespace
//! (`setns`) to make the request, so the tests need no tool like curl.
//! Every node's log goes to a file in the room's temporary directory and is
//! printed when a test fails ([`Room::dump_logs`]).
//!
//! Invariant: every process the room starts is stopped when it drops (the
//! lab kills anything left in its namespaces).

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::Lab;

/// The mesh UDP port every node uses (each has its own namespace).
pub const MESH_PORT: u16 = 7710;
/// The loopback status port every node uses.
pub const STATUS_PORT: u16 = 7711;

/// How a room's nodes find each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// Every node lists every other as a static peer; mDNS off.
    StaticPeers,
    /// mDNS only, no static peers.
    Mdns,
    /// A chain: node `i` lists only node `i - 1` as a static peer (node 0
    /// none); mDNS off. The room forms only if members join through
    /// whoever they reach.
    Chain,
}

/// A room of node processes.
pub struct Room {
    lab: Lab,
    bin: PathBuf,
    dir: tempfile::TempDir,
    discovery: Discovery,
    children: Vec<Option<Child>>,
    extra_args: Vec<Vec<String>>,
    media_dirs: Vec<Option<PathBuf>>,
    /// Per host, a program that runs the node instead of `bin` (an
    /// emulator) and the arguments it takes before the node's own.
    launchers: Vec<Option<(PathBuf, Vec<String>)>>,
    log_level: String,
}

impl Room {
    /// A lab of `n` hosts, ready to start nodes from binary `bin`.
    ///
    /// # Panics
    /// If the lab or the temporary directory cannot be made: tests call this
    /// after checking their prerequisites.
    #[must_use]
    pub fn new(prefix: &str, n: usize, bin: &Path, discovery: Discovery) -> Room {
        let lab = Lab::new(prefix, n).expect("network lab");
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(
            dir.path().join("secret"),
            "correct horse battery staple 42\n",
        )
        .expect("secret file");
        std::fs::write(
            dir.path().join("wrong-secret"),
            "this is not the room's secret\n",
        )
        .expect("secret file");
        Room {
            lab,
            bin: bin.to_path_buf(),
            dir,
            discovery,
            children: (0..n).map(|_| None).collect(),
            extra_args: vec![Vec::new(); n],
            media_dirs: vec![None; n],
            launchers: vec![None; n],
            log_level: "info,autoharmonize_node=debug".into(),
        }
    }

    /// The room's directory: every node's `--media-dir`, holding the
    /// secrets, states and logs.
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Number of hosts.
    #[must_use]
    pub fn len(&self) -> usize {
        self.children.len()
    }

    /// Whether the room has no hosts.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// The lab under the room.
    pub fn lab(&mut self) -> &mut Lab {
        &mut self.lab
    }

    /// Host `i`'s address.
    #[must_use]
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.lab.addr(i).expect("host exists")
    }

    /// The room's secret file, or (with `wrong`) a file holding another
    /// secret.
    #[must_use]
    pub fn secret_path(&self, wrong: bool) -> PathBuf {
        self.dir
            .path()
            .join(if wrong { "wrong-secret" } else { "secret" })
    }

    /// Extra command-line arguments for host `i`'s next start.
    pub fn set_args(&mut self, i: usize, args: &[&str]) {
        self.extra_args[i] = args.iter().map(|s| (*s).to_string()).collect();
    }

    /// Host `i`'s media directory from its next start (default: the
    /// room's directory, shared by every node).
    pub fn set_media_dir(&mut self, i: usize, dir: &Path) {
        self.media_dirs[i] = Some(dir.to_path_buf());
    }

    /// From its next start, host `i` runs `program` with `args` followed
    /// by the node's own arguments, instead of the room's binary: how a
    /// test runs a node built for another architecture under an emulator
    /// (`qemu-aarch64-static /path/to/arm64/autoharmonize-node`).
    pub fn set_launcher(&mut self, i: usize, program: &Path, args: &[&str]) {
        self.launchers[i] = Some((
            program.to_path_buf(),
            args.iter().map(|s| (*s).to_string()).collect(),
        ));
    }

    /// The `--log-level` of nodes started from now on (default
    /// `info,autoharmonize_node=debug`; a long run may want less).
    pub fn set_log_level(&mut self, level: &str) {
        level.clone_into(&mut self.log_level);
    }

    /// Host `i`'s node log (appended to by every start).
    #[must_use]
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node{i}.log"))
    }

    /// Starts (or restarts) the node on host `i`, appending to its log.
    pub fn start(&mut self, i: usize) {
        let state = self.dir.path().join(format!("state{i}"));
        let mut cmd = match &self.launchers[i] {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args);
                c
            }
            None => Command::new(&self.bin),
        };
        // A test may give another secret (a stranger's) in its extra args.
        if !self.extra_args[i].iter().any(|a| a == "--secret-file") {
            cmd.arg("--secret-file").arg(self.secret_path(false));
        }
        cmd.arg("--state-dir")
            .arg(&state)
            .arg("--media-dir")
            .arg(self.media_dirs[i].as_deref().unwrap_or(self.dir.path()))
            .arg("--name")
            .arg(format!("speaker{i}"))
            .arg("--listen")
            .arg(format!("{}:{MESH_PORT}", self.addr(i)))
            .arg("--status-listen")
            .arg(format!("127.0.0.1:{STATUS_PORT}"))
            .arg("--log-level")
            .arg(&self.log_level);
        match self.discovery {
            Discovery::StaticPeers => {
                cmd.arg("--no-mdns");
                for j in (0..self.len()).filter(|&j| j != i) {
                    cmd.arg("--peer")
                        .arg(format!("{}:{MESH_PORT}", self.addr(j)));
                }
            }
            Discovery::Mdns => {
                cmd.arg("--mdns");
            }
            Discovery::Chain => {
                cmd.arg("--no-mdns");
                if i > 0 {
                    cmd.arg("--peer")
                        .arg(format!("{}:{MESH_PORT}", self.addr(i - 1)));
                }
            }
        }
        cmd.args(&self.extra_args[i]);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log file");
        let err = log.try_clone().expect("log file");
        let child = self
            .lab
            .spawn_with_stdio(i, cmd, Stdio::from(log), Stdio::from(err))
            .expect("node starts");
        self.children[i] = Some(child);
    }

    /// Starts every node.
    pub fn start_all(&mut self) {
        for i in 0..self.len() {
            self.start(i);
        }
    }

    fn signal(&self, i: usize, sig: Signal) {
        if let Some(child) = &self.children[i] {
            let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
            let _ = kill(pid, sig);
        }
    }

    /// kill -9: no goodbye.
    pub fn kill9(&mut self, i: usize) {
        self.signal(i, Signal::SIGKILL);
        if let Some(mut child) = self.children[i].take() {
            let _ = child.wait();
        }
    }

    /// SIGTERM; returns the exit code once the process has stopped (None if
    /// it had to be killed after 5 s).
    pub fn terminate(&mut self, i: usize) -> Option<i32> {
        self.signal(i, Signal::SIGTERM);
        let mut child = self.children[i].take()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// SIGSTOP.
    pub fn freeze(&self, i: usize) {
        self.signal(i, Signal::SIGSTOP);
    }

    /// SIGCONT.
    pub fn thaw(&self, i: usize) {
        self.signal(i, Signal::SIGCONT);
    }

    /// Process id of host `i`'s node, if running.
    #[must_use]
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    /// If host `i`'s node has exited by itself, reaps it and returns how
    /// it ended (the room then counts it as not running).
    pub fn try_exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        let status = self.children[i].as_mut()?.try_wait().ok()??;
        self.children[i] = None;
        Some(status)
    }

    /// Path of host `i`'s network namespace (`/run/netns/...`), for
    /// [`http_in`] from a thread that does not hold the room.
    #[must_use]
    pub fn netns_path(&self, i: usize) -> PathBuf {
        Path::new("/run/netns").join(self.lab.netns(i).expect("host exists"))
    }

    /// Whether host `i` runs a node.
    #[must_use]
    pub fn running(&self, i: usize) -> bool {
        self.children[i].is_some()
    }

    /// One HTTP request to host `i`'s status endpoint, from inside its
    /// namespace. Returns the status code and body.
    ///
    /// # Errors
    /// When the node does not answer (not started yet, frozen, stopped).
    pub fn http(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        http_in(&self.netns_path(i), method, path, body)
    }

    /// Runs `f` on a thread inside host `i`'s network namespace.
    ///
    /// # Errors
    /// If the namespace cannot be entered, or `f` fails.
    pub fn in_netns<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        in_netns_path(&self.netns_path(i), f)
    }

    /// Sends each datagram from host `i` (a stranger on the network) to
    /// `to`'s mesh port, one every 0.5 ms.
    ///
    /// # Errors
    /// If the socket cannot be made or a send fails.
    pub fn send_from(&self, i: usize, to: usize, datagrams: Vec<Vec<u8>>) -> std::io::Result<()> {
        let dest = std::net::SocketAddr::from((self.addr(to), MESH_PORT));
        self.in_netns(i, move || {
            let s = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            for d in datagrams {
                s.send_to(&d, dest)?;
                // Paced, so the receiver's socket buffer never overflows:
                // the tests count what the node did with every datagram.
                std::thread::sleep(Duration::from_micros(500));
            }
            Ok(())
        })
    }

    /// Listens on host `i`'s mesh port for `dur` and returns what arrived
    /// (at most `max` datagrams): how a test records real traffic to replay.
    ///
    /// # Errors
    /// If the port cannot be bound.
    pub fn capture(&self, i: usize, dur: Duration, max: usize) -> std::io::Result<Vec<Vec<u8>>> {
        let addr = std::net::SocketAddr::from((self.addr(i), MESH_PORT));
        self.in_netns(i, move || {
            let s = std::net::UdpSocket::bind(addr)?;
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            let end = Instant::now() + dur;
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while Instant::now() < end && got.len() < max {
                if let Ok((n, _)) = s.recv_from(&mut buf) {
                    got.push(buf[..n].to_vec());
                }
            }
            Ok(got)
        })
    }

    /// Host `i`'s status as JSON, if it answers.
    #[must_use]
    pub fn status(&self, i: usize) -> Option<serde_json::Value> {
        let (code, body) = self.http(i, "GET", "/status", None).ok()?;
        (code == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten()
    }

    /// Casts a vote on host `i` (JSON as `/cast` takes it); returns the HTTP
    /// status and body.
    #[must_use]
    pub fn cast(&self, i: usize, json: &str) -> (u16, String) {
        self.http(i, "POST", "/cast", Some(json))
            .unwrap_or((0, String::new()))
    }

    /// Polls `check` every 20 ms until it holds or `timeout` passes; returns
    /// how long it took.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&Room) -> bool,
    ) -> Option<Duration> {
        let start = Instant::now();
        loop {
            if check(self) {
                return Some(start.elapsed());
            }
            if start.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the given hosts all answer, are in one room, and each one's
    /// committed view holds exactly those hosts' members.
    #[must_use]
    pub fn agree_on(&self, hosts: &[usize]) -> bool {
        let statuses: Vec<serde_json::Value> =
            hosts.iter().filter_map(|&i| self.status(i)).collect();
        if statuses.len() != hosts.len() {
            return false;
        }
        let mut ids: Vec<&str> = statuses.iter().filter_map(|s| s["id"].as_str()).collect();
        ids.sort_unstable();
        let room = &statuses[0]["room"];
        room.is_string()
            && statuses.iter().all(|s| {
                let mut view: Vec<&str> = s["view"]
                    .as_array()
                    .map(|v| v.iter().filter_map(|m| m["id"].as_str()).collect())
                    .unwrap_or_default();
                view.sort_unstable();
                &s["room"] == room && view == ids
            })
    }

    /// Prints every node's log (for a failing test).
    pub fn dump_logs(&self) {
        for i in 0..self.len() {
            let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            eprintln!("---- node {i} log (last {} lines) ----", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// One HTTP request to the status endpoint of the node in namespace `ns`
/// (a path under `/run/netns`), made from a thread inside it. Returns the
/// status code and body. Free of the [`Room`], so a poller thread can ask
/// while another thread changes the room.
///
/// # Errors
/// When the node does not answer (not started yet, frozen, stopped).
pub fn http_in(
    ns: &Path,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let request = match body {
        Some(b) => format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
            b.len()
        ),
        None => {
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        }
    };
    // setns changes the calling thread's namespace only: a thread of its
    // own keeps the caller's namespace untouched.
    in_netns_path(ns, move || {
        let mut s = TcpStream::connect_timeout(
            &(Ipv4Addr::LOCALHOST, STATUS_PORT).into(),
            Duration::from_millis(500),
        )?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(request.as_bytes())?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        let code = response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((code, body))
    })
}

/// Runs `f` on a thread inside the network namespace at `ns`.
///
/// # Errors
/// If the namespace cannot be entered, or `f` fails.
pub fn in_netns_path<T: Send + 'static>(
    ns: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || {
        let file = File::open(&ns)?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread panicked")))
}

impl Drop for Room {
    fn drop(&mut self) {
        for i in 0..self.len() {
            self.kill9(i);
        }
    }
}
