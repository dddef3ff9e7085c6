//! Joining a room: looking for one, being referred, asking to be admitted,
//! the leader's side of admitting (state transfer by snapshot), founding a
//! room, and merging rooms that meet.
//!
//! Invariant: a member installs a snapshot only from the room it targets
//! (or its own room's leader), and only after the digest over every part
//! checks; a room that decides nothing refers nobody (`docs/protocol.md`,
//! "Joining" and "Joining through any member").

use super::*;

impl Member {
    /// A heartbeat from another room (or from a member with no room).
    pub(super) fn on_foreign(&mut self, now: LocalTime, h: &Heartbeat) {
        let Some(their_room) = h.hdr.room else {
            return;
        };
        let from_leader = h.leader == Some(h.hdr.from);
        if from_leader {
            self.consider_room(now, their_room, h.room_size, h.hdr.from);
        }
        let ours = self
            .replica
            .as_ref()
            .filter(|_| matches!(self.phase, Phase::Member))
            .map(|r| (r.view.speaker_count(), r.room));
        let Some(mine) = ours else {
            if !from_leader && matches!(self.phase, Phase::Seeking { .. }) {
                // A member of a room that is not its leader: ask it, and
                // it refers us to the leader.
                self.ask_stranger(now, h.hdr.from, Some(their_room));
            }
            return;
        };
        self.counters.stale += 1;
        if mine.1 == their_room {
            return;
        }
        let theirs = (usize::from(h.room_size), their_room);
        if room_wins(mine, theirs) {
            // Our room wins: show the stranger the way in. A leader's
            // heartbeat is enough (the stranger learns its address from
            // it); a follower names its leader and where it is.
            if self.is_leader() {
                self.beacon_to_stranger(now, h.hdr.from);
            } else {
                self.refer(now, h.hdr.from);
            }
        } else if !from_leader {
            // Theirs wins but we heard a follower: answer with our own
            // heartbeat, so that it refers us to its leader.
            self.ask_stranger(now, h.hdr.from, None);
        }
    }

    /// Makes a member of another room tell us where its leader is: a join
    /// request while we seek, our heartbeat while we are in a room (it
    /// answers a losing room's heartbeat with a referral). Rate-limited.
    pub(super) fn ask_stranger(&mut self, now: LocalTime, to: MemberId, room: Option<RoomId>) {
        if !self.note_answered(now, to) {
            return;
        }
        let msg = match self.phase {
            Phase::Seeking { .. } => {
                let mut hdr = self.header();
                hdr.room = room;
                Message::JoinRequest(JoinRequest {
                    hdr,
                    sent_at: now,
                    stem: self.cfg.stem,
                    claim: self.claim(),
                })
            }
            Phase::Member => self.heartbeat_msg(now),
        };
        self.push_transmit(Dest::Member(to), &msg);
    }

    /// Records that we answer stranger `to` now; false if we did within
    /// [`REFER_EVERY`] (bounded map: the oldest are forgotten).
    pub(super) fn note_answered(&mut self, now: LocalTime, to: MemberId) -> bool {
        if self
            .referred
            .get(&to)
            .is_some_and(|&t| now.since(t) < REFER_EVERY)
        {
            return false;
        }
        if self.referred.len() >= MAX_MEMBERS {
            self.referred.retain(|_, t| now.since(*t) < REFER_EVERY);
            if self.referred.len() >= MAX_MEMBERS {
                self.referred.clear();
            }
        }
        self.referred.insert(to, now);
        true
    }

