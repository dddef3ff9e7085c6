//! The state machine of one member of a room.
//!
//! A [`Member`] is driven entirely by its caller, in the quinn-proto style:
//!
//! - **Inputs**: [`Member::handle_datagram`] for every datagram received,
//!   [`Member::handle_timeout`] when the instant from `poll_timeout` passes,
//!   [`Member::cast`] when a person asks for something, and
//!   [`Member::leave`] before shutting down.
//! - **Outputs**, polled after every input until they return `None`:
//!   [`Member::poll_transmit`] (datagrams to send), [`Member::poll_event`]
//!   (decisions and changes to act on), then [`Member::poll_timeout`] (when
//!   to call `handle_timeout` next).
//! - **Observation**: [`Member::status`], [`Member::transport`],
//!   [`Member::mesh_time`].
//!
//! Every input carries `now`, the caller's monotonic [`LocalTime`]. The
//! member never reads a clock and never draws randomness.
//!
//! How agreement holds (details in `docs/protocol.md`): a leader (the time
//! reference) seals each round's votes into a log entry; an entry commits
//! once a quorum of speakers holds it, and only committed entries are
//! applied, each at the mesh instant `apply_at(round)`. Leaders are elected
//! Raft-style with pre-vote and leader stickiness, preferring the
//! longest-lived speaker. A side without a quorum cannot commit, so it keeps
//! its last agreed state and reports itself read-only; a member that hears
//! nobody for `solo_after` founds a room of its own; rooms that meet merge
//! by [`crate::membership::room_wins`].

mod election;
mod replica;
mod votes;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;

use crate::address::{AddressTable, PeerAddress, WireAddr};
use crate::catalogue::{Catalogue, CatalogueAnswer, TrackInfo};
use crate::clock::{ClockEstimator, ClockSample, MeshClock};
use crate::event::{Event, Vote};
use crate::ids::{BootId, Channel, MemberId, RoomId, Round, Term};
use crate::membership::{View, founder_precedes, room_wins};
use crate::saved::SavedState;
use crate::time::{LocalTime, MeshTime, Nanos};
use crate::transport::{Gain, LoadedTrack, MAX_CHANNELS, Transport};
use crate::wire::{
    Append, CatalogueReply, CatalogueRequest, ClockReply, DecodeError, Entry, EntryId, Header,
    Health, Heartbeat, JoinRequest, Leave, MAX_CARRIED_ENTRIES, MAX_ENTRY_VOTES, MAX_MEMBERS,
    MAX_RELAYED_VOTES, MAX_SNAPSHOT_PARTS, MAX_VIEW_CHANGES, MemberInfo, Message, REFERRAL_PEERS,
    Referral, Role, SNAPSHOT_MEMBERS_PER_PART, Snapshot, SnapshotRequest, ViewChange, VoteCast,
};

pub use replica::{Applied, Timing};
pub use votes::MAX_QUEUED_VOTES;

use election::Candidacy;
use replica::{Accept, Replica};
use votes::{OwnVotes, RelayPool};

/// Tunables of a member. The defaults are the protocol's; a room works with
/// members whose `timing` differs only because joiners adopt the room's.
#[derive(Clone, Debug)]
pub struct Config {
    /// Speaker or controller.
    pub role: Role,
    /// Stem this speaker plays (reported in the view).
    pub stem: Option<u8>,
    /// Channels of a room this member founds.
    pub channels: u8,
    /// Track a room this member founds starts with (with `channels`
    /// channels), so a speaker alone with its library plays its first
    /// track without anyone voting a load.
    pub track: Option<LoadedTrack>,
    /// Round timing of a room this member founds.
    pub timing: Timing,
    /// Leader silence after which the first-ranked follower campaigns
    /// (each further rank waits one more heartbeat).
    pub election_after: Nanos,
    /// Silence after which the leader removes a member from the view.
    pub evict_after: Nanos,
    /// Silence from everyone after which a member founds a room of its own.
    pub solo_after: Nanos,
    /// How long a fresh member listens for an existing room before founding.
    pub discover_for: Nanos,
    /// How long an own vote may wait for a decision before it is dropped.
    pub vote_ttl: Nanos,
    /// Rounds between a leader's beacons to every known peer.
    pub beacon_every: u64,
    /// The room state this speaker saved before it last stopped, if any: a
    /// room it founds as a fresh member starts from it (paused), and its
    /// join requests claim it so that members starting together let the
    /// newest saved state found the room (see [`crate::saved`]).
    pub restored: Option<SavedState>,
}

impl Default for Config {
    fn default() -> Config {
        let heartbeat = Nanos::from_millis(100);
        Config {
            role: Role::Speaker,
            stem: None,
            channels: 4,
            track: None,
            timing: Timing {
                heartbeat,
                apply_delay: Nanos::from_millis(120),
            },
            election_after: Nanos::from_millis(300),
            evict_after: Nanos::from_millis(600),
            solo_after: Nanos::from_secs(10),
            discover_for: Nanos::from_millis(1000),
            vote_ttl: Nanos::from_secs(2),
            beacon_every: 2,
            restored: None,
        }
    }
}

/// Where a datagram goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dest {
    /// One member, by id (the shell knows its address from past datagrams
    /// or discovery).
    Member(MemberId),
    /// Several members.
    Members(Vec<MemberId>),
    /// Every peer the shell knows of, member or not (discovery results and
    /// static peers): used by joiners and by leaders' beacons.
    Everyone,
    /// Every peer the shell knows of except these members (our view): a
    /// follower's occasional heartbeat to whoever it knows outside its room,
    /// so rooms that only followers can reach still find each other.
    Strangers {
        /// Members not to send to.
        except: Vec<MemberId>,
    },
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub dest: Dest,
    /// The encoded datagram.
    pub payload: Vec<u8>,
}

