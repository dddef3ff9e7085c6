//! Discovery: finds the other speakers of the room on the local network by
//! mDNS, so a speaker plugged in anywhere joins without configuration.
//!
//! Each node advertises `_autoharmonize._udp.local.` (instance name: speaker
//! name plus the start of its member id, port: the mesh's UDP port, TXT
//! records `id`, `v`, `ch`) on the chosen interfaces and browses the same
//! type. What it finds becomes a bounded table of peers, and each change of
//! that table becomes one [`PeerEvent`] for the mesh, which polls
//! ([`Discovery::poll_event`]) or awaits ([`Discovery::next_event`]) them.
//! The service is an ordinary DNS-SD service, so standard tools see it too
//! (`avahi-browse -rt _autoharmonize._udp`).
//!
//! Invariant: discovery only ever *adds* addresses. It never reports a peer
//! as gone, because a crashed speaker sends no goodbye and a goodbye can be
//! lost: liveness is the mesh's failure detector's business alone. Removal
//! announcements only make the next announcement of the same peer count as
//! news. Everything read from the network is bounded: at most
//! [`MAX_PEERS`] peers (the least recently announced is forgotten first), at
//! most [`MAX_ADDRS`] addresses each, one version warning per peer.
//!
//! mdns-sd skips, without a word, every send whose interface it cannot
//! choose (`IP_MULTICAST_IF`); qemu-user does not emulate that option, so
//! [`Discovery::start`] probes it and warns that this speaker will only be
//! found through `peers` or by speakers it hears (docs/deploy.md).
//!
//! Threads: mdns-sd runs its own daemon thread; a small pump thread drains
//! its events at once (mdns-sd silently ends a subscription whose channel
//! fills up) into the peer table, whose pending changes coalesce per peer
//! until the mesh takes them. Nothing here is on the audio path.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use autoharmonize_protocol::MemberId;
use autoharmonize_protocol::wire::VERSION;
use mdns_sd::{IfKind, ResolvedService, ScopedIp, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::config::{ChannelSpec, Config};

/// The DNS-SD service type every speaker advertises and browses.
pub const SERVICE_TYPE: &str = "_autoharmonize._udp.local.";
/// TXT key of the member id (16 hex digits).
pub const TXT_ID: &str = "id";
/// TXT key of the protocol format version (decimal).
pub const TXT_VERSION: &str = "v";
/// TXT key of the channel (stem) the speaker plays: `all`, a stem number or
/// a stem name.
pub const TXT_CHANNEL: &str = "ch";
/// Most peers kept: four times the largest room, so a few stale entries never
/// crowd out a real speaker, while a flood of fake announcements costs at
/// most this many entries.
pub const MAX_PEERS: usize = 4 * autoharmonize_protocol::wire::MAX_MEMBERS;
/// Most addresses kept per peer (a speaker has a few interfaces, each with
/// an IPv4 and a couple of IPv6 addresses).
pub const MAX_ADDRS: usize = 16;
/// Longest DNS label, hence longest instance name.
const MAX_LABEL_LEN: usize = 63;
/// How long [`Discovery::shutdown`] waits for each step (goodbye, daemon
/// exit, pump exit) before giving up on it.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(2);

/// What this node announces and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Speaker name (the instance name's first part).
    pub name: String,
    /// This node's member id.
    pub id: MemberId,
    /// The `ch` TXT value (see [`channel_txt`]).
    pub channel: String,
    /// The mesh socket's UDP port (the bound one, if `listen` said port 0).
    pub port: u16,
    /// Interfaces to run mDNS on; empty means every interface but loopback.
    /// Loopback runs only when named (`lo`), as demos and tests do.
    pub interfaces: Vec<String>,
    /// Whether the mesh socket can reach IPv6 addresses (it is bound to an
    /// IPv6 address). Without it, mDNS runs over IPv4 only and peers' IPv6
    /// addresses are not reported.
    pub ipv6: bool,
}

impl DiscoveryConfig {
    /// The announcement for a node with `config`, member id `id` and its mesh
    /// socket bound to `port`.
    #[must_use]
    pub fn new(config: &Config, id: MemberId, port: u16) -> Self {
        Self {
            name: config.name.clone(),
            id,
            channel: channel_txt(&config.channel),
            port,
            interfaces: config.mdns_interfaces.clone(),
            ipv6: config.listen.is_ipv6(),
        }
    }