    /// We heard of a live room `room` of `size` speakers led by `leader`
    /// (from the leader itself, or named by one of its members): join it if
    /// we have no room yet, or merge into it if the merge rule prefers it
    /// to ours.
    pub(super) fn consider_room(
        &mut self,
        now: LocalTime,
        room: RoomId,
        size: u8,
        leader: MemberId,
    ) {
        match self.phase {
            Phase::Seeking {
                ref mut target,
                ref mut defer_to_lower,
                ..
            } => {
                // A live room exists: join it rather than found another.
                // Prefer the room the merge rule prefers.
                let theirs = (usize::from(size), room);
                let better = match *target {
                    None => true,
                    Some((t, _)) if t == room => true,
                    Some((t, _)) => room_wins(theirs, (0, t)),
                };
                if better {
                    *target = Some((room, leader));
                    *defer_to_lower = Some(now);
                    self.request_join(now, leader, Some(room));
                }
            }
            Phase::Member => {
                let Some(r) = self.replica.as_ref() else {
                    return;
                };
                if r.room == room {
                    return;
                }
                let mine = (r.view.speaker_count(), r.room);
                let theirs = (usize::from(size), room);
                // A room that has not decided anything for a while may be
                // dead (its quorum counts members that crashed): its size
                // proves nothing, so a live room wins over it.
                let stalled = self
                    .last_commit_advance
                    .is_none_or(|t| now.since(t) >= Nanos(2 * self.cfg.election_after.0));
                if room_wins(theirs, mine) || stalled {
                    // Merge: leave our room and join theirs.
                    let msg = Message::Leave(Leave { hdr: self.header() });
                    let dest = Dest::Members(self.others());
                    self.push_transmit(dest, &msg);
                    self.phase = Phase::Seeking {
                        since: now,
                        target: Some((room, leader)),
                        last_request: None,
                        defer_to_lower: None,
                    };
                    self.role = Leadership::Follower;
                    self.leader = None;
                    self.request_join(now, leader, Some(room));
                }
            }
        }
    }

    /// Tells `to` (outside our view) who leads our room and where the view's
    /// members are, in as many referrals as the view needs. Rate-limited
    /// per stranger; nothing is sent while our room cannot decide, or we
    /// know of no leader or cannot say where it is.
    pub(super) fn refer(&mut self, now: LocalTime, to: MemberId) {
        let Some(leader) = self.leader else {
            return;
        };
        if !self.writable(now) {
            // Our room decides nothing at the moment (no quorum, a leader
            // gone): it is no room to send anyone to, and a newcomer that
            // waited on it would never found one of its own.
            return;
        }
        if leader != self.id && self.addresses.get(leader).is_none() {
            return;
        }
        if !self.note_answered(now, to) {
            return;
        }
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        let room_size = u8::try_from(r.view.speaker_count()).unwrap_or(u8::MAX);
        // The leader first: a newcomer needs it above all others. Our own
        // address is the one the datagram comes from.
        let known: Vec<PeerAddress> = core::iter::once(leader)
            .chain(r.view.members().iter().map(|m| m.id))
            .filter(|&id| id != to && id != self.id)
            .enumerate()
            .filter(|&(i, id)| i == 0 || id != leader)
            .filter_map(|(_, id)| {
                let addr = self.addresses.get(id)?;
                Some(PeerAddress { id, addr })
            })
            .collect();
        let hdr = self.header();
        let mut msgs: Vec<Message> = known
            .chunks(REFERRAL_PEERS)
            .map(|chunk| {
                Message::Referral(Referral {
                    hdr,
                    leader: Some(leader),
                    room_size,
                    peers: chunk.iter().copied().collect(),
                })
            })
            .collect();
        if msgs.is_empty() {
            // A lone leader: the referral only names it.
            msgs.push(Message::Referral(Referral {
                hdr,
                leader: Some(leader),
                room_size,
                peers: heapless::Vec::new(),
            }));
        }
        for m in msgs {
            self.push_transmit(Dest::Member(to), &m);
        }
    }

    /// Another member names its room's leader and members: remember where
    /// they are, then treat it like hearing that room's leader.
    pub(super) fn on_referral(&mut self, now: LocalTime, r: Referral) {
        for p in &r.peers {
            if p.id != self.id {
                self.addresses.referred(p.id, p.addr, now);
            }
        }
        let (Some(room), Some(leader)) = (r.hdr.room, r.leader) else {
            return;
        };
        if leader == self.id || (leader != r.hdr.from && self.addresses.get(leader).is_none()) {
            // Nowhere to ask: the referral is no way in.
            self.counters.stale += 1;
            return;
        }
        self.consider_room(now, room, r.room_size, leader);
    }

