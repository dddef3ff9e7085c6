//! The node's local clock: the `now` every protocol input carries.
//!
//! It reads `CLOCK_MONOTONIC_RAW`, which NTP never slews, so the mesh clock
//! estimator sees the crystal as it is. For tests that run several nodes on
//! one machine (which share one crystal), a test-only offset and skew make
//! each node's clock as different as separate machines' would be; every
//! timing decision of the node goes through this type, so the skew reaches
//! the protocol, the timers and the audio alike.
//!
//! Invariant: `now()` never goes backwards.

use std::time::Duration;

use autoharmonize_protocol::LocalTime;
use nix::time::{ClockId, clock_gettime};

/// A monotonic local clock with an optional test offset and skew.
#[derive(Clone, Copy, Debug)]
pub struct LocalClock {
    offset_ns: u64,
    skew_ppb: i64,
}

impl LocalClock {
    /// The machine's clock as it is.
    #[must_use]
    pub fn system() -> LocalClock {
        LocalClock {
            offset_ns: 0,
            skew_ppb: 0,
        }
    }

    /// A clock shifted by `offset` and running `skew_ppm` faster (or slower,
    /// if negative) than the machine's: for multi-node tests on one machine.
    #[must_use]
    pub fn skewed(offset: Duration, skew_ppm: f64) -> LocalClock {
        LocalClock {
            offset_ns: u64::try_from(offset.as_nanos()).unwrap_or(u64::MAX / 2),
            skew_ppb: (skew_ppm * 1000.0).round() as i64,
        }
    }

    fn raw_ns() -> u64 {
        // CLOCK_MONOTONIC_RAW cannot fail on Linux; fall back to the
        // monotonic clock rather than panic on an exotic kernel.
        let ts = clock_gettime(ClockId::CLOCK_MONOTONIC_RAW)
            .or_else(|_| clock_gettime(ClockId::CLOCK_MONOTONIC))
            .unwrap_or_else(|_| nix::sys::time::TimeSpec::new(0, 0));
        let secs = u64::try_from(ts.tv_sec()).unwrap_or(0);
        let nanos = u64::try_from(ts.tv_nsec()).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    }

    /// The current local time.
    #[must_use]
    pub fn now(&self) -> LocalTime {
        let raw = i128::from(Self::raw_ns());
        let skewed = raw + raw * i128::from(self.skew_ppb) / 1_000_000_000;
        LocalTime(
            u64::try_from(skewed.max(0))
                .unwrap_or(u64::MAX)
                .saturating_add(self.offset_ns),
        )
    }

    /// How long to sleep (real time) until local time `deadline`.
    #[must_use]
    pub fn until(&self, deadline: LocalTime) -> Duration {
        let local = deadline.0.saturating_sub(self.now().0);
        // Undo the skew: a local nanosecond lasts (1 + skew) real ones less.
        let real = i128::from(local) * 1_000_000_000 / (1_000_000_000 + i128::from(self.skew_ppb));
        Duration::from_nanos(u64::try_from(real.max(0)).unwrap_or(u64::MAX))
    }
}

/// The audio engine reads the same clock as the protocol: a frame's
/// emission time and the mesh clock mapping are on one time base.
impl crate::audio::output::TimeSource for LocalClock {
    fn now_ns(&self) -> u64 {
        self.now().0
    }

    fn sleep_until_ns(&self, t: u64) {
        loop {
            let wait = self.until(LocalTime(t));
            if wait.is_zero() {
                return;
            }
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_offset() {
        let plain = LocalClock::system();
        let shifted = LocalClock::skewed(Duration::from_secs(5), 0.0);
        let a = plain.now();
        let b = shifted.now();
        let c = plain.now();
        assert!(c >= a);
        assert!(b.0 >= a.0 + 5_000_000_000 && b.0 <= c.0 + 5_000_000_000);
    }

    #[test]
    fn skew_scales_elapsed_time() {
        let fast = LocalClock::skewed(Duration::ZERO, 100_000.0); // +10 %
        let t0 = fast.now();
        let r0 = LocalClock::system().now();
        std::thread::sleep(Duration::from_millis(50));
        let elapsed = fast.now().0 - t0.0;
        let real = LocalClock::system().now().0 - r0.0;
        // Within a millisecond of 110 % of the real elapsed time.
        let expected = real + real / 10;
        assert!(
            elapsed.abs_diff(expected) < 1_000_000,
            "{elapsed} vs {expected}"
        );
        let wait = fast.until(LocalTime(fast.now().0 + 110_000_000));
        assert!(wait.as_millis().abs_diff(100) <= 2, "{wait:?}");
    }
}
