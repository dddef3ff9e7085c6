//! The room's catalogue as the rest of the node uses it: which tracks the
//! room holds, who holds each stem and where to reach them.
//!
//! The protocol core ([`autoharmonize_protocol::catalogue`]) learns the
//! catalogue from the other members; this is a snapshot of it that the
//! mesh loop publishes (on a `watch` channel, see
//! [`crate::mesh::Mesh::catalogue`]) together with the address of every
//! holder, so that a stem fetcher, the status endpoint and the controller
//! can read it without touching the protocol state.
//!
//! Building a snapshot clones and sorts every track of the room, so the
//! mesh loop keeps the last one in a [`ViewCache`] and builds a new one
//! only when something it is made of changed.
//!
//! Invariant: a snapshot is immutable and self-consistent (taken in one
//! pass of the mesh loop); a holder listed for a stem had announced that
//! stem when the snapshot was taken, which is no promise it still has it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use autoharmonize_protocol::MemberId;
use autoharmonize_protocol::catalogue::{Catalogue, TrackInfo};
use autoharmonize_protocol::content::{StemHash, TrackId};
use serde::Serialize;

/// One track of the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackEntry {
    /// Its description (id, title, length, stems in channel order).
    pub info: TrackInfo,
    /// Who holds which of its stems: `(member, mask)`, bit `i` for stem
    /// `i`, in member order (this node included).
    pub holders: Vec<(MemberId, u8)>,
}

/// A snapshot of the room's catalogue (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct CatalogueView {
    own: Option<MemberId>,
    tracks: Vec<TrackEntry>,
    names: BTreeMap<MemberId, String>,
    addrs: BTreeMap<MemberId, SocketAddr>,
    complete: bool,
}

/// The last [`CatalogueView`] built from one member's catalogue, with its
/// status form, and what it was built from: the catalogue's
/// [`Catalogue::generation`], the members asked about and their addresses.
/// While those stay the same a new view would equal the old one, so
/// [`ViewCache::refresh`] keeps it.
#[derive(Debug, Default)]
pub struct ViewCache {
    built_from: Option<ViewInputs>,
    view: Arc<CatalogueView>,
    status: Arc<[TrackStatus]>,
}

/// What a [`CatalogueView`] is made of, besides the catalogue's content.
#[derive(Debug, PartialEq, Eq)]
struct ViewInputs {
    own: MemberId,
    generation: u64,
    members: Vec<MemberId>,
    addrs: Vec<Option<SocketAddr>>,
}

impl ViewCache {
    /// Brings the view up to date with `catalogue` (always the same
    /// member's: generations of different catalogues do not compare),
    /// `members` and their addresses, as [`CatalogueView::of`] takes them.
    /// Returns whether it was rebuilt; otherwise the view and status are
    /// the very same as before.
    pub fn refresh(
        &mut self,
        own: MemberId,
        catalogue: &Catalogue,
        members: &[MemberId],
        addr_of: impl Fn(MemberId) -> Option<SocketAddr>,
    ) -> bool {
        let inputs = ViewInputs {
            own,
            generation: catalogue.generation(),
            members: members.to_vec(),
            addrs: members
                .iter()
                .map(|&m| if m == own { None } else { addr_of(m) })
                .collect(),
        };
        if self.built_from.as_ref() == Some(&inputs) {
            return false;
        }
        let view = CatalogueView::of(own, catalogue, members, &addr_of);
        self.status = view.to_status().into();
        self.view = Arc::new(view);
        self.built_from = Some(inputs);
        true
    }

    /// The current view (the default, empty one before the first refresh).
    #[must_use]
    pub fn view(&self) -> &Arc<CatalogueView> {
        &self.view
    }

    /// The current view as the status endpoint shows it
    /// ([`CatalogueView::to_status`]).
    #[must_use]
    pub fn status(&self) -> &Arc<[TrackStatus]> {
        &self.status
    }
}

/// Why a track name given by a person does not pick one track.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// Nothing matches.
    #[error("no track called '{query}' in the room (known: {})", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
    Unknown {
        /// What was asked for.
        query: String,
        /// Titles the room has.
        known: Vec<String>,
    },
    /// Several tracks match.
    #[error("'{query}' matches several tracks: {}; give more of the id", candidates.join(", "))]
    Ambiguous {
        /// What was asked for.
        query: String,
        /// `id-prefix title` of each match.
        candidates: Vec<String>,
    },
}