    /// The mDNS instance name: the speaker name, cut to fit one DNS label,
    /// then `-` and the first 8 hex digits of the member id, so two speakers
    /// with the same name never collide.
    #[must_use]
    pub fn instance_name(&self) -> String {
        let id = self.id.to_string();
        let short = &id[..8];
        let room = MAX_LABEL_LEN - 1 - short.len();
        let mut end = self.name.len().min(room);
        while !self.name.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}-{short}", &self.name[..end])
    }

    /// The host name of the address records: one per member, so a speaker's
    /// addresses never mix with another service on the same computer.
    #[must_use]
    pub fn host_name(&self) -> String {
        format!("ah-{}.local.", self.id)
    }
}

/// Feeds what `discovery` finds to the mesh loop (the `discovered` channel
/// of `Mesh::run`): one address per member, IPv4 first (the mesh socket's
/// usual family), until the mesh stops listening. Spawn it on the mesh's
/// runtime.
pub async fn feed_mesh(
    discovery: Arc<Discovery>,
    to_mesh: tokio::sync::mpsc::Sender<crate::mesh::PeerAddr>,
) {
    while let Some(PeerEvent::Seen { id, addrs, .. }) = discovery.next_event().await {
        let best = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied();
        if let Some(addr) = best
            && to_mesh
                .send(crate::mesh::PeerAddr { id, addr })
                .await
                .is_err()
        {
            break;
        }
    }
}

/// The `ch` TXT value for a channel: `all`, the stem number, or its name.
#[must_use]
pub fn channel_txt(channel: &ChannelSpec) -> String {
    match channel {
        ChannelSpec::All => "all".to_owned(),
        ChannelSpec::Index(i) => i.to_string(),
        ChannelSpec::Name(name) => name.clone(),
    }
}

/// A change in the peer table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// A peer speaking our protocol version was announced for the first time
    /// or with other addresses than last reported (a restart on a new port,
    /// a new interface), or again after mDNS said it was gone. `addrs` is
    /// every address of its latest announcement (sorted, at most
    /// [`MAX_ADDRS`]); earlier addresses may still work, and whether the peer
    /// lives is for the mesh to find out.
    Seen {
        /// The peer's member id.
        id: MemberId,
        /// Where its mesh socket listens.
        addrs: Vec<SocketAddr>,
        /// Its protocol format version (always ours: others are ignored).
        version: u8,
    },
}

/// Why discovery could not start or stop. Starting again can help only for
/// [`DiscoveryError::NoInterface`] (an interface may come up later); the
/// others are faults of the system or of mdns-sd. A node can always run on
/// static peers instead.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The operating system would not list the network interfaces.
    #[error("cannot list network interfaces: {0}")]
    Interfaces(#[source] std::io::Error),
    /// None of the interfaces mDNS may use is up with a usable address.
    #[error("no usable network interface for mDNS: {0}")]
    NoInterface(String),
    /// mdns-sd refused a request.
    #[error("mDNS: cannot {action}: {source}")]
    Mdns {
        /// What was asked.
        action: &'static str,
        /// mdns-sd's error.
        #[source]
        source: mdns_sd::Error,
    },
    /// The pump thread could not be started.
    #[error("cannot start the discovery thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The mDNS daemon did not confirm its shutdown in time; its thread may
    /// linger until the process exits.
    #[error("mDNS daemon did not stop within {0:?}")]
    ShutdownTimeout(Duration),
}

fn mdns(action: &'static str) -> impl FnOnce(mdns_sd::Error) -> DiscoveryError {
    move |source| DiscoveryError::Mdns { action, source }
}

/// A running advertisement and browser; see the module docs. Dropping it
/// stops both without waiting; [`Discovery::shutdown`] waits (bounded).
pub struct Discovery {
    daemon: ServiceDaemon,
    fullname: String,
    table: Arc<Mutex<PeerTable>>,
    /// Holds a token whenever the table may have pending changes.
    wake: flume::Receiver<()>,
    pump: Option<JoinHandle<()>>,
    stopped: bool,
}

impl Discovery {
    /// Starts advertising and browsing on the interfaces `config` names.
    ///
    /// # Errors
    /// [`DiscoveryError::NoInterface`] when no chosen interface is up,
    /// naming what was wanted and what is up; the other variants when the
    /// system or mdns-sd refuse.
    pub fn start(config: &DiscoveryConfig) -> Result<Self, DiscoveryError> {
        let interfaces = if_addrs::get_if_addrs().map_err(DiscoveryError::Interfaces)?;
        let usable = usable_interfaces(&config.interfaces, config.ipv6, &interfaces)?;
        if let Some(warning) = multicast_send_warning(&usable, &interfaces) {
            tracing::warn!("{warning}");
        }
        let instance = config.instance_name();
        let properties = [
            (TXT_ID, config.id.to_string()),
            (TXT_VERSION, VERSION.to_string()),
            (TXT_CHANNEL, config.channel.clone()),
        ];
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &instance,
            &config.host_name(),
            (),
            config.port,
            &properties[..],
        )
        .map_err(mdns("build the announcement"))?
        // Addresses follow the enabled interfaces, also when they change.
        .enable_addr_auto();
        let fullname = info.get_fullname().to_owned();

