//! Send pacing: one socket's send buffer is kept for the peers that answer.
//!
//! A datagram to an address the kernel cannot resolve (a speaker unplugged,
//! on the far side of a partition, a static peer that is not there) waits
//! in the kernel's address-resolution queue for up to 3 s, and counts
//! against the sending socket's buffer all that time. Every member sends
//! to every other every round (heartbeats; a leader its appends, and
//! beacons to every known address): with its own cable pulled, or peers
//! gone, a node's buffer fills within a second or two, and then datagrams
//! to the members that *are* there are dropped too — a leader's appends
//! lost, its followers re-elect (found by the chaos soak, seed 1: a heal
//! 780 ms late).
//!
//! So an address not heard from for [`Pacing::quiet_after`] is *quiet* and
//! gets at most one datagram per [`Pacing::quiet_every`], and all quiet
//! addresses together at most [`Pacing::quiet_rate`] a second (with many
//! of them, each is tried less often): enough to find one again when it
//! comes back, too few to fill the buffer. Members send
//! heartbeats to each other every round, so a member in the room is never
//! quiet; one that is has already been evicted (`evict_after` is shorter).
//!
//! Pacing is engaged only while the socket's send queue holds more than
//! [`Pacing::engage_at`] bytes (the shell reads it from the kernel), and
//! released below [`Pacing::release_at`]. A short partition leaves a few
//! datagrams in the kernel's queue and nothing is paced: the first datagram
//! after a heal goes out at once (pacing every quiet address all the time
//! cost heals 50 ms on average: a peer's once-a-round heartbeat met a
//! once-a-round allowance and lost half its rounds to timer jitter).
//!
//! When nobody at all was heard for `quiet_after` (this node's own cable
//! pulled), every address went quiet for a reason that was not its own:
//! the first datagram heard again gives every address a fresh start.

use std::collections::BTreeMap;

use crate::time::{LocalTime, Nanos};

/// Most addresses remembered; past it the longest-quiet ones are forgotten
/// (a forgotten address counts as never heard).
pub const MAX_ADDRESSES: usize = 1024;

/// A quiet address counts towards the shared rate while it was tried
/// within this many `quiet_every`s (with many quiet addresses each is
/// tried less often, so the window is wide).
const QUIET_RECENT_TRIES: u64 = 100;

/// How quiet is quiet, and how often a quiet address is still tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pacing {
    /// Silence after which an address is quiet.
    pub quiet_after: Nanos,
    /// The least time between two datagrams to a quiet address.
    pub quiet_every: Nanos,
    /// Datagrams a second to all quiet addresses together: each quiet
    /// address is tried every `max(quiet_every, quiet / quiet_rate)`.
    pub quiet_rate: u32,
    /// Bytes in the socket's send queue above which pacing engages.
    pub engage_at: u64,
    /// Bytes below which it is released again.
    pub release_at: u64,
}

