//! The demo's speakers as processes: find the node binary, start one
//! `autoharmonize-node` per [`NodePlan`], notice one that dies, and stop
//! them all (SIGTERM, a bounded wait, then SIGKILL by pid).
//!
//! Each node runs in a process group of its own, so a Ctrl-C in the
//! terminal reaches only the demo, which then stops the mixer first and
//! the speakers after it, in order.
//!
//! Invariant: every child started here is owned by a [`Room`], and
//! dropping the room stops every one still running; no exit path of the
//! demo (error, panic, signal) leaves a node behind. The one exception is a
//! SIGKILL of the demo itself, which no process can handle: the nodes then
//! run on, and the pids the demo printed are the ones to stop.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::NodePlan;

/// The node's program name.
pub const NODE_BINARY: &str = "autoharmonize-node";

/// Why the speakers could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    /// No node binary next to this program nor on `PATH`. A person must
    /// build or install it.
    #[error(
        "{NODE_BINARY} not found next to {} nor on PATH; build it: cargo build --release -p autoharmonize-node",
        beside.display()
    )]
    NodeMissing {
        /// The folder looked in first.
        beside: PathBuf,
    },
    /// A node's log file could not be created.
    #[error("creating the log {}: {source}", path.display())]
    Log {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The node process could not be started.
    #[error("starting {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Finds `autoharmonize-node`: beside the running program (a cargo build
/// puts both in `target/<profile>`, a package in one `bin`), else on `PATH`.
///
/// # Errors
/// [`RoomError::NodeMissing`].
pub fn find_node_binary() -> Result<PathBuf, RoomError> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    std::iter::once(beside.clone())
        .chain(on_path)
        .map(|d| d.join(NODE_BINARY))
        .find(|p| p.is_file())
        .ok_or(RoomError::NodeMissing { beside })
}

/// One started node.
struct Node {
    plan: NodePlan,
    pid: u32,
    child: Child,
    /// Set once the process has been reaped.
    exit: Option<ExitStatus>,
    /// Whether its exit has been reported by [`Room::exited`].
    reported: bool,
}

/// A node that stopped by itself.
#[derive(Clone, Debug)]
pub struct Exited {
    /// The node's plan (name, log).
    pub plan: NodePlan,
    /// How it ended.
    pub status: ExitStatus,
}

/// How a node ended when the room was stopped.
#[derive(Clone, Debug)]
pub struct Stopped {
    /// The node's plan.
    pub plan: NodePlan,
    /// Its pid.
    pub pid: u32,
    /// Its exit status, `None` if it could not be reaped.
    pub status: Option<ExitStatus>,
    /// Whether it had already exited before the stop.
    pub exited_before: bool,
    /// Whether it needed SIGKILL.
    pub killed: bool,
}

/// The running speakers.
pub struct Room {
    nodes: Mutex<Vec<Node>>,
}

impl Room {
    /// Starts `program` once per plan with `args(plan)`, output to the
    /// plan's log. On an error, the nodes started so far are stopped.
    ///
    /// # Errors
    /// [`RoomError::Log`], [`RoomError::Spawn`].
    pub fn start(
        program: &Path,
        plans: &[NodePlan],
        args: impl Fn(&NodePlan) -> Vec<String>,
    ) -> Result<Room, RoomError> {
        let room = Room {
            nodes: Mutex::new(Vec::with_capacity(plans.len())),
        };
        for plan in plans {
            let log_err = |source| RoomError::Log {
                path: plan.log.clone(),
                source,
            };
            if let Some(dir) = plan.log.parent() {
                std::fs::create_dir_all(dir).map_err(log_err)?;
            }
            let log = std::fs::File::create(&plan.log).map_err(log_err)?;
            let log2 = log.try_clone().map_err(log_err)?;
            let child = Command::new(program)
                .args(args(plan))
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log2))
                // Its own group: the terminal's Ctrl-C goes to the demo only.
                .process_group(0)
                .spawn()
                .map_err(|source| RoomError::Spawn {
                    program: program.to_owned(),
                    source,
                })?;
            room.lock().push(Node {
                plan: plan.clone(),
                pid: child.id(),
                child,
                exit: None,
                reported: false,
            });
        }
        Ok(room)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Node>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The nodes' pids, in plan order.
    #[must_use]
    pub fn pids(&self) -> Vec<u32> {
        self.lock().iter().map(|n| n.pid).collect()
    }

    /// Nodes that exited since the last call (each reported once).
    pub fn exited(&self) -> Vec<Exited> {
        let mut nodes = self.lock();
        let mut out = Vec::new();
        for n in nodes.iter_mut() {
            if n.exit.is_none() {
                n.exit = n.child.try_wait().ok().flatten();
            }
            if let (Some(status), false) = (n.exit, n.reported) {
                n.reported = true;
                out.push(Exited {
                    plan: n.plan.clone(),
                    status,
                });
            }
        }
        out
    }

    /// How many nodes are still running.
    #[must_use]
    pub fn running(&self) -> usize {
        let mut nodes = self.lock();
        let mut running = 0;
        for n in nodes.iter_mut() {
            if n.exit.is_none() {
                n.exit = n.child.try_wait().ok().flatten();
            }
            running += usize::from(n.exit.is_none());
        }
        running
    }

    /// Stops every node: SIGTERM to all at once, up to `grace` for them to
    /// finish (a node closes its WAV file on the way out), then SIGKILL.
    /// Blocks; idempotent.
    pub fn stop(&self, grace: Duration) -> Vec<Stopped> {
        let mut nodes = self.lock();
        let mut report: Vec<Stopped> = nodes
            .iter_mut()
            .map(|n| {
                if n.exit.is_none() {
                    n.exit = n.child.try_wait().ok().flatten();
                }
                let exited_before = n.exit.is_some();
                if !exited_before {
                    // The pid is ours and not yet reaped, so it cannot have
                    // been reused.
                    if let Ok(pid) = i32::try_from(n.pid) {
                        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                    }
                }
                Stopped {
                    plan: n.plan.clone(),
                    pid: n.pid,
                    status: n.exit,
                    exited_before,
                    killed: false,
                }
            })
            .collect();
        let deadline = Instant::now() + grace;
        loop {
            for n in nodes.iter_mut().filter(|n| n.exit.is_none()) {
                n.exit = n.child.try_wait().ok().flatten();
            }
            if nodes.iter().all(|n| n.exit.is_some()) || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for (n, r) in nodes.iter_mut().zip(&mut report) {
            if n.exit.is_none() {
                let _ = n.child.kill();
                n.exit = n.child.wait().ok();
                r.killed = true;
            }
            r.status = n.exit;
            n.reported = true;
        }
        report
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// The last `lines` lines of a log file (empty if unreadable).
#[must_use]
pub fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// `GET /status` from a node's status endpoint, as JSON.
///
/// # Errors
/// A one-line reason (not answering, not HTTP 200, not JSON).
pub async fn fetch_status(addr: std::net::SocketAddr) -> Result<serde_json::Value, String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let get = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let req = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        // A status is a few kB; more is not a node's status.
        s.take(1 << 20)
            .read_to_end(&mut raw)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(2), get)
        .await
        .map_err(|_| "no answer within 2 s".to_owned())??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("not an HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "answered {}",
            head.lines().next().unwrap_or_default()
        ));
    }
    serde_json::from_str(body).map_err(|e| format!("not a status: {e}"))
}

