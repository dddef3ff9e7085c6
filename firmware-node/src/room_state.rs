//! The room's last agreed state, kept on disk (`state_dir/room-state`) so
//! that a room whose power is cut comes back as it was: its track, each
//! channel's position, gain and pause (see `protocol::saved`).
//!
//! The mesh loop offers the state whenever it changes (a decision, or the
//! positions moving while a channel plays); a writer thread of its own
//! writes the newest offer with [`atomic_file::replace`], at most once per
//! [`SAVE_EVERY`], so a slow SD card never holds up the mesh and a power cut
//! at any instant leaves a complete file at most that old (plus one write).
//! Offers replace each other: nothing queues, memory stays constant.
//!
//! Invariant: a file that does not read back is never trusted (the room
//! then starts fresh, and says why in the log); it is replaced by the next
//! save.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use autoharmonize_protocol::saved::SavedState;
use tracing::{info, warn};

use crate::atomic_file;

/// Name of the state file inside the state directory.
pub const FILE_NAME: &str = "room-state";

/// Least time between two writes. A room restored after a power cut is
/// within this (plus one write's latency) of where it stood; shorter means
/// more writes to the SD card while music plays (four small files a
/// second, nothing while paused).
pub const SAVE_EVERY: Duration = Duration::from_millis(250);

/// How often a failing write is logged at warn level.
const FAILURE_LOG_EVERY: Duration = Duration::from_secs(60);

/// Where the state lives for a given state directory.
#[must_use]
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE_NAME)
}

/// Reads the state saved before the last stop, if there is a usable one.
/// A missing file is a first start; an unreadable or corrupt one is logged
/// and ignored.
#[must_use]
pub fn load(state_dir: &Path) -> Option<SavedState> {
    let file = path(state_dir);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(file = %file.display(), "cannot read the saved room state ({e}): starting fresh");
            return None;
        }
    };
    match SavedState::decode(&bytes) {
        Ok(s) => {
            info!(
                revision = s.revision,
                channels = s.channels.len(),
                was_playing = s.was_playing(),
                "found the room state saved before the last stop"
            );
            Some(s)
        }
        Err(e) => {
            warn!(file = %file.display(), "ignoring the saved room state: {e}");
            None
        }
    }
}

#[derive(Default)]
struct Slot {
    pending: Option<SavedState>,
    stop: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    wake: Condvar,
}

/// The writer thread and the slot the mesh loop offers states into.
pub struct Saver {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Saver {
    /// Starts the writer for `state_dir`.
    ///
    /// # Errors
    /// If the thread cannot be spawned.
    pub fn spawn(state_dir: PathBuf) -> std::io::Result<Saver> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot::default()),
            wake: Condvar::new(),
        });
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("room-state".into())
            .spawn(move || write_loop(&theirs, &state_dir))?;
        Ok(Saver {
            shared,
            thread: Some(thread),
        })
    }

    /// Offers the state to save; it replaces any offer not yet written.
    /// Never blocks on the disk.
    pub fn offer(&self, state: SavedState) {
        let mut slot = self
            .shared
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slot.pending = Some(state);
        self.shared.wake.notify_one();
    }

    /// Writes what is pending, then stops the thread (at shutdown).
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        {
            let mut slot = self
                .shared
                .slot
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            slot.stop = true;
            self.shared.wake.notify_one();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_loop(shared: &Shared, state_dir: &Path) {
    let file = path(state_dir);
    let mut last_failure_log: Option<Instant> = None;
    let mut failures = 0u64;
    loop {
        let (next, stopping) = {
            let mut slot = shared.slot.lock().unwrap_or_else(PoisonError::into_inner);
            while slot.pending.is_none() && !slot.stop {
                slot = shared
                    .wake
                    .wait(slot)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            (slot.pending.take(), slot.stop)
        };
        if let Some(state) = next {
            match atomic_file::replace(state_dir, &file, &state.encode()) {
                Ok(()) => {
                    if failures > 0 {
                        info!(failures, "the room state is saved again");
                        failures = 0;
                    }
                }
                Err(e) => {
                    failures += 1;
                    if last_failure_log.is_none_or(|t| t.elapsed() >= FAILURE_LOG_EVERY) {
                        last_failure_log = Some(Instant::now());
                        warn!(
                            failures,
                            "cannot save the room state ({e}): after a power cut the room would come back as it was at the last save"
                        );
                    }
                }
            }
        }
        if stopping {
            // What was pending at the stop is written; later offers are not
            // expected (the loop has ended).
            let slot = shared.slot.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.pending.is_none() {
                return;
            }
            continue;
        }
        std::thread::sleep(SAVE_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use autoharmonize_protocol::MeshTime;
    use autoharmonize_protocol::transport::{Gain, Transport};

    fn state(revision: u64) -> SavedState {
        let mut t = Transport::new(2, MeshTime(0), Gain(revision.min(100) as u8));
        t.revision = revision;
        SavedState::capture(&t, MeshTime(0))
    }

    #[test]
    fn the_newest_offer_is_written_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(load(dir.path()), None, "a first start has nothing");
        let saver = Saver::spawn(dir.path().to_path_buf()).expect("spawn");
        for r in 1..=50 {
            saver.offer(state(r));
        }
        saver.finish();
        assert_eq!(load(dir.path()), Some(state(50)));
    }

    #[test]
    fn writes_are_spaced_and_offers_do_not_queue() {
        let dir = tempfile::tempdir().expect("temp dir");
        let saver = Saver::spawn(dir.path().to_path_buf()).expect("spawn");
        saver.offer(state(1));
        // Wait for the first write, then offer many at once: they replace
        // each other, and only the last one is written after the spacing.
        let deadline = Instant::now() + Duration::from_secs(30);
        while load(dir.path()).is_none() {
            assert!(Instant::now() < deadline, "the first write never came");
            std::thread::sleep(Duration::from_millis(5));
        }
        for r in 2..=1_000 {
            saver.offer(state(r));
        }
        saver.finish();
        assert_eq!(load(dir.path()), Some(state(1_000)));
    }

    #[test]
    fn a_corrupt_or_foreign_file_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bytes = state(3).encode();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xFF;
        std::fs::write(path(dir.path()), &bytes).expect("write");
        assert_eq!(load(dir.path()), None);
        std::fs::write(path(dir.path()), b"[room]\nvolume = 3\n").expect("write");
        assert_eq!(load(dir.path()), None);
    }

    #[test]
    fn a_cut_during_a_write_leaves_the_previous_state() {
        // What a power cut mid-write leaves: the temporary file, partly
        // written, beside the complete previous state. The loader reads the
        // previous one; the next save replaces the leftover.
        let dir = tempfile::tempdir().expect("temp dir");
        let saver = Saver::spawn(dir.path().to_path_buf()).expect("spawn");
        saver.offer(state(7));
        saver.finish();
        let full = state(8).encode();
        for cut in 0..full.len() {
            let tmp = dir
                .path()
                .join(format!(".{FILE_NAME}.tmp.{}", 4_000_000 + cut));
            std::fs::write(&tmp, &full[..cut]).expect("partial write");
            assert_eq!(load(dir.path()), Some(state(7)), "cut at {cut}");
        }
    }
}
