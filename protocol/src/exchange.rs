//! The chunk exchange between speakers: how a speaker proves it belongs to
//! the room before another serves it stem bytes, and the frames and
//! messages that follow.
//!
//! Why its own transport: chunks are 64 KiB, far beyond a datagram, and
//! must arrive whole and in order, so they travel over a stream (TCP in the
//! node). The mesh's datagram sealing does not fit a stream; what carries
//! over is the key: both sides derive [`LinkKey`] from the room's group
//! secret ([`GroupKey::subkey`]), so a stranger without the secret gets
//! nothing — not even an answer to a request.
//!
//! Connection, before any request (all sizes fixed):
//!
//! 1. client → server: [`MAGIC`] ‖ client nonce (32 random bytes);
//! 2. server → client: server nonce ‖ `proof(Server)`;
//! 3. client → server: `proof(Client)`.
//!
//! `proof(role) = BLAKE3-keyed(LinkKey, role label ‖ client nonce ‖ server
//! nonce)`; the role labels differ, so one side's proof can never be
//! reflected as the other's, and fresh nonces on both sides defeat replay.
//! The server answers requests only after checking the client's proof; the
//! client sends requests only after checking the server's.
//!
//! Then frames, each `len (u32 LE) ‖ body ‖ tag (32)`, where the tag is
//! BLAKE3-keyed over the frame's counter (per direction, from 0) and the
//! body, with a per-direction key derived from the nonces: a frame cannot
//! be altered, dropped, replayed or injected into the stream unnoticed.
//! Bodies are not encrypted: the audio of a room is not secret from its
//! network, and its integrity is already checked twice over (this tag, and
//! the content hash of every chunk, [`crate::content`]).
//!
//! Invariant: decoding never allocates more than [`MAX_BODY`] for a frame
//! and never panics on any input (`fuzz/fuzz_targets/exchange_message.rs`).

use crate::content::{CHUNK_SIZE, StemHash};
use crate::envelope::GroupKey;

/// First bytes a client sends: the protocol and its version.
pub const MAGIC: [u8; 4] = *b"AHX1";
/// Bytes of each side's nonce.
pub const NONCE_LEN: usize = 32;
/// Bytes of a proof and of a frame tag.
pub const TAG_LEN: usize = 32;
/// Most chunks a served stem may have (a 2 GiB file).
pub const MAX_CHUNKS: u64 = 1 << 15;
/// Largest frame body: a manifest of [`MAX_CHUNKS`] chunks plus a header.
pub const MAX_BODY: usize = 8 + 32 * MAX_CHUNKS as usize + 16;

const KEY_LABEL: &[u8] = b"chunk exchange key";
const CLIENT_PROOF: &[u8] = b"autoharmonize exchange client proof";
const SERVER_PROOF: &[u8] = b"autoharmonize exchange server proof";
const CLIENT_FRAMES: &[u8] = b"autoharmonize exchange client frames";
const SERVER_FRAMES: &[u8] = b"autoharmonize exchange server frames";

/// The key of a room's chunk exchange, derived from its group secret.
#[derive(Clone)]
pub struct LinkKey([u8; 32]);

impl core::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("LinkKey(..)")
    }
}

/// Which end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The side that connected and asks.
    Client,
    /// The side that accepted and serves.
    Server,
}

impl LinkKey {
    /// The exchange key of the room whose group key is `group`.
    #[must_use]
    pub fn from_group(group: &GroupKey) -> LinkKey {
        LinkKey(group.subkey(KEY_LABEL))
    }

    /// The proof that `role` knows the key, for this pair of nonces.
    #[must_use]
    pub fn proof(
        &self,
        role: Role,
        client_nonce: &[u8; NONCE_LEN],
        server_nonce: &[u8; NONCE_LEN],
    ) -> [u8; TAG_LEN] {
        let label = match role {
            Role::Client => CLIENT_PROOF,
            Role::Server => SERVER_PROOF,
        };
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(label);
        h.update(client_nonce);
        h.update(server_nonce);
        *h.finalize().as_bytes()
    }

