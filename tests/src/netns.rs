//! A network lab made of Linux network namespaces, for multi-process tests
//! that run the real binaries over real sockets and real mDNS.
//!
//! A [`Lab`] is a private Ethernet segment: one "switch" namespace holding a
//! bridge, and one namespace per host, each with loopback and an `eth0`
//! whose veth peer is a port of the bridge. Hosts get addresses from
//! `10.77.N.0/24`, multicast is on and routed to `eth0` (mDNS needs it), and
//! the bridge floods multicast like a dumb switch (IGMP snooping off, so a
//! group works without a querier). Processes run inside a host with
//! [`Lab::spawn`]; [`Lab::link_down`] unplugs a host's cable at the switch
//! to partition it.
//!
//! Invariants a change must keep:
//! - Nothing is created in the caller's (root) namespace except the
//!   namespaces' names under `/run/netns`: every link lives inside the lab's
//!   own namespaces, so the lab cannot touch the machine's network and no
//!   packet can leave it (there is no uplink and no default route).
//! - The lab removes only what it created, by name, and kills only
//!   processes inside its own namespaces or its own still-unreaped children.
//!   Names carry the creating process's pid, so [`cleanup_stale`] can tell a
//!   crashed run's leftovers from a live run's lab.
//!
//! Linux only; needs root and iproute2 (`ip`). Tests call
//! [`require_root_or_skip`] first.

use std::ffi::OsStr;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, Uid};

/// Name of each host's interface (inside the host's namespace, so it does not
/// collide with the machine's own interfaces).
pub const HOST_IFACE: &str = "eth0";
/// Name of the bridge inside the switch namespace.
pub const BRIDGE: &str = "br0";
/// Most hosts in one lab: addresses `.1` to `.250` of the /24.
pub const MAX_HOSTS: usize = 250;
/// Longest accepted name prefix, keeping namespace names readable.
pub const MAX_PREFIX_LEN: usize = 16;
/// Prefix length of the lab subnet.
pub const PREFIX_LEN: u8 = 24;
/// How long [`Drop`] waits for killed processes to disappear.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Labs created by this process, for unique names and subnets.
static LABS: AtomicU32 = AtomicU32::new(0);

/// Why a lab operation failed. Retrying does not help unless the cause
/// (missing root, missing `ip`, a name clash with a live run) is removed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The name prefix is empty, too long or has characters other than ASCII
    /// letters, digits, `_` (a `-` would make names ambiguous).
    #[error("bad lab name prefix {prefix:?}: {reason}")]
    BadPrefix {
        /// The prefix given.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Zero hosts, or more than [`MAX_HOSTS`].
    #[error("a lab has 1 to {MAX_HOSTS} hosts, {0} requested")]
    HostCount(usize),
    /// A host index past the lab's hosts.
    #[error("host {host} does not exist (the lab has {hosts})")]
    NoSuchHost {
        /// The index given.
        host: usize,
        /// How many hosts the lab has.
        hosts: usize,
    },
    /// A program could not be started at all (not installed, not executable).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// An `ip` command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
}

/// Result of lab operations.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

/// A private network of hosts in namespaces; see the module docs. Dropping it
/// kills its processes and removes its namespaces.
#[derive(Debug)]
pub struct Lab {
    /// `{prefix}-{pid}-{n}`: the start of every namespace name of this lab.
    id: String,
    switch: String,
    hosts: Vec<String>,
    subnet: u8,
    /// Namespaces that exist, in creation order, so a half-built lab is
    /// removed too.
    created: Vec<String>,
    /// Pids of spawned processes (the `ip netns exec` that became them).
    pids: Vec<u32>,
    /// Extra switch segments made by [`Lab::set_segment`].
    segments: Vec<usize>,
}