impl CatalogueView {
    /// The snapshot of `catalogue` as member `own` knows it, with the
    /// addresses the mesh knows for the members.
    #[must_use]
    pub fn of(
        own: MemberId,
        catalogue: &Catalogue,
        members: &[MemberId],
        addr_of: impl Fn(MemberId) -> Option<SocketAddr>,
    ) -> CatalogueView {
        let mut tracks: Vec<TrackEntry> = catalogue
            .tracks()
            .map(|info| TrackEntry {
                info: info.clone(),
                holders: catalogue.track_holders(info.id),
            })
            .collect();
        tracks.sort_by(|a, b| {
            (a.info.title.as_str(), a.info.id).cmp(&(b.info.title.as_str(), b.info.id))
        });
        let mut names = BTreeMap::new();
        let mut addrs = BTreeMap::new();
        for &m in members.iter().chain(std::iter::once(&own)) {
            if let Some(n) = catalogue.name(m) {
                names.insert(m, n.to_owned());
            }
            if m != own
                && let Some(a) = addr_of(m)
            {
                addrs.insert(m, a);
            }
        }
        CatalogueView {
            own: Some(own),
            tracks,
            names,
            addrs,
            complete: catalogue.is_complete(),
        }
    }

    /// Every track the room holds, by title.
    #[must_use]
    pub fn tracks(&self) -> &[TrackEntry] {
        &self.tracks
    }

    /// The track with this id, if some member holds it.
    #[must_use]
    pub fn track(&self, id: TrackId) -> Option<&TrackEntry> {
        self.tracks.iter().find(|t| t.info.id == id)
    }

    /// The other members that hold the stem with this hash in full, with
    /// the address their mesh socket was last heard from, in member order.
    /// Members whose address is unknown are left out; this node is never
    /// listed (see [`CatalogueView::held_here`]).
    #[must_use]
    pub fn holders(&self, stem: StemHash) -> Vec<(MemberId, SocketAddr)> {
        let mut out: Vec<(MemberId, SocketAddr)> = self
            .stem_holders(stem)
            .into_iter()
            .filter(|m| Some(*m) != self.own)
            .filter_map(|m| Some((m, *self.addrs.get(&m)?)))
            .collect();
        out.dedup();
        out
    }

    /// Whether this node announced the stem with this hash.
    #[must_use]
    pub fn held_here(&self, stem: StemHash) -> bool {
        self.own
            .is_some_and(|own| self.stem_holders(stem).contains(&own))
    }

