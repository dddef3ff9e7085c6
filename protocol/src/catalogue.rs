//! The room's catalogue: which tracks exist, what they are made of, who
//! holds which stems, and what each member is called.
//!
//! A room must agree on which track plays (that is the transport state's
//! job), but to *offer* a track, or to fetch a stem one lacks, a member needs
//! to know the tracks of the others. A full catalogue does not fit one
//! heartbeat, so it travels in two steps:
//!
//! 1. every heartbeat carries a 64-bit digest of its sender's *index* (its
//!    name and its holdings: which stems of which tracks it holds);
//! 2. a member that sees a digest it has not assembled asks the sender for
//!    its index, one page per datagram ([`CatalogueQuery::Index`]), and for
//!    every track it does not know yet asks one holder for the track's
//!    description ([`CatalogueQuery::Track`]), one track per datagram.
//!
//! A track description is checked against its id on arrival (the id is a
//! hash of the stems' names and hashes, see [`crate::content`]), so a
//! member cannot describe another track's stems under an id; the title and
//! length are not covered by the id and are taken from the first holder
//! that answered (the member's own library first).
//!
//! [`Catalogue`] is sans-IO like the rest of this crate: it is told what
//! arrived and when, and says what to ask whom; [`crate::member::Member`]
//! wraps its questions and answers into sealed datagrams.
//!
//! Invariant: everything here is bounded (members, pages, holdings, known
//! tracks), and a malformed, inconsistent or unsolicited answer changes
//! nothing but a counter. Specified in `docs/protocol.md`, "Catalogue".

use std::collections::BTreeMap;

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

use crate::content::{StemHash, TrackId};
use crate::ids::MemberId;
use crate::time::{LocalTime, Nanos};
use crate::transport::{Frames, MAX_CHANNELS};

/// Most bytes of a member's name on the wire (longer names are cut at a
/// character boundary).
pub const MAX_NAME: usize = 32;

/// Most bytes of a track's title on the wire.
pub const MAX_TITLE: usize = 64;

/// Most bytes of a stem's (channel's) name on the wire.
pub const MAX_STEM_NAME: usize = 24;

/// Holdings per index page (one datagram).
pub const INDEX_PAGE: usize = 32;

/// Most tracks one member can announce: `u8` pages of [`INDEX_PAGE`] would
/// allow more, but a room's catalogue must stay small in memory.
pub const MAX_HELD_TRACKS: usize = 16 * INDEX_PAGE;

/// Most distinct tracks a member remembers descriptions of.
pub const MAX_KNOWN_TRACKS: usize = 1024;

/// Most members whose index a member keeps (the room's bound).
const MAX_PEERS: usize = crate::wire::MAX_MEMBERS;

/// Silence after which an unanswered question is asked again (of another
/// holder, for a track).
pub const RETRY_AFTER: Nanos = Nanos::from_millis(300);

/// Most questions [`Catalogue::poll_queries`] returns at once, so a member
/// that meets a large room spreads its questions over several rounds.
pub const MAX_QUERIES_PER_POLL: usize = 8;

/// Which stems of one track a member holds: bit `i` set means it holds stem
/// `i` (channel `Stem(i)`) in full.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize,
)]
pub struct Holding {
    /// The track.
    pub track: TrackId,
    /// Bit mask of the stems held.
    pub stems: u8,
}

/// One stem of a track: its channel name and content identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct StemInfo {
    /// Channel name (from the file name), e.g. "drums".
    pub name: heapless::String<MAX_STEM_NAME>,
    /// The stem file's identity.
    pub hash: StemHash,
}

/// What a track is: the description a holder gives.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct TrackInfo {
    /// Its identity: [`TrackId::of`] the stems, in channel order.
    pub id: TrackId,
    /// Its title (from the holder's `track.toml`, or its folder name).
    pub title: heapless::String<MAX_TITLE>,
    /// Its length in timeline frames (the longest stem).
    pub length: Frames,
    /// Its stems in channel order.
    pub stems: heapless::Vec<StemInfo, MAX_CHANNELS>,
}

/// A question to another member's catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum CatalogueQuery {
    /// Page `page` of its index (the answer says how many pages there are).
    Index {
        /// Which page, from 0.
        page: u8,
    },
    /// The description of a track.
    Track(TrackId),
}