impl Lab {
    /// Builds a lab of `hosts` hosts. Names start with `name_prefix`, then
    /// this process's pid and a counter, so parallel tests and parallel runs
    /// never collide. Leftovers of crashed runs with the same prefix are
    /// removed first (see [`cleanup_stale`]).
    ///
    /// # Errors
    /// A bad prefix or host count, or the first `ip` command that fails
    /// (after removing whatever was already created).
    pub fn new(name_prefix: &str, hosts: usize) -> Result<Lab> {
        check_prefix(name_prefix)?;
        if hosts == 0 || hosts > MAX_HOSTS {
            return Err(LabError::HostCount(hosts));
        }
        cleanup_stale(name_prefix)?;
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let id = format!("{name_prefix}-{pid}-{n}");
        // Labs never share a link with each other or the machine, so equal
        // subnets would be harmless; distinct ones keep logs unambiguous.
        let subnet = (pid.wrapping_mul(31).wrapping_add(n) % 256) as u8;
        let mut lab = Lab {
            switch: format!("{id}-sw"),
            hosts: (0..hosts).map(|i| format!("{id}-h{i}")).collect(),
            id,
            subnet,
            created: Vec::new(),
            pids: Vec::new(),
            segments: Vec::new(),
        };
        // On error `lab` drops here and removes what was built.
        lab.build()?;
        Ok(lab)
    }

