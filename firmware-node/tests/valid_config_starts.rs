//! With a valid configuration given by flags alone, the real binary starts,
//! creates its persistent member id, keeps it across restarts and exits 0
//! (until the mesh is wired in).

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");

fn start(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("the binary runs")
}

#[test]
fn starts_on_flags_and_keeps_its_member_id() {
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
        "--name",
        "test-speaker",
        "--log-format",
        "json",
    ];

    let first = start(&args);
    assert!(first.status.success(), "{first:?}");
    let id = std::fs::read_to_string(state.join("member-id")).expect("member id written");
    assert_eq!(id.len(), 17, "16 hex digits and a newline: {id:?}");
    let stderr = String::from_utf8_lossy(&first.stderr);
    let start_line = stderr
        .lines()
        .find(|l| l.contains("autoharmonize-node starting"))
        .unwrap_or_else(|| panic!("a start line in {stderr}"));
    assert!(
        start_line.starts_with('{') && start_line.contains(id.trim()),
        "JSON log naming the member id: {start_line}"
    );

    let second = start(&args);
    assert!(second.status.success(), "{second:?}");
    assert_eq!(
        std::fs::read_to_string(state.join("member-id")).expect("member id"),
        id,
        "the id survives a restart"
    );
}
