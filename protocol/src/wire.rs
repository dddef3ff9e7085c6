//! The datagram format: what crosses the network between members.
//!
//! A datagram is one version byte followed by a postcard-encoded [`Message`],
//! whose enum tag is therefore the second byte (the message kind). Every
//! collection is a `heapless::Vec` with a constant bound, so the largest
//! possible encoding is known at compile time ([`MAX_MESSAGE_SIZE`], checked
//! against [`MAX_DATAGRAM`] below) and decoding never allocates. Times and
//! positions are integers; no float ever crosses the wire.
//!
//! Invariant a reader must not break: decoding any byte string returns a
//! [`Message`] or a [`DecodeError`], never panics, and only runs after the
//! length check. Changing a field or the order of variants changes the
//! format: bump [`VERSION`] and update the pinned vectors in the tests.
//! See `docs/protocol.md`, section "Messages".

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

use crate::address::PeerAddress;
use crate::catalogue::{CatalogueAnswer, CatalogueQuery};
use crate::event::Vote;
use crate::ids::{BootId, MemberId, RoomId, Round, Term};
use crate::time::{LocalTime, MeshTime, Nanos};
use crate::transport::Transport;

/// Version of the datagram format; the first byte of every datagram.
pub const VERSION: u8 = 4;

/// Largest datagram a member sends or accepts: fits one UDP datagram on any
/// path without IP fragmentation (the QUIC minimum).
pub const MAX_DATAGRAM: usize = 1200;

/// Most members (speakers and controllers) a room can hold.
pub const MAX_MEMBERS: usize = 64;

/// Most votes a heartbeat relays.
pub const MAX_RELAYED_VOTES: usize = 16;

/// Most votes one sealed round carries; more wait for the next round.
/// (Four, so that an append of [`MAX_CARRIED_ENTRIES`] entries full of
/// track loads still fits one datagram.)
pub const MAX_ENTRY_VOTES: usize = 4;

/// Most uncommitted entries a leader keeps and carries in its heartbeat. A
/// leader that cannot commit stops sealing at this depth.
pub const MAX_CARRIED_ENTRIES: usize = 3;

/// Most membership changes one entry carries. Changes are batched (joint
/// consensus makes any change safe), so a healed partition rejoins quickly.
pub const MAX_VIEW_CHANGES: usize = 5;

/// Members per snapshot part; a full view takes `MAX_MEMBERS / this` parts.
pub const SNAPSHOT_MEMBERS_PER_PART: usize = 32;

/// Number of parts a snapshot of a full room needs.
pub const MAX_SNAPSHOT_PARTS: usize = MAX_MEMBERS.div_ceil(SNAPSHOT_MEMBERS_PER_PART);

/// What a member is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum Role {
    /// A speaker: counts toward the majority, may lead and keep time.
    Speaker,
    /// A controller (laptop): votes and observes, never counts toward a
    /// majority, so a closing lid cannot change who decides.
    Controller,
}

/// A member as recorded in the room's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct MemberInfo {
    /// Who.
    pub id: MemberId,
    /// Which incarnation was admitted.
    pub boot: BootId,
    /// Speaker or controller.
    pub role: Role,
    /// The stem this speaker plays, if it announced one.
    pub stem: Option<u8>,
    /// Highest vote sequence number of this member already applied.
    pub last_seq: u32,
}

/// Identity of a log entry: the round it seals and the term of the leader
/// that sealed it. Two logs holding the same `EntryId` are identical up to it.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    MaxSize,
)]
pub struct EntryId {
    /// Sealed round.
    pub round: Round,
    /// Term of the sealing leader.
    pub term: Term,
}

/// A change to the room's membership. Entries carrying changes are committed
/// one at a time, each under joint consensus (see `membership`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum ViewChange {
    /// Admit a member (or a new incarnation of a member).
    Join(MemberInfo),
    /// Remove a member that said goodbye.
    Leave(MemberId),
    /// Remove a member that stopped answering.
    Evict(MemberId),
}

/// One sealed round: the votes the leader gathered for it and any membership
/// changes. Applied by every member in round order once committed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Entry {
    /// Which round, sealed in which term.
    pub id: EntryId,
    /// The entry this one follows in the sealing leader's log.
    pub prev: EntryId,
    /// The votes decided in this round (at most one per member).
    pub votes: heapless::Vec<Vote, MAX_ENTRY_VOTES>,
    /// Membership changes decided in this round, applied in order.
    pub changes: heapless::Vec<ViewChange, MAX_VIEW_CHANGES>,
}

/// Fields every message starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Header {
    /// Sender.
    pub from: MemberId,
    /// Sender's incarnation.
    pub boot: BootId,
    /// Sender's role.
    pub role: Role,
    /// Sender's room, if it has one yet.
    pub room: Option<RoomId>,
    /// Sender's current term in that room.
    pub term: Term,
}

