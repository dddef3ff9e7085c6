//! Who is in the room, and which groups of members may decide.
//!
//! The view is part of the replicated state: it changes only through
//! committed entries, one change at a time, so any two majorities of
//! consecutive views overlap (the single-change rule that makes membership
//! changes safe without joint consensus). View order is join order: the
//! first speaker is the longest-lived one, the *reference* that breaks an
//! exact-half tie. Invariant: [`View::is_quorum`] must make every two quorums
//! of the same view intersect; the tests check it exhaustively for small views.

use crate::ids::{MemberId, RoomId};
use crate::wire::{MAX_MEMBERS, MemberInfo, Role, ViewChange};

/// The members of a room, in join order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct View {
    members: heapless::Vec<MemberInfo, MAX_MEMBERS>,
}

/// Why a view change was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The view already holds [`MAX_MEMBERS`] members.
    #[error("the room is full ({MAX_MEMBERS} members)")]
    Full,
}

impl View {
    /// A view holding exactly `members` (at most [`MAX_MEMBERS`] are kept).
    #[must_use]
    pub fn from_members(members: &[MemberInfo]) -> View {
        let mut view = View::default();
        for m in members.iter().take(MAX_MEMBERS) {
            // Capacity checked by `take`; a duplicate id keeps the first.
            if view.get(m.id).is_none() {
                let _ = view.members.push(*m);
            }
        }
        view
    }

    /// All members, in join order.
    #[must_use]
    pub fn members(&self) -> &[MemberInfo] {
        &self.members
    }