    /// Whether `proof` is `role`'s proof for these nonces (constant time).
    #[must_use]
    pub fn check(
        &self,
        role: Role,
        client_nonce: &[u8; NONCE_LEN],
        server_nonce: &[u8; NONCE_LEN],
        proof: &[u8; TAG_LEN],
    ) -> bool {
        blake3::Hash::from(self.proof(role, client_nonce, server_nonce))
            == blake3::Hash::from(*proof)
    }

    /// The frame keys of a connection, for the side `me`: one to tag what
    /// it sends, one to check what it receives.
    #[must_use]
    pub fn session(
        &self,
        me: Role,
        client_nonce: &[u8; NONCE_LEN],
        server_nonce: &[u8; NONCE_LEN],
    ) -> (FrameTagger, FrameChecker) {
        let key = |label: &[u8]| {
            let mut h = blake3::Hasher::new_keyed(&self.0);
            h.update(label);
            h.update(client_nonce);
            h.update(server_nonce);
            *h.finalize().as_bytes()
        };
        let (send, recv) = match me {
            Role::Client => (key(CLIENT_FRAMES), key(SERVER_FRAMES)),
            Role::Server => (key(SERVER_FRAMES), key(CLIENT_FRAMES)),
        };
        (
            FrameTagger {
                key: send,
                counter: 0,
            },
            FrameChecker {
                key: recv,
                counter: 0,
            },
        )
    }
}

fn frame_tag(key: &[u8; 32], counter: u64, body: &[u8]) -> [u8; TAG_LEN] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&counter.to_le_bytes());
    h.update(body);
    *h.finalize().as_bytes()
}

/// Tags the frames one side sends, in order.
#[derive(Clone)]
pub struct FrameTagger {
    key: [u8; 32],
    counter: u64,
}

impl FrameTagger {
    /// The whole frame for `body`: length, body, tag.
    ///
    /// # Panics
    /// If `body` is longer than [`MAX_BODY`] (a caller's bug: every message
    /// this module encodes fits).
    #[must_use]
    pub fn frame(&mut self, body: &[u8]) -> Vec<u8> {
        assert!(body.len() <= MAX_BODY, "frame body over MAX_BODY");
        let tag = frame_tag(&self.key, self.counter, body);
        self.counter += 1;
        let mut out = Vec::with_capacity(4 + body.len() + TAG_LEN);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        out.extend_from_slice(&tag);
        out
    }
}

/// Checks the frames one side receives, in order.
#[derive(Clone)]
pub struct FrameChecker {
    key: [u8; 32],
    counter: u64,
}

impl FrameChecker {
    /// The body length announced by a frame's first 4 bytes, if acceptable.
    ///
    /// # Errors
    /// [`ExchangeError::TooLong`] beyond [`MAX_BODY`].
    pub fn body_len(header: [u8; 4]) -> Result<usize, ExchangeError> {
        let len = u32::from_le_bytes(header) as usize;
        if len > MAX_BODY {
            return Err(ExchangeError::TooLong(len));
        }
        Ok(len)
    }

    /// Checks the tag of the next frame's `body`.
    ///
    /// # Errors
    /// [`ExchangeError::BadTag`]: the stream was tampered with; close it.
    pub fn check(&mut self, body: &[u8], tag: &[u8; TAG_LEN]) -> Result<(), ExchangeError> {
        let expected = frame_tag(&self.key, self.counter, body);
        if blake3::Hash::from(expected) != blake3::Hash::from(*tag) {
            return Err(ExchangeError::BadTag);
        }
        self.counter += 1;
        Ok(())
    }
}

/// What a client asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// The manifest of a stem.
    Manifest {
        /// Chosen by the client, echoed in the response.
        id: u32,
        /// The stem.
        stem: StemHash,
    },
    /// One chunk of a stem.
    Chunk {
        /// Chosen by the client, echoed in the response.
        id: u32,
        /// The stem.
        stem: StemHash,
        /// The chunk's index.
        index: u32,
    },
}