/// A member's own account of how well it plays, carried in every heartbeat
/// so that controllers can show clock-sync health, buffer level and xruns
/// per member. Informational only: no protocol rule reads it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Health {
    /// Bound on the sender's mesh clock error, in µs (0 for the time
    /// reference; [`Health::CLOCK_UNKNOWN`] before any estimate). Saturates.
    pub clock_error_us: u32,
    /// Audio queued ahead of the DAC, in ms (0 when not playing or for a
    /// controller).
    pub buffer_ms: u16,
    /// Output underruns since the sender started.
    pub xruns: u32,
}

impl Health {
    /// `clock_error_us` of a member that has no clock estimate yet.
    pub const CLOCK_UNKNOWN: u32 = u32::MAX;
}

/// Sent by every follower once per round to every member of its view (and by
/// a leader to everyone as a beacon, so separated rooms find each other).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Heartbeat {
    /// Common fields.
    pub hdr: Header,
    /// Sender's current round.
    pub round: Round,
    /// Sender's local clock at sending: the clock probe's `t1`, echoed by the
    /// leader in a [`ClockReply`].
    pub sent_at: LocalTime,
    /// The leader the sender follows (or is).
    pub leader: Option<MemberId>,
    /// Sender's last log entry: the acknowledgement a leader counts.
    pub last: EntryId,
    /// Sender's committed tip.
    pub commit: EntryId,
    /// Digest of the sender's state at `commit`.
    pub digest: u64,
    /// Speakers in the sender's view (for the room merge rule).
    pub room_size: u8,
    /// Round of the last view change the sender committed; `heard` indexes
    /// into that view.
    pub view_epoch: Round,
    /// Bit `i` set: the sender heard view member `i` in the last two rounds.
    /// Evidence for the failure detector that a member is alive.
    pub heard: u64,
    /// How well the sender plays, for controllers to show.
    pub health: Health,
    /// Digest of the sender's catalogue index (name and holdings): a
    /// member that has not assembled this digest asks for the index.
    pub catalogue: u64,
    /// The sender's own pending vote and others' votes not yet seen applied.
    pub votes: heapless::Vec<Vote, MAX_RELAYED_VOTES>,
}

/// The leader's heartbeat: seals the round that just ended, carries every
/// uncommitted entry and the commit point.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Append {
    /// Common fields.
    pub hdr: Header,
    /// The entry preceding `entries[0]` (or the leader's last entry when
    /// `entries` is empty).
    pub prev: EntryId,
    /// Uncommitted entries, oldest first.
    pub entries: heapless::Vec<Entry, MAX_CARRIED_ENTRIES>,
    /// The leader's committed tip.
    pub commit: EntryId,
    /// Digest of the leader's state at `commit`.
    pub digest: u64,
}

/// A vote sent the moment it becomes the member's current vote, so it need
/// not wait for the next heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct VoteCast {
    /// Common fields.
    pub hdr: Header,
    /// The vote.
    pub vote: Vote,
}

/// The time reference's answer to a clock probe (a heartbeat's `sent_at`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct ClockReply {
    /// Common fields.
    pub hdr: Header,
    /// Echo of the probe's `sent_at`.
    pub t1: LocalTime,
    /// Mesh time the probe arrived.
    pub t2: MeshTime,
    /// Mesh time this reply left.
    pub t3: MeshTime,
}

/// A member without a room (or leaving a worse one) asks to be admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct JoinRequest {
    /// Common fields (`room` is the room the sender wants to join, if known).
    pub hdr: Header,
    /// Sender's local clock at sending, echoed in the snapshot's clock sample.
    pub sent_at: LocalTime,
    /// The stem the sender plays, if a speaker.
    pub stem: Option<u8>,
    /// Revision of the room state the sender saved before it stopped (0:
    /// none). Among members starting together, the one with the newest
    /// saved state founds the room, so a room that lost power comes back as
    /// it was (see `membership::founder_precedes`).
    pub claim: u64,
}

/// Most addresses one [`Referral`] carries: a full view takes two.
pub const REFERRAL_PEERS: usize = 32;

/// A member's answer to someone outside its room that reached it (a join
/// request, a foreign room's heartbeat): who leads the room and where the
/// room's members are, so the newcomer can ask the leader directly. A
/// leader also sends it to a member it admits, so the newcomer can reach
/// every member, not only the one it knew.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Referral {
    /// Common fields (the sender's room).
    pub hdr: Header,
    /// The leader the sender follows (or is).
    pub leader: Option<MemberId>,
    /// Speakers in the sender's view (for the room merge rule).
    pub room_size: u8,
    /// Members of the sender's view and their addresses as the sender sees
    /// them (a part of the view when it holds more than [`REFERRAL_PEERS`]).
    pub peers: heapless::Vec<PeerAddress, REFERRAL_PEERS>,
}

