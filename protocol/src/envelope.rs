//! Authenticated datagrams: the envelope every datagram travels in, so that
//! only holders of the room's group secret can speak in the mesh.
//!
//! A room's members share a secret. Each member seals every outgoing datagram
//! (the bytes [`crate::wire::Message::encode`] produced) with a [`Sealer`],
//! and every incoming one goes through an [`Opener`] before anything else
//! looks at it. Sealing is ChaCha20-Poly1305 under a key derived per sender
//! and per [`Epoch`] (one run of the sender's process), with a counter as the
//! nonce and the cleartext header as associated data, much as WireGuard
//! protects its transport packets. The opener rejects forged, altered and
//! replayed datagrams, and datagrams of an earlier run of their sender.
//! "Sealing" here means sealing a datagram, not a leader sealing a round.
//!
//! Invariants a reader must not break:
//! - The plaintext reaches the decoder only after the tag checks out; the
//!   length checks come before any cryptography.
//! - The replay state (epoch and window) changes only after the tag checks
//!   out, so a forger without the secret cannot advance a window, evict a
//!   peer or make a genuine datagram look like a replay.
//! - Everything an opener keeps is bounded by a constant
//!   ([`MAX_PEERS`], [`MAX_FORGED_SENDERS`], one datagram buffer), and each
//!   datagram costs at most one key derivation and one AEAD pass over at most
//!   [`MAX_DATAGRAM`] bytes: no input can make memory grow or work pile up.
//! - A `(sender, epoch)` pair never seals two datagrams with one counter;
//!   that is what makes the counter a safe nonce. Changing the layout, the
//!   key derivation or the nonce changes the format: bump
//!   [`crate::wire::VERSION`] and the pinned vector in the tests.
//!
//! Specified in `docs/protocol.md`, section "Datagram security".

use core::fmt;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, Key, KeyInit, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

use crate::ids::MemberId;
use crate::wire::{MAX_DATAGRAM, MAX_MEMBERS, MAX_MESSAGE_SIZE, VERSION};

/// Cleartext header: version byte, sender id (u64 LE), sender epoch (u32 LE),
/// counter (u64 LE). Authenticated as the AEAD's associated data.
pub const HEADER_LEN: usize = 1 + 8 + 4 + 8;

/// Poly1305 tag at the end of every sealed datagram.
pub const TAG_LEN: usize = 16;

/// Bytes sealing adds to a datagram.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

/// Largest plaintext a sealed datagram can carry within [`MAX_DATAGRAM`].
pub const MAX_PLAINTEXT: usize = MAX_DATAGRAM - OVERHEAD;

// Every message still fits one datagram once sealed: checked when the crate
// compiles. If this fails, a message grew: shrink it or shrink the envelope.
const _: () = assert!(
    MAX_MESSAGE_SIZE <= MAX_PLAINTEXT,
    "the largest message no longer fits a sealed datagram"
);

/// Shortest group secret accepted, in bytes (128 bits if it is random).
pub const MIN_SECRET_LEN: usize = 16;

/// Width of the replay window: a datagram whose counter is less than this
/// far below the highest counter accepted from its sender is accepted once;
/// anything older is refused. Matches WireGuard: a 2048-bit ring of which one
/// 64-bit word is always being recycled.
pub const REPLAY_WINDOW: u64 = (WINDOW_WORDS as u64 - 1) * 64;

/// Most senders whose replay state an opener keeps. Only senders that
/// authenticated are tracked, so with at most [`MAX_MEMBERS`] members in a
/// room (and some headroom for rooms merging) no live sender is ever evicted.
pub const MAX_PEERS: usize = 2 * MAX_MEMBERS;

/// Most claimed senders an opener remembers having received forged or
/// wrongly keyed datagrams from (see [`OpenError::Forged`]).
pub const MAX_FORGED_SENDERS: usize = 128;

/// HKDF salt: names the protocol and the version of this derivation.
const SALT: &[u8] = b"autoharmonize v1";

/// Prefix of the HKDF info, so keys derived for other purposes from the same
/// secret can never equal a datagram key.
const KEY_LABEL: &[u8] = b"datagram key";

/// 64-bit words in a replay window ring (2048 bits).
const WINDOW_WORDS: usize = 32;

/// Which run of a member's process sealed a datagram. Part of every sealed
/// datagram's header and of its key, so each run counts its nonces from zero
/// under a key of its own.
///
/// Epochs are *ordered*: once an opener has accepted epoch `e` from a sender,
/// it rejects every earlier epoch of that sender ([`OpenError::StaleEpoch`]).
/// That is what stops an attacker from replaying a previous run's datagrams.
/// So a member must use a strictly greater epoch at every start, and never
/// reuse one: reusing an epoch reuses nonces, which breaks the encryption and
/// lets an observer forge that member's datagrams. A random epoch would not
/// do (it has no order); the node keeps a counter next to its member id,
/// incremented and synced to disk before the first datagram is sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u32);

/// The room's group secret, ready to derive datagram keys. Cheap to clone;
/// its `Debug` output never shows key material.
#[derive(Clone)]
pub struct GroupKey {
    /// HKDF state after the extract step: the secret itself is not kept.
    hkdf: Hkdf<Sha256>,
}

