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
//!
//! The state machine is split by sub-state: `joining` (seeking, referrals,
//! admission and snapshots, founding, merging), `heartbeat` (the follower's
//! round and the clock exchange), `leader` (sealing, carrying the log,
//! commit, eviction), `election` (pre-vote and vote), with the replicated
//! log in `replica` and own and relayed votes in `votes`. This file holds
//! the type, its inputs and outputs, and the dispatch between them.

mod election;
mod heartbeat;
mod joining;
mod leader;
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
    /// incarnation `boot` (see [`crate::envelope`]). A message whose header
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

    fn settle_own_votes(&mut self, my_seq: u32) {
        for seq in self.own.applied(my_seq) {
            self.push_event(MemberEvent::VoteDecided { seq });
        }
    }
}
