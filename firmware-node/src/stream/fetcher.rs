//! The fetch loop of one streamed stem: gets its manifest, then keeps the
//! chunks the decoder needs coming, driving `protocol::fetch::FetchPlan`
//! with what the network does.
//!
//! Each pass: refresh the holders (every second), give the plan what
//! happened (chunks delivered, rejected, holders lost, timeouts), then send
//! every request it returns, each on its own task so a slow holder delays
//! only its own requests. It wakes on every answer, whenever the decoder
//! demands a chunk or moves its playhead, and at least every 50 ms.
//!
//! It runs on the streaming runtime, never on the mesh's, and stops when
//! the stem it feeds is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use autoharmonize_protocol::LocalTime;
use autoharmonize_protocol::content::{CHUNK_SIZE, Manifest, StemHash};
use autoharmonize_protocol::exchange::{LinkKey, Request, Response};
use autoharmonize_protocol::fetch::{FetchPlan, Request as Want};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::Holders;
use super::cache::{CacheError, ChunkCache};
use super::link::{LinkError, LinkOptions, Peer};
use super::source::StreamShared;

/// Playback byte rate assumed until the decoder knows the stem's length:
/// 16-bit stereo at 48 kHz, more than any compressed stem.
const DEFAULT_PLAYBACK_BPS: u64 = 192_000;
/// How often the list of holders is refreshed.
const HOLDER_REFRESH: Duration = Duration::from_secs(1);
/// How long a holder that failed to connect is left alone.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);
/// Longest wait for one answer; the plan's own timeouts usually act first.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// What the status endpoint shows of one streamed stem.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FetchStatus {
    /// The stem (hex).
    pub stem: String,
    /// Chunks of the stem (0 until the manifest is known).
    pub chunks: u64,
    /// Chunks cached.
    pub cached: u64,
    /// Bytes fetched (verified) so far.
    pub fetched_bytes: u64,
    /// Bytes of distinct chunks the decoder read.
    pub played_bytes: u64,
    /// Chunks rejected: corrupt, forged, or refused by a holder.
    pub rejected: u64,
    /// Requests given up as too slow.
    pub timeouts: u64,
    /// Holders lost mid-transfer.
    pub holders_lost: u64,
    /// Holders asked now.
    pub holders: Vec<String>,
    /// Chunks fetched per holder (address → count).
    pub per_holder: Vec<(String, u64)>,
    /// The prefetch window, in chunks.
    pub window: u64,
    /// Measured request latency, ms.
    pub latency_ms: f64,
    /// Measured throughput, KiB/s.
    pub throughput_kib_s: u64,
    /// Frames played silent for want of data.
    pub starved_frames: u64,
    /// Times the music resumed after missing data.
    pub rejoins: u64,
    /// A problem keeping the stem silent, if any.
    pub problem: Option<String>,
}

/// One answer coming back to the loop.
enum Answer {
    Chunk(Want, Result<Response, LinkError>),
}