impl GroupKey {
    /// Prepares the group secret (the bytes of the room's secret file).
    ///
    /// The secret should be at least 32 random bytes: anyone who captures one
    /// datagram can test guesses of a weak secret offline.
    pub fn new(secret: &[u8]) -> Result<GroupKey, SecretError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort(secret.len()));
        }
        Ok(GroupKey {
            hkdf: Hkdf::new(Some(SALT), secret),
        })
    }

    /// A 32-byte key for another use of the same secret (e.g. the chunk
    /// transport's handshake), independent of every datagram key: HKDF
    /// expand with `label`, which must not start with the datagram label.
    #[must_use]
    pub fn subkey(&self, label: &[u8]) -> [u8; 32] {
        debug_assert!(
            !label.starts_with(KEY_LABEL),
            "label collides with datagram keys"
        );
        let mut key = [0u8; 32];
        self.hkdf
            .expand(label, &mut key)
            .expect("32 bytes is far below HKDF-SHA256's 8160-byte output limit");
        key
    }

    /// The key of one run of one sender: HKDF-SHA256 expand with info =
    /// label || sender (u64 LE) || epoch (u32 LE). Costs two SHA-256
    /// compressions (the extract step was done once, in [`GroupKey::new`]).
    fn cipher(&self, sender: MemberId, epoch: Epoch) -> ChaCha20Poly1305 {
        let mut info = [0u8; KEY_LABEL.len() + 12];
        let (label, ids) = info.split_at_mut(KEY_LABEL.len());
        label.copy_from_slice(KEY_LABEL);
        ids[..8].copy_from_slice(&sender.0.to_le_bytes());
        ids[8..].copy_from_slice(&epoch.0.to_le_bytes());
        let mut key = Key::default();
        self.hkdf
            .expand(&info, &mut key)
            .expect("32 bytes is far below HKDF-SHA256's 8160-byte output limit");
        ChaCha20Poly1305::new(&key)
    }
}

impl fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupKey(..)")
    }
}

/// Why a group secret was refused. Fix the secret file; retrying cannot help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The secret has fewer than [`MIN_SECRET_LEN`] bytes.
    #[error("group secret of {0} bytes is shorter than the {MIN_SECRET_LEN}-byte minimum")]
    TooShort(usize),
}

/// Why a datagram was not sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The plaintext is longer than [`MAX_PLAINTEXT`]. A bug in the caller
    /// (every [`crate::wire::Message`] fits); retrying cannot help.
    #[error("plaintext of {0} bytes exceeds the {MAX_PLAINTEXT}-byte limit")]
    TooLong(usize),
    /// This sealer has used every counter value (2^64 - 1 datagrams). It can
    /// never seal again; a new run needs a new, greater [`Epoch`].
    #[error("datagram counter exhausted for this epoch")]
    Exhausted,
}

/// Seals the datagrams one member sends during one run (one [`Epoch`]).
///
/// There must be exactly one `Sealer` per member and epoch: two sealers with
/// the same member id and epoch would reuse nonces.
#[derive(Debug)]
pub struct Sealer {
    me: MemberId,
    epoch: Epoch,
    /// Counter of the next datagram; `u64::MAX` means exhausted, so the
    /// counter never wraps back to a used value.
    next: u64,
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    /// A sealer for member `me` in run `epoch`, starting at counter 0.
    #[must_use]
    pub fn new(key: &GroupKey, me: MemberId, epoch: Epoch) -> Sealer {
        Sealer {
            me,
            epoch,
            next: 0,
            cipher: key.cipher(me, epoch),
        }
    }

    /// Seals `plaintext` into `out` (cleared first; reuse it to avoid
    /// allocating). On success `out` holds one datagram of
    /// `plaintext.len() + OVERHEAD` bytes, at most [`MAX_DATAGRAM`]. On error
    /// `out` and the counter are unchanged.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SealError::TooLong(plaintext.len()));
        }
        let counter = self.next;
        if counter == u64::MAX {
            return Err(SealError::Exhausted);
        }
        let header = header_bytes(self.me, self.epoch, counter);
        out.clear();
        out.reserve(plaintext.len() + OVERHEAD);
        out.extend_from_slice(&header);
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce(counter), &header, (&mut out[HEADER_LEN..]).into())
            .expect("ChaCha20-Poly1305 refuses only messages of 256 GiB and more");
        out.extend_from_slice(&tag);
        self.next = counter + 1;
        Ok(())
    }

    /// The member this sealer seals for.
    #[must_use]
    pub fn member(&self) -> MemberId {
        self.me
    }

    /// The run this sealer seals for.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
}

/// An authenticated datagram, fresh from an [`Opener`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// Who sealed it: a holder of the group secret using this member id.
    /// The node should check that the decoded message's `hdr.from` agrees.
    pub sender: MemberId,
    /// The sender's run.
    pub epoch: Epoch,
    /// The datagram's counter within that run.
    pub counter: u64,
    /// The inner datagram, ready for [`crate::wire::Message::decode`]. Lives
    /// in the opener's buffer until the next call to [`Opener::open`].
    pub plaintext: &'a [u8],
}