    pub(super) fn request_join(&mut self, now: LocalTime, to: MemberId, room: Option<RoomId>) {
        let last = match &mut self.phase {
            Phase::Seeking { last_request, .. } => last_request,
            Phase::Member => &mut self.last_rejoin_request,
        };
        if last.is_some_and(|t| now.since(t) < Nanos::from_millis(100)) {
            return;
        }
        *last = Some(now);
        let mut hdr = self.header();
        hdr.room = room;
        let msg = Message::JoinRequest(JoinRequest {
            hdr,
            sent_at: now,
            stem: self.cfg.stem,
            claim: self.claim(),
        });
        self.push_transmit(Dest::Member(to), &msg);
    }

    pub(super) fn beacon_to_stranger(&mut self, now: LocalTime, to: MemberId) {
        let Leadership::Leader(ls) = &mut self.role else {
            return;
        };
        if ls
            .stranger_beacons
            .get(&to)
            .is_some_and(|&t| now.since(t) < self.cfg.timing.heartbeat)
        {
            return;
        }
        if ls.stranger_beacons.len() >= MAX_MEMBERS {
            ls.stranger_beacons.clear();
        }
        ls.stranger_beacons.insert(to, now);
        let hb = self.heartbeat_msg(now);
        self.push_transmit(Dest::Member(to), &hb);
    }

    pub(super) fn on_join_request(&mut self, now: LocalTime, j: JoinRequest) {
        let mine = (self.claim(), self.id);
        if let Phase::Seeking { defer_to_lower, .. } = &mut self.phase {
            // Two fresh members: the one with the newest saved state (then
            // the lower id) founds, the other joins it.
            if j.hdr.room.is_none()
                && j.hdr.role == Role::Speaker
                && founder_precedes((j.claim, j.hdr.from), mine)
            {
                *defer_to_lower = Some(now);
            }
            return;
        }
        if !self.is_leader() {
            // Reached through us: tell it who leads and where everyone is.
            self.refer(now, j.hdr.from);
            return;
        }
        let t2 = self.mesh_time(now).unwrap_or_default();
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        let known = r
            .log_view()
            .get(j.hdr.from)
            .is_some_and(|m| m.boot == j.hdr.boot);
        let Leadership::Leader(ls) = &mut self.role else {
            return;
        };
        if known {
            // Already in: it only needs the state.
            self.send_snapshot(now, j.hdr.from, j.sent_at, t2);
            return;
        }
        if ls.joining.len() < MAX_MEMBERS || ls.joining.contains_key(&j.hdr.from) {
            let info = MemberInfo {
                id: j.hdr.from,
                boot: j.hdr.boot,
                role: j.hdr.role,
                stem: j.stem,
                last_seq: 0,
            };
            ls.joining.insert(j.hdr.from, (info, j.sent_at, t2));
        }
        // So the newcomer can reach every member, not only us.
        self.refer(now, j.hdr.from);
    }

    pub(super) fn on_snapshot_request(&mut self, now: LocalTime, s: SnapshotRequest) {
        if !self.same_room(&s.hdr) || !self.is_leader() {
            return;
        }
        let t2 = self.mesh_time(now).unwrap_or_default();
        self.send_snapshot(now, s.hdr.from, s.sent_at, t2);
    }