/// Something the shell may need to act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEvent {
    /// A round was committed; its effect starts at `applied.apply_at`.
    Decided(Box<Applied>),
    /// The committed state was replaced by a snapshot (joining, merging or
    /// catching up after a gap).
    StateReplaced {
        /// The room.
        room: RoomId,
        /// Its committed tip.
        commit: EntryId,
    },
    /// An own vote was decided (applied in the given round's decision).
    VoteDecided {
        /// Its sequence number.
        seq: u32,
    },
    /// An own vote was dropped without a decision.
    VoteDropped {
        /// Its sequence number.
        seq: u32,
        /// Why.
        reason: DropReason,
    },
    /// This member now belongs to `room` (founded or joined).
    RoomChanged {
        /// The room.
        room: RoomId,
    },
    /// The leader (time reference) changed.
    LeaderChanged {
        /// The new leader, if one is known.
        leader: Option<MemberId>,
    },
}

/// Why an own vote was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Not decided within `vote_ttl` (no quorum reachable).
    Expired,
    /// This member moved to another room.
    RoomChanged,
}

/// Why a vote was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CastError {
    /// Not a member of any room yet; retry once joined.
    #[error("not in a room yet")]
    NotJoined,
    /// This member's side has no quorum: it keeps playing the last agreed
    /// state and accepts no changes until the partition heals.
    #[error("read-only: no majority of the room is reachable")]
    ReadOnly,
    /// Too many votes waiting; retry once some are decided.
    #[error("too many votes pending ({MAX_QUEUED_VOTES})")]
    QueueFull,
    /// The event names a channel the track does not have, or a bad value.
    #[error("invalid event: {0}")]
    Invalid(&'static str),
}

/// Counters of what arrived and what was done with it. Serializable so
/// status pages can show them as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Datagrams handed to `handle_datagram`.
    pub received: u64,
    /// Dropped: could not be decoded.
    pub malformed: u64,
    /// Dropped: another format version.
    pub wrong_version: u64,
    /// Dropped: larger than a datagram may be.
    pub oversized: u64,
    /// Dropped: from an older term, another room, or otherwise out of date.
    pub stale: u64,
    /// Dropped: claimed to come from this member.
    pub self_sent: u64,
    /// Dropped: the header named another sender than the envelope proved.
    pub impersonations: u64,
    /// Snapshots installed.
    pub snapshots_installed: u64,
    /// Elections this member started (real campaigns, not pre-votes).
    pub campaigns: u64,
    /// Rounds this member sealed as leader.
    pub sealed: u64,
    /// Entries committed.
    pub committed: u64,
    /// Own votes dropped undecided.
    pub votes_dropped: u64,
    /// Events discarded because the caller did not poll them in time.
    pub events_overflowed: u64,
}

/// A snapshot of what a member knows, for status pages and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// This member.
    pub id: MemberId,
    /// Its incarnation.
    pub boot: BootId,
    /// Its role.
    pub role: Role,
    /// Its room.
    pub room: Option<RoomId>,
    /// Current term.
    pub term: Term,
    /// The leader it follows (or itself).
    pub leader: Option<MemberId>,
    /// Current round on its mesh clock.
    pub round: Option<Round>,
    /// Committed tip.
    pub commit: EntryId,
    /// Last entry held (committed or not).
    pub last: EntryId,
    /// Entries held but not yet committed.
    pub uncommitted: usize,
    /// Digest of the committed state.
    pub digest: u64,
    /// The committed view.
    pub view: Vec<MemberInfo>,
    /// Whether it can currently get votes decided.
    pub writable: bool,
    /// Bound on its mesh clock error (zero for the reference).
    pub clock_error: Option<Nanos>,
    /// Own votes queued or in flight.
    pub pending_votes: usize,
    /// What this member reports about itself in its heartbeats.
    pub health: Health,
    /// The other members of the committed view, as last heard.
    pub peers: Vec<PeerStatus>,
    /// Counters.
    pub counters: Counters,
}

/// Another member of the view, as this member last heard it: what a
/// controller shows in its member list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// The member.
    pub id: MemberId,
    /// Its health from its last heartbeat, if one arrived.
    pub health: Option<Health>,
    /// Time since its last heartbeat, if one arrived.
    pub last_heard: Option<Nanos>,
}

/// Clock samples taken one per round before probing slows down.
const SETTLE_SAMPLES: u64 = 30;

/// Exchanges with a new time reference before a follower trades the
/// mapping it kept from the old one for the new estimate.
const INHERITED_CLOCK_SAMPLES: u64 = 4;

/// Once settled, a follower probes the reference every this many rounds
/// (five times a second at the default heartbeat). Snapcast probes about once
/// a second after its initial burst; we probe more often because the
/// estimator's accuracy under heavy jitter grows with the number of samples.
const PROBE_EVERY: u64 = 2;

/// Bound on queued outputs; a caller that never polls loses the oldest.
const MAX_OUTPUTS: usize = 4096;

#[derive(Debug)]
enum Phase {
    /// Looking for a room to join (fresh, or leaving a losing room).
    Seeking {
        since: LocalTime,
        target: Option<(RoomId, MemberId)>,
        last_request: Option<LocalTime>,
        /// Last time we heard of a live room, or of a lower-id member also
        /// seeking (which will found the room): until this is stale, we wait.
        defer_to_lower: Option<LocalTime>,
    },
    /// In a room.
    Member,
}

/// Which part this member plays in its room's leadership.
#[derive(Debug)]
enum Leadership {
    Follower,
    Candidate(Candidacy),
    Leader(LeaderState),
}

