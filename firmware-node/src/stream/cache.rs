//! The on-disk cache of fetched chunks: content-addressed, verified, and
//! bounded in size.
//!
//! Layout under the cache directory: one folder per stem, named by its
//! [`StemHash`] in hex, holding `manifest` (its canonical bytes) and one
//! file per chunk named by its index. Files are written to a temporary name
//! and renamed, so a crash leaves either a whole chunk or none.
//!
//! Why verify on open: a chunk file may have been cut short by power loss
//! or altered on disk; [`ChunkCache::open`] hashes every cached chunk
//! against its manifest and deletes what does not match, so a restart
//! refetches exactly what is missing or bad and nothing else.
//!
//! Size bound: when the chunks exceed `max_bytes`, the least recently used
//! are deleted (reads from the decoder count as use), except the few
//! chunks at and after each stem's playhead, which are about to play.
//!
//! Threads: the fetcher (on the streaming runtime) adds and evicts under a
//! mutex; the decoder thread only reads through [`StemView`], whose
//! per-chunk presence and use stamps are atomics, so it never waits for
//! the fetcher.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use autoharmonize_protocol::content::{CHUNK_SIZE, Manifest, StemHash};
use tracing::{debug, info, warn};

/// Chunks at and after a stem's playhead never evicted (about to play).
const PROTECTED_CHUNKS: u64 = 4;
/// No demand recorded.
pub const NO_DEMAND: u64 = u64::MAX;

/// Why a chunk was not stored.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The bytes are not that chunk of that stem (corrupt or forged). The
    /// caller fetches it again, preferably from another holder.
    #[error("chunk {index} of stem {stem} failed verification")]
    Corrupt {
        /// The stem.
        stem: StemHash,
        /// The chunk.
        index: u64,
    },
    /// Writing the chunk failed (disk full, permissions).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// What [`ChunkCache::open`] found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Stems with a valid manifest.
    pub stems: usize,
    /// Chunks kept (verified).
    pub chunks: u64,
    /// Bytes kept.
    pub bytes: u64,
    /// Files deleted (corrupt chunks, stray or partial files).
    pub removed: u64,
}

/// One cached stem as the decoder sees it: which chunks are here, and the
/// decoder's signals to the fetcher (what it waits for, where it plays).
#[derive(Debug)]
pub struct StemView {
    stem: StemHash,
    manifest: Manifest,
    dir: PathBuf,
    present: Vec<AtomicBool>,
    last_used: Vec<AtomicU64>,
    /// Chunks the decoder has read at least once.
    consumed: Vec<AtomicBool>,
    clock: Arc<AtomicU64>,
    demand: AtomicU64,
    playhead: AtomicU64,
    played_bytes: AtomicU64,
    wake: tokio::sync::Notify,
}

impl StemView {
    /// The stem.
    #[must_use]
    pub fn stem(&self) -> StemHash {
        self.stem
    }