        let daemon = ServiceDaemon::new().map_err(mdns("start the daemon"))?;
        let (wake_tx, wake_rx) = flume::bounded(1);
        let mut discovery = Discovery {
            daemon,
            fullname: fullname.clone(),
            table: Arc::new(Mutex::new(PeerTable::new(
                config.id,
                &fullname,
                VERSION,
                config.ipv6,
            ))),
            wake: wake_rx,
            pump: None,
            stopped: false,
        };
        // On error `discovery` drops here and stops the daemon's thread.
        discovery.select_interfaces(config)?;
        discovery
            .daemon
            .register(info)
            .map_err(mdns("register the service"))?;
        let events = discovery
            .daemon
            .browse(SERVICE_TYPE)
            .map_err(mdns("browse"))?;
        let table = Arc::clone(&discovery.table);
        let span = tracing::info_span!("discovery", member = %config.id);
        discovery.pump = Some(
            std::thread::Builder::new()
                .name("discovery".into())
                .spawn(move || span.in_scope(|| pump(&events, &table, &wake_tx)))
                .map_err(DiscoveryError::Thread)?,
        );
        tracing::info!(
            member = %config.id,
            instance = %instance,
            port = config.port,
            interfaces = ?usable,
            "advertising {SERVICE_TYPE}"
        );
        Ok(discovery)
    }

    /// Applies the interface choice. The daemon applies selections in order,
    /// the last match winning, and starts with every interface enabled.
    fn select_interfaces(&self, config: &DiscoveryConfig) -> Result<(), DiscoveryError> {
        let d = &self.daemon;
        if config.interfaces.is_empty() {
            d.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])
        } else {
            d.disable_interface(IfKind::All).and_then(|()| {
                d.enable_interface(
                    config
                        .interfaces
                        .iter()
                        .map(IfKind::from)
                        .collect::<Vec<_>>(),
                )
            })
        }
        .map_err(mdns("choose interfaces"))?;
        if !config.ipv6 {
            d.disable_interface(IfKind::IPv6)
                .map_err(mdns("choose interfaces"))?;
        }
        Ok(())
    }

    /// The full DNS-SD name this node advertises
    /// (`{instance}._autoharmonize._udp.local.`).
    #[must_use]
    pub fn fullname(&self) -> &str {
        &self.fullname
    }

    /// The next pending change, if any; never blocks.
    #[must_use]
    pub fn poll_event(&self) -> Option<PeerEvent> {
        lock(&self.table).pop()
    }

    /// The next change, awaited (on any async runtime). `None` only if the
    /// mDNS daemon has ended (it does not on its own) and every change was
    /// taken. Cancel-safe, so it can sit in a `select!`: a change leaves the
    /// table only when it is returned.
    pub async fn next_event(&self) -> Option<PeerEvent> {
        loop {
            if let Some(event) = self.poll_event() {
                return Some(event);
            }
            if self.wake.recv_async().await.is_err() {
                return self.poll_event();
            }
        }
    }

    /// Every peer in the table, as it would be reported now, in id order;
    /// for status pages and for re-contacting peers the mesh has forgotten.
    #[must_use]
    pub fn peers(&self) -> Vec<PeerEvent> {
        lock(&self.table).snapshot()
    }

    /// Sends the goodbye (so other speakers' mDNS caches drop this one at
    /// once), stops the daemon and the pump, waiting at most a few seconds.
    ///
    /// # Errors
    /// [`DiscoveryError::ShutdownTimeout`] if the daemon did not confirm.
    pub fn shutdown(mut self) -> Result<(), DiscoveryError> {
        self.stop(true)
    }

    fn stop(&mut self, wait: bool) -> Result<(), DiscoveryError> {
        if std::mem::replace(&mut self.stopped, true) {
            return Ok(());
        }
        // Errors here mean the daemon is already gone: nothing to stop.
        if let Ok(done) = self.daemon.unregister(&self.fullname)
            && wait
        {
            let _ = done.recv_timeout(SHUTDOWN_TIMEOUT);
        }
        let Ok(done) = self.daemon.shutdown() else {
            return Ok(());
        };
        if !wait {
            return Ok(());
        }
        if done.recv_timeout(SHUTDOWN_TIMEOUT).is_err() {
            return Err(DiscoveryError::ShutdownTimeout(SHUTDOWN_TIMEOUT));
        }
        // The daemon's exit drops every sender of the browse channel, which
        // ends the pump.
        if let Some(pump) = self.pump.take() {
            let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
            while !pump.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if pump.is_finished() {
                let _ = pump.join();
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("fullname", &self.fullname)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        let _ = self.stop(false);
    }
}

fn lock(table: &Mutex<PeerTable>) -> MutexGuard<'_, PeerTable> {
    // A panic in the pump leaves the table consistent (each update is a
    // few assignments), so its data stays usable.
    table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drains mDNS events into the table until the daemon stops.
fn pump(
    events: &flume::Receiver<ServiceEvent>,
    table: &Mutex<PeerTable>,
    wake: &flume::Sender<()>,
) {
    while let Ok(event) = events.recv() {
        let news = match event {
            ServiceEvent::ServiceResolved(service) => {
                let mut table = lock(table);
                let resolution = Resolution::from_service(&service, table.ipv6);
                table.observe(&resolution)
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                lock(table).mark_gone(&fullname);
                false
            }
            _ => false,
        };
        if news {
            // Full: a wake-up is already pending, which is all we need.
            let _ = wake.try_send(());
        }
    }
    tracing::debug!("mDNS browse ended");
}

/// Checks that mDNS has somewhere to run and returns the names of the
/// interfaces it will use now. mdns-sd itself rechecks interfaces every few
/// seconds, so one that comes up later is used too.
fn usable_interfaces(
    wanted: &[String],
    ipv6: bool,
    interfaces: &[if_addrs::Interface],
) -> Result<Vec<String>, DiscoveryError> {
    // The same filter mdns-sd applies, plus our family and loopback rules.
    let up = interfaces
        .iter()
        .filter(|i| i.is_oper_up() && !i.is_p2p() && (ipv6 || i.ip().is_ipv4()));
    let mut usable: Vec<String> = Vec::new();
    let mut up_names: Vec<&str> = Vec::new();
    for i in up {
        let chosen = if wanted.is_empty() {
            !i.is_loopback()
        } else {
            wanted.contains(&i.name)
        };
        if chosen && !usable.contains(&i.name) {
            usable.push(i.name.clone());
        }
        if !up_names.contains(&i.name.as_str()) {
            up_names.push(&i.name);
        }
    }
    let family = if ipv6 { "an IP" } else { "an IPv4" };
    if usable.is_empty() {
        let wanted = if wanted.is_empty() {
            "any interface but loopback".to_owned()
        } else {
            format!("{} (mdns_interfaces)", wanted.join(", "))
        };
        return Err(DiscoveryError::NoInterface(format!(
            "none of {wanted} is up with {family} address; up: [{}]",
            up_names.join(", ")
        )));
    }
    for name in wanted.iter().filter(|w| !usable.contains(w)) {
        tracing::warn!(
            "mDNS interface {name} is not up with {family} address; using {}",
            usable.join(", ")
        );
    }
    Ok(usable)
}

/// Whether this system lets a socket choose the interface its multicast
/// leaves by (`IP_MULTICAST_IF`). mdns-sd sets it before every query and
/// announcement and, when that fails, skips the send without a word; under
/// qemu-user (up to at least 7.2) the option is not emulated, so a speaker
/// there announces nothing and asks nothing, and only hears announcements
/// that others send on their own (at their start).
fn probe_multicast_if(addr: std::net::Ipv4Addr) -> std::io::Result<()> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.set_multicast_if_v4(&addr)
}

