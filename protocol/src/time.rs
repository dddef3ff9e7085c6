//! Time as integers: nanoseconds, never floats.
//!
//! Two clocks exist and must never be mixed: `LocalTime` is a member's own
//! monotonic clock (what the shell passes in as `now`), `MeshTime` is the
//! room's shared clock (the time reference member's clock, estimated by
//! everyone else). Positions in the media are `Frames` at the fixed timeline
//! rate, converted from mesh durations with exact integer arithmetic.

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

/// Nanoseconds per second.
pub const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A member's own monotonic clock, in nanoseconds from an arbitrary origin.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    MaxSize,
)]
pub struct LocalTime(pub u64);

/// The room's shared clock, in nanoseconds from the room's arbitrary origin.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    MaxSize,
)]
pub struct MeshTime(pub u64);

/// A span of time in nanoseconds (either clock).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    MaxSize,
)]
pub struct Nanos(pub u64);

impl Nanos {
    /// `ms` milliseconds.
    #[must_use]
    pub const fn from_millis(ms: u64) -> Nanos {
        Nanos(ms * 1_000_000)
    }
    /// `s` seconds.
    #[must_use]
    pub const fn from_secs(s: u64) -> Nanos {
        Nanos(s * NANOS_PER_SEC)
    }
    /// Whole milliseconds (truncated).
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }
}

macro_rules! instant_arith {
    ($t:ident) => {
        impl $t {
            /// This instant moved forward by `d` (saturating).
            #[must_use]
            pub const fn plus(self, d: Nanos) -> $t {
                $t(self.0.saturating_add(d.0))
            }
            /// Time elapsed since `earlier`, zero if `earlier` is later.
            #[must_use]
            pub const fn since(self, earlier: $t) -> Nanos {
                Nanos(self.0.saturating_sub(earlier.0))
            }
        }
    };
}
instant_arith!(LocalTime);
instant_arith!(MeshTime);