    /// Its manifest.
    #[must_use]
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Whether chunk `i` is cached.
    #[must_use]
    pub fn has(&self, i: u64) -> bool {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.present.get(i))
            .is_some_and(|p| p.load(Ordering::Acquire))
    }

    /// Chunks cached.
    #[must_use]
    pub fn count_present(&self) -> u64 {
        self.present
            .iter()
            .filter(|p| p.load(Ordering::Relaxed))
            .count() as u64
    }

    /// Whether the whole stem is cached.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.count_present() == self.present.len() as u64
    }

    fn chunk_path(&self, i: u64) -> PathBuf {
        self.dir.join(i.to_string())
    }

    /// Reads bytes of the stem file at `offset` into `buf`, from the chunk
    /// holding `offset` (so possibly fewer bytes than asked). `Ok(0)` at
    /// the end of the file. Called on the decoder thread: never waits for
    /// the network.
    ///
    /// # Errors
    /// `Err(chunk)` if that chunk is not cached; it is then recorded as
    /// demanded and the fetcher is woken.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, u64> {
        if offset >= self.manifest.len || buf.is_empty() {
            return Ok(0);
        }
        let i = offset / CHUNK_SIZE;
        self.set_playhead(i);
        if !self.has(i) {
            return Err(self.want(i));
        }
        let (start, end) = self
            .manifest
            .chunk_range(i)
            .expect("offset < len, so chunk i exists");
        let n = usize::try_from(end - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let read =
            File::open(self.chunk_path(i)).and_then(|f| f.read_at(&mut buf[..n], offset - start));
        match read {
            Ok(got) if got > 0 => {
                self.touch(i);
                if let Some(c) = usize::try_from(i).ok().and_then(|i| self.consumed.get(i))
                    && !c.swap(true, Ordering::Relaxed)
                {
                    self.played_bytes.fetch_add(end - start, Ordering::Relaxed);
                }
                Ok(got)
            }
            // Evicted (or damaged) between the check and the read: it is
            // missing now.
            _ => {
                self.mark(i, false);
                Err(self.want(i))
            }
        }
    }

    /// The whole of chunk `i`, if cached, for serving it to a peer: unlike
    /// [`StemView::read_at`] it leaves this speaker's own playhead, demand
    /// and play counts alone.
    #[must_use]
    pub fn chunk_bytes(&self, i: u64) -> Option<Vec<u8>> {
        if !self.has(i) {
            return None;
        }
        let bytes = std::fs::read(self.chunk_path(i)).ok()?;
        // Checked again: the file may have changed on disk since it was
        // verified, and a peer must not be served a bad chunk by us.
        self.manifest.verify_chunk(i, &bytes).then_some(bytes)
    }

    /// Records that the decoder waits for chunk `i` and wakes the fetcher.
    pub fn want(&self, i: u64) -> u64 {
        self.demand.store(i, Ordering::Release);
        self.wake.notify_one();
        i
    }

    /// Records where the decoder reads (a chunk index).
    pub fn set_playhead(&self, i: u64) {
        if self.playhead.swap(i, Ordering::AcqRel) != i {
            self.wake.notify_one();
        }
    }

    /// The chunk the decoder waits for, if any (cleared once cached).
    #[must_use]
    pub fn demand(&self) -> Option<u64> {
        let d = self.demand.load(Ordering::Acquire);
        if d == NO_DEMAND {
            return None;
        }
        if self.has(d) {
            let _ = self
                .demand
                .compare_exchange(d, NO_DEMAND, Ordering::AcqRel, Ordering::Relaxed);
            return None;
        }
        Some(d)
    }

    /// The chunk the decoder reads.
    #[must_use]
    pub fn playhead(&self) -> u64 {
        self.playhead.load(Ordering::Acquire)
    }

    /// Waits until the decoder signals something (demand or a new
    /// playhead) — the fetcher's wake-up.
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Bytes of distinct chunks the decoder has read.
    #[must_use]
    pub fn played_bytes(&self) -> u64 {
        self.played_bytes.load(Ordering::Relaxed)
    }

    fn touch(&self, i: u64) {
        let t = self.clock.fetch_add(1, Ordering::Relaxed);
        if let Some(u) = usize::try_from(i).ok().and_then(|i| self.last_used.get(i)) {
            u.store(t, Ordering::Relaxed);
        }
    }

    fn mark(&self, i: u64, present: bool) {
        if let Some(p) = usize::try_from(i).ok().and_then(|i| self.present.get(i)) {
            p.store(present, Ordering::Release);
        }
    }
}

/// The cache (see the module doc).
#[derive(Debug)]
pub struct ChunkCache {
    dir: PathBuf,
    max_bytes: u64,
    clock: Arc<AtomicU64>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    stems: HashMap<StemHash, Arc<StemView>>,
    used: u64,
}