/// Why a datagram was dropped. Small and `Copy`, so the node can count each
/// kind. None is worth retrying: drop the datagram.
///
/// [`Short`](Self::Short), [`Oversized`](Self::Oversized),
/// [`Version`](Self::Version), [`Forged`](Self::Forged) and
/// [`Refused`](Self::Refused) say nothing trustworthy about the sender. The other variants are reported only for
/// datagrams that authenticated, so they come from a holder of the secret
/// (or are a genuine datagram played back by someone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Shorter than an empty sealed datagram ([`OVERHEAD`] bytes); not even
    /// looked at.
    #[error("datagram of {0} bytes is too short to be sealed")]
    Short(usize),
    /// Longer than [`MAX_DATAGRAM`]; not even looked at.
    #[error("datagram of {0} bytes exceeds the {MAX_DATAGRAM}-byte limit")]
    Oversized(usize),
    /// The version byte is not ours (an older or newer member).
    #[error("unsupported format version {0} (this member speaks {VERSION})")]
    Version(u8),
    /// The tag does not match: the datagram was altered, forged, or sealed
    /// with a different group secret. `sender` is only what the header
    /// claims. `first` is true the first time the opener sees this from
    /// that claimed sender, so the node can warn once ("wrong group secret?")
    /// and only count the rest. It remembers [`MAX_FORGED_SENDERS`] claimed
    /// senders, least recently seen forgotten first, so a flood of invented
    /// ids can make `first` true again: rate-limit that warning too.
    #[error("datagram claiming to come from {sender:?} failed authentication")]
    Forged {
        /// Claimed sender (unauthenticated).
        sender: MemberId,
        /// First failure remembered for this claimed sender.
        first: bool,
    },
    /// A refusal notice naming this member: a member that could not
    /// authenticate our datagrams says so (see [`crate::refusal`]). Not
    /// authenticated itself: report it ("the room has another secret?"),
    /// never act on it. A notice naming another member is reported as
    /// [`Version`](Self::Version)`(`[`crate::refusal::MARK`]`)`: not ours.
    #[error("a member refused this member's datagrams: they failed authentication there")]
    Refused,
    /// Our own member id: one of our datagrams sent back to us.
    #[error("datagram sealed by this member came back")]
    Reflected,
    /// From an earlier run of the sender than one already accepted: a replay
    /// of old traffic, or a sender whose epoch went backwards.
    #[error("datagram from an earlier run of {sender:?}")]
    StaleEpoch {
        /// The authenticated sender.
        sender: MemberId,
    },
    /// Already accepted once: a duplicate or a replay.
    #[error("datagram from {sender:?} already received")]
    Replayed {
        /// The authenticated sender.
        sender: MemberId,
    },
    /// Its counter is [`REPLAY_WINDOW`] or more below the newest one accepted
    /// from its sender: an old replay or extreme reordering.
    #[error("datagram from {sender:?} is older than the replay window")]
    TooOld {
        /// The authenticated sender.
        sender: MemberId,
    },
}

/// Authenticates incoming datagrams and rejects replays. One per member.
///
/// It keeps, per authenticated sender, the current epoch, its key and a
/// sliding window of the counters seen ([`MAX_PEERS`] senders at most, least
/// recently heard evicted first), and remembers which claimed senders sent
/// forgeries ([`MAX_FORGED_SENDERS`] at most). Everything is allocated in
/// [`Opener::new`]; [`Opener::open`] never allocates.
pub struct Opener {
    key: GroupKey,
    me: MemberId,
    /// Authenticated senders; never longer than [`MAX_PEERS`]. A `Vec` with
    /// its capacity reserved up front rather than a `heapless::Vec`, which
    /// would put ~40 KiB inline in the `Opener` and on the stack on every move.
    peers: Vec<Peer>,
    /// Claimed senders of forgeries; never longer than [`MAX_FORGED_SENDERS`].
    forged: Vec<Forger>,
    /// Logical clock for least-recently-used eviction: one tick per datagram.
    tick: u64,
    /// Where the plaintext is decrypted, [`MAX_PLAINTEXT`] bytes.
    buf: Vec<u8>,
}

/// Replay state of one authenticated sender.
struct Peer {
    sender: MemberId,
    /// The greatest epoch accepted from this sender; earlier ones are stale.
    epoch: Epoch,
    /// Key of `(sender, epoch)`, kept so genuine traffic skips the derivation.
    cipher: ChaCha20Poly1305,
    window: Window,
    /// `Opener::tick` when last accepted from.
    used: u64,
}

/// Which key opens a datagram.
enum Opening {
    /// The cached key of the sender's current epoch, in `peers[i]`.
    Current(usize),
    /// A key derived for this datagram: the sender is unknown (`slot` is
    /// `None`) or the datagram names another epoch than its current one.
    Derived {
        slot: Option<usize>,
        cipher: ChaCha20Poly1305,
    },
}

/// A claimed sender of forgeries.
struct Forger {
    sender: MemberId,
    /// `Opener::tick` when last seen.
    used: u64,
}

impl Opener {
    /// An opener for member `me`, which rejects datagrams claiming to come
    /// from `me` ([`OpenError::Reflected`]).
    #[must_use]
    pub fn new(key: &GroupKey, me: MemberId) -> Opener {
        Opener {
            key: key.clone(),
            me,
            peers: Vec::with_capacity(MAX_PEERS),
            forged: Vec::with_capacity(MAX_FORGED_SENDERS),
            tick: 0,
            buf: vec![0; MAX_PLAINTEXT],
        }
    }

