//! The controller's membership of the room: the node's own mesh loop and
//! discovery, run with the controller role (votes and observes, never
//! counts toward a majority, never leads).
//!
//! [`Link::act`] is what every front end uses to change the room: cast the
//! vote, then wait until the decision carrying it is applied on the mesh
//! clock (or say why it never will be).
//!
//! Invariant: the link never decides anything itself; everything it reports
//! comes from the mesh loop's published status.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use autoharmonize_node::discovery::{Discovery, DiscoveryConfig};
use autoharmonize_node::mesh::{self, AudioHealth, Mesh, MeshSetup};
use autoharmonize_node::status::NodeStatus;
use autoharmonize_protocol::envelope::GroupKey;
use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::member::CastError;
use autoharmonize_protocol::wire::Role;
use autoharmonize_protocol::{BootId, MemberId};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::ballot::{Ballot, Client};
use crate::mixer::Connection;
use crate::pending::{Outcome, Pending};

/// How long the CLI waits, after joining, for the names of the room's
/// speakers and the loaded track's title and channel names before showing
/// anything ([`Link::described`]): they come with the catalogue, usually a
/// few rounds after joining. Past it, what has not arrived is shown as
/// not known yet.
pub const DESCRIBE_WAIT: Duration = Duration::from_secs(2);

/// How to reach the room.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// The room's secret.
    pub secret: Vec<u8>,
    /// Where the controller's mesh socket binds (port 0: any).
    pub bind: SocketAddr,
    /// Speakers to contact directly.
    pub peers: Vec<SocketAddr>,
    /// Whether to browse mDNS for speakers.
    pub mdns: bool,
    /// Interfaces for mDNS (empty: all but loopback).
    pub mdns_interfaces: Vec<String>,
    /// The room's heartbeat, ms (a joiner adopts the room's anyway).
    pub heartbeat_ms: u64,
    /// How long silence means there is no speaker.
    pub give_up: Duration,
    /// The name the room shows for this controller (`None`: the
    /// hostname, marked as a controller).
    pub name: Option<String>,
}

impl LinkConfig {
    /// Whether the controller can meet a speaker at all: it looks for them
    /// (mDNS), knows one (`peers`), or binds a fixed port that speakers may
    /// list as their static peer (the demo's and the tests' rooms do).
    #[must_use]
    pub fn can_reach_anyone(&self) -> bool {
        self.mdns || !self.peers.is_empty() || self.bind.port() != 0
    }
}

