//! The replicated part of a member: committed state plus the uncommitted
//! tail of the log.
//!
//! Entries are sealed one per round by the leader and chained by `prev`, as
//! in Raft's log (rounds are the indices, with gaps where nobody sealed).
//! Invariant: the committed state is a pure function of the committed chain,
//! so two members with the same committed [`EntryId`] hold the same view,
//! transport and digest. Only [`Replica::commit_to`] and snapshot install
//! move the committed tip, and only forward.

use std::collections::VecDeque;

use postcard::experimental::max_size::MaxSize;
use serde::Serialize;

use crate::choice::choose;
use crate::event::Vote;
use crate::ids::{MemberId, RoomId, Round};
use crate::membership::View;
use crate::time::{MeshTime, Nanos};
use crate::transport::Transport;
use crate::wire::{Entry, EntryId, MAX_MEMBERS, MemberInfo};

/// Uncommitted entries a follower keeps (a leader keeps fewer; see
/// [`crate::wire::MAX_CARRIED_ENTRIES`]).
const MAX_LOG: usize = 32;

/// Committed digests remembered, to spot a follower whose state diverged.
const DIGEST_HISTORY: usize = 32;

/// Round timing shared by the whole room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Heartbeat period: the length of a round.
    pub heartbeat: Nanos,
    /// Delay from the end of a round to the instant its decisions take effect.
    pub apply_delay: Nanos,
}

impl Timing {
    /// Round containing mesh instant `t`.
    #[must_use]
    pub fn round_at(&self, t: MeshTime) -> Round {
        Round(t.0 / self.heartbeat.0.max(1))
    }
    /// Mesh instant round `r` starts.
    #[must_use]
    pub fn round_start(&self, r: Round) -> MeshTime {
        MeshTime(r.0.saturating_mul(self.heartbeat.0))
    }
    /// Mesh instant the decisions of round `r` take effect: the end of the
    /// round plus the apply delay. A pure function of the round, so every
    /// member schedules the same instant.
    #[must_use]
    pub fn apply_at(&self, r: Round) -> MeshTime {
        self.round_start(r.next()).plus(self.apply_delay)
    }
}

/// Outcome of offering a leader's entries to the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Accept {
    /// The entries now extend (or already were in) the log.
    Ok,
    /// They do not connect to anything we hold: we need a snapshot.
    Gap,
    /// The chain was inconsistent (hostile or corrupt): ignored.
    Invalid,
}

/// One committed entry, as reported to the shell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The entry.
    pub entry: Entry,
    /// When it takes effect.
    pub apply_at: MeshTime,
    /// Votes that took effect (those not already applied).
    pub effective: heapless::Vec<Vote, { crate::wire::MAX_ENTRY_VOTES }>,
    /// Digest of the state after it.
    pub digest: u64,
    /// The transport state right after it (in effect from `apply_at`): the
    /// audio player schedules each state at its own instant, so it needs
    /// every intermediate state, not only the newest.
    pub transport: Transport,
}

/// Committed state and the uncommitted tail of the log.
#[derive(Clone, Debug)]
pub(crate) struct Replica {
    pub(crate) room: RoomId,
    pub(crate) timing: Timing,
    pub(crate) commit: EntryId,
    pub(crate) view: View,
    /// Round of the last committed view change.
    pub(crate) view_epoch: Round,
    pub(crate) transport: Transport,
    pub(crate) digest: u64,
    log: VecDeque<Entry>,
    /// The last few committed entries, so a leader can still send them to
    /// followers that have not seen them (a leader that is a quorum on its
    /// own commits an entry before any follower holds it).
    recent: VecDeque<Entry>,
    /// `view` with every held entry's changes applied; recomputed whenever
    /// the log or the view changes, because it is read on every datagram.
    log_view: View,
    digests: VecDeque<(EntryId, u64)>,
}

#[derive(Serialize)]
struct DigestInput<'a> {
    commit: EntryId,
    view_epoch: Round,
    members: &'a [MemberInfo],
    transport: &'a Transport,
}

// `&[T]` has no MaxSize; size the buffer by an owned equivalent.
#[derive(MaxSize)]
#[allow(dead_code)]
struct DigestInputBound {
    commit: EntryId,
    view_epoch: Round,
    members: heapless::Vec<MemberInfo, MAX_MEMBERS>,
    transport: Transport,
}