    pub(super) fn send_snapshot(
        &mut self,
        now: LocalTime,
        to: MemberId,
        t1: LocalTime,
        t2: MeshTime,
    ) {
        let t3 = self.mesh_time(now).unwrap_or_default();
        let hdr = self.header();
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        let members = r.view.members();
        let parts = members.len().div_ceil(SNAPSHOT_MEMBERS_PER_PART).max(1);
        let mut msgs = Vec::with_capacity(parts);
        for part in 0..parts {
            let chunk = members
                .iter()
                .skip(part * SNAPSHOT_MEMBERS_PER_PART)
                .take(SNAPSHOT_MEMBERS_PER_PART);
            let mut slice = heapless::Vec::new();
            for m in chunk {
                let _ = slice.push(*m); // take() bounds it to the capacity
            }
            msgs.push(Message::Snapshot(Snapshot {
                hdr,
                commit: r.commit,
                digest: r.digest,
                view_epoch: r.view_epoch,
                heartbeat: r.timing.heartbeat,
                apply_delay: r.timing.apply_delay,
                part: u8::try_from(part).unwrap_or(u8::MAX),
                parts: u8::try_from(parts).unwrap_or(u8::MAX),
                members: slice,
                transport: r.transport.clone(),
                t1,
                t2,
                t3,
            }));
        }
        for m in msgs {
            self.push_transmit(Dest::Member(to), &m);
        }
    }

    pub(super) fn on_snapshot(&mut self, now: LocalTime, received: LocalTime, s: Snapshot) {
        let Some(room) = s.hdr.room else {
            return;
        };
        let acceptable = match self.phase {
            Phase::Seeking { target, .. } => target.is_none_or(|(t, _)| t == room),
            Phase::Member => {
                self.room() == Some(room)
                    && s.hdr.term >= self.term
                    && self
                        .replica
                        .as_ref()
                        .is_none_or(|r| s.commit.round > r.commit.round || s.digest != r.digest)
            }
        };
        let parts = usize::from(s.parts);
        if !acceptable || parts == 0 || parts > MAX_SNAPSHOT_PARTS || s.part >= s.parts {
            self.counters.stale += 1;
            return;
        }
        let fresh = self
            .assembly
            .as_ref()
            .is_none_or(|a| a.from != s.hdr.from || a.commit != s.commit || a.digest != s.digest);
        if fresh {
            self.assembly = Some(Assembly {
                from: s.hdr.from,
                commit: s.commit,
                digest: s.digest,
                parts: Default::default(),
                first_arrival: None,
            });
        }
        let asm = self.assembly.as_mut().expect("set above");
        let part = usize::from(s.part);
        if part == 0 {
            asm.first_arrival = Some(received);
        }
        asm.parts[part] = Some(s);
        if asm.parts.iter().take(parts).any(Option::is_none) {
            return;
        }
        let asm = self.assembly.take().expect("checked above");
        self.install(now, room, asm, parts);
    }

    pub(super) fn install(&mut self, now: LocalTime, room: RoomId, asm: Assembly, parts: usize) {
        let mut members: Vec<MemberInfo> = Vec::with_capacity(MAX_MEMBERS);
        for p in asm.parts.iter().take(parts).flatten() {
            members.extend(p.members.iter().copied());
        }
        let first = asm.parts[0].as_ref().expect("all parts present");
        let view = View::from_members(&members);
        let digest = Replica::digest_for(asm.commit, first.view_epoch, &view, &first.transport);
        // A snapshot without us in its view is still taken from our own
        // room's leader: we are being admitted and will find our Join in the
        // log (a learner). If we never do, `tick_member` sends us seeking.
        if digest != asm.digest {
            self.counters.stale += 1;
            return;
        }
        let timing = Timing {
            heartbeat: first.heartbeat,
            apply_delay: first.apply_delay,
        };
        if timing.heartbeat.0 == 0 {
            self.counters.malformed += 1;
            return;
        }
        let (t1, t2, t3, term, leader) =
            (first.t1, first.t2, first.t3, first.hdr.term, first.hdr.from);
        let replica = Replica::install(
            room,
            timing,
            asm.commit,
            first.view_epoch,
            view,
            first.transport.clone(),
        );
        let changed_room = self.room() != Some(room);
        let my_seq = replica.view.get(self.id).map_or(0, |m| m.last_seq);
        self.replica = Some(replica);
        self.phase = Phase::Member;
        self.last_commit_advance = Some(now);
        self.counters.snapshots_installed += 1;
        if changed_room {
            for v in self.own.reset(my_seq) {
                self.counters.votes_dropped += 1;
                self.push_event(MemberEvent::VoteDropped {
                    seq: v.seq,
                    reason: DropReason::RoomChanged,
                });
            }
            self.relay.clear();
            // Another room keeps another mesh clock: start over.
            self.estimator.reset();
            self.clock = None;
            self.clock_inherited = false;
            self.last_mesh = MeshTime(0);
            self.push_event(MemberEvent::RoomChanged { room });
        } else {
            self.settle_own_votes(my_seq);
        }
        self.term = self.term.max(term);
        self.become_follower(now, Some(leader));
        if t1.0 != 0 || t2.0 != 0 {
            self.add_clock_sample(ClockSample {
                t1,
                t2,
                t3,
                t4: asm.first_arrival.unwrap_or(now),
            });
        }
        self.push_event(MemberEvent::StateReplaced {
            room,
            commit: asm.commit,
        });
    }