/// A warning for a person when no IPv4 address of the `usable` interfaces
/// can be chosen for multicast sends (see [`probe_multicast_if`]); `None`
/// when one can, or when none has an IPv4 address to try.
fn multicast_send_warning(usable: &[String], interfaces: &[if_addrs::Interface]) -> Option<String> {
    let mut failure = None;
    for i in interfaces.iter().filter(|i| usable.contains(&i.name)) {
        let IpAddr::V4(addr) = i.ip() else { continue };
        match probe_multicast_if(addr) {
            Ok(()) => return None,
            Err(e) => failure = Some((i.name.clone(), e)),
        }
    }
    let (name, e) = failure?;
    Some(format!(
        "mDNS cannot send on this system: choosing {name} for multicast failed ({e}; \
         qemu-user, for one, does not emulate IP_MULTICAST_IF). This speaker neither announces \
         itself nor asks for others; it finds only speakers that announce themselves \
         while it runs, speakers listed in `peers`, and speakers that contact it"
    ))
}

/// One resolved announcement, reduced to what the table needs; built from
/// mdns-sd's [`ResolvedService`] (which tests cannot construct).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Resolution {
    fullname: String,
    /// Socket addresses the mesh can use, sorted, deduplicated, bounded.
    addrs: Vec<SocketAddr>,
    id: Option<String>,
    version: Option<String>,
}

