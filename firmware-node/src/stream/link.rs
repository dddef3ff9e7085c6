//! The chunk exchange over TCP: a server answering manifest and chunk
//! requests for what this speaker holds, and a client connection to one
//! holder with pipelined requests.
//!
//! The bytes on the wire are `protocol::exchange`'s: a handshake proving
//! both sides hold the room's secret, then authenticated frames. A peer
//! that fails the handshake is dropped before a single byte of audio is
//! sent; a frame that fails its tag closes the connection.
//!
//! Test-only link delay ([`LinkOptions::delay`]): this kernel has no netem,
//! so a benchmark emulating a far link sets it on the fetching node: every
//! request is held that long before it is sent and every response that long
//! before it is delivered (a round trip of twice the delay), without
//! serialising pipelined requests — each frame is delayed from its own
//! instant, as on a long wire.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoharmonize_protocol::content::StemHash;
use autoharmonize_protocol::exchange::{
    ExchangeError, FrameChecker, FrameTagger, LinkKey, MAGIC, NONCE_LEN, Request, Response, Role,
    TAG_LEN,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Time allowed for connecting and the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Requests queued per connection (beyond what is in flight).
const QUEUE: usize = 64;
/// Connections a server keeps at once; more wait for a free slot.
const MAX_CONNECTIONS: usize = 32;

/// Options of the exchange.
#[derive(Clone, Copy, Debug, Default)]
pub struct LinkOptions {
    /// Test-only: added to every request sent and every response received
    /// by this node's client connections (see the module doc).
    pub delay: Duration,
}

/// Why talking to a holder failed. All are worth trying another holder;
/// [`LinkError::Refused`] means this one will not serve us at all.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Connecting, reading or writing failed.
    #[error("{addr}: {source}")]
    Io {
        /// The holder.
        addr: SocketAddr,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The holder did not answer the handshake in time.
    #[error("{0}: no answer within {HANDSHAKE_TIMEOUT:?}")]
    Timeout(SocketAddr),
    /// The handshake or a frame failed: not a member of this room, or the
    /// stream was tampered with.
    #[error("{addr}: {source}")]
    Refused {
        /// The holder.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: ExchangeError,
    },
    /// The connection closed with this request unanswered.
    #[error("{0}: connection closed")]
    Closed(SocketAddr),
}

/// What a server can serve: the stems this speaker holds as files, and
/// chunks it has cached. Called on a blocking thread.
pub trait ChunkSource: Send + Sync {
    /// The manifest's canonical bytes of `stem`, if held.
    fn manifest(&self, stem: StemHash) -> Option<Vec<u8>>;
    /// Chunk `index` of `stem`, if held. Not verified here: the client
    /// checks every chunk against the manifest.
    fn chunk(&self, stem: StemHash, index: u64) -> Option<Vec<u8>>;
}

async fn read_frame(
    r: &mut OwnedReadHalf,
    checker: &mut FrameChecker,
) -> Result<Option<Vec<u8>>, Result<std::io::Error, ExchangeError>> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Ok(e)),
    }
    let len = FrameChecker::body_len(header).map_err(Err)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(Ok)?;
    let mut tag = [0u8; TAG_LEN];
    r.read_exact(&mut tag).await.map_err(Ok)?;
    checker.check(&body, &tag).map_err(Err)?;
    Ok(Some(body))
}

fn nonce() -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    // Without the OS's randomness a nonce could repeat; fail the
    // connection rather than weaken the handshake.
    if getrandom::fill(&mut n).is_err() {
        warn!("no randomness for a handshake nonce");
    }
    n
}

/// Accepts connections on `listener` and serves `source` to members of the
/// room (those that prove `key`). Runs until the listener fails.
pub async fn serve(listener: TcpListener, key: LinkKey, source: Arc<dyn ChunkSource>) {
    let key = Arc::new(key);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("chunk exchange: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let key = Arc::clone(&key);
        let source = Arc::clone(&source);
        tokio::spawn(async move {
            match serve_one(stream, &key, source).await {
                Ok(n) => debug!(%peer, requests = n, "chunk exchange: connection closed"),
                Err(e) => info!(%peer, "chunk exchange: connection dropped: {e}"),
            }
            drop(permit);
        });
    }
}