    fn build(&mut self) -> Result<()> {
        let sw = self.switch.clone();
        ip(["netns", "add", &sw])?;
        self.created.push(sw.clone());
        ip(["-n", &sw, "link", "set", "lo", "up"])?;
        // Snooping off: the bridge floods multicast like an unmanaged
        // switch, so group traffic flows without an IGMP querier.
        ip([
            "-n",
            &sw,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(["-n", &sw, "link", "set", BRIDGE, "up"])?;
        for i in 0..self.hosts.len() {
            let host = self.hosts[i].clone();
            let port = port_name(i);
            let addr = format!("{}/{PREFIX_LEN}", self.addr_unchecked(i));
            ip(["netns", "add", &host])?;
            self.created.push(host.clone());
            // Created inside the switch namespace with the peer moved straight
            // into the host: neither end ever exists in the root namespace.
            ip([
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", HOST_IFACE,
                "netns", &host,
            ])?;
            ip(["-n", &sw, "link", "set", &port, "master", BRIDGE])?;
            ip(["-n", &sw, "link", "set", &port, "up"])?;
            ip(["-n", &host, "link", "set", "lo", "up"])?;
            ip(["-n", &host, "addr", "add", &addr, "dev", HOST_IFACE])?;
            ip([
                "-n",
                &host,
                "link",
                "set",
                HOST_IFACE,
                "multicast",
                "on",
                "up",
            ])?;
            // No default route exists; multicast needs one to leave eth0.
            ip([
                "-n",
                &host,
                "route",
                "add",
                "224.0.0.0/4",
                "dev",
                HOST_IFACE,
            ])?;
        }
        Ok(())
    }

    /// The unique start of every namespace name of this lab
    /// (`{prefix}-{pid}-{n}`).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Number of hosts.
    #[must_use]
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// The namespace name of a host, for `ip netns exec` by hand.
    ///
    /// # Errors
    /// [`LabError::NoSuchHost`].
    pub fn netns(&self, host: usize) -> Result<&str> {
        self.check_host(host)?;
        Ok(&self.hosts[host])
    }

    /// Every namespace of this lab, the switch first.
    #[must_use]
    pub fn namespaces(&self) -> Vec<String> {
        std::iter::once(self.switch.clone())
            .chain(self.hosts.iter().cloned())
            .collect()
    }

    /// Waits until none of `hosts` is still resolving another one's
    /// address (an ARP entry `INCOMPLETE`, made while its cable was out and
    /// retried on the kernel's 1 s timer), at most `max`. After a cable is
    /// back the network delivers between them only then: a test measuring
    /// how fast the room heals measures from there. Returns how long it
    /// waited, if it had to.
    #[must_use]
    pub fn wait_resolved(&self, hosts: &[usize], max: Duration) -> Option<Duration> {
        let start = Instant::now();
        let addrs: Vec<String> = hosts
            .iter()
            .filter(|&&h| h < self.hosts.len())
            .map(|&h| self.addr_unchecked(h).to_string())
            .collect();
        let mut waited = false;
        while start.elapsed() < max {
            let pending = hosts
                .iter()
                .filter_map(|&h| self.hosts.get(h))
                .any(|ns| unresolved_neighbours(ns).iter().any(|a| addrs.contains(a)));
            if !pending {
                break;
            }
            waited = true;
            std::thread::sleep(Duration::from_millis(10));
        }
        waited.then(|| start.elapsed())
    }

    /// The IPv4 address of a host's `eth0` (`10.77.N.{host + 1}`).
    ///
    /// # Errors
    /// [`LabError::NoSuchHost`].
    pub fn addr(&self, host: usize) -> Result<Ipv4Addr> {
        self.check_host(host)?;
        Ok(self.addr_unchecked(host))
    }

    fn addr_unchecked(&self, host: usize) -> Ipv4Addr {
        let last = u8::try_from(host + 1).expect("host count checked against MAX_HOSTS");
        Ipv4Addr::new(10, 77, self.subnet, last)
    }

    fn check_host(&self, host: usize) -> Result<()> {
        if host < self.hosts.len() {
            Ok(())
        } else {
            Err(LabError::NoSuchHost {
                host,
                hosts: self.hosts.len(),
            })
        }
    }

    /// Runs `cmd` (its program, arguments, environment and working
    /// directory) inside a host, with stdin closed and stdout and stderr
    /// piped. Read the pipes (e.g. from a thread) if the process writes a
    /// lot, or use [`Lab::spawn_with_stdio`]. The process is killed when the
    /// lab drops, if it is still running.
    ///
    /// # Errors
    /// [`LabError::NoSuchHost`], or [`LabError::Spawn`] if `ip` cannot start.
    pub fn spawn(&mut self, host: usize, cmd: Command) -> Result<Child> {
        self.spawn_with_stdio(host, cmd, Stdio::piped(), Stdio::piped())
    }

    /// [`Lab::spawn`] with the caller's choice of stdout and stderr.
    ///
    /// # Errors
    /// As [`Lab::spawn`].
    pub fn spawn_with_stdio(
        &mut self,
        host: usize,
        cmd: Command,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Result<Child> {
        let mut wrapped = self.wrap(host, &cmd)?;
        wrapped.stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = wrapped.spawn().map_err(|source| LabError::Spawn {
            command: describe(&wrapped),
            source,
        })?;
        // `ip netns exec` enters the namespace and execs the program, so
        // this pid is the program's own.
        self.pids.push(child.id());
        Ok(child)
    }

    /// Runs `cmd` inside a host to completion and returns its output (stdout
    /// and stderr captured). Its exit status is for the caller to judge.
    ///
    /// # Errors
    /// As [`Lab::spawn`], or [`LabError::Spawn`] if waiting fails.
    pub fn output(&mut self, host: usize, cmd: Command) -> Result<Output> {
        let child = self.spawn(host, cmd)?;
        let pid = child.id();
        let result = child.wait_with_output();
        // Reaped: the pid may be reused by an unrelated process.
        self.pids.retain(|p| *p != pid);
        result.map_err(|source| LabError::Spawn {
            command: format!("wait for pid {pid}"),
            source,
        })
    }

    /// `ip netns exec NS program args...` with `cmd`'s environment and
    /// working directory.
    fn wrap(&self, host: usize, cmd: &Command) -> Result<Command> {
        let ns = self.netns(host)?;
        let mut wrapped = Command::new("ip");
        wrapped
            .args([OsStr::new("netns"), OsStr::new("exec"), OsStr::new(ns)])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        if let Some(dir) = cmd.get_current_dir() {
            wrapped.current_dir(dir);
        }
        Ok(wrapped)
    }

    /// Unplugs a host's cable at the switch: its bridge port goes down, so
    /// the host keeps its address and routes but reaches nobody (its `eth0`
    /// shows NO-CARRIER), and nobody reaches it.
    ///
    /// # Errors
    /// [`LabError::NoSuchHost`] or the `ip` failure.
    pub fn link_down(&self, host: usize) -> Result<()> {
        self.set_port(host, "down")
    }

    /// Plugs a host's cable back in (undoes [`Lab::link_down`]).
    ///
    /// # Errors
    /// [`LabError::NoSuchHost`] or the `ip` failure.
    pub fn link_up(&self, host: usize) -> Result<()> {
        self.set_port(host, "up")
    }

    /// Moves a host's cable to switch segment `segment`: segment 0 is the
    /// lab's bridge, each other segment a bridge of its own (made on first
    /// use), so hosts on different segments reach nothing of each other.
    /// This is how partitions of any shape are made (a 2/2 split, three
    /// islands); [`Lab::link_down`] only ever isolates single hosts.
    ///
    /// # Errors
    /// [`LabError::NoSuchHost`] or the `ip` failure.
    pub fn set_segment(&mut self, host: usize, segment: usize) -> Result<()> {
        self.check_host(host)?;
        let bridge = segment_bridge(segment);
        if segment != 0 && !self.segments.contains(&segment) {
            ip([
                "-n",
                &self.switch,
                "link",
                "add",
                &bridge,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ])?;
            ip(["-n", &self.switch, "link", "set", &bridge, "up"])?;
            self.segments.push(segment);
        }
        ip([
            "-n",
            &self.switch,
            "link",
            "set",
            &port_name(host),
            "master",
            &bridge,
        ])?;
        Ok(())
    }

    fn set_port(&self, host: usize, state: &str) -> Result<()> {
        self.check_host(host)?;
        ip(["-n", &self.switch, "link", "set", &port_name(host), state])?;
        Ok(())
    }

    /// Kills what runs in the lab and waits (bounded) for it to be gone.
    fn kill_all(&mut self) {
        let me = std::process::id();
        // Our own children that may not have entered their namespace yet, or
        // that the caller never waited for. A reaped pid may belong to an
        // unrelated process by now, hence the parent check.
        for &pid in &self.pids {
            if alive(pid) && parent_of(pid) == Some(me) {
                sigkill(pid);
            }
        }
        // Everything else inside our namespaces (e.g. grandchildren).
        for ns in &self.created {
            for pid in netns_pids(ns) {
                sigkill(pid);
            }
        }
        let deadline = Instant::now() + KILL_TIMEOUT;
        loop {
            let left: Vec<u32> = self
                .created
                .iter()
                .flat_map(|ns| netns_pids(ns))
                .chain(
                    self.pids
                        .iter()
                        .copied()
                        .filter(|&p| alive(p) && parent_of(p) == Some(me)),
                )
                .collect();
            if left.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "netns lab {}: processes survived SIGKILL: {left:?}",
                    self.id
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_all();
        // Deleting the veth pair removes both ends; the namespaces' removal
        // would too, but only once no process holds them.
        if self.created.contains(&self.switch) {
            for i in 0..self.hosts.len() {
                let _ = ip(["-n", &self.switch, "link", "del", &port_name(i)]);
            }
            let _ = ip(["-n", &self.switch, "link", "del", BRIDGE]);
            for &seg in &self.segments {
                let _ = ip(["-n", &self.switch, "link", "del", &segment_bridge(seg)]);
            }
        }
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(["netns", "del", ns]) {
                eprintln!("netns lab {}: {e}", self.id);
            }
        }
    }
}

/// Removes namespaces named `{prefix}-{pid}-...` whose creating process no
/// longer exists (leftovers of a crashed or killed test run), after killing
/// whatever still runs inside them. Labs of live processes are left alone.
///
/// # Errors
/// A bad prefix, or `ip netns list` failing.
pub fn cleanup_stale(prefix: &str) -> Result<Vec<String>> {
    check_prefix(prefix)?;
    let mut removed = Vec::new();
    for ns in netns_list()? {
        let Some(rest) = ns.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let Some(Ok(owner)) = rest.split('-').next().map(str::parse::<u32>) else {
            continue;
        };
        if alive(owner) {
            continue;
        }
        for pid in netns_pids(&ns) {
            sigkill(pid);
        }
        if let Err(e) = ip(["netns", "del", &ns]) {
            // Another test process may have cleaned the same leftover first.
            if netns_list()?.contains(&ns) {
                return Err(e);
            }
            continue;
        }
        removed.push(ns);
    }
    Ok(removed)
}

/// Names of all network namespaces (`ip netns list`).
///
/// # Errors
/// `ip` failing.
pub fn netns_list() -> Result<Vec<String>> {
    let out = ip(["netns", "list"])?;
    Ok(out
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Whether this process can build labs. When it cannot (not root, or no
/// `ip`): with `CI=true` it panics, since a missing prerequisite in CI is a
/// failure, not a pass; elsewhere it prints a loud skip notice and returns
/// `false`, and the test should return.
#[must_use]
pub fn require_root_or_skip(test_name: &str) -> bool {
    if !Uid::effective().is_root() {
        return skip_or_fail(
            test_name,
            "it must run as root to create network namespaces",
        );
    }
    if !command_exists("ip", "-V") {
        return skip_or_fail(test_name, "iproute2's `ip` is not installed");
    }
    true
}

/// Like [`require_root_or_skip`] for another program the test needs (e.g.
/// `ping` from iputils-ping). `probe_arg` is an argument that makes it exit
/// at once (`-V`, `--version`).
#[must_use]
pub fn require_command_or_skip(test_name: &str, program: &str, probe_arg: &str) -> bool {
    if command_exists(program, probe_arg) {
        true
    } else {
        skip_or_fail(test_name, &format!("`{program}` is not installed"))
    }
}

/// Like [`require_root_or_skip`] for any other prerequisite: `true` when
/// `ok`; otherwise, with `CI=true`, a panic naming `reason`, and elsewhere
/// a loud skip notice and `false`.
#[must_use]
pub fn require_or_skip(test_name: &str, ok: bool, reason: &str) -> bool {
    ok || skip_or_fail(test_name, reason)
}

fn skip_or_fail(test_name: &str, reason: &str) -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test_name}: cannot run in CI: {reason}; CI must provide it");
    }
    // Straight to fd 2: libtest captures `eprintln!` of passing tests, and a
    // skip that nobody sees is a silent pass.
    let bar = "!".repeat(72);
    let notice = format!(
        "\n{bar}\n!! SKIPPED {test_name}: {reason}\n!! (with CI=true this is a failure)\n{bar}\n"
    );
    let _ = std::io::stderr().write_all(notice.as_bytes());
    false
}

fn command_exists(program: &str, probe_arg: &str) -> bool {
    Command::new(program)
        .arg(probe_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn check_prefix(prefix: &str) -> Result<()> {
    let bad = |reason| {
        Err(LabError::BadPrefix {
            prefix: prefix.to_owned(),
            reason,
        })
    };
    if prefix.is_empty() {
        return bad("empty");
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return bad("longer than 16 bytes");
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return bad("only ASCII letters, digits and '_' are allowed");
    }
    Ok(())
}

/// Bridge-side name of a host's veth (inside the switch namespace, so short
/// and unique there: `p0` to `p249`).
fn port_name(host: usize) -> String {
    format!("p{host}")
}

/// Bridge of a switch segment (`br0` is the lab's own).
fn segment_bridge(segment: usize) -> String {
    if segment == 0 {
        BRIDGE.to_owned()
    } else {
        format!("br{segment}")
    }
}

/// Runs `ip` with `args`; returns its stdout.
fn ip<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.args(args).stdin(Stdio::null());
    let out = cmd.output().map_err(|source| LabError::Spawn {
        command: describe(&cmd),
        source,
    })?;
    if !out.status.success() {
        return Err(LabError::Failed {
            command: describe(&cmd),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Pids of processes inside a namespace; empty if it is gone or `ip` fails
/// (zombies are not listed: they hold no namespace).
fn netns_pids(ns: &str) -> Vec<u32> {
    ip(["netns", "pids", ns])
        .map(|out| out.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")) {
        // The state follows the command name, which is in parentheses and
        // may itself contain spaces or parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

fn sigkill(pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        // ESRCH (already gone) is the expected race, nothing to report.
        let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
    }
}

/// The addresses the kernel of namespace `ns` is still resolving (ARP
/// `INCOMPLETE`), read with `ip -j neigh`.
#[must_use]
pub fn unresolved_neighbours(ns: &str) -> Vec<String> {
    let Ok(out) = Command::new("ip")
        .args(["-n", ns, "-j", "-4", "neigh", "show"])
        .output()
    else {
        return Vec::new();
    };
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    entries
        .iter()
        .filter(|e| {
            e["state"]
                .as_array()
                .is_some_and(|st| st.iter().any(|x| x == "INCOMPLETE"))
        })
        .filter_map(|e| e["dst"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked() {
        assert!(check_prefix("nslab").is_ok());
        assert!(check_prefix("a_b9").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("has-dash").is_err());
        assert!(check_prefix("x".repeat(17).as_str()).is_err());
    }

    #[test]
    fn this_process_is_alive_and_its_parent_known() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(parent_of(me).is_some());
        assert!(!alive(u32::MAX));
    }
}