/// Runs the fetch of `shared.stem` until `alive` is gone.
pub(crate) async fn run(
    shared: Arc<StreamShared>,
    alive: Weak<()>,
    cache: Arc<ChunkCache>,
    key: LinkKey,
    holders: Arc<dyn Holders>,
    options: LinkOptions,
    status: Arc<Mutex<FetchStatus>>,
) {
    let stem = shared.stem;
    let epoch = Instant::now();
    let now = move || LocalTime(u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX));
    let mut peers: HashMap<SocketAddr, Arc<Peer>> = HashMap::new();
    let mut failed_at: HashMap<SocketAddr, Instant> = HashMap::new();

    // 1. The manifest, from the cache or a holder.
    let view = loop {
        if alive.upgrade().is_none() {
            return;
        }
        if let Some(v) = cache.stem(stem) {
            break v;
        }
        let mut got = None;
        for addr in holders.holders(stem) {
            let Some(peer) = connect(addr, &key, options, &mut peers, &mut failed_at).await else {
                continue;
            };
            match tokio::time::timeout(ASK_TIMEOUT, peer.ask(Request::Manifest { id: 0, stem }))
                .await
            {
                Ok(Ok(Response::Manifest { bytes, .. })) => {
                    match Manifest::from_bytes(stem, &bytes) {
                        Ok(m) => {
                            got = Some(m);
                            break;
                        }
                        Err(e) => warn!(%addr, %stem, "manifest refused: {e}"),
                    }
                }
                Ok(Ok(_)) => debug!(%addr, %stem, "holder does not have the manifest"),
                Ok(Err(e)) => {
                    warn!(%stem, "manifest request failed: {e}");
                    peers.remove(&addr);
                }
                Err(_) => {
                    warn!(%addr, %stem, "manifest request timed out");
                    peers.remove(&addr);
                }
            }
        }
        match got.map(|m| cache.add_manifest(m)) {
            Some(Ok(v)) => break v,
            Some(Err(e)) => warn!(%stem, "cannot cache the manifest: {e}"),
            None => debug!(%stem, "no holder answered with the manifest yet"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = shared.view.set(Arc::clone(&view));
    let n = view.manifest().chunks.len() as u64;
    info!(%stem, chunks = n, cached = view.count_present(), "streaming stem");

    // 2. The chunks.
    let mut plan = FetchPlan::new(n, CHUNK_SIZE, DEFAULT_PLAYBACK_BPS);
    for i in 0..n {
        if view.has(i) {
            plan.mark_have(i);
        }
    }
    let mut keys: Vec<SocketAddr> = Vec::new();
    let key_of = |keys: &mut Vec<SocketAddr>, a: SocketAddr| -> u64 {
        match keys.iter().position(|k| *k == a) {
            Some(i) => i as u64,
            None => {
                keys.push(a);
                (keys.len() - 1) as u64
            }
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<Answer>();
    let mut last_refresh: Option<Instant> = None;
    let mut holders_lost = 0u64;
    let mut per_holder: HashMap<SocketAddr, u64> = HashMap::new();
    while alive.upgrade().is_some() {
        if last_refresh.is_none_or(|t| t.elapsed() >= HOLDER_REFRESH) {
            last_refresh = Some(Instant::now());
            let mut listed = Vec::new();
            for addr in holders.holders(stem) {
                if connect(addr, &key, options, &mut peers, &mut failed_at)
                    .await
                    .is_some()
                {
                    listed.push(key_of(&mut keys, addr));
                }
            }
            plan.set_holders(&listed);
        }
        let bps = shared.playback_bps.load(Ordering::Relaxed);
        if bps > 0 {
            plan.set_playback_bps(bps);
        }
        // Evicted chunks become missing again.
        let head = view.playhead();
        for i in head..(head + plan.window()).min(n) {
            if plan.has(i) && !view.has(i) {
                plan.mark_missing(i);
            }
        }
        for gone in plan.poll_timeouts(now()) {
            debug!(%stem, chunk = gone.chunk, "chunk request timed out; asking elsewhere");
        }
        while let Some(want) = plan.next_request(now(), view.playhead(), view.demand()) {
            let Some(peer) = keys
                .get(usize::try_from(want.holder).unwrap_or(usize::MAX))
                .and_then(|a| peers.get(a))
                .cloned()
            else {
                plan.holder_lost(want.holder);
                continue;
            };
            let tx = tx.clone();
            let index = u32::try_from(want.chunk).unwrap_or(u32::MAX);
            tokio::spawn(async move {
                let answer = tokio::time::timeout(
                    ASK_TIMEOUT,
                    peer.ask(Request::Chunk { id: 0, stem, index }),
                )
                .await
                .unwrap_or(Err(LinkError::Closed(peer.addr())));
                let _ = tx.send(Answer::Chunk(want, answer));
            });
        }
        let asked: Vec<String> = keys
            .iter()
            .filter(|a| peers.contains_key(a))
            .map(ToString::to_string)
            .collect();
        publish(
            &status,
            &shared,
            &view,
            &plan,
            asked,
            &per_holder,
            holders_lost,
        );
        tokio::select! {
            answer = rx.recv() => {
                let Some(Answer::Chunk(want, result)) = answer else { continue };
                let addr = keys.get(usize::try_from(want.holder).unwrap_or(usize::MAX)).copied();
                match result {
                    Ok(Response::Chunk { bytes, .. }) => {
                        let (c, v, i) = (Arc::clone(&cache), Arc::clone(&view), want.chunk);
                        let len = bytes.len() as u64;
                        let stored = tokio::task::spawn_blocking(move || c.put(&v, i, &bytes)).await;
                        match stored {
                            Ok(Ok(())) => {
                                plan.completed(now(), want.chunk, want.holder, len);
                                if let Some(a) = addr {
                                    *per_holder.entry(a).or_default() += 1;
                                }
                            }
                            Ok(Err(CacheError::Corrupt { .. })) => {
                                warn!(%stem, chunk = want.chunk, holder = ?addr, "chunk failed verification (corrupt or forged); fetching it again");
                                plan.rejected(want.chunk, want.holder);
                            }
                            Ok(Err(e)) => {
                                warn!(%stem, "cannot cache a chunk: {e}");
                                plan.rejected(want.chunk, want.holder);
                            }
                            Err(e) => {
                                warn!(%stem, "chunk store task failed: {e}");
                                plan.rejected(want.chunk, want.holder);
                            }
                        }
                    }
                    Ok(_) => {
                        debug!(%stem, chunk = want.chunk, holder = ?addr, "holder does not have the chunk");
                        plan.rejected(want.chunk, want.holder);
                    }
                    Err(e) => {
                        warn!(%stem, "holder lost mid-transfer: {e}");
                        holders_lost += 1;
                        plan.holder_lost(want.holder);
                        if let Some(a) = addr {
                            peers.remove(&a);
                            failed_at.insert(a, Instant::now());
                        }
                        // Ask for the holders again at once: the plan
                        // forgot this one, the others carry on.
                        last_refresh = None;
                    }
                }
            }
            () = view.changed() => {}
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    debug!(%stem, "stem no longer played; fetch stopped");
}

/// The open connection to `addr`, connecting if there is none and the
/// holder has not failed recently.
async fn connect(
    addr: SocketAddr,
    key: &LinkKey,
    options: LinkOptions,
    peers: &mut HashMap<SocketAddr, Arc<Peer>>,
    failed_at: &mut HashMap<SocketAddr, Instant>,
) -> Option<Arc<Peer>> {
    if let Some(p) = peers.get(&addr) {
        if p.is_open() {
            return Some(Arc::clone(p));
        }
        peers.remove(&addr);
    }
    if failed_at
        .get(&addr)
        .is_some_and(|t| t.elapsed() < RECONNECT_AFTER)
    {
        return None;
    }
    match Peer::connect(addr, key, options).await {
        Ok(p) => {
            debug!(%addr, "connected to a holder");
            failed_at.remove(&addr);
            let p = Arc::new(p);
            peers.insert(addr, Arc::clone(&p));
            Some(p)
        }
        Err(e) => {
            info!("cannot reach a holder: {e}");
            failed_at.insert(addr, Instant::now());
            None
        }
    }
}

fn publish(
    status: &Mutex<FetchStatus>,
    shared: &StreamShared,
    view: &super::cache::StemView,
    plan: &FetchPlan,
    asked: Vec<String>,
    per_holder: &HashMap<SocketAddr, u64>,
    holders_lost: u64,
) {
    let mut s = status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    s.stem = shared.stem.to_string();
    s.chunks = plan.chunk_count();
    s.cached = view.count_present();
    s.fetched_bytes = plan.fetched_bytes();
    s.played_bytes = view.played_bytes();
    s.rejected = plan.rejected_count();
    s.timeouts = plan.timeout_count();
    s.holders_lost = holders_lost;
    s.holders = asked;
    s.per_holder = per_holder
        .iter()
        .map(|(a, n)| (a.to_string(), *n))
        .collect();
    s.per_holder.sort();
    s.window = plan.window();
    s.latency_ms = plan.latency_ns() as f64 / 1e6;
    s.throughput_kib_s = plan.throughput_bps() / 1024;
    s.starved_frames = shared.starved_frames.load(Ordering::Relaxed);
    s.rejoins = shared.rejoins.load(Ordering::Relaxed);
    s.problem = shared
        .problem
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
}

/// The status of a stem whose manifest is not known yet.
pub(crate) fn pending_status(stem: StemHash) -> FetchStatus {
    FetchStatus {
        stem: stem.to_string(),
        ..FetchStatus::default()
    }
}