impl ChunkCache {
    /// Opens (creating if needed) the cache in `dir`, verifying every
    /// cached chunk and deleting what fails, then evicting down to
    /// `max_bytes`. Hashes everything cached: run it off the mesh loop.
    ///
    /// # Errors
    /// The directory cannot be created or listed.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(ChunkCache, OpenReport)> {
        std::fs::create_dir_all(dir)?;
        let cache = ChunkCache {
            dir: dir.to_owned(),
            max_bytes,
            clock: Arc::new(AtomicU64::new(1)),
            inner: Mutex::new(Inner::default()),
        };
        let mut report = OpenReport::default();
        // Oldest files first, so the use stamps follow their age.
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            let stem = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<StemHash>().ok());
            let manifest = stem.and_then(|s| {
                let bytes = std::fs::read(path.join("manifest")).ok()?;
                Manifest::from_bytes(s, &bytes).ok()
            });
            let (Some(stem), Some(manifest)) = (stem, manifest) else {
                warn!(path = %path.display(), "not a cached stem; deleting it");
                report.removed += 1;
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                continue;
            };
            let view = cache.view(stem, manifest);
            let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = Vec::new();
            for e in std::fs::read_dir(&path)?.filter_map(Result::ok) {
                let p = e.path();
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name == "manifest" {
                    continue;
                }
                match name.parse::<u64>() {
                    Ok(i) => {
                        let at = e
                            .metadata()
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        files.push((at, i, p));
                    }
                    Err(_) => {
                        report.removed += 1;
                        let _ = std::fs::remove_file(&p);
                    }
                }
            }
            files.sort();
            for (_, i, p) in files {
                let ok = std::fs::read(&p).is_ok_and(|b| view.manifest.verify_chunk(i, &b));
                if ok {
                    view.mark(i, true);
                    view.touch(i);
                    let len = view.manifest.chunk_range(i).map_or(0, |(a, b)| b - a);
                    report.chunks += 1;
                    report.bytes += len;
                } else {
                    warn!(stem = %stem, chunk = i, "cached chunk failed verification; deleting it");
                    report.removed += 1;
                    let _ = std::fs::remove_file(&p);
                }
            }
            report.stems += 1;
            let mut inner = cache.lock();
            inner.used += view_bytes(&view);
            inner.stems.insert(stem, view);
        }
        cache.evict();
        info!(
            dir = %dir.display(),
            stems = report.stems,
            chunks = report.chunks,
            mib = report.bytes / (1 << 20),
            removed = report.removed,
            "chunk cache verified"
        );
        Ok((cache, report))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn view(&self, stem: StemHash, manifest: Manifest) -> Arc<StemView> {
        let n = manifest.chunks.len();
        Arc::new(StemView {
            stem,
            dir: self.dir.join(stem.to_string()),
            present: (0..n).map(|_| AtomicBool::new(false)).collect(),
            last_used: (0..n).map(|_| AtomicU64::new(0)).collect(),
            consumed: (0..n).map(|_| AtomicBool::new(false)).collect(),
            manifest,
            clock: Arc::clone(&self.clock),
            demand: AtomicU64::new(NO_DEMAND),
            playhead: AtomicU64::new(0),
            played_bytes: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
        })
    }

    /// The cached stem, if its manifest is known.
    #[must_use]
    pub fn stem(&self, stem: StemHash) -> Option<Arc<StemView>> {
        self.lock().stems.get(&stem).cloned()
    }

    /// Records a stem's manifest (already checked against its hash) and
    /// returns its view.
    ///
    /// # Errors
    /// The manifest cannot be written.
    pub fn add_manifest(&self, manifest: Manifest) -> Result<Arc<StemView>, CacheError> {
        let stem = manifest.stem_hash();
        if let Some(v) = self.stem(stem) {
            return Ok(v);
        }
        let dir = self.dir.join(stem.to_string());
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CacheError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_atomically(&dir.join("manifest"), &manifest.to_bytes())
            .map_err(io(&dir.join("manifest")))?;
        let view = self.view(stem, manifest);
        Ok(Arc::clone(self.lock().stems.entry(stem).or_insert(view)))
    }

    /// Verifies and stores chunk `i` of `view`'s stem, then evicts down to
    /// the size bound.
    ///
    /// # Errors
    /// [`CacheError::Corrupt`] if the bytes are not that chunk (nothing is
    /// stored); [`CacheError::Io`] if writing failed.
    pub fn put(&self, view: &StemView, i: u64, bytes: &[u8]) -> Result<(), CacheError> {
        if !view.manifest.verify_chunk(i, bytes) {
            return Err(CacheError::Corrupt {
                stem: view.stem,
                index: i,
            });
        }
        if view.has(i) {
            return Ok(());
        }
        let path = view.chunk_path(i);
        write_atomically(&path, bytes).map_err(|source| CacheError::Io {
            path: path.clone(),
            source,
        })?;
        view.touch(i);
        view.mark(i, true);
        self.lock().used += bytes.len() as u64;
        self.evict();
        Ok(())
    }

    /// Bytes of chunks cached.
    #[must_use]
    pub fn used_bytes(&self) -> u64 {
        self.lock().used
    }

    /// Deletes least recently used chunks until the cache fits its bound.
    fn evict(&self) {
        let mut inner = self.lock();
        while inner.used > self.max_bytes {
            let mut victim: Option<(u64, Arc<StemView>, u64)> = None;
            for view in inner.stems.values() {
                let head = view.playhead();
                for (i, p) in view.present.iter().enumerate() {
                    let i = i as u64;
                    if !p.load(Ordering::Acquire) || (head..head + PROTECTED_CHUNKS).contains(&i) {
                        continue;
                    }
                    let used = view.last_used[i as usize].load(Ordering::Relaxed);
                    if victim.as_ref().is_none_or(|v| used < v.0) {
                        victim = Some((used, Arc::clone(view), i));
                    }
                }
            }
            let Some((_, view, i)) = victim else {
                break;
            };
            view.mark(i, false);
            let _ = std::fs::remove_file(view.chunk_path(i));
            let len = view.manifest.chunk_range(i).map_or(0, |(a, b)| b - a);
            inner.used = inner.used.saturating_sub(len);
            debug!(stem = %view.stem, chunk = i, "evicted from the chunk cache");
        }
    }
}