/// What a node's status says about its sound, for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioReport {
    /// What it plays (stem names), empty if unknown.
    pub stems: Vec<String>,
    /// The output in use, `None` if the node has no audio at all.
    pub output: Option<String>,
    /// Whether its output is running.
    pub running: bool,
    /// Problems it reports (missing stems, …).
    pub problems: Vec<String>,
}

impl AudioReport {
    /// Reads `audio` from a node's status JSON.
    #[must_use]
    pub fn of(status: &serde_json::Value) -> AudioReport {
        let audio = &status["audio"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        AudioReport {
            stems: strings(&audio["stems"]),
            output: audio["output"].as_str().map(str::to_owned),
            running: audio["running"] == true,
            problems: strings(&audio["problems"]),
        }
    }

    /// Whether the node makes sound as it should.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.output.is_some() && self.running && self.problems.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_report_reads_the_status() {
        let st = serde_json::json!({"audio": {"stems": ["bass"], "output": "wav:/x.wav",
            "running": true, "problems": []}});
        let r = AudioReport::of(&st);
        assert_eq!(r.stems, ["bass"]);
        assert_eq!(r.output.as_deref(), Some("wav:/x.wav"));
        assert!(r.ok());
        let none = AudioReport::of(&serde_json::json!({"audio": null}));
        assert!(!none.ok());
        assert_eq!(none.output, None);
        let st = serde_json::json!({"audio": {"stems": [], "output": "default",
            "running": true, "problems": ["no stem 'x'"]}});
        assert!(!AudioReport::of(&st).ok());
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let p = dir.path().join("log");
        std::fs::write(&p, "a\nb\nc\n").expect("file");
        assert_eq!(log_tail(&p, 2), ["b", "c"]);
        assert_eq!(log_tail(&p, 10), ["a", "b", "c"]);
        assert!(log_tail(&dir.path().join("none"), 3).is_empty());
    }

    #[test]
    fn a_room_stops_its_nodes_and_reports_one_that_exits() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let plan = |i: usize| NodePlan {
            index: i,
            name: format!("n{i}"),
            mesh: "127.0.0.1:1".parse().expect("addr"),
            status: "127.0.0.1:2".parse().expect("addr"),
            sink: super::super::Sink::Other("null".into()),
            log: dir.path().join(format!("logs/n{i}.log")),
        };
        let plans = [plan(0), plan(1)];
        // Node 0 lives until stopped; node 1 exits at once with status 3.
        let room = Room::start(Path::new("/bin/sh"), &plans, |p| {
            let script = if p.index == 0 {
                "echo up; exec sleep 30"
            } else {
                "echo bye; exit 3"
            };
            vec!["-c".into(), script.into()]
        })
        .expect("started");
        let pids = room.pids();
        let mut exited = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while exited.is_empty() && Instant::now() < deadline {
            exited = room.exited();
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(exited.len(), 1);
        assert_eq!(exited[0].plan.name, "n1");
        assert_eq!(exited[0].status.code(), Some(3));
        assert_eq!(room.running(), 1);
        assert!(room.exited().is_empty(), "reported once");
        assert_eq!(log_tail(&plans[1].log, 1), ["bye"]);
        let stopped = room.stop(Duration::from_secs(5));
        assert!(stopped[1].exited_before);
        assert!(!stopped[0].exited_before && !stopped[0].killed);
        assert_eq!(
            stopped[0].status.and_then(|s| s.code()),
            None,
            "ended by SIGTERM"
        );
        assert_eq!(room.running(), 0);
        for pid in pids {
            let pid = i32::try_from(pid).expect("a pid");
            assert!(kill(Pid::from_raw(pid), None).is_err(), "pid {pid} is gone");
        }
    }
}
