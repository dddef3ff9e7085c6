//! Which chunk of a stem to fetch next, from which holder: the pure planner
//! behind peer-to-peer stem streaming.
//!
//! A speaker that plays a stem it does not hold fetches it chunk by chunk
//! ([`crate::content::CHUNK_SIZE`]) from members that hold it. What to ask
//! for, and whom, is decided here, without sockets or clocks (every input
//! carries `now`), so the rules are tested with properties:
//!
//! - **Demand first.** A chunk the decoder tried to read and could not (the
//!   playhead is waiting on it, e.g. right after a seek) goes before
//!   everything else.
//! - **Then the window ahead of the playhead**, in order, nothing behind it.
//!   Its length follows what was measured — request latency and delivered
//!   throughput — against the stem's playback byte rate
//!   ([`prefetch_chunks`]): a slow or far link fetches further ahead, a
//!   fast one wastes nothing after a seek beyond a short window.
//! - **Spread over holders.** Each request goes to the holder expected to
//!   finish it first (its measured latency times the requests it already
//!   has), with a pipeline depth per holder from the bandwidth-delay
//!   product; so two holders share a stem about evenly when equal.
//! - **Failures move on.** A chunk that arrived corrupt or forged is asked
//!   again of another holder when there is one; a request that takes far
//!   longer than its holder usually does is given up and asked elsewhere;
//!   a holder that is gone ([`FetchPlan::holder_lost`], or absent from
//!   [`FetchPlan::set_holders`]) gives back everything it had in flight.
//!
//! Method families: inputs [`FetchPlan::set_holders`], [`FetchPlan::completed`],
//! [`FetchPlan::rejected`], [`FetchPlan::holder_lost`],
//! [`FetchPlan::mark_have`]; then [`FetchPlan::poll_timeouts`] and
//! [`FetchPlan::next_request`] until it returns `None`.
//!
//! Invariant: a chunk is never requested while held or already in flight
//! (except to replace a timed-out request), and never from a holder not in
//! the current set.

use std::collections::VecDeque;

use crate::time::{LocalTime, NANOS_PER_SEC};

/// Longest prefetch window, in chunks (4 MiB: ~20 s of FLAC, ~2 s of
/// float WAV): bounds the waste after a seek and the memory of in-flight
/// requests.
pub const MAX_WINDOW: u64 = 64;
/// Shortest prefetch window, in chunks.
pub const MIN_WINDOW: u64 = 2;
/// Most requests one holder has in flight.
pub const MAX_PIPELINE: u32 = 8;
/// Playback lead kept beyond the measured fetch time, in ns (covers a
/// holder that slows down before the estimate notices).
pub const SAFETY_LEAD_NS: u64 = 500_000_000;
/// Latency assumed before any request has completed (a LAN), in ns.
pub const DEFAULT_LATENCY_NS: u64 = 20_000_000;
/// A request in flight longer than this many times its holder's usual
/// latency (and at least [`MIN_TIMEOUT_NS`]) is given up.
pub const TIMEOUT_FACTOR: u64 = 4;
/// Shortest request timeout, in ns.
pub const MIN_TIMEOUT_NS: u64 = 1_000_000_000;
/// Completions remembered for the throughput estimate.
const THROUGHPUT_SAMPLES: usize = 16;

/// How many chunks to keep requested ahead of the playhead.
///
/// `lead = 2 × latency + chunk / throughput + SAFETY_LEAD`: the time from
/// noticing a chunk is needed to having it, twice over, plus a margin; the
/// window is the playback bytes of that lead, in chunks, plus the chunk
/// being played, within [`MIN_WINDOW`]..=[`MAX_WINDOW`]. `throughput_bps`
/// of 0 means unknown (taken as 10× playback). Monotone: never shorter for
/// a higher latency or a lower throughput.
#[must_use]
pub fn prefetch_chunks(
    latency_ns: u64,
    throughput_bps: u64,
    playback_bps: u64,
    chunk_size: u64,
) -> u64 {
    let chunk = chunk_size.max(1) as u128;
    let tput = if throughput_bps == 0 {
        (u128::from(playback_bps) * 10).max(1)
    } else {
        u128::from(throughput_bps)
    };
    let transfer_ns = chunk * u128::from(NANOS_PER_SEC) / tput;
    let lead_ns = 2 * u128::from(latency_ns) + transfer_ns + u128::from(SAFETY_LEAD_NS);
    let bytes = u128::from(playback_bps) * lead_ns / u128::from(NANOS_PER_SEC);
    let chunks = bytes.div_ceil(chunk) + 1;
    u64::try_from(chunks)
        .unwrap_or(u64::MAX)
        .clamp(MIN_WINDOW, MAX_WINDOW)
}