fn view_bytes(view: &StemView) -> u64 {
    (0..view.present.len() as u64)
        .filter(|&i| view.has(i))
        .map(|i| view.manifest.chunk_range(i).map_or(0, |(a, b)| b - a))
        .sum()
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames
/// it into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("part");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 997) as u8).collect()
    }

    #[test]
    fn chunks_verify_persist_and_corrupt_ones_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = file(3 * CHUNK_SIZE as usize + 10);
        let m = Manifest::of(&bytes);
        let stem = m.stem_hash();
        let c = |i: u64| {
            let (a, b) = m.chunk_range(i).expect("chunk");
            &bytes[a as usize..b as usize]
        };
        {
            let (cache, report) = ChunkCache::open(dir.path(), u64::MAX).expect("open");
            assert_eq!(report, OpenReport::default());
            let view = cache.add_manifest(m.clone()).expect("manifest");
            assert!(matches!(
                cache.put(&view, 1, c(0)),
                Err(CacheError::Corrupt { index: 1, .. })
            ));
            assert!(!view.has(1));
            for i in 0..4 {
                cache.put(&view, i, c(i)).expect("put");
            }
            let mut buf = [0u8; 100];
            assert_eq!(view.read_at(CHUNK_SIZE - 50, &mut buf), Ok(50));
            assert_eq!(
                &buf[..50],
                &bytes[CHUNK_SIZE as usize - 50..CHUNK_SIZE as usize]
            );
        }
        // Damage one chunk on disk: the restart keeps the rest and drops it.
        let chunk2 = dir.path().join(stem.to_string()).join("2");
        let mut damaged = std::fs::read(&chunk2).expect("read");
        damaged[5] ^= 0xff;
        std::fs::write(&chunk2, damaged).expect("write");
        std::fs::write(dir.path().join("junk"), b"x").expect("write");
        let (cache, report) = ChunkCache::open(dir.path(), u64::MAX).expect("reopen");
        assert_eq!(report.chunks, 3);
        assert_eq!(report.removed, 2);
        let view = cache.stem(stem).expect("stem known after restart");
        assert!(view.has(0) && view.has(1) && !view.has(2) && view.has(3));
        let mut buf = [0u8; 10];
        assert_eq!(view.read_at(2 * CHUNK_SIZE, &mut buf), Err(2));
        assert_eq!(view.demand(), Some(2));
    }

    #[test]
    fn the_size_bound_evicts_least_recently_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = file(8 * CHUNK_SIZE as usize);
        let m = Manifest::of(&bytes);
        let (cache, _) = ChunkCache::open(dir.path(), 5 * CHUNK_SIZE).expect("open");
        let view = cache.add_manifest(m.clone()).expect("manifest");
        let put = |i: u64| {
            let s = (i * CHUNK_SIZE) as usize;
            cache
                .put(&view, i, &bytes[s..s + CHUNK_SIZE as usize])
                .expect("put");
        };
        for i in 0..5 {
            put(i);
        }
        // Reading chunk 0 makes it recent; the playhead protects 7.. (none).
        let mut b = [0u8; 1];
        assert_eq!(view.read_at(0, &mut b), Ok(1));
        view.set_playhead(7);
        put(5);
        put(6);
        assert!(cache.used_bytes() <= 5 * CHUNK_SIZE);
        assert!(view.has(0), "recently read chunk kept");
        assert!(!view.has(1) && !view.has(2), "oldest evicted");
        assert!(view.has(5) && view.has(6));
    }
}