impl Default for Pacing {
    /// Quiet after 1 s (ten heartbeats, past the 600 ms eviction), then
    /// one datagram per round (100 ms), 30 a second in all. A leader
    /// beacons to every address every 200 ms: with up to five quiet
    /// addresses every beacon still goes out (a pacing interval as long
    /// as the beacons' would drop every other one to timer jitter, and
    /// slow a heal by a round or two). The kernel holds a datagram to an
    /// unresolvable address for up to 3 s: at most 90 of them wait, under
    /// half of a default 208 KiB send buffer. Engaged from 48 KiB queued
    /// (a quarter of that buffer; a healthy socket's queue is empty between
    /// two rounds), released under 16 KiB.
    fn default() -> Pacing {
        Pacing {
            quiet_after: Nanos::from_millis(1_000),
            quiet_every: Nanos::from_millis(100),
            quiet_rate: 30,
            engage_at: 48 * 1024,
            release_at: 16 * 1024,
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Peer {
    heard: Option<LocalTime>,
    /// The last datagram let through while the address was quiet.
    quiet_sent: Option<LocalTime>,
}

/// Decides, datagram by datagram, whether to send to an address.
#[derive(Clone, Debug)]
pub struct SendPacer<A> {
    cfg: Pacing,
    peers: BTreeMap<A, Peer>,
    /// The last time anything was heard from anyone.
    heard_any: Option<LocalTime>,
    /// Every address counts as heard at this time (start-up, or the end of
    /// a total silence).
    fresh_since: LocalTime,
    /// Quiet addresses tried lately, counted at `counted_at`.
    quiet: usize,
    counted_at: Option<LocalTime>,
    /// Whether the send queue is long enough for pacing to apply.
    engaged: bool,
}

impl<A: Ord + Copy> SendPacer<A> {
    /// A pacer for a node starting at `now`: every address gets
    /// `quiet_after` before it can be quiet.
    #[must_use]
    pub fn new(cfg: Pacing, now: LocalTime) -> SendPacer<A> {
        SendPacer {
            cfg,
            peers: BTreeMap::new(),
            heard_any: None,
            fresh_since: now,
            quiet: 0,
            counted_at: None,
            engaged: false,
        }
    }

    /// The bytes waiting in the socket's send queue now, or `None` when
    /// the shell cannot tell (then pacing stays engaged: the buffer is
    /// protected at the price of slower heals).
    pub fn note_send_queue(&mut self, queued: Option<u64>) {
        self.engaged = match queued {
            None => true,
            Some(q) if q >= self.cfg.engage_at => true,
            Some(q) if q < self.cfg.release_at => false,
            Some(_) => self.engaged,
        };
    }

    /// Whether pacing applies now (see [`SendPacer::note_send_queue`]).
    #[must_use]
    pub fn engaged(&self) -> bool {
        self.engaged
    }

    /// An authenticated datagram arrived from `from`.
    pub fn heard(&mut self, from: A, now: LocalTime) {
        if self
            .heard_any
            .is_some_and(|t| now.since(t) >= self.cfg.quiet_after)
        {
            // Nobody was heard for a while: this node was cut off, not
            // every peer at once. Start everyone afresh.
            self.fresh_since = now;
        }
        self.heard_any = Some(now);
        let peer = self.peers.entry(from).or_default();
        peer.heard = Some(now);
        peer.quiet_sent = None;
        self.bound();
    }

    /// Whether the datagram to `to` may go now (recorded as sent if so).
    pub fn may_send(&mut self, to: A, now: LocalTime) -> bool {
        if !self.engaged || !self.is_quiet(to, now) {
            return true;
        }
        let every = self.quiet_every(now);
        let peer = self.peers.entry(to).or_default();
        if peer.quiet_sent.is_some_and(|t| now.since(t) < every) {
            return false;
        }
        peer.quiet_sent = Some(now);
        self.bound();
        true
    }

    /// Whether `addr` has been silent for `quiet_after` (never heard counts
    /// from start-up or the last fresh start).
    #[must_use]
    pub fn is_quiet(&self, addr: A, now: LocalTime) -> bool {
        let heard = self.peers.get(&addr).and_then(|p| p.heard);
        self.silent_for(heard, now) >= self.cfg.quiet_after
    }

    /// How long an address last heard at `heard` has been silent, counting
    /// from the last fresh start at most.
    fn silent_for(&self, heard: Option<LocalTime>, now: LocalTime) -> Nanos {
        now.since(heard.map_or(self.fresh_since, |h| h.max(self.fresh_since)))
    }

    /// The least time between two datagrams to one quiet address now:
    /// `quiet_every`, or longer when so many addresses are quiet that
    /// together they would pass `quiet_rate`. The count (addresses quiet
    /// and tried within the last `QUIET_RECENT_TRIES` intervals, 10 s) is
    /// refreshed once per `quiet_every`, not per datagram.
    fn quiet_every(&mut self, now: LocalTime) -> Nanos {
        let cfg = self.cfg;
        if self
            .counted_at
            .is_none_or(|t| now.since(t) >= cfg.quiet_every)
        {
            let recent = Nanos(cfg.quiet_every.0.saturating_mul(QUIET_RECENT_TRIES));
            self.quiet = self
                .peers
                .values()
                .filter(|p| {
                    self.silent_for(p.heard, now) >= cfg.quiet_after
                        && p.quiet_sent.is_some_and(|t| now.since(t) < recent)
                })
                .count();
            self.counted_at = Some(now);
        }
        let share = 1_000_000_000 * self.quiet as u64 / u64::from(cfg.quiet_rate.max(1));
        Nanos(cfg.quiet_every.0.max(share))
    }

    /// Addresses remembered (at most [`MAX_ADDRESSES`]).
    #[must_use]
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no address is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Forgets the longest-silent address while there are too many.
    fn bound(&mut self) {
        while self.peers.len() > MAX_ADDRESSES {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, p)| (p.heard, p.quiet_sent))
                .map(|(a, _)| *a);
            match oldest {
                Some(a) => {
                    self.peers.remove(&a);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    fn at(ms: u64) -> LocalTime {
        LocalTime(ms * MS)
    }

    /// A pacer whose socket's send queue is long (pacing engaged).
    fn pacer() -> SendPacer<u32> {
        let mut p = SendPacer::new(Pacing::default(), at(0));
        p.note_send_queue(Some(64 * 1024));
        p
    }

    /// Datagrams let through to `to`, one offered every `step` ms over
    /// `[from, to_ms)`.
    fn sent(p: &mut SendPacer<u32>, to: u32, from: u64, until: u64, step: u64) -> usize {
        (from..until)
            .step_by(step as usize)
            .filter(|&t| p.may_send(to, at(t)))
            .count()
    }

    #[test]
    fn nothing_is_paced_while_the_send_queue_is_short() {
        let mut p = SendPacer::new(Pacing::default(), at(0));
        p.note_send_queue(Some(0));
        assert!(!p.engaged());
        assert_eq!(sent(&mut p, 7, 5_000, 6_000, 10), 100);
        // Long: engaged, and it stays so until the queue is short again.
        p.note_send_queue(Some(48 * 1024));
        assert!(p.engaged());
        assert_eq!(sent(&mut p, 7, 6_000, 7_000, 10), 10);
        p.note_send_queue(Some(20 * 1024));
        assert!(p.engaged(), "released too early");
        p.note_send_queue(Some(10 * 1024));
        assert!(!p.engaged());
        // Unknown: engaged, to protect the buffer.
        p.note_send_queue(None);
        assert!(p.engaged());
    }

    #[test]
    fn every_address_may_send_freely_at_start_up() {
        let mut p = pacer();
        assert_eq!(sent(&mut p, 7, 0, 1_000, 10), 100);
    }

    #[test]
    fn an_address_never_heard_is_paced_after_the_start_up_grace() {
        let mut p = pacer();
        // 1 s .. 3 s at a datagram per 10 ms: one per 100 ms gets through.
        assert_eq!(sent(&mut p, 7, 1_000, 3_000, 10), 20);
    }

    #[test]
    fn a_peer_heard_every_round_is_never_paced() {
        let mut p = pacer();
        for t in (0..5_000).step_by(100) {
            p.heard(1, at(t));
            assert!(p.may_send(1, at(t + 50)));
            assert!(p.may_send(1, at(t + 51)));
        }
    }

    #[test]
    fn a_peer_falls_quiet_a_second_after_it_was_last_heard() {
        let mut p = pacer();
        p.heard(1, at(0));
        // Someone else is heard all along (no fresh start).
        for t in (0..1_300).step_by(100) {
            p.heard(2, at(t));
        }
        assert!(!p.is_quiet(1, at(999)));
        assert!(p.is_quiet(1, at(1_000)));
        assert!(p.may_send(1, at(1_000)));
        assert!(!p.may_send(1, at(1_099)));
        assert!(p.may_send(1, at(1_100)));
        // Heard again: back to full rate at once.
        p.heard(1, at(1_250));
        assert!(p.may_send(1, at(1_251)));
        assert!(p.may_send(1, at(1_252)));
    }

    #[test]
    fn a_partition_paces_only_the_far_side() {
        let mut p = pacer();
        for t in (0..10_000).step_by(100) {
            p.heard(1, at(t));
            if t < 3_000 {
                p.heard(2, at(t));
            }
        }
        assert!(!p.is_quiet(1, at(10_000)));
        assert!(p.is_quiet(2, at(10_000)));
        // Peer 1 was last heard at 9.9 s.
        assert_eq!(sent(&mut p, 1, 10_000, 10_800, 10), 80);
        assert_eq!(sent(&mut p, 2, 10_000, 11_000, 10), 10);
    }

    #[test]
    fn hearing_again_after_total_silence_starts_everyone_afresh() {
        let mut p = pacer();
        for t in (0..2_000).step_by(100) {
            p.heard(1, at(t));
            p.heard(2, at(t));
        }
        // This node's cable is pulled at 2 s: everyone goes quiet.
        assert!(p.is_quiet(1, at(3_000)) && p.is_quiet(2, at(3_000)));
        // Back at 5 s: peer 1 is heard; peer 2 has not spoken yet, but it
        // was quiet because of us, not because of it.
        p.heard(1, at(5_000));
        assert!(!p.is_quiet(2, at(5_001)));
        assert_eq!(sent(&mut p, 2, 5_001, 6_000, 10), 100);
        // Still silent a second later: quiet again.
        assert!(p.is_quiet(2, at(6_001)));
    }

    #[test]
    fn one_quiet_peer_does_not_start_everyone_afresh() {
        let mut p = pacer();
        for t in (0..5_000).step_by(100) {
            p.heard(1, at(t));
        }
        // Peer 2 was heard once, long ago; peer 1 all along.
        p.heard(2, at(5_000));
        assert!(
            p.is_quiet(3, at(5_000)),
            "an address never heard stays quiet"
        );
    }

    #[test]
    fn many_quiet_addresses_share_one_rate() {
        let mut p = pacer();
        // 40 absent static peers, a datagram offered to each every 10 ms
        // for 10 s after the start-up grace.
        let mut per_address = [0usize; 40];
        for t in (1_000..11_000).step_by(10) {
            for (a, n) in per_address.iter_mut().enumerate() {
                if p.may_send(a as u32, at(t)) {
                    *n += 1;
                }
            }
        }
        let total: usize = per_address.iter().sum();
        // 30 a second, plus each address's first try.
        assert!(
            total <= 30 * 10 + 40,
            "{total} datagrams to quiet addresses"
        );
        assert!(
            per_address.iter().all(|&n| n >= 4),
            "an address was starved: {per_address:?}"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let mut p = pacer();
        for a in 0..(MAX_ADDRESSES as u32 * 3) {
            p.heard(a, at(u64::from(a)));
            p.may_send(a + 1_000_000, at(5_000 + u64::from(a)));
        }
        assert_eq!(p.len(), MAX_ADDRESSES);
        // The newest stay.
        assert!(!p.is_quiet(MAX_ADDRESSES as u32 * 3 - 1, at(4_000)));
    }

    proptest! {
        /// Whatever the traffic, a quiet address never gets two datagrams
        /// closer than `quiet_every`, and an address heard within
        /// `quiet_after` is never refused.
        #[test]
        fn pacing_holds(ops in proptest::collection::vec((any::<bool>(), 0u32..4, 0u64..300), 1..400)) {
            let cfg = Pacing::default();
            let mut p = SendPacer::new(cfg, at(0));
            p.note_send_queue(None);
            let mut now = 0u64;
            let mut heard = [None::<u64>; 4];
            let mut quiet_sent = [None::<u64>; 4];
            for (hear, addr, step) in ops {
                now += step;
                let i = addr as usize;
                if hear {
                    p.heard(addr, at(now));
                    heard[i] = Some(now);
                    quiet_sent[i] = None;
                    continue;
                }
                let quiet = p.is_quiet(addr, at(now));
                let ok = p.may_send(addr, at(now));
                if heard[i].is_some_and(|h| now - h < 1_000) {
                    prop_assert!(ok && !quiet);
                }
                if quiet && ok {
                    if let Some(prev) = quiet_sent[i] {
                        prop_assert!(now - prev >= 100);
                    }
                    quiet_sent[i] = Some(now);
                } else if !quiet {
                    quiet_sent[i] = None;
                }
            }
        }
    }
}
