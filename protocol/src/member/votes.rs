//! Votes on their way to a decision: this member's own queue, and the votes
//! of others it has seen and relays until it sees them applied.
//!
//! One event per member per round: only the head of the own queue is in
//! flight; the next one goes out once the head is committed. Relaying makes a
//! vote that reached any live member reach the leader, even when the direct
//! link from the voter to the leader drops it. Both collections are bounded.

use std::collections::{BTreeMap, VecDeque};

use crate::event::{Event, Vote};
use crate::ids::{Channel, MemberId};
use crate::time::LocalTime;

/// Most events a member queues before refusing more.
pub const MAX_QUEUED_VOTES: usize = 16;

/// A queued own vote.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Queued {
    pub(crate) vote: Vote,
    /// When it became the in-flight vote (None while still queued).
    pub(crate) in_flight_since: Option<LocalTime>,
}

/// This member's events, oldest first; the head is in flight.
#[derive(Debug, Default)]
pub(crate) struct OwnVotes {
    queue: VecDeque<Queued>,
    next_seq: u32,
}

impl OwnVotes {
    /// Restart numbering after `last_applied` (a new room or incarnation);
    /// returns the votes dropped.
    pub(crate) fn reset(&mut self, last_applied: u32) -> Vec<Vote> {
        self.next_seq = last_applied.saturating_add(1);
        self.queue.drain(..).map(|q| q.vote).collect()
    }

    /// Queues an event; None when the queue is full.
    pub(crate) fn push(&mut self, me: MemberId, event: Event) -> Option<Vote> {
        if self.queue.len() >= MAX_QUEUED_VOTES {
            return None;
        }
        let vote = Vote {
            member: me,
            seq: self.next_seq.max(1),
            event,
        };
        self.next_seq = vote.seq.saturating_add(1);
        self.queue.push_back(Queued {
            vote,
            in_flight_since: None,
        });
        Some(vote)
    }

    /// The in-flight vote, marking it in flight at `now` if it just became
    /// the head. Returns (vote, newly_in_flight).
    pub(crate) fn head(&mut self, now: LocalTime) -> Option<(Vote, bool)> {
        let head = self.queue.front_mut()?;
        let fresh = head.in_flight_since.is_none();
        if fresh {
            head.in_flight_since = Some(now);
        }
        Some((head.vote, fresh))
    }

    /// The in-flight vote without touching it.
    pub(crate) fn peek(&self) -> Option<Vote> {
        self.queue.front().map(|q| q.vote)
    }

    /// Removes every vote up to `applied_seq`; returns their sequence numbers.
    pub(crate) fn applied(&mut self, applied_seq: u32) -> Vec<u32> {
        let mut done = Vec::new();
        while let Some(q) = self.queue.front() {
            if q.vote.seq > applied_seq {
                break;
            }
            done.push(q.vote.seq);
            self.queue.pop_front();
        }
        done
    }

    /// Drops the head if it has been in flight longer than `ttl` at `now`.
    pub(crate) fn expire(&mut self, now: LocalTime, ttl: crate::time::Nanos) -> Option<Vote> {
        let head = self.queue.front()?;
        let since = head.in_flight_since?;
        if now.since(since) > ttl {
            return self.queue.pop_front().map(|q| q.vote);
        }
        None
    }

    /// Whether a queued or in-flight vote touches `channel` (a vote on All
    /// touches every channel, and every vote touches All).
    pub(crate) fn pending_on(&self, channel: Channel) -> bool {
        self.queue.iter().any(|q| {
            let c = q.vote.event.channel();
            c == channel || c == Channel::All || channel == Channel::All
        })
    }