/// Why the controller could not do what was asked. Retrying helps for
/// [`LinkError::ReadOnly`] and [`LinkError::Timeout`] once the network
/// heals; the others need a person.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The mesh socket could not be bound.
    #[error("cannot bind the controller's socket to {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The secret is unusable.
    #[error("the group secret: {0}")]
    Secret(String),
    /// mDNS could not start.
    #[error("starting mDNS discovery (use --no-mdns and --peer to do without): {0}")]
    Discovery(#[from] autoharmonize_node::discovery::DiscoveryError),
    /// mDNS is off, no peer is given and the socket's port is picked at
    /// random, so no speaker can be contacted and none can know where to
    /// reach the controller: waiting would only end in [`LinkError::NoSpeaker`].
    #[error(
        "nothing to contact: --no-mdns turns off looking for speakers and no --peer names one \
         (give --peer ADDR[:PORT] for a speaker, or leave out --no-mdns)"
    )]
    NothingToContact,
    /// Speakers answered but rejected our secret: their datagrams failed
    /// authentication here, or they sent refusal notices for ours.
    #[error(
        "wrong secret: the speakers answer, but this controller's datagrams fail authentication \
         there (or theirs here); check --secret-file against the speakers' secret_file"
    )]
    WrongSecret,
    /// Nobody answered.
    #[error(
        "no speaker found within {0:?} (are the speakers on, on this network, and is --peer or mDNS right?)"
    )]
    NoSpeaker(Duration),
    /// In the room, but no speaker has been heard for a while.
    #[error(
        "no speaker is answering: none has been heard for a few seconds (switched off, or the \
         network to them is down)"
    )]
    NoAnswer,
    /// Our side of a partition has no majority.
    #[error("read-only: this controller cannot reach a majority of the speakers")]
    ReadOnly,
    /// The room refused the vote.
    #[error("vote refused: {0}")]
    Refused(#[from] CastError),
    /// This client's own queue of votes is full (it votes faster than the
    /// room decides), or too many clients vote at once. Retrying once its
    /// earlier votes are decided helps.
    #[error("vote refused: {0}")]
    Busy(#[from] crate::fair::Refusal),
    /// The vote was dropped without a decision.
    #[error("the vote was not decided (the room lost its majority, or changed)")]
    Dropped,
    /// No decision in time.
    #[error("no decision within {0:?}")]
    Timeout(Duration),
    /// The mesh loop stopped.
    #[error("the controller's mesh loop stopped")]
    Stopped,
}

/// A running controller member.
pub struct Link {
    status: watch::Receiver<Arc<NodeStatus>>,
    /// Our votes on their way into the member, in fair turns per client.
    ballot: Arc<Ballot>,
    /// This link's own client (the CLI's verbs, the demo's set-up).
    own: Client,
    /// Hands queued votes to the member.
    feeder: JoinHandle<()>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
    started: Instant,
    give_up: Duration,
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // A failure here means the OS has no randomness at all; a fixed id would
    // still work for one controller, so do not refuse to start.
    if let Err(e) = getrandom::fill(&mut b) {
        warn!("no randomness for the controller id: {e}");
    }
    u64::from_le_bytes(b)
}

impl Link {
    /// Binds the socket, starts discovery and the mesh loop. Must run inside
    /// a tokio runtime.
    ///
    /// # Errors
    /// [`LinkError::NothingToContact`], [`LinkError::Bind`],
    /// [`LinkError::Secret`], [`LinkError::Discovery`].
    pub async fn start(cfg: &LinkConfig) -> Result<Link, LinkError> {
        if !cfg.can_reach_anyone() {
            return Err(LinkError::NothingToContact);
        }
        let key = GroupKey::new(&cfg.secret).map_err(|e| LinkError::Secret(e.to_string()))?;
        let socket = UdpSocket::bind(cfg.bind)
            .await
            .map_err(|source| LinkError::Bind {
                addr: cfg.bind,
                source,
            })?;
        let port = socket.local_addr().map_or(0, |a| a.port());
        // A fresh id per run: a controller has no state to keep, and a new
        // id can never be mistaken for a previous run's replays.
        let id = MemberId(random_u64());
        let boot = BootId(u32::try_from(random_u64() >> 33).unwrap_or(1));
        let (health_tx, health) = watch::channel(AudioHealth::default());
        let (mesh, status) = Mesh::new(MeshSetup {
            id,
            boot,
            name: cfg.name.clone().unwrap_or_else(|| {
                autoharmonize_node::config::hostname().map_or_else(
                    || format!("controller-{}", &id.to_string()[..8]),
                    |h| format!("{h} (controller)"),
                )
            }),
            member: mesh::member_config_for(Role::Controller, cfg.heartbeat_ms, None),
            key,
            socket,
            peers: cfg.peers.clone(),
            clock: autoharmonize_node::clock::LocalClock::system(),
            health,
            player: None,
            library: Vec::new(),
            saver: None,
        });
        let (commands, commands_rx) = mpsc::channel(16);
        let (discovered_tx, discovered_rx) = mpsc::channel(64);
        let discovery = if cfg.mdns {
            let d = Discovery::start(&DiscoveryConfig {
                name: "autoharmonize-controller".into(),
                id,
                channel: "controller".into(),
                port,
                interfaces: cfg.mdns_interfaces.clone(),
                ipv6: cfg.bind.is_ipv6(),
            })?;
            Some(Arc::new(d))
        } else {
            None
        };
        if let Some(d) = discovery.clone() {
            tokio::spawn(autoharmonize_node::discovery::feed_mesh(d, discovered_tx));
        }
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stop_rx.await;
            };
            if let Err(e) = mesh.run(shutdown, commands_rx, discovered_rx).await {
                warn!("the controller's mesh socket failed: {e}");
            }
            if let Some(d) = discovery.and_then(|d| Arc::try_unwrap(d).ok()) {
                let _ = tokio::task::spawn_blocking(move || d.shutdown()).await;
            }
            // Kept until here: a controller has no audio to report.
            drop(health_tx);
        });
        info!(member = %id, port, "controller joining the room");
        let ballot = Ballot::new(status.clone());
        let feeder = tokio::spawn(Arc::clone(&ballot).feed(commands));
        Ok(Link {
            status,
            own: ballot.client(),
            ballot,
            feeder,
            stop: Mutex::new(Some(stop)),
            task: Mutex::new(Some(task)),
            started: Instant::now(),
            give_up: cfg.give_up,
        })
    }

    /// The latest status of our member.
    #[must_use]
    pub fn status(&self) -> Arc<NodeStatus> {
        self.status.borrow().clone()
    }

    /// A receiver of status updates (published about every 50 ms).
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Arc<NodeStatus>> {
        self.status.clone()
    }

    /// How long the link has been looking for (or been in) the room.
    #[must_use]
    pub fn waited(&self) -> Duration {
        self.started.elapsed()
    }

    /// Silence after which nobody is there.
    #[must_use]
    pub fn give_up(&self) -> Duration {
        self.give_up
    }

    /// How we stand with the room now.
    #[must_use]
    pub fn connection(&self) -> Connection {
        Connection::of(&self.status(), self.waited(), self.give_up)
    }

    /// Waits (at most `timeout`) until the room's catalogue has arrived:
    /// every member's index and every track's description. Returns the
    /// latest status either way; a catalogue still incomplete after the
    /// timeout lists what has arrived (members that do not answer are
    /// evicted from the view, and with them their tracks).
    pub async fn catalogue(&self, timeout: Duration) -> Arc<NodeStatus> {
        let mut rx = self.status.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let st = rx.borrow_and_update().clone();
            // A fresh member knows nobody's index until the first
            // heartbeats: wait until the view's speakers gave names too.
            let named = st
                .view
                .iter()
                .all(|m| m.name.is_some() || m.role == "controller");
            if st.catalogue_complete && named && st.room.is_some() {
                return st;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return self.status();
            }
        }
    }

    /// Waits (at most `timeout`) until what the room's members and its
    /// track are called has arrived: the name of every speaker in the view
    /// and the loaded track's description (its title and channel names).
    /// They come with the catalogue a few rounds after joining; the rest
    /// of the catalogue (every track's holders) is not waited for. Returns
    /// the latest status either way; see [`described`].
    pub async fn described(&self, timeout: Duration) -> Arc<NodeStatus> {
        let mut rx = self.status.clone();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let st = rx.borrow_and_update().clone();
            if described(&st) {
                return st;
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return self.status();
            }
        }
    }

    /// Waits until the controller is in the room and the room has
    /// decided something since (so its state is current).
    ///
    /// # Errors
    /// [`LinkError::WrongSecret`], [`LinkError::NoSpeaker`],
    /// [`LinkError::NoAnswer`], [`LinkError::Stopped`].
    pub async fn joined(&self) -> Result<Arc<NodeStatus>, LinkError> {
        let mut rx = self.status.clone();
        loop {
            let st = self.status();
            match Connection::of(&st, self.waited(), self.give_up) {
                Connection::Live | Connection::ReadOnly if !st.channels.is_empty() => {
                    return Ok(st);
                }
                Connection::WrongSecret if self.waited() >= self.give_up / 2 => {
                    return Err(LinkError::WrongSecret);
                }
                Connection::NoSpeaker => return Err(LinkError::NoSpeaker(self.give_up)),
                Connection::NoAnswer => return Err(LinkError::NoAnswer),
                _ => {}
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), rx.changed()).await;
        }
    }

    /// Casts a vote as this link's own client (see [`Link::client`]);
    /// returns its sequence number once the member took it.
    ///
    /// # Errors
    /// [`LinkError::Busy`], [`LinkError::Refused`] ([`LinkError::ReadOnly`]
    /// for a read-only side), [`LinkError::Stopped`].
    pub async fn cast(&self, event: Event) -> Result<u32, LinkError> {
        self.own.cast(event).await
    }

    /// A client of its own for one person's connection (a page, an HTTP
    /// connection): its votes wait in their own queue and take turns with
    /// every other client's ([`crate::ballot`]).
    #[must_use]
    pub fn client(&self) -> Client {
        self.ballot.client()
    }

    /// Which channels wait for one of our votes, of any client: queued
    /// for their turn, or cast and not yet applied.
    #[must_use]
    pub fn pending(&self) -> Pending {
        self.ballot.pending()
    }

    /// Waits until vote `seq` is applied; returns the status from then.
    ///
    /// # Errors
    /// [`LinkError::Dropped`], [`LinkError::Timeout`], [`LinkError::Stopped`].
    pub async fn applied(&self, seq: u32, timeout: Duration) -> Result<Arc<NodeStatus>, LinkError> {
        let deadline = Instant::now() + timeout;
        let mut rx = self.status.clone();
        loop {
            let st = self.status();
            match outcome(&st, seq) {
                Outcome::Dropped => return Err(LinkError::Dropped),
                Outcome::Decided(at) => {
                    let now = st.mesh_time_ns.unwrap_or(0);
                    match at {
                        Some(at) if at > now => {
                            // Sleep to the instant, then read a fresh status.
                            tokio::time::sleep(Duration::from_nanos(at - now)).await;
                        }
                        _ => return Ok(st),
                    }
                    let st = self.status();
                    if at.is_none_or(|at| st.mesh_time_ns.unwrap_or(0) >= at) {
                        return Ok(st);
                    }
                    // Status not refreshed yet: fall through to wait for it.
                }
                Outcome::Waiting => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LinkError::Timeout(timeout));
            }
            if tokio::time::timeout(left, rx.changed())
                .await
                .is_ok_and(|r| r.is_err())
            {
                return Err(LinkError::Stopped);
            }
        }
    }

    /// Casts `event` and waits until it is applied.
    ///
    /// # Errors
    /// As [`Link::cast`] and [`Link::applied`].
    pub async fn act(&self, event: Event) -> Result<Arc<NodeStatus>, LinkError> {
        let seq = self.cast(event).await?;
        self.applied(seq, Duration::from_secs(5)).await
    }

    /// Says goodbye to the room and stops the loop.
    pub async fn stop(&self) {
        self.feeder.abort();
        let stop = self
            .stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
    }
}

