//! Peer-to-peer stem streaming: a speaker plays a stem it does not hold by
//! fetching it, chunk by chunk, from speakers that do — in sync.
//!
//! Pieces, each in its module:
//! - [`link`]: the chunk exchange over TCP, authenticated with the room's
//!   secret (`protocol::exchange`), a server for what this speaker holds
//!   and pipelined client connections to holders;
//! - [`cache`]: the on-disk chunk cache, verified on arrival and on
//!   restart, bounded in size;
//! - [`fetcher`]: one loop per streamed stem driving
//!   `protocol::fetch::FetchPlan` (demand first, a prefetch window sized
//!   from measured latency and throughput, spread over holders, failures
//!   moved elsewhere);
//! - [`source`]: the decoder's side, an `AudioSource` that plays silence in
//!   sync where data is missing and rejoins at the right frame.
//!
//! Threads: everything network- and disk-bound runs on its own thread
//! (`ah-stream`, a tokio runtime of its own), so neither the mesh loop nor
//! the decoder ever waits for a peer. The decoder only reads cached chunk
//! files and flips atomics.
//!
//! Who holds what comes from outside through [`Holders`] (the room's
//! catalogue of holdings, or a static list of peers to ask).

pub mod cache;
pub mod fetcher;
pub mod link;
pub mod source;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context as _;
use autoharmonize_protocol::content::{Manifest, StemHash};
use autoharmonize_protocol::exchange::LinkKey;
use tracing::{info, warn};

use crate::audio::StreamSpec;
use cache::ChunkCache;
use fetcher::FetchStatus;
use link::{ChunkSource, LinkOptions};
use source::{StreamShared, StreamedStem};

/// The default TCP port of the chunk exchange.
pub const DEFAULT_PORT: u16 = 7712;

/// Who holds a stem: addresses of their chunk exchange.
pub trait Holders: Send + Sync {
    /// The exchange addresses of members holding `stem` (may include
    /// members that turn out not to; they answer "not found").
    fn holders(&self, stem: StemHash) -> Vec<SocketAddr>;
}

/// Every listed peer is asked for every stem: for a room without a
/// catalogue of holdings (or as its fallback).
#[derive(Clone, Debug, Default)]
pub struct StaticHolders(pub Vec<SocketAddr>);

impl Holders for StaticHolders {
    fn holders(&self, _stem: StemHash) -> Vec<SocketAddr> {
        self.0.clone()
    }
}

/// The holders the room's catalogue names, once the mesh publishes it
/// ([`RoomHolders::attach`]); before that, or when it names nobody for a
/// stem, every static peer is asked.
#[derive(Debug, Default)]
pub struct RoomHolders {
    catalogue: Mutex<Option<CatalogueRx>>,
    fallback: Vec<SocketAddr>,
}

type CatalogueRx = tokio::sync::watch::Receiver<Arc<crate::catalogue::CatalogueView>>;

impl RoomHolders {
    /// Holders from the catalogue once attached; `fallback` until then.
    #[must_use]
    pub fn new(fallback: Vec<SocketAddr>) -> RoomHolders {
        RoomHolders {
            catalogue: Mutex::new(None),
            fallback,
        }
    }

    /// Follows the mesh's catalogue snapshots from now on.
    pub fn attach(&self, catalogue: CatalogueRx) {
        *self
            .catalogue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(catalogue);
    }

    fn view(&self) -> Option<Arc<crate::catalogue::CatalogueView>> {
        self.catalogue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|rx| Arc::clone(&rx.borrow()))
    }

    /// The description of track `id` (its stems and their hashes), if the
    /// room's catalogue has it.
    #[must_use]
    pub fn track(
        &self,
        id: autoharmonize_protocol::content::TrackId,
    ) -> Option<autoharmonize_protocol::catalogue::TrackInfo> {
        self.view()?.track(id).map(|t| t.info.clone())
    }
}

impl Holders for RoomHolders {
    /// The catalogue's holders of `stem` (their exchange listens on their
    /// mesh port, over TCP), else the static peers.
    fn holders(&self, stem: StemHash) -> Vec<SocketAddr> {
        let named: Vec<SocketAddr> = self
            .view()
            .map(|v| v.holders(stem).into_iter().map(|(_, a)| a).collect())
            .unwrap_or_default();
        if named.is_empty() {
            self.fallback.clone()
        } else {
            named
        }
    }
}

