//! The speaker's media library: the track folders it holds, each with its
//! content identity, so the room can name a track and find who holds a stem.
//!
//! The library is the media directory (`media_dir`): a folder of track
//! folders (or a track folder itself), each a folder of stem files with an
//! optional `track.toml`, as [`Track::open`] reads them. The `track` option
//! names the track a room founded by this speaker starts with; a path
//! outside the media directory adds that folder to the library. Without
//! it, the media directory's first track folder is that track
//! ([`Library::first_folder`]), found by the same scan: start-up reads the
//! media directory once.
//!
//! For every stem the library computes its [`Manifest`] (streaming, in
//! [`CHUNK_SIZE`] pieces) and [`StemHash`], and for every track its
//! [`TrackId`] and length (frames at the timeline rate, the longest stem).
//! Hashing and measuring a file costs a full read (and, for a container
//! that does not state its length, a full decode), so the results are
//! cached in the state directory keyed by (path, size, modification time):
//! a restart with unchanged files reads no audio. Manifests are kept there
//! too, one file per stem hash, for peers that fetch chunks (issue 8).
//!
//! Invariant: a [`LibraryTrack`]'s description is consistent (its stems
//! hash to its id) and each of its stems names a file whose content had
//! that hash when it was scanned. A folder or stem that cannot be read is
//! left out and reported in [`Library::problems`], never fatal: a speaker
//! with a broken library still joins the room and plays what it can.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use autoharmonize_protocol::catalogue::{StemInfo, TrackInfo, bounded};
use autoharmonize_protocol::content::{CHUNK_SIZE, Manifest, ManifestBuilder, StemHash, TrackId};
use autoharmonize_protocol::transport::{Frames, TIMELINE_RATE};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::audio::decode::{AudioSource as _, StemDecoder};
use crate::audio::track::Track;

/// The cache's folder inside the state directory.
const CACHE_DIR: &str = "library";
/// The cache index's file name.
const CACHE_INDEX: &str = "index.json";
/// Manifests' folder inside the cache folder.
const MANIFESTS: &str = "manifests";
/// Most track folders scanned in one library: more is not a speaker's
/// library but a mistake (a whole disk given as `media_dir`).
pub const MAX_TRACKS: usize = autoharmonize_protocol::catalogue::MAX_HELD_TRACKS;

/// One stem file of a track in the library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StemFile {
    /// Channel name.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its content identity.
    pub hash: StemHash,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its length in timeline frames.
    pub frames: Frames,
}

/// A track this speaker holds.
#[derive(Clone, Debug)]
pub struct LibraryTrack {
    /// The folder, checked.
    pub track: Track,
    /// Its stems, in channel order.
    pub stems: Vec<StemFile>,
    /// Its description as the catalogue carries it.
    pub info: TrackInfo,
}

impl LibraryTrack {
    /// The track's id.
    #[must_use]
    pub fn id(&self) -> TrackId {
        self.info.id
    }
}

/// The speaker's library (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct Library {
    tracks: Vec<LibraryTrack>,
    problems: Vec<String>,
    manifests: Option<PathBuf>,
    first_folder: Option<PathBuf>,
}

/// What the cache remembers of one file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct CacheEntry {
    size: u64,
    mtime_ns: u128,
    hash: String,
    frames: u64,
}

/// The cache index: file path → what it held.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheIndex {
    files: BTreeMap<String, CacheEntry>,
}