impl Resolution {
    fn from_service(service: &ResolvedService, ipv6: bool) -> Self {
        let port = service.get_port();
        let addrs = service.get_addresses().iter().filter_map(|ip| match ip {
            ScopedIp::V4(v4) => Some(SocketAddr::V4(SocketAddrV4::new(*v4.addr(), port))),
            ScopedIp::V6(v6) if ipv6 => {
                // A link-local address means nothing without its interface.
                let scope = if v6.addr().is_unicast_link_local() {
                    v6.scope_id().index
                } else {
                    0
                };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    *v6.addr(),
                    port,
                    0,
                    scope,
                )))
            }
            _ => None,
        });
        Self {
            fullname: service.get_fullname().to_owned(),
            addrs: clean_addrs(addrs),
            id: service.get_property_val_str(TXT_ID).map(str::to_owned),
            version: service.get_property_val_str(TXT_VERSION).map(str::to_owned),
        }
    }
}

/// Drops addresses no peer can listen on, sorts, deduplicates and bounds.
fn clean_addrs(addrs: impl Iterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut addrs: Vec<SocketAddr> = addrs
        .filter(|a| {
            a.port() != 0
                && match a.ip() {
                    IpAddr::V4(ip) => {
                        !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
                    }
                    IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
                }
        })
        .take(4 * MAX_ADDRS)
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs.truncate(MAX_ADDRS);
    addrs
}

/// 16 hex digits, exactly as [`MemberId`]'s `Display` writes them.
fn parse_id(text: &str) -> Option<MemberId> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok().map(MemberId)
}

#[derive(Debug)]
struct Entry {
    addrs: Vec<SocketAddr>,
    version: u8,
    /// Lower-case DNS-SD name it was last announced under.
    fullname: String,
    /// [`PeerTable::clock`] at its latest announcement, for eviction.
    last: u64,
    /// In [`PeerTable::pending`].
    queued: bool,
    /// mDNS said it left: its next announcement is news even if unchanged.
    gone: bool,
}

/// The deduplicated, bounded table of peers; pure (no I/O, no clock), so
/// its rules are tested directly.
#[derive(Debug)]
struct PeerTable {
    own: MemberId,
    own_fullname: String,
    version: u8,
    ipv6: bool,
    peers: HashMap<MemberId, Entry>,
    /// Peers with an unreported change, oldest first; each at most once.
    pending: VecDeque<MemberId>,
    /// Peers already warned about for their protocol version (bounded).
    warned: HashSet<MemberId>,
    warned_clone: bool,
    warned_full: bool,
    /// Counts announcements: orders entries by recency without a clock.
    clock: u64,
}

impl PeerTable {
    fn new(own: MemberId, own_fullname: &str, version: u8, ipv6: bool) -> Self {
        Self {
            own,
            own_fullname: own_fullname.to_lowercase(),
            version,
            ipv6,
            peers: HashMap::new(),
            pending: VecDeque::new(),
            warned: HashSet::new(),
            warned_clone: false,
            warned_full: false,
            clock: 0,
        }
    }

    /// Takes in one resolution; true if it made a change to report.
    fn observe(&mut self, r: &Resolution) -> bool {
        let Some(id) = r.id.as_deref().and_then(parse_id) else {
            tracing::debug!(fullname = %r.fullname, "ignoring an announcement without a valid id");
            return false;
        };
        if id == self.own {
            if r.fullname.to_lowercase() != self.own_fullname && !self.warned_clone {
                self.warned_clone = true;
                tracing::warn!(
                    "another speaker ({}) announces our member id {id}: was this SD card \
                     copied? Delete member-id in the state directory of one of them",
                    r.fullname
                );
            }
            return false;
        }
        let version = r.version.as_deref().and_then(|v| v.parse::<u8>().ok());
        if version != Some(self.version) {
            if self.warned.len() < MAX_PEERS && self.warned.insert(id) {
                let theirs = r.version.as_deref().unwrap_or("(none)");
                tracing::warn!(
                    "peer {id} speaks protocol v{theirs}, we speak v{}: update one of them",
                    self.version
                );
            }
            return false;
        }
        if r.addrs.is_empty() {
            tracing::debug!(%id, "ignoring an announcement without usable addresses");
            return false;
        }
        self.clock += 1;
        let fullname = r.fullname.to_lowercase();
        if let Some(entry) = self.peers.get_mut(&id) {
            entry.last = self.clock;
            entry.fullname = fullname;
            if entry.addrs == r.addrs && !entry.gone {
                return false;
            }
            entry.addrs.clone_from(&r.addrs);
            entry.gone = false;
            if !std::mem::replace(&mut entry.queued, true) {
                self.pending.push_back(id);
            }
            return true;
        }
        if self.peers.len() >= MAX_PEERS {
            self.evict_oldest();
        }
        self.peers.insert(
            id,
            Entry {
                addrs: r.addrs.clone(),
                version: self.version,
                fullname,
                last: self.clock,
                queued: true,
                gone: false,
            },
        );
        self.pending.push_back(id);
        true
    }

