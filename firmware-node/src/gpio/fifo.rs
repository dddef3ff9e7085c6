//! A [`Board`] whose buttons are pressed by another process, through a
//! named pipe: the test-only input behind `--test-buttons-fifo PATH`.
//!
//! Why it exists: the chaos harness (`tests/src/chaos.rs`) drives a room of
//! real node processes and must press real buttons on them, through the
//! whole GPIO path (debouncer, intent, cast, refusal), while a controller
//! votes at the same time. No machine running the tests has GPIO pins, and
//! the scripted [`super::fake::FakeBoard`] only lives inside a test process.
//!
//! Protocol: one press per line, `play_pause`, `volume_up` or
//! `volume_down`, optionally followed by how long it is held in ms
//! (`volume_up 900` holds the button long enough to repeat); unknown lines
//! are logged and ignored. A press becomes a clean closing edge now and an
//! opening edge when the hold ends (default [`DEFAULT_HOLD`]), so the
//! debouncer sees what a tactile switch without bounce would produce.
//!
//! Invariants: the pipe is opened for reading *and* writing, so a writer
//! that goes away never makes the reader see end-of-file (the board keeps
//! listening for the next writer); the reading thread never blocks the
//! runtime; [`Board::next_edge`] is cancel-safe (an edge leaves the queue
//! only once its instant has come, and a line received is queued at once).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{Board, Button, Edge};

/// How long a press is held when the line does not say.
pub const DEFAULT_HOLD: Duration = Duration::from_millis(60);
/// Longest hold accepted (a line asking for more is clamped).
pub const MAX_HOLD: Duration = Duration::from_secs(5);

/// A press read from the pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Press {
    /// Which button.
    pub button: Button,
    /// How long it is held.
    pub hold: Duration,
}

/// Parses one line of the pipe protocol; `None` for anything else.
#[must_use]
pub fn parse_line(line: &str) -> Option<Press> {
    let mut words = line.split_whitespace();
    let button = match words.next()? {
        "play_pause" => Button::PlayPause,
        "volume_up" => Button::VolumeUp,
        "volume_down" => Button::VolumeDown,
        _ => return None,
    };
    let hold = match words.next() {
        None => DEFAULT_HOLD,
        Some(ms) => Duration::from_millis(ms.parse().ok()?).min(MAX_HOLD),
    };
    if words.next().is_some() {
        return None;
    }
    Some(Press { button, hold })
}

/// Buttons pressed through a named pipe.
#[derive(Debug)]
pub struct FifoBoard {
    presses: mpsc::UnboundedReceiver<Press>,
    queue: VecDeque<Edge>,
    open: bool,
}

impl FifoBoard {
    /// Opens the named pipe at `path` (created first if missing) and starts
    /// the thread that reads it.
    ///
    /// # Errors
    /// The pipe cannot be created or opened.
    pub fn open(path: &Path) -> std::io::Result<FifoBoard> {
        if !path.exists() {
            nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(std::io::Error::from)?;
        }
        // Read and write: with a writer always present (this one), the
        // reader never sees end-of-file between two test writers.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let (tx, presses) = mpsc::unbounded_channel();
        let shown: PathBuf = path.to_path_buf();
        std::thread::Builder::new()
            .name("ah-test-buttons".into())
            .spawn(move || {
                for line in BufReader::new(file).lines() {
                    let Ok(line) = line else {
                        warn!(path = %shown.display(), "test button pipe unreadable");
                        return;
                    };
                    match parse_line(&line) {
                        Some(p) => {
                            if tx.send(p).is_err() {
                                return;
                            }
                        }
                        None => warn!(line, "test button pipe: not a press, ignored"),
                    }
                }
            })?;
        Ok(FifoBoard {
            presses,
            queue: VecDeque::new(),
            open: true,
        })
    }

    fn queue_press(&mut self, p: Press) {
        let now = Instant::now();
        // After any edge already queued, so edges stay in time order.
        let start = self.queue.back().map_or(now, |e| e.at.max(now));
        debug!(button = ?p.button, hold = ?p.hold, "test button press");
        for (pressed, at) in [(true, start), (false, start + p.hold)] {
            self.queue.push_back(Edge {
                button: p.button,
                pressed,
                at,
            });
        }
    }
}

impl Board for FifoBoard {
    async fn next_edge(&mut self) -> Option<Edge> {
        loop {
            if let Some(at) = self.queue.front().map(|e| e.at) {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => return self.queue.pop_front(),
                    p = self.presses.recv(), if self.open => match p {
                        Some(p) => self.queue_press(p),
                        None => self.open = false,
                    },
                }
            } else if self.open {
                match self.presses.recv().await {
                    Some(p) => self.queue_press(p),
                    None => self.open = false,
                }
            } else {
                return None;
            }
        }
    }

    fn set_led(&mut self, _lit: bool) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_to_presses() {
        assert_eq!(
            parse_line("play_pause"),
            Some(Press {
                button: Button::PlayPause,
                hold: DEFAULT_HOLD
            })
        );
        assert_eq!(
            parse_line(" volume_up 900 "),
            Some(Press {
                button: Button::VolumeUp,
                hold: Duration::from_millis(900)
            })
        );
        assert_eq!(
            parse_line("volume_down 999999").map(|p| p.hold),
            Some(MAX_HOLD)
        );
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("louder"), None);
        assert_eq!(parse_line("volume_up soon"), None);
        assert_eq!(parse_line("volume_up 10 20"), None);
    }

    #[tokio::test]
    async fn presses_written_to_the_pipe_come_out_as_edges() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("buttons");
        let mut board = FifoBoard::open(&path).expect("fifo");
        let mut w = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("writer");
        writeln!(w, "bogus\nvolume_down 30\nplay_pause").expect("write");
        drop(w);
        let mut got = Vec::new();
        for _ in 0..4 {
            let e = tokio::time::timeout(Duration::from_secs(5), board.next_edge())
                .await
                .expect("an edge in time")
                .expect("board open");
            got.push((e.button, e.pressed, e.at));
        }
        let kinds: Vec<(Button, bool)> = got.iter().map(|g| (g.0, g.1)).collect();
        assert_eq!(
            kinds,
            [
                (Button::VolumeDown, true),
                (Button::VolumeDown, false),
                (Button::PlayPause, true),
                (Button::PlayPause, false)
            ]
        );
        assert!(got[1].2 - got[0].2 >= Duration::from_millis(30));
        assert!(got.windows(2).all(|w| w[0].2 <= w[1].2));
    }
}
