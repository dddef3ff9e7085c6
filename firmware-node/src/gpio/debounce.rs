//! One button's debouncer: raw level changes in, presses out.
//!
//! A mechanical switch bounces for a few milliseconds when it closes or
//! opens, so the raw pin toggles several times per press. A level counts only
//! once it has stayed unchanged for the debounce window; the press is
//! reported when the pressed level settles, which costs one window of
//! latency (20 ms by default, a fifth of a heartbeat) and in exchange never
//! turns a spike of electrical noise into a vote. Buttons that repeat (the
//! volume buttons) report further presses while held: the first after
//! [`REPEAT_DELAY`], then every [`REPEAT_EVERY`].
//!
//! Sans-IO like the protocol core: every input carries `now`, the caller
//! sleeps until [`Debouncer::poll_timeout`] and then calls
//! [`Debouncer::handle_timeout`] until it returns `None`. Invariant: a
//! press is reported only on a settled transition from released to pressed
//! (or by the repeat timer while the settled level stays pressed), so one
//! physical press yields exactly one [`Press::Down`] however it bounces.

use std::time::Duration;

use tokio::time::Instant;

/// How long a repeating button must be held before it repeats.
pub const REPEAT_DELAY: Duration = Duration::from_millis(500);
/// Interval between repeats while the button stays held.
pub const REPEAT_EVERY: Duration = Duration::from_millis(200);

/// What a settled button did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Press {
    /// The button went down (once per physical press).
    Down,
    /// The button is still held and repeats.
    Repeat,
}

/// Debounce and hold-to-repeat state of one button.
#[derive(Clone, Debug)]
pub struct Debouncer {
    window: Duration,
    repeats: bool,
    /// The last raw level reported (true: pressed).
    raw: bool,
    /// The level that counts.
    settled: bool,
    /// When `raw` will count, if it changed within the window.
    settle_at: Option<Instant>,
    /// When the held button repeats next.
    repeat_at: Option<Instant>,
}

impl Debouncer {
    /// A released button; `repeats` turns hold-to-repeat on.
    #[must_use]
    pub fn new(window: Duration, repeats: bool) -> Debouncer {
        Debouncer {
            window,
            repeats,
            raw: false,
            settled: false,
            settle_at: None,
            repeat_at: None,
        }
    }

    /// A raw level change at `at`. Any edge restarts the window: the level
    /// counts only after a full window of quiet.
    pub fn on_edge(&mut self, at: Instant, pressed: bool) {
        self.raw = pressed;
        self.settle_at = Some(at + self.window);
    }

    /// When [`Debouncer::handle_timeout`] has something to do next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.settle_at, self.repeat_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Advances to `now`; returns one press if one is due. Call again until
    /// it returns `None`.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Press> {
        if let Some(at) = self.settle_at.filter(|at| *at <= now) {
            self.settle_at = None;
            if self.raw != self.settled {
                self.settled = self.raw;
                if self.settled {
                    self.repeat_at = self.repeats.then(|| at + REPEAT_DELAY);
                    return Some(Press::Down);
                }
                self.repeat_at = None;
            }
        }
        // A bounce while held (raw briefly released) does not stop the
        // repeat: only a settled release does.
        if let Some(at) = self.repeat_at.filter(|at| *at <= now) {
            // After a late wake-up, repeat once and resume the cadence from
            // now instead of firing a burst of catch-up presses.
            self.repeat_at = Some((at + REPEAT_EVERY).max(now + REPEAT_EVERY / 2));
            return Some(Press::Repeat);
        }
        None
    }

    /// Whether the button counts as held.
    #[must_use]
    pub fn is_pressed(&self) -> bool {
        self.settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_millis(20);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Feeds `(ms, level)` edges and collects presses with their times (ms
    /// from the start), running the timers up to `until` ms.
    fn run(d: &mut Debouncer, edges: &[(u64, bool)], until: u64) -> Vec<(u64, Press)> {
        let t0 = Instant::now();
        let mut out = Vec::new();
        let mut edges = edges.iter().peekable();
        loop {
            let next_edge = edges.peek().map(|(t, _)| t0 + ms(*t));
            let next = match (next_edge, d.poll_timeout()) {
                (Some(e), Some(t)) => e.min(t),
                (e, t) => match e.or(t) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > t0 + ms(until) {
                break;
            }
            // Timers due at the same instant as an edge run first: the
            // edge arrived after them.
            while let Some(p) = d.handle_timeout(next) {
                out.push((u64::try_from((next - t0).as_millis()).expect("small"), p));
            }
            if next_edge == Some(next) {
                let (_, level) = edges.next().expect("peeked");
                d.on_edge(next, *level);
            }
        }
        out
    }

    #[test]
    fn a_bouncing_press_counts_once_after_the_window() {
        let mut d = Debouncer::new(W, false);
        // Closes at 0 with three bounces, opens at 100 with two.
        let edges = [
            (0, true),
            (2, false),
            (3, true),
            (5, false),
            (6, true),
            (100, false),
            (101, true),
            (103, false),
        ];
        assert_eq!(run(&mut d, &edges, 1000), vec![(26, Press::Down)]);
        assert!(!d.is_pressed());
    }

    #[test]
    fn a_spike_shorter_than_the_window_is_ignored() {
        let mut d = Debouncer::new(W, false);
        assert_eq!(run(&mut d, &[(0, true), (15, false)], 500), vec![]);
    }

    #[test]
    fn a_long_press_without_repeat_is_one_press() {
        let mut d = Debouncer::new(W, false);
        assert_eq!(
            run(&mut d, &[(0, true), (3000, false)], 4000),
            vec![(20, Press::Down)]
        );
    }

    #[test]
    fn a_held_repeating_button_repeats_until_released() {
        let mut d = Debouncer::new(W, true);
        // Held from 0 to 1000: down at 20, repeats at 520, 720, 920, then a
        // settled release at 1020 stops it.
        assert_eq!(
            run(&mut d, &[(0, true), (1000, false)], 3000),
            vec![
                (20, Press::Down),
                (520, Press::Repeat),
                (720, Press::Repeat),
                (920, Press::Repeat),
            ]
        );
    }

    #[test]
    fn quick_presses_each_count() {
        let mut d = Debouncer::new(W, true);
        // Three presses of 30 ms, 30 ms apart: faster than a heartbeat.
        let edges = [
            (0, true),
            (30, false),
            (60, true),
            (90, false),
            (120, true),
            (150, false),
        ];
        assert_eq!(
            run(&mut d, &edges, 1000),
            vec![(20, Press::Down), (80, Press::Down), (140, Press::Down)]
        );
    }

    #[test]
    fn a_late_wake_up_repeats_once_not_in_a_burst() {
        let mut d = Debouncer::new(W, true);
        let t0 = Instant::now();
        d.on_edge(t0, true);
        assert_eq!(d.handle_timeout(t0 + W), Some(Press::Down));
        // The task slept through five repeat periods.
        let late = t0 + ms(1500);
        assert_eq!(d.handle_timeout(late), Some(Press::Repeat));
        assert_eq!(d.handle_timeout(late), None);
        assert!(d.poll_timeout().is_some_and(|t| t > late));
    }
}
