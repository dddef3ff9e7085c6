//! With a valid configuration given by flags alone, the real binary starts,
//! creates its persistent member id, runs its mesh, stops cleanly on
//! SIGTERM with exit code 0, and keeps its id (with a new boot epoch) when
//! started again.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");

/// Runs the node until its mesh is up, then SIGTERMs it; returns its exit
/// code and stderr.
fn run_once(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("mesh running") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let up = rx.recv_timeout(Duration::from_secs(10)).is_ok();
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = reader.join().expect("reader");
    assert!(up, "the mesh never came up:\n{log}");
    (code, log)
}

#[test]
fn starts_on_flags_stops_on_sigterm_and_keeps_its_member_id() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").expect("config");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef").expect("secret");
    let state = dir.path().join("state");
    let args = [
        "--config",
        config.to_str().expect("utf-8"),
        "--secret-file",
        secret.to_str().expect("utf-8"),
        "--state-dir",
        state.to_str().expect("utf-8"),
        "--media-dir",
        dir.path().to_str().expect("utf-8"),
        "--name",
        "test-speaker",
        "--listen",
        "127.0.0.1:0",
        "--status-listen",
        "127.0.0.1:0",
        "--no-mdns",
        "--log-format",
        "json",
    ];

    let (code, log) = run_once(&args);
    assert_eq!(code, Some(0), "clean exit on SIGTERM:\n{log}");
    assert!(log.contains("leaving the room"), "said goodbye:\n{log}");
    let id = std::fs::read_to_string(state.join("member-id")).expect("member id written");
    assert_eq!(id.len(), 17, "16 hex digits and a newline: {id:?}");
    let start_line = log
        .lines()
        .find(|l| l.contains("autoharmonize-node starting"))
        .unwrap_or_else(|| panic!("a start line in {log}"));
    assert!(
        start_line.starts_with('{') && start_line.contains(id.trim()),
        "JSON log naming the member id: {start_line}"
    );

    let (code, log) = run_once(&args);
    assert_eq!(code, Some(0), "{log}");
    assert_eq!(
        std::fs::read_to_string(state.join("member-id")).expect("member id"),
        id,
        "the id survives a restart"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("boot-epoch")).expect("epoch"),
        "2\n",
        "each start has a new boot epoch"
    );
}
