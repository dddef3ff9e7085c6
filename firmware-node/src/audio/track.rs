//! A track: a folder of stem files (`drums.flac`, `bass.flac`, …) with an
//! optional `track.toml`, and the choice of which stem a speaker plays.
//!
//! Why a folder: every speaker of a room holds the same folder, and the
//! channel a speaker is configured for (a stem name, an index, or `all`)
//! picks its file. The stem *order* is what the protocol's channel indices
//! refer to (`Channel::Stem(i)`), so it must be the same on every member:
//! it is the order of `stems` in `track.toml`, or else the file names sorted
//! bytewise, never the directory's listing order.
//!
//! Invariant: a [`Track`] value holds between 1 and [`MAX_CHANNELS`] stems,
//! each name unique and each naming exactly one existing file with a
//! supported extension. Everything read from the folder is checked in
//! [`Track::open`] (or [`Track::from_entries`], for a folder already
//! listed); errors name the folder or file so a person can fix it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use autoharmonize_protocol::transport::MAX_CHANNELS;
use serde::Deserialize;

use super::decode::{AudioSource, DecodeError, Mixdown, StemDecoder};

/// The optional manifest's file name inside a track folder.
pub const MANIFEST: &str = "track.toml";

/// File extensions (lower case) recognised as stems.
pub const STEM_EXTENSIONS: &[&str] = &["flac", "wav", "mp3", "ogg", "oga", "m4a", "mp4", "aac"];

/// Largest manifest read, in bytes: a title and eight names fit many times
/// over; a bigger file is not a manifest.
const MAX_MANIFEST_LEN: u64 = 64 * 1024;

/// Longest title or stem name accepted, in bytes.
const MAX_NAME_LEN: usize = 256;

/// Why a track folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// The folder does not exist. Retrying helps only once it is created.
    #[error("{}: no such track folder", path.display())]
    FolderMissing {
        /// The folder given.
        path: PathBuf,
    },
    /// The path exists but is not a folder.
    #[error("{}: not a folder (a track is a folder of stem files)", path.display())]
    NotAFolder {
        /// The path given.
        path: PathBuf,
    },
    /// Listing the folder or reading the manifest failed (permissions, I/O).
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The folder or manifest.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// `track.toml` is not valid TOML or has unknown keys.
    #[error("{}: {source}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The parser's message (with line and column).
        #[source]
        source: toml::de::Error,
    },
    /// `track.toml` is valid TOML but its content is not acceptable.
    #[error("{}: {problem}", path.display())]
    ManifestContent {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// `track.toml` names a stem for which no file exists.
    #[error("{}: stem '{name}' listed in {MANIFEST} has no file ({name}.flac, {name}.wav, …)", dir.display())]
    StemFileMissing {
        /// The track folder.
        dir: PathBuf,
        /// The stem name.
        name: String,
    },
    /// Two files share a stem name (`drums.flac` and `drums.wav`).
    #[error("{}: stem '{name}' has more than one file ({})", dir.display(), files.join(", "))]
    AmbiguousStem {
        /// The track folder.
        dir: PathBuf,
        /// The stem name.
        name: String,
        /// The competing file names.
        files: Vec<String>,
    },
    /// The folder holds no stem file.
    #[error("{}: no stem files (expected e.g. drums.flac, bass.flac)", dir.display())]
    NoStems {
        /// The track folder.
        dir: PathBuf,
    },
    /// More stems than a room has channels.
    #[error("{}: {count} stems, at most {MAX_CHANNELS} are supported", dir.display())]
    TooManyStems {
        /// The track folder.
        dir: PathBuf,
        /// How many were found or listed.
        count: usize,
    },
    /// The configured channel names no stem of this track.
    #[error("unknown stem '{name}' (this track has: {})", available.join(", "))]
    UnknownStem {
        /// The name asked for.
        name: String,
        /// The stems the track has.
        available: Vec<String>,
    },
    /// The configured channel index is past the last stem.
    #[error("stem index {index} out of range (this track has {count} stems)")]
    StemIndexOutOfRange {
        /// The index asked for.
        index: usize,
        /// How many stems the track has.
        count: usize,
    },
    /// A stem file cannot be decoded (unreadable, corrupt, unsupported).
    #[error("stem '{stem}': {source}")]
    Decode {
        /// The stem name.
        stem: String,
        /// The decoder's error, naming the file.
        #[source]
        source: DecodeError,
    },
}

