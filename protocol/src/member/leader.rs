//! The leader's round: sealing each round's votes and membership changes
//! into an entry, carrying the log to followers, committing what a quorum
//! holds, and evicting the silent.
//!
//! Invariants (asserted in debug builds where they hold): the commit point
//! never moves back; only an entry of the leader's own term is committed by
//! counting; one membership change is in flight at a time
//! (`docs/protocol.md`, "Sealing and commit", "Membership").

use super::*;

impl Member {
    pub(super) fn become_leader(&mut self, now: LocalTime) {
        // Our estimate of the old reference's clock becomes the reference.
        // (Leaders ignore clock replies, so the mapping stays as it is.)
        self.clock.get_or_insert(MeshClock::identity());
        let predecessor = self
            .leader
            .filter(|&l| l != self.id)
            .or(self.previous_leader.take());
        self.role = Leadership::Leader(LeaderState {
            predecessor,
            ..LeaderState::default()
        });
        if self.leader != Some(self.id) {
            self.leader = Some(self.id);
            self.push_event(MemberEvent::LeaderChanged {
                leader: Some(self.id),
            });
        }
        self.last_leader_contact = now;
        // Members we never heard (we may have just joined) get credit from
        // now; the others' silence is already measured, since followers hear
        // every member's heartbeats.
        let ids: Vec<MemberId> = self
            .replica
            .as_ref()
            .map(|r| r.log_view().members().iter().map(|m| m.id).collect())
            .unwrap_or_default();
        for id in ids {
            self.heard.entry(id).or_insert(now);
        }
        self.try_commit(now, false);
        self.send_append(now);
    }

    pub(super) fn quorum_heard(&self, now: LocalTime) -> bool {
        let Some(r) = self.replica.as_ref() else {
            return false;
        };
        let window = self.cfg.election_after;
        let alive = r
            .view
            .members()
            .iter()
            .chain(r.log_view().members())
            .map(|m| m.id)
            .filter(|&id| {
                id == self.id || self.heard.get(&id).is_some_and(|&t| now.since(t) < window)
            })
            .collect::<Vec<_>>();
        r.is_quorum(&alive)
    }

    pub(super) fn tick_leader(&mut self, now: LocalTime) {
        if !self.quorum_heard(now) {
            // Check-quorum: a leader cut off from the majority steps down,
            // so its side knows it is read-only.
            self.become_follower(now, None);
            self.last_leader_contact = now;
            return;
        }
        let Some(round) = self.current_round(now) else {
            return;
        };
        let Leadership::Leader(ls) = &self.role else {
            return;
        };
        // Seal the round that just ended, once.
        let to_seal = Round(round.0.saturating_sub(1));
        if round.0 == 0 || ls.sealed.is_some_and(|s| s >= to_seal) {
            return;
        }
        self.seal(now, to_seal);
        self.try_commit(now, false);
        self.send_append(now);
        if round.0.is_multiple_of(self.cfg.beacon_every.max(1)) {
            let beacon = self.heartbeat_msg(now);
            self.push_transmit(Dest::Everyone, &beacon);
        }
    }

    pub(super) fn seal(&mut self, now: LocalTime, round: Round) {
        let changes = self.next_view_changes(now);
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        let view = r.log_view();
        // One vote per member: its lowest not yet sealed. Start at a
        // rotating offset so a busy room serves every member in turn.
        let mut candidates: Vec<Vote> = self
            .own
            .peek()
            .into_iter()
            .chain(self.relay.iter().copied())
            .filter(|v| view.get(v.member).is_some() && v.seq > r.sealed_seq(v.member))
            .collect();
        candidates.sort_by_key(|v| v.member);
        candidates.dedup_by_key(|v| v.member);
        let n = candidates.len().max(1);
        let start = usize::try_from(round.0 % n as u64).unwrap_or(0);
        let len = candidates.len();
        candidates.rotate_left(start.min(len));
        let mut votes = heapless::Vec::new();
        for v in candidates.into_iter().take(MAX_ENTRY_VOTES) {
            let _ = votes.push(v);
        }
        let entry = Entry {
            id: EntryId {
                round,
                term: self.term,
            },
            prev: EntryId::default(),
            votes,
            changes,
        };
        let joins: Vec<MemberId> = entry
            .changes
            .iter()
            .filter_map(|c| match c {
                ViewChange::Join(info) => Some(info.id),
                _ => None,
            })
            .collect();
        let sealed = self
            .replica
            .as_mut()
            .is_some_and(|r| r.seal(entry, MAX_CARRIED_ENTRIES));
        if sealed {
            // Newcomers get the committed state now and follow the log as
            // learners, so they can acknowledge the entry that admits them
            // (joint consensus counts them in the new view).
            for id in joins {
                let sample = match &self.role {
                    Leadership::Leader(ls) => ls.joining.get(&id).map(|&(_, t1, t2)| (t1, t2)),
                    _ => None,
                };
                if let Some((t1, t2)) = sample {
                    self.send_snapshot(now, id, t1, t2);
                }
            }
        }
        if let Leadership::Leader(ls) = &mut self.role {
            ls.sealed = Some(round);
            if sealed {
                self.counters.sealed += 1;
                if let Some(me) = ls.matched.get_mut(&self.id) {
                    *me = round;
                } else {
                    ls.matched.insert(self.id, round);
                }
            }
        }
    }