    /// Number of members (speakers and controllers).
    #[must_use]
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the view is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The member with this id.
    #[must_use]
    pub fn get(&self, id: MemberId) -> Option<&MemberInfo> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Position of the member in view order (the index used by heartbeat
    /// `heard` bitmaps).
    #[must_use]
    pub fn index_of(&self, id: MemberId) -> Option<usize> {
        self.members.iter().position(|m| m.id == id)
    }

    /// Whether `id` is a speaker of this view.
    #[must_use]
    pub fn is_speaker(&self, id: MemberId) -> bool {
        self.get(id).is_some_and(|m| m.role == Role::Speaker)
    }

    /// Speakers in view order.
    pub fn speakers(&self) -> impl Iterator<Item = &MemberInfo> {
        self.members.iter().filter(|m| m.role == Role::Speaker)
    }

    /// Number of speakers: the size that counts for majorities and merges.
    #[must_use]
    pub fn speaker_count(&self) -> usize {
        self.speakers().count()
    }

    /// The longest-lived speaker: breaks exact-half ties.
    #[must_use]
    pub fn reference(&self) -> Option<MemberId> {
        self.speakers().next().map(|m| m.id)
    }

    /// Whether the speakers among `ids` may decide for this view: more than
    /// half of the view's speakers, or exactly half including the reference.
    /// Controllers and non-members in `ids` do not count.
    pub fn is_quorum(&self, ids: impl IntoIterator<Item = MemberId>) -> bool {
        let mut count = 0usize;
        let mut has_reference = false;
        let reference = self.reference();
        let mut seen: heapless::Vec<MemberId, MAX_MEMBERS> = heapless::Vec::new();
        for id in ids {
            if !self.is_speaker(id) || seen.contains(&id) {
                continue;
            }
            // `seen` cannot overflow: it only holds distinct view speakers.
            let _ = seen.push(id);
            count += 1;
            has_reference |= Some(id) == reference;
        }
        let total = self.speaker_count();
        total > 0 && (2 * count > total || (2 * count == total && has_reference))
    }

    /// Rank of `id` among the speakers that may take over leadership, in
    /// view order, skipping `excluded` (the leader that went silent). Lower
    /// ranks campaign first, so the longest-lived live speaker usually leads
    /// and the time reference rarely moves.
    #[must_use]
    pub fn candidate_rank(&self, id: MemberId, excluded: Option<MemberId>) -> Option<usize> {
        self.speakers()
            .filter(|m| Some(m.id) != excluded)
            .position(|m| m.id == id)
    }

    /// Applies a committed change. A join of a member already present (a new
    /// incarnation) removes the old record first, so the restarted member
    /// goes to the end of the join order.
    pub fn apply(&mut self, change: &ViewChange) -> Result<(), ViewError> {
        match *change {
            ViewChange::Join(info) => {
                self.remove(info.id);
                self.members.push(info).map_err(|_| ViewError::Full)
            }
            ViewChange::Leave(id) | ViewChange::Evict(id) => {
                self.remove(id);
                Ok(())
            }
        }
    }

    /// Mutable access to a member's record (to advance its `last_seq`).
    pub(crate) fn get_mut(&mut self, id: MemberId) -> Option<&mut MemberInfo> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    fn remove(&mut self, id: MemberId) {
        if let Some(i) = self.index_of(id) {
            self.members.remove(i);
        }
    }
}

/// How two rooms that meet decide which one survives: the room with more
/// speakers wins; on a tie the older room (lower founding round, then lower
/// founder id) wins. A total order, so every member reaches the same verdict.
/// Returns true when room `a` wins over room `b`.
#[must_use]
pub fn room_wins(a: (usize, RoomId), b: (usize, RoomId)) -> bool {
    (core::cmp::Reverse(a.0), a.1) < (core::cmp::Reverse(b.0), b.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{BootId, Round};

    fn member(id: u64, role: Role) -> MemberInfo {
        MemberInfo {
            id: MemberId(id),
            boot: BootId(1),
            role,
            stem: None,
            last_seq: 0,
        }
    }

    fn speakers(n: u64) -> View {
        let all: Vec<MemberInfo> = (1..=n).map(|i| member(i, Role::Speaker)).collect();
        View::from_members(&all)
    }

    #[test]
    fn majority_and_exact_half_with_reference() {
        let v = speakers(4);
        assert!(v.is_quorum([1, 2, 3].map(MemberId)));
        assert!(v.is_quorum([1, 2].map(MemberId)), "half with the reference");
        assert!(
            !v.is_quorum([3, 4].map(MemberId)),
            "half without the reference"
        );
        assert!(!v.is_quorum([2].map(MemberId)));
        // Duplicates and strangers do not count.
        assert!(!v.is_quorum([3, 3, 4, 9].map(MemberId)));
    }

    #[test]
    fn controllers_never_count() {
        let v = View::from_members(&[
            member(1, Role::Speaker),
            member(2, Role::Controller),
            member(3, Role::Speaker),
            member(4, Role::Speaker),
        ]);
        assert_eq!(v.speaker_count(), 3);
        assert!(!v.is_quorum([2, 3].map(MemberId)));
        assert!(v.is_quorum([3, 4].map(MemberId)));
        assert_eq!(v.candidate_rank(MemberId(3), Some(MemberId(1))), Some(0));
        assert_eq!(v.candidate_rank(MemberId(2), None), None);
    }

    #[test]
    fn any_two_quorums_intersect() {
        for n in 1..=6u64 {
            let v = speakers(n);
            let subsets: Vec<Vec<MemberId>> = (0u32..(1 << n))
                .map(|mask| {
                    (0..n)
                        .filter(|i| mask & (1 << i) != 0)
                        .map(|i| MemberId(i + 1))
                        .collect()
                })
                .filter(|s: &Vec<MemberId>| v.is_quorum(s.iter().copied()))
                .collect();
            for a in &subsets {
                for b in &subsets {
                    assert!(a.iter().any(|x| b.contains(x)), "n={n}: {a:?} and {b:?}");
                }
            }
        }
    }

    #[test]
    fn quorums_of_consecutive_views_intersect() {
        // Single-change rule: a quorum of the view before a join or removal
        // and a quorum of the view after it always share a member.
        for n in 1..=5u64 {
            let before = speakers(n);
            let mut after_join = before.clone();
            after_join
                .apply(&ViewChange::Join(member(n + 1, Role::Speaker)))
                .expect("room not full");
            let mut pairs = vec![(before.clone(), after_join)];
            for gone in 1..=n {
                let mut after = before.clone();
                after
                    .apply(&ViewChange::Evict(MemberId(gone)))
                    .expect("removal cannot fail");
                pairs.push((before.clone(), after));
            }
            for (a, b) in pairs {
                let ids: Vec<u64> = (1..=n + 1).collect();
                for m1 in 0u32..(1 << ids.len()) {
                    let s1: Vec<MemberId> = pick(&ids, m1);
                    if !a.is_quorum(s1.iter().copied()) {
                        continue;
                    }
                    for m2 in 0u32..(1 << ids.len()) {
                        let s2 = pick(&ids, m2);
                        if b.is_quorum(s2.iter().copied()) {
                            assert!(s1.iter().any(|x| s2.contains(x)), "{s1:?} / {s2:?}");
                        }
                    }
                }
            }
        }
    }

    fn pick(ids: &[u64], mask: u32) -> Vec<MemberId> {
        ids.iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, &id)| MemberId(id))
            .collect()
    }

    #[test]
    fn rejoin_moves_to_the_end() {
        let mut v = speakers(3);
        assert_eq!(v.reference(), Some(MemberId(1)));
        let mut again = member(1, Role::Speaker);
        again.boot = BootId(2);
        v.apply(&ViewChange::Join(again)).expect("room not full");
        assert_eq!(v.reference(), Some(MemberId(2)));
        assert_eq!(v.members().last().map(|m| m.boot), Some(BootId(2)));
        assert_eq!(v.len(), 3);
    }

    #[test]
    fn full_room_refuses_joins() {
        let all: Vec<MemberInfo> = (1..=MAX_MEMBERS as u64)
            .map(|i| member(i, Role::Speaker))
            .collect();
        let mut v = View::from_members(&all);
        assert_eq!(
            v.apply(&ViewChange::Join(member(999, Role::Speaker))),
            Err(ViewError::Full)
        );
    }

    #[test]
    fn merge_rule_is_a_total_order() {
        let r = |f: u64, id: u64| RoomId {
            founded: Round(f),
            founder: MemberId(id),
        };
        assert!(room_wins((3, r(9, 9)), (2, r(1, 1))), "larger wins");
        assert!(room_wins((2, r(1, 5)), (2, r(2, 1))), "older wins a tie");
        assert!(room_wins((2, r(1, 1)), (2, r(1, 2))), "then lower founder");
        assert!(!room_wins((2, r(1, 1)), (2, r(1, 1))), "irreflexive");
    }
}
