//! Who is in the room, and which groups of members may decide.
//!
//! The view is part of the replicated state: it changes only through
//! committed entries. View order is join order: the first speaker is the
//! longest-lived one, the *reference* that breaks an exact-half tie.
//!
//! Because of that tie-break, Raft's single-change shortcut is not safe here
//! ({3,4,5} of five and {1,2} of the four left after removing 5 are both
//! quorums and share nobody). So view changes use joint consensus: while an
//! entry that changes the view from `old` to `new` is uncommitted, every
//! decision (a commit, an election) needs a quorum of *both* views
//! ([`is_joint_quorum`]); once it commits, `new` alone. Only one entry
//! carrying changes is in flight at a time, but it may carry several.
//! Invariants: any two quorums of one view intersect, and a joint quorum
//! intersects every quorum of either view; the tests check both
//! exhaustively for small views.

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

/// Whether `ids` may decide while the view changes from `old` to `new`:
/// a quorum of both. With `old == new` this is [`View::is_quorum`].
pub fn is_joint_quorum(old: &View, new: &View, ids: &[MemberId]) -> bool {
    old.is_quorum(ids.iter().copied()) && (old == new || new.is_quorum(ids.iter().copied()))
}

/// How two rooms that meet decide which one survives: the room with more
/// speakers wins; on a tie the older room (lower founding round, then lower
/// founder id) wins. A total order, so every member reaches the same verdict.
/// Returns true when room `a` wins over room `b`.
#[must_use]
pub fn room_wins(a: (usize, RoomId), b: (usize, RoomId)) -> bool {
    (core::cmp::Reverse(a.0), a.1) < (core::cmp::Reverse(b.0), b.1)
}

/// Which of two members starting together founds the room: the one whose
/// saved room state is newer (higher `claim`, the saved state's revision;
/// 0 for none), and on a tie the lower id. A total order, so members that
/// hear each other's join requests agree on one founder. Returns true when
/// `a = (claim, id)` goes before `b`.
#[must_use]
pub fn founder_precedes(a: (u64, MemberId), b: (u64, MemberId)) -> bool {
    (core::cmp::Reverse(a.0), a.1) < (core::cmp::Reverse(b.0), b.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{BootId, Round};

    #[test]
    fn the_newest_saved_state_founds_then_the_lowest_id() {
        let (lo, hi) = (MemberId(1), MemberId(2));
        assert!(founder_precedes((5, hi), (4, lo)), "newer state first");
        assert!(founder_precedes((0, lo), (0, hi)), "tie: lower id");
        assert!(!founder_precedes((0, hi), (0, lo)));
        assert!(!founder_precedes((3, lo), (3, lo)), "irreflexive");
        // Total: of two different members exactly one precedes.
        for (a, b) in [((1, lo), (2, hi)), ((2, lo), (1, hi)), ((7, lo), (7, hi))] {
            assert!(founder_precedes(a, b) ^ founder_precedes(b, a));
        }
    }

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
    fn exact_half_breaks_single_change_overlap() {
        // Why joint consensus: after removing 5 from {1..5}, {1,2} is a
        // quorum of the new view and {3,4,5} one of the old.
        let before = speakers(5);
        let mut after = before.clone();
        after
            .apply(&ViewChange::Evict(MemberId(5)))
            .expect("removal cannot fail");
        assert!(before.is_quorum([3, 4, 5].map(MemberId)));
        assert!(after.is_quorum([1, 2].map(MemberId)));
        assert!(!is_joint_quorum(&before, &after, &[1, 2].map(MemberId)));
    }

    #[test]
    fn joint_quorums_intersect_quorums_of_either_view() {
        // Every view over members {1..5} (each absent, speaker, or
        // controller; order by id), against every other such view.
        let views: Vec<View> = (0..3u32.pow(5))
            .map(|code| {
                let mut c = code;
                let mut ms = Vec::new();
                for id in 1..=5u64 {
                    match c % 3 {
                        1 => ms.push(member(id, Role::Speaker)),
                        2 => ms.push(member(id, Role::Controller)),
                        _ => {}
                    }
                    c /= 3;
                }
                View::from_members(&ms)
            })
            .filter(|v| v.speaker_count() > 0)
            .collect();
        let ids: Vec<u64> = (1..=5).collect();
        let subsets: Vec<Vec<MemberId>> = (0u32..32).map(|m| pick(&ids, m)).collect();
        for old in &views {
            for new in views.iter().step_by(7) {
                for joint in subsets.iter().filter(|s| is_joint_quorum(old, new, s)) {
                    for other in &subsets {
                        for v in [old, new] {
                            if v.is_quorum(other.iter().copied()) {
                                assert!(
                                    joint.iter().any(|x| other.contains(x)),
                                    "{old:?} -> {new:?}: {joint:?} / {other:?}"
                                );
                            }
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