/// Which stem a speaker plays: the value of its channel setting.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StemChoice {
    /// The stem with this name (`drums`).
    Name(String),
    /// The stem at this index in the track's order (`0`).
    Index(usize),
    /// A mix-down of every stem (`all`).
    All,
}

impl FromStr for StemChoice {
    type Err = std::convert::Infallible;

    /// `all` (any case) is [`StemChoice::All`], a decimal number an index,
    /// anything else a name. Never fails: an unknown name is reported when
    /// it is looked up in a track, which can list the ones it has.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("all") {
            Ok(StemChoice::All)
        } else if let Ok(i) = s.parse::<usize>() {
            Ok(StemChoice::Index(i))
        } else {
            Ok(StemChoice::Name(s.to_owned()))
        }
    }
}

impl fmt::Display for StemChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StemChoice::Name(n) => f.write_str(n),
            StemChoice::Index(i) => write!(f, "{i}"),
            StemChoice::All => f.write_str("all"),
        }
    }
}

/// One stem of a track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stem {
    /// Its name (the file name without extension).
    pub name: String,
    /// Its file.
    pub path: PathBuf,
}

/// What a [`StemChoice`] resolved to in a track.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection<'a> {
    /// One stem, with its index in the track's order.
    One(usize, &'a Stem),
    /// Every stem, mixed down.
    All(&'a [Stem]),
}

/// A track folder, checked (see the module invariant).
#[derive(Clone, Debug)]
pub struct Track {
    dir: PathBuf,
    title: String,
    stems: Vec<Stem>,
}

/// `track.toml`. Both keys optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// The title shown in the mixer (default: the folder's name).
    title: Option<String>,
    /// The stems in channel order (default: every stem file, sorted).
    stems: Option<Vec<String>>,
}