    /// Checks one received datagram and returns its plaintext. Never panics
    /// and never allocates, whatever the bytes.
    ///
    /// In order: the length and version (no cryptography yet), then the tag,
    /// under the cached key of the sender's current epoch or a freshly
    /// derived one; then, only for an authentic datagram, the sender (not
    /// ourselves), its epoch (not earlier than the current one; a later one
    /// replaces it and starts a fresh window) and its counter (within the
    /// window and not seen before). A datagram is accepted at most once.
    pub fn open(&mut self, datagram: &[u8]) -> Result<Opened<'_>, OpenError> {
        let len = datagram.len();
        if len > MAX_DATAGRAM {
            return Err(OpenError::Oversized(len));
        }
        let &version = datagram.first().ok_or(OpenError::Short(0))?;
        if let Some(about) = crate::refusal::about(datagram)
            && about == self.me
        {
            return Err(OpenError::Refused);
        }
        if version != VERSION {
            return Err(OpenError::Version(version));
        }
        if len < OVERHEAD {
            return Err(OpenError::Short(len));
        }
        let (header, rest) = datagram.split_at(HEADER_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let sender = MemberId(u64::from_le_bytes(field(header, 1)));
        let epoch = Epoch(u32::from_le_bytes(field(header, 9)));
        let counter = u64::from_le_bytes(field(header, 13));
        let tag = Tag::try_from(tag).expect("split off exactly TAG_LEN bytes");

        // Cannot overflow in practice (2^64 datagrams); saturating keeps
        // "never panics" true even so.
        self.tick = self.tick.saturating_add(1);
        let slot = self.peers.iter().position(|p| p.sender == sender);
        let opening = match slot {
            Some(i) if self.peers[i].epoch == epoch => Opening::Current(i),
            // At most one derivation per datagram; a forgery can cost this
            // but never evict a cached key.
            _ => Opening::Derived {
                slot,
                cipher: self.key.cipher(sender, epoch),
            },
        };
        let cipher = match &opening {
            Opening::Current(i) => &self.peers[*i].cipher,
            Opening::Derived { cipher, .. } => cipher,
        };
        let plain = &mut self.buf[..ciphertext.len()];
        plain.copy_from_slice(ciphertext);
        if cipher
            .decrypt_inout_detached(&nonce(counter), header, plain.into(), &tag)
            .is_err()
        {
            let first = self.note_forged(sender);
            return Err(OpenError::Forged { sender, first });
        }

        // Authentic from here on: only now may replay state change.
        if sender == self.me {
            return Err(OpenError::Reflected);
        }
        let tick = self.tick;
        match opening {
            Opening::Current(i) => {
                let peer = &mut self.peers[i];
                peer.window
                    .accept(counter)
                    .map_err(|reject| reject.error(sender))?;
                peer.used = tick;
            }
            Opening::Derived {
                slot: Some(i),
                cipher,
            } => {
                let peer = &mut self.peers[i];
                if epoch < peer.epoch {
                    return Err(OpenError::StaleEpoch { sender });
                }
                // A new run of the sender: its old key and window go.
                *peer = Peer::new(sender, epoch, cipher, counter, tick);
            }
            Opening::Derived { slot: None, cipher } => {
                let peer = Peer::new(sender, epoch, cipher, counter, tick);
                insert_lru(&mut self.peers, MAX_PEERS, peer, |p| p.used);
            }
        }
        Ok(Opened {
            sender,
            epoch,
            counter,
            plaintext: &self.buf[..ciphertext.len()],
        })
    }

    /// Remembers a forgery claiming to come from `sender`; true if that
    /// claimed sender was not remembered yet.
    fn note_forged(&mut self, sender: MemberId) -> bool {
        let tick = self.tick;
        if let Some(f) = self.forged.iter_mut().find(|f| f.sender == sender) {
            f.used = tick;
            return false;
        }
        let forger = Forger { sender, used: tick };
        insert_lru(&mut self.forged, MAX_FORGED_SENDERS, forger, |f| f.used);
        true
    }
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("me", &self.me)
            .field("peers", &self.peers.len())
            .field("forged", &self.forged.len())
            .finish_non_exhaustive()
    }
}

impl Peer {
    fn new(
        sender: MemberId,
        epoch: Epoch,
        cipher: ChaCha20Poly1305,
        counter: u64,
        tick: u64,
    ) -> Peer {
        Peer {
            sender,
            epoch,
            cipher,
            window: Window::starting_at(counter),
            used: tick,
        }
    }
}

/// Pushes `item`, or replaces the least recently used entry when `list`
/// already holds `cap` items, so `list` never grows past `cap` (nor
/// reallocates, its capacity being reserved up front).
fn insert_lru<T>(list: &mut Vec<T>, cap: usize, item: T, used: impl Fn(&T) -> u64) {
    if list.len() < cap {
        list.push(item);
    } else if let Some(oldest) = list.iter_mut().min_by_key(|x| used(x)) {
        *oldest = item;
    }
}

/// The counters seen from one sender in one epoch, as in WireGuard (and RFC
/// 6479): the highest counter accepted, and a ring of 2048 bits in which bit
/// `c % 2048` records counter `c`. Counters more than [`REPLAY_WINDOW`]
/// below the highest are refused outright, which keeps every remembered bit
/// unambiguous; moving the highest counter forward clears the words it
/// passes over, so the work per datagram is bounded by the ring's 32 words.
///
/// Invariant: bits of counters above `highest` are zero.
struct Window {
    highest: u64,
    words: [u64; WINDOW_WORDS],
}

/// Why a window refused a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reject {
    Replayed,
    TooOld,
}

impl Reject {
    fn error(self, sender: MemberId) -> OpenError {
        match self {
            Reject::Replayed => OpenError::Replayed { sender },
            Reject::TooOld => OpenError::TooOld { sender },
        }
    }
}

impl Window {
    /// A window in which only `counter` has been seen.
    fn starting_at(counter: u64) -> Window {
        let mut window = Window {
            highest: counter,
            words: [0; WINDOW_WORDS],
        };
        window.mark(counter);
        window
    }

