//! Content identity of stems and tracks: what "the same stem" means across
//! speakers.
//!
//! A speaker that lacks a stem fetches it from peers that hold it, and a room
//! agrees on which track plays, so both need a name for audio that does not
//! depend on file names or paths and that a forged copy cannot carry. The
//! name is a BLAKE3 hash, built in two levels so that each chunk of a stem can
//! be checked on arrival, before the whole file is there:
//!
//! - a stem file is cut into [`CHUNK_SIZE`] chunks (the last one shorter);
//! - its [`Manifest`] lists the file's length and the hash of every chunk;
//! - the [`StemHash`] is the hash of the manifest's canonical bytes, so a
//!   manifest received from anyone is checked against the stem hash, and each
//!   chunk against its entry in the manifest;
//! - the [`TrackId`] is a hash over the ordered list of the track's stems
//!   (name and stem hash): the same files under other folder names are the
//!   same track, and a changed stem makes a different track.
//!
//! Every hash is domain-separated (BLAKE3 `derive_key` contexts), so a chunk
//! can never be mistaken for a manifest or a track.

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

/// Bytes per chunk of a stem file: about 0.4 s of a 48 kHz stereo FLAC, a
/// unit small enough to fetch ahead of the playhead after a seek and large
/// enough that a 5-minute stem is a few hundred chunks.
pub const CHUNK_SIZE: u64 = 64 * 1024;

const CHUNK_CONTEXT: &str = "autoharmonize 2026-11 stem chunk";
const MANIFEST_CONTEXT: &str = "autoharmonize 2026-11 stem manifest";
const TRACK_CONTEXT: &str = "autoharmonize 2026-11 track";

/// The hash of one chunk of a stem file.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize)]
pub struct ChunkHash(pub [u8; 32]);

/// The identity of a stem file: the hash of its [`Manifest`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize)]
pub struct StemHash(pub [u8; 32]);

/// The identity of a track: a hash over its stems' names and hashes, cut to
/// 128 bits so that it fits in votes and heartbeats.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize)]
pub struct TrackId(pub [u8; 16]);

/// A stem file's length and the hash of each of its chunks, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Length of the file in bytes.
    pub len: u64,
    /// `ceil(len / CHUNK_SIZE)` chunk hashes.
    pub chunks: Vec<ChunkHash>,
}

/// Why a manifest's bytes were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not 8 + 32·n long.
    #[error("a manifest is 8 bytes of length and 32 per chunk; got {0} bytes")]
    Malformed(usize),
    /// The chunk count does not match the length.
    #[error("a {len}-byte file has {expected} chunks, the manifest lists {listed}")]
    WrongChunkCount {
        /// Declared file length.
        len: u64,
        /// Chunks that length needs.
        expected: u64,
        /// Chunks listed.
        listed: usize,
    },
    /// The manifest does not hash to the stem hash it was fetched for.
    #[error("the manifest does not match the stem hash it was fetched for")]
    WrongHash,
}

impl ChunkHash {
    /// The hash of `chunk`'s bytes.
    #[must_use]
    pub fn of(chunk: &[u8]) -> ChunkHash {
        ChunkHash(blake3::derive_key(CHUNK_CONTEXT, chunk))
    }
}

impl Manifest {
    /// The manifest of a whole file held in memory.
    #[must_use]
    pub fn of(bytes: &[u8]) -> Manifest {
        let mut builder = ManifestBuilder::default();
        builder.update(bytes);
        builder.finish()
    }

    /// How many chunks a file of `len` bytes has.
    #[must_use]
    pub const fn chunk_count(len: u64) -> u64 {
        len.div_ceil(CHUNK_SIZE)
    }

    /// The byte range `[start, end)` of chunk `i` in the file, if it has it.
    #[must_use]
    pub fn chunk_range(&self, i: u64) -> Option<(u64, u64)> {
        let start = i.checked_mul(CHUNK_SIZE)?;
        (start < self.len).then(|| (start, (start + CHUNK_SIZE).min(self.len)))
    }

    /// Whether `bytes` are chunk `i` of this file (right length and hash).
    #[must_use]
    pub fn verify_chunk(&self, i: u64, bytes: &[u8]) -> bool {
        let Some((start, end)) = self.chunk_range(i) else {
            return false;
        };
        let Some(expected) = usize::try_from(i).ok().and_then(|i| self.chunks.get(i)) else {
            return false;
        };
        bytes.len() as u64 == end - start && ChunkHash::of(bytes) == *expected
    }