#[derive(Debug, Default)]
struct LeaderState {
    /// Highest round each member is known to hold in our term.
    matched: BTreeMap<MemberId, Round>,
    /// The leader we replaced: it was silent for `election_after` already,
    /// so it is removed without waiting for the eviction timeout.
    predecessor: Option<MemberId>,
    /// Members that said goodbye, to remove.
    leaving: VecDeque<MemberId>,
    /// Members asking to join: info and the clock sample for their snapshot.
    joining: BTreeMap<MemberId, (MemberInfo, LocalTime, MeshTime)>,
    /// Last round sealed.
    sealed: Option<Round>,
    /// Last beacon sent directly to a stranger, to rate-limit.
    stranger_beacons: BTreeMap<MemberId, LocalTime>,
}

/// At most one referral (or answering heartbeat) per stranger per this long.
const REFER_EVERY: Nanos = Nanos::from_millis(250);

/// A follower sends its heartbeat to peers outside its view every this
/// many rounds (a leader beacons to everyone every `beacon_every`).
const STRANGER_BEACON_EVERY: u64 = 3;

/// Addresses of members outside the view are forgotten after this long.
const STRANGER_ADDRESS_TTL: Nanos = Nanos::from_secs(30);

/// Parts of a snapshot being assembled.
#[derive(Debug)]
struct Assembly {
    from: MemberId,
    commit: EntryId,
    digest: u64,
    parts: [Option<Snapshot>; MAX_SNAPSHOT_PARTS],
    /// When part 0 (whose stamps close the join's clock exchange) arrived:
    /// the exchange's `t4`. The last part may come much later.
    first_arrival: Option<LocalTime>,
}

/// One member of a room. See the module documentation for the call order.
#[derive(Debug)]
pub struct Member {
    id: MemberId,
    boot: BootId,
    cfg: Config,
    phase: Phase,
    replica: Option<Replica>,
    term: Term,
    voted_for: Option<MemberId>,
    leader: Option<MemberId>,
    /// The last leader we followed, after we stopped following it.
    previous_leader: Option<MemberId>,
    role: Leadership,
    /// Mapping from our clock to mesh time; frozen while we lead.
    clock: Option<MeshClock>,
    /// Whether `clock` is the mapping kept from before a change of time
    /// reference in this room (replaced once the new estimate has a few
    /// exchanges), not one of `estimator`'s.
    clock_inherited: bool,
    estimator: ClockEstimator,
    /// Mesh time never runs backwards for this member.
    last_mesh: MeshTime,
    last_tick: Option<LocalTime>,
    last_leader_contact: LocalTime,
    last_any_contact: LocalTime,
    /// When our commit point last moved (or a snapshot was installed).
    last_commit_advance: Option<LocalTime>,
    /// Since when we have been in a room whose view does not hold us.
    outside_view_since: Option<LocalTime>,
    /// Last time each peer was heard directly, and by others' evidence.
    heard: BTreeMap<MemberId, LocalTime>,
    /// Each view member's health from its last heartbeat, and when it came.
    /// Bounded: only members of the view are kept.
    peer_health: BTreeMap<MemberId, (Health, LocalTime)>,
    /// Audio figures the shell reported, sent in our heartbeats.
    audio_health: (u16, u32),
    /// Round in which we last sent our heartbeat.
    heartbeat_round: Option<Round>,
    last_snapshot_request: Option<LocalTime>,
    last_rejoin_request: Option<LocalTime>,
    assembly: Option<Assembly>,
    own: OwnVotes,
    relay: RelayPool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<MemberEvent>,
    counters: Counters,
    /// The room's tracks, holdings and names (see [`crate::catalogue`]).
    catalogue: Catalogue,
    /// Where members' datagrams come from, and addresses others referred.
    addresses: AddressTable,
    /// Last referral sent to each stranger, to rate-limit (bounded).
    referred: BTreeMap<MemberId, LocalTime>,
}

impl Member {
    /// A fresh member that will look for a room, founding one if none
    /// answers within `discover_for`.
    #[must_use]
    pub fn new(id: MemberId, boot: BootId, cfg: Config, now: LocalTime) -> Member {
        Member {
            id,
            boot,
            cfg,
            phase: Phase::Seeking {
                since: now,
                target: None,
                last_request: None,
                defer_to_lower: None,
            },
            replica: None,
            term: Term(0),
            voted_for: None,
            leader: None,
            previous_leader: None,
            role: Leadership::Follower,
            clock: None,
            clock_inherited: false,
            estimator: ClockEstimator::new(),
            last_mesh: MeshTime(0),
            last_tick: None,
            last_leader_contact: now,
            last_any_contact: now,
            last_commit_advance: None,
            outside_view_since: None,
            heard: BTreeMap::new(),
            peer_health: BTreeMap::new(),
            audio_health: (0, 0),
            heartbeat_round: None,
            last_snapshot_request: None,
            last_rejoin_request: None,
            assembly: None,
            own: OwnVotes::default(),
            relay: RelayPool::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            catalogue: Catalogue::new(id, ""),
            addresses: AddressTable::default(),
            referred: BTreeMap::new(),
        }
    }

    /// Tells the member that an authenticated datagram from `id` came from
    /// `addr` (the shell calls it when the address is new or changed). The
    /// member hands such addresses to newcomers in referrals.
    pub fn learn_address(&mut self, now: LocalTime, id: MemberId, addr: SocketAddr) {
        if id != self.id {
            self.addresses.seen(id, WireAddr::from(addr), now);
        }
    }

