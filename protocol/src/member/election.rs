//! Choosing a new leader when the current one falls silent.
//!
//! Raft's election, with two guards that keep a room calm: a *pre-vote*
//! round (a candidate first asks whether it could win, without anyone
//! raising their term, so a member cut off by a one-way partition cannot
//! depose a working leader forever) and *leader stickiness* (a member that
//! heard its leader within `election_after` refuses to vote). Candidates are
//! staggered by view rank, so the longest-lived live speaker usually wins and
//! the time reference rarely moves. Invariant: at most one leader per term,
//! because a voter grants one vote per term and candidates need a quorum.

use std::collections::BTreeSet;

use super::{Dest, Leadership, Member, MemberEvent, Phase};
use crate::ids::{MemberId, Term};
use crate::time::{LocalTime, Nanos};
use crate::wire::{Ballot, Campaign, Message, Role};

/// An election in progress.
#[derive(Debug)]
pub(super) struct Candidacy {
    /// Pre-vote (true) or real campaign.
    pre: bool,
    /// The term asked for.
    term: Term,
    /// Who granted it (ourselves included).
    granted: BTreeSet<MemberId>,
    /// When it started; a campaign that stalls is retried.
    started: LocalTime,
    /// When the campaign was last sent to those that have not answered.
    last_sent: LocalTime,
}

impl Member {
    /// Starts a pre-vote when the leader has been silent for our rank's
    /// share of the election timeout.
    pub(super) fn tick_election(&mut self, now: LocalTime) {
        if self.cfg.role != Role::Speaker || !matches!(self.phase, Phase::Member) {
            return;
        }
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        let view = r.log_view();
        if !view.is_speaker(self.id) {
            return; // a controller, or a learner not yet admitted
        }
        // Rank among the speakers we still hear (and ourselves), so speakers
        // that died or were cut off with the leader do not each add a
        // heartbeat of delay. Members that hear the same peers agree on it.
        let window = self.cfg.election_after;
        let rank = view
            .speakers()
            .filter(|m| Some(m.id) != self.leader)
            .take_while(|m| m.id != self.id)
            .filter(|m| {
                self.heard
                    .get(&m.id)
                    .is_some_and(|&t| now.since(t) < window)
            })
            .count();
        let hb = self.timing().heartbeat.0;
        let wait = Nanos(self.cfg.election_after.0 + hb * rank as u64);
        if let Leadership::Candidate(c) = &self.role {
            // Retry a stalled campaign after another full wait; until then
            // ask again, each heartbeat, the speakers that have not granted:
            // with a bare majority every ballot counts, and one lost datagram
            // must not cost a whole election timeout.
            if now.since(c.started) < Nanos(wait.0 + 2 * hb) {
                if now.since(c.last_sent) >= Nanos(hb) {
                    self.send_campaign(now);
                }
                return;
            }
        } else if now.since(self.last_leader_contact) < wait {
            return;
        }
        self.campaign(now, true);
    }

    fn campaign(&mut self, now: LocalTime, pre: bool) {
        let term = self.term.next();
        if !pre {
            self.term = term;
            self.voted_for = Some(self.id);
            self.counters.campaigns += 1;
            if let Some(old) = self.leader.take() {
                self.previous_leader = Some(old);
                self.push_event(MemberEvent::LeaderChanged { leader: None });
            }
        }
        let mut granted = BTreeSet::new();
        granted.insert(self.id);
        self.role = Leadership::Candidate(Candidacy {
            pre,
            term,
            granted,
            started: now,
            last_sent: now,
        });
        self.send_campaign(now);
        // A room of one wins at once.
        self.count_ballots(now);
    }

    /// Sends our campaign to every speaker (of both views while a change is
    /// in flight) that has not granted it yet.
    fn send_campaign(&mut self, now: LocalTime) {
        let Leadership::Candidate(c) = &mut self.role else {
            return;
        };
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        c.last_sent = now;
        let speakers: Vec<MemberId> = r
            .view
            .speakers()
            .chain(r.log_view().speakers())
            .map(|m| m.id)
            .filter(|&id| id != self.id && !c.granted.contains(&id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (pre, term, last) = (c.pre, c.term, r.last());
        let mut hdr = self.header();
        hdr.term = term;
        let msg = Message::Campaign(Campaign { hdr, pre, last });
        self.push_transmit(Dest::Members(speakers), &msg);
    }

    pub(super) fn on_campaign(&mut self, now: LocalTime, c: Campaign) {
        if !self.same_room(&c.hdr) || self.cfg.role != Role::Speaker {
            return;
        }
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        if !r.log_view().is_speaker(c.hdr.from) {
            return;
        }
        let up_to_date = (c.last.term, c.last.round) >= (r.last().term, r.last().round);
        // Stickiness: while our leader is alive we neither raise our term
        // nor vote, so a member that merely lost contact cannot disrupt us.
        let leader_alive = match self.role {
            Leadership::Leader(_) => self.quorum_heard(now),
            _ => {
                self.leader.is_some()
                    && now.since(self.last_leader_contact) < self.cfg.election_after
            }
        };
        let granted = if c.pre {
            c.hdr.term > self.term && up_to_date && !leader_alive
        } else {
            if leader_alive || c.hdr.term < self.term {
                false
            } else {
                self.observe_term(now, c.hdr.term);
                let free = self.voted_for.is_none_or(|v| v == c.hdr.from);
                if free && up_to_date {
                    self.voted_for = Some(c.hdr.from);
                    // Granting resets our own election timer.
                    self.last_leader_contact = now;
                    true
                } else {
                    false
                }
            }
        };
        let msg = Message::Ballot(Ballot {
            hdr: self.header(),
            pre: c.pre,
            term: c.hdr.term,
            granted,
        });
        self.push_transmit(Dest::Member(c.hdr.from), &msg);
    }

    pub(super) fn on_ballot(&mut self, now: LocalTime, b: Ballot) {
        if !self.same_room(&b.hdr) {
            return;
        }
        if !b.pre && b.hdr.term > self.term {
            self.observe_term(now, b.hdr.term);
            return;
        }
        let Leadership::Candidate(c) = &mut self.role else {
            return;
        };
        if c.pre != b.pre || c.term != b.term || !b.granted {
            return;
        }
        c.granted.insert(b.hdr.from);
        self.count_ballots(now);
    }

    fn count_ballots(&mut self, now: LocalTime) {
        let Leadership::Candidate(c) = &self.role else {
            return;
        };
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        let granted: Vec<MemberId> = c.granted.iter().copied().collect();
        if !r.is_quorum(&granted) {
            return;
        }
        if c.pre {
            self.campaign(now, false);
        } else {
            self.become_leader(now);
        }
    }
}