    /// The canonical bytes: the length as little-endian `u64`, then each
    /// chunk hash. This is what the stem hash covers and what travels.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.chunks.len());
        out.extend_from_slice(&self.len.to_le_bytes());
        for c in &self.chunks {
            out.extend_from_slice(&c.0);
        }
        out
    }

    /// Parses canonical bytes received for `stem`, checking that they hash
    /// to it and that the chunk count matches the length.
    ///
    /// # Errors
    /// [`ManifestError`] if the bytes are malformed or not `stem`'s manifest.
    pub fn from_bytes(stem: StemHash, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        if bytes.len() < 8 || !(bytes.len() - 8).is_multiple_of(32) {
            return Err(ManifestError::Malformed(bytes.len()));
        }
        if StemHash(blake3::derive_key(MANIFEST_CONTEXT, bytes)) != stem {
            return Err(ManifestError::WrongHash);
        }
        let (len, rest) = bytes.split_at(8);
        let len = u64::from_le_bytes(len.try_into().unwrap_or([0; 8]));
        let chunks: Vec<ChunkHash> = rest
            .chunks_exact(32)
            .map(|c| ChunkHash(c.try_into().unwrap_or([0; 32])))
            .collect();
        let expected = Manifest::chunk_count(len);
        if chunks.len() as u64 != expected {
            return Err(ManifestError::WrongChunkCount {
                len,
                expected,
                listed: chunks.len(),
            });
        }
        Ok(Manifest { len, chunks })
    }

    /// The stem hash: the hash of [`Manifest::to_bytes`].
    #[must_use]
    pub fn stem_hash(&self) -> StemHash {
        StemHash(blake3::derive_key(MANIFEST_CONTEXT, &self.to_bytes()))
    }
}

/// Builds a [`Manifest`] from a file read in pieces of any size, so a large
/// stem is hashed without holding it in memory.
#[derive(Default)]
pub struct ManifestBuilder {
    len: u64,
    chunks: Vec<ChunkHash>,
    current: Vec<u8>,
}

impl ManifestBuilder {
    /// Feeds the next bytes of the file.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        let size = CHUNK_SIZE as usize;
        while !bytes.is_empty() {
            let take = (size - self.current.len()).min(bytes.len());
            self.current.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.current.len() == size {
                self.chunks.push(ChunkHash::of(&self.current));
                self.current.clear();
            }
        }
    }

    /// The manifest of everything fed so far.
    #[must_use]
    pub fn finish(mut self) -> Manifest {
        if !self.current.is_empty() {
            self.chunks.push(ChunkHash::of(&self.current));
        }
        Manifest {
            len: self.len,
            chunks: self.chunks,
        }
    }
}

impl TrackId {
    /// The id of a track whose stems, in channel order, have these names and
    /// hashes.
    #[must_use]
    pub fn of<'a>(stems: impl IntoIterator<Item = (&'a str, StemHash)>) -> TrackId {
        let mut h = blake3::Hasher::new_derive_key(TRACK_CONTEXT);
        for (name, hash) in stems {
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(&hash.0);
        }
        let full = h.finalize();
        let mut id = [0; 16];
        id.copy_from_slice(&full.as_bytes()[..16]);
        TrackId(id)
    }
}

/// Lower-case hex of `bytes`, for logs, file names and JSON.
fn hex(bytes: &[u8], f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Parses lower- or upper-case hex of exactly `N` bytes.
fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

macro_rules! hex_id {
    ($t:ident, $n:literal) => {
        impl core::fmt::Display for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                hex(&self.0, f)
            }
        }
        impl core::fmt::Debug for $t {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                write!(f, concat!(stringify!($t), "("))?;
                hex(&self.0, f)?;
                write!(f, ")")
            }
        }
        impl core::str::FromStr for $t {
            type Err = InvalidHex;
            fn from_str(s: &str) -> Result<Self, InvalidHex> {
                parse_hex::<$n>(s).map($t).ok_or(InvalidHex($n))
            }
        }
    };
}

/// A string that is not the hex form of an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected {} hex digits", 2 * .0)]
pub struct InvalidHex(usize);

