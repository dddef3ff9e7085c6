//! The mesh loop: one UDP socket, the protocol core, and the envelope.
//!
//! Every received datagram is opened (authenticated, replay-checked) before
//! the protocol sees a byte of it; every datagram the protocol emits is
//! sealed before it leaves. The loop drives [`Member`] in the order its
//! documentation gives: inputs, then transmits, then events, then the next
//! timeout. It also keeps the address book that turns member ids into
//! socket addresses (learned from authenticated datagrams, discovery and
//! static peers) and publishes a status snapshot for the loopback endpoint.
//!
//! Invariant: nothing here blocks on anything but the socket, the timer and
//! the command channel; the audio threads are never waited for.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use autoharmonize_protocol::catalogue::TrackInfo;
use autoharmonize_protocol::envelope::{Epoch, GroupKey, OpenError, Opener, Sealer};
use autoharmonize_protocol::member::{Config as MemberConfig, Dest, Member, MemberEvent, Status};
use autoharmonize_protocol::pacing::{Pacing, SendPacer};
use autoharmonize_protocol::playout::{ClockFeed, ClockGate};
use autoharmonize_protocol::refusal::{self, Refusals};
use autoharmonize_protocol::saved::SavedState;
use autoharmonize_protocol::wire::{Health, Role, ViewChange};
use autoharmonize_protocol::{BootId, LocalTime, MemberId, Nanos};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::audio::player::Player;
use crate::catalogue::{CatalogueView, ViewCache, short_id};
use crate::clock::LocalClock;
use crate::notify::Watchdog;
use crate::recv_stamp;
use crate::room_state::Saver;
use crate::send_queue;
use crate::status::{
    ChannelStatus, Command, DecisionStatus, EnvelopeCounters, LoadedTrackStatus, NodeStatus,
    OwnVoteStatus, ViewMember, VoteStatus,
};

/// Most member addresses remembered; the oldest entry goes first.
const MAX_BOOK: usize = 256;

/// Decisions kept for the status page.
const DECISIONS_KEPT: usize = 32;

/// How often the status snapshot is refreshed.
const STATUS_EVERY: Duration = Duration::from_millis(50);
/// Clock error bound (µs) within which a silent player may start following
/// the room (see `ClockGate`).
const START_CLOCK_BOUND_US: u32 = 150;
/// The longest a player waits for that bound once there is an estimate:
/// on a network too jittery to reach it, play anyway.
const START_CLOCK_WAIT: Nanos = Nanos::from_millis(1_200);

/// Own votes whose outcome is kept for the status page (and the
/// controller, which waits on them).
const OWN_VOTES_KEPT: usize = 32;

/// How often a summary of dropped datagrams may be logged at warn level.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);
/// A timer firing this late means the loop was held up (two heartbeats:
/// the point where the protocol stops trusting its own silence timers).
const LATE_WARN: Duration = Duration::from_millis(200);
/// At most one late-loop report per this long.
const LATE_LOG_EVERY: Duration = Duration::from_secs(10);

/// A peer address found by discovery, for the address book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr {
    /// The member it belongs to.
    pub id: MemberId,
    /// Where its mesh socket listens.
    pub addr: SocketAddr,
}

/// Audio figures a member reports in its heartbeats (see
/// `wire::Health`): the audio engine publishes them, the mesh sends them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioHealth {
    /// Milliseconds of audio queued ahead of the DAC.
    pub buffer_ms: u16,
    /// Output underruns since start.
    pub xruns: u32,
}

