//! Refusal notices: a member tells the sender of a datagram that failed
//! authentication that it was refused, so that a controller started with
//! the wrong secret can say so instead of "no speaker found".
//!
//! Without it such a controller hears nothing at all: speakers learn a
//! member's address only from datagrams that authenticate, so they never
//! send it anything, and from where it stands a room with another secret
//! looks exactly like an empty network (while every speaker logs the
//! failed authentication).
//!
//! A notice is [`NOTICE_LEN`] bytes in clear: [`MARK`], then the member id
//! the refused datagram claimed to come from (u64 little-endian). It is
//! not authenticated (the two sides share no key; that is the point), so
//! it is only ever *reported*, never acted on: a receiver counts notices
//! naming its own id (a random 64-bit id, which an outsider who does not
//! see its traffic cannot guess) and changes no protocol state.
//!
//! Invariants a reader must not break:
//! - A notice is shorter than the smallest datagram that can earn one (a
//!   forged datagram is at least [`crate::envelope::OVERHEAD`] bytes), so a
//!   spoofed source address never gets more bytes than the spoofer sent.
//! - [`Refusals`] sends at most one notice per address per
//!   [`Refusals::PER_ADDRESS`] and [`Refusals::PER_SECOND`] in all, and
//!   remembers at most [`MAX_REMEMBERED`] addresses: a flood of forgeries
//!   from invented addresses costs a bounded, small number of notices.
//! - [`MARK`] is never a [`crate::wire::VERSION`]: a notice can never be
//!   mistaken for a sealed datagram, or a sealed datagram for a notice.
//!
//! Specified in `docs/protocol.md`, section "Datagram security".

use std::collections::BTreeMap;

use crate::ids::MemberId;
use crate::time::{LocalTime, Nanos};

/// First byte of a notice. Sealed datagrams start with the protocol's
/// version (a small number), so the two never collide.
pub const MARK: u8 = 0xFF;

/// Bytes in a notice: the mark and a member id.
pub const NOTICE_LEN: usize = 1 + 8;

const _: () = assert!(
    NOTICE_LEN < crate::envelope::OVERHEAD,
    "a notice must be shorter than any datagram that earns one"
);
const _: () = assert!(MARK != crate::wire::VERSION, "a notice is not a datagram");

/// Most addresses whose last notice is remembered; past it the one that
/// got a notice longest ago is forgotten.
pub const MAX_REMEMBERED: usize = 64;

/// The notice telling the sender of a refused datagram, which claimed to
/// come from `claimed`, that it was refused.
#[must_use]
pub fn notice(claimed: MemberId) -> [u8; NOTICE_LEN] {
    let mut n = [0u8; NOTICE_LEN];
    n[0] = MARK;
    n[1..].copy_from_slice(&claimed.0.to_le_bytes());
    n
}

/// The member id a notice is about, if `datagram` is a notice.
#[must_use]
pub fn about(datagram: &[u8]) -> Option<MemberId> {
    match datagram {
        [MARK, id @ ..] => {
            let id: [u8; 8] = id.try_into().ok()?;
            Some(MemberId(u64::from_le_bytes(id)))
        }
        _ => None,
    }
}

/// Decides which refused datagrams get a notice, by sender address `A`.
#[derive(Debug)]
pub struct Refusals<A> {
    /// When each address last got a notice.
    last: BTreeMap<A, LocalTime>,
    /// Start of the current one-second budget, and notices sent in it.
    second: Option<LocalTime>,
    sent_this_second: u32,
}

impl<A> Default for Refusals<A> {
    fn default() -> Refusals<A> {
        Refusals {
            last: BTreeMap::new(),
            second: None,
            sent_this_second: 0,
        }
    }
}

impl<A: Ord + Copy> Refusals<A> {
    /// The least time between two notices to one address: a controller
    /// with the wrong secret sends several datagrams a round; one notice a
    /// second is plenty to tell it.
    pub const PER_ADDRESS: Nanos = Nanos::from_millis(1_000);

    /// Notices a second to all addresses together.
    pub const PER_SECOND: u32 = 10;

    /// A datagram from `from` failed authentication at `now`: whether to
    /// send it a notice (and if so, it is counted as sent).
    pub fn should_notify(&mut self, now: LocalTime, from: A) -> bool {
        if self
            .last
            .get(&from)
            .is_some_and(|&t| now.since(t) < Self::PER_ADDRESS)
        {
            return false;
        }
        let fresh_second = self
            .second
            .is_none_or(|s| now.since(s) >= Nanos::from_millis(1_000));
        if fresh_second {
            self.second = Some(now);
            self.sent_this_second = 0;
        }
        if self.sent_this_second >= Self::PER_SECOND {
            return false;
        }
        self.sent_this_second += 1;
        if self.last.len() >= MAX_REMEMBERED
            && !self.last.contains_key(&from)
            && let Some(oldest) = self.last.iter().min_by_key(|&(_, &t)| t).map(|(&a, _)| a)
        {
            self.last.remove(&oldest);
        }
        self.last.insert(from, now);
        debug_assert!(self.last.len() <= MAX_REMEMBERED);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> LocalTime {
        LocalTime(ms * 1_000_000)
    }

    #[test]
    fn a_notice_names_the_claimed_sender_and_nothing_else_reads_as_one() {
        let id = MemberId(0x0123_4567_89ab_cdef);
        let n = notice(id);
        // Pinned: the format other members read.
        assert_eq!(n, [0xFF, 0xef, 0xcd, 0xab, 0x89, 0x67, 0x45, 0x23, 0x01]);
        assert_eq!(about(&n), Some(id));
        assert_eq!(about(&n[..8]), None, "short");
        assert_eq!(about(&[&n[..], &[0]].concat()), None, "long");
        assert_eq!(about(&[crate::wire::VERSION; NOTICE_LEN]), None);
        assert_eq!(about(&[]), None);
    }

    #[test]
    fn one_notice_per_address_per_second() {
        let mut r = Refusals::default();
        assert!(r.should_notify(at(0), 1u32));
        assert!(!r.should_notify(at(100), 1));
        assert!(!r.should_notify(at(999), 1));
        assert!(r.should_notify(at(100), 2), "another address");
        assert!(r.should_notify(at(1_000), 1));
    }

    #[test]
    fn a_flood_from_many_addresses_is_bounded() {
        let mut r = Refusals::default();
        let sent = (0..1_000u32)
            .filter(|&a| r.should_notify(at(u64::from(a) * 10), a))
            .count();
        // 1000 forgeries from 1000 addresses over 10 s: 10 a second.
        assert_eq!(sent, 100);
        assert!(r.last.len() <= MAX_REMEMBERED);
    }
}