    fn stem_holders(&self, stem: StemHash) -> Vec<MemberId> {
        let mut out = Vec::new();
        for t in &self.tracks {
            for (i, s) in t.info.stems.iter().enumerate() {
                if s.hash == stem {
                    out.extend(
                        t.holders
                            .iter()
                            .filter(|(_, mask)| mask & (1 << i) != 0)
                            .map(|(m, _)| *m),
                    );
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The name a member gave, if known.
    #[must_use]
    pub fn name(&self, member: MemberId) -> Option<&str> {
        self.names.get(&member).map(String::as_str)
    }

    /// Whether every member's index and every track's description has
    /// arrived (a listing made before may lack tracks).
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The one track `query` names (see [`find_track`]).
    ///
    /// # Errors
    /// [`FindError`] when nothing or several tracks match.
    pub fn find(&self, query: &str) -> Result<&TrackEntry, FindError> {
        find_track(&self.tracks, query, |t| {
            (t.info.title.as_str(), t.info.id.to_string())
        })
    }

    /// The catalogue as the status endpoint shows it.
    #[must_use]
    pub fn to_status(&self) -> Vec<TrackStatus> {
        self.tracks
            .iter()
            .map(|t| TrackStatus {
                id: t.info.id.to_string(),
                title: t.info.title.to_string(),
                length_frames: t.info.length.0,
                channels: t.info.stems.iter().map(|s| s.name.to_string()).collect(),
                stems: t.info.stems.iter().map(|s| s.hash.to_string()).collect(),
                holders: t
                    .holders
                    .iter()
                    .map(|&(m, mask)| HolderStatus {
                        id: m.to_string(),
                        name: self.name(m).map(str::to_owned),
                        stems: (0..t.info.stems.len())
                            .filter(|&i| mask & (1 << i) != 0)
                            .filter_map(|i| u8::try_from(i).ok())
                            .collect(),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// The one track of `tracks` that `query` names: an exact title
/// (case-insensitive), else a prefix of the hex id (at least 4 digits), else
/// a unique title prefix. `key` gives a track's title and hex id. Shared by
/// the node's [`CatalogueView`] and the controller (which reads
/// [`TrackStatus`]), so both resolve a name the same way.
///
/// # Errors
/// [`FindError`] when nothing or several tracks match.
pub fn find_track<'a, T>(
    tracks: &'a [T],
    query: &str,
    key: impl Fn(&T) -> (&str, String),
) -> Result<&'a T, FindError> {
    let q = query.trim();
    let lower = q.to_lowercase();
    let pick = |matches: Vec<&'a T>| -> Option<Result<&'a T, FindError>> {
        match matches.len() {
            0 => None,
            1 => Some(Ok(matches[0])),
            _ => Some(Err(FindError::Ambiguous {
                query: q.to_owned(),
                candidates: matches
                    .iter()
                    .map(|t| {
                        let (title, id) = key(t);
                        format!("{} {title}", &id[..id.len().min(8)])
                    })
                    .collect(),
            })),
        }
    };
    if lower.is_empty() {
        return Err(FindError::Unknown {
            query: q.to_owned(),
            known: tracks.iter().map(|t| key(t).0.to_owned()).collect(),
        });
    }
    let by_title = tracks
        .iter()
        .filter(|t| key(t).0.to_lowercase() == lower)
        .collect();
    if let Some(r) = pick(by_title) {
        return r;
    }
    if q.len() >= 4 && q.chars().all(|c| c.is_ascii_hexdigit()) {
        let by_id = tracks
            .iter()
            .filter(|t| key(t).1.starts_with(&lower))
            .collect();
        if let Some(r) = pick(by_id) {
            return r;
        }
    }
    let by_prefix = tracks
        .iter()
        .filter(|t| key(t).0.to_lowercase().starts_with(&lower))
        .collect();
    if let Some(r) = pick(by_prefix) {
        return r;
    }
    Err(FindError::Unknown {
        query: q.to_owned(),
        known: tracks.iter().map(|t| key(t).0.to_owned()).collect(),
    })
}

/// The first 8 hex digits of a track id: what people type and see.
#[must_use]
pub fn short_id(id: TrackId) -> String {
    id.to_string().chars().take(8).collect()
}

/// A track as `/status` shows it.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct TrackStatus {
    /// Track id (32 hex digits).
    pub id: String,
    /// Title.
    pub title: String,
    /// Length in 48 kHz frames.
    pub length_frames: u64,
    /// Channel (stem) names in order.
    pub channels: Vec<String>,
    /// Stem hashes (hex) in channel order.
    pub stems: Vec<String>,
    /// Who holds which stems.
    pub holders: Vec<HolderStatus>,
}

/// A holder of some of a track's stems.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HolderStatus {
    /// Member id (hex).
    pub id: String,
    /// Its name, if known.
    pub name: Option<String>,
    /// Indices of the stems it holds.
    pub stems: Vec<u8>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use autoharmonize_protocol::catalogue::{StemInfo, bounded};
    use autoharmonize_protocol::transport::Frames;

    use super::*;

    fn info(title: &str, seed: u8, stems: usize) -> TrackInfo {
        let stems: heapless::Vec<StemInfo, 8> = (0..stems)
            .map(|i| StemInfo {
                name: bounded(&format!("s{i}")),
                hash: StemHash([seed.wrapping_add(u8::try_from(i).unwrap()); 32]),
            })
            .collect();
        TrackInfo {
            id: TrackId::of(stems.iter().map(|s| (s.name.as_str(), s.hash))),
            title: bounded(title),
            length: Frames(48_000),
            stems,
        }
    }

    fn view() -> (CatalogueView, TrackInfo, TrackInfo) {
        let a = info("Blue Song", 10, 2);
        let b = info("Blue Moon", 20, 1);
        let mut own = Catalogue::new(MemberId(1), "me");
        own.set_local("me", vec![(a.clone(), 0b01)]);
        let mut peer = Catalogue::new(MemberId(2), "kitchen");
        peer.set_local("kitchen", vec![(a.clone(), 0b10), (b.clone(), 1)]);
        // Exchange by hand: peer's index and descriptions reach `own`.
        own.announced(MemberId(2), peer.digest());
        let _ = own.poll_queries(autoharmonize_protocol::LocalTime(0));
        own.on_index(MemberId(2), peer.index_page(0).unwrap());
        let _ = own.poll_queries(autoharmonize_protocol::LocalTime(0));
        own.on_track(b.clone());
        let addr: SocketAddr = "10.0.0.2:7700".parse().unwrap();
        let v = CatalogueView::of(MemberId(1), &own, &[MemberId(2)], |m| {
            (m == MemberId(2)).then_some(addr)
        });
        (v, a, b)
    }

    #[test]
    fn holders_resolve_to_addresses_and_exclude_this_node() {
        let (v, a, b) = view();
        assert!(v.is_complete());
        let addr: SocketAddr = "10.0.0.2:7700".parse().unwrap();
        assert_eq!(v.holders(a.stems[1].hash), [(MemberId(2), addr)]);
        assert_eq!(v.holders(a.stems[0].hash), []);
        assert!(v.held_here(a.stems[0].hash));
        assert!(!v.held_here(b.stems[0].hash));
        assert_eq!(v.track(b.id).unwrap().holders, [(MemberId(2), 1)]);
        assert_eq!(v.name(MemberId(2)), Some("kitchen"));
        let titles: Vec<&str> = v.tracks().iter().map(|t| t.info.title.as_str()).collect();
        assert_eq!(titles, ["Blue Moon", "Blue Song"]);
        let st = v.to_status();
        assert_eq!(st[1].holders[1].name.as_deref(), Some("kitchen"));
        assert_eq!(st[1].holders[1].stems, [1]);
    }

    #[test]
    fn the_cached_view_is_rebuilt_when_an_input_changed_and_only_then() {
        let a = info("Blue Song", 10, 2);
        let (me, peer) = (MemberId(1), MemberId(2));
        let mut own = Catalogue::new(me, "me");
        own.set_local("me", vec![(a.clone(), 0b01)]);
        let here: SocketAddr = "10.0.0.2:7700".parse().unwrap();
        let there: SocketAddr = "10.0.0.3:7700".parse().unwrap();
        let mut cache = ViewCache::default();
        // Refreshes, and checks the cache against a view built afresh.
        let mut refresh =
            |cat: &Catalogue,
             members: &[MemberId],
             addr_of: &dyn Fn(MemberId) -> Option<SocketAddr>| {
                let rebuilt = cache.refresh(me, cat, members, addr_of);
                let fresh = CatalogueView::of(me, cat, members, addr_of);
                assert_eq!(cache.status()[..], fresh.to_status()[..]);
                assert_eq!(cache.view().to_status(), fresh.to_status());
                assert_eq!(cache.view().is_complete(), fresh.is_complete());
                for m in [me, peer] {
                    assert_eq!(cache.view().name(m), fresh.name(m));
                }
                for s in &a.stems {
                    assert_eq!(cache.view().holders(s.hash), fresh.holders(s.hash));
                }
                (rebuilt, Arc::clone(cache.view()))
            };
        let (rebuilt, first) = refresh(&own, &[me, peer], &|_| Some(here));
        assert!(rebuilt, "the first refresh builds");
        let (rebuilt, again) = refresh(&own, &[me, peer], &|_| Some(here));
        assert!(
            !rebuilt && Arc::ptr_eq(&first, &again),
            "same inputs, same snapshot"
        );
        // Addresses of this node and of strangers are not in the view.
        let stranger = |m: MemberId| Some(if m == peer { here } else { there });
        assert!(!refresh(&own, &[me, peer], &stranger).0);
        // A member's address, the member list, the catalogue: each counts.
        assert!(refresh(&own, &[me, peer], &|_| Some(there)).0);
        assert!(refresh(&own, &[me], &|_| Some(there)).0);
        own.set_local("me", vec![(a.clone(), 0b11)]);
        assert!(refresh(&own, &[me], &|_| Some(there)).0);
        assert_eq!(cache_holders(&own, a.id), [(me, 0b11)]);
        own.announced(peer, 5);
        let (rebuilt, _) = refresh(&own, &[me, peer], &|_| Some(there));
        assert!(rebuilt);
        // A heartbeat repeating a digest changes nothing.
        own.announced(peer, 5);
        assert!(!refresh(&own, &[me, peer], &|_| Some(there)).0);
    }

    fn cache_holders(cat: &Catalogue, id: TrackId) -> Vec<(MemberId, u8)> {
        let mut cache = ViewCache::default();
        cache.refresh(MemberId(1), cat, &[], |_| None);
        cache.view().track(id).unwrap().holders.clone()
    }

    #[test]
    fn find_by_title_id_prefix_and_unique_prefix() {
        let (v, a, b) = view();
        assert_eq!(v.find("blue song").unwrap().info.id, a.id);
        assert_eq!(v.find(&a.id.to_string()[..6]).unwrap().info.id, a.id);
        assert_eq!(v.find("Blue M").unwrap().info.id, b.id);
        assert!(
            matches!(v.find("Blue"), Err(FindError::Ambiguous { candidates, .. }) if candidates.len() == 2)
        );
        let unknown = v.find("Purple").unwrap_err();
        assert!(unknown.to_string().contains("Blue Moon"), "{unknown}");
        assert!(matches!(v.find(""), Err(FindError::Unknown { .. })));
    }
}
