//! Heartbeats: what a follower sends every round (acknowledgement, commit
//! point and digest, relayed votes, clock probe, the `heard` bitmap,
//! health), what a member does with one from its room, and the clock
//! exchange with the time reference it drives.
//!
//! Invariant: only a heartbeat from the sender's current incarnation counts
//! as evidence that it is alive (see `handle_inner`).

use super::*;

impl Member {
    pub(super) fn on_heartbeat(&mut self, now: LocalTime, received: LocalTime, h: Heartbeat) {
        if !self.same_room(&h.hdr) {
            self.on_foreign(now, &h);
            return;
        }
        self.observe_term(now, h.hdr.term);
        let _ = self.take_votes(now, &h.votes);
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        if r.view.get(h.hdr.from).is_some() {
            if self.peer_health.len() >= MAX_MEMBERS {
                self.peer_health.retain(|id, _| r.view.get(*id).is_some());
            }
            self.peer_health.insert(h.hdr.from, (h.health, now));
            self.catalogue.announced(h.hdr.from, h.catalogue);
        }
        // Either view: a member whose removal is still uncommitted must be
        // kept up to date, the old view's quorum may need it.
        let in_view = r.view.get(h.hdr.from).is_some() || r.log_view().get(h.hdr.from).is_some();
        let epoch_matches = h.view_epoch == r.view_epoch;
        let mismatch = r.digest_at(h.commit).is_some_and(|d| d != h.digest);
        if h.leader == Some(h.hdr.from)
            && h.hdr.term >= self.term
            && !self.is_leader()
            && now.since(self.last_leader_contact) >= self.cfg.election_after
        {
            // A working leader of our own room, but its appends do not reach
            // us: we were probably evicted while cut off. Ask to come back.
            self.request_join(now, h.hdr.from, h.hdr.room);
        }
        let Leadership::Leader(ls) = &mut self.role else {
            return;
        };
        if h.hdr.term == self.term && h.last.term == self.term {
            let m = ls.matched.entry(h.hdr.from).or_insert(h.last.round);
            *m = (*m).max(h.last.round);
        }
        if epoch_matches && h.heard != 0 {
            // Others' evidence that members are alive (Lifeguard-style:
            // never evict someone a peer still hears).
            let evidence = now.0.saturating_sub(self.cfg.timing.heartbeat.0);
            let view_ids: Vec<MemberId> = self
                .replica
                .as_ref()
                .map(|r| r.view.members().iter().map(|m| m.id).collect())
                .unwrap_or_default();
            for (i, id) in view_ids.iter().enumerate().take(64) {
                if h.heard & (1u64 << i) != 0 && *id != self.id {
                    let t = self.heard.entry(*id).or_insert(LocalTime(evidence));
                    *t = (*t).max(LocalTime(evidence));
                }
            }
        }
        let t2 = self.mesh_time(now).unwrap_or_default();
        if h.sent_at != LocalTime(0) {
            // Arrival on the unclamped mapping: `received` may precede the
            // last instant `mesh_time` returned.
            let arrived = self.clock.map_or(t2, |c| c.to_mesh(received).min(t2));
            let reply = Message::ClockReply(ClockReply {
                hdr: self.header(),
                t1: h.sent_at,
                t2: arrived,
                t3: t2,
            });
            self.push_transmit(Dest::Member(h.hdr.from), &reply);
        }
        if !in_view {
            // Someone of our room we no longer count: tell it who leads.
            self.beacon_to_stranger(now, h.hdr.from);
        } else if mismatch {
            self.send_snapshot(now, h.hdr.from, h.sent_at, t2);
        } else {
            self.catch_up(h.hdr.from, h.last, h.commit);
        }
        self.try_commit(now, true);
    }

