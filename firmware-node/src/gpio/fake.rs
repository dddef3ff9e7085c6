//! A scripted [`Board`] for tests: button edges at chosen instants, and a
//! record of every LED switch.
//!
//! Why it exists: no CI machine has GPIO, and button behaviour is all about
//! timing (bounces of a few ms, presses faster than a heartbeat, long
//! holds). With tokio's paused clock the script plays out exactly and
//! instantly, so tests assert what was cast and when the LED switched, to
//! the millisecond.
//!
//! Invariant: edges come out in script order at their instants (the script
//! is sorted on insertion), and [`Board::next_edge`] is cancel-safe (an edge
//! leaves the script only once its instant has come).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Board, Button, Edge};

/// LED switches seen by a [`FakeBoard`]: `(instant, lit)` in order.
#[derive(Clone, Debug, Default)]
pub struct LedLog(Arc<Mutex<Vec<(Instant, bool)>>>);

impl LedLog {
    /// Every switch so far.
    #[must_use]
    pub fn switches(&self) -> Vec<(Instant, bool)> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Whether the LED is lit now (dark before the first switch).
    #[must_use]
    pub fn lit(&self) -> bool {
        self.switches().last().is_some_and(|(_, lit)| *lit)
    }
}

/// A board that plays a script of edges.
#[derive(Debug)]
pub struct FakeBoard {
    t0: Instant,
    script: VecDeque<Edge>,
    led: LedLog,
}

impl FakeBoard {
    /// An empty script whose times count from `t0`; returns the LED log to
    /// watch.
    #[must_use]
    pub fn new(t0: Instant) -> (FakeBoard, LedLog) {
        let led = LedLog::default();
        let board = FakeBoard {
            t0,
            script: VecDeque::new(),
            led: led.clone(),
        };
        (board, led)
    }

    /// One raw edge `at_ms` after `t0`.
    #[must_use]
    pub fn edge(mut self, at_ms: u64, button: Button, pressed: bool) -> FakeBoard {
        let at = self.t0 + Duration::from_millis(at_ms);
        let i = self.script.partition_point(|e| e.at <= at);
        self.script.insert(
            i,
            Edge {
                button,
                pressed,
                at,
            },
        );
        self
    }

    /// A press `at_ms` after `t0`, held `held_ms`, whose contacts bounce
    /// `bounces` times (1 ms apart) when closing and when opening.
    #[must_use]
    pub fn press(self, at_ms: u64, button: Button, held_ms: u64, bounces: u64) -> FakeBoard {
        let mut board = self;
        for (start, level) in [(at_ms, true), (at_ms + held_ms, false)] {
            board = board.edge(start, button, level);
            for i in 0..bounces {
                board = board.edge(start + 2 * i + 1, button, !level).edge(
                    start + 2 * i + 2,
                    button,
                    level,
                );
            }
        }
        board
    }
}

impl Board for FakeBoard {
    async fn next_edge(&mut self) -> Option<Edge> {
        let at = self.script.front()?.at;
        tokio::time::sleep_until(at).await;
        self.script.pop_front()
    }

    fn set_led(&mut self, lit: bool) {
        if let Ok(mut log) = self.led.0.lock() {
            log.push((Instant::now(), lit));
        }
    }
}