/// Whether `st` knows what its room's speakers and loaded track are
/// called (see [`Link::described`]).
#[must_use]
pub fn described(st: &NodeStatus) -> bool {
    let named = st
        .view
        .iter()
        .all(|m| m.name.is_some() || m.role == "controller");
    let track = st.track.as_ref().is_none_or(|t| t.title.is_some());
    st.room.is_some() && named && track
}

/// What our member's status says about own vote `seq`.
#[must_use]
pub fn outcome(st: &NodeStatus, seq: u32) -> Outcome {
    match st.own_votes.iter().find(|v| v.seq == seq) {
        Some(v) if v.state == "decided" => Outcome::Decided(v.apply_at),
        Some(v) if v.state == "dropped" => Outcome::Dropped,
        Some(_) => Outcome::Waiting,
        // Older than every vote the status keeps: long settled.
        None if st.own_votes.first().is_some_and(|f| f.seq > seq) => Outcome::Decided(None),
        // Not in the published status yet.
        None => Outcome::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mdns: bool, peers: &[&str], bind: &str) -> LinkConfig {
        LinkConfig {
            secret: b"correct horse battery staple 42".to_vec(),
            bind: bind.parse().expect("an address"),
            peers: peers
                .iter()
                .map(|p| p.parse().expect("an address"))
                .collect(),
            mdns,
            mdns_interfaces: Vec::new(),
            heartbeat_ms: 100,
            give_up: Duration::from_secs(600),
            name: None,
        }
    }

    #[test]
    fn a_controller_needs_some_way_to_meet_a_speaker() {
        assert!(!config(false, &[], "127.0.0.1:0").can_reach_anyone());
        assert!(config(true, &[], "127.0.0.1:0").can_reach_anyone());
        assert!(config(false, &["127.0.0.1:7710"], "127.0.0.1:0").can_reach_anyone());
        // Speakers that list this address as a static peer will come.
        assert!(config(false, &[], "127.0.0.1:7799").can_reach_anyone());
    }

    #[tokio::test]
    async fn nothing_to_contact_fails_at_once_instead_of_waiting() {
        // The give-up is 600 s: an answer at all means it did not wait.
        match Link::start(&config(false, &[], "127.0.0.1:0")).await {
            Err(LinkError::NothingToContact) => {}
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("started a link that can reach nobody"),
        }
    }
}