    pub(super) fn heartbeat_msg(&self, now: LocalTime) -> Message {
        let r = self.replica.as_ref();
        let mut votes = heapless::Vec::<Vote, MAX_RELAYED_VOTES>::new();
        if let Some(v) = self.own.peek() {
            let _ = votes.push(v);
        }
        for v in self.relay.iter() {
            if votes.push(*v).is_err() {
                break;
            }
        }
        let mut heard = 0u64;
        if let Some(r) = r {
            let recent = Nanos(2 * r.timing.heartbeat.0);
            for (i, m) in r.view.members().iter().enumerate().take(64) {
                if self
                    .heard
                    .get(&m.id)
                    .is_some_and(|&t| now.since(t) <= recent)
                {
                    heard |= 1 << i;
                }
            }
        }
        // Probe the reference every round until the estimate has settled,
        // then every `PROBE_EVERY` rounds (`sent_at` zero: no probe).
        let round = self.current_round(now).unwrap_or(Round(0));
        let probe =
            self.estimator.sample_count() < SETTLE_SAMPLES || round.0.is_multiple_of(PROBE_EVERY);
        Message::Heartbeat(Heartbeat {
            hdr: self.header(),
            round,
            sent_at: if probe { now } else { LocalTime(0) },
            leader: self.leader,
            last: r.map(Replica::last).unwrap_or_default(),
            commit: r.map(|r| r.commit).unwrap_or_default(),
            digest: r.map_or(0, |r| r.digest),
            room_size: r.map_or(0, |r| {
                u8::try_from(r.view.speaker_count()).unwrap_or(u8::MAX)
            }),
            view_epoch: r.map_or(Round(0), |r| r.view_epoch),
            heard,
            health: self.health(),
            catalogue: self.catalogue.digest(),
            votes,
        })
    }

    pub(super) fn send_heartbeat(&mut self, now: LocalTime) {
        self.heartbeat_round = self.current_round(now);
        let msg = self.heartbeat_msg(now);
        let others = self.others();
        if self
            .heartbeat_round
            .is_some_and(|r| r.0.is_multiple_of(STRANGER_BEACON_EVERY))
        {
            // Whoever we know outside the room hears of it now and then:
            // two rooms that only followers can reach merge all the same.
            self.push_transmit(
                Dest::Strangers {
                    except: others.clone(),
                },
                &msg,
            );
        }
        self.push_transmit(Dest::Members(others), &msg);
    }

    pub(super) fn on_clock_reply(&mut self, received: LocalTime, c: ClockReply) {
        if self.leader != Some(c.hdr.from) || self.is_leader() {
            return;
        }
        self.add_clock_sample(ClockSample {
            t1: c.t1,
            t2: c.t2,
            t3: c.t3,
            t4: received,
        });
    }

    /// Feeds one exchange to the estimator and adopts its estimate, except
    /// while the mapping kept across a change of reference is likely still
    /// the better one (the new estimate has fewer than
    /// [`INHERITED_CLOCK_SAMPLES`] exchanges). Without a kept mapping (a new
    /// room's clock), every estimate is adopted as it comes: the first, from
    /// one exchange, must not stand for three rounds (chaos soak, seed 1: a
    /// speaker joining a re-founded room played 400 µs off until its fourth
    /// exchange).
    pub(super) fn add_clock_sample(&mut self, s: ClockSample) {
        if !self.estimator.add(s)
            || (self.clock_inherited && self.estimator.sample_count() < INHERITED_CLOCK_SAMPLES)
        {
            return;
        }
        if let Some(m) = self.estimator.mapping() {
            self.clock = Some(m);
            self.clock_inherited = false;
        }
    }

    pub(super) fn note_heard(&mut self, from: MemberId, now: LocalTime) {
        if self.heard.len() >= 2 * MAX_MEMBERS && !self.heard.contains_key(&from) {
            // Keep the map bounded: forget the peer silent the longest.
            if let Some((&oldest, _)) = self.heard.iter().min_by_key(|&(_, &t)| t) {
                self.heard.remove(&oldest);
            }
        }
        let t = self.heard.entry(from).or_insert(now);
        *t = (*t).max(now);
    }
}