/// How the node streams.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// TCP address of this node's chunk exchange server.
    pub listen: SocketAddr,
    /// Directory of the chunk cache.
    pub cache_dir: PathBuf,
    /// Size bound of the chunk cache, bytes.
    pub cache_max_bytes: u64,
    /// Test-only link delay (see [`link::LinkOptions`]).
    pub link: LinkOptions,
}

/// The stems this node serves: files it holds, plus its cached chunks.
#[derive(Debug)]
struct Served {
    files: RwLock<HashMap<StemHash, (PathBuf, Manifest)>>,
    cache: Arc<ChunkCache>,
}

impl ChunkSource for Served {
    fn manifest(&self, stem: StemHash) -> Option<Vec<u8>> {
        if let Some((_, m)) = self
            .files
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&stem)
        {
            return Some(m.to_bytes());
        }
        self.cache.stem(stem).map(|v| v.manifest().to_bytes())
    }

    fn chunk(&self, stem: StemHash, index: u64) -> Option<Vec<u8>> {
        let file = self
            .files
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&stem)
            .cloned();
        if let Some((path, m)) = file {
            let (start, end) = m.chunk_range(index)?;
            let mut buf = vec![0u8; usize::try_from(end - start).ok()?];
            let f = std::fs::File::open(&path).ok()?;
            f.read_exact_at(&mut buf, start).ok()?;
            return Some(buf);
        }
        self.cache.stem(stem)?.chunk_bytes(index)
    }
}

/// The running streaming service (see the module doc).
pub struct Streaming {
    runtime: tokio::runtime::Handle,
    cache: Arc<ChunkCache>,
    served: Arc<Served>,
    key: LinkKey,
    holders: Arc<dyn Holders>,
    link: LinkOptions,
    listen: SocketAddr,
    fetches: Mutex<Vec<Arc<Mutex<FetchStatus>>>>,
}

impl std::fmt::Debug for Streaming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming")
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// What the status endpoint shows of streaming.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StreamingStatus {
    /// The exchange's address.
    pub listen: String,
    /// Stems served from files.
    pub serving: usize,
    /// Bytes in the chunk cache.
    pub cache_bytes: u64,
    /// Each stem being streamed.
    pub stems: Vec<FetchStatus>,
}

impl Streaming {
    /// Opens (and verifies) the cache, binds the exchange server and
    /// starts the `ah-stream` thread.
    ///
    /// # Errors
    /// The cache directory is unusable or the address cannot be bound.
    pub fn start(
        config: &StreamConfig,
        key: LinkKey,
        holders: Arc<dyn Holders>,
    ) -> anyhow::Result<Streaming> {
        let (cache, _report) = ChunkCache::open(&config.cache_dir, config.cache_max_bytes)
            .with_context(|| format!("the chunk cache in {}", config.cache_dir.display()))?;
        let cache = Arc::new(cache);
        let served = Arc::new(Served {
            files: RwLock::default(),
            cache: Arc::clone(&cache),
        });
        let std_listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding the chunk exchange to {}", config.listen))?;
        std_listener
            .set_nonblocking(true)
            .context("the chunk exchange socket")?;
        let listen = std_listener.local_addr().unwrap_or(config.listen);
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let server_key = key.clone();
        let source: Arc<dyn ChunkSource> = Arc::clone(&served) as Arc<dyn ChunkSource>;
        std::thread::Builder::new()
            .name("ah-stream".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => link::serve(l, server_key, source).await,
                        Err(e) => warn!("chunk exchange: {e}"),
                    }
                });
            })
            .context("starting the streaming thread")?;
        let runtime = handle_rx
            .recv()
            .context("the streaming thread stopped")?
            .context("starting the streaming runtime")?;
        info!(%listen, cache = %config.cache_dir.display(), cache_max_mib = config.cache_max_bytes >> 20, "chunk exchange listening");
        Ok(Streaming {
            runtime,
            cache,
            served,
            key,
            holders,
            link: config.link,
            listen,
            fetches: Mutex::default(),
        })
    }

    /// The exchange's bound address.
    #[must_use]
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Serves the stem file at `path` (already hashed as `manifest`).
    pub fn serve_file(&self, path: PathBuf, manifest: Manifest) {
        let stem = manifest.stem_hash();
        self.served
            .files
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(stem, (path, manifest));
    }

    /// An `AudioSource` playing `stem` as it streams in, shaped `spec`;
    /// starts its fetch loop (which stops when the source is dropped).
    #[must_use]
    pub fn stream(&self, stem: StemHash, spec: StreamSpec) -> StreamedStem {
        let shared = Arc::new(StreamShared::new(stem));
        let alive = Arc::new(());
        let status = Arc::new(Mutex::new(fetcher::pending_status(stem)));
        self.fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::clone(&status));
        self.runtime.spawn(fetcher::run(
            Arc::clone(&shared),
            Arc::downgrade(&alive),
            Arc::clone(&self.cache),
            self.key.clone(),
            Arc::clone(&self.holders),
            self.link,
            status,
        ));
        StreamedStem::new(shared, spec, alive)
    }

    /// The status snapshot.
    #[must_use]
    pub fn status(&self) -> StreamingStatus {
        let stems = self
            .fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .collect();
        StreamingStatus {
            listen: self.listen.to_string(),
            serving: self
                .served
                .files
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .len(),
            cache_bytes: self.cache.used_bytes(),
            stems,
        }
    }
}