impl Track {
    /// Reads and checks the track folder `dir`.
    ///
    /// # Errors
    /// Every way the folder or its manifest can be unusable; see
    /// [`TrackError`]. Stem files are not decoded here (that is
    /// [`Track::open_source`]), only found.
    pub fn open(dir: &Path) -> Result<Track, TrackError> {
        let meta = std::fs::metadata(dir).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                TrackError::FolderMissing {
                    path: dir.to_owned(),
                }
            } else {
                TrackError::Read {
                    path: dir.to_owned(),
                    source,
                }
            }
        })?;
        if !meta.is_dir() {
            return Err(TrackError::NotAFolder {
                path: dir.to_owned(),
            });
        }
        let read_err = |source| TrackError::Read {
            path: dir.to_owned(),
            source,
        };
        let entries = std::fs::read_dir(dir)
            .map_err(read_err)?
            .map(|e| e.map(|e| e.path()));
        Track::from_paths(dir, entries)
    }

    /// Reads and checks the track folder `dir` whose entries (full paths)
    /// the caller has already listed: a library scan lists its media
    /// folder once to learn whether it is a track itself or a folder of
    /// tracks. Only `track.toml` is read from the disk.
    ///
    /// # Errors
    /// As [`Track::open`], but for the folder's own metadata and listing.
    pub fn from_entries(dir: &Path, entries: &[PathBuf]) -> Result<Track, TrackError> {
        Track::from_paths(dir, entries.iter().cloned().map(Ok))
    }

    fn from_paths(
        dir: &Path,
        entries: impl Iterator<Item = io::Result<PathBuf>>,
    ) -> Result<Track, TrackError> {
        let files = stem_files(dir, entries)?;
        let manifest = read_manifest(dir)?;
        let title = match manifest.title {
            Some(t) => t,
            None => dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        let names: Vec<String> = match manifest.stems {
            Some(names) => names,
            None => {
                let mut names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
                names.sort();
                names.dedup();
                names
            }
        };
        if names.is_empty() {
            return Err(TrackError::NoStems {
                dir: dir.to_owned(),
            });
        }
        if names.len() > MAX_CHANNELS {
            return Err(TrackError::TooManyStems {
                dir: dir.to_owned(),
                count: names.len(),
            });
        }
        let mut stems = Vec::with_capacity(names.len());
        for name in names {
            let mut matching: Vec<&PathBuf> = files
                .iter()
                .filter(|(n, _)| *n == name)
                .map(|(_, p)| p)
                .collect();
            match matching.len() {
                0 => {
                    return Err(TrackError::StemFileMissing {
                        dir: dir.to_owned(),
                        name,
                    });
                }
                1 => {
                    let path = matching.remove(0).clone();
                    stems.push(Stem { name, path });
                }
                _ => {
                    let mut files: Vec<String> = matching
                        .iter()
                        .filter_map(|p| p.file_name())
                        .map(|n| n.to_string_lossy().into_owned())
                        .collect();
                    files.sort();
                    return Err(TrackError::AmbiguousStem {
                        dir: dir.to_owned(),
                        name,
                        files,
                    });
                }
            }
        }
        Ok(Track {
            dir: dir.to_owned(),
            title,
            stems,
        })
    }

    /// The folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The title (from `track.toml`, else the folder's name).
    #[must_use]
    pub fn title(&self) -> &str {
        &self.title
    }

    /// The stems in channel order.
    #[must_use]
    pub fn stems(&self) -> &[Stem] {
        &self.stems
    }

    /// Resolves a channel setting to a stem (or to all of them).
    ///
    /// # Errors
    /// [`TrackError::UnknownStem`] or [`TrackError::StemIndexOutOfRange`].
    pub fn pick(&self, choice: &StemChoice) -> Result<Selection<'_>, TrackError> {
        match choice {
            StemChoice::All => Ok(Selection::All(&self.stems)),
            StemChoice::Index(i) => self.stems.get(*i).map(|s| Selection::One(*i, s)).ok_or(
                TrackError::StemIndexOutOfRange {
                    index: *i,
                    count: self.stems.len(),
                },
            ),
            StemChoice::Name(name) => self
                .stems
                .iter()
                .position(|s| s.name == *name)
                .map(|i| Selection::One(i, &self.stems[i]))
                .ok_or_else(|| TrackError::UnknownStem {
                    name: name.clone(),
                    available: self.stems.iter().map(|s| s.name.clone()).collect(),
                }),
        }
    }

    /// Opens the decoder for a channel setting: one stem's
    /// [`StemDecoder`], or a [`Mixdown`] of all stems.
    ///
    /// # Errors
    /// As [`Track::pick`], and [`TrackError::Decode`] naming the stem whose
    /// file cannot be opened or decoded.
    pub fn open_source(&self, choice: &StemChoice) -> Result<Box<dyn AudioSource>, TrackError> {
        match self.pick(choice)? {
            Selection::One(_, stem) => {
                let dec = StemDecoder::open(&stem.path).map_err(|source| TrackError::Decode {
                    stem: stem.name.clone(),
                    source,
                })?;
                Ok(Box::new(dec))
            }
            Selection::All(stems) => {
                let mut decoders = Vec::with_capacity(stems.len());
                for stem in stems {
                    let dec =
                        StemDecoder::open(&stem.path).map_err(|source| TrackError::Decode {
                            stem: stem.name.clone(),
                            source,
                        })?;
                    decoders.push(dec);
                }
                let mix = Mixdown::new(decoders).map_err(|source| TrackError::Decode {
                    stem: "all".to_owned(),
                    source,
                })?;
                Ok(Box::new(mix))
            }
        }
    }
}

