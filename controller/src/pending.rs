//! Which channels wait for one of our votes: from the moment a vote is cast
//! (queued in the controller for its turn, see [`crate::fair`], then in
//! the member) until the decision carrying it is applied (its `apply_at`
//! has passed on the mesh clock) or the vote is dropped.
//!
//! The mixer freezes a pending channel's controls and shows an indicator;
//! All is pending while any channel is. A vote on All makes every channel
//! pending, since it acts on every channel.
//!
//! Invariant: bounded. At most [`MAX_TRACKED`] votes are tracked; the
//! protocol itself queues at most `MAX_QUEUED_VOTES` per member, so the
//! oldest is forgotten only if the node stopped reporting outcomes.

use autoharmonize_protocol::Channel;
use autoharmonize_protocol::member::MAX_QUEUED_VOTES;

/// Votes tracked at most.
pub const MAX_TRACKED: usize = MAX_QUEUED_VOTES + 8;

/// What became of a vote, as the mesh reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Cast, no decision yet.
    Waiting,
    /// Decided; takes effect at this mesh instant (ns), if known.
    Decided(Option<u64>),
    /// Never decided (no quorum, or the room changed).
    Dropped,
}

/// A vote that stopped being pending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    /// Its sequence number.
    pub seq: u32,
    /// The channel it acted on.
    pub channel: Channel,
    /// Whether it was applied (true) or dropped (false).
    pub applied: bool,
}

/// Our votes not yet applied.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    /// Cast in the member, by sequence number.
    votes: Vec<(u32, Channel)>,
    /// Still in the controller, waiting for their turn (no number yet).
    queued: Vec<Channel>,
}

impl Pending {
    /// A vote was cast on `channel` with sequence number `seq`.
    pub fn cast(&mut self, seq: u32, channel: Channel) {
        if self.votes.len() >= MAX_TRACKED {
            self.votes.remove(0);
        }
        self.votes.push((seq, channel));
    }

    /// Settles the votes whose outcome is final at mesh instant `mesh_now`
    /// (ns); `outcome` reports what the mesh knows of a sequence number.
    pub fn settle(
        &mut self,
        mesh_now: Option<u64>,
        outcome: impl Fn(u32) -> Outcome,
    ) -> Vec<Settled> {
        let mut done = Vec::new();
        self.votes.retain(|&(seq, channel)| {
            let applied = match outcome(seq) {
                Outcome::Waiting => return true,
                Outcome::Dropped => false,
                // Decided but not yet in effect: still pending, so the page
                // never shows the old state after the indicator goes.
                Outcome::Decided(Some(at)) if mesh_now.is_none_or(|now| now < at) => return true,
                Outcome::Decided(_) => true,
            };
            done.push(Settled {
                seq,
                channel,
                applied,
            });
            false
        });
        done
    }

    /// The channels of the votes still waiting in the controller for their
    /// turn (replacing the previous list).
    pub fn set_queued(&mut self, channels: impl IntoIterator<Item = Channel>) {
        self.queued.clear();
        self.queued.extend(channels);
    }

    /// How many of the cast votes the member still holds (not decided):
    /// what the member's own queue holds of ours.
    #[must_use]
    pub fn in_member(&self, outcome: impl Fn(u32) -> Outcome) -> usize {
        self.votes
            .iter()
            .filter(|&&(seq, _)| outcome(seq) == Outcome::Waiting)
            .count()
    }

    /// Whether `channel` waits for a vote. `Channel::All` waits if any
    /// channel does.
    #[must_use]
    pub fn is_pending(&self, channel: Channel) -> bool {
        let mut all = self
            .votes
            .iter()
            .map(|&(_, c)| c)
            .chain(self.queued.iter().copied());
        match channel {
            Channel::All => all.next().is_some(),
            Channel::Stem(_) => all.any(|c| c == channel || c == Channel::All),
        }
    }

    /// Whether nothing waits.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.votes.is_empty() && self.queued.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stem_vote_pends_its_channel_and_all() {
        let mut p = Pending::default();
        p.cast(1, Channel::Stem(1));
        assert!(p.is_pending(Channel::Stem(1)));
        assert!(p.is_pending(Channel::All));
        assert!(!p.is_pending(Channel::Stem(0)));
    }

    #[test]
    fn an_all_vote_pends_every_channel() {
        let mut p = Pending::default();
        p.cast(1, Channel::All);
        assert!(p.is_pending(Channel::Stem(0)));
        assert!(p.is_pending(Channel::Stem(7)));
    }

    #[test]
    fn pending_until_apply_at_has_passed() {
        let mut p = Pending::default();
        p.cast(4, Channel::Stem(0));
        assert!(p.settle(Some(100), |_| Outcome::Waiting).is_empty());
        assert!(
            p.settle(Some(100), |_| Outcome::Decided(Some(200)))
                .is_empty()
        );
        assert!(p.settle(None, |_| Outcome::Decided(Some(200))).is_empty());
        assert!(p.is_pending(Channel::Stem(0)));
        let done = p.settle(Some(200), |_| Outcome::Decided(Some(200)));
        assert_eq!(
            done,
            [Settled {
                seq: 4,
                channel: Channel::Stem(0),
                applied: true
            }]
        );
        assert!(p.is_empty());
    }

    #[test]
    fn dropped_and_unknown_instants_settle_at_once() {
        let mut p = Pending::default();
        p.cast(1, Channel::Stem(0));
        p.cast(2, Channel::Stem(1));
        p.cast(3, Channel::Stem(2));
        let done = p.settle(Some(0), |seq| match seq {
            1 => Outcome::Dropped,
            2 => Outcome::Decided(None),
            _ => Outcome::Waiting,
        });
        assert_eq!(done.len(), 2);
        assert!(!done[0].applied && done[1].applied);
        assert!(p.is_pending(Channel::Stem(2)));
        assert!(!p.is_pending(Channel::Stem(0)));
    }

    #[test]
    fn queued_votes_pend_before_they_have_a_number() {
        let mut p = Pending::default();
        p.set_queued([Channel::Stem(2)]);
        assert!(p.is_pending(Channel::Stem(2)) && p.is_pending(Channel::All));
        assert!(!p.is_pending(Channel::Stem(0)) && !p.is_empty());
        p.set_queued([]);
        p.cast(7, Channel::Stem(2));
        p.cast(8, Channel::Stem(0));
        assert!(p.is_pending(Channel::Stem(2)));
        // Vote 7 decided (not yet applied): out of the member, still pending.
        let outcome = |seq| {
            if seq == 7 {
                Outcome::Decided(Some(10))
            } else {
                Outcome::Waiting
            }
        };
        assert_eq!(p.in_member(outcome), 1);
        assert!(p.is_pending(Channel::Stem(2)));
    }

    #[test]
    fn bounded() {
        let mut p = Pending::default();
        for seq in 0..100 {
            p.cast(seq, Channel::Stem(0));
        }
        assert_eq!(p.votes.len(), MAX_TRACKED);
        assert_eq!(p.votes[0].0, 100 - MAX_TRACKED as u32);
    }
}