/// Where one chunk stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Not here; `avoid` is a holder that sent it corrupt or timed out.
    Missing { avoid: Option<u64> },
    /// Asked of `holder` at `since`.
    InFlight { holder: u64, since: LocalTime },
    /// Here and verified.
    Have,
}

/// What the planner knows of one holder.
#[derive(Clone, Debug)]
struct Holder {
    key: u64,
    in_flight: u32,
    /// Smoothed request→chunk time, ns (`None` before the first).
    latency_ns: Option<u64>,
    /// Chunks it sent that failed verification or timed out.
    failures: u64,
    /// When it was last given a request (the plan's turn counter).
    last_turn: u64,
}

/// A request to make: chunk `chunk` from the holder the caller named `holder`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// Chunk index.
    pub chunk: u64,
    /// The caller's key of the holder (see [`FetchPlan::set_holders`]).
    pub holder: u64,
}

/// The fetch plan of one stem (see the module doc).
#[derive(Clone, Debug)]
pub struct FetchPlan {
    chunks: Vec<Chunk>,
    holders: Vec<Holder>,
    chunk_size: u64,
    playback_bps: u64,
    /// (completion instant, bytes) of recent completions.
    recent: VecDeque<(LocalTime, u64)>,
    fetched_bytes: u64,
    rejected: u64,
    timeouts: u64,
    /// Requests assigned so far (orders holders' turns).
    turn: u64,
}

impl FetchPlan {
    /// A plan for a stem of `chunk_count` chunks of `chunk_size` bytes that
    /// plays `playback_bps` bytes of file per second (file length ÷
    /// duration; an estimate is fine).
    #[must_use]
    pub fn new(chunk_count: u64, chunk_size: u64, playback_bps: u64) -> FetchPlan {
        FetchPlan {
            chunks: vec![Chunk::Missing { avoid: None }; usize::try_from(chunk_count).unwrap_or(0)],
            holders: Vec::new(),
            chunk_size: chunk_size.max(1),
            playback_bps,
            recent: VecDeque::with_capacity(THROUGHPUT_SAMPLES),
            fetched_bytes: 0,
            rejected: 0,
            timeouts: 0,
            turn: 0,
        }
    }

    /// Number of chunks.
    #[must_use]
    pub fn chunk_count(&self) -> u64 {
        self.chunks.len() as u64
    }

    /// Sets the playback byte rate once it is known better.
    pub fn set_playback_bps(&mut self, bps: u64) {
        self.playback_bps = bps;
    }

    /// Records that chunk `i` is present (found in the cache).
    pub fn mark_have(&mut self, i: u64) {
        if let Some(c) = self.chunk_mut(i) {
            *c = Chunk::Have;
        }
    }

    /// Forgets chunk `i` (evicted from the cache).
    pub fn mark_missing(&mut self, i: u64) {
        if let Some(c) = self.chunk_mut(i)
            && *c == Chunk::Have
        {
            *c = Chunk::Missing { avoid: None };
        }
    }

    /// Whether chunk `i` is present.
    #[must_use]
    pub fn has(&self, i: u64) -> bool {
        self.chunk(i) == Some(Chunk::Have)
    }

    /// The holders that may be asked, by the caller's keys. Holders no
    /// longer listed are lost (their requests return to missing); new ones
    /// start with no measurement.
    pub fn set_holders(&mut self, keys: &[u64]) {
        let gone: Vec<u64> = self
            .holders
            .iter()
            .map(|h| h.key)
            .filter(|k| !keys.contains(k))
            .collect();
        for k in gone {
            self.holder_lost(k);
        }
        for &k in keys {
            if !self.holders.iter().any(|h| h.key == k) {
                self.holders.push(Holder {
                    key: k,
                    in_flight: 0,
                    latency_ns: None,
                    failures: 0,
                    last_turn: 0,
                });
            }
        }
        self.holders.sort_by_key(|h| h.key);
    }