/// What the mesh loop needs to start.
pub struct MeshSetup {
    /// This speaker's member id.
    pub id: MemberId,
    /// This run's boot epoch (incarnation and envelope epoch).
    pub boot: BootId,
    /// Speaker name, for status and logs.
    pub name: String,
    /// Protocol tunables.
    pub member: MemberConfig,
    /// The room's secret.
    pub key: GroupKey,
    /// The bound mesh socket.
    pub socket: UdpSocket,
    /// Static peers (ids unknown until they answer).
    pub peers: Vec<SocketAddr>,
    /// The node's clock.
    pub clock: LocalClock,
    /// The audio player, if audio runs: it receives every decided state and
    /// the mesh clock.
    pub player: Option<Player>,
    /// Audio figures for the heartbeats (a controller leaves them zero).
    pub health: watch::Receiver<AudioHealth>,
    /// The tracks this member holds, with a mask of the stems held of
    /// each, announced in the room's catalogue (a controller holds none).
    pub library: Vec<(TrackInfo, u8)>,
    /// Where the room's agreed state is kept across power cuts (a speaker;
    /// a controller keeps none).
    pub saver: Option<Saver>,
}

/// Maps member ids to addresses.
#[derive(Debug, Default)]
struct AddressBook {
    learned: HashMap<MemberId, SocketAddr>,
    order: VecDeque<MemberId>,
    static_peers: Vec<SocketAddr>,
    own: Option<SocketAddr>,
}

impl AddressBook {
    /// Records `id` at `addr`; true if that is new or changed.
    fn learn(&mut self, id: MemberId, addr: SocketAddr) -> bool {
        match self.learned.insert(id, addr) {
            Some(old) => old != addr,
            None => {
                self.order.push_back(id);
                if self.order.len() > MAX_BOOK
                    && let Some(old) = self.order.pop_front()
                {
                    self.learned.remove(&old);
                }
                true
            }
        }
    }

    fn of(&self, id: MemberId) -> Option<SocketAddr> {
        self.learned.get(&id).copied()
    }

