//! The shipped systemd files, checked by systemd's own tools (never by a
//! reimplementation): the unit passes `systemd-analyze verify` and scores an
//! exposure of 2.0 or lower in `systemd-analyze security --offline=true`
//! while still letting the audio thread ask for real-time priority; the
//! sysusers.d and tmpfiles.d files create the user, its groups and its
//! directories in a scratch root.
//!
//! Prerequisite: the `systemd` package (systemd-analyze, systemd-sysusers,
//! systemd-tmpfiles). With `CI=true` its absence fails the tests; elsewhere
//! they skip with a loud notice.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use autoharmonize_tests::netns::require_command_or_skip;

const BIN: &str = env!("CARGO_BIN_EXE_autoharmonize-node");
const UNIT_NAME: &str = "autoharmonize-node.service";
/// Where the Debian package installs the binary, and so the unit's
/// `ExecStart=`.
const INSTALLED_BIN: &str = "/usr/bin/autoharmonize-node";

fn systemd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

fn unit_text() -> String {
    std::fs::read_to_string(systemd_dir().join(UNIT_NAME)).expect("the unit file")
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .env("SYSTEMD_COLORS", "0")
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

/// `systemd-analyze verify` refuses a unit whose `ExecStart=` binary does
/// not exist, and this machine has no /usr/bin/autoharmonize-node (tests
/// never install into the system). So a copy of the unit, identical but
/// for `ExecStart=` pointing at the binary cargo just built, is verified;
/// the original's path is checked to be the package's.
#[test]
fn unit_passes_systemd_analyze_verify() {
    if !require_command_or_skip(
        "unit_passes_systemd_analyze_verify",
        "systemd-analyze",
        "--version",
    ) {
        return;
    }
    let text = unit_text();
    let exec: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(exec, vec![format!("ExecStart={INSTALLED_BIN}").as_str()]);
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join(UNIT_NAME);
    std::fs::write(&copy, text.replace(INSTALLED_BIN, BIN)).expect("copy");
    let warnings = verify(&copy);
    assert!(
        warnings.is_empty(),
        "verify warns about the unit:\n{warnings:#?}"
    );

    // The check can fail: a bad value is caught.
    let broken = text.replace("ProtectHome=yes", "ProtectHome=maybe-not");
    std::fs::write(&copy, broken.replace(INSTALLED_BIN, BIN)).expect("copy");
    let warnings = verify(&copy);
    assert!(
        warnings.iter().any(|w| w.contains("maybe-not")),
        "a bad value is reported: {warnings:#?}"
    );
}

/// Runs `systemd-analyze verify` on `unit`; panics if it fails, returns
/// the lines about the unit itself. Warnings (unknown keys, bad values) do
/// not make verify fail, but they fail the tests; other units' noise (from
/// the host's own units) is not ours.
fn verify(unit: &Path) -> Vec<String> {
    let out = run(
        "systemd-analyze",
        &["verify", unit.to_str().expect("utf-8")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed:\n{stderr}");
    stderr
        .lines()
        .filter(|l| l.contains(UNIT_NAME))
        .map(str::to_owned)
        .collect()
}

/// `systemd-analyze security --offline=true` with a threshold of 2.0: it
/// exits non-zero above it. `--threshold` takes an integer in tenths of the
/// printed exposure (systemd compares it with its internal 0-100 score), so
/// an exposure of 2.0 is `--threshold=20`; `--threshold=2.0` is rejected as
/// unparsable (systemd 252).
fn security(unit: &Path) -> Output {
    run(
        "systemd-analyze",
        &[
            "security",
            "--offline=true",
            "--threshold=20",
            "--no-pager",
            unit.to_str().expect("utf-8"),
        ],
    )
}

/// The overall exposure `systemd-analyze security` prints, e.g. 1.7.
fn exposure(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))?
        .split(':')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn unit_security_exposure_is_at_most_2_with_realtime_audio_allowed() {
    if !require_command_or_skip(
        "unit_security_exposure_is_at_most_2_with_realtime_audio_allowed",
        "systemd-analyze",
        "--version",
    ) {
        return;
    }
    let unit = systemd_dir().join(UNIT_NAME);
    let out = security(&unit);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exposure above 2.0:\n{stdout}\n{stderr}"
    );
    let level = exposure(&stdout).unwrap_or_else(|| panic!("no exposure in:\n{stdout}"));
    eprintln!("systemd-analyze security exposure: {level}");
    assert!(level <= 2.0, "exposure {level}:\n{stdout}");

    // Real-time audio stays possible: RLIMIT_RTPRIO for the output thread,
    // no process-wide real-time policy, no RestrictRealtime= and
    // sched_setscheduler not filtered out.
    let text = unit_text();
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    assert!(keys.contains(&"LimitRTPRIO"), "LimitRTPRIO= is set");
    for forbidden in [
        "RestrictRealtime",
        "CPUSchedulingPolicy",
        "CPUSchedulingPriority",
    ] {
        assert!(!keys.contains(&forbidden), "{forbidden}= must not be set");
    }
    assert!(
        !text.contains("~@resources"),
        "sched_setscheduler stays allowed"
    );
    let realtime = stdout
        .lines()
        .find(|l| l.contains("RestrictRealtime="))
        .unwrap_or_else(|| panic!("no RestrictRealtime line in:\n{stdout}"));
    assert!(realtime.contains("may acquire realtime"), "{realtime}");

    // The threshold is live: the same unit without its hardening fails.
    let dir = tempfile::tempdir().expect("temp dir");
    let bare = dir.path().join(UNIT_NAME);
    let stripped: String = text
        .lines()
        .filter(|l| l.starts_with('[') || l.starts_with("ExecStart=") || l.starts_with("Type="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&bare, stripped).expect("bare unit");
    let out = security(&bare);
    assert!(
        !out.status.success(),
        "an unhardened unit passes the threshold"
    );
}

/// Sets up a scratch root holding only the accounts every Debian system has.
fn scratch_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).expect("etc");
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(etc.join("group"), "root:x:0:\naudio:x:29:\n").expect("group");
    root
}

