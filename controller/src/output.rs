//! The CLI's own output (results on stdout, errors on stderr), written so
//! that a reader going away is not an error: `autoharmonize status --json |
//! head -1` must end quietly, as other Unix tools do, rather than panic the
//! way `println!` does on a closed pipe (Rust ignores SIGPIPE, so the write
//! fails with `EPIPE` instead of the process being killed).
//!
//! Once a stream fails (a closed pipe, a full disk), nothing more is
//! written to it for the rest of the run: what the verb did is done, and
//! its exit status still says how it went. A mixer whose terminal went away
//! keeps serving.
//!
//! Invariant: nothing in the binary writes to stdout or stderr except
//! through [`out!`](crate::out), [`outln!`](crate::outln) and
//! [`errln!`](crate::errln).

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout failed: nothing more is written to it.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
/// Set once stderr failed.
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `args` to `w` and flushes, unless `gone` says an earlier write
/// failed. A failure sets `gone` and is reported as `false`; it is never
/// an error for the caller, who has nothing better to do with it.
pub fn write_to(w: &mut impl Write, gone: &AtomicBool, args: fmt::Arguments<'_>) -> bool {
    if gone.load(Ordering::Relaxed) {
        return false;
    }
    match w.write_fmt(args).and_then(|()| w.flush()) {
        Ok(()) => true,
        Err(_) => {
            gone.store(true, Ordering::Relaxed);
            false
        }
    }
}

/// Writes to stdout (see [`write_to`]); false if nothing could be written.
pub fn stdout(args: fmt::Arguments<'_>) -> bool {
    write_to(&mut io::stdout().lock(), &STDOUT_GONE, args)
}

/// Writes to stderr (see [`write_to`]); false if nothing could be written.
pub fn stderr(args: fmt::Arguments<'_>) -> bool {
    write_to(&mut io::stderr().lock(), &STDERR_GONE, args)
}

/// Whether stdout has failed (its reader went away).
#[must_use]
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// `print!` that never panics: see [`crate::output`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!($($arg)*))
    };
}

/// `println!` that never panics: see [`crate::output`].
#[macro_export]
macro_rules! outln {
    () => {
        $crate::output::stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics: see [`crate::output`].
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that takes `room` bytes, then has gone away.
    struct Pipe {
        taken: Vec<u8>,
        room: usize,
        writes_after_close: usize,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.taken.len() >= self.room {
                self.writes_after_close += 1;
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            let n = buf.len().min(self.room - self.taken.len());
            self.taken.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_ends_the_output_without_an_error() {
        let gone = AtomicBool::new(false);
        let mut p = Pipe {
            taken: Vec::new(),
            room: 9,
            writes_after_close: 0,
        };
        assert!(write_to(&mut p, &gone, format_args!("{}\n", "line one")));
        assert!(!gone.load(Ordering::Relaxed));
        // The reader took what it wanted and closed: the rest is dropped.
        assert!(!write_to(&mut p, &gone, format_args!("line two\n")));
        assert!(gone.load(Ordering::Relaxed));
        assert!(!write_to(&mut p, &gone, format_args!("line three\n")));
        assert_eq!(p.taken, b"line one\n");
        assert_eq!(p.writes_after_close, 1, "no write after the first failure");
    }
}