/// The stem files among `entries`, the listing of `dir`: (name, path) for
/// each regular file with a supported extension. Unsorted; callers sort
/// names.
fn stem_files(
    dir: &Path,
    entries: impl Iterator<Item = io::Result<PathBuf>>,
) -> Result<Vec<(String, PathBuf)>, TrackError> {
    let read_err = |source| TrackError::Read {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_err)?;
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !STEM_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
            continue;
        }
        // Follows symlinks: a media folder may link shared stems.
        if !path.is_file() {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            // A name that is not UTF-8 cannot be configured as a channel.
            continue;
        };
        files.push((name.to_owned(), path.clone()));
        // Bounded: a folder with thousands of audio files is not a track.
        if files.len() > 4 * MAX_CHANNELS {
            return Err(TrackError::TooManyStems {
                dir: dir.to_owned(),
                count: files.len(),
            });
        }
    }
    Ok(files)
}

/// `dir/track.toml`, or the default manifest if there is none.
fn read_manifest(dir: &Path) -> Result<Manifest, TrackError> {
    use std::io::Read as _;

    let path = dir.join(MANIFEST);
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Manifest::default()),
        Err(source) => return Err(TrackError::Read { path, source }),
    };
    let mut text = String::new();
    file.take(MAX_MANIFEST_LEN + 1)
        .read_to_string(&mut text)
        .map_err(|source| TrackError::Read {
            path: path.clone(),
            source,
        })?;
    if text.len() as u64 > MAX_MANIFEST_LEN {
        return Err(TrackError::ManifestContent {
            path,
            problem: format!("larger than {MAX_MANIFEST_LEN} bytes"),
        });
    }
    let manifest: Manifest = toml::from_str(&text).map_err(|source| TrackError::Manifest {
        path: path.clone(),
        source,
    })?;
    let too_long = |s: &str| s.len() > MAX_NAME_LEN;
    if manifest.title.as_deref().is_some_and(too_long) {
        return Err(TrackError::ManifestContent {
            path,
            problem: format!("title longer than {MAX_NAME_LEN} bytes"),
        });
    }
    if let Some(stems) = &manifest.stems {
        for (i, name) in stems.iter().enumerate() {
            if name.is_empty() || too_long(name) || name.contains(['/', '\\']) {
                return Err(TrackError::ManifestContent {
                    path,
                    problem: format!("stems[{i}]: '{name}' is not a stem name"),
                });
            }
            if stems[..i].contains(name) {
                return Err(TrackError::ManifestContent {
                    path,
                    problem: format!("stems[{i}]: '{name}' is listed twice"),
                });
            }
        }
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, name: &str) {
        std::fs::write(dir.join(name), b"").expect("tempdir is writable");
    }

    #[test]
    fn stems_are_sorted_without_manifest() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["vocals.flac", "bass.wav", "drums.flac", "notes.txt"] {
            touch(dir.path(), f);
        }
        let track = Track::open(dir.path()).expect("valid track");
        let names: Vec<&str> = track.stems().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["bass", "drums", "vocals"]);
        assert_eq!(
            track.title(),
            dir.path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
        );
    }

    #[test]
    fn a_listing_read_once_gives_the_same_track() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["bass.wav", "drums.flac", "notes.txt"] {
            touch(dir.path(), f);
        }
        std::fs::write(dir.path().join(MANIFEST), "title = \"Song\"\n").expect("writable");
        let listing: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("readable")
            .map(|e| e.expect("entry").path())
            .collect();
        let opened = Track::open(dir.path()).expect("valid track");
        let listed = Track::from_entries(dir.path(), &listing).expect("valid track");
        assert_eq!(listed.title(), "Song");
        assert_eq!(listed.stems(), opened.stems());
        // Only the given listing counts: the folder is not read again.
        let only_drums: Vec<PathBuf> = listing
            .into_iter()
            .filter(|p| !p.ends_with("bass.wav"))
            .collect();
        let names: Vec<String> = Track::from_entries(dir.path(), &only_drums)
            .expect("valid track")
            .stems()
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(names, ["drums"]);
        assert!(matches!(
            Track::from_entries(dir.path(), &[]),
            Err(TrackError::NoStems { .. })
        ));
    }

    #[test]
    fn manifest_orders_stems_and_names_the_track() {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in ["vocals.flac", "bass.flac", "drums.flac"] {
            touch(dir.path(), f);
        }
        std::fs::write(
            dir.path().join(MANIFEST),
            "title = \"Song\"\nstems = [\"drums\", \"bass\"]\n",
        )
        .expect("write manifest");
        let track = Track::open(dir.path()).expect("valid track");
        assert_eq!(track.title(), "Song");
        let names: Vec<&str> = track.stems().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["drums", "bass"]);
        assert!(matches!(
            track.pick(&"1".parse().expect("infallible")),
            Ok(Selection::One(1, s)) if s.name == "bass"
        ));
        assert!(matches!(
            track.pick(&"drums".parse().expect("infallible")),
            Ok(Selection::One(0, _))
        ));
        assert!(matches!(
            track.pick(&"ALL".parse().expect("infallible")),
            Ok(Selection::All(s)) if s.len() == 2
        ));
        let unknown = track.pick(&StemChoice::Name("vocals".into()));
        assert!(matches!(unknown, Err(TrackError::UnknownStem { .. })));
        let msg = unknown.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(msg, "unknown stem 'vocals' (this track has: drums, bass)");
        assert!(matches!(
            track.pick(&StemChoice::Index(2)),
            Err(TrackError::StemIndexOutOfRange { index: 2, count: 2 })
        ));
    }

    #[test]
    fn folder_errors_are_distinct() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        assert!(matches!(
            Track::open(&missing),
            Err(TrackError::FolderMissing { .. })
        ));
        touch(dir.path(), "file.flac");
        assert!(matches!(
            Track::open(&dir.path().join("file.flac")),
            Err(TrackError::NotAFolder { .. })
        ));
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            Track::open(empty.path()),
            Err(TrackError::NoStems { .. })
        ));
    }

    #[test]
    fn manifest_problems_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(dir.path(), "drums.flac");
        touch(dir.path(), "drums.wav");
        assert!(matches!(
            Track::open(dir.path()),
            Err(TrackError::AmbiguousStem { files, .. }) if files == ["drums.flac", "drums.wav"]
        ));
        std::fs::remove_file(dir.path().join("drums.wav")).expect("remove");
        std::fs::write(dir.path().join(MANIFEST), "stems = [\"bass\"]\n").expect("write");
        assert!(matches!(
            Track::open(dir.path()),
            Err(TrackError::StemFileMissing { name, .. }) if name == "bass"
        ));
        std::fs::write(dir.path().join(MANIFEST), "colour = 3\n").expect("write");
        assert!(matches!(
            Track::open(dir.path()),
            Err(TrackError::Manifest { .. })
        ));
        std::fs::write(
            dir.path().join(MANIFEST),
            "stems = [\"drums\", \"drums\"]\n",
        )
        .expect("write");
        assert!(matches!(
            Track::open(dir.path()),
            Err(TrackError::ManifestContent { .. })
        ));
    }

    #[test]
    fn too_many_stems_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..=MAX_CHANNELS {
            touch(dir.path(), &format!("s{i}.flac"));
        }
        assert!(matches!(
            Track::open(dir.path()),
            Err(TrackError::TooManyStems { count, .. }) if count == MAX_CHANNELS + 1
        ));
    }
}