impl Library {
    /// Scans `media_dir` (a folder of track folders, or one track folder)
    /// plus `extra` track folders, caching in `state_dir/library`.
    /// Unreadable folders and files are reported in [`Library::problems`].
    #[must_use]
    pub fn open(media_dir: &Path, extra: &[PathBuf], state_dir: &Path) -> Library {
        let mut problems = Vec::new();
        // Folders to read, with the track already opened when it is the
        // media directory itself: one listing of the media directory says
        // whether it is a track (it holds stems) or a folder of tracks.
        let mut dirs: Vec<(PathBuf, Option<Track>)> = Vec::new();
        match std::fs::read_dir(media_dir) {
            Ok(entries) => {
                let entries: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                if let Ok(track) = Track::from_entries(media_dir, &entries) {
                    dirs.push((media_dir.to_owned(), Some(track)));
                } else {
                    let mut found: Vec<PathBuf> =
                        entries.into_iter().filter(|p| p.is_dir()).collect();
                    found.sort();
                    dirs.extend(found.into_iter().map(|d| (d, None)));
                }
            }
            Err(e) => problems.push(format!(
                "cannot read the media directory {}: {e}",
                media_dir.display()
            )),
        }
        let in_media_dir = dirs.len();
        for d in extra {
            if !dirs.iter().any(|(known, _)| known == d) {
                dirs.push((d.clone(), None));
            }
        }
        if dirs.len() > MAX_TRACKS {
            problems.push(format!(
                "{} folders in {}: only the first {MAX_TRACKS} are read",
                dirs.len(),
                media_dir.display()
            ));
            dirs.truncate(MAX_TRACKS);
        }
        let cache_dir = state_dir.join(CACHE_DIR);
        let manifests = cache_dir.join(MANIFESTS);
        let cache_ok = std::fs::create_dir_all(&manifests)
            .map_err(|e| {
                warn!(
                    dir = %manifests.display(),
                    "cannot create the library cache ({e}); every start will hash the stems again"
                );
            })
            .is_ok();
        let index_path = cache_dir.join(CACHE_INDEX);
        let old = read_index(&index_path);
        let mut index = CacheIndex::default();
        let mut tracks = Vec::new();
        let mut hashed = 0usize;
        let mut first_folder = None;
        for (i, (dir, opened)) in dirs.into_iter().enumerate() {
            let track = match opened.map_or_else(|| Track::open(&dir), Ok) {
                Ok(t) => t,
                Err(e) => {
                    // A folder of non-audio files in the library is not a
                    // problem worth a warning; a broken track is.
                    debug!("{}: not a track: {e}", dir.display());
                    if has_audio(&dir) {
                        problems.push(format!("{e}"));
                    }
                    continue;
                }
            };
            if i < in_media_dir && first_folder.is_none() {
                first_folder = Some(dir);
            }
            match scan_track(
                track,
                &old,
                &mut index,
                cache_ok.then_some(manifests.as_path()),
                &mut hashed,
            ) {
                Ok(t) => tracks.push(t),
                Err(p) => problems.push(p),
            }
        }
        if cache_ok && let Err(e) = write_index(&index_path, &index) {
            warn!(file = %index_path.display(), "cannot write the library cache: {e}");
        }
        // Same content in two folders is one track.
        tracks.sort_by(|a: &LibraryTrack, b: &LibraryTrack| {
            (a.info.title.as_str(), a.id()).cmp(&(b.info.title.as_str(), b.id()))
        });
        let mut seen = std::collections::BTreeSet::new();
        tracks.retain(|t| seen.insert(t.id()));
        for p in &problems {
            warn!("library: {p}");
        }
        info!(
            tracks = tracks.len(),
            stems_hashed = hashed,
            dir = %media_dir.display(),
            "library scanned"
        );
        Library {
            tracks,
            problems,
            manifests: cache_ok.then_some(manifests),
            first_folder,
        }
    }

    /// The media directory's first track folder in name order (the media
    /// directory itself if it holds stems), whether or not its stems could
    /// be read: the track a room founded by this speaker starts with when
    /// no `track` is configured. `None` if the media directory holds no
    /// track folder (among the first [`MAX_TRACKS`]) or cannot be read.
    #[must_use]
    pub fn first_folder(&self) -> Option<&Path> {
        self.first_folder.as_deref()
    }

    /// The tracks, by title.
    #[must_use]
    pub fn tracks(&self) -> &[LibraryTrack] {
        &self.tracks
    }

    /// What could not be read.
    #[must_use]
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// The track with this id, if held.
    #[must_use]
    pub fn get(&self, id: TrackId) -> Option<&LibraryTrack> {
        self.tracks.iter().find(|t| t.id() == id)
    }

    /// The track in folder `dir` (exact path, or a folder name).
    #[must_use]
    pub fn by_folder(&self, dir: &Path) -> Option<&LibraryTrack> {
        self.tracks
            .iter()
            .find(|t| t.track.dir() == dir)
            .or_else(|| {
                self.tracks
                    .iter()
                    .find(|t| t.track.dir().file_name() == Some(dir.as_os_str()))
            })
    }