    /// The holder `key` is gone (connection refused or broken): its
    /// requests return to missing and it is asked nothing more until
    /// listed again by [`FetchPlan::set_holders`].
    pub fn holder_lost(&mut self, key: u64) {
        for c in &mut self.chunks {
            if let Chunk::InFlight { holder, .. } = *c
                && holder == key
            {
                *c = Chunk::Missing { avoid: Some(key) };
            }
        }
        self.holders.retain(|h| h.key != key);
    }

    /// Chunk `i` arrived from `holder` and verified (`bytes` long).
    pub fn completed(&mut self, now: LocalTime, i: u64, holder: u64, bytes: u64) {
        let since = match self.chunk(i) {
            Some(Chunk::InFlight { holder: h, since }) if h == holder => Some(since),
            _ => None,
        };
        if since.is_some() {
            self.release(holder);
        }
        if let Some(since) = since
            && let Some(h) = self.holders.iter_mut().find(|h| h.key == holder)
        {
            let sample = now.since(since).0;
            // EWMA with weight 1/4: follows a holder that slows down within
            // a few chunks, yet one outlier does not double the window.
            h.latency_ns = Some(match h.latency_ns {
                None => sample,
                Some(l) => (3 * l + sample) / 4,
            });
        }
        if self.recent.len() == THROUGHPUT_SAMPLES {
            self.recent.pop_front();
        }
        self.recent.push_back((now, bytes));
        self.fetched_bytes += bytes;
        if let Some(c) = self.chunk_mut(i) {
            *c = Chunk::Have;
        }
    }

    /// Chunk `i` arrived from `holder` but failed verification (corrupt or
    /// forged), or the holder said it does not have it: ask another holder.
    pub fn rejected(&mut self, i: u64, holder: u64) {
        self.rejected += 1;
        if let Some(h) = self.holders.iter_mut().find(|h| h.key == holder) {
            h.failures += 1;
        }
        if let Some(c) = self.chunk_mut(i)
            && matches!(*c, Chunk::InFlight { holder: h, .. } if h == holder)
        {
            *c = Chunk::Missing {
                avoid: Some(holder),
            };
            self.release(holder);
        }
    }

    /// Gives up requests in flight far longer than their holder usually
    /// takes; returns them (so the caller can ignore late answers).
    pub fn poll_timeouts(&mut self, now: LocalTime) -> Vec<Request> {
        let mut out = Vec::new();
        for (i, c) in self.chunks.iter_mut().enumerate() {
            let Chunk::InFlight { holder, since } = *c else {
                continue;
            };
            let usual = self
                .holders
                .iter()
                .find(|h| h.key == holder)
                .and_then(|h| h.latency_ns)
                .unwrap_or(DEFAULT_LATENCY_NS);
            let limit = usual.saturating_mul(TIMEOUT_FACTOR).max(MIN_TIMEOUT_NS);
            if now.since(since).0 > limit {
                *c = Chunk::Missing {
                    avoid: Some(holder),
                };
                out.push(Request {
                    chunk: i as u64,
                    holder,
                });
            }
        }
        for r in &out {
            self.timeouts += 1;
            self.release(r.holder);
            if let Some(h) = self.holders.iter_mut().find(|h| h.key == r.holder) {
                h.failures += 1;
            }
        }
        out
    }

    /// The measured latency (mean of the holders' smoothed latencies), ns.
    #[must_use]
    pub fn latency_ns(&self) -> u64 {
        let known: Vec<u64> = self.holders.iter().filter_map(|h| h.latency_ns).collect();
        if known.is_empty() {
            DEFAULT_LATENCY_NS
        } else {
            known.iter().sum::<u64>() / known.len() as u64
        }
    }

    /// Delivered throughput over the recent completions, bytes/s (0 if not
    /// yet measurable).
    #[must_use]
    pub fn throughput_bps(&self) -> u64 {
        let (Some(first), Some(last)) = (self.recent.front(), self.recent.back()) else {
            return 0;
        };
        let span = last.0.since(first.0).0;
        if self.recent.len() < 2 || span == 0 {
            return 0;
        }
        // The first completion's bytes arrived before the span began.
        let bytes: u64 = self.recent.iter().skip(1).map(|r| r.1).sum();
        u64::try_from(u128::from(bytes) * u128::from(NANOS_PER_SEC) / u128::from(span))
            .unwrap_or(u64::MAX)
    }