    /// Where `id` can be reached, as far as this member knows: seen, or
    /// referred by another member. The shell falls back on it for
    /// destinations its own address book lacks.
    #[must_use]
    pub fn address_of(&self, id: MemberId) -> Option<SocketAddr> {
        self.addresses.get(id).map(SocketAddr::from)
    }

    /// Every address this member knows (seen or referred): the shell adds
    /// them to its own peers when it sends to everyone, so a room a
    /// referral named is reachable by beacons too.
    pub fn known_addresses(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addresses.iter().map(SocketAddr::from)
    }

    /// Sets this member's name and library (the tracks it holds, with a
    /// mask of the stems it holds of each), announced to the room through
    /// the catalogue digest of its heartbeats. Returns how many tracks are
    /// announced (inconsistent descriptions are skipped).
    pub fn set_library(&mut self, name: &str, library: Vec<(TrackInfo, u8)>) -> usize {
        self.catalogue.set_local(name, library)
    }

    /// The room's catalogue as this member knows it.
    #[must_use]
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    // ----- observation -------------------------------------------------

    /// This member's id.
    #[must_use]
    pub fn id(&self) -> MemberId {
        self.id
    }

    /// Mesh time at local instant `now`, once the clock is known.
    #[must_use]
    pub fn mesh_time(&self, now: LocalTime) -> Option<MeshTime> {
        self.clock.map(|c| c.to_mesh(now).max(self.last_mesh))
    }

    /// The current local-to-mesh clock mapping, once known: what the audio
    /// player converts its DAC's emission times with.
    #[must_use]
    pub fn mesh_clock(&self) -> Option<MeshClock> {
        self.clock
    }

    /// The committed transport state (its anchors may lie in the future:
    /// a decision takes effect at its `apply_at`).
    #[must_use]
    pub fn transport(&self) -> Option<&Transport> {
        self.replica.as_ref().map(|r| &r.transport)
    }

    /// The room's timing, once in a room.
    #[must_use]
    pub fn timing(&self) -> Timing {
        self.replica.as_ref().map_or(self.cfg.timing, |r| r.timing)
    }

    /// Whether an own vote touching `channel` is waiting for a decision.
    #[must_use]
    pub fn is_pending(&self, channel: Channel) -> bool {
        self.own.pending_on(channel)
    }

    /// What this member reports about itself in its heartbeats: its clock
    /// error bound (from its own estimate) and the audio figures the shell
    /// last gave to [`Member::set_audio_health`].
    #[must_use]
    pub fn health(&self) -> Health {
        let clock_error_us = if self.is_leader() {
            0
        } else {
            self.estimator
                .error_bound()
                .map_or(Health::CLOCK_UNKNOWN, |e| {
                    u32::try_from(e.0 / 1_000).unwrap_or(u32::MAX - 1)
                })
        };
        Health {
            clock_error_us,
            buffer_ms: self.audio_health.0,
            xruns: self.audio_health.1,
        }
    }