    /// The view changes to seal now: goodbyes first, then the silent, then
    /// newcomers, at most [`MAX_VIEW_CHANGES`], and only while no other
    /// change is in flight (old-term entries included). Unlike Raft's
    /// single-server changes, no entry of our own term needs to commit
    /// first: every change is decided by joint quorums, and an uncommitted
    /// change in our log blocks new ones (see `docs/protocol.md`).
    pub(super) fn next_view_changes(
        &mut self,
        now: LocalTime,
    ) -> heapless::Vec<ViewChange, MAX_VIEW_CHANGES> {
        let mut out = heapless::Vec::new();
        let Some(r) = self.replica.as_ref() else {
            return out;
        };
        let Leadership::Leader(ls) = &mut self.role else {
            return out;
        };
        if r.change_in_flight() {
            return out;
        }
        let mut view = r.log_view().clone();
        while !out.is_full() {
            let Some(id) = ls.leaving.pop_front() else {
                break;
            };
            if view.get(id).is_some() && id != self.id {
                let c = ViewChange::Leave(id);
                let _ = view.apply(&c);
                let _ = out.push(c);
            }
        }
        let mut silent: Vec<(LocalTime, MemberId)> = view
            .members()
            .iter()
            .filter(|m| m.id != self.id)
            .filter_map(|m| {
                let last = self.heard.get(&m.id).copied().unwrap_or(LocalTime(0));
                let limit = if Some(m.id) == ls.predecessor {
                    self.cfg.election_after
                } else {
                    self.cfg.evict_after
                };
                (now.since(last) >= limit).then_some((last, m.id))
            })
            .collect();
        silent.sort_unstable();
        for (_, id) in silent {
            let c = ViewChange::Evict(id);
            if out.push(c).is_err() {
                return out;
            }
            let _ = view.apply(&c);
        }
        // Admit only as many speakers as the speakers we hear can carry:
        // those alone must stay a quorum of the new view, so the change
        // commits whether or not the newcomers ever answer (a joiner that
        // dies at once cannot wedge the room). Growth is still exponential.
        let window = self.cfg.election_after;
        let live: Vec<MemberId> = view
            .speakers()
            .map(|m| m.id)
            .filter(|&id| {
                id == self.id || self.heard.get(&id).is_some_and(|&t| now.since(t) < window)
            })
            .collect();
        for (_, (info, _, _)) in ls.joining.iter() {
            if out.is_full() || view.len() >= MAX_MEMBERS {
                break;
            }
            let c = ViewChange::Join(*info);
            let mut next = view.clone();
            let _ = next.apply(&c);
            if info.role == Role::Speaker && !next.is_quorum(live.iter().copied()) {
                continue;
            }
            view = next;
            let _ = out.push(c);
        }
        out
    }

    pub(super) fn send_append(&mut self, now: LocalTime) {
        let hdr = self.header();
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        let mut entries = heapless::Vec::<Entry, MAX_CARRIED_ENTRIES>::new();
        for e in r.tail(MAX_CARRIED_ENTRIES) {
            let _ = entries.push(e.clone()); // tail() yields at most the capacity
        }
        let prev = entries.first().map_or(r.commit, |e| e.prev);
        let msg = Message::Append(Append {
            hdr,
            prev,
            entries,
            commit: r.commit,
            digest: r.digest,
        });
        let dest = Dest::Members(self.others());
        self.push_transmit(dest, &msg);
        self.heartbeat_round = self.current_round(now);
    }