/// What a server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A manifest's canonical bytes ([`crate::content::Manifest::to_bytes`]).
    Manifest {
        /// The request's id.
        id: u32,
        /// The bytes (checked by the client against the stem hash).
        bytes: Vec<u8>,
    },
    /// A chunk's bytes.
    Chunk {
        /// The request's id.
        id: u32,
        /// The bytes (checked by the client against the manifest).
        bytes: Vec<u8>,
    },
    /// The server does not hold what was asked.
    NotFound {
        /// The request's id.
        id: u32,
    },
}

impl Response {
    /// The id of the request this answers.
    #[must_use]
    pub fn id(&self) -> u32 {
        match self {
            Response::Manifest { id, .. }
            | Response::Chunk { id, .. }
            | Response::NotFound { id } => *id,
        }
    }
}

/// Why bytes of the exchange were refused. None is worth retrying on the
/// same connection: close it (a new connection may succeed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The first bytes are not [`MAGIC`]: not our protocol or version.
    #[error("not an autoharmonize chunk exchange (bad magic)")]
    BadMagic,
    /// The peer's proof is wrong: it does not hold the room's secret.
    #[error("the peer does not hold the room's secret")]
    BadProof,
    /// A frame's tag is wrong: the stream was altered.
    #[error("a frame failed authentication")]
    BadTag,
    /// A frame announces a body larger than [`MAX_BODY`].
    #[error("a frame of {0} bytes exceeds the limit")]
    TooLong(usize),
    /// A message is truncated, has trailing bytes or an unknown kind.
    #[error("malformed message")]
    Malformed,
}

const REQ_MANIFEST: u8 = 1;
const REQ_CHUNK: u8 = 2;
const RESP_MANIFEST: u8 = 0x81;
const RESP_CHUNK: u8 = 0x82;
const RESP_NOT_FOUND: u8 = 0x83;

impl Request {
    /// The message's bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(41);
        match *self {
            Request::Manifest { id, stem } => {
                out.push(REQ_MANIFEST);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&stem.0);
            }
            Request::Chunk { id, stem, index } => {
                out.push(REQ_CHUNK);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&stem.0);
                out.extend_from_slice(&index.to_le_bytes());
            }
        }
        out
    }

    /// Parses a request.
    ///
    /// # Errors
    /// [`ExchangeError::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Request, ExchangeError> {
        let (&kind, rest) = bytes.split_first().ok_or(ExchangeError::Malformed)?;
        let id = |r: &[u8]| -> Result<u32, ExchangeError> {
            Ok(u32::from_le_bytes(
                r.get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(ExchangeError::Malformed)?,
            ))
        };
        let stem = |r: &[u8]| -> Result<StemHash, ExchangeError> {
            Ok(StemHash(
                r.get(4..36)
                    .and_then(|b| b.try_into().ok())
                    .ok_or(ExchangeError::Malformed)?,
            ))
        };
        match (kind, rest.len()) {
            (REQ_MANIFEST, 36) => Ok(Request::Manifest {
                id: id(rest)?,
                stem: stem(rest)?,
            }),
            (REQ_CHUNK, 40) => Ok(Request::Chunk {
                id: id(rest)?,
                stem: stem(rest)?,
                index: u32::from_le_bytes(
                    rest.get(36..40)
                        .and_then(|b| b.try_into().ok())
                        .ok_or(ExchangeError::Malformed)?,
                ),
            }),
            _ => Err(ExchangeError::Malformed),
        }
    }
}