/// A stem of a track the room loaded before this speaker learnt the
/// track's description (it joined a playing room and the catalogue is
/// still arriving): silence in sync, looking the track up every ~100 ms of
/// audio, then the streamed stem from the current position on.
pub struct LateStem {
    room: Arc<RoomHolders>,
    streaming: Arc<Streaming>,
    track: autoharmonize_protocol::content::TrackId,
    choice: crate::audio::track::StemChoice,
    spec: StreamSpec,
    position: u64,
    since_look: u64,
    inner: Option<StreamedStem>,
}

impl std::fmt::Debug for LateStem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateStem")
            .field("track", &self.track)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl LateStem {
    /// The stem `choice` (an index or a name) of `track`, once described.
    #[must_use]
    pub fn new(
        room: Arc<RoomHolders>,
        streaming: Arc<Streaming>,
        track: autoharmonize_protocol::content::TrackId,
        choice: crate::audio::track::StemChoice,
        spec: StreamSpec,
    ) -> LateStem {
        LateStem {
            room,
            streaming,
            track,
            choice,
            spec,
            position: 0,
            since_look: u64::MAX,
            inner: None,
        }
    }

    fn look(&mut self) {
        use crate::audio::track::StemChoice;
        let Some(info) = self.room.track(self.track) else {
            return;
        };
        let stem = match &self.choice {
            StemChoice::Index(i) => info.stems.get(*i),
            StemChoice::Name(n) => info.stems.iter().find(|s| s.name.as_str() == n),
            StemChoice::All => None,
        };
        if let Some(s) = stem {
            info!(track = %self.track, stem = %s.name, hash = %s.hash, "track described; streaming the stem");
            let mut inner = self.streaming.stream(s.hash, self.spec);
            let _ = crate::audio::decode::AudioSource::seek(&mut inner, self.position);
            self.inner = Some(inner);
        }
    }
}

impl crate::audio::decode::AudioSource for LateStem {
    fn spec(&self) -> StreamSpec {
        self.spec
    }

    fn read(&mut self, out: &mut [f32]) -> Result<usize, crate::audio::decode::DecodeError> {
        if self.inner.is_none() && self.since_look >= u64::from(self.spec.rate / 10) {
            self.since_look = 0;
            self.look();
        }
        if let Some(inner) = self.inner.as_mut() {
            let n = inner.read(out)?;
            self.position = inner.position();
            return Ok(n);
        }
        out.fill(0.0);
        let n = out.len() / usize::from(self.spec.channels.max(1));
        self.position += n as u64;
        self.since_look = self.since_look.saturating_add(n as u64);
        Ok(n)
    }

    fn seek(&mut self, frame: u64) -> Result<(), crate::audio::decode::DecodeError> {
        self.position = frame;
        match self.inner.as_mut() {
            Some(inner) => inner.seek(frame),
            None => Ok(()),
        }
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn skipped_packets(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, crate::audio::decode::AudioSource::skipped_packets)
    }
}

/// Parses a cache size such as `512M`, `2G` or `1048576` (bytes).
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| {
            format!("'{s}' is not a size (bytes, or a number with K, M or G, e.g. 512M)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999G").is_err());
    }
}