#[test]
fn sysusers_and_tmpfiles_create_the_user_groups_and_directories() {
    let name = "sysusers_and_tmpfiles_create_the_user_groups_and_directories";
    if !require_command_or_skip(name, "systemd-sysusers", "--version")
        || !require_command_or_skip(name, "systemd-tmpfiles", "--version")
    {
        return;
    }
    let root = scratch_root();
    let root_arg = format!("--root={}", root.path().display());
    let sysusers = systemd_dir().join("sysusers.d/autoharmonize-node.conf");
    let out = run(
        "systemd-sysusers",
        &[&root_arg, sysusers.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{out:?}");
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).expect("passwd");
    let user = passwd
        .lines()
        .find(|l| l.starts_with("autoharmonize:"))
        .unwrap_or_else(|| panic!("no user in:\n{passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    let uid: u32 = fields[2].parse().expect("uid");
    assert!(uid < 1000, "a system user: {user}");
    assert_eq!(fields[5], "/var/lib/autoharmonize", "{user}");
    assert!(fields[6].ends_with("nologin"), "no login shell: {user}");
    let group = std::fs::read_to_string(root.path().join("etc/group")).expect("group");
    for g in ["audio", "gpio"] {
        let line = group
            .lines()
            .find(|l| l.starts_with(&format!("{g}:")))
            .unwrap_or_else(|| panic!("no {g} group in:\n{group}"));
        assert!(
            line.rsplit(':')
                .next()
                .is_some_and(|m| m.split(',').any(|u| u == "autoharmonize")),
            "autoharmonize is in {g}: {line}"
        );
    }

    if !nix::unistd::Uid::effective().is_root() {
        // Creating directories owned by another user needs root.
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name}: CI must run as root"
        );
        eprintln!("!!! SKIPPED the tmpfiles half of {name}: not root");
        return;
    }
    let tmpfiles = systemd_dir().join("tmpfiles.d/autoharmonize-node.conf");
    let out = run(
        "systemd-tmpfiles",
        &["--create", &root_arg, tmpfiles.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{out:?}");
    for (dir, mode) in [
        ("var/lib/autoharmonize", 0o750),
        ("var/lib/autoharmonize/media", 0o755),
    ] {
        let meta = std::fs::metadata(root.path().join(dir)).expect(dir);
        assert!(meta.is_dir(), "{dir}");
        assert_eq!(meta.permissions().mode() & 0o7777, mode, "{dir}");
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&meta),
            uid,
            "{dir} owner"
        );
    }
}