    fn evict_oldest(&mut self) {
        let Some(oldest) = self
            .peers
            .iter()
            .min_by_key(|(_, e)| e.last)
            .map(|(id, _)| *id)
        else {
            return;
        };
        if !std::mem::replace(&mut self.warned_full, true) {
            tracing::warn!(
                "more than {MAX_PEERS} speakers announced on this network; forgetting the \
                 least recently announced (is something flooding mDNS?)"
            );
        }
        self.peers.remove(&oldest);
        self.pending.retain(|id| *id != oldest);
    }

    /// mDNS reported the instance gone (goodbye or expiry). The entry stays
    /// (only the mesh decides liveness); its next announcement is news.
    fn mark_gone(&mut self, fullname: &str) {
        let fullname = fullname.to_lowercase();
        for entry in self.peers.values_mut().filter(|e| e.fullname == fullname) {
            entry.gone = true;
        }
    }

    fn pop(&mut self) -> Option<PeerEvent> {
        while let Some(id) = self.pending.pop_front() {
            if let Some(entry) = self.peers.get_mut(&id) {
                entry.queued = false;
                return Some(event(id, entry));
            }
        }
        None
    }

    fn snapshot(&self) -> Vec<PeerEvent> {
        let mut peers: Vec<PeerEvent> = self.peers.iter().map(|(id, e)| event(*id, e)).collect();
        peers.sort_by_key(|PeerEvent::Seen { id, .. }| *id);
        peers
    }
}