    /// Sends a follower that lags behind our broadcast window the entries
    /// that follow its last one (Raft's per-follower `nextIndex`, recomputed
    /// from each heartbeat instead of stored). Without this, a follower that
    /// lacks an entry older than the last few could never reconnect: the
    /// entries it misses are not committed, so no snapshot holds them.
    pub(super) fn catch_up(&mut self, to: MemberId, last: EntryId, commit: EntryId) {
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        if last == r.last() {
            return;
        }
        let from = if r.after(last, 0).is_some() {
            last
        } else {
            commit
        };
        let Some(entries) = r.after(from, MAX_CARRIED_ENTRIES) else {
            return; // too far behind: it will ask for a snapshot
        };
        let in_broadcast = r.tail(MAX_CARRIED_ENTRIES).next().is_some_and(|first| {
            entries
                .first()
                .is_some_and(|e| e.id.round >= first.id.round)
        });
        if entries.is_empty() || in_broadcast {
            return;
        }
        let mut carried = heapless::Vec::<Entry, MAX_CARRIED_ENTRIES>::new();
        for e in entries {
            let _ = carried.push(e); // `after` yields at most the capacity
        }
        let msg = Message::Append(Append {
            hdr: self.header(),
            prev: from,
            entries: carried,
            commit: r.commit,
            digest: r.digest,
        });
        self.push_transmit(Dest::Member(to), &msg);
    }

    /// Commits the newest entry of our term that a quorum holds; with
    /// `announce`, tells the followers right away.
    pub(super) fn try_commit(&mut self, now: LocalTime, announce: bool) {
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        let Leadership::Leader(ls) = &self.role else {
            return;
        };
        let mut target = None;
        for e in r.uncommitted() {
            if e.id.term != self.term {
                continue;
            }
            let holders: Vec<MemberId> = ls
                .matched
                .iter()
                .filter(|&(_, &m)| m >= e.id.round)
                .map(|(&id, _)| id)
                .chain(core::iter::once(self.id))
                .collect();
            if r.is_quorum(&holders) {
                target = Some(e.id);
            }
        }
        if let Some(t) = target {
            let before = r.commit;
            self.commit_to(now, t);
            // Announce the new commit point at once rather than at the next
            // boundary: followers learn it about half a round earlier, which
            // is what lets `apply_delay` stay short.
            if announce && before != t {
                self.send_append(now);
            }
        }
    }

    /// Commits up to `target` and reports what took effect.
    pub(super) fn commit_to(&mut self, now: LocalTime, target: EntryId) {
        let Some(r) = self.replica.as_mut() else {
            return;
        };
        let applied = r.commit_to(target);
        if applied.is_empty() {
            return;
        }
        self.last_commit_advance = Some(now);
        let my_seq = r.view.get(self.id).map_or(0, |m| m.last_seq);
        let view = r.view.clone();
        self.counters.committed += applied.len() as u64;
        let mut joined = Vec::new();
        for a in applied {
            for c in &a.entry.changes {
                if let ViewChange::Join(info) = c {
                    joined.push(info.id);
                }
            }
            self.push_event(MemberEvent::Decided(Box::new(a)));
        }
        self.relay.prune(|m| view.get(m).map(|info| info.last_seq));
        self.settle_own_votes(my_seq);
        if let Leadership::Leader(ls) = &mut self.role {
            for id in &joined {
                ls.joining.remove(id);
            }
        }
    }

    /// A member outside its room's view (evicted while cut off, or a learner
    /// whose admission was dropped by a leader change) looks for the room
    /// again after `discover_for`, rather than follow a log it is not in.
    pub(super) fn check_membership(&mut self, now: LocalTime) {
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        if r.view.get(self.id).is_some() || r.log_view().get(self.id).is_some() || self.is_leader()
        {
            self.outside_view_since = None;
            return;
        }
        let since = *self.outside_view_since.get_or_insert(now);
        if now.since(since) >= self.cfg.discover_for {
            self.outside_view_since = None;
            let target = self.leader.map(|l| (r.room, l));
            self.role = Leadership::Follower;
            self.phase = Phase::Seeking {
                since: now,
                target,
                last_request: None,
                defer_to_lower: None,
            };
        }
    }
}