/// Committed state transfer, in parts when the view is large.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Snapshot {
    /// Common fields (the sender is the leader).
    pub hdr: Header,
    /// Committed tip the snapshot describes.
    pub commit: EntryId,
    /// Digest of the state at `commit`; the receiver recomputes and checks it.
    pub digest: u64,
    /// Round of the last committed view change.
    pub view_epoch: Round,
    /// The room's heartbeat period: a joiner adopts the room's timing.
    pub heartbeat: Nanos,
    /// The room's apply delay.
    pub apply_delay: Nanos,
    /// Index of this part.
    pub part: u8,
    /// Number of parts.
    pub parts: u8,
    /// This part's slice of the view, in view order.
    pub members: heapless::Vec<MemberInfo, SNAPSHOT_MEMBERS_PER_PART>,
    /// The transport state (in every part, so any part can be checked).
    pub transport: Transport,
    /// Clock sample for the receiver: echo of its last probe time.
    pub t1: LocalTime,
    /// Mesh time that probe arrived.
    pub t2: MeshTime,
    /// Mesh time this part left.
    pub t3: MeshTime,
}

/// A follower that cannot follow the log (it fell behind the carried window,
/// or its digest disagrees) asks the leader for a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct SnapshotRequest {
    /// Common fields.
    pub hdr: Header,
    /// Sender's local clock, for the clock sample in the reply.
    pub sent_at: LocalTime,
}

/// A candidate asks for leadership of `hdr.term`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Campaign {
    /// Common fields; `hdr.term` is the term asked for.
    pub hdr: Header,
    /// A pre-vote: asks whether a real campaign could win, without anyone
    /// changing term (so a member that was cut off cannot disrupt the room).
    pub pre: bool,
    /// The candidate's last entry; voters refuse a candidate behind them.
    pub last: EntryId,
}

/// Answer to a [`Campaign`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Ballot {
    /// Common fields.
    pub hdr: Header,
    /// Answer to a pre-vote.
    pub pre: bool,
    /// The term the ballot is for.
    pub term: Term,
    /// Whether the vote is granted.
    pub granted: bool,
}

/// A member says goodbye (SIGTERM), so peers drop it at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct Leave {
    /// Common fields.
    pub hdr: Header,
}

/// A question to a member's catalogue (see [`crate::catalogue`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct CatalogueRequest {
    /// Common fields.
    pub hdr: Header,
    /// What is asked.
    pub query: CatalogueQuery,
}

/// The answer to a [`CatalogueRequest`]: one index page or one track.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct CatalogueReply {
    /// Common fields.
    pub hdr: Header,
    /// The answer.
    pub answer: CatalogueAnswer,
}

/// Every message of the protocol. The variant order is the wire kind byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum Message {
    /// Follower heartbeat or leader beacon.
    Heartbeat(Heartbeat),
    /// Leader heartbeat with sealed entries.
    Append(Append),
    /// A fresh vote.
    VoteCast(VoteCast),
    /// Clock probe answer.
    ClockReply(ClockReply),
    /// Ask to be admitted.
    JoinRequest(JoinRequest),
    /// State transfer.
    Snapshot(Snapshot),
    /// Ask for a state transfer.
    SnapshotRequest(SnapshotRequest),
    /// Ask for leadership.
    Campaign(Campaign),
    /// Answer a campaign.
    Ballot(Ballot),
    /// Goodbye.
    Leave(Leave),
    /// Ask a member's catalogue.
    CatalogueRequest(CatalogueRequest),
    /// A member's catalogue answers.
    CatalogueReply(CatalogueReply),
    /// Who leads a room and where its members are.
    Referral(Referral),
}

/// Largest possible encoded message, version byte included.
pub const MAX_MESSAGE_SIZE: usize = 1 + Message::POSTCARD_MAX_SIZE;

// Every message fits one datagram, and a full view fits the snapshot parts:
// checked when the crate compiles.
const _: () = assert!(MAX_MESSAGE_SIZE <= MAX_DATAGRAM);
const _: () = assert!(MAX_SNAPSHOT_PARTS * SNAPSHOT_MEMBERS_PER_PART >= MAX_MEMBERS);

/// Why a datagram was not decoded. Small and `Copy`: decoding errors are
/// counted, not carried around. None is worth retrying: drop the datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The datagram is empty.
    #[error("empty datagram")]
    Empty,
    /// The datagram is longer than [`MAX_DATAGRAM`]; not even looked at.
    #[error("datagram of {0} bytes exceeds the {MAX_DATAGRAM}-byte limit")]
    Oversized(usize),
    /// The version byte is not ours (an older or newer member).
    #[error("unsupported format version {0} (this member speaks {VERSION})")]
    Version(u8),
    /// The bytes are not a valid message (truncated, unknown kind, a field out
    /// of range, a collection over its bound, or trailing bytes).
    #[error("malformed message")]
    Malformed,
}