/// One page of a member's index: its name and part of its holdings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct IndexPage {
    /// Digest of the whole index this page belongs to.
    pub digest: u64,
    /// The member's name.
    pub name: heapless::String<MAX_NAME>,
    /// This page's number.
    pub page: u8,
    /// How many pages the index has (at least 1).
    pub pages: u8,
    /// Holdings on this page, in track id order.
    pub holdings: heapless::Vec<Holding, INDEX_PAGE>,
}

/// `s` cut to at most `N` bytes at a character boundary.
#[must_use]
pub fn bounded<const N: usize>(s: &str) -> heapless::String<N> {
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = heapless::String::new();
    out.push_str(&s[..end])
        .expect("cut to the capacity at a char boundary");
    out
}

impl TrackInfo {
    /// Whether the description is usable: 1 to [`MAX_CHANNELS`] stems whose
    /// names and hashes hash to the claimed id.
    #[must_use]
    pub fn is_consistent(&self) -> bool {
        !self.stems.is_empty()
            && TrackId::of(self.stems.iter().map(|s| (s.name.as_str(), s.hash))) == self.id
    }
}

/// Counters of answers that changed nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatalogueCounters {
    /// Track descriptions whose stems do not hash to their id.
    pub inconsistent: u64,
    /// Answers nobody asked for, for an index we no longer wait for, or
    /// over a bound.
    pub unsolicited: u64,
    /// Descriptions dropped because [`MAX_KNOWN_TRACKS`] were known.
    pub full: u64,
}

/// What this member knows of one other member's index.
#[derive(Clone, Debug, Default)]
struct Peer {
    /// Digest from its latest heartbeat.
    announced: Option<u64>,
    /// Its name, from its latest complete index.
    name: String,
    /// Digest of `holdings` (complete index), if assembled.
    digest: Option<u64>,
    /// Its holdings, from its latest complete index.
    holdings: Vec<Holding>,
    /// An index being assembled: its digest and the pages so far.
    assembling: Option<(u64, Vec<Option<IndexPage>>)>,
    /// When an index question was last sent to it.
    asked_at: Option<LocalTime>,
}

/// The catalogue as one member knows it. See the module documentation.
#[derive(Clone, Debug)]
pub struct Catalogue {
    me: MemberId,
    name: String,
    holdings: Vec<Holding>,
    digest: u64,
    peers: BTreeMap<MemberId, Peer>,
    tracks: BTreeMap<TrackId, TrackInfo>,
    /// Track questions in flight: when, and how many times asked.
    asking: BTreeMap<TrackId, (LocalTime, u32)>,
    counters: CatalogueCounters,
    /// Moves whenever a query's answer may have changed (see
    /// [`Catalogue::generation`]).
    generation: u64,
}