/// FNV-1a over the canonical encoding of the committed state.
fn digest_of(commit: EntryId, view_epoch: Round, view: &View, transport: &Transport) -> u64 {
    let mut buf = [0u8; DigestInputBound::POSTCARD_MAX_SIZE];
    let input = DigestInput {
        commit,
        view_epoch,
        members: view.members(),
        transport,
    };
    let bytes = postcard::to_slice(&input, &mut buf)
        .expect("buffer sized by the MaxSize of the same fields");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes.iter() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Replica {
    /// A new room founded with `view` and `transport`, its committed tip at
    /// `commit`.
    pub(crate) fn found(
        room: RoomId,
        timing: Timing,
        commit: EntryId,
        view: View,
        transport: Transport,
    ) -> Replica {
        Replica::install(room, timing, commit, commit.round, view, transport)
    }

    /// State installed from a snapshot (or a founding).
    pub(crate) fn install(
        room: RoomId,
        timing: Timing,
        commit: EntryId,
        view_epoch: Round,
        view: View,
        transport: Transport,
    ) -> Replica {
        let digest = digest_of(commit, view_epoch, &view, &transport);
        let mut digests = VecDeque::with_capacity(DIGEST_HISTORY);
        digests.push_back((commit, digest));
        Replica {
            room,
            timing,
            commit,
            log_view: view.clone(),
            view,
            view_epoch,
            transport,
            digest,
            log: VecDeque::new(),
            recent: VecDeque::new(),
            digests,
        }
    }

    /// Digest the state would have with these parts (to check a snapshot).
    pub(crate) fn digest_for(
        commit: EntryId,
        view_epoch: Round,
        view: &View,
        transport: &Transport,
    ) -> u64 {
        digest_of(commit, view_epoch, view, transport)
    }

    /// The last entry we hold (committed or not).
    pub(crate) fn last(&self) -> EntryId {
        self.log.back().map_or(self.commit, |e| e.id)
    }

    /// Uncommitted entries, oldest first.
    pub(crate) fn uncommitted(&self) -> impl ExactSizeIterator<Item = &Entry> {
        self.log.iter()
    }

    /// The newest `n` entries we hold, committed or not, oldest first: what
    /// a leader sends so followers can extend their logs.
    pub(crate) fn tail(&self, n: usize) -> impl Iterator<Item = &Entry> {
        let total = self.recent.len() + self.log.len();
        self.recent
            .iter()
            .chain(self.log.iter())
            .skip(total.saturating_sub(n))
    }

    /// The (up to `n`) entries that follow `id` in our chain, if we hold
    /// `id` as a recent committed entry, the committed tip, or in the log:
    /// what a follower whose last entry is `id` needs next.
    pub(crate) fn after(&self, id: EntryId, n: usize) -> Option<Vec<Entry>> {
        let chain: Vec<&Entry> = self.recent.iter().chain(self.log.iter()).collect();
        let start = if let Some(i) = chain.iter().position(|e| e.id == id) {
            i + 1
        } else if id == self.commit {
            self.recent.len()
        } else {
            return None;
        };
        Some(
            chain
                .iter()
                .skip(start)
                .take(n)
                .map(|e| (*e).clone())
                .collect(),
        )
    }

    /// Whether we hold `id` (as the committed tip or in the log).
    fn holds(&self, id: EntryId) -> bool {
        id == self.commit || self.log.iter().any(|e| e.id == id)
    }

    /// Digest we committed at `id`, if still remembered.
    pub(crate) fn digest_at(&self, id: EntryId) -> Option<u64> {
        self.digests
            .iter()
            .rev()
            .find(|(e, _)| *e == id)
            .map(|&(_, d)| d)
    }

    /// The view as it will be once every held entry is committed: the one
    /// a leader counts acknowledgements against (Raft's rule: the newest
    /// configuration in the log is in force).
    pub(crate) fn log_view(&self) -> &View {
        &self.log_view
    }

    fn refresh_log_view(&mut self) {
        let mut view = self.view.clone();
        for change in self.log.iter().flat_map(|e| e.changes.iter()) {
            // A full room cannot happen here: the leader checks before sealing.
            let _ = view.apply(change);
        }
        self.log_view = view;
    }

    /// Whether an uncommitted entry carries a view change.
    pub(crate) fn change_in_flight(&self) -> bool {
        self.log.iter().any(|e| !e.changes.is_empty())
    }

    /// Whether `ids` may decide now: a quorum of the committed view and of
    /// the view the log leads to (joint consensus while a change is in
    /// flight).
    pub(crate) fn is_quorum(&self, ids: &[MemberId]) -> bool {
        crate::membership::is_joint_quorum(&self.view, &self.log_view, ids)
    }

    /// Highest vote sequence number of `member` already sealed (committed or
    /// in the log).
    pub(crate) fn sealed_seq(&self, member: MemberId) -> u32 {
        let committed = self.view.get(member).map_or(0, |m| m.last_seq);
        self.log
            .iter()
            .flat_map(|e| e.votes.iter())
            .filter(|v| v.member == member)
            .map(|v| v.seq)
            .fold(committed, u32::max)
    }

    /// Appends an entry sealed by us as leader. Returns false when `depth`
    /// entries of the entry's term are uncommitted already. Entries of older
    /// terms do not count: they commit only through an entry of the current
    /// term (Raft), so a new leader that inherited a full log of them must
    /// still be able to seal.
    pub(crate) fn seal(&mut self, mut entry: Entry, depth: usize) -> bool {
        let own = self
            .log
            .iter()
            .filter(|e| e.id.term == entry.id.term)
            .count();
        if own >= depth || self.log.len() >= MAX_LOG || entry.id.round <= self.last().round {
            return false;
        }
        entry.prev = self.last();
        let changes = !entry.changes.is_empty();
        self.log.push_back(entry);
        if changes {
            self.refresh_log_view();
        }
        true
    }

    /// Offers the leader's chain `prev -> entries[0] -> entries[1] ...`.
    pub(crate) fn accept(&mut self, prev: EntryId, entries: &[Entry]) -> Accept {
        // Validate the chain: each entry follows the one before, rounds rise.
        let mut expect = prev;
        for e in entries {
            if e.prev != expect || e.id.round <= expect.round {
                return Accept::Invalid;
            }
            expect = e.id;
        }
        // Find the newest element of the chain we already hold.
        let chain_ids = core::iter::once(prev).chain(entries.iter().map(|e| e.id));
        let Some(known) = chain_ids
            .clone()
            .enumerate()
            .filter(|&(_, id)| self.holds(id))
            .last()
        else {
            let newest = entries.last().map_or(prev, |e| e.id);
            return if newest.round <= self.commit.round {
                Accept::Ok // old news
            } else {
                Accept::Gap
            };
        };
        let (k, known_id) = known;
        // Everything after chain[k] is new to us: it replaces whatever
        // conflicting uncommitted suffix we hold after chain[k].
        let rest = &entries[k..];
        if rest.is_empty() {
            return Accept::Ok;
        }
        if known_id == self.commit {
            self.log.clear();
        } else if let Some(pos) = self.log.iter().position(|e| e.id == known_id) {
            self.log.truncate(pos + 1);
        }
        for e in rest {
            if self.log.len() >= MAX_LOG {
                break;
            }
            self.log.push_back(e.clone());
        }
        self.refresh_log_view();
        Accept::Ok
    }

    /// Commits every held entry up to and including `target`, applying each
    /// in order. Returns what was applied (empty if `target` is not held or
    /// already committed).
    pub(crate) fn commit_to(&mut self, target: EntryId) -> Vec<Applied> {
        let Some(pos) = self.log.iter().position(|e| e.id == target) else {
            return Vec::new();
        };
        let mut applied = Vec::with_capacity(pos + 1);
        for _ in 0..=pos {
            let entry = self.log.pop_front().expect("pos is within the log");
            applied.push(self.apply(entry));
        }
        if applied.iter().any(|a| !a.entry.changes.is_empty()) {
            self.refresh_log_view();
        }
        applied
    }

    fn apply(&mut self, entry: Entry) -> Applied {
        // The log's invariants, where they must hold: the commit point only
        // moves forward, and a committed entry extends the committed prefix.
        debug_assert!(
            entry.id.round > self.commit.round,
            "commit never moves back: {:?} after {:?}",
            entry.id,
            self.commit
        );
        debug_assert_eq!(
            entry.prev, self.commit,
            "a committed entry extends the committed prefix"
        );
        for change in &entry.changes {
            // A join beyond capacity is dropped identically on every member.
            let _ = self.view.apply(change);
        }
        if !entry.changes.is_empty() {
            self.view_epoch = entry.id.round;
        }
        let mut effective = heapless::Vec::new();
        for vote in &entry.votes {
            let Some(m) = self.view.get_mut(vote.member) else {
                continue;
            };
            if vote.seq <= m.last_seq {
                continue; // already applied: replays change nothing
            }
            m.last_seq = vote.seq;
            // Capacity equals the entry's own bound.
            let _ = effective.push(*vote);
        }
        let apply_at = self.timing.apply_at(entry.id.round);
        let choice = choose(
            &effective,
            self.transport.channel_count(),
            self.transport.length(),
        );
        self.transport.apply(&choice, apply_at);
        self.commit = entry.id;
        self.digest = digest_of(self.commit, self.view_epoch, &self.view, &self.transport);
        if self.digests.len() == DIGEST_HISTORY {
            self.digests.pop_front();
        }
        self.digests.push_back((self.commit, self.digest));
        if self.recent.len() >= crate::wire::MAX_CARRIED_ENTRIES {
            self.recent.pop_front();
        }
        self.recent.push_back(entry.clone());
        Applied {
            entry,
            apply_at,
            effective,
            digest: self.digest,
            transport: self.transport.clone(),
        }
    }
}