    /// Accepts `counter` if it is new and within the window, and records it.
    fn accept(&mut self, counter: u64) -> Result<(), Reject> {
        if counter > self.highest {
            let from = self.highest / 64;
            let to = counter / 64;
            // Words strictly after the highest's word, up to the counter's,
            // hold bits of counters not seen yet (or too old): clear them.
            let passed = (to - from).min(WINDOW_WORDS as u64);
            for i in 1..=passed {
                self.words[word_index(from + i)] = 0;
            }
            self.highest = counter;
        } else if self.highest - counter >= REPLAY_WINDOW {
            return Err(Reject::TooOld);
        } else if self.words[word_index(counter / 64)] & bit(counter) != 0 {
            return Err(Reject::Replayed);
        }
        self.mark(counter);
        Ok(())
    }

    fn mark(&mut self, counter: u64) {
        self.words[word_index(counter / 64)] |= bit(counter);
    }
}

/// Position in the ring of the word holding counters `64 * word ..`.
fn word_index(word: u64) -> usize {
    (word % WINDOW_WORDS as u64) as usize
}

/// Mask of a counter's bit within its word.
fn bit(counter: u64) -> u64 {
    1 << (counter % 64)
}

/// The cleartext header of a sealed datagram.
fn header_bytes(sender: MemberId, epoch: Epoch, counter: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = VERSION;
    h[1..9].copy_from_slice(&sender.0.to_le_bytes());
    h[9..13].copy_from_slice(&epoch.0.to_le_bytes());
    h[13..21].copy_from_slice(&counter.to_le_bytes());
    h
}

/// `N` header bytes starting at `at`.
fn field<const N: usize>(header: &[u8], at: usize) -> [u8; N] {
    header[at..at + N]
        .try_into()
        .expect("header fields lie within HEADER_LEN, checked before parsing")
}