async fn serve_one(
    stream: TcpStream,
    key: &LinkKey,
    source: Arc<dyn ChunkSource>,
) -> Result<u64, String> {
    let _ = stream.set_nodelay(true);
    let (mut r, mut w) = stream.into_split();
    let handshake = async {
        let mut hello = [0u8; 4 + NONCE_LEN];
        r.read_exact(&mut hello).await.map_err(|e| e.to_string())?;
        if hello[..4] != MAGIC {
            return Err(ExchangeError::BadMagic.to_string());
        }
        let client: [u8; NONCE_LEN] = hello[4..].try_into().expect("sized above");
        let server = nonce();
        let mut reply = Vec::with_capacity(NONCE_LEN + TAG_LEN);
        reply.extend_from_slice(&server);
        reply.extend_from_slice(&key.proof(Role::Server, &client, &server));
        w.write_all(&reply).await.map_err(|e| e.to_string())?;
        let mut proof = [0u8; TAG_LEN];
        r.read_exact(&mut proof).await.map_err(|e| e.to_string())?;
        if !key.check(Role::Client, &client, &server, &proof) {
            return Err(ExchangeError::BadProof.to_string());
        }
        Ok(key.session(Role::Server, &client, &server))
    };
    let (mut tagger, mut checker) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .map_err(|_| "handshake timed out".to_owned())??;
    let mut served = 0u64;
    loop {
        let body = match read_frame(&mut r, &mut checker).await {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(served),
            Err(Ok(e)) => return Err(e.to_string()),
            Err(Err(e)) => return Err(e.to_string()),
        };
        let request = Request::decode(&body).map_err(|e| e.to_string())?;
        let src = Arc::clone(&source);
        // File reads off the runtime's thread.
        let response = tokio::task::spawn_blocking(move || match request {
            Request::Manifest { id, stem } => match src.manifest(stem) {
                Some(bytes) => Response::Manifest { id, bytes },
                None => Response::NotFound { id },
            },
            Request::Chunk { id, stem, index } => match src.chunk(stem, u64::from(index)) {
                Some(bytes) => Response::Chunk { id, bytes },
                None => Response::NotFound { id },
            },
        })
        .await
        .map_err(|e| e.to_string())?;
        w.write_all(&tagger.frame(&response.encode()))
            .await
            .map_err(|e| e.to_string())?;
        served += 1;
    }
}

type Pending = Arc<Mutex<HashMap<u32, oneshot::Sender<Response>>>>;

/// A connection to one holder. Requests are pipelined; each is answered
/// or fails with [`LinkError::Closed`] when the connection ends.
#[derive(Debug)]
pub struct Peer {
    addr: SocketAddr,
    tx: mpsc::Sender<(Request, oneshot::Sender<Response>)>,
    alive: Arc<AtomicBool>,
}

impl Peer {
    /// Connects to the holder at `addr` and runs the handshake.
    ///
    /// # Errors
    /// [`LinkError`]: unreachable, too slow, or not of this room.
    pub async fn connect(
        addr: SocketAddr,
        key: &LinkKey,
        options: LinkOptions,
    ) -> Result<Peer, LinkError> {
        let io = |source| LinkError::Io { addr, source };
        let refused = |source| LinkError::Refused { addr, source };
        let handshake = async {
            let stream = TcpStream::connect(addr).await.map_err(io)?;
            let _ = stream.set_nodelay(true);
            let (mut r, mut w) = stream.into_split();
            let client = nonce();
            let mut hello = Vec::with_capacity(4 + NONCE_LEN);
            hello.extend_from_slice(&MAGIC);
            hello.extend_from_slice(&client);
            w.write_all(&hello).await.map_err(io)?;
            let mut reply = [0u8; NONCE_LEN + TAG_LEN];
            r.read_exact(&mut reply).await.map_err(io)?;
            let server: [u8; NONCE_LEN] = reply[..NONCE_LEN].try_into().expect("sized above");
            let proof: [u8; TAG_LEN] = reply[NONCE_LEN..].try_into().expect("sized above");
            if !key.check(Role::Server, &client, &server, &proof) {
                return Err(refused(ExchangeError::BadProof));
            }
            w.write_all(&key.proof(Role::Client, &client, &server))
                .await
                .map_err(io)?;
            let (tagger, checker) = key.session(Role::Client, &client, &server);
            Ok((r, w, tagger, checker))
        };
        let (r, w, tagger, checker) = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| LinkError::Timeout(addr))??;
        let (tx, rx) = mpsc::channel(QUEUE);
        let pending: Pending = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        tokio::spawn(write_loop(
            w,
            tagger,
            rx,
            Arc::clone(&pending),
            Arc::clone(&alive),
            options.delay,
        ));
        tokio::spawn(read_loop(
            addr,
            r,
            checker,
            pending,
            Arc::clone(&alive),
            options.delay,
        ));
        Ok(Peer { addr, tx, alive })
    }

    /// The holder's address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the connection is still up.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.alive.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// Sends `request` (its id is replaced) and waits for the answer.
    ///
    /// # Errors
    /// [`LinkError::Closed`] if the connection ended first.
    pub async fn ask(&self, request: Request) -> Result<Response, LinkError> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send((request, done))
            .await
            .map_err(|_| LinkError::Closed(self.addr))?;
        answer.await.map_err(|_| LinkError::Closed(self.addr))
    }
}