hex_id!(ChunkHash, 32);
hex_id!(StemHash, 32);
hex_id!(TrackId, 16);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn chunk_counts_and_ranges() {
        let size = CHUNK_SIZE as usize;
        for (len, chunks) in [(0, 0), (1, 1), (size, 1), (size + 1, 2), (3 * size, 3)] {
            let m = Manifest::of(&file(len));
            assert_eq!(m.chunks.len(), chunks, "len {len}");
            assert_eq!(m.len, len as u64);
        }
        let m = Manifest::of(&file(size + 10));
        assert_eq!(m.chunk_range(0), Some((0, CHUNK_SIZE)));
        assert_eq!(m.chunk_range(1), Some((CHUNK_SIZE, CHUNK_SIZE + 10)));
        assert_eq!(m.chunk_range(2), None);
        assert_eq!(m.chunk_range(u64::MAX), None);
    }

    #[test]
    fn chunks_verify_and_tampering_is_caught() {
        let bytes = file(2 * CHUNK_SIZE as usize + 100);
        let m = Manifest::of(&bytes);
        let second = &bytes[CHUNK_SIZE as usize..2 * CHUNK_SIZE as usize];
        assert!(m.verify_chunk(1, second));
        assert!(!m.verify_chunk(0, second), "right bytes, wrong place");
        let mut forged = second.to_vec();
        forged[17] ^= 1;
        assert!(!m.verify_chunk(1, &forged));
        assert!(!m.verify_chunk(1, &second[..100]), "truncated");
        assert!(m.verify_chunk(2, &bytes[2 * CHUNK_SIZE as usize..]));
        assert!(!m.verify_chunk(3, &[]));
    }

    #[test]
    fn manifest_bytes_are_checked_against_the_stem_hash() {
        let m = Manifest::of(&file(200_000));
        let stem = m.stem_hash();
        let bytes = m.to_bytes();
        assert_eq!(Manifest::from_bytes(stem, &bytes).unwrap(), m);
        let mut forged = bytes.clone();
        forged[40] ^= 1;
        assert_eq!(
            Manifest::from_bytes(stem, &forged),
            Err(ManifestError::WrongHash)
        );
        assert_eq!(
            Manifest::from_bytes(stem, &bytes[..bytes.len() - 1]),
            Err(ManifestError::Malformed(bytes.len() - 1))
        );
        // A self-consistent hash over a lying length is still refused.
        let mut lying = bytes.clone();
        lying[..8].copy_from_slice(&1u64.to_le_bytes());
        let lying_hash = StemHash(blake3::derive_key(MANIFEST_CONTEXT, &lying));
        assert!(matches!(
            Manifest::from_bytes(lying_hash, &lying),
            Err(ManifestError::WrongChunkCount { .. })
        ));
    }

    #[test]
    fn track_id_depends_on_names_hashes_and_order() {
        let a = Manifest::of(&file(10)).stem_hash();
        let b = Manifest::of(&file(11)).stem_hash();
        let id = TrackId::of([("drums", a), ("bass", b)]);
        assert_eq!(id, TrackId::of([("drums", a), ("bass", b)]));
        assert_ne!(id, TrackId::of([("bass", b), ("drums", a)]));
        assert_ne!(id, TrackId::of([("drums", a), ("bass", a)]));
        assert_ne!(id, TrackId::of([("drum", a), ("sbass", b)]));
    }

    #[test]
    fn hex_round_trips() {
        let id = TrackId::of([("x", Manifest::of(b"x").stem_hash())]);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<TrackId>().unwrap(), id);
        assert!("zz".parse::<TrackId>().is_err());
        assert!(text[..31].parse::<TrackId>().is_err());
        assert!("é".repeat(16).parse::<TrackId>().is_err());
    }

    proptest! {
        #[test]
        fn pieces_of_any_size_give_the_same_manifest(
            len in 0usize..300_000,
            cuts in proptest::collection::vec(1usize..100_000, 0..8),
        ) {
            let bytes = file(len);
            let mut builder = ManifestBuilder::default();
            let mut rest: &[u8] = &bytes;
            for cut in cuts {
                let take = cut.min(rest.len());
                builder.update(&rest[..take]);
                rest = &rest[take..];
            }
            builder.update(rest);
            prop_assert_eq!(builder.finish(), Manifest::of(&bytes));
        }
    }
}