    /// Every address we could reach a room through.
    fn everyone(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = self
            .learned
            .values()
            .chain(self.static_peers.iter())
            .copied()
            .filter(|a| Some(*a) != self.own)
            .collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// The running mesh of one node.
pub struct Mesh {
    id: MemberId,
    name: String,
    member: Member,
    socket: UdpSocket,
    sealer: Sealer,
    opener: Opener,
    book: AddressBook,
    /// Holds back datagrams to addresses that stopped answering, so they
    /// cannot fill the send buffer (see `protocol::pacing`).
    pacer: SendPacer<SocketAddr>,
    /// Which senders of datagrams that failed authentication are told so.
    refusals: Refusals<SocketAddr>,
    /// The send queue could not be read (reported once).
    send_queue_unknown: bool,
    clock: LocalClock,
    envelope: EnvelopeCounters,
    decisions: VecDeque<DecisionStatus>,
    own_votes: VecDeque<OwnVoteStatus>,
    health: watch::Receiver<AudioHealth>,
    status_tx: watch::Sender<Arc<NodeStatus>>,
    catalogue_tx: watch::Sender<Arc<CatalogueView>>,
    /// The catalogue snapshot last published, rebuilt only when the
    /// catalogue, the view or a member's address changed.
    catalogue_view: ViewCache,
    out: Vec<u8>,
    last_forged_warning: Option<Instant>,
    last_drop_log: Instant,
    drops_at_last_log: u64,
    /// When datagrams that could not be sent were last reported, and how
    /// many had failed by then.
    last_unsent_log: Option<Instant>,
    unsent_at_last_log: u64,
    /// Timers that fired late since the last report, the worst of them,
    /// and when that report was.
    late_ticks: u64,
    worst_late: Duration,
    last_late_log: Option<Instant>,
    player: Option<Player>,
    /// Which mesh clock mapping the player follows, and when it may start.
    clock_gate: ClockGate,
    /// Whether the player was given a state.
    player_has_state: bool,
    watchdog: Watchdog,
    /// Writes the room's state to disk, and the state last handed to it.
    saver: Option<Saver>,
    last_saved: Option<SavedState>,
}

impl Mesh {
    /// Prepares the loop; returns it with the receiver of status snapshots.
    #[must_use]
    pub fn new(setup: MeshSetup) -> (Mesh, watch::Receiver<Arc<NodeStatus>>) {
        let now = setup.clock.now();
        let mut member = Member::new(setup.id, setup.boot, setup.member, now);
        let held = setup.library.len();
        let announced = member.set_library(&setup.name, setup.library);
        if announced < held {
            warn!(
                held,
                announced, "some tracks of the library are not announced to the room"
            );
        }
        let (status_tx, status_rx) = watch::channel(Arc::new(NodeStatus::default()));
        let own = setup.socket.local_addr().ok();
        if let Err(e) = recv_stamp::enable(&setup.socket) {
            warn!(
                "no kernel receive timestamps ({e}): clock probes are dated when read, which biases the clock estimate on a busy machine"
            );
        }
        let mesh = Mesh {
            id: setup.id,
            name: setup.name,
            member,
            sealer: Sealer::new(&setup.key, setup.id, Epoch(setup.boot.0)),
            opener: Opener::new(&setup.key, setup.id),
            socket: setup.socket,
            book: AddressBook {
                static_peers: setup.peers,
                own,
                ..AddressBook::default()
            },
            pacer: SendPacer::new(Pacing::default(), now),
            refusals: Refusals::default(),
            send_queue_unknown: false,
            clock: setup.clock,
            envelope: EnvelopeCounters::default(),
            decisions: VecDeque::with_capacity(DECISIONS_KEPT),
            own_votes: VecDeque::with_capacity(OWN_VOTES_KEPT),
            health: setup.health,
            status_tx,
            catalogue_tx: watch::channel(Arc::new(CatalogueView::default())).0,
            catalogue_view: ViewCache::default(),
            out: Vec::with_capacity(1500),
            last_forged_warning: None,
            last_drop_log: Instant::now(),
            drops_at_last_log: 0,
            last_unsent_log: None,
            unsent_at_last_log: 0,
            late_ticks: 0,
            worst_late: Duration::ZERO,
            last_late_log: None,
            player: setup.player,
            clock_gate: ClockGate::new(START_CLOCK_BOUND_US, START_CLOCK_WAIT),
            player_has_state: false,
            watchdog: Watchdog::disabled(),
            saver: setup.saver,
            last_saved: None,
        };
        (mesh, status_rx)
    }

    /// The room's catalogue: the tracks, their stems, and who holds each
    /// stem at which address. A new snapshot is published with the first
    /// status refresh (every 50 ms) after the catalogue, the view or a
    /// member's address changed. See [`CatalogueView`].
    #[must_use]
    pub fn catalogue(&self) -> watch::Receiver<Arc<CatalogueView>> {
        self.catalogue_tx.subscribe()
    }

    /// The systemd watchdog this loop pets once per iteration, so a wedged
    /// loop stops the pings and systemd restarts the node.
    pub fn set_watchdog(&mut self, watchdog: Watchdog) {
        self.watchdog = watchdog;
    }

    /// Runs until `shutdown` resolves, then says goodbye to the room.
    ///
    /// # Errors
    /// Only if the socket fails in a way a retry cannot fix.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
        mut commands: mpsc::Receiver<Command>,
        mut discovered: mpsc::Receiver<PeerAddr>,
    ) -> std::io::Result<()> {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; 2048];
        let mut last_status = Instant::now() - STATUS_EVERY;
        info!(member = %self.id, name = %self.name, "mesh running");
        loop {
            let deadline = self.member.poll_timeout();
            let waited_from = self.clock.now();
            let wait = deadline.map_or(Duration::from_millis(50), |d| self.clock.until(d));
            tokio::select! {
                () = &mut shutdown => break,
                received = recv_stamp::recv(&self.socket, &self.clock, &mut buf) => match received {
                    Ok((len, from, at)) => self.on_datagram(&buf[..len], from, at),
                    // ICMP port-unreachable from a peer that went away shows
                    // up here on Linux; it is not the socket's failure.
                    Err(e) if is_transient(&e) => debug!("receive: {e}"),
                    Err(e) => return Err(e),
                },
                Some(cmd) = commands.recv() => self.on_command(cmd),
                Some(peer) = discovered.recv() => {
                    if peer.id != self.id {
                        let _ = self.book.learn(peer.id, peer.addr);
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
            if self.health.has_changed().unwrap_or(false) {
                let h = *self.health.borrow_and_update();
                self.member.set_audio_health(h.buffer_ms, h.xruns);
            }
            // Timers are checked after every input, so a busy socket can
            // never starve them.
            if let Some(d) = deadline
                && self.clock.now() >= d
            {
                let now = self.clock.now();
                // Late from the deadline, or from when the loop came to wait
                // for one already due (the first timers are due at once).
                self.note_lateness(Duration::from_nanos(now.since(d.max(waited_from)).0));
                self.member.handle_timeout(now);
            }
            self.flush();
            self.drain_events();
            self.feed_player();
            if last_status.elapsed() >= STATUS_EVERY {
                last_status = Instant::now();
                self.note_send_queue();
                self.publish();
                self.log_drops();
                self.save_state();
            }
            self.watchdog.pet().await;
        }
        info!(member = %self.id, "leaving the room");
        self.save_state();
        if let Some(s) = self.saver.take() {
            s.finish();
        }
        self.member.leave(self.clock.now());
        self.flush();
        if let Some(p) = self.player.take() {
            p.stop();
        }
        Ok(())
    }

    fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr, received: LocalTime) {
        let now = self.clock.now();
        match self.opener.open(bytes) {
            Ok(opened) => {
                self.envelope.opened += 1;
                let (sender, boot) = (opened.sender, BootId(opened.epoch.0));
                if self.book.learn(sender, from) {
                    // The protocol refers newcomers to members by address.
                    self.member.learn_address(now, sender, from);
                }
                self.pacer.heard(from, now);
                self.member.handle_authenticated_received(
                    now,
                    received,
                    sender,
                    boot,
                    opened.plaintext,
                );
            }
            Err(e) => self.count_drop(e, from, now),
        }
    }

    fn count_drop(&mut self, e: OpenError, from: SocketAddr, now: LocalTime) {
        let c = &mut self.envelope;
        match e {
            OpenError::Short(_) => c.short += 1,
            OpenError::Oversized(_) => c.oversized += 1,
            OpenError::Version(_) => c.wrong_version += 1,
            OpenError::Forged { sender, first } => {
                c.forged += 1;
                // Once per claimed sender, and never more than once every
                // few seconds in total: a flood must not flood the log.
                if first && log_due(&mut self.last_forged_warning, Duration::from_secs(10)) {
                    warn!(
                        %from,
                        claimed = %sender,
                        "datagram failed authentication: a speaker with the wrong group secret, or forged traffic"
                    );
                }
                // Tell the sender (a controller with the wrong secret hears
                // nothing else from us); rate-limited, see protocol::refusal.
                if self.refusals.should_notify(now, from) {
                    match self.socket.try_send_to(&refusal::notice(sender), from) {
                        Ok(_) => c.refusals_sent += 1,
                        Err(_) => c.send_errors += 1,
                    }
                }
            }
            OpenError::Refused => c.refused += 1,
            OpenError::Reflected => c.reflected += 1,
            OpenError::StaleEpoch { .. } => c.stale_epoch += 1,
            OpenError::Replayed { .. } => c.replayed += 1,
            OpenError::TooOld { .. } => c.too_old += 1,
        }
    }

    fn dropped(&self) -> u64 {
        let c = &self.envelope;
        c.short
            + c.oversized
            + c.wrong_version
            + c.forged
            + c.reflected
            + c.stale_epoch
            + c.replayed
            + c.too_old
    }

    /// Reports timers that fired well after their deadline: the loop was
    /// starved of CPU or blocked, and everything it drives (heartbeats,
    /// status, the audio's clock feed) waited with it. At most one line
    /// per `LATE_LOG_EVERY`, with the worst lateness and the count since.
    fn note_lateness(&mut self, late: Duration) {
        if late < LATE_WARN {
            return;
        }
        self.late_ticks += 1;
        self.worst_late = self.worst_late.max(late);
        if log_due(&mut self.last_late_log, LATE_LOG_EVERY) {
            warn!(
                worst_ms = self.worst_late.as_millis() as u64,
                times = self.late_ticks,
                "mesh loop ran late: its timers fired after their deadline (CPU starved or blocked)"
            );
            self.late_ticks = 0;
            self.worst_late = Duration::ZERO;
        }
    }

    /// Tells the pacer how long the socket's send queue is: pacing to
    /// silent peers applies only while it is long (see `protocol::pacing`).
    /// If the kernel will not say, pacing stays on, and that is logged once.
    fn note_send_queue(&mut self) {
        let ipv6 = self.book.own.is_some_and(|a| a.is_ipv6());
        let queued = match send_queue::queued_bytes(&self.socket, ipv6) {
            Ok(q) => Some(q),
            Err(e) => {
                if !self.send_queue_unknown {
                    warn!(
                        "cannot read the socket's send queue ({e}): datagrams to silent peers are always paced, which slows rejoining a little"
                    );
                    self.send_queue_unknown = true;
                }
                None
            }
        };
        let was = self.pacer.engaged();
        self.pacer.note_send_queue(queued);
        if self.pacer.engaged() != was && queued.is_some() {
            debug!(queued, paced = self.pacer.engaged(), "send queue");
        }
    }

    fn log_drops(&mut self) {
        // Sends failing is news at once (a cable pulled, Wi-Fi gone), then
        // once a minute while it lasts.
        let unsent = self.envelope.send_full + self.envelope.send_errors;
        if unsent > self.unsent_at_last_log && log_due(&mut self.last_unsent_log, DROP_LOG_EVERY) {
            warn!(
                unsent = unsent - self.unsent_at_last_log,
                send_buffer_full = self.envelope.send_full,
                send_errors = self.envelope.send_errors,
                "datagrams could not be sent (network down?): dropped, the room goes on without them"
            );
            self.unsent_at_last_log = unsent;
        }
        if self.last_drop_log.elapsed() < DROP_LOG_EVERY {
            return;
        }
        let total = self.dropped();
        if total > self.drops_at_last_log {
            warn!(
                dropped = total - self.drops_at_last_log,
                envelope = ?self.envelope,
                "datagrams dropped in the last minute"
            );
        }
        self.drops_at_last_log = total;
        self.last_drop_log = Instant::now();
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Cast(event, reply) => {
                let result = self.member.cast(self.clock.now(), event);
                match &result {
                    Ok(seq) => {
                        info!(?event, seq, "vote cast");
                        if self.own_votes.len() == OWN_VOTES_KEPT {
                            self.own_votes.pop_front();
                        }
                        self.own_votes.push_back(OwnVoteStatus {
                            seq: *seq,
                            event: event.into(),
                            state: "pending".into(),
                            apply_at: None,
                        });
                    }
                    Err(e) => info!(?event, "vote refused: {e}"),
                }
                let _ = reply.send(result);
            }
        }
    }

    /// Sends what the member has to send, without ever waiting: a socket
    /// that cannot take a datagram now drops it (see
    /// `EnvelopeCounters::send_full`), so a dead link cannot freeze the
    /// loop, its timers, the status and the watchdog. While the send queue
    /// is long, addresses silent for a second get one datagram per round
    /// (`EnvelopeCounters::paced`), so the kernel's queue for unresolvable
    /// ones cannot fill the buffer.
    fn flush(&mut self) {
        let now = self.clock.now();
        while let Some(t) = self.member.poll_transmit() {
            // Our book first; an address only the protocol knows (another
            // member referred it) is the way to a member not yet heard.
            let of = |id| self.book.of(id).or_else(|| self.member.address_of(id));
            let targets: Vec<SocketAddr> = match t.dest {
                Dest::Member(id) => of(id).into_iter().collect(),
                Dest::Members(ids) => ids.iter().filter_map(|&id| of(id)).collect(),
                Dest::Everyone => self.everyone(&[]),
                Dest::Strangers { except } => self.everyone(&except),
            };
            for to in targets {
                if !self.pacer.may_send(to, now) {
                    self.envelope.paced += 1;
                    continue;
                }
                // Each copy is sealed separately: every datagram has its own
                // counter, so replaying one copy to another peer fails too.
                self.out.clear();
                if let Err(e) = self.sealer.seal(&t.payload, &mut self.out) {
                    warn!("cannot seal a datagram: {e}");
                    continue;
                }
                match self.socket.try_send_to(&self.out, to) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        self.envelope.send_full += 1;
                    }
                    Err(e) => {
                        self.envelope.send_errors += 1;
                        debug!(%to, "send: {e}");
                    }
                }
            }
        }
    }

    /// Every address we could reach a room through (our book, and the
    /// addresses the protocol was referred to), but those of `except`.
    fn everyone(&self, except: &[MemberId]) -> Vec<SocketAddr> {
        let skip: Vec<SocketAddr> = except
            .iter()
            .filter_map(|&id| self.book.of(id).or_else(|| self.member.address_of(id)))
            .collect();
        let mut all = self.book.everyone();
        all.extend(self.member.known_addresses());
        all.sort_unstable();
        all.dedup();
        all.retain(|a| !skip.contains(a) && Some(*a) != self.book.own);
        all
    }

    /// Offers the room's state, as it stands now, to the saver when it
    /// changed since the last offer (a decision, or positions that moved).
    fn save_state(&mut self) {
        let Some(saver) = &self.saver else {
            return;
        };
        let now = self.clock.now();
        let (Some(t), Some(at)) = (self.member.transport(), self.member.mesh_time(now)) else {
            return;
        };
        let state = SavedState::capture(t, at);
        if self.last_saved.as_ref() != Some(&state) {
            saver.offer(state.clone());
            self.last_saved = Some(state);
        }
    }

    fn drain_events(&mut self) {
        while let Some(ev) = self.member.poll_event() {
            match ev {
                MemberEvent::Decided(a) => {
                    if let Some(p) = &self.player {
                        p.decided(a.apply_at, a.transport.clone());
                        self.player_has_state = true;
                    }
                    if !a.effective.is_empty() || !a.entry.changes.is_empty() {
                        // How long before it takes effect the decision is
                        // known here: the audio needs it ahead of its buffer.
                        let lead_ms = self
                            .member
                            .mesh_time(self.clock.now())
                            .map(|now| (i128::from(a.apply_at.0) - i128::from(now.0)) / 1_000_000);
                        info!(
                            round = a.entry.id.round.0,
                            apply_at = a.apply_at.0,
                            lead_ms,
                            votes = a.effective.len(),
                            changes = a.entry.changes.len(),
                            "decided"
                        );
                        for c in &a.entry.changes {
                            info!(
                                round = a.entry.id.round.0,
                                "room membership: {}",
                                describe_change(c)
                            );
                        }
                    } else {
                        debug!(round = a.entry.id.round.0, "decided (nothing)");
                    }
                    for v in a.entry.votes.iter().filter(|v| v.member == self.id) {
                        if let Some(o) = self.own_votes.iter_mut().find(|o| o.seq == v.seq) {
                            o.apply_at = Some(a.apply_at.0);
                        }
                    }
                    if self.decisions.len() == DECISIONS_KEPT {
                        self.decisions.pop_front();
                    }
                    self.decisions.push_back(DecisionStatus {
                        round: a.entry.id.round.0,
                        term: a.entry.id.term.0,
                        apply_at: a.apply_at.0,
                        votes: a
                            .effective
                            .iter()
                            .map(|v| VoteStatus {
                                member: v.member.to_string(),
                                seq: v.seq,
                                event: v.event.into(),
                            })
                            .collect(),
                        changes: a.entry.changes.iter().map(describe_change).collect(),
                        digest: format!("{:016x}", a.digest),
                    });
                }
                MemberEvent::RoomChanged { room } => {
                    info!(founder = %room.founder, founded = room.founded.0, "joined a room");
                    // The status shows the decisions of the room it names:
                    // those of the room left behind (a solo room merging
                    // back, say) are not this room's, and their rounds
                    // overlap this room's with other digests.
                    self.decisions.clear();
                    // Its mesh clock is not the old room's: the player goes
                    // silent until the new estimate is good enough.
                    if self.clock_gate.restart()
                        && let Some(p) = &self.player
                    {
                        p.clock(None);
                    }
                }
                MemberEvent::LeaderChanged { leader } => match leader {
                    Some(l) if l == self.id => info!("this speaker now leads and keeps time"),
                    Some(l) => info!(leader = %l, "following a new leader"),
                    None => info!("no leader: the room is electing one"),
                },
                MemberEvent::StateReplaced { commit, .. } => {
                    debug!(round = commit.round.0, "state transferred");
                    if let (Some(p), Some(t)) = (&self.player, self.member.transport()) {
                        p.replaced(t.clone());
                        self.player_has_state = true;
                    }
                }
                MemberEvent::VoteDecided { seq } => {
                    debug!(seq, "own vote decided");
                    self.settle_own_vote(seq, "decided");
                }
                MemberEvent::VoteDropped { seq, reason } => {
                    warn!(seq, ?reason, "own vote dropped without a decision");
                    self.settle_own_vote(seq, "dropped");
                }
            }
        }
    }

    /// Gives the player the clock when it changed, and the state if it has
    /// none yet (a room founded here announces no event).
    fn feed_player(&mut self) {
        let Some(p) = &self.player else {
            return;
        };
        let clock = self.member.mesh_clock();
        let bound = self.member.health().clock_error_us;
        match self.clock_gate.offer(clock, bound, self.clock.now()) {
            ClockFeed::Keep => {}
            ClockFeed::Update(clock) => p.clock(clock),
            ClockFeed::Start {
                clock,
                waited,
                bound_us,
            } => {
                info!(
                    clock_error_us = bound_us,
                    after_ms = waited.0 / 1_000_000,
                    "mesh clock estimate ready: audio follows the room"
                );
                p.clock(Some(clock));
            }
        }
        if !self.player_has_state
            && let Some(t) = self.member.transport()
        {
            p.replaced(t.clone());
            self.player_has_state = true;
        }
    }

    fn settle_own_vote(&mut self, seq: u32, state: &str) {
        if let Some(o) = self.own_votes.iter_mut().find(|o| o.seq == seq) {
            o.state = state.into();
        }
    }

    fn publish(&mut self) {
        if let Some(p) = &self.player {
            // Audio health for the heartbeats, as often as the status: frames
            // queued ahead of the DAC (ring + device) at 48 kHz, and xruns.
            let c = p.counters();
            let queued = c.ring_fill_frames + u64::try_from(c.delay_frames.max(0)).unwrap_or(0);
            self.member.set_audio_health(
                u16::try_from(queued / 48).unwrap_or(u16::MAX),
                u32::try_from(c.xruns).unwrap_or(u32::MAX),
            );
        }
        let now = self.clock.now();
        let st: Status = self.member.status(now);
        let mesh_time = self.member.mesh_time(now);
        let members: Vec<MemberId> = st.view.iter().map(|m| m.id).collect();
        let rebuilt =
            self.catalogue_view
                .refresh(self.id, self.member.catalogue(), &members, |m| {
                    self.book.of(m)
                });
        let catalogue = Arc::clone(self.catalogue_view.view());
        let track = self.member.transport().and_then(|t| t.track).map(|t| {
            let entry = catalogue.track(t.id);
            LoadedTrackStatus {
                id: t.id.to_string(),
                short_id: short_id(t.id),
                title: entry.map(|e| e.info.title.to_string()),
                length_frames: t.length.0,
                channels: entry
                    .map(|e| e.info.stems.iter().map(|s| s.name.to_string()).collect())
                    .unwrap_or_default(),
            }
        });
        let channels = self
            .member
            .transport()
            .map(|t| {
                t.channels
                    .iter()
                    .map(|c| ChannelStatus {
                        playing: c.playing,
                        position: mesh_time.map_or(c.anchor_pos.0, |m| c.position_at(m).0),
                        anchor_pos: c.anchor_pos.0,
                        anchor_at: c.anchor_at.0,
                        gain: c.gain.0,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let status = NodeStatus {
            id: st.id.to_string(),
            name: self.name.clone(),
            boot: st.boot.0,
            room: st.room.map(|r| format!("{}/{}", r.founded.0, r.founder)),
            term: st.term.0,
            leader: st.leader.map(|l| l.to_string()),
            is_leader: self.member.is_leader(),
            round: st.round.map(|r| r.0),
            mesh_time_ns: mesh_time.map(|t| t.0),
            local_time_ns: now.0,
            commit_round: st.commit.round.0,
            digest: format!("{:016x}", st.digest),
            writable: st.writable,
            clock_error_us: st.clock_error.map(|e: Nanos| e.0 / 1_000),
            pending_votes: st.pending_votes,
            view: st
                .view
                .iter()
                .map(|m| {
                    // Our own figures are current; a peer's are from its
                    // last heartbeat.
                    let (health, last_heard) = if m.id == st.id {
                        (Some(st.health), Some(Nanos(0)))
                    } else {
                        st.peers
                            .iter()
                            .find(|p| p.id == m.id)
                            .map_or((None, None), |p| (p.health, p.last_heard))
                    };
                    ViewMember {
                        id: m.id.to_string(),
                        name: catalogue.name(m.id).map(str::to_owned),
                        boot: m.boot.0,
                        role: match m.role {
                            Role::Speaker => "speaker".into(),
                            Role::Controller => "controller".into(),
                        },
                        stem: m.stem,
                        clock_error_us: health
                            .map(|h| h.clock_error_us)
                            .filter(|&e| e != Health::CLOCK_UNKNOWN),
                        buffer_ms: health.map(|h| h.buffer_ms),
                        xruns: health.map(|h| h.xruns),
                        last_heard_ms: last_heard.map(Nanos::as_millis),
                    }
                })
                .collect(),
            own_votes: self.own_votes.iter().cloned().collect(),
            channels,
            decisions: self.decisions.iter().cloned().collect(),
            protocol: st.counters,
            envelope: self.envelope.clone(),
            audio: self.player.as_ref().map(|p| p.status()),
            track,
            tracks: Arc::clone(self.catalogue_view.status()),
            catalogue_complete: catalogue.is_complete(),
            restored: self.member.transport().is_some_and(|t| t.restored),
            revision: self.member.transport().map_or(0, |t| t.revision),
        };
        self.status_tx.send_replace(Arc::new(status));
        if rebuilt {
            self.catalogue_tx.send_replace(catalogue);
        }
    }
}

/// Whether a rate-limited log line may be written now (never written, or
/// last written at least `every` ago); if so, marks it written now.
fn log_due(last: &mut Option<Instant>, every: Duration) -> bool {
    if last.is_some_and(|t| t.elapsed() < every) {
        return false;
    }
    *last = Some(Instant::now());
    true
}

fn describe_change(c: &ViewChange) -> String {
    match c {
        ViewChange::Join(m) => format!("join {}", m.id),
        ViewChange::Leave(id) => format!("leave {id}"),
        ViewChange::Evict(id) => format!("evict {id}"),
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::Interrupted
            | std::io::ErrorKind::WouldBlock
            // A datagram that came without a usable sender address.
            | std::io::ErrorKind::InvalidData
    )
}

/// The protocol configuration a node's settings call for.
#[must_use]
pub fn member_config(heartbeat_ms: u64, stem: Option<u8>) -> MemberConfig {
    member_config_for(Role::Speaker, heartbeat_ms, stem)
}

/// The protocol configuration of a member with `role` (the controller
/// joins as [`Role::Controller`]).
#[must_use]
pub fn member_config_for(role: Role, heartbeat_ms: u64, stem: Option<u8>) -> MemberConfig {
    let mut cfg = MemberConfig {
        role,
        stem,
        ..MemberConfig::default()
    };
    // Scale the round-based timings with the heartbeat; the defaults are
    // tuned for 100 ms.
    let hb = Nanos::from_millis(heartbeat_ms);
    cfg.timing.heartbeat = hb;
    cfg.timing.apply_delay = Nanos(hb.0 * 6 / 5);
    cfg.election_after = Nanos(hb.0 * 3);
    cfg.evict_after = Nanos(hb.0 * 6);
    cfg
}
