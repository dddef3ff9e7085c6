//! Shared by the tests that run the real `autoharmonize-node` binary alone
//! on loopback: start it with a fresh secret and state directory, follow its
//! log, and kill it by pid whatever happens to the test.

#![allow(dead_code, unreachable_pub)] // each test binary uses a subset

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");

/// A running node; dropped, it is killed and reaped.
pub struct Node {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Node {
    /// Starts the node in `dir` (secret, empty config and state there),
    /// mesh on an ephemeral loopback port, no mDNS, status endpoint on
    /// `status_port`, plus `extra` flags and `env` variables.
    pub fn start(dir: &Path, status_port: u16, extra: &[&str], env: &[(&str, String)]) -> Node {
        let secret = dir.join("secret");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef").expect("secret");
        let config = dir.join("empty.toml");
        std::fs::write(&config, "").expect("config");
        let status = format!("127.0.0.1:{status_port}");
        let dir_s = dir.to_str().expect("utf-8");
        let mut args = vec![
            "--config",
            config.to_str().expect("utf-8"),
            "--secret-file",
            secret.to_str().expect("utf-8"),
            "--state-dir",
            dir_s,
            "--media-dir",
            dir_s,
            "--name",
            "lone-test-speaker",
            "--listen",
            "127.0.0.1:0",
            "--status-listen",
            &status,
            "--no-mdns",
        ];
        args.extend_from_slice(extra);
        let mut command = Command::new(BIN);
        command
            .args(&args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("the binary runs");
        let stderr = child.stderr.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Node {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    /// Waits up to `within` for a log line containing `needle`.
    pub fn wait_log(&mut self, needle: &str, within: Duration) -> bool {
        if self.log.iter().any(|l| l.contains(needle)) {
            return true;
        }
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                return false;
            };
            let hit = line.contains(needle);
            self.log.push(line);
            if hit {
                return true;
            }
        }
        false
    }

    /// Waits up to `within` for the exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every log line so far.
    pub fn log(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.log.push(line);
        }
        self.log.join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    l.local_addr().expect("addr").port()
}