impl Response {
    /// The message's bytes.
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        let (kind, id, payload): (u8, u32, &[u8]) = match self {
            Response::Manifest { id, bytes } => (RESP_MANIFEST, *id, bytes),
            Response::Chunk { id, bytes } => (RESP_CHUNK, *id, bytes),
            Response::NotFound { id } => (RESP_NOT_FOUND, *id, &[]),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Parses a response. A chunk longer than [`CHUNK_SIZE`] is refused
    /// here; whether it is the right chunk is for the manifest to say.
    ///
    /// # Errors
    /// [`ExchangeError::Malformed`].
    pub fn decode(bytes: &[u8]) -> Result<Response, ExchangeError> {
        if bytes.len() < 5 {
            return Err(ExchangeError::Malformed);
        }
        let id = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let payload = &bytes[5..];
        match bytes[0] {
            RESP_MANIFEST if payload.len() <= MAX_BODY - 16 => Ok(Response::Manifest {
                id,
                bytes: payload.to_vec(),
            }),
            RESP_CHUNK if payload.len() as u64 <= CHUNK_SIZE => Ok(Response::Chunk {
                id,
                bytes: payload.to_vec(),
            }),
            RESP_NOT_FOUND if payload.is_empty() => Ok(Response::NotFound { id }),
            _ => Err(ExchangeError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn key(secret: &[u8]) -> LinkKey {
        LinkKey::from_group(&GroupKey::new(secret).unwrap())
    }

    #[test]
    fn proofs_need_the_secret_and_the_role() {
        let k = key(b"correct horse battery staple 42");
        let stranger = key(b"this is not the room's secret");
        let (c, s) = ([1u8; 32], [2u8; 32]);
        let p = k.proof(Role::Client, &c, &s);
        assert!(k.check(Role::Client, &c, &s, &p));
        assert!(!k.check(Role::Server, &c, &s, &p), "reflected");
        assert!(!k.check(Role::Client, &c, &[3u8; 32], &p), "other nonce");
        assert!(!k.check(Role::Client, &c, &s, &stranger.proof(Role::Client, &c, &s)));
    }

    #[test]
    fn frames_catch_tampering_reordering_and_replay() {
        let k = key(b"correct horse battery staple 42");
        let (c, s) = ([1u8; 32], [2u8; 32]);
        let (mut ctx, _) = k.session(Role::Client, &c, &s);
        let (_, mut srx) = k.session(Role::Server, &c, &s);
        let f0 = ctx.frame(b"first");
        let f1 = ctx.frame(b"second");
        let split = |f: &[u8]| {
            let len = FrameChecker::body_len(f[..4].try_into().unwrap()).unwrap();
            (
                f[4..4 + len].to_vec(),
                <[u8; 32]>::try_from(&f[4 + len..]).unwrap(),
            )
        };
        let (b1, t1) = split(&f1);
        assert_eq!(
            srx.clone().check(&b1, &t1),
            Err(ExchangeError::BadTag),
            "out of order"
        );
        let (b0, t0) = split(&f0);
        let mut altered = b0.clone();
        altered[0] ^= 1;
        assert_eq!(srx.clone().check(&altered, &t0), Err(ExchangeError::BadTag));
        srx.check(&b0, &t0).unwrap();
        assert_eq!(
            srx.clone().check(&b0, &t0),
            Err(ExchangeError::BadTag),
            "replay"
        );
        srx.check(&b1, &t1).unwrap();
        assert_eq!(
            FrameChecker::body_len((MAX_BODY as u32 + 1).to_le_bytes()),
            Err(ExchangeError::TooLong(MAX_BODY + 1))
        );
    }

    #[test]
    fn message_bytes_are_pinned() {
        let stem = StemHash([0xab; 32]);
        let r = Request::Chunk {
            id: 7,
            stem,
            index: 258,
        };
        let bytes = r.encode();
        assert_eq!(&bytes[..5], &[2, 7, 0, 0, 0]);
        assert_eq!(&bytes[37..], &[2, 1, 0, 0]);
        assert_eq!(
            Response::NotFound { id: 1 }.encode(),
            vec![0x83, 1, 0, 0, 0]
        );
    }

    proptest! {
        #[test]
        fn round_trips(id: u32, stem: [u8; 32], index: u32, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            for r in [Request::Manifest { id, stem: StemHash(stem) }, Request::Chunk { id, stem: StemHash(stem), index }] {
                prop_assert_eq!(Request::decode(&r.encode()), Ok(r));
            }
            for r in [Response::Manifest { id, bytes: payload.clone() }, Response::Chunk { id, bytes: payload.clone() }, Response::NotFound { id }] {
                prop_assert_eq!(Response::decode(&r.encode()), Ok(r));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes);
        }
    }
}