    /// What the catalogue announces: every track, with every stem held.
    #[must_use]
    pub fn holdings(&self) -> Vec<(TrackInfo, u8)> {
        self.tracks
            .iter()
            .map(|t| {
                let mask = u8::try_from((1u16 << t.stems.len()) - 1).unwrap_or(u8::MAX);
                (t.info.clone(), mask)
            })
            .collect()
    }

    /// The file holding the stem with this hash, if held.
    #[must_use]
    pub fn stem_file(&self, stem: StemHash) -> Option<&StemFile> {
        self.tracks
            .iter()
            .flat_map(|t| t.stems.iter())
            .find(|s| s.hash == stem)
    }

    /// The manifest of a held stem, from the cache (checked against the
    /// hash), or computed from the file if the cache lacks it.
    ///
    /// # Errors
    /// The stem is not held, or its file cannot be read.
    pub fn manifest(&self, stem: StemHash) -> Result<Manifest, String> {
        if let Some(dir) = &self.manifests
            && let Ok(bytes) = std::fs::read(dir.join(format!("{stem}.bin")))
            && let Ok(m) = Manifest::from_bytes(stem, &bytes)
        {
            return Ok(m);
        }
        let file = self
            .stem_file(stem)
            .ok_or_else(|| format!("stem {stem} is not in this speaker's library"))?;
        let m = hash_file(&file.path)?;
        if m.stem_hash() != stem {
            return Err(format!(
                "{} changed since it was scanned",
                file.path.display()
            ));
        }
        Ok(m)
    }
}

/// The folder the `track` option names: `track` itself if it is an
/// absolute path, else a folder of `media_dir`. Not checked: the library
/// scan says whether it is a usable track ([`Library::by_folder`]).
#[must_use]
pub fn configured_folder(media_dir: &Path, track: &str) -> PathBuf {
    let p = Path::new(track);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        media_dir.join(p)
    }
}

/// Whether `dir` holds any file with a stem extension (a broken track, as
/// opposed to an unrelated folder).
fn has_audio(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.path()
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| {
                    crate::audio::track::STEM_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str())
                })
        })
    })
}

fn read_index(path: &Path) -> CacheIndex {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(file = %path.display(), "library cache unreadable ({e}); rebuilding it");
            CacheIndex::default()
        }),
        Err(_) => CacheIndex::default(),
    }
}

fn write_index(path: &Path, index: &CacheIndex) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(index).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The track's stems hashed and measured (from the cache when the file is
/// unchanged), its id and description.
fn scan_track(
    track: Track,
    old: &CacheIndex,
    index: &mut CacheIndex,
    manifests: Option<&Path>,
    hashed: &mut usize,
) -> Result<LibraryTrack, String> {
    let mut stems = Vec::with_capacity(track.stems().len());
    for stem in track.stems() {
        let meta =
            std::fs::metadata(&stem.path).map_err(|e| format!("{}: {e}", stem.path.display()))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = stem.path.to_string_lossy().into_owned();
        let cached = old
            .files
            .get(&key)
            .filter(|e| e.size == meta.len() && e.mtime_ns == mtime_ns)
            .and_then(|e| Some((e.hash.parse::<StemHash>().ok()?, Frames(e.frames))))
            .filter(|(h, _)| manifests.is_none_or(|d| d.join(format!("{h}.bin")).is_file()));
        let (hash, frames) = match cached {
            Some(c) => c,
            None => {
                let manifest = hash_file(&stem.path)?;
                let hash = manifest.stem_hash();
                let frames = measure(&stem.path)?;
                *hashed += 1;
                if let Some(dir) = manifests {
                    let file = dir.join(format!("{hash}.bin"));
                    if let Err(e) = std::fs::write(&file, manifest.to_bytes()) {
                        warn!(file = %file.display(), "cannot cache a manifest: {e}");
                    }
                }
                (hash, frames)
            }
        };
        index.files.insert(
            key,
            CacheEntry {
                size: meta.len(),
                mtime_ns,
                hash: hash.to_string(),
                frames: frames.0,
            },
        );
        stems.push(StemFile {
            name: stem.name.clone(),
            path: stem.path.clone(),
            hash,
            bytes: meta.len(),
            frames,
        });
    }
    let stem_infos: heapless::Vec<StemInfo, { autoharmonize_protocol::transport::MAX_CHANNELS }> =
        stems
            .iter()
            .map(|s| StemInfo {
                name: bounded(&s.name),
                hash: s.hash,
            })
            .collect();
    // The id covers the names as they travel (cut to the wire's bound), so
    // a receiver can check it.
    let id = TrackId::of(stem_infos.iter().map(|s| (s.name.as_str(), s.hash)));
    let length = stems.iter().map(|s| s.frames).max().unwrap_or(Frames::ZERO);
    let info = TrackInfo {
        id,
        title: bounded(track.title()),
        length,
        stems: stem_infos,
    };
    Ok(LibraryTrack { track, stems, info })
}