    /// Whether this member currently leads its room.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Leadership::Leader(_))
    }

    /// What this member knows, at local instant `now`.
    #[must_use]
    pub fn status(&self, now: LocalTime) -> Status {
        let r = self.replica.as_ref();
        Status {
            id: self.id,
            boot: self.boot,
            role: self.cfg.role,
            room: self.room(),
            term: self.term,
            leader: self.leader,
            round: self.mesh_time(now).map(|t| self.timing().round_at(t)),
            commit: r.map(|r| r.commit).unwrap_or_default(),
            last: r.map(Replica::last).unwrap_or_default(),
            uncommitted: r.map_or(0, |r| r.uncommitted().len()),
            digest: r.map_or(0, |r| r.digest),
            view: r.map(|r| r.view.members().to_vec()).unwrap_or_default(),
            writable: self.writable(now),
            clock_error: if self.is_leader() {
                Some(Nanos(0))
            } else {
                self.estimator.error_bound()
            },
            pending_votes: self.own.len(),
            health: self.health(),
            peers: r
                .map(|r| {
                    r.view
                        .members()
                        .iter()
                        .filter(|m| m.id != self.id)
                        .map(|m| {
                            let seen = self.peer_health.get(&m.id);
                            PeerStatus {
                                id: m.id,
                                health: seen.map(|s| s.0),
                                last_heard: seen.map(|s| now.since(s.1)),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
            counters: self.counters,
        }
    }

    fn room(&self) -> Option<RoomId> {
        match self.phase {
            Phase::Member => self.replica.as_ref().map(|r| r.room),
            Phase::Seeking { .. } => None,
        }
    }

    /// Whether votes cast now can be decided: in a room whose commit point
    /// advanced recently. A healthy room commits every round, so a side
    /// without a quorum turns read-only within `election_after` even while
    /// its own leader is still talking to it.
    fn writable(&self, now: LocalTime) -> bool {
        matches!(self.phase, Phase::Member)
            && self.leader.is_some()
            && self
                .last_commit_advance
                .is_some_and(|t| now.since(t) < self.cfg.election_after)
            && (!self.is_leader() || self.quorum_heard(now))
    }

    // ----- outputs -----------------------------------------------------

    // ----- inputs from the shell ----------------------------------------

    /// Audio figures for the heartbeats: ms of audio queued ahead of the
    /// DAC and output underruns since start. A controller leaves them zero.
    pub fn set_audio_health(&mut self, buffer_ms: u16, xruns: u32) {
        self.audio_health = (buffer_ms, xruns);
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event to act on.
    pub fn poll_event(&mut self) -> Option<MemberEvent> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must be called next: twice per round, at the
    /// round boundary and half-way through it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<LocalTime> {
        let Some(clock) = self.clock else {
            // Without a mesh clock, tick on our own clock.
            let hb = self.cfg.timing.heartbeat.0 / 2;
            return Some(self.last_tick.unwrap_or_default().plus(Nanos(hb)));
        };
        let half = (self.timing().heartbeat.0 / 2).max(1);
        let mesh = self.last_mesh;
        let next = MeshTime((mesh.0 / half + 1) * half);
        Some(clock.to_local(next))
    }

    fn push_transmit(&mut self, dest: Dest, msg: &Message) {
        if let Dest::Members(ref m) = dest
            && m.is_empty()
        {
            return;
        }
        if self.transmits.len() >= MAX_OUTPUTS {
            self.transmits.pop_front();
        }
        self.transmits.push_back(Transmit {
            dest,
            payload: msg.encode(),
        });
    }

    fn push_event(&mut self, event: MemberEvent) {
        if self.events.len() >= MAX_OUTPUTS {
            self.events.pop_front();
            self.counters.events_overflowed += 1;
        }
        self.events.push_back(event);
    }

    /// What our join requests claim: the revision of the state we saved
    /// before we stopped, while we have no room state of our own.
    fn claim(&self) -> u64 {
        match (&self.replica, &self.cfg.restored) {
            (None, Some(saved)) => saved.revision,
            _ => 0,
        }
    }

    fn header(&self) -> Header {
        Header {
            from: self.id,
            boot: self.boot,
            role: self.cfg.role,
            room: self.room(),
            term: self.term,
        }
    }

    /// Every other member of our view.
    /// Every other member of the committed view and of the view the log
    /// leads to: while a change is in flight both views decide, so both
    /// must hear us (a member being removed still has to acknowledge the
    /// entry that removes it, if the old view's quorum needs it).
    fn others(&self) -> Vec<MemberId> {
        self.replica.as_ref().map_or_else(Vec::new, |r| {
            let mut ids: Vec<MemberId> = r
                .view
                .members()
                .iter()
                .chain(r.log_view().members())
                .map(|m| m.id)
                .filter(|&id| id != self.id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        })
    }

    // ----- inputs: votes and leaving -----------------------------------

    /// Casts an event. It is queued (one in flight at a time) and decided
    /// in a later round; watch for [`MemberEvent::VoteDecided`].
    pub fn cast(&mut self, now: LocalTime, event: Event) -> Result<u32, CastError> {
        let Some(r) = self
            .replica
            .as_ref()
            .filter(|_| matches!(self.phase, Phase::Member))
        else {
            return Err(CastError::NotJoined);
        };
        if let Channel::Stem(i) = event.channel()
            && usize::from(i) >= r.transport.channel_count()
        {
            return Err(CastError::Invalid("no such channel"));
        }
        if let Event::Volume { gain, .. } = event
            && gain > Gain::MAX
        {
            return Err(CastError::Invalid("volume above 100"));
        }
        if let (Event::Seek { to, .. }, Some(end)) = (event, r.transport.length())
            && to > end
        {
            return Err(CastError::Invalid("seek past the end of the track"));
        }
        if let Event::Load { channels, .. } = event
            && !(1..=MAX_CHANNELS).contains(&usize::from(channels))
        {
            return Err(CastError::Invalid("a track has 1 to 8 channels"));
        }
        if !self.writable(now) {
            return Err(CastError::ReadOnly);
        }
        let vote = self.own.push(self.id, event).ok_or(CastError::QueueFull)?;
        self.send_head_vote(now);
        Ok(vote.seq)
    }

    /// The transport of a room founded here at mesh instant `at`.
    fn founding_transport(&self, at: MeshTime) -> Transport {
        let channels = usize::from(self.cfg.channels);
        match self.cfg.track {
            Some(track) => Transport::loaded(track, channels, at, Gain::DEFAULT),
            None => Transport::new(channels, at, Gain::DEFAULT),
        }
    }

    /// Sends the own in-flight vote at once if it just became the head.
    fn send_head_vote(&mut self, now: LocalTime) {
        if let Some((vote, true)) = self.own.head(now) {
            let msg = Message::VoteCast(VoteCast {
                hdr: self.header(),
                vote,
            });
            let dest = Dest::Members(self.others());
            self.push_transmit(dest, &msg);
        }
    }

    /// Says goodbye to the room, so peers drop this member at once instead
    /// of waiting for the failure detector. Call before exiting.
    pub fn leave(&mut self, _now: LocalTime) {
        if !matches!(self.phase, Phase::Member) {
            return;
        }
        let msg = Message::Leave(Leave { hdr: self.header() });
        let dest = Dest::Members(self.others());
        self.push_transmit(dest, &msg);
    }

    // ----- inputs: datagrams -------------------------------------------

    /// Handles one received datagram. Anything malformed, stale or
    /// unexpected is counted and dropped; nothing here panics.
    pub fn handle_datagram(&mut self, now: LocalTime, bytes: &[u8]) {
        self.handle_inner(now, now, None, bytes);
    }

    /// Handles a datagram whose envelope proved it comes from `sender` with
    /// incarnation `boot` (see [`crate::seal`]). A message whose header
    /// claims another sender or incarnation is dropped and counted: the
    /// group secret authenticates room members, and this binds the message
    /// to the one that sealed it.
    pub fn handle_authenticated(
        &mut self,
        now: LocalTime,
        sender: MemberId,
        boot: BootId,
        bytes: &[u8],
    ) {
        self.handle_inner(now, now, Some((sender, boot)), bytes);
    }

    /// [`Member::handle_authenticated`] for a datagram that arrived at local
    /// instant `received` (a kernel receive timestamp, at or before `now`).
    ///
    /// Clock probes use `received` as their arrival time: the delay between
    /// the datagram's arrival and this call (the process waking up) is on
    /// one path of the probe only, so taking `now` instead would bias the
    /// offset estimate by half of it on every follower.
    pub fn handle_authenticated_received(
        &mut self,
        now: LocalTime,
        received: LocalTime,
        sender: MemberId,
        boot: BootId,
        bytes: &[u8],
    ) {
        self.handle_inner(now, received.min(now), Some((sender, boot)), bytes);
    }

    fn handle_inner(
        &mut self,
        now: LocalTime,
        received: LocalTime,
        sealed_by: Option<(MemberId, BootId)>,
        bytes: &[u8],
    ) {
        self.counters.received += 1;
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                match e {
                    DecodeError::Version(_) => self.counters.wrong_version += 1,
                    DecodeError::Oversized(_) => self.counters.oversized += 1,
                    DecodeError::Empty | DecodeError::Malformed => self.counters.malformed += 1,
                }
                return;
            }
        };
        let hdr = *msg.header();
        if hdr.from == self.id {
            self.counters.self_sent += 1;
            return;
        }
        if sealed_by.is_some_and(|s| s != (hdr.from, hdr.boot)) {
            self.counters.impersonations += 1;
            return;
        }
        self.last_any_contact = now;
        // A new incarnation of a view member is no evidence that the old
        // one is alive (it restarted and lost its state): only a matching
        // boot counts toward the failure detector and the leader's quorum.
        let stale_incarnation = self.replica.as_ref().is_some_and(|r| {
            [r.view.get(hdr.from), r.log_view().get(hdr.from)]
                .into_iter()
                .flatten()
                .any(|m| m.boot != hdr.boot)
        });
        if !stale_incarnation {
            self.note_heard(hdr.from, now);
        }
        match msg {
            Message::Heartbeat(h) => self.on_heartbeat(now, received, h),
            Message::Append(a) => self.on_append(now, a),
            Message::VoteCast(v) => self.on_vote(now, v),
            Message::ClockReply(c) => self.on_clock_reply(received, c),
            Message::JoinRequest(j) => self.on_join_request(now, j),
            Message::Snapshot(s) => self.on_snapshot(now, received, s),
            Message::SnapshotRequest(s) => self.on_snapshot_request(now, s),
            Message::Campaign(c) => self.on_campaign(now, c),
            Message::Ballot(b) => self.on_ballot(now, b),
            Message::Leave(l) => self.on_leave(now, l),
            Message::CatalogueRequest(q) => self.on_catalogue_request(q),
            Message::CatalogueReply(a) => self.on_catalogue_reply(a),
            Message::Referral(r) => self.on_referral(now, r),
        }
    }

    /// Whether `id` is in our view or the one our log leads to.
    fn knows(&self, id: MemberId) -> bool {
        self.replica
            .as_ref()
            .is_some_and(|r| r.view.get(id).is_some() || r.log_view().get(id).is_some())
    }

    fn on_catalogue_request(&mut self, q: CatalogueRequest) {
        // Only members of the room are answered: a stranger with the
        // secret but in another room learns our tracks once it joins.
        if !self.knows(q.hdr.from) {
            self.counters.stale += 1;
            return;
        }
        if let Some(answer) = self.catalogue.answer(q.query) {
            let msg = Message::CatalogueReply(CatalogueReply {
                hdr: self.header(),
                answer,
            });
            self.push_transmit(Dest::Member(q.hdr.from), &msg);
        }
    }

    fn on_catalogue_reply(&mut self, a: CatalogueReply) {
        if !self.knows(a.hdr.from) {
            self.counters.stale += 1;
            return;
        }
        match a.answer {
            CatalogueAnswer::Index(page) => self.catalogue.on_index(a.hdr.from, page),
            CatalogueAnswer::Track(info) => self.catalogue.on_track(info),
        }
    }

    /// Forgets the catalogue of members that left and asks the questions
    /// that are due.
    fn tick_catalogue(&mut self, now: LocalTime) {
        let Some(r) = self.replica.as_ref() else {
            return;
        };
        let (view, log_view) = (&r.view, r.log_view());
        self.catalogue
            .retain(|id| view.get(id).is_some() || log_view.get(id).is_some());
        self.addresses.retain_recent(
            |id| view.get(id).is_some() || log_view.get(id).is_some(),
            LocalTime(now.0.saturating_sub(STRANGER_ADDRESS_TTL.0)),
        );
        for (to, query) in self.catalogue.poll_queries(now) {
            let msg = Message::CatalogueRequest(CatalogueRequest {
                hdr: self.header(),
                query,
            });
            self.push_transmit(Dest::Member(to), &msg);
        }
    }

    fn note_heard(&mut self, from: MemberId, now: LocalTime) {
        if self.heard.len() >= 2 * MAX_MEMBERS && !self.heard.contains_key(&from) {
            // Keep the map bounded: forget the peer silent the longest.
            if let Some((&oldest, _)) = self.heard.iter().min_by_key(|&(_, &t)| t) {
                self.heard.remove(&oldest);
            }
        }
        let t = self.heard.entry(from).or_insert(now);
        *t = (*t).max(now);
    }

    /// Whether `hdr` comes from our room (and we are in one).
    fn same_room(&self, hdr: &Header) -> bool {
        matches!(self.phase, Phase::Member) && hdr.room.is_some() && hdr.room == self.room()
    }

    /// A message of our room with a newer term: adopt it and follow.
    fn observe_term(&mut self, now: LocalTime, term: Term) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            if !matches!(self.role, Leadership::Follower) || self.leader.is_some() {
                self.become_follower(now, None);
            }
        }
    }

    fn become_follower(&mut self, now: LocalTime, leader: Option<MemberId>) {
        let was_leader = self.is_leader();
        self.role = Leadership::Follower;
        if self.leader != leader {
            if self.leader.is_some_and(|l| l != self.id) {
                self.previous_leader = self.leader;
            }
            self.leader = leader;
            if leader.is_some() && !was_leader {
                // A new time reference: restart the estimate, keep using the
                // old mapping until the new one has samples. The new
                // reference serves its estimate of the old mesh clock, so
                // the drift carries over.
                match self.clock {
                    Some(c) => self.estimator.reset_keeping_drift(c.rate_ppb()),
                    None => self.estimator.reset(),
                }
                self.clock_inherited = self.clock.is_some();
            }
            self.push_event(MemberEvent::LeaderChanged { leader });
        }
        if leader.is_some() {
            self.last_leader_contact = now;
        }
    }

    fn on_heartbeat(&mut self, now: LocalTime, received: LocalTime, h: Heartbeat) {
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

    /// A heartbeat from another room (or from a member with no room).
    fn on_foreign(&mut self, now: LocalTime, h: &Heartbeat) {
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
    fn ask_stranger(&mut self, now: LocalTime, to: MemberId, room: Option<RoomId>) {
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
    fn note_answered(&mut self, now: LocalTime, to: MemberId) -> bool {
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
    fn consider_room(&mut self, now: LocalTime, room: RoomId, size: u8, leader: MemberId) {
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
    fn refer(&mut self, now: LocalTime, to: MemberId) {
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
    fn on_referral(&mut self, now: LocalTime, r: Referral) {
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

    fn request_join(&mut self, now: LocalTime, to: MemberId, room: Option<RoomId>) {
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

    fn beacon_to_stranger(&mut self, now: LocalTime, to: MemberId) {
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

    /// Adds others' votes to the relay pool; returns those new to it.
    fn take_votes(&mut self, now: LocalTime, votes: &[Vote]) -> Vec<Vote> {
        let mut fresh = Vec::new();
        let Some(r) = self.replica.as_ref() else {
            return fresh;
        };
        let view = r.log_view();
        for v in votes {
            if v.member == self.id {
                continue;
            }
            if view.get(v.member).is_some() {
                // Sequence numbers from the committed view: the log view's
                // copy is only refreshed when membership changes.
                let committed = r.view.get(v.member).map_or(0, |m| m.last_seq);
                let applied = if self.is_leader() {
                    r.sealed_seq(v.member)
                } else {
                    committed
                };
                if self.relay.offer(*v, applied, MAX_MEMBERS, now) {
                    fresh.push(*v);
                }
            }
        }
        fresh
    }

    fn on_vote(&mut self, now: LocalTime, v: VoteCast) {
        if !self.same_room(&v.hdr) {
            self.counters.stale += 1;
            return;
        }
        let fresh = self.take_votes(now, &[v.vote]);
        // Votes are rare (a person pressed something), so forward a vote we
        // see first to the leader at once: if the voter's own datagram to the
        // leader was lost, one of these copies still makes the next seal.
        if let (Some(vote), Some(leader)) = (fresh.first(), self.leader)
            && !self.is_leader()
            && leader != v.hdr.from
            && vote.member == v.hdr.from
        {
            let msg = Message::VoteCast(VoteCast {
                hdr: self.header(),
                vote: *vote,
            });
            self.push_transmit(Dest::Member(leader), &msg);
        }
    }

    fn on_append(&mut self, now: LocalTime, a: Append) {
        if !self.same_room(&a.hdr) {
            self.counters.stale += 1;
            return;
        }
        if a.hdr.term < self.term {
            // A deposed leader: our heartbeat shows it the newer term.
            self.counters.stale += 1;
            let hb = self.heartbeat_msg(now);
            self.push_transmit(Dest::Member(a.hdr.from), &hb);
            return;
        }
        if a.hdr.term == self.term && self.is_leader() {
            self.counters.stale += 1; // two leaders in one term cannot happen
            return;
        }
        if a.hdr.term > self.term {
            self.term = a.hdr.term;
            self.voted_for = None;
        }
        if self.leader != Some(a.hdr.from) || !matches!(self.role, Leadership::Follower) {
            self.become_follower(now, Some(a.hdr.from));
        }
        self.last_leader_contact = now;
        let Some(r) = self.replica.as_mut() else {
            return;
        };
        let before = r.last();
        let outcome = r.accept(a.prev, &a.entries);
        match outcome {
            Accept::Gap => self.request_snapshot(now, a.hdr.from),
            Accept::Invalid => self.counters.malformed += 1,
            Accept::Ok => {}
        }
        self.commit_to(now, a.commit);
        let r = self.replica.as_ref().expect("checked above");
        let diverged = r.commit == a.commit && r.digest != a.digest;
        let changed = r.last() != before;
        if diverged {
            self.request_snapshot(now, a.hdr.from);
        }
        // Acknowledge at once so the leader can commit within the round.
        let round = self.current_round(now);
        if changed || self.heartbeat_round != round {
            self.send_heartbeat(now);
        }
    }

    fn request_snapshot(&mut self, now: LocalTime, to: MemberId) {
        if self
            .last_snapshot_request
            .is_some_and(|t| now.since(t) < self.cfg.timing.heartbeat)
        {
            return;
        }
        self.last_snapshot_request = Some(now);
        let msg = Message::SnapshotRequest(SnapshotRequest {
            hdr: self.header(),
            sent_at: now,
        });
        self.push_transmit(Dest::Member(to), &msg);
    }

    fn on_clock_reply(&mut self, received: LocalTime, c: ClockReply) {
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
    fn add_clock_sample(&mut self, s: ClockSample) {
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

    fn on_join_request(&mut self, now: LocalTime, j: JoinRequest) {
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

    fn on_snapshot_request(&mut self, now: LocalTime, s: SnapshotRequest) {
        if !self.same_room(&s.hdr) || !self.is_leader() {
            return;
        }
        let t2 = self.mesh_time(now).unwrap_or_default();
        self.send_snapshot(now, s.hdr.from, s.sent_at, t2);
    }

    fn send_snapshot(&mut self, now: LocalTime, to: MemberId, t1: LocalTime, t2: MeshTime) {
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

    fn on_snapshot(&mut self, now: LocalTime, received: LocalTime, s: Snapshot) {
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

    fn install(&mut self, now: LocalTime, room: RoomId, asm: Assembly, parts: usize) {
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

    fn on_leave(&mut self, now: LocalTime, l: Leave) {
        if !self.same_room(&l.hdr) {
            return;
        }
        self.relay.forget(l.hdr.from);
        self.heard.remove(&l.hdr.from);
        if self.leader == Some(l.hdr.from) {
            // The leader said goodbye: campaign without waiting it out.
            self.previous_leader = self.leader.take();
            self.last_leader_contact = LocalTime(
                now.0
                    .saturating_sub(self.cfg.election_after.0)
                    .saturating_sub(1),
            );
            self.push_event(MemberEvent::LeaderChanged { leader: None });
        }
        if let Leadership::Leader(ls) = &mut self.role
            && !ls.leaving.contains(&l.hdr.from)
            && ls.leaving.len() < MAX_MEMBERS
        {
            ls.leaving.push_back(l.hdr.from);
        }
    }

    // ----- inputs: time ------------------------------------------------

    /// Advances timers to `now`: seals and sends the round as leader, sends
    /// the heartbeat as follower, campaigns when the leader is silent, founds
    /// a room when alone, drops votes that waited too long.
    pub fn handle_timeout(&mut self, now: LocalTime) {
        // A member whose own loop ran late must not accuse others of
        // silence it caused itself (Lifeguard): give everyone fresh credit.
        let late = self
            .last_tick
            .is_some_and(|t| now.since(t).0 > 2 * self.timing().heartbeat.0);
        if late {
            for t in self.heard.values_mut() {
                *t = (*t).max(now);
            }
            self.last_leader_contact = self.last_leader_contact.max(now);
            self.last_any_contact = self.last_any_contact.max(now);
        }
        self.last_tick = Some(now);
        if let Some(t) = self.mesh_time(now) {
            self.last_mesh = t;
        }
        match self.phase {
            Phase::Seeking { .. } => self.tick_seeking(now),
            Phase::Member => {
                self.tick_member(now);
                self.tick_catalogue(now);
            }
        }
    }

    fn tick_seeking(&mut self, now: LocalTime) {
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
    fn found_room(&mut self, now: LocalTime) {
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

    fn current_round(&self, now: LocalTime) -> Option<Round> {
        self.mesh_time(now).map(|t| self.timing().round_at(t))
    }

    fn tick_member(&mut self, now: LocalTime) {
        self.expire_own_votes(now);
        self.check_membership(now);
        if !matches!(self.phase, Phase::Member) {
            return;
        }
        if self.is_leader() {
            self.tick_leader(now);
            return;
        }
        let Some(round) = self.current_round(now) else {
            return;
        };
        // Heartbeat once per round: normally as the reply to the leader's
        // append; from the half-round tick when the leader stays silent.
        if self.heartbeat_round != Some(round) {
            let mesh = self.mesh_time(now).unwrap_or_default();
            let half = self
                .timing()
                .round_start(round)
                .plus(Nanos(self.timing().heartbeat.0 / 2));
            if mesh >= half {
                self.send_heartbeat(now);
            }
        }
        self.tick_election(now);
        if now.since(self.last_any_contact) >= self.cfg.solo_after && self.cfg.role == Role::Speaker
        {
            // Alone for long: a room of our own keeps this speaker usable.
            self.found_room(now);
        }
    }

    fn expire_own_votes(&mut self, now: LocalTime) {
        self.relay.expire(now, self.cfg.vote_ttl);
        while let Some(v) = self.own.expire(now, self.cfg.vote_ttl) {
            self.counters.votes_dropped += 1;
            self.push_event(MemberEvent::VoteDropped {
                seq: v.seq,
                reason: DropReason::Expired,
            });
        }
        self.send_head_vote(now);
    }

    fn heartbeat_msg(&self, now: LocalTime) -> Message {
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

    fn send_heartbeat(&mut self, now: LocalTime) {
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

    // ----- leader ------------------------------------------------------

    fn become_leader(&mut self, now: LocalTime) {
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

    fn quorum_heard(&self, now: LocalTime) -> bool {
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

    fn tick_leader(&mut self, now: LocalTime) {
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

    fn seal(&mut self, now: LocalTime, round: Round) {
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
    fn next_view_changes(&mut self, now: LocalTime) -> heapless::Vec<ViewChange, MAX_VIEW_CHANGES> {
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

    fn send_append(&mut self, now: LocalTime) {
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
    fn catch_up(&mut self, to: MemberId, last: EntryId, commit: EntryId) {
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
    fn try_commit(&mut self, now: LocalTime, announce: bool) {
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
    fn commit_to(&mut self, now: LocalTime, target: EntryId) {
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
    fn check_membership(&mut self, now: LocalTime) {
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

    fn settle_own_votes(&mut self, my_seq: u32) {
        for seq in self.own.applied(my_seq) {
            self.push_event(MemberEvent::VoteDecided { seq });
        }
    }
}