fn event(id: MemberId, entry: &Entry) -> PeerEvent {
    PeerEvent::Seen {
        id,
        addrs: entry.addrs.clone(),
        version: entry.version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: MemberId = MemberId(0x00aa_00aa_00aa_00aa);
    const OWN_NAME: &str = "me-00aa00aa._autoharmonize._udp.local.";

    fn table() -> PeerTable {
        PeerTable::new(OWN, OWN_NAME, VERSION, false)
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    fn resolution(id: u64, addrs: &[&str]) -> Resolution {
        Resolution {
            fullname: format!("peer-{id:08x}._autoharmonize._udp.local."),
            addrs: clean_addrs(addrs.iter().map(|a| addr(a))),
            id: Some(MemberId(id).to_string()),
            version: Some(VERSION.to_string()),
        }
    }

    fn drain(table: &mut PeerTable) -> Vec<PeerEvent> {
        std::iter::from_fn(|| table.pop()).collect()
    }

    fn seen(id: u64, addrs: &[&str]) -> PeerEvent {
        PeerEvent::Seen {
            id: MemberId(id),
            addrs: addrs.iter().map(|a| addr(a)).collect(),
            version: VERSION,
        }
    }

    #[test]
    fn repeated_resolutions_are_reported_once() {
        let mut t = table();
        let r = resolution(7, &["10.0.0.7:7710"]);
        assert!(t.observe(&r));
        for _ in 0..10 {
            assert!(!t.observe(&r));
        }
        assert_eq!(drain(&mut t), vec![seen(7, &["10.0.0.7:7710"])]);
        assert!(!t.observe(&r));
        assert_eq!(drain(&mut t), vec![]);
    }

    #[test]
    fn new_port_is_reported_and_changes_coalesce() {
        let mut t = table();
        assert!(t.observe(&resolution(7, &["10.0.0.7:7710"])));
        assert_eq!(drain(&mut t).len(), 1);
        // Two changes before the mesh looks: one event, the latest state.
        assert!(t.observe(&resolution(7, &["10.0.0.7:7711"])));
        assert!(t.observe(&resolution(7, &["10.0.0.7:7712", "10.0.0.8:7712"])));
        assert_eq!(
            drain(&mut t),
            vec![seen(7, &["10.0.0.7:7712", "10.0.0.8:7712"])]
        );
    }

    #[test]
    fn own_announcement_is_ignored_and_a_clone_warned_about() {
        let mut t = table();
        let mut own = resolution(OWN.0, &["10.0.0.1:7710"]);
        own.fullname = OWN_NAME.to_uppercase();
        assert!(!t.observe(&own));
        assert!(!t.warned_clone, "our own name, in any case, is no clone");
        own.fullname = "other-00aa00aa._autoharmonize._udp.local.".into();
        assert!(!t.observe(&own));
        assert!(t.warned_clone);
        assert_eq!(drain(&mut t), vec![]);
    }

    #[test]
    fn other_protocol_versions_are_ignored_and_warned_once() {
        let mut t = table();
        for v in [Some("99"), Some("x"), None] {
            let mut r = resolution(9, &["10.0.0.9:7710"]);
            r.version = v.map(str::to_owned);
            assert!(!t.observe(&r), "{v:?}");
        }
        assert_eq!(t.warned.len(), 1, "one warning per peer");
        assert_eq!(drain(&mut t), vec![]);
        // Updated to our version: reported.
        assert!(t.observe(&resolution(9, &["10.0.0.9:7710"])));
    }

    #[test]
    fn hostile_announcements_are_ignored() {
        let mut t = table();
        for bad in [
            "",
            "12",
            "00000000000000000",
            "zzzzzzzzzzzzzzzz",
            "+000000000000001",
        ] {
            let mut r = resolution(1, &["10.0.0.1:7710"]);
            r.id = Some(bad.to_owned());
            assert!(!t.observe(&r), "{bad:?}");
        }
        let mut r = resolution(1, &[]);
        r.id = None;
        assert!(!t.observe(&r));
        // No usable address: port 0, multicast, unspecified.
        let r = resolution(1, &["10.0.0.1:0", "224.0.0.251:7710", "0.0.0.0:7710"]);
        assert!(r.addrs.is_empty());
        assert!(!t.observe(&r));
        assert_eq!(drain(&mut t), vec![]);
    }

    #[test]
    fn addresses_per_peer_are_bounded() {
        let many: Vec<String> = (0..200).map(|i| format!("10.1.{i}.1:7710")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(resolution(1, &many).addrs.len(), MAX_ADDRS);
    }

    #[test]
    fn table_is_bounded_and_forgets_the_least_recently_announced() {
        let mut t = table();
        let real = resolution(1, &["10.0.0.1:7710"]);
        assert!(t.observe(&real));
        for id in 2..=(MAX_PEERS as u64 + 100) {
            t.observe(&resolution(id, &["10.0.0.2:7710"]));
            // The real speaker keeps announcing now and then.
            if id % 50 == 0 {
                t.observe(&real);
            }
        }
        assert_eq!(t.peers.len(), MAX_PEERS);
        assert!(t.pending.len() <= MAX_PEERS);
        assert!(t.peers.contains_key(&MemberId(1)), "recently announced");
        assert!(!t.peers.contains_key(&MemberId(2)), "oldest forgotten");
        assert_eq!(drain(&mut t).len(), MAX_PEERS);
        assert!(t.warned_full);
    }

    #[test]
    fn removal_never_reports_but_makes_the_next_announcement_news() {
        let mut t = table();
        let r = resolution(7, &["10.0.0.7:7710"]);
        assert!(t.observe(&r));
        drain(&mut t);
        t.mark_gone(&r.fullname.to_uppercase());
        assert_eq!(drain(&mut t), vec![], "no event for a removal");
        assert_eq!(
            t.snapshot(),
            vec![seen(7, &["10.0.0.7:7710"])],
            "still known"
        );
        assert!(t.observe(&r), "back after a goodbye");
        assert_eq!(drain(&mut t), vec![seen(7, &["10.0.0.7:7710"])]);
    }

    #[test]
    fn discovery_can_be_awaited_from_a_spawned_task() {
        fn send<T: Send>(_: T) {}
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Discovery>();
        // Compiles only if the future is Send (tokio::spawn needs it).
        let _ = |d: &'static Discovery| send(d.next_event());
    }

    #[test]
    fn instance_name_fits_a_label_and_carries_the_id() {
        let mut c = DiscoveryConfig {
            name: "kitchen".into(),
            id: MemberId(0x1234_5678_9abc_def0),
            channel: "all".into(),
            port: 7710,
            interfaces: vec![],
            ipv6: false,
        };
        assert_eq!(c.instance_name(), "kitchen-12345678");
        assert_eq!(c.host_name(), "ah-123456789abcdef0.local.");
        c.name = "é".repeat(40);
        let name = c.instance_name();
        assert!(name.len() <= MAX_LABEL_LEN, "{name}");
        assert!(name.ends_with("-12345678"), "{name}");
        assert_eq!(channel_txt(&ChannelSpec::Index(3)), "3");
        assert_eq!(channel_txt(&ChannelSpec::Name("bass".into())), "bass");
        assert_eq!(channel_txt(&ChannelSpec::All), "all");
    }

    fn iface(name: &str, ip: &str, up: bool) -> if_addrs::Interface {
        let ip: IpAddr = ip.parse().expect("test ip");
        let addr = match ip {
            IpAddr::V4(ip) => if_addrs::IfAddr::V4(if_addrs::Ifv4Addr {
                ip,
                netmask: std::net::Ipv4Addr::new(255, 255, 255, 0),
                prefixlen: 24,
                broadcast: None,
            }),
            IpAddr::V6(ip) => if_addrs::IfAddr::V6(if_addrs::Ifv6Addr {
                ip,
                netmask: std::net::Ipv6Addr::UNSPECIFIED,
                prefixlen: 64,
                broadcast: None,
            }),
        };
        if_addrs::Interface {
            name: name.into(),
            addr,
            index: Some(1),
            oper_status: if up {
                if_addrs::IfOperStatus::Up
            } else {
                if_addrs::IfOperStatus::Down
            },
            is_p2p: false,
        }
    }

    #[test]
    fn a_multicast_interface_that_cannot_be_chosen_is_reported() {
        // Loopback's address can be chosen on any Linux host.
        let lo = [iface("lo", "127.0.0.1", true)];
        assert_eq!(multicast_send_warning(&["lo".into()], &lo), None);
        // An address this machine does not have is refused as qemu-user
        // refuses every one (there ENOPROTOOPT, here EADDRNOTAVAIL).
        let far = [iface("eth9", "192.0.2.77", true)];
        let warning = multicast_send_warning(&["eth9".into()], &far).expect("refused");
        assert!(warning.contains("eth9"), "{warning}");
        assert!(warning.contains("`peers`"), "{warning}");
        // One interface that works is enough; IPv6-only has nothing to try.
        let both = [far[0].clone(), iface("lo", "127.0.0.1", true)];
        assert_eq!(
            multicast_send_warning(&["eth9".into(), "lo".into()], &both),
            None
        );
        let v6 = [iface("eth9", "fe80::1", true)];
        assert_eq!(multicast_send_warning(&["eth9".into()], &v6), None);
    }

    #[test]
    fn interface_choice() {
        let system = [
            iface("lo", "127.0.0.1", true),
            iface("eth0", "10.0.0.2", true),
            iface("eth0", "fe80::1", true),
            iface("wlan0", "192.168.1.2", false),
            iface("wg0", "fd00::2", true),
        ];
        let names = |wanted: &[&str], ipv6| {
            let wanted: Vec<String> = wanted.iter().map(|s| (*s).to_owned()).collect();
            usable_interfaces(&wanted, ipv6, &system).map_err(|e| e.to_string())
        };
        assert_eq!(names(&[], false), Ok(vec!["eth0".to_owned()]));
        assert_eq!(
            names(&[], true),
            Ok(vec!["eth0".to_owned(), "wg0".to_owned()])
        );
        assert_eq!(
            names(&["lo"], false),
            Ok(vec!["lo".to_owned()]),
            "named loopback"
        );
        assert_eq!(
            names(&["wlan0", "eth0"], false),
            Ok(vec!["eth0".to_owned()])
        );
        assert_eq!(
            names(&["wlan0"], false),
            Err(
                "no usable network interface for mDNS: none of wlan0 (mdns_interfaces) is up \
                 with an IPv4 address; up: [lo, eth0]"
                    .to_owned()
            )
        );
        assert_eq!(
            names(&["wg0"], false).map_err(|e| e.contains("up: [lo, eth0]")),
            Err(true),
            "IPv6-only interface with an IPv4 mesh socket"
        );
        let only_lo = [iface("lo", "127.0.0.1", true)];
        let err = usable_interfaces(&[], false, &only_lo).expect_err("loopback only");
        assert!(matches!(err, DiscoveryError::NoInterface(_)), "{err}");
        assert!(
            err.to_string().contains("any interface but loopback"),
            "{err}"
        );
    }
}