    /// The current prefetch window, in chunks (see [`prefetch_chunks`]).
    #[must_use]
    pub fn window(&self) -> u64 {
        prefetch_chunks(
            self.latency_ns(),
            self.throughput_bps(),
            self.playback_bps,
            self.chunk_size,
        )
    }

    /// Bytes of verified chunks delivered so far.
    #[must_use]
    pub fn fetched_bytes(&self) -> u64 {
        self.fetched_bytes
    }

    /// Chunks rejected (corrupt, forged or refused) so far.
    #[must_use]
    pub fn rejected_count(&self) -> u64 {
        self.rejected
    }

    /// Requests given up as too slow so far.
    #[must_use]
    pub fn timeout_count(&self) -> u64 {
        self.timeouts
    }

    /// Requests in flight.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.holders.iter().map(|h| u64::from(h.in_flight)).sum()
    }

    /// The next request to make, if any: the demanded chunk first, then the
    /// window from `playhead` (a chunk index) on; the holder expected to
    /// deliver soonest. Call until `None`; each returned request is counted
    /// in flight from `now`.
    pub fn next_request(
        &mut self,
        now: LocalTime,
        playhead: u64,
        demand: Option<u64>,
    ) -> Option<Request> {
        let window = self.window();
        let end = playhead.saturating_add(window).min(self.chunk_count());
        // The whole window may be in flight at once, never more: after a
        // seek, at most this much was asked for the old position.
        if self.in_flight() >= window {
            return None;
        }
        let candidates = demand
            .into_iter()
            .chain(playhead..end)
            .filter(|&i| i < self.chunk_count());
        for i in candidates {
            let Some(Chunk::Missing { avoid }) = self.chunk(i) else {
                continue;
            };
            let holder = self.pick_holder(avoid)?;
            if let Some(c) = self.chunk_mut(i) {
                *c = Chunk::InFlight { holder, since: now };
            }
            if let Some(h) = self.holders.iter_mut().find(|h| h.key == holder) {
                h.in_flight += 1;
            }
            return Some(Request { chunk: i, holder });
        }
        None
    }

    /// The holder for a new request: among those with room in their
    /// pipeline, the ones expected to finish it within twice the best
    /// expected time share the work in turn (so equal holders split a stem
    /// evenly, and a much slower one is used only when the others are
    /// full); `avoid` only if no other holder has room.
    fn pick_holder(&mut self, avoid: Option<u64>) -> Option<u64> {
        let tput = self.throughput_bps();
        let cost = |h: &Holder| -> u128 {
            let latency = u128::from(h.latency_ns.unwrap_or(DEFAULT_LATENCY_NS)).max(1);
            // A holder that failed is still used, but after the others.
            (u128::from(h.in_flight) + 1) * latency * (1 + u128::from(h.failures.min(8)))
        };
        let pick = |skip: Option<u64>| {
            let open: Vec<&Holder> = self
                .holders
                .iter()
                .filter(|h| h.in_flight < self.pipeline_depth(h, tput))
                .filter(|h| Some(h.key) != skip)
                .collect();
            let best = open.iter().map(|h| cost(h)).min()?;
            open.iter()
                .filter(|h| cost(h) <= 2 * best)
                .min_by_key(|h| (h.last_turn, h.key))
                .map(|h| h.key)
        };
        let key = pick(avoid).or_else(|| pick(None))?;
        self.turn += 1;
        let turn = self.turn;
        if let Some(h) = self.holders.iter_mut().find(|h| h.key == key) {
            h.last_turn = turn;
        }
        Some(key)
    }

    /// Requests a holder may have in flight: its bandwidth-delay product in
    /// chunks, plus one, within 1..=[`MAX_PIPELINE`].
    fn pipeline_depth(&self, h: &Holder, tput: u64) -> u32 {
        let latency = u128::from(h.latency_ns.unwrap_or(DEFAULT_LATENCY_NS));
        let tput = if tput == 0 {
            u128::from(self.playback_bps) * 10
        } else {
            u128::from(tput)
        };
        let bdp = latency * tput / u128::from(NANOS_PER_SEC) / u128::from(self.chunk_size);
        u32::try_from(bdp + 2)
            .unwrap_or(MAX_PIPELINE)
            .clamp(1, MAX_PIPELINE)
    }

    fn release(&mut self, holder: u64) {
        if let Some(h) = self.holders.iter_mut().find(|h| h.key == holder) {
            h.in_flight = h.in_flight.saturating_sub(1);
        }
    }

    fn chunk(&self, i: u64) -> Option<Chunk> {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.chunks.get(i))
            .copied()
    }

    fn chunk_mut(&mut self, i: u64) -> Option<&mut Chunk> {
        usize::try_from(i).ok().and_then(|i| self.chunks.get_mut(i))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    const CHUNK: u64 = 65_536;
    /// 48 kHz stereo 16-bit: 192 000 bytes/s.
    const BPS: u64 = 192_000;

    fn t(ms: u64) -> LocalTime {
        LocalTime(ms * 1_000_000)
    }

    fn drain(
        p: &mut FetchPlan,
        now: LocalTime,
        playhead: u64,
        demand: Option<u64>,
    ) -> Vec<Request> {
        let mut v = Vec::new();
        while let Some(r) = p.next_request(now, playhead, demand) {
            v.push(r);
            assert!(v.len() < 10_000);
        }
        v
    }

    #[test]
    fn demand_goes_first_then_the_window_in_order() {
        let mut p = FetchPlan::new(100, CHUNK, BPS);
        p.set_holders(&[1]);
        let reqs = drain(&mut p, t(0), 10, Some(40));
        assert_eq!(reqs[0].chunk, 40);
        let rest: Vec<u64> = reqs[1..].iter().map(|r| r.chunk).collect();
        let mut sorted = rest.clone();
        sorted.sort_unstable();
        assert_eq!(rest, sorted);
        assert!(rest.iter().all(|&c| (10..10 + p.window()).contains(&c)));
    }

    #[test]
    fn requests_spread_over_equal_holders() {
        let mut p = FetchPlan::new(200, CHUNK, BPS);
        p.set_holders(&[1, 2]);
        let mut per = [0u32; 3];
        let mut now = 0;
        let mut playhead = 0;
        while playhead < 150 {
            for r in drain(&mut p, t(now), playhead, None) {
                per[r.holder as usize] += 1;
                p.completed(t(now + 10), r.chunk, r.holder, CHUNK);
            }
            now += 10;
            playhead += 1;
        }
        assert!(per[1] > 40 && per[2] > 40, "{per:?}");
    }

    #[test]
    fn a_lost_holder_gives_back_its_chunks_to_the_other() {
        let mut p = FetchPlan::new(50, CHUNK, BPS);
        p.set_holders(&[1, 2]);
        let first = drain(&mut p, t(0), 0, None);
        assert!(first.iter().any(|r| r.holder == 1));
        p.holder_lost(1);
        // As holder 2 delivers, everything holder 1 had is asked of it.
        let mut again = Vec::new();
        let mut outstanding: Vec<Request> =
            first.iter().filter(|r| r.holder == 2).copied().collect();
        for round in 0..20 {
            for r in outstanding.drain(..) {
                p.completed(t(5 + round), r.chunk, r.holder, CHUNK);
            }
            outstanding = drain(&mut p, t(5 + round), 0, None);
            assert!(outstanding.iter().all(|r| r.holder == 2));
            again.extend(outstanding.iter().copied());
        }
        for r in first.iter().filter(|r| r.holder == 1) {
            assert!(
                again.iter().any(|a| a.chunk == r.chunk),
                "chunk {} re-asked",
                r.chunk
            );
        }
    }

    #[test]
    fn a_rejected_chunk_is_asked_of_another_holder() {
        let mut p = FetchPlan::new(10, CHUNK, BPS);
        p.set_holders(&[1, 2]);
        let r = p.next_request(t(0), 0, Some(3)).unwrap();
        assert_eq!(r.chunk, 3);
        p.rejected(3, r.holder);
        let again = p.next_request(t(1), 0, Some(3)).unwrap();
        assert_eq!(again.chunk, 3);
        assert_ne!(again.holder, r.holder);
        assert_eq!(p.rejected_count(), 1);
        // With one holder left, it is asked again rather than never.
        let mut one = FetchPlan::new(10, CHUNK, BPS);
        one.set_holders(&[7]);
        let r = one.next_request(t(0), 0, Some(3)).unwrap();
        one.rejected(3, 7);
        assert_eq!(
            one.next_request(t(1), 0, Some(3)),
            Some(Request {
                chunk: 3,
                holder: 7
            })
        );
        let _ = r;
    }

    #[test]
    fn slow_requests_time_out_and_move() {
        let mut p = FetchPlan::new(10, CHUNK, BPS);
        p.set_holders(&[1, 2]);
        let r = p.next_request(t(0), 0, Some(0)).unwrap();
        assert!(p.poll_timeouts(t(500)).is_empty());
        let gone = p.poll_timeouts(t(1_500));
        assert!(gone.contains(&r));
        let again = p.next_request(t(1_500), 0, Some(0)).unwrap();
        assert_eq!(again.chunk, 0);
        assert_ne!(again.holder, r.holder);
    }

    #[test]
    fn window_follows_latency() {
        let mut fast = FetchPlan::new(500, CHUNK, BPS);
        let mut slow = FetchPlan::new(500, CHUNK, BPS);
        fast.set_holders(&[1]);
        slow.set_holders(&[1]);
        for i in 0..8 {
            let r = fast.next_request(t(i * 100), 0, Some(i)).unwrap();
            fast.completed(t(i * 100 + 1), r.chunk, 1, CHUNK);
            let r = slow.next_request(t(i * 100), 0, Some(i)).unwrap();
            slow.completed(t(i * 100 + 400), r.chunk, 1, CHUNK);
        }
        assert!(
            slow.window() > fast.window(),
            "{} vs {}",
            slow.window(),
            fast.window()
        );
    }

    proptest! {
        #[test]
        fn prefetch_is_monotone_and_bounded(
            lat in 0u64..5_000_000_000,
            extra in 0u64..5_000_000_000,
            tput in 1u64..1_000_000_000,
            less in 0u64..1_000_000_000,
            bps in 0u64..2_000_000,
        ) {
            let w = prefetch_chunks(lat, tput, bps, CHUNK);
            prop_assert!((MIN_WINDOW..=MAX_WINDOW).contains(&w));
            prop_assert!(prefetch_chunks(lat.saturating_add(extra), tput, bps, CHUNK) >= w);
            let slower = tput.saturating_sub(less).max(1);
            prop_assert!(prefetch_chunks(lat, slower, bps, CHUNK) >= w);
        }

        /// Whatever happens, a chunk is never asked while held or in flight,
        /// only of listed holders, and in-flight never exceeds the window.
        #[test]
        fn never_asks_twice_nor_strangers(
            ops in proptest::collection::vec((0u8..6, 0u64..40, 0u64..4), 1..200),
        ) {
            let mut p = FetchPlan::new(40, CHUNK, BPS);
            let mut holders = vec![0u64, 1, 2];
            p.set_holders(&holders);
            let mut in_flight: Vec<Request> = Vec::new();
            let mut held: Vec<u64> = Vec::new();
            let mut now = 0u64;
            for (op, x, h) in ops {
                now += 7;
                match op {
                    0 | 1 => {
                        while let Some(r) = p.next_request(t(now), x, (op == 1).then_some(x)) {
                            prop_assert!(holders.contains(&r.holder));
                            prop_assert!(!held.contains(&r.chunk));
                            prop_assert!(!in_flight.iter().any(|f| f.chunk == r.chunk));
                            in_flight.push(r);
                            prop_assert!(p.in_flight() <= p.window());
                        }
                    }
                    2 => if let Some(pos) = in_flight.iter().position(|f| f.chunk % 4 == h) {
                        let r = in_flight.remove(pos);
                        p.completed(t(now), r.chunk, r.holder, CHUNK);
                        prop_assert!(p.has(r.chunk));
                        held.push(r.chunk);
                    },
                    3 => if let Some(pos) = in_flight.iter().position(|f| f.holder == h) {
                        let r = in_flight.remove(pos);
                        p.rejected(r.chunk, r.holder);
                    },
                    4 => {
                        p.holder_lost(h);
                        in_flight.retain(|f| f.holder != h);
                        holders.retain(|&k| k != h);
                        if holders.is_empty() {
                            holders = vec![h];
                            p.set_holders(&holders);
                        }
                    }
                    _ => {
                        for r in p.poll_timeouts(t(now)) {
                            in_flight.retain(|f| *f != r);
                        }
                        now += 2_000;
                    }
                }
                let counted = p.in_flight();
                prop_assert_eq!(counted, in_flight.len() as u64);
            }
        }
    }
}