async fn write_loop(
    mut w: OwnedWriteHalf,
    mut tagger: FrameTagger,
    mut rx: mpsc::Receiver<(Request, oneshot::Sender<Response>)>,
    pending: Pending,
    alive: Arc<AtomicBool>,
    delay: Duration,
) {
    let mut next_id = 0u32;
    // Delayed frames wait in order in their own queue, so one request's
    // delay does not hold back the next one's.
    let (delayed_tx, mut delayed_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let sender = async move {
        while let Some((due, frame)) = delayed_rx.recv().await {
            tokio::time::sleep_until(due).await;
            if w.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    let enqueue = async move {
        while let Some((request, done)) = rx.recv().await {
            next_id = next_id.wrapping_add(1);
            let request = match request {
                Request::Manifest { stem, .. } => Request::Manifest { id: next_id, stem },
                Request::Chunk { stem, index, .. } => Request::Chunk {
                    id: next_id,
                    stem,
                    index,
                },
            };
            let mut waiting = pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Checked under the lock the read loop clears: a request is
            // either answered or its waiter dropped (Closed), never lost.
            if !alive.load(Ordering::Acquire) {
                return;
            }
            waiting.insert(next_id, done);
            drop(waiting);
            let frame = tagger.frame(&request.encode());
            if delayed_tx.send((Instant::now() + delay, frame)).is_err() {
                return;
            }
        }
    };
    // Either half ending ends the connection (dropping the write half
    // closes it, which ends the read loop).
    tokio::select! {
        () = sender => {}
        () = enqueue => {}
    }
}

async fn read_loop(
    addr: SocketAddr,
    mut r: OwnedReadHalf,
    mut checker: FrameChecker,
    pending: Pending,
    alive: Arc<AtomicBool>,
    delay: Duration,
) {
    let (deliver_tx, mut deliver_rx) = mpsc::unbounded_channel::<(Instant, Response)>();
    let deliver_pending = Arc::clone(&pending);
    let deliver = tokio::spawn(async move {
        while let Some((due, response)) = deliver_rx.recv().await {
            tokio::time::sleep_until(due).await;
            let waiter = deliver_pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&response.id());
            if let Some(w) = waiter {
                let _ = w.send(response);
            }
        }
    });
    loop {
        let body = match read_frame(&mut r, &mut checker).await {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(Ok(e)) => {
                debug!(%addr, "chunk exchange: read failed: {e}");
                break;
            }
            Err(Err(e)) => {
                warn!(%addr, "chunk exchange: {e}; closing");
                break;
            }
        };
        match Response::decode(&body) {
            Ok(resp) => {
                if deliver_tx.send((Instant::now() + delay, resp)).is_err() {
                    break;
                }
            }
            Err(e) => {
                warn!(%addr, "chunk exchange: {e}; closing");
                break;
            }
        }
    }
    drop(deliver_tx);
    let _ = deliver.await;
    // Every request still waiting fails now (its sender is dropped).
    let mut waiting = pending
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    alive.store(false, Ordering::Release);
    waiting.clear();
}
