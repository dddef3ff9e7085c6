//! The speaker's persistent identity: a random [`MemberId`] created on first
//! start and kept in `state_dir/member-id` across restarts and updates, and
//! a boot epoch counted up and made durable at every start
//! (`state_dir/boot-epoch`).
//!
//! The epoch is the member's incarnation ([`BootId`]) and the envelope's key
//! epoch: ordered, so peers refuse datagrams of an earlier run (replays), and
//! never reused, so no (key, nonce) pair ever repeats after a restart.
//!
//! Invariant: once written, the id never changes by itself. A file that
//! does not parse is an error for a person to resolve, never a reason to
//! pick a new id, because the room would then see a stranger where a known
//! speaker was. The file is written atomically (temporary file, fsync,
//! rename), so a power cut during the first start leaves either no file or
//! a complete one.
//!
//! Format: 16 lowercase hex digits and a newline, the same text the logs
//! show for a member id.

use std::path::{Path, PathBuf};

use autoharmonize_protocol::{BootId, MemberId};

use crate::atomic_file;
use crate::config::ConfigError;

/// Name of the id file inside the state directory.
pub const FILE_NAME: &str = "member-id";

/// Name of the boot epoch file inside the state directory.
pub const EPOCH_FILE_NAME: &str = "boot-epoch";

/// Where the id lives for a given state directory.
#[must_use]
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Reads the member id from `state_dir`, creating the directory and a new
/// random id on first start.
///
/// # Errors
/// [`ConfigError::State`] if the directory or file cannot be created, read or
/// written; [`ConfigError::MemberIdCorrupt`] if the file holds anything but
/// an id.
pub fn load_or_create(state_dir: &Path) -> Result<MemberId, ConfigError> {
    let file = path(state_dir);
    match std::fs::read(&file) {
        Ok(bytes) => parse(&file, &bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = MemberId(random_u64(&file)?);
            write_atomically(state_dir, &file, &format!("{id}\n"))?;
            Ok(id)
        }
        Err(source) => Err(ConfigError::State {
            path: file,
            action: "read",
            source,
        }),
    }
}

fn parse(file: &Path, bytes: &[u8]) -> Result<MemberId, ConfigError> {
    let corrupt = |problem: String| ConfigError::MemberIdCorrupt {
        path: file.to_path_buf(),
        problem,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| corrupt("the file is not text".into()))?;
    let digits = text.strip_suffix('\n').unwrap_or(text);
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        let shown: String = digits.chars().take(32).collect();
        return Err(corrupt(format!("the file holds {shown:?}")));
    }
    u64::from_str_radix(digits, 16)
        .map(MemberId)
        .map_err(|e| corrupt(e.to_string()))
}

fn random_u64(file: &Path) -> Result<u64, ConfigError> {
    getrandom::u64().map_err(|e| ConfigError::State {
        path: file.to_path_buf(),
        action: "draw a random member id",
        source: std::io::Error::other(e),
    })
}

/// Counts the boot epoch up, makes the new value durable, and returns it.
/// The first start gets epoch 1.
///
/// # Errors
/// [`ConfigError::State`] if the file cannot be read or written (the node
/// must not start with an epoch it could reuse);
/// [`ConfigError::MemberIdCorrupt`] if the file holds anything but a number,
/// or the counter is exhausted.
pub fn next_boot_epoch(state_dir: &Path) -> Result<BootId, ConfigError> {
    let file = state_dir.join(EPOCH_FILE_NAME);
    let corrupt = |problem: String| ConfigError::MemberIdCorrupt {
        path: file.clone(),
        problem,
    };
    let previous = match std::fs::read_to_string(&file) {
        Ok(text) => text.trim_end().parse::<u32>().map_err(|_| {
            corrupt(format!(
                "the file holds {:?}",
                text.chars().take(16).collect::<String>()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(source) => {
            return Err(ConfigError::State {
                path: file,
                action: "read",
                source,
            });
        }
    };
    let next = previous
        .checked_add(1)
        .ok_or_else(|| corrupt("the boot counter is exhausted".into()))?;
    write_atomically(state_dir, &file, &format!("{next}\n"))?;
    Ok(BootId(next))
}

fn write_atomically(state_dir: &Path, file: &Path, contents: &str) -> Result<(), ConfigError> {
    atomic_file::replace(state_dir, file, contents.as_bytes()).map_err(|e| ConfigError::State {
        path: e.path,
        action: e.action,
        source: e.source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_creates_an_id_that_survives_restarts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("nested/state");
        let first = load_or_create(&state).expect("created");
        let second = load_or_create(&state).expect("read back");
        assert_eq!(first, second);
        let text = std::fs::read_to_string(path(&state)).expect("file");
        assert_eq!(text, format!("{:016x}\n", first.0));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(&state)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    }

    #[test]
    fn boot_epochs_count_up_and_are_durable() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(next_boot_epoch(dir.path()).expect("first"), BootId(1));
        assert_eq!(next_boot_epoch(dir.path()).expect("second"), BootId(2));
        let text = std::fs::read_to_string(dir.path().join(EPOCH_FILE_NAME)).expect("file");
        assert_eq!(text, "2\n");
        std::fs::write(dir.path().join(EPOCH_FILE_NAME), "garbage").expect("write");
        assert!(matches!(
            next_boot_epoch(dir.path()),
            Err(ConfigError::MemberIdCorrupt { .. })
        ));
    }

    #[test]
    fn existing_id_is_read_as_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(path(dir.path()), "00000000deadbeef\n").expect("write");
        assert_eq!(
            load_or_create(dir.path()).expect("read"),
            MemberId(0xdead_beef)
        );
    }

    #[test]
    fn corrupt_file_is_an_error_and_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        for contents in ["", "not an id\n", "123\n", "00000000deadbeefff\n"] {
            std::fs::write(path(dir.path()), contents).expect("write");
            let err = load_or_create(dir.path()).expect_err(contents);
            assert!(matches!(err, ConfigError::MemberIdCorrupt { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains("member-id: the file holds"), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
            assert_eq!(
                std::fs::read_to_string(path(dir.path())).expect("kept"),
                contents
            );
        }
        std::fs::write(path(dir.path()), [0xff, 0xfe]).expect("write");
        assert!(
            load_or_create(dir.path())
                .expect_err("binary")
                .to_string()
                .contains("not text")
        );
    }
}