/// The manifest of a file, read in chunk-sized pieces.
/// The manifest of the stem file at `path`, read in chunk-sized pieces.
///
/// # Errors
/// The file cannot be read (the message names it).
pub fn hash_file(path: &Path) -> Result<Manifest, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut builder = ManifestBuilder::default();
    let mut buf = vec![0u8; usize::try_from(CHUNK_SIZE).unwrap_or(65_536)];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        builder.update(&buf[..n]);
    }
    Ok(builder.finish())
}

/// A stem's length in timeline frames: from the container if it says, else
/// by decoding it to the end.
fn measure(path: &Path) -> Result<Frames, String> {
    let mut dec = StemDecoder::open(path).map_err(|e| e.to_string())?;
    let rate = u64::from(dec.spec().rate.max(1));
    let file_frames = match dec.total_frames() {
        Some(n) => n,
        None => {
            let mut buf = vec![0f32; 4096 * usize::from(dec.spec().channels.max(1))];
            let mut n = 0u64;
            loop {
                let got = dec.read(&mut buf).map_err(|e| e.to_string())?;
                if got == 0 {
                    break;
                }
                n += got as u64;
            }
            n
        }
    };
    let frames = u128::from(file_frames) * u128::from(TIMELINE_RATE) / u128::from(rate);
    Ok(Frames(u64::try_from(frames).unwrap_or(u64::MAX)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Writes a 16-bit mono WAV of `frames` frames at `rate`.
    fn wav(path: &Path, rate: u32, frames: u32, seed: i16) {
        let data_len = frames * 2;
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * 2).to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        for i in 0..frames {
            let s = (i as i16).wrapping_mul(seed);
            b.extend_from_slice(&s.to_le_bytes());
        }
        std::fs::write(path, b).unwrap();
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "ah-library-{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn scans_tracks_hashes_stems_and_caches_them() {
        let root = tmp("scan");
        let media = root.join("media");
        let state = root.join("state");
        std::fs::create_dir_all(media.join("song")).unwrap();
        std::fs::create_dir_all(media.join("other")).unwrap();
        std::fs::create_dir_all(media.join("not-a-track")).unwrap();
        std::fs::write(media.join("not-a-track/readme.txt"), "x").unwrap();
        wav(&media.join("song/drums.wav"), 48_000, 48_000, 3);
        wav(&media.join("song/bass.wav"), 24_000, 36_000, 5); // 1.5 s
        std::fs::write(media.join("song/track.toml"), "title = \"A Song\"\n").unwrap();
        wav(&media.join("other/vox.wav"), 48_000, 4_800, 7);

        let lib = Library::open(&media, &[], &state);
        assert!(lib.problems().is_empty(), "{:?}", lib.problems());
        let titles: Vec<&str> = lib.tracks().iter().map(|t| t.info.title.as_str()).collect();
        assert_eq!(titles, ["A Song", "other"]);
        // By folder name, not title; a folder without stems is skipped.
        assert_eq!(lib.first_folder(), Some(media.join("other").as_path()));
        let song = &lib.tracks()[0];
        assert!(song.info.is_consistent());
        let names: Vec<&str> = song.info.stems.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["bass", "drums"]);
        // The 24 kHz stem lasts 1.5 s: 72 000 timeline frames, the longest.
        assert_eq!(song.stems[0].frames, Frames(72_000));
        assert_eq!(song.stems[1].frames, Frames(48_000));
        assert_eq!(song.info.length, Frames(72_000));
        let bytes = std::fs::read(media.join("song/drums.wav")).unwrap();
        assert_eq!(song.stems[1].hash, Manifest::of(&bytes).stem_hash());
        assert_eq!(
            lib.get(song.id()).map(|t| t.info.title.as_str()),
            Some("A Song")
        );
        assert_eq!(
            lib.by_folder(Path::new("song")).map(LibraryTrack::id),
            Some(song.id())
        );
        let drums = song.stems[1].hash;
        assert_eq!(lib.manifest(drums).unwrap(), Manifest::of(&bytes));
        assert_eq!(lib.holdings()[0].1, 0b11);

        // The cache is used: a stale entry with the right key is believed.
        let index_path = state.join(CACHE_DIR).join(CACHE_INDEX);
        let mut index = read_index(&index_path);
        assert_eq!(index.files.len(), 3);
        let key = media.join("song/drums.wav").to_string_lossy().into_owned();
        index.files.get_mut(&key).unwrap().frames = 12_345;
        write_index(&index_path, &index).unwrap();
        let again = Library::open(&media, &[], &state);
        assert_eq!(again.tracks()[0].stems[1].frames, Frames(12_345));
        // A changed file (size) is hashed again.
        wav(&media.join("song/drums.wav"), 48_000, 96_000, 3);
        let changed = Library::open(&media, &[], &state);
        assert_eq!(changed.tracks()[0].stems[1].frames, Frames(96_000));
        assert_ne!(changed.tracks()[0].id(), song.id(), "new content, new id");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_broken_track_is_reported_and_the_rest_kept() {
        let root = tmp("broken");
        let media = root.join("media");
        std::fs::create_dir_all(media.join("good")).unwrap();
        std::fs::create_dir_all(media.join("bad")).unwrap();
        wav(&media.join("good/a.wav"), 48_000, 480, 1);
        std::fs::write(media.join("bad/a.wav"), b"not audio").unwrap();
        let lib = Library::open(&media, &[], &root.join("state"));
        assert_eq!(lib.tracks().len(), 1);
        assert_eq!(lib.problems().len(), 1, "{:?}", lib.problems());
        assert!(lib.problems()[0].contains("a.wav"), "{:?}", lib.problems());
        // The first track folder stays the default even when its stems
        // cannot be read: the speaker says so rather than pick another.
        assert_eq!(lib.first_folder(), Some(media.join("bad").as_path()));
        assert!(lib.by_folder(&media.join("bad")).is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_media_dir_that_is_a_track_is_a_one_track_library() {
        let root = tmp("single");
        wav(&root.join("x.wav"), 48_000, 480, 1);
        let lib = Library::open(&root, &[], &root.join("state"));
        assert_eq!(lib.tracks().len(), 1);
        assert_eq!(lib.tracks()[0].info.length, Frames(480));
        assert_eq!(lib.first_folder(), Some(root.as_path()));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn no_first_folder_without_a_track_or_outside_the_media_dir() {
        let root = tmp("none");
        let state = root.join("state");
        let missing = Library::open(&root.join("missing"), &[], &state);
        assert_eq!(missing.first_folder(), None);
        assert!(missing.problems()[0].contains("cannot read the media directory"));
        let media = root.join("media");
        std::fs::create_dir_all(media.join("notes")).unwrap();
        let elsewhere = root.join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        wav(&elsewhere.join("x.wav"), 48_000, 480, 1);
        let lib = Library::open(&media, std::slice::from_ref(&elsewhere), &state);
        assert_eq!(lib.tracks().len(), 1, "the extra folder is read");
        assert_eq!(lib.first_folder(), None, "but is not the media's");
        assert!(lib.by_folder(&elsewhere).is_some());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_track_option_is_a_path_or_a_folder_of_the_media_dir() {
        let media = Path::new("/srv/media");
        assert_eq!(
            configured_folder(media, "song"),
            Path::new("/srv/media/song")
        );
        assert_eq!(configured_folder(media, "/mnt/x"), Path::new("/mnt/x"));
    }
}
