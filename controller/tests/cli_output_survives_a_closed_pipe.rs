//! The CLI's output read by a reader that goes away (`status --json |
//! head -1`): the controller ends quietly with the verb's own exit status,
//! never with a panic (exit status 101, "panicked" on stderr). Checked for
//! a result on stdout, a JSON error on stdout, `--help`, and logs on a
//! closed stderr.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::LoopRoom;

/// Runs the controller with `args` after the room options; stdout (and
/// stderr if `close_stderr`) is a pipe whose reader has gone before the
/// controller writes anything. Returns the exit status and what stderr
/// said (empty if it was closed too).
fn with_closed_output(room: &LoopRoom, args: &[&str], close_stderr: bool) -> (Option<i32>, String) {
    let mut cmd = Command::new(support::controller_bin());
    cmd.arg("--secret-file")
        .arg(room.secret(false))
        .args(["--no-mdns", "--bind", "127.0.0.1:0"])
        .args(room.peer_args())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("controller runs");
    // Our end of the pipe closes: every write the controller makes to it
    // fails with EPIPE (SIGPIPE is ignored by Rust programs).
    drop(child.stdout.take());
    if close_stderr {
        drop(child.stderr.take());
    }
    let out = child.wait_with_output().expect("controller ends");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "autoharmonize {} -> {:?}: {stderr}",
        args.join(" "),
        out.status.code()
    );
    (out.status.code(), stderr)
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let room = LoopRoom::start(2);
    room.wait_formed(2, Duration::from_secs(10));

    for args in [
        &["status", "--json"][..],
        &["status"],
        &["members"],
        &["tracks", "--json"],
        &["volume", "all", "50", "--json"],
    ] {
        let (code, stderr) = with_closed_output(&room, args, false);
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.trim().is_empty(), "{args:?} said: {stderr}");
    }
    // The verb was applied all the same.
    let s = room.status(0).expect("status");
    assert!(
        s["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .all(|c| c["gain"] == 50),
        "{s}"
    );

    // An error reported as JSON on stdout keeps its exit status.
    let (code, stderr) = with_closed_output(&room, &["volume", "all", "101", "--json"], false);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // Help text, written by the argument parser.
    let (code, stderr) = with_closed_output(&room, &["--help"], false);
    assert_eq!(code, Some(0), "{stderr}");

    // Logs on a closed stderr, results on a closed stdout.
    let (code, _) = with_closed_output(&room, &["--log-level", "debug", "status"], true);
    assert_eq!(code, Some(0), "a panic exits with 101");
}
