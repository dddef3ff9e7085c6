//! The status LED: which pattern the node's state calls for, and when to
//! switch the LED on or off to show it.
//!
//! One LED has to answer the questions a person at the speaker asks: is it
//! playing (steady), did my press get through (slow blink while an own vote
//! waits for the room), is something wrong (fast blink: alone, read-only,
//! or the last press was refused). Precedence runs from trouble to normal,
//! so a problem is never hidden behind "playing".
//!
//! Pure: [`Pattern::of`] maps a state to a pattern and [`Blinker`] turns a
//! pattern into on/off switches at instants the caller sleeps until.
//! Invariant: a pattern change takes effect at once (the LED never finishes
//! an old blink first), and a blink always starts lit, so a press gets
//! visible feedback immediately.

use std::time::Duration;

use tokio::time::Instant;

use crate::status::NodeStatus;

/// Half period of the slow blink (1 Hz).
pub const SLOW_HALF: Duration = Duration::from_millis(500);
/// Half period of the fast blink (4 Hz).
pub const FAST_HALF: Duration = Duration::from_millis(125);

/// What the LED shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// Paused, nothing pending.
    Off,
    /// Playing.
    Steady,
    /// An own vote waits for the room's decision.
    SlowBlink,
    /// Alone, read-only, or a press was refused.
    FastBlink,
}

/// The facts the pattern depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LedState {
    /// Some channel plays.
    pub playing: bool,
    /// An own vote is pending (in the mesh, or just cast by a button).
    pub pending: bool,
    /// No room, or a room of one speaker.
    pub alone: bool,
    /// The room cannot decide now (read-only) or a press was just refused.
    pub error: bool,
}

impl LedState {
    /// The state a status snapshot shows; `refused` and `in_flight` come
    /// from the buttons themselves.
    #[must_use]
    pub fn of(status: &NodeStatus, in_flight: bool, refused: bool) -> LedState {
        let speakers = status.view.iter().filter(|m| m.role == "speaker").count();
        LedState {
            playing: status.channels.iter().any(|c| c.playing),
            pending: status.pending_votes > 0 || in_flight,
            alone: status.room.is_none() || speakers <= 1,
            error: refused || (status.room.is_some() && !status.writable),
        }
    }
}

impl Pattern {
    /// The pattern for a state, trouble first.
    #[must_use]
    pub fn of(state: LedState) -> Pattern {
        if state.alone || state.error {
            Pattern::FastBlink
        } else if state.pending {
            Pattern::SlowBlink
        } else if state.playing {
            Pattern::Steady
        } else {
            Pattern::Off
        }
    }

    fn half_period(self) -> Option<Duration> {
        match self {
            Pattern::Off | Pattern::Steady => None,
            Pattern::SlowBlink => Some(SLOW_HALF),
            Pattern::FastBlink => Some(FAST_HALF),
        }
    }
}

/// Drives one LED through a pattern.
#[derive(Clone, Debug)]
pub struct Blinker {
    pattern: Option<Pattern>,
    lit: bool,
    next: Option<Instant>,
}

impl Default for Blinker {
    fn default() -> Blinker {
        Blinker::new()
    }
}

impl Blinker {
    /// No pattern yet: the first [`Blinker::show`] sets the LED.
    #[must_use]
    pub fn new() -> Blinker {
        Blinker {
            pattern: None,
            lit: false,
            next: None,
        }
    }

    /// Shows `pattern` from `now`. Returns the LED level to set if it must
    /// change; the same pattern again changes nothing (a blink keeps its
    /// rhythm across status updates).
    pub fn show(&mut self, pattern: Pattern, now: Instant) -> Option<bool> {
        if self.pattern == Some(pattern) {
            return None;
        }
        let first = self.pattern.is_none();
        self.pattern = Some(pattern);
        let lit = pattern != Pattern::Off;
        self.next = pattern.half_period().map(|h| now + h);
        self.set(lit, first)
    }

    /// When the LED switches next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// Advances to `now`; returns the LED level to set if a switch is due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<bool> {
        let next = self.next.filter(|t| *t <= now)?;
        let half = self.pattern.and_then(Pattern::half_period)?;
        // After a late wake-up, keep the rhythm from now (no catch-up).
        self.next = Some((next + half).max(now + half / 2));
        self.set(!self.lit, false)
    }

    fn set(&mut self, lit: bool, force: bool) -> Option<bool> {
        if lit == self.lit && !force {
            return None;
        }
        self.lit = lit;
        Some(lit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{ChannelStatus, ViewMember};

    fn speaker(id: &str) -> ViewMember {
        ViewMember {
            id: id.into(),
            role: "speaker".into(),
            ..ViewMember::default()
        }
    }

    fn room_of(n: usize) -> NodeStatus {
        NodeStatus {
            room: Some("1/a".into()),
            writable: true,
            view: (0..n).map(|i| speaker(&i.to_string())).collect(),
            channels: vec![ChannelStatus::default()],
            ..NodeStatus::default()
        }
    }

    #[test]
    fn patterns_follow_the_state_trouble_first() {
        let mut status = room_of(3);
        let p =
            |s: &NodeStatus, in_flight, refused| Pattern::of(LedState::of(s, in_flight, refused));
        assert_eq!(p(&status, false, false), Pattern::Off);
        status.channels[0].playing = true;
        assert_eq!(p(&status, false, false), Pattern::Steady);
        assert_eq!(p(&status, true, false), Pattern::SlowBlink);
        status.pending_votes = 1;
        assert_eq!(p(&status, false, false), Pattern::SlowBlink);
        assert_eq!(p(&status, false, true), Pattern::FastBlink);
        status.writable = false;
        assert_eq!(p(&status, false, false), Pattern::FastBlink);
        // Alone: no room yet, or a room of one speaker (controllers do not
        // count).
        assert_eq!(p(&NodeStatus::default(), false, false), Pattern::FastBlink);
        let mut lone = room_of(1);
        lone.view.push(ViewMember {
            role: "controller".into(),
            ..ViewMember::default()
        });
        assert_eq!(p(&lone, false, false), Pattern::FastBlink);
    }

    #[test]
    fn blinks_start_lit_and_keep_their_rhythm() {
        let t0 = Instant::now();
        let mut b = Blinker::new();
        assert_eq!(
            b.show(Pattern::Off, t0),
            Some(false),
            "first show sets the LED"
        );
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.show(Pattern::SlowBlink, t0), Some(true));
        assert_eq!(b.poll_timeout(), Some(t0 + SLOW_HALF));
        assert_eq!(b.handle_timeout(t0 + SLOW_HALF / 2), None);
        assert_eq!(b.handle_timeout(t0 + SLOW_HALF), Some(false));
        // The same pattern again does not restart the blink.
        assert_eq!(b.show(Pattern::SlowBlink, t0 + SLOW_HALF), None);
        assert_eq!(b.handle_timeout(t0 + SLOW_HALF * 2), Some(true));
        // A new pattern takes effect at once.
        let t1 = t0 + SLOW_HALF * 2 + Duration::from_millis(10);
        assert_eq!(b.show(Pattern::Steady, t1), None, "already lit");
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.show(Pattern::FastBlink, t1), None, "already lit");
        assert_eq!(b.handle_timeout(t1 + FAST_HALF), Some(false));
        assert_eq!(b.show(Pattern::Off, t1 + FAST_HALF), None, "already dark");
        assert_eq!(b.handle_timeout(t1 + FAST_HALF * 10), None);
    }
}