impl Message {
    /// Common fields of any message.
    #[must_use]
    pub fn header(&self) -> &Header {
        match self {
            Message::Heartbeat(m) => &m.hdr,
            Message::Append(m) => &m.hdr,
            Message::VoteCast(m) => &m.hdr,
            Message::ClockReply(m) => &m.hdr,
            Message::JoinRequest(m) => &m.hdr,
            Message::Snapshot(m) => &m.hdr,
            Message::SnapshotRequest(m) => &m.hdr,
            Message::Campaign(m) => &m.hdr,
            Message::Ballot(m) => &m.hdr,
            Message::Leave(m) => &m.hdr,
            Message::CatalogueRequest(m) => &m.hdr,
            Message::CatalogueReply(m) => &m.hdr,
            Message::Referral(m) => &m.hdr,
        }
    }

    /// Encodes the message as one datagram (version byte first).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = [0u8; MAX_MESSAGE_SIZE];
        buf[0] = VERSION;
        let used = postcard::to_slice(self, &mut buf[1..])
            .expect("MAX_MESSAGE_SIZE bounds every message, checked at compile time")
            .len();
        buf[..=used].to_vec()
    }

    /// Decodes one datagram. Never panics; never allocates.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MAX_DATAGRAM {
            return Err(DecodeError::Oversized(bytes.len()));
        }
        let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        match postcard::take_from_bytes::<Message>(body) {
            Ok((msg, [])) => Ok(msg),
            _ => Err(DecodeError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::{Holding, INDEX_PAGE, IndexPage, StemInfo, TrackInfo, bounded};
    use crate::content::{StemHash, TrackId};
    use crate::event::Event;
    use crate::ids::Channel;
    use crate::transport::{ChannelState, Frames, Gain, LoadedTrack, MAX_CHANNELS};
    use proptest::prelude::*;

    fn hdr() -> Header {
        Header {
            from: MemberId(0x0102),
            boot: BootId(7),
            role: Role::Speaker,
            room: Some(RoomId {
                founded: Round(5),
                founder: MemberId(1),
            }),
            term: Term(3),
        }
    }

    /// The format is pinned: a change to these bytes is a protocol change
    /// and needs a new `VERSION`.
    #[test]
    fn pinned_heartbeat_bytes() {
        let mut votes = heapless::Vec::new();
        votes
            .push(Vote {
                member: MemberId(9),
                seq: 2,
                event: Event::Seek {
                    channel: Channel::Stem(1),
                    to: Frames(48_000),
                },
            })
            .expect("capacity");
        let msg = Message::Heartbeat(Heartbeat {
            hdr: hdr(),
            round: Round(300),
            sent_at: LocalTime(1_000),
            leader: Some(MemberId(1)),
            last: EntryId {
                round: Round(299),
                term: Term(3),
            },
            commit: EntryId {
                round: Round(298),
                term: Term(3),
            },
            digest: 0xAB,
            room_size: 3,
            view_epoch: Round(10),
            heard: 0b101,
            health: Health {
                clock_error_us: 250,
                buffer_ms: 40,
                xruns: 1,
            },
            catalogue: 0x0102,
            votes,
        });
        let bytes = msg.encode();
        assert_eq!(
            bytes,
            [
                4, 0, // version, kind = Heartbeat
                0x82, 0x02, 7, 0, 1, 5, 1, 3, // header
                0xAC, 0x02, // round 300
                0xE8, 0x07, // sent_at 1000
                1, 1, // leader Some(1)
                0xAB, 0x02, 3, // last
                0xAA, 0x02, 3, // commit
                0xAB, 0x01, // digest
                3, 10, 5, // room_size, view_epoch, heard
                0xFA, 0x01, 40, 1, // health: clock error 250 µs, buffer 40 ms, 1 xrun
                0x82, 0x02, // catalogue digest 0x0102
                1, 9, 2, 2, 1, 1, 0x80, 0xF7, 0x02, // one vote: seek stem 1 to 48000
            ]
        );
        assert_eq!(Message::decode(&bytes), Ok(msg));
    }

    #[test]
    fn pinned_leave_bytes() {
        let msg = Message::Leave(Leave { hdr: hdr() });
        assert_eq!(msg.encode(), [4, 9, 0x82, 0x02, 7, 0, 1, 5, 1, 3]);
    }

    #[test]
    fn pinned_join_request_and_referral_bytes() {
        let msg = Message::JoinRequest(JoinRequest {
            hdr: hdr(),
            sent_at: LocalTime(1_000),
            stem: Some(2),
            claim: 300,
        });
        assert_eq!(
            msg.encode(),
            [
                4, 4, 0x82, 0x02, 7, 0, 1, 5, 1, 3, 0xE8, 0x07, 1, 2, 0xAC, 0x02
            ]
        );
        let mut peers = heapless::Vec::new();
        peers
            .push(PeerAddress {
                id: MemberId(1),
                addr: crate::address::WireAddr::V4 {
                    ip: [127, 0, 0, 1],
                    port: 4500,
                },
            })
            .expect("capacity");
        let msg = Message::Referral(Referral {
            hdr: hdr(),
            leader: Some(MemberId(1)),
            room_size: 3,
            peers,
        });
        let bytes = msg.encode();
        assert_eq!(
            bytes,
            [
                4, 12, // version, kind = Referral
                0x82, 0x02, 7, 0, 1, 5, 1, 3, // header
                1, 1, 3, // leader Some(1), room_size 3
                1, 1, 0, 127, 0, 0, 1, 0x94, 0x23, // member 1 at 127.0.0.1:4500
            ]
        );
        assert_eq!(Message::decode(&bytes), Ok(msg));
    }

    #[test]
    fn rejects_bad_envelopes() {
        assert_eq!(Message::decode(&[]), Err(DecodeError::Empty));
        assert_eq!(Message::decode(&[1, 0]), Err(DecodeError::Version(1)));
        assert_eq!(Message::decode(&[2, 0]), Err(DecodeError::Version(2)));
        assert_eq!(Message::decode(&[3, 0]), Err(DecodeError::Version(3)));
        assert_eq!(Message::decode(&[5, 0]), Err(DecodeError::Version(5)));
        assert_eq!(Message::decode(&[VERSION]), Err(DecodeError::Malformed));
        assert_eq!(
            Message::decode(&[VERSION, 200]),
            Err(DecodeError::Malformed)
        );
        assert_eq!(
            Message::decode(&vec![1; MAX_DATAGRAM + 1]),
            Err(DecodeError::Oversized(MAX_DATAGRAM + 1))
        );
        let mut ok = Message::Leave(Leave { hdr: hdr() }).encode();
        ok.push(0);
        assert_eq!(
            Message::decode(&ok),
            Err(DecodeError::Malformed),
            "trailing"
        );
        let ok = Message::Leave(Leave { hdr: hdr() }).encode();
        for cut in 0..ok.len() {
            assert!(Message::decode(&ok[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn collection_over_its_bound_is_rejected() {
        // A heartbeat claiming MAX_RELAYED_VOTES + 1 votes.
        let msg = Message::Heartbeat(Heartbeat {
            hdr: hdr(),
            round: Round(0),
            sent_at: LocalTime(0),
            leader: None,
            last: EntryId::default(),
            commit: EntryId::default(),
            digest: 0,
            room_size: 0,
            view_epoch: Round(0),
            heard: 0,
            health: Health::default(),
            catalogue: 0,
            votes: heapless::Vec::new(),
        });
        let mut bytes = msg.encode();
        let last = bytes.len() - 1;
        assert_eq!(bytes[last], 0, "empty vote list is the last byte");
        bytes[last] = u8::try_from(MAX_RELAYED_VOTES + 1).expect("small");
        let vote = [9u8, 2, 0, 0]; // member 9, seq 2, Play(All)
        for _ in 0..=MAX_RELAYED_VOTES {
            bytes.extend_from_slice(&vote);
        }
        assert_eq!(Message::decode(&bytes), Err(DecodeError::Malformed));
    }

    /// The largest vote: a load (bigger on the wire than any other event).
    fn big_vote(i: u64) -> Vote {
        Vote {
            member: MemberId(u64::MAX - i),
            seq: u32::MAX,
            event: Event::Load {
                track: TrackId([0xFF; 16]),
                channels: u8::MAX,
                length: Frames(u64::MAX),
            },
        }
    }

    fn big_info(i: u64) -> MemberInfo {
        MemberInfo {
            id: MemberId(u64::MAX - i),
            boot: BootId(u32::MAX),
            role: Role::Controller,
            stem: Some(u8::MAX),
            last_seq: u32::MAX,
        }
    }

    fn big_transport() -> Transport {
        let mut channels = heapless::Vec::new();
        for _ in 0..MAX_CHANNELS {
            channels
                .push(ChannelState {
                    playing: true,
                    anchor_pos: Frames(u64::MAX),
                    anchor_at: MeshTime(u64::MAX),
                    gain: Gain(u8::MAX),
                })
                .expect("capacity");
        }
        Transport {
            channels,
            track: Some(LoadedTrack {
                id: TrackId([0xFF; 16]),
                length: Frames(u64::MAX),
            }),
            revision: u64::MAX,
            restored: true,
        }
    }

    /// The largest track description and index page.
    fn big_catalogue_replies(h: Header) -> [Message; 2] {
        let long = "é".repeat(100);
        let mut stems = heapless::Vec::new();
        for i in 0..MAX_CHANNELS {
            stems
                .push(StemInfo {
                    name: bounded(&long),
                    hash: StemHash([u8::try_from(i).expect("small"); 32]),
                })
                .expect("capacity");
        }
        let track = CatalogueAnswer::Track(TrackInfo {
            id: TrackId([0xFF; 16]),
            title: bounded(&long),
            length: Frames(u64::MAX),
            stems,
        });
        let mut holdings = heapless::Vec::new();
        for i in 0..INDEX_PAGE {
            holdings
                .push(Holding {
                    track: TrackId([u8::try_from(i).expect("small"); 16]),
                    stems: u8::MAX,
                })
                .expect("capacity");
        }
        let index = CatalogueAnswer::Index(IndexPage {
            digest: u64::MAX,
            name: bounded(&long),
            page: u8::MAX,
            pages: u8::MAX,
            holdings,
        });
        [track, index].map(|answer| Message::CatalogueReply(CatalogueReply { hdr: h, answer }))
    }

    /// The largest messages we can build encode within the bound, and the
    /// bound fits a datagram.
    #[test]
    fn largest_messages_fit_one_datagram() {
        let mut h = hdr();
        h.from = MemberId(u64::MAX);
        h.boot = BootId(u32::MAX);
        h.term = Term(u64::MAX);
        let id = EntryId {
            round: Round(u64::MAX),
            term: Term(u64::MAX),
        };
        let mut entries = heapless::Vec::new();
        for _ in 0..MAX_CARRIED_ENTRIES {
            let mut votes = heapless::Vec::new();
            for i in 0..MAX_ENTRY_VOTES as u64 {
                votes.push(big_vote(i)).expect("capacity");
            }
            let mut changes = heapless::Vec::new();
            for i in 0..MAX_VIEW_CHANGES as u64 {
                changes
                    .push(ViewChange::Join(big_info(i)))
                    .expect("capacity");
            }
            entries
                .push(Entry {
                    id,
                    prev: id,
                    votes,
                    changes,
                })
                .expect("capacity");
        }
        let append = Message::Append(Append {
            hdr: h,
            prev: id,
            entries,
            commit: id,
            digest: u64::MAX,
        });
        let mut members = heapless::Vec::new();
        for i in 0..SNAPSHOT_MEMBERS_PER_PART as u64 {
            members.push(big_info(i)).expect("capacity");
        }
        let snapshot = Message::Snapshot(Snapshot {
            hdr: h,
            commit: id,
            digest: u64::MAX,
            view_epoch: Round(u64::MAX),
            heartbeat: Nanos(u64::MAX),
            apply_delay: Nanos(u64::MAX),
            part: u8::MAX,
            parts: u8::MAX,
            members,
            transport: big_transport(),
            t1: LocalTime(u64::MAX),
            t2: MeshTime(u64::MAX),
            t3: MeshTime(u64::MAX),
        });
        let mut votes = heapless::Vec::new();
        for i in 0..MAX_RELAYED_VOTES as u64 {
            votes.push(big_vote(i)).expect("capacity");
        }
        let heartbeat = Message::Heartbeat(Heartbeat {
            hdr: h,
            round: Round(u64::MAX),
            sent_at: LocalTime(u64::MAX),
            leader: Some(MemberId(u64::MAX)),
            last: id,
            commit: id,
            digest: u64::MAX,
            room_size: u8::MAX,
            view_epoch: Round(u64::MAX),
            heard: u64::MAX,
            health: Health {
                clock_error_us: u32::MAX,
                buffer_ms: u16::MAX,
                xruns: u32::MAX,
            },
            catalogue: u64::MAX,
            votes,
        });
        let [track, index] = big_catalogue_replies(h);
        for msg in [append, snapshot, heartbeat, track, index] {
            let bytes = msg.encode();
            assert!(bytes.len() <= MAX_MESSAGE_SIZE && bytes.len() <= MAX_DATAGRAM);
            assert_eq!(Message::decode(&bytes), Ok(msg));
        }
    }

    // ----- property tests ---------------------------------------------

    fn channel() -> impl Strategy<Value = Channel> {
        prop_oneof![Just(Channel::All), any::<u8>().prop_map(Channel::Stem)]
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            channel().prop_map(|channel| Event::Play { channel }),
            channel().prop_map(|channel| Event::Pause { channel }),
            (channel(), any::<u64>()).prop_map(|(channel, f)| Event::Seek {
                channel,
                to: Frames(f)
            }),
            (channel(), any::<u8>()).prop_map(|(channel, g)| Event::Volume {
                channel,
                gain: Gain(g)
            }),
            (any::<[u8; 16]>(), any::<u8>(), any::<u64>()).prop_map(|(t, c, l)| Event::Load {
                track: TrackId(t),
                channels: c,
                length: Frames(l)
            }),
        ]
    }

    fn vote() -> impl Strategy<Value = Vote> {
        (any::<u64>(), any::<u32>(), event()).prop_map(|(m, seq, event)| Vote {
            member: MemberId(m),
            seq,
            event,
        })
    }

    fn votes<const N: usize>() -> impl Strategy<Value = heapless::Vec<Vote, N>> {
        proptest::collection::vec(vote(), 0..=N)
            .prop_map(|v| v.into_iter().collect::<heapless::Vec<Vote, N>>())
    }

    fn entry_id() -> impl Strategy<Value = EntryId> {
        (any::<u64>(), any::<u64>()).prop_map(|(r, t)| EntryId {
            round: Round(r),
            term: Term(t),
        })
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Speaker), Just(Role::Controller)]
    }

    fn info() -> impl Strategy<Value = MemberInfo> {
        (
            any::<u64>(),
            any::<u32>(),
            role(),
            any::<Option<u8>>(),
            any::<u32>(),
        )
            .prop_map(|(id, boot, role, stem, last_seq)| MemberInfo {
                id: MemberId(id),
                boot: BootId(boot),
                role,
                stem,
                last_seq,
            })
    }

    fn header() -> impl Strategy<Value = Header> {
        (
            any::<u64>(),
            any::<u32>(),
            role(),
            any::<Option<(u64, u64)>>(),
            any::<u64>(),
        )
            .prop_map(|(from, boot, role, room, term)| Header {
                from: MemberId(from),
                boot: BootId(boot),
                role,
                room: room.map(|(f, id)| RoomId {
                    founded: Round(f),
                    founder: MemberId(id),
                }),
                term: Term(term),
            })
    }

    fn change() -> impl Strategy<Value = ViewChange> {
        prop_oneof![
            info().prop_map(ViewChange::Join),
            any::<u64>().prop_map(|m| ViewChange::Leave(MemberId(m))),
            any::<u64>().prop_map(|m| ViewChange::Evict(MemberId(m))),
        ]
    }

    fn changes() -> impl Strategy<Value = heapless::Vec<ViewChange, MAX_VIEW_CHANGES>> {
        proptest::collection::vec(change(), 0..=MAX_VIEW_CHANGES)
            .prop_map(|v| v.into_iter().collect())
    }

    fn entry() -> impl Strategy<Value = Entry> {
        (
            entry_id(),
            entry_id(),
            votes::<MAX_ENTRY_VOTES>(),
            changes(),
        )
            .prop_map(|(id, prev, votes, changes)| Entry {
                id,
                prev,
                votes,
                changes,
            })
    }

    fn transport() -> impl Strategy<Value = Transport> {
        (
            proptest::collection::vec(
                (any::<bool>(), any::<u64>(), any::<u64>(), any::<u8>()),
                0..=MAX_CHANNELS,
            ),
            any::<Option<([u8; 16], u64)>>(),
            any::<(u64, bool)>(),
        )
            .prop_map(|(chs, track, (revision, restored))| Transport {
                revision,
                restored,
                track: track.map(|(id, l)| LoadedTrack {
                    id: TrackId(id),
                    length: Frames(l),
                }),
                channels: chs
                    .into_iter()
                    .map(|(playing, pos, at, g)| ChannelState {
                        playing,
                        anchor_pos: Frames(pos),
                        anchor_at: MeshTime(at),
                        gain: Gain(g),
                    })
                    .collect(),
            })
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                header(),
                any::<(u64, u64, Option<u64>, u64, u8, u64, u64)>(),
                entry_id(),
                entry_id(),
                votes::<MAX_RELAYED_VOTES>(),
                any::<(u32, u16, u32, u64)>(),
            )
                .prop_map(
                    |(hdr, (r, s, l, d, n, e, h), last, commit, votes, (c, b, x, cat))| {
                        Message::Heartbeat(Heartbeat {
                            hdr,
                            round: Round(r),
                            sent_at: LocalTime(s),
                            leader: l.map(MemberId),
                            last,
                            commit,
                            digest: d,
                            room_size: n,
                            view_epoch: Round(e),
                            heard: h,
                            health: Health {
                                clock_error_us: c,
                                buffer_ms: b,
                                xruns: x,
                            },
                            catalogue: cat,
                            votes,
                        })
                    }
                ),
            (
                header(),
                entry_id(),
                proptest::collection::vec(entry(), 0..=MAX_CARRIED_ENTRIES),
                entry_id(),
                any::<u64>()
            )
                .prop_map(|(hdr, prev, entries, commit, digest)| {
                    Message::Append(Append {
                        hdr,
                        prev,
                        entries: entries.into_iter().collect(),
                        commit,
                        digest,
                    })
                }),
            (header(), vote()).prop_map(|(hdr, vote)| Message::VoteCast(VoteCast { hdr, vote })),
            (header(), any::<(u64, u64, u64)>()).prop_map(|(hdr, (a, b, c))| {
                Message::ClockReply(ClockReply {
                    hdr,
                    t1: LocalTime(a),
                    t2: MeshTime(b),
                    t3: MeshTime(c),
                })
            }),
            (header(), any::<u64>(), any::<Option<u8>>(), any::<u64>()).prop_map(
                |(hdr, s, stem, claim)| {
                    Message::JoinRequest(JoinRequest {
                        hdr,
                        sent_at: LocalTime(s),
                        stem,
                        claim,
                    })
                }
            ),
            (
                header(),
                any::<(Option<u64>, u8)>(),
                proptest::collection::vec(
                    (any::<u64>(), any::<([u8; 16], u16, bool)>()),
                    0..=REFERRAL_PEERS
                )
            )
                .prop_map(|(hdr, (leader, room_size), peers)| {
                    Message::Referral(Referral {
                        hdr,
                        leader: leader.map(MemberId),
                        room_size,
                        peers: peers
                            .into_iter()
                            .map(|(id, (ip, port, v6))| PeerAddress {
                                id: MemberId(id),
                                addr: if v6 {
                                    crate::address::WireAddr::V6 { ip, port }
                                } else {
                                    crate::address::WireAddr::V4 {
                                        ip: [ip[0], ip[1], ip[2], ip[3]],
                                        port,
                                    }
                                },
                            })
                            .collect(),
                    })
                }),
            (
                header(),
                entry_id(),
                any::<(u64, u64, u64, u64, u8, u8)>(),
                proptest::collection::vec(info(), 0..=SNAPSHOT_MEMBERS_PER_PART),
                transport(),
                any::<(u64, u64, u64)>()
            )
                .prop_map(
                    |(hdr, commit, (digest, epoch, hb, ad, part, parts), members, transport, t)| {
                        Message::Snapshot(Snapshot {
                            hdr,
                            commit,
                            digest,
                            view_epoch: Round(epoch),
                            heartbeat: Nanos(hb),
                            apply_delay: Nanos(ad),
                            part,
                            parts,
                            members: members.into_iter().collect(),
                            transport,
                            t1: LocalTime(t.0),
                            t2: MeshTime(t.1),
                            t3: MeshTime(t.2),
                        })
                    }
                ),
            (header(), any::<u64>()).prop_map(|(hdr, s)| {
                Message::SnapshotRequest(SnapshotRequest {
                    hdr,
                    sent_at: LocalTime(s),
                })
            }),
            (header(), any::<bool>(), entry_id())
                .prop_map(|(hdr, pre, last)| Message::Campaign(Campaign { hdr, pre, last })),
            (header(), any::<bool>(), any::<u64>(), any::<bool>()).prop_map(
                |(hdr, pre, term, granted)| Message::Ballot(Ballot {
                    hdr,
                    pre,
                    term: Term(term),
                    granted
                })
            ),
            header().prop_map(|hdr| Message::Leave(Leave { hdr })),
            (
                header(),
                prop_oneof![
                    any::<u8>().prop_map(|page| CatalogueQuery::Index { page }),
                    any::<[u8; 16]>().prop_map(|t| CatalogueQuery::Track(TrackId(t))),
                ]
            )
                .prop_map(|(hdr, query)| Message::CatalogueRequest(CatalogueRequest {
                    hdr,
                    query
                })),
            (header(), catalogue_answer())
                .prop_map(|(hdr, answer)| Message::CatalogueReply(CatalogueReply { hdr, answer })),
        ]
    }

    fn catalogue_answer() -> impl Strategy<Value = CatalogueAnswer> {
        let stem = (".{0,30}", any::<[u8; 32]>()).prop_map(|(n, h): (String, _)| StemInfo {
            name: bounded(&n),
            hash: StemHash(h),
        });
        let track = (
            any::<[u8; 16]>(),
            ".{0,80}",
            any::<u64>(),
            proptest::collection::vec(stem, 0..=MAX_CHANNELS),
        )
            .prop_map(|(id, title, l, stems): (_, String, _, _)| {
                CatalogueAnswer::Track(TrackInfo {
                    id: TrackId(id),
                    title: bounded(&title),
                    length: Frames(l),
                    stems: stems.into_iter().collect(),
                })
            });
        let holding = (any::<[u8; 16]>(), any::<u8>()).prop_map(|(t, stems)| Holding {
            track: TrackId(t),
            stems,
        });
        let index = (
            any::<(u64, u8, u8)>(),
            ".{0,40}",
            proptest::collection::vec(holding, 0..=INDEX_PAGE),
        )
            .prop_map(|((digest, page, pages), name, holdings): (_, String, _)| {
                CatalogueAnswer::Index(IndexPage {
                    digest,
                    name: bounded(&name),
                    page,
                    pages,
                    holdings: holdings.into_iter().collect(),
                })
            });
        prop_oneof![track, index]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn every_message_round_trips(msg in message()) {
            let bytes = msg.encode();
            prop_assert!(bytes.len() <= MAX_DATAGRAM);
            prop_assert_eq!(bytes[0], VERSION);
            prop_assert_eq!(Message::decode(&bytes), Ok(msg));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(
            msg in message(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = msg.encode();
            for (at, x) in flips {
                let i = at % bytes.len();
                bytes[i] ^= x;
            }
            // Either an error, or a message whose canonical encoding decodes
            // to itself (postcard also accepts over-long varints, so the
            // mutated bytes need not be canonical).
            if let Ok(m) = Message::decode(&bytes) {
                let again = m.encode();
                prop_assert!(again.len() <= MAX_DATAGRAM);
                prop_assert_eq!(Message::decode(&again), Ok(m));
            }
        }
    }
}
