//! Replaces a small file so that a power cut at any instant leaves either
//! the old contents or the new, never a mix: write a temporary file beside
//! it, fsync it, rename it over the old one, fsync the directory.
//!
//! Used for everything the speaker must find intact after a crash: its id,
//! its boot epoch, and the room state it saved (`room_state`).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A step of [`replace`] failed.
#[derive(Debug, thiserror::Error)]
#[error("{}: cannot {action}: {source}", path.display())]
pub struct WriteError {
    /// The directory or file.
    pub path: PathBuf,
    /// What was attempted ("create the directory", "write", ...).
    pub action: &'static str,
    /// What the operating system said.
    #[source]
    pub source: std::io::Error,
}

/// Atomically replaces `file` (inside `dir`, created if missing) with
/// `contents`. On error the old file, if any, is untouched and the
/// temporary file removed; a retry may help if the cause was transient
/// (a full disk), not if the directory is read-only.
///
/// # Errors
/// Which step failed, with the operating system's error.
pub fn replace(dir: &Path, file: &Path, contents: &[u8]) -> Result<(), WriteError> {
    let failed = |path: &Path, action: &'static str| {
        let path = path.to_path_buf();
        move |source| WriteError {
            path,
            action,
            source,
        }
    };
    std::fs::create_dir_all(dir).map_err(failed(dir, "create the directory"))?;
    // The pid keeps two processes racing on one directory from writing into
    // the same temporary file; the rename makes the last one win whole.
    let name = file
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(contents)?;
        // Durable before it becomes visible under its real name.
        f.sync_all()
    };
    if let Err(source) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(&tmp, "write")(source));
    }
    if let Err(source) = std::fs::rename(&tmp, file) {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(file, "rename the new file into place")(source));
    }
    // Make the rename itself durable. Opening a directory for fsync works on
    // Linux; where it does not, the file is still written, only less durably.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("sub").join("x");
        replace(&dir.path().join("sub"), &file, b"one").expect("first");
        replace(&dir.path().join("sub"), &file, b"two").expect("second");
        assert_eq!(std::fs::read(&file).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x")]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("x");
        replace(dir.path(), &file, b"old").expect("first");
        // The target is now a directory: the rename fails, the old stays.
        let blocked = dir.path().join("y");
        std::fs::create_dir(&blocked).expect("dir");
        std::fs::write(blocked.join("inner"), b"keep").expect("inner");
        let err = replace(dir.path(), &blocked, b"new").expect_err("cannot replace a directory");
        assert_eq!(err.action, "rename the new file into place");
        assert_eq!(std::fs::read(&file).expect("read"), b"old");
    }
}
