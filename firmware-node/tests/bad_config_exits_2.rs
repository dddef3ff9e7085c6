//! A configuration a person must fix stops the real binary with exit code 2
//! and exactly one line on stderr naming the file or flag, the key and the
//! problem.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .output()
        .expect("the binary runs")
}

/// Asserts exit code 2 and returns the single stderr line.
fn config_error(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr: {stderr:?}");
    lines[0].to_owned()
}

fn write_secret(dir: &Path) -> String {
    let secret = dir.join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").expect("secret");
    secret.display().to_string()
}

#[test]
fn out_of_range_value_in_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = write_secret(dir.path());
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!("secret_file = {secret:?}\nheartbeat_ms = 5\n"),
    )
    .expect("config");
    let config = config.display().to_string();
    let line = config_error(&run(&["--config", &config]));
    assert_eq!(
        line,
        format!("config error: {config}: key 'heartbeat_ms': 5 is below the minimum of 20")
    );
}

#[test]
fn unknown_key_in_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "name = \"kitchen\"\nvolume = 11\n").expect("config");
    let config = config.display().to_string();
    let line = config_error(&run(&["--config", &config]));
    assert!(
        line.starts_with(&format!(
            "config error: {config}: line 2: key 'volume': unknown key, expected one of"
        )),
        "{line}"
    );
}

#[test]
fn missing_config_file_given_by_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("absent.toml").display().to_string();
    let line = config_error(&run(&["--config", &config]));
    assert_eq!(
        line,
        format!("config error: {config}: no such file (given by --config)")
    );
}

#[test]
fn short_secret_given_by_flag() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").expect("config");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "too short").expect("secret");
    let line = config_error(&run(&[
        "--config",
        &config.display().to_string(),
        "--secret-file",
        &secret.display().to_string(),
    ]));
    assert!(
        line.starts_with("config error: --secret-file: key 'secret_file': the secret in "),
        "{line}"
    );
    assert!(
        line.contains("is 9 bytes, at least 16 are required"),
        "{line}"
    );
}