    pub(super) fn tick_seeking(&mut self, now: LocalTime) {
        let Phase::Seeking {
            since,
            target,
            last_request,
            defer_to_lower,
        } = self.phase
        else {
            return;
        };
        if last_request.is_none_or(|t| now.since(t) >= Nanos::from_millis(300)) {
            match target {
                Some((room, leader)) => self.request_join(now, leader, Some(room)),
                None => {
                    if let Phase::Seeking { last_request, .. } = &mut self.phase {
                        *last_request = Some(now);
                    }
                    let msg = Message::JoinRequest(JoinRequest {
                        hdr: self.header(),
                        sent_at: now,
                        stem: self.cfg.stem,
                        claim: self.claim(),
                    });
                    self.push_transmit(Dest::Everyone, &msg);
                }
            }
        }
        // Found a room only after listening for `discover_for` without
        // hearing of a live room or of a lower-id member also seeking (that
        // one founds, we join it).
        let waited = now.since(since);
        // A hint holds us back only so long: a room we hear of but cannot
        // get into (its leader unreachable from here) must not keep a
        // speaker out of every room.
        let hinted = defer_to_lower.is_some_and(|t| now.since(t) < self.cfg.discover_for)
            && waited < self.cfg.solo_after;
        if self.cfg.role == Role::Speaker && waited >= self.cfg.discover_for && !hinted {
            self.found_room(now);
        }
    }

    /// Founds a room of our own, keeping the state we had (if any) so a
    /// speaker cut off from its room plays on where it was.
    pub(super) fn found_room(&mut self, now: LocalTime) {
        let clock = *self.clock.get_or_insert(MeshClock::identity());
        let mesh = clock.to_mesh(now).max(self.last_mesh);
        let timing = self.replica.as_ref().map_or(self.cfg.timing, |r| r.timing);
        let round = timing.round_at(mesh);
        let room = RoomId {
            founded: round,
            founder: self.id,
        };
        let me = MemberInfo {
            id: self.id,
            boot: self.boot,
            role: self.cfg.role,
            stem: self.cfg.stem,
            last_seq: 0,
        };
        // A speaker cut off keeps the state it had; a fresh one starts from
        // what it saved before it stopped (once: after that it has a room's).
        let transport = match (&self.replica, self.cfg.restored.take()) {
            (Some(r), _) => r.transport.clone(),
            (None, Some(saved)) => saved.transport(mesh),
            (None, None) => self.founding_transport(mesh),
        };
        let term = Term(1);
        let commit = EntryId { round, term };
        self.replica = Some(Replica::found(
            room,
            timing,
            commit,
            View::from_members(&[me]),
            transport,
        ));
        self.phase = Phase::Member;
        self.last_commit_advance = Some(now);
        self.term = term;
        self.voted_for = Some(self.id);
        for v in self.own.reset(0) {
            self.counters.votes_dropped += 1;
            self.push_event(MemberEvent::VoteDropped {
                seq: v.seq,
                reason: DropReason::RoomChanged,
            });
        }
        self.relay.clear();
        self.push_event(MemberEvent::RoomChanged { room });
        self.become_leader(now);
    }
}