/// The AEAD nonce of a counter: four zero bytes, then the counter (u64 LE).
/// Unique per key because each `(sender, epoch)` has its own key and its
/// sealer never repeats a counter.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::from(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 32 bytes 0x00..=0x1f.
    fn secret() -> [u8; 32] {
        core::array::from_fn(|i| i as u8)
    }

    fn key() -> GroupKey {
        GroupKey::new(&secret()).expect("32 bytes is long enough")
    }

    const ALICE: MemberId = MemberId(0xA11CE);
    const BOB: MemberId = MemberId(0xB0B);

    fn seal(sealer: &mut Sealer, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        sealer.seal(plaintext, &mut out).expect("small plaintext");
        out
    }

    /// Opens and copies the result out of the opener's buffer.
    fn open(
        opener: &mut Opener,
        datagram: &[u8],
    ) -> Result<(MemberId, Epoch, u64, Vec<u8>), OpenError> {
        opener
            .open(datagram)
            .map(|o| (o.sender, o.epoch, o.counter, o.plaintext.to_vec()))
    }

    /// `n` datagrams from ALICE in `epoch`, counters 0..n.
    fn alice_datagrams(epoch: u32, n: usize) -> Vec<Vec<u8>> {
        let mut sealer = Sealer::new(&key(), ALICE, Epoch(epoch));
        (0..n)
            .map(|i| seal(&mut sealer, &i.to_le_bytes()))
            .collect()
    }

    /// The format is pinned: a change to these bytes is a protocol change
    /// and needs a new `VERSION`. Cross-checked against an independent
    /// implementation (Python `cryptography`: HKDF-SHA256, ChaCha20Poly1305).
    #[test]
    fn pinned_sealed_bytes() {
        let mut sealer = Sealer::new(&key(), MemberId(0x0102_0304_0506_0708), Epoch(0x0a0b_0c0d));
        sealer.next = 42;
        let bytes = seal(&mut sealer, b"\x01autoharmonize");
        #[rustfmt::skip]
        let expected = [
            0x04, // version (authenticated: part of the AEAD's associated data)
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, // sender
            0x0d, 0x0c, 0x0b, 0x0a, // epoch
            0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // counter
            0x5c, 0xa2, 0xe5, 0x48, 0x4e, 0xf5, 0x26, 0xbc, // ciphertext
            0x1a, 0x74, 0x28, 0xa8, 0x18, 0x96,
            0x51, 0xfb, 0xba, 0x62, 0x9b, 0x65, 0x74, 0xd2, // tag
            0x2a, 0x32, 0x1a, 0xbf, 0xb6, 0xf0, 0x8d, 0x38,
        ];
        assert_eq!(bytes, expected);
        let mut opener = Opener::new(&key(), BOB);
        assert_eq!(
            open(&mut opener, &bytes),
            Ok((
                MemberId(0x0102_0304_0506_0708),
                Epoch(0x0a0b_0c0d),
                42,
                b"\x01autoharmonize".to_vec()
            ))
        );
    }

    #[test]
    fn round_trip() {
        let mut sealer = Sealer::new(&key(), ALICE, Epoch(3));
        let mut opener = Opener::new(&key(), BOB);
        let mut out = Vec::new();
        for (i, text) in [&b""[..], b"\x01hello", &[0xff; MAX_PLAINTEXT]]
            .into_iter()
            .enumerate()
        {
            sealer.seal(text, &mut out).expect("fits");
            assert_eq!(out.len(), text.len() + OVERHEAD);
            assert!(out.len() <= MAX_DATAGRAM);
            let opened = opener.open(&out).expect("genuine");
            assert_eq!(opened.sender, ALICE);
            assert_eq!(opened.epoch, Epoch(3));
            assert_eq!(opened.counter, i as u64);
            assert_eq!(opened.plaintext, text);
        }
        // The plaintext does not appear in clear.
        sealer.seal(b"\x01secret words", &mut out).expect("fits");
        assert!(!out.windows(12).any(|w| w == b"secret words"));
    }

    #[test]
    fn largest_message_fits_sealed() {
        let mut sealer = Sealer::new(&key(), ALICE, Epoch(1));
        let mut out = vec![7; 3];
        assert_eq!(
            sealer.seal(&[0; MAX_PLAINTEXT + 1], &mut out),
            Err(SealError::TooLong(MAX_PLAINTEXT + 1))
        );
        assert_eq!(out, [7; 3], "a refused seal leaves the buffer alone");
        sealer
            .seal(&[0; MAX_MESSAGE_SIZE], &mut out)
            .expect("every message fits");
        assert!(out.len() <= MAX_DATAGRAM);
        // The refused datagram did not use up a counter.
        assert_eq!(
            Opener::new(&key(), BOB).open(&out).map(|o| o.counter),
            Ok(0)
        );
    }

    #[test]
    fn short_secret_refused() {
        assert_eq!(
            GroupKey::new(&[1; 15]).err(),
            Some(SecretError::TooShort(15))
        );
        assert!(GroupKey::new(&[1; MIN_SECRET_LEN]).is_ok());
        assert_eq!(format!("{:?}", key()), "GroupKey(..)");
    }

    #[test]
    fn wrong_secret_rejected_and_reported_once() {
        let mut opener = Opener::new(&key(), BOB);
        let other = GroupKey::new(b"another room's secret").expect("long enough");
        let mut sealer = Sealer::new(&other, ALICE, Epoch(1));
        let forged = |first| {
            Err(OpenError::Forged {
                sender: ALICE,
                first,
            })
        };
        assert_eq!(
            open(&mut opener, &seal(&mut sealer, b"\x01hi")),
            forged(true)
        );
        assert_eq!(
            open(&mut opener, &seal(&mut sealer, b"\x01hi")),
            forged(false)
        );
        // The failure left no replay state behind: the genuine ALICE is heard.
        assert!(opener.peers.is_empty());
        assert_eq!(opener.forged.len(), 1);
        let genuine = alice_datagrams(1, 1);
        assert_eq!(open(&mut opener, &genuine[0]).map(|o| o.2), Ok(0));
    }

    #[test]
    fn a_refusal_notice_is_reported_only_to_the_member_it_names() {
        let mut alice = Opener::new(&key(), ALICE);
        let notice = crate::refusal::notice(ALICE);
        assert_eq!(open(&mut alice, &notice), Err(OpenError::Refused));
        // About someone else: not ours, and no state either way.
        assert_eq!(
            open(&mut alice, &crate::refusal::notice(BOB)),
            Err(OpenError::Version(crate::refusal::MARK))
        );
        assert!(alice.peers.is_empty() && alice.forged.is_empty());
        // A sealed datagram from ALICE is never read as a notice.
        let mut bob = Opener::new(&key(), BOB);
        assert!(open(&mut bob, &alice_datagrams(1, 1)[0]).is_ok());
    }

    #[test]
    fn every_bit_flip_rejected() {
        let datagram = alice_datagrams(5, 1).remove(0);
        let mut opener = Opener::new(&key(), BOB);
        for i in 0..datagram.len() {
            for b in 0..8 {
                let mut bad = datagram.clone();
                bad[i] ^= 1 << b;
                let err = opener.open(&bad).expect_err("altered datagram");
                if i == 0 {
                    assert_eq!(err, OpenError::Version(VERSION ^ (1 << b)));
                } else {
                    assert!(
                        matches!(err, OpenError::Forged { .. }),
                        "byte {i} bit {b}: {err:?}"
                    );
                }
            }
        }
        assert!(opener.peers.is_empty());
        // The untouched datagram is still accepted: nothing was consumed.
        assert!(opener.open(&datagram).is_ok());
    }

    #[test]
    fn every_truncation_and_extension_rejected() {
        let datagram = alice_datagrams(5, 1).remove(0);
        let mut opener = Opener::new(&key(), BOB);
        for len in 0..datagram.len() {
            let err = opener.open(&datagram[..len]).expect_err("truncated");
            if len < OVERHEAD {
                assert_eq!(err, OpenError::Short(len));
            } else {
                assert!(
                    matches!(err, OpenError::Forged { sender: ALICE, .. }),
                    "{len}: {err:?}"
                );
            }
        }
        let mut longer = datagram.clone();
        longer.push(0);
        assert!(matches!(
            opener.open(&longer),
            Err(OpenError::Forged { .. })
        ));
        assert!(opener.open(&datagram).is_ok());
    }

    #[test]
    fn length_and_version_checked_first() {
        let mut opener = Opener::new(&key(), BOB);
        assert_eq!(opener.open(&[]), Err(OpenError::Short(0)));
        assert_eq!(
            opener.open(&[VERSION; OVERHEAD - 1]),
            Err(OpenError::Short(OVERHEAD - 1))
        );
        assert_eq!(
            opener.open(&[VERSION + 1; 60]),
            Err(OpenError::Version(VERSION + 1))
        );
        assert_eq!(
            opener.open(&[VERSION; MAX_DATAGRAM + 1]),
            Err(OpenError::Oversized(MAX_DATAGRAM + 1))
        );
        // None of these counted as a forgery.
        assert!(opener.forged.is_empty());
    }

    #[test]
    fn replay_rejected() {
        let datagrams = alice_datagrams(1, 2);
        let mut opener = Opener::new(&key(), BOB);
        assert!(opener.open(&datagrams[0]).is_ok());
        assert_eq!(
            opener.open(&datagrams[0]),
            Err(OpenError::Replayed { sender: ALICE })
        );
        assert!(opener.open(&datagrams[1]).is_ok());
        assert_eq!(
            opener.open(&datagrams[0]),
            Err(OpenError::Replayed { sender: ALICE })
        );
        assert_eq!(
            opener.open(&datagrams[1]),
            Err(OpenError::Replayed { sender: ALICE })
        );
    }

    #[test]
    fn out_of_order_within_window_accepted_once() {
        let n = REPLAY_WINDOW as usize;
        let datagrams = alice_datagrams(1, n);
        let mut opener = Opener::new(&key(), BOB);
        // Newest first, then every older one (all within the window), then
        // the whole lot again.
        for d in datagrams.iter().rev() {
            assert!(opener.open(d).is_ok());
        }
        for d in &datagrams {
            assert_eq!(opener.open(d), Err(OpenError::Replayed { sender: ALICE }));
        }
        // Interleaved: odd counters first, then the even ones.
        let datagrams = alice_datagrams(2, 300);
        for d in datagrams.iter().skip(1).step_by(2) {
            assert!(opener.open(d).is_ok());
        }
        for d in datagrams.iter().step_by(2) {
            assert!(opener.open(d).is_ok());
        }
        assert!(datagrams.iter().all(|d| opener.open(d).is_err()));
    }

    #[test]
    fn older_than_window_rejected() {
        let n = REPLAY_WINDOW as usize;
        let datagrams = alice_datagrams(1, n + 1);
        let mut opener = Opener::new(&key(), BOB);
        // Highest counter accepted: n. Counter n - REPLAY_WINDOW + 1 (= 1) is
        // the oldest still inside the window, counter 0 is just outside.
        assert!(opener.open(&datagrams[n]).is_ok());
        assert_eq!(
            opener.open(&datagrams[0]),
            Err(OpenError::TooOld { sender: ALICE })
        );
        assert_eq!(open(&mut opener, &datagrams[1]).map(|o| o.2), Ok(1));
        assert_eq!(
            opener.open(&datagrams[1]),
            Err(OpenError::Replayed { sender: ALICE })
        );
    }

    #[test]
    fn window_slides_and_forgets_old_bits() {
        let mut w = Window::starting_at(0);
        for c in 1..10_000u64 {
            assert_eq!(w.accept(c), Ok(()));
            // A counter seen one window ago must not alias a fresh one.
            if c >= REPLAY_WINDOW {
                assert_eq!(w.accept(c - REPLAY_WINDOW), Err(Reject::TooOld));
                assert_eq!(w.accept(c - REPLAY_WINDOW + 1), Err(Reject::Replayed));
            }
        }
        // A jump clears everything between: skipped counters are new.
        assert_eq!(w.accept(9_999 + 5_000), Ok(()));
        for c in (9_999 + 5_000 - REPLAY_WINDOW + 1)..(9_999 + 5_000) {
            assert_eq!(w.accept(c), Ok(()), "counter {c}");
        }
        // A jump by less than the ring keeps the bits still in the window.
        let mut w = Window::starting_at(100);
        assert_eq!(w.accept(100 + 64 * 3 + 5), Ok(()));
        assert_eq!(w.accept(100), Err(Reject::Replayed));
        assert_eq!(w.accept(101), Ok(()));
    }

    #[test]
    fn restart_with_new_epoch_accepted_old_epoch_rejected() {
        let old = alice_datagrams(7, 3);
        let new = alice_datagrams(8, 3);
        let mut opener = Opener::new(&key(), BOB);
        for d in &old[..2] {
            assert!(opener.open(d).is_ok());
        }
        // ALICE restarts: counters begin again at 0 under the new epoch.
        assert_eq!(
            open(&mut opener, &new[0]).map(|o| (o.1, o.2)),
            Ok((Epoch(8), 0))
        );
        // Every datagram of the old run is refused now, even one never seen.
        for d in &old {
            assert_eq!(opener.open(d), Err(OpenError::StaleEpoch { sender: ALICE }));
        }
        // The new run's window works as usual.
        assert_eq!(
            opener.open(&new[0]),
            Err(OpenError::Replayed { sender: ALICE })
        );
        assert!(opener.open(&new[2]).is_ok());
        assert!(opener.open(&new[1]).is_ok());
        assert_eq!(opener.peers.len(), 1);
        // A run with an earlier epoch than the current one is refused.
        let earlier = alice_datagrams(2, 1);
        assert_eq!(
            opener.open(&earlier[0]),
            Err(OpenError::StaleEpoch { sender: ALICE })
        );
    }

    #[test]
    fn counter_near_wrap() {
        let mut sealer = Sealer::new(&key(), ALICE, Epoch(1));
        let mut opener = Opener::new(&key(), BOB);
        let first = seal(&mut sealer, b"\x01a");
        assert!(opener.open(&first).is_ok());
        sealer.next = u64::MAX - 2;
        let a = seal(&mut sealer, b"\x01b");
        let b = seal(&mut sealer, b"\x01c");
        let mut out = Vec::new();
        assert_eq!(sealer.seal(b"\x01d", &mut out), Err(SealError::Exhausted));
        assert_eq!(sealer.seal(b"\x01d", &mut out), Err(SealError::Exhausted));
        assert!(out.is_empty());
        // Out of order at the top of the range, then far too old.
        assert_eq!(open(&mut opener, &b).map(|o| o.2), Ok(u64::MAX - 1));
        assert_eq!(open(&mut opener, &a).map(|o| o.2), Ok(u64::MAX - 2));
        assert_eq!(opener.open(&b), Err(OpenError::Replayed { sender: ALICE }));
        assert_eq!(
            opener.open(&first),
            Err(OpenError::TooOld { sender: ALICE })
        );
        // The window copes with the largest counter too.
        let mut w = Window::starting_at(u64::MAX - 1);
        assert_eq!(w.accept(u64::MAX), Ok(()));
        assert_eq!(w.accept(u64::MAX), Err(Reject::Replayed));
        assert_eq!(w.accept(0), Err(Reject::TooOld));
    }

    #[test]
    fn own_datagrams_reflected_back_rejected() {
        let mut opener = Opener::new(&key(), ALICE);
        let datagrams = alice_datagrams(1, 1);
        assert_eq!(opener.open(&datagrams[0]), Err(OpenError::Reflected));
        assert!(opener.peers.is_empty());
    }

    /// A datagram with a well-formed header claiming `sender`, and junk
    /// where the ciphertext and tag belong.
    fn fake(sender: u64, epoch: u32, counter: u64) -> Vec<u8> {
        let mut d = header_bytes(MemberId(sender), Epoch(epoch), counter).to_vec();
        d.extend_from_slice(&[0x5a; 40]);
        d
    }

    #[test]
    fn memory_bounded_under_forged_senders() {
        let mut opener = Opener::new(&key(), BOB);
        let genuine = alice_datagrams(1, 2);
        assert!(opener.open(&genuine[0]).is_ok());
        for i in 0..10_000u64 {
            let err = opener
                .open(&fake(1_000_000 + i, i as u32, i))
                .expect_err("forged");
            // Each invented id is new to the opener.
            assert_eq!(
                err,
                OpenError::Forged {
                    sender: MemberId(1_000_000 + i),
                    first: true
                }
            );
            // Forgeries under a genuine id, with a newer epoch, too.
            let err = opener
                .open(&fake(ALICE.0, 2 + i as u32, i))
                .expect_err("forged");
            assert!(matches!(err, OpenError::Forged { sender: ALICE, .. }));
            assert!(opener.forged.len() <= MAX_FORGED_SENDERS);
        }
        assert_eq!(opener.forged.len(), MAX_FORGED_SENDERS);
        assert_eq!(opener.forged.capacity(), MAX_FORGED_SENDERS);
        // No forgery created or displaced replay state.
        assert_eq!(opener.peers.len(), 1);
        assert_eq!(opener.peers[0].epoch, Epoch(1));
        assert_eq!(
            opener.open(&genuine[0]),
            Err(OpenError::Replayed { sender: ALICE })
        );
        assert!(opener.open(&genuine[1]).is_ok());
    }

    #[test]
    fn memory_bounded_under_many_genuine_senders() {
        let key = key();
        let mut opener = Opener::new(&key, BOB);
        let mut out = Vec::new();
        for i in 0..10_000u64 {
            Sealer::new(&key, MemberId(1_000_000 + i), Epoch(1))
                .seal(b"\x01hi", &mut out)
                .expect("fits");
            assert!(opener.open(&out).is_ok());
            assert!(opener.peers.len() <= MAX_PEERS);
        }
        assert_eq!(opener.peers.len(), MAX_PEERS);
        assert_eq!(opener.peers.capacity(), MAX_PEERS);
        // The most recent senders are the ones kept.
        let kept: Vec<u64> = opener.peers.iter().map(|p| p.sender.0).collect();
        assert!(kept.iter().all(|&id| id >= 1_010_000 - MAX_PEERS as u64));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_open(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let mut opener = Opener::new(&key(), BOB);
            prop_assert!(opener.open(&bytes).is_err());
            prop_assert!(opener.peers.is_empty());
        }

        #[test]
        fn arbitrary_bodies_never_open(
            sender in any::<u64>(),
            epoch in any::<u32>(),
            counter in any::<u64>(),
            body in proptest::collection::vec(any::<u8>(), 0..1200),
        ) {
            let mut opener = Opener::new(&key(), BOB);
            let mut bytes = header_bytes(MemberId(sender), Epoch(epoch), counter).to_vec();
            bytes.extend_from_slice(&body);
            prop_assert!(opener.open(&bytes).is_err());
            prop_assert!(opener.peers.is_empty());
        }

        #[test]
        fn mutated_datagrams_never_open(
            plaintext in proptest::collection::vec(any::<u8>(), 0..200),
            flips in proptest::collection::vec((any::<usize>(), 1..=255u8), 1..8),
        ) {
            let mut sealer = Sealer::new(&key(), ALICE, Epoch(1));
            let mut opener = Opener::new(&key(), BOB);
            let datagram = seal(&mut sealer, &plaintext);
            let mut bad = datagram.clone();
            for (at, x) in flips {
                bad[at % datagram.len()] ^= x;
            }
            if bad != datagram {
                prop_assert!(opener.open(&bad).is_err());
            }
            prop_assert_eq!(opener.open(&datagram).map(|o| o.plaintext.to_vec()), Ok(plaintext));
        }
    }
}