    /// Number of votes queued or in flight.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// Others' votes not yet seen applied: the lowest unapplied one per member,
/// with the time it was first seen. A relayed vote expires like an own one,
/// so a vote cast on the minority side of a partition is not applied seconds
/// later, when nobody expects it any more.
#[derive(Debug, Default)]
pub(crate) struct RelayPool {
    votes: BTreeMap<MemberId, (Vote, LocalTime)>,
}

impl RelayPool {
    /// Offers a vote; keeps it if it is the lowest unapplied one of its
    /// member. `applied` is the member's applied sequence number, `cap` the
    /// bound on members tracked.
    /// Returns whether the vote was new to the pool.
    pub(crate) fn offer(&mut self, vote: Vote, applied: u32, cap: usize, now: LocalTime) -> bool {
        if vote.seq <= applied {
            return false;
        }
        match self.votes.get(&vote.member) {
            Some((have, _)) if have.seq <= vote.seq => false,
            Some(_) => {
                self.votes.insert(vote.member, (vote, now));
                true
            }
            None if self.votes.len() < cap => {
                self.votes.insert(vote.member, (vote, now));
                true
            }
            None => false,
        }
    }

    /// Forgets votes first seen more than `ttl` before `now`.
    pub(crate) fn expire(&mut self, now: LocalTime, ttl: crate::time::Nanos) {
        self.votes.retain(|_, (_, seen)| now.since(*seen) <= ttl);
    }

    /// Forgets votes already applied (per `applied_seq(member)`) or of
    /// members no longer known (`None`).
    pub(crate) fn prune(&mut self, applied_seq: impl Fn(MemberId) -> Option<u32>) {
        self.votes
            .retain(|&m, (v, _)| applied_seq(m).is_some_and(|applied| v.seq > applied));
    }

    /// Forgets one member's vote.
    pub(crate) fn forget(&mut self, member: MemberId) {
        self.votes.remove(&member);
    }

    /// Forgets everything (a new room).
    pub(crate) fn clear(&mut self) {
        self.votes.clear();
    }

    /// The votes, in member order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Vote> {
        self.votes.values().map(|(v, _)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Nanos;

    fn play() -> Event {
        Event::Play {
            channel: Channel::All,
        }
    }

    #[test]
    fn queue_numbers_and_bounds() {
        let mut own = OwnVotes::default();
        own.reset(0);
        for i in 1..=MAX_QUEUED_VOTES as u32 {
            assert_eq!(own.push(MemberId(1), play()).map(|v| v.seq), Some(i));
        }
        assert!(own.push(MemberId(1), play()).is_none(), "bounded");
        let (v, fresh) = own.head(LocalTime(5)).expect("non-empty");
        assert!(fresh && v.seq == 1);
        assert!(!own.head(LocalTime(6)).expect("non-empty").1);
        assert_eq!(own.applied(2), vec![1, 2]);
        assert_eq!(own.peek().map(|v| v.seq), Some(3));
        own.head(LocalTime(10));
        assert!(own.expire(LocalTime(10), Nanos(5)).is_none());
        assert_eq!(own.expire(LocalTime(20), Nanos(5)).map(|v| v.seq), Some(3));
    }

    #[test]
    fn relay_keeps_lowest_unapplied_per_member() {
        let mut pool = RelayPool::default();
        let v = |m, seq| Vote {
            member: MemberId(m),
            seq,
            event: play(),
        };
        pool.offer(v(1, 3), 1, 8, LocalTime(0));
        pool.offer(v(1, 2), 1, 8, LocalTime(0));
        pool.offer(v(1, 1), 1, 8, LocalTime(0)); // applied already
        pool.offer(v(2, 5), 0, 8, LocalTime(5));
        assert_eq!(pool.iter().map(|v| v.seq).collect::<Vec<_>>(), vec![2, 5]);
        pool.prune(|m| Some(if m == MemberId(1) { 2 } else { 0 }));
        assert_eq!(pool.iter().count(), 1);
        pool.expire(LocalTime(10), Nanos(5));
        assert_eq!(pool.iter().count(), 1, "seen at 5, still fresh at 10");
        pool.expire(LocalTime(11), Nanos(5));
        assert_eq!(pool.iter().count(), 0);
        let mut small = RelayPool::default();
        small.offer(v(1, 1), 0, 1, LocalTime(0));
        small.offer(v(2, 1), 0, 1, LocalTime(0));
        assert_eq!(small.iter().count(), 1, "bounded by cap");
    }
}