/// The digest of an index: BLAKE3 over its canonical encoding, cut to 64
/// bits (a change is noticed; a collision only delays an update).
fn index_digest(name: &str, holdings: &[Holding]) -> u64 {
    let mut h = blake3::Hasher::new_derive_key("autoharmonize 2026-12 member index");
    h.update(&(name.len() as u64).to_le_bytes());
    h.update(name.as_bytes());
    for holding in holdings {
        h.update(&holding.track.0);
        h.update(&[holding.stems]);
    }
    let mut out = [0; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(out)
}

impl Catalogue {
    /// An empty catalogue of member `me`, named `name`, holding nothing.
    #[must_use]
    pub fn new(me: MemberId, name: &str) -> Catalogue {
        let mut c = Catalogue {
            me,
            name: String::new(),
            holdings: Vec::new(),
            digest: 0,
            peers: BTreeMap::new(),
            tracks: BTreeMap::new(),
            asking: BTreeMap::new(),
            counters: CatalogueCounters::default(),
            generation: 0,
        };
        c.set_local(name, Vec::new());
        c
    }

    /// Sets this member's name and library: the tracks it holds and which
    /// of their stems (bit `i`: stem `i`). Inconsistent descriptions are
    /// skipped; at most [`MAX_HELD_TRACKS`] are announced (the first by
    /// track id). Returns how many tracks are announced.
    pub fn set_local(&mut self, name: &str, library: Vec<(TrackInfo, u8)>) -> usize {
        let name = bounded::<MAX_NAME>(name).as_str().to_owned();
        let mut changed = name != self.name;
        self.name = name;
        let mut held: BTreeMap<TrackId, (TrackInfo, u8)> = BTreeMap::new();
        for (info, stems) in library {
            if info.is_consistent() && stems != 0 {
                held.insert(info.id, (info, stems));
            }
        }
        let holdings: Vec<Holding> = held
            .iter()
            .take(MAX_HELD_TRACKS)
            .map(|(&track, &(_, stems))| Holding { track, stems })
            .collect();
        changed |= holdings != self.holdings;
        self.holdings = holdings;
        for (id, (info, _)) in held.into_iter().take(MAX_HELD_TRACKS) {
            // Our own description wins over one learned from a peer.
            if self.tracks.get(&id) != Some(&info) {
                self.tracks.insert(id, info);
                changed = true;
            }
        }
        self.digest = index_digest(&self.name, &self.holdings);
        changed |= self.prune();
        if changed {
            self.touch();
        }
        self.holdings.len()
    }

    /// A number that moves whenever what [`Catalogue::tracks`],
    /// [`Catalogue::track`], [`Catalogue::track_holders`],
    /// [`Catalogue::holders`], [`Catalogue::name`] or
    /// [`Catalogue::is_complete`] return may have changed, and stays put
    /// on updates that change none of them (a heartbeat repeating a known
    /// digest, an answer that is dropped, a question asked). A front end
    /// that derives a view from this catalogue rebuilds it only when the
    /// generation it was built at is no longer current. Comparable only
    /// between readings of the same catalogue.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn touch(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// The digest of this member's index, for its heartbeats.
    #[must_use]
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Records the index digest a view member announced in a heartbeat.
    pub fn announced(&mut self, member: MemberId, digest: u64) {
        if member == self.me {
            return;
        }
        if !self.peers.contains_key(&member) && self.peers.len() >= MAX_PEERS {
            return;
        }
        let peer = self.peers.entry(member).or_default();
        if peer.announced != Some(digest) {
            // Whether the room's index is complete may have changed.
            peer.announced = Some(digest);
            self.touch();
        }
    }

    /// Forgets members for which `keep` is false (they left the view), and
    /// the tracks nobody holds any more.
    pub fn retain(&mut self, mut keep: impl FnMut(MemberId) -> bool) {
        let before = self.peers.len();
        self.peers.retain(|&id, _| keep(id));
        if self.peers.len() != before {
            self.prune();
            self.touch();
        }
    }

    /// Forgets the tracks nobody holds; returns whether any was forgotten.
    fn prune(&mut self) -> bool {
        let held: std::collections::BTreeSet<TrackId> = self
            .holdings
            .iter()
            .chain(self.peers.values().flat_map(|p| p.holdings.iter()))
            .map(|h| h.track)
            .collect();
        let before = self.tracks.len();
        self.tracks.retain(|id, _| held.contains(id));
        self.asking.retain(|id, _| held.contains(id));
        self.tracks.len() != before
    }

    /// The questions to send now, each to one member: index pages of
    /// members whose announced digest we have not assembled, then
    /// descriptions of tracks somebody holds and we do not know. A question
    /// is repeated after [`RETRY_AFTER`] without an answer (a track's to
    /// the next holder in turn); at most [`MAX_QUERIES_PER_POLL`] at once.
    pub fn poll_queries(&mut self, now: LocalTime) -> Vec<(MemberId, CatalogueQuery)> {
        let due = |asked: Option<LocalTime>| asked.is_none_or(|t| now.since(t) >= RETRY_AFTER);
        let mut out = Vec::new();
        for (&id, peer) in &mut self.peers {
            if out.len() >= MAX_QUERIES_PER_POLL {
                break;
            }
            let Some(announced) = peer.announced else {
                continue;
            };
            if peer.digest == Some(announced) || !due(peer.asked_at) {
                continue;
            }
            peer.asked_at = Some(now);
            match &peer.assembling {
                Some((digest, pages)) if *digest == announced => {
                    for (i, page) in pages.iter().enumerate() {
                        if page.is_none() && out.len() < MAX_QUERIES_PER_POLL {
                            let page = u8::try_from(i).unwrap_or(u8::MAX);
                            out.push((id, CatalogueQuery::Index { page }));
                        }
                    }
                }
                _ => out.push((id, CatalogueQuery::Index { page: 0 })),
            }
        }
        let mut wanted: BTreeMap<TrackId, Vec<MemberId>> = BTreeMap::new();
        for (&id, peer) in &self.peers {
            for h in &peer.holdings {
                if !self.tracks.contains_key(&h.track) {
                    wanted.entry(h.track).or_default().push(id);
                }
            }
        }
        for (track, holders) in wanted {
            if out.len() >= MAX_QUERIES_PER_POLL {
                break;
            }
            let asked = self.asking.get(&track).copied();
            if !due(asked.map(|a| a.0)) {
                continue;
            }
            let tries = asked.map_or(0, |a| a.1);
            let holder = holders[usize::try_from(tries).unwrap_or(0) % holders.len()];
            self.asking.insert(track, (now, tries.saturating_add(1)));
            out.push((holder, CatalogueQuery::Track(track)));
        }
        out
    }

    /// The page `page` of this member's index, or `None` past the last
    /// page.
    #[must_use]
    pub fn index_page(&self, page: u8) -> Option<IndexPage> {
        let pages = self.holdings.len().div_ceil(INDEX_PAGE).max(1);
        let start = usize::from(page) * INDEX_PAGE;
        if usize::from(page) >= pages {
            return None;
        }
        Some(IndexPage {
            digest: self.digest,
            name: bounded(&self.name),
            page,
            pages: u8::try_from(pages).expect("MAX_HELD_TRACKS bounds the pages"),
            holdings: self
                .holdings
                .iter()
                .skip(start)
                .take(INDEX_PAGE)
                .copied()
                .collect(),
        })
    }

    /// The answer to `query`, if this member has one.
    #[must_use]
    pub fn answer(&self, query: CatalogueQuery) -> Option<CatalogueAnswer> {
        match query {
            CatalogueQuery::Index { page } => self.index_page(page).map(CatalogueAnswer::Index),
            CatalogueQuery::Track(id) => self.tracks.get(&id).cloned().map(CatalogueAnswer::Track),
        }
    }

    /// Takes in a page of `from`'s index.
    pub fn on_index(&mut self, from: MemberId, page: IndexPage) {
        let Some(peer) = self.peers.get_mut(&from) else {
            self.counters.unsolicited += 1;
            return;
        };
        let pages = usize::from(page.pages);
        let valid = pages >= 1
            && pages <= MAX_HELD_TRACKS.div_ceil(INDEX_PAGE)
            && page.page < page.pages
            && peer.announced == Some(page.digest)
            && peer.digest != Some(page.digest);
        if !valid {
            self.counters.unsolicited += 1;
            return;
        }
        let fresh =
            !matches!(&peer.assembling, Some((d, p)) if *d == page.digest && p.len() == pages);
        if fresh {
            peer.assembling = Some((page.digest, vec![None; pages]));
            // Now that the page count is known, the other pages are due.
            peer.asked_at = None;
        }
        let Some((digest, pages)) = &mut peer.assembling else {
            return;
        };
        let index = usize::from(page.page);
        pages[index] = Some(page);
        if pages.iter().all(Option::is_some) {
            let digest = *digest;
            let pages = core::mem::take(pages);
            peer.assembling = None;
            let mut holdings: Vec<Holding> = Vec::new();
            let mut name = String::new();
            for p in pages.into_iter().flatten() {
                name = p.name.as_str().to_owned();
                holdings.extend(p.holdings.iter().copied());
            }
            holdings.sort_unstable();
            holdings.dedup_by_key(|h| h.track);
            if index_digest(&name, &holdings) != digest {
                // Pages of different versions, or a lying member: start over.
                self.counters.inconsistent += 1;
                peer.asked_at = None;
                return;
            }
            peer.name = name;
            peer.holdings = holdings;
            peer.digest = Some(digest);
            peer.asked_at = None;
            self.prune();
            self.touch();
        }
    }

    /// Takes in a track description (from anyone; it is checked).
    pub fn on_track(&mut self, info: TrackInfo) {
        if !info.is_consistent() {
            self.counters.inconsistent += 1;
            return;
        }
        if self.tracks.contains_key(&info.id) || !self.asking.contains_key(&info.id) {
            self.counters.unsolicited += 1;
            return;
        }
        if self.tracks.len() >= MAX_KNOWN_TRACKS {
            self.counters.full += 1;
            return;
        }
        self.asking.remove(&info.id);
        self.tracks.insert(info.id, info);
        self.touch();
    }

    // ----- queries ------------------------------------------------------

    /// This member's own name.
    #[must_use]
    pub fn own_name(&self) -> &str {
        &self.name
    }

    /// The name `member` gave in its index (this member's own name for
    /// itself), if known.
    #[must_use]
    pub fn name(&self, member: MemberId) -> Option<&str> {
        if member == self.me {
            return Some(&self.name);
        }
        self.peers
            .get(&member)
            .filter(|p| p.digest.is_some())
            .map(|p| p.name.as_str())
    }

    /// The description of track `id`, if known.
    #[must_use]
    pub fn track(&self, id: TrackId) -> Option<&TrackInfo> {
        self.tracks.get(&id)
    }

    /// Every described track somebody in the room holds, in id order.
    pub fn tracks(&self) -> impl Iterator<Item = &TrackInfo> {
        self.tracks.values()
    }

    /// Who holds which stems of track `id`: `(member, stem mask)`, this
    /// member included, in member order.
    #[must_use]
    pub fn track_holders(&self, id: TrackId) -> Vec<(MemberId, u8)> {
        let own = self
            .holdings
            .iter()
            .filter(|h| h.track == id)
            .map(|h| (self.me, h.stems));
        let peers = self.peers.iter().flat_map(|(&m, p)| {
            p.holdings
                .iter()
                .filter(move |h| h.track == id)
                .map(move |h| (m, h.stems))
        });
        let mut all: Vec<(MemberId, u8)> = own.chain(peers).collect();
        all.sort_unstable();
        all
    }

    /// The members that hold the stem with this hash in full (in any track
    /// that has it), this member included, in member order.
    #[must_use]
    pub fn holders(&self, stem: StemHash) -> Vec<MemberId> {
        let mut out = Vec::new();
        for info in self.tracks.values() {
            for (i, s) in info.stems.iter().enumerate() {
                if s.hash != stem {
                    continue;
                }
                for (m, mask) in self.track_holders(info.id) {
                    if mask & (1 << i) != 0 {
                        out.push(m);
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether every announced index is assembled and every held track is
    /// described: what a front end waits for before listing the tracks.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.peers
            .values()
            .all(|p| p.announced.is_none() || p.digest == p.announced)
            && self
                .peers
                .values()
                .flat_map(|p| p.holdings.iter())
                .all(|h| self.tracks.contains_key(&h.track))
    }

    /// Answers that changed nothing, by cause.
    #[must_use]
    pub fn counters(&self) -> CatalogueCounters {
        self.counters
    }
}

/// An answer to a [`CatalogueQuery`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum CatalogueAnswer {
    /// A page of the sender's index.
    Index(IndexPage),
    /// A track description.
    Track(TrackInfo),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    const A: MemberId = MemberId(1);
    const B: MemberId = MemberId(2);
    const C: MemberId = MemberId(3);

    fn stem(name: &str, seed: u8) -> StemInfo {
        StemInfo {
            name: bounded(name),
            hash: StemHash([seed; 32]),
        }
    }

    fn track(title: &str, seeds: &[u8]) -> TrackInfo {
        let names = ["drums", "bass", "keys", "vox", "a", "b", "c", "d"];
        let stems: heapless::Vec<StemInfo, MAX_CHANNELS> =
            seeds.iter().zip(names).map(|(&s, n)| stem(n, s)).collect();
        TrackInfo {
            id: TrackId::of(stems.iter().map(|s| (s.name.as_str(), s.hash))),
            title: bounded(title),
            length: Frames(48_000 * 60),
            stems,
        }
    }

    /// Everything a front end can read of a catalogue: the described
    /// tracks, the holders of every track anybody holds, the names of the
    /// members tests use, and completeness.
    type Observed = (
        Vec<TrackInfo>,
        Vec<(TrackId, Vec<(MemberId, u8)>)>,
        Vec<Option<String>>,
        bool,
    );

    fn observed(c: &Catalogue) -> Observed {
        let ids: std::collections::BTreeSet<TrackId> = c
            .holdings
            .iter()
            .chain(c.peers.values().flat_map(|p| p.holdings.iter()))
            .map(|h| h.track)
            .collect();
        (
            c.tracks().cloned().collect(),
            ids.into_iter()
                .map(|id| (id, c.track_holders(id)))
                .collect(),
            (0..=8)
                .map(|m| c.name(MemberId(m)).map(str::to_owned))
                .collect(),
            c.is_complete(),
        )
    }

    /// Runs `update` on `c` and fails if it changed what `c` shows
    /// without moving its generation.
    fn checked<R>(c: &mut Catalogue, update: impl FnOnce(&mut Catalogue) -> R) -> R {
        let (before, generation) = (observed(c), c.generation());
        let out = update(c);
        if observed(c) != before {
            assert_ne!(
                c.generation(),
                generation,
                "a visible change must move the generation"
            );
        }
        out
    }

    /// Runs question/answer exchanges between catalogues until nobody has
    /// a question (every heartbeat digest delivered first), at most `steps`
    /// exchanges of 300 ms each. Every update is [`checked`].
    fn settle(cats: &mut [Catalogue], steps: u64) -> u64 {
        for step in 0..steps {
            let now = LocalTime(step * RETRY_AFTER.0);
            let digests: Vec<(MemberId, u64)> = cats.iter().map(|c| (c.me, c.digest())).collect();
            let mut asked = false;
            for i in 0..cats.len() {
                for &(m, d) in &digests {
                    checked(&mut cats[i], |c| c.announced(m, d));
                }
                for (to, q) in checked(&mut cats[i], |c| c.poll_queries(now)) {
                    asked = true;
                    let j = cats.iter().position(|c| c.me == to).unwrap();
                    match cats[j].answer(q) {
                        Some(CatalogueAnswer::Index(p)) => {
                            checked(&mut cats[i], |c| c.on_index(to, p));
                        }
                        Some(CatalogueAnswer::Track(t)) => checked(&mut cats[i], |c| c.on_track(t)),
                        None => {}
                    }
                }
            }
            if !asked {
                return step;
            }
        }
        steps
    }

    #[test]
    fn bounded_cuts_at_a_char_boundary() {
        assert_eq!(bounded::<4>("abcdef").as_str(), "abcd");
        // 'é' is two bytes: cutting at 4 would split it.
        assert_eq!(bounded::<4>("abcé").as_str(), "abc");
        assert_eq!(bounded::<8>("").as_str(), "");
    }

    #[test]
    fn descriptions_must_hash_to_their_id() {
        let mut t = track("Song", &[1, 2]);
        assert!(t.is_consistent());
        t.stems[1].hash = StemHash([9; 32]);
        assert!(!t.is_consistent());
        let mut empty = track("Empty", &[]);
        empty.id = TrackId::of([]);
        assert!(!empty.is_consistent(), "a track has at least one stem");
    }

    #[test]
    fn members_learn_each_others_tracks_names_and_holders() {
        let song = track("Song", &[1, 2, 3]);
        let other = track("Other", &[7]);
        let mut a = Catalogue::new(A, "kitchen");
        a.set_local("kitchen", vec![(song.clone(), 0b011)]);
        let mut b = Catalogue::new(B, "hall");
        b.set_local("hall", vec![(song.clone(), 0b100), (other.clone(), 1)]);
        let c = Catalogue::new(C, "laptop");
        let mut cats = [a, b, c];
        let steps = settle(&mut cats, 20);
        assert!(steps < 20, "the exchange settles");
        for cat in &cats {
            assert!(cat.is_complete());
            assert_eq!(cat.tracks().count(), 2);
            assert_eq!(cat.track(song.id), Some(&song));
            assert_eq!(cat.track_holders(song.id), [(A, 0b011), (B, 0b100)]);
            assert_eq!(cat.holders(StemHash([1; 32])), [A]);
            assert_eq!(cat.holders(StemHash([3; 32])), [B]);
            assert_eq!(cat.holders(StemHash([7; 32])), [B]);
            assert_eq!(cat.holders(StemHash([8; 32])), Vec::<MemberId>::new());
            assert_eq!(cat.name(A), Some("kitchen"));
            assert_eq!(cat.name(B), Some("hall"));
            assert_eq!(cat.name(C), Some("laptop"));
        }
    }

    #[test]
    fn a_changed_library_is_learned_again_and_departed_tracks_pruned() {
        let song = track("Song", &[1]);
        let next = track("Next", &[2]);
        let mut a = Catalogue::new(A, "a");
        a.set_local("a", vec![(song.clone(), 1)]);
        let mut cats = [a, Catalogue::new(B, "b")];
        settle(&mut cats, 20);
        assert!(cats[1].track(song.id).is_some());
        checked(&mut cats[0], |c| {
            c.set_local("renamed", vec![(next.clone(), 1)])
        });
        settle(&mut cats, 20);
        assert_eq!(cats[1].name(A), Some("renamed"));
        assert!(cats[1].track(song.id).is_none(), "nobody holds it any more");
        assert_eq!(cats[1].track(next.id), Some(&next));
        // A member that leaves takes its tracks with it.
        checked(&mut cats[1], |c| c.retain(|m| m != A));
        assert_eq!(cats[1].tracks().count(), 0);
        assert_eq!(cats[1].name(A), None);
    }

    #[test]
    fn a_large_index_travels_in_pages() {
        let library: Vec<(TrackInfo, u8)> = (0..100u8)
            .map(|i| (track(&format!("t{i}"), &[i, i.wrapping_add(100)]), 0b11))
            .collect();
        let mut a = Catalogue::new(A, "big");
        assert_eq!(a.set_local("big", library), 100);
        assert_eq!(a.index_page(0).unwrap().pages, 4);
        assert!(a.index_page(4).is_none());
        let mut cats = [a, Catalogue::new(B, "b")];
        let steps = settle(&mut cats, 100);
        assert!(steps < 100);
        assert_eq!(cats[1].tracks().count(), 100);
        assert!(cats[1].is_complete());
    }

    #[test]
    fn forged_and_unsolicited_answers_change_nothing() {
        let song = track("Song", &[1]);
        let mut b = Catalogue::new(B, "b");
        // Nobody asked: dropped.
        b.on_track(song.clone());
        assert!(b.track(song.id).is_none());
        assert_eq!(b.counters().unsolicited, 1);
        // A page from a member that announced nothing: dropped.
        let mut a = Catalogue::new(A, "a");
        a.set_local("a", vec![(song.clone(), 1)]);
        b.on_index(A, a.index_page(0).unwrap());
        assert_eq!(b.counters().unsolicited, 2);
        // Asked, but the description was tampered with: dropped.
        b.announced(A, a.digest());
        let _ = b.poll_queries(LocalTime(0));
        b.on_index(A, a.index_page(0).unwrap());
        let asks = b.poll_queries(LocalTime(0));
        assert_eq!(asks, [(A, CatalogueQuery::Track(song.id))]);
        let mut forged = song.clone();
        forged.stems[0].hash = StemHash([66; 32]);
        b.on_track(forged);
        assert!(b.track(song.id).is_none());
        assert_eq!(b.counters().inconsistent, 1);
        // A page claiming a digest its content does not have: start over.
        let mut c = Catalogue::new(B, "c");
        let mut page = a.index_page(0).unwrap();
        c.announced(A, page.digest);
        page.name = bounded("liar");
        c.on_index(A, page);
        assert_eq!(c.name(A), None);
        assert_eq!(c.counters().inconsistent, 1);
    }

    #[test]
    fn the_generation_moves_on_visible_changes_and_not_on_repeats() {
        let song = track("Song", &[1, 2]);
        let mut a = Catalogue::new(A, "a");
        let unchanged = |c: &mut Catalogue, update: &dyn Fn(&mut Catalogue)| {
            let g = c.generation();
            update(c);
            g == c.generation()
        };
        let moved = |c: &mut Catalogue, update: &dyn Fn(&mut Catalogue)| {
            !unchanged(c, &|c| checked(c, update))
        };
        assert!(unchanged(&mut a, &|c| {
            c.set_local("a", Vec::new());
        }));
        assert!(moved(&mut a, &|c| {
            c.set_local("a", vec![(song.clone(), 0b11)]);
        }));
        assert!(unchanged(&mut a, &|c| {
            c.set_local("a", vec![(song.clone(), 0b11)]);
        }));
        assert!(moved(&mut a, &|c| {
            c.set_local("a", vec![(song.clone(), 0b01)]);
        }));
        assert!(moved(&mut a, &|c| {
            c.set_local("kitchen", vec![(song.clone(), 0b01)]);
        }));
        let mut retitled = song.clone();
        retitled.title = bounded("Song (live)");
        assert!(moved(&mut a, &|c| {
            c.set_local("kitchen", vec![(retitled.clone(), 0b01)]);
        }));

        let mut b = Catalogue::new(B, "b");
        let digest = a.digest();
        assert!(moved(&mut b, &|c| c.announced(A, digest)));
        assert!(!b.is_complete());
        assert!(unchanged(&mut b, &|c| c.announced(A, digest)), "a repeat");
        assert!(unchanged(&mut b, &|c| c.announced(B, 7)), "our own digest");
        assert!(unchanged(&mut b, &|c| {
            assert_eq!(c.poll_queries(LocalTime(0)).len(), 1);
        }));
        let page = a.index_page(0).unwrap();
        assert!(moved(&mut b, &|c| c.on_index(A, page.clone())));
        assert_eq!(b.name(A), Some("kitchen"));
        assert!(
            unchanged(&mut b, &|c| c.on_index(A, page.clone())),
            "a repeat"
        );
        assert!(unchanged(&mut b, &|c| {
            assert_eq!(c.poll_queries(LocalTime(0)).len(), 1);
        }));
        let mut forged = retitled.clone();
        forged.stems[0].hash = StemHash([66; 32]);
        assert!(unchanged(&mut b, &|c| c.on_track(forged.clone())));
        assert!(moved(&mut b, &|c| c.on_track(retitled.clone())));
        assert!(b.is_complete());
        assert!(
            unchanged(&mut b, &|c| c.on_track(retitled.clone())),
            "a repeat"
        );
        assert!(unchanged(&mut b, &|c| c.retain(|_| true)));
        assert!(moved(&mut b, &|c| c.retain(|m| m != A)));
        assert_eq!(b.tracks().count(), 0);
    }

    #[test]
    fn unanswered_track_questions_rotate_over_holders() {
        let song = track("Song", &[1]);
        let mut a = Catalogue::new(A, "a");
        a.set_local("a", vec![(song.clone(), 1)]);
        let mut b = Catalogue::new(B, "b");
        b.set_local("b", vec![(song.clone(), 1)]);
        let mut c = Catalogue::new(C, "c");
        for m in [&a, &b] {
            c.announced(m.me, m.digest());
            c.on_index(m.me, m.index_page(0).unwrap());
        }
        let t0 = LocalTime(0);
        let first = c.poll_queries(t0);
        assert_eq!(first, [(A, CatalogueQuery::Track(song.id))]);
        assert!(
            c.poll_queries(t0.plus(Nanos(1))).is_empty(),
            "not before the retry"
        );
        let second = c.poll_queries(t0.plus(RETRY_AFTER));
        assert_eq!(second, [(B, CatalogueQuery::Track(song.id))]);
    }

    proptest! {
        /// Whatever the libraries, after the exchange every member sees the
        /// same tracks and the same holders as the union of the libraries.
        #[test]
        fn everyone_converges_to_the_union(
            libs in proptest::collection::vec(
                proptest::collection::vec((0u8..12, 1u8..=3), 0..6), 1..5),
        ) {
            let tracks: Vec<TrackInfo> = (0..12u8).map(|i| track(&format!("t{i}"), &[i])).collect();
            let mut cats: Vec<Catalogue> = libs
                .iter()
                .enumerate()
                .map(|(i, lib)| {
                    let mut c = Catalogue::new(MemberId(i as u64 + 1), "m");
                    c.set_local("m", lib.iter().map(|&(t, m)| (tracks[usize::from(t)].clone(), m)).collect());
                    c
                })
                .collect();
            let steps = settle(&mut cats, 40);
            prop_assert!(steps < 40);
            let expect: std::collections::BTreeSet<TrackId> = libs
                .iter()
                .flatten()
                .map(|&(t, _)| tracks[usize::from(t)].id)
                .collect();
            for c in &cats {
                let seen: std::collections::BTreeSet<TrackId> = c.tracks().map(|t| t.id).collect();
                prop_assert_eq!(&seen, &expect);
                for id in &expect {
                    prop_assert_eq!(c.track_holders(*id), cats[0].track_holders(*id));
                }
            }
        }
    }
}
