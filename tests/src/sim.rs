//! Deterministic whole-room simulation over the sans-IO protocol core.
//!
//! Many [`Member`]s run on one virtual network with per-link latency,
//! jitter, loss, duplication and reordering, directed partitions, crashes,
//! restarts, frozen processes and late event loops, each member on its own
//! drifting clock. Everything random comes from one seed, so a run is exactly
//! reproducible: a failing test prints its seed, and running the same seed
//! twice gives the same trace (checked by a test).
//!
//! While it runs, the simulator checks the protocol's invariants and records
//! the figures the report command prints: agreement (no two members commit
//! different entries or states for the same round of the same room),
//! validity (every applied vote was cast), vote-to-applied latency, clock
//! error, and commit gaps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use autoharmonize_protocol::event::{Event, Vote};
use autoharmonize_protocol::ids::{BootId, Channel, MemberId, RoomId, Round, Term};
use autoharmonize_protocol::member::{Config, Dest, Member, MemberEvent};
use autoharmonize_protocol::saved::SavedState;
use autoharmonize_protocol::time::{LocalTime, MeshTime, Nanos};
use autoharmonize_protocol::transport::{Frames, Gain};
use autoharmonize_protocol::wire::{EntryId, Role, ViewChange};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Network and clock conditions of a simulated room.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a datagram is delivered twice.
    pub duplicate: f64,
    /// Per-pair base one-way latency (the same both ways) is drawn uniformly
    /// from this range (ns).
    pub base_latency: (u64, u64),
    /// Extra one-way delay, uniform in `[0, jitter]` per datagram (ns);
    /// it also reorders datagrams.
    pub jitter: u64,
    /// Clock drift of each member, uniform in `[-max, +max]` ppm.
    pub max_drift_ppm: f64,
    /// Clock offset of each member, uniform in `[0, max]` ns.
    pub max_offset: u64,
}

impl Default for NetConfig {
    fn default() -> NetConfig {
        NetConfig {
            loss: 0.0,
            duplicate: 0.0,
            base_latency: (200_000, 2_000_000),
            jitter: 0,
            max_drift_ppm: 200.0,
            max_offset: 3_600 * 1_000_000_000,
        }
    }
}

/// One simulated process.
struct Node {
    id: MemberId,
    role: Role,
    member: Option<Member>,
    boots: u32,
    offset: u64,
    drift_ppb: i64,
    /// Timer the member asked for (true time), if any.
    timer: Option<u64>,
    /// Frozen (SIGSTOP) until this true time.
    frozen_until: Option<u64>,
    /// Datagrams that arrived while frozen, delivered on thaw (bounded).
    backlog: Vec<Rc<[u8]>>,
    /// Extra delay applied to each timer (a late event loop).
    loop_lag: u64,
    /// True time this incarnation started, and last joined a room.
    started: u64,
    settled_since: u64,
    /// Knowledge of peers, when partial: the processes this one is
    /// configured with (static peers). `None`: it knows everyone (mDNS on
    /// a LAN).
    static_peers: Option<BTreeSet<usize>>,
    /// Processes this incarnation's shell received a datagram from (its
    /// address book learns them, and tells the member).
    learned: BTreeSet<usize>,
    /// The room state this process finds on its disk at its next start.
    saved: Option<SavedState>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Deliver {
        from: usize,
        to: usize,
        payload: Rc<[u8]>,
    },
    Timer {
        node: usize,
    },
    Thaw {
        node: usize,
    },
}

/// What one committed round looked like, for agreement checks.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Commit {
    id: EntryId,
    digest: u64,
    apply_at: MeshTime,
}

/// Figures collected while running.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Rounds committed anywhere (distinct).
    pub rounds_decided: u64,
    /// Pairs of members that committed different things for one round.
    pub agreement_violations: u64,
    /// Applied votes that nobody cast.
    pub validity_violations: u64,
    /// Votes cast (accepted by `cast`).
    pub votes_cast: u64,
    /// Votes applied by at least one member.
    pub votes_applied: u64,
    /// Cast to applied at every member that applied it, per vote cast
    /// outside disturbed periods (ns).
    pub vote_latency: Vec<u64>,
    /// The same for votes cast during a disturbance (a partition, a crash)
    /// or within 1 s after it.
    pub disturbed_latency: Vec<u64>,
    /// Clock error samples (ns), members settled for 2 s.
    pub clock_error: Vec<u64>,
    /// Longest true-time gap between commits of the largest room (ns).
    pub max_commit_gap: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// First violation found, for the failure message.
    pub first_violation: Option<String>,
    /// Every commit a member made: (true time, process, room, entry).
    pub decisions: Vec<(u64, usize, RoomId, EntryId)>,
    /// Members removed from a room's view: (true time of the first commit
    /// of the change, room, member, whether it said goodbye).
    pub removals: Vec<(u64, RoomId, MemberId, bool)>,
}

/// A simulated room.
pub struct Sim {
    seed: u64,
    rng: SmallRng,
    net: NetConfig,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, Action)>>,
    nodes: Vec<Node>,
    index: HashMap<MemberId, usize>,
    link_latency: HashMap<(usize, usize), u64>,
    blocked: HashSet<(usize, usize)>,
    config: Config,
    commits: HashMap<(RoomId, Round), Commit>,
    cast: HashMap<(MemberId, u32, Event), u64>,
    applied: HashMap<(MemberId, u32, Event), (u64, u32)>,
    last_commit_seen: BTreeMap<RoomId, u64>,
    /// Who led each room in each term (election safety).
    leaders: HashMap<(RoomId, Term), MemberId>,
    disturbed: Vec<(u64, u64)>,
    /// Figures collected so far.
    pub metrics: Metrics,
}

impl Sim {
    /// A room of `speakers` speakers and `controllers` controllers that all
    /// start at time zero with no room and must find each other.
    #[must_use]
    pub fn new(seed: u64, speakers: usize, controllers: usize, net: NetConfig) -> Sim {
        Sim::with_config(seed, speakers, controllers, net, Config::default())
    }

    /// Like [`Sim::new`] with a member configuration.
    #[must_use]
    pub fn with_config(
        seed: u64,
        speakers: usize,
        controllers: usize,
        net: NetConfig,
        config: Config,
    ) -> Sim {
        Sim::build(seed, speakers, controllers, net, config, None)
    }

    /// Like [`Sim::with_config`], with partial knowledge of peers: process
    /// `i` starts knowing only the addresses of `static_peers[i]` (as a
    /// speaker configured with static peers and no mDNS), and learns others
    /// only from the datagrams it receives and from referrals. Processes
    /// are not started: call [`Sim::start`] for each, when it should boot.
    #[must_use]
    pub fn with_static_peers(
        seed: u64,
        speakers: usize,
        controllers: usize,
        net: NetConfig,
        config: Config,
        static_peers: &[Vec<usize>],
    ) -> Sim {
        Sim::build(seed, speakers, controllers, net, config, Some(static_peers))
    }

    fn build(
        seed: u64,
        speakers: usize,
        controllers: usize,
        net: NetConfig,
        config: Config,
        static_peers: Option<&[Vec<usize>]>,
    ) -> Sim {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut nodes = Vec::new();
        let mut index = HashMap::new();
        for i in 0..speakers + controllers {
            let id = MemberId(rng.random());
            let drift = rng.random_range(-net.max_drift_ppm..=net.max_drift_ppm);
            nodes.push(Node {
                id,
                role: if i < speakers {
                    Role::Speaker
                } else {
                    Role::Controller
                },
                member: None,
                boots: 0,
                offset: rng.random_range(0..=net.max_offset),
                drift_ppb: (drift * 1000.0) as i64,
                timer: None,
                frozen_until: None,
                backlog: Vec::new(),
                loop_lag: 0,
                started: 0,
                settled_since: 0,
                static_peers: static_peers
                    .map(|p| p.get(i).into_iter().flatten().copied().collect()),
                learned: BTreeSet::new(),
                saved: None,
            });
            index.insert(id, i);
        }
        let mut sim = Sim {
            seed,
            rng,
            net,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            index,
            link_latency: HashMap::new(),
            blocked: HashSet::new(),
            config,
            commits: HashMap::new(),
            cast: HashMap::new(),
            applied: HashMap::new(),
            last_commit_seen: BTreeMap::new(),
            leaders: HashMap::new(),
            disturbed: Vec::new(),
            metrics: Metrics::default(),
        };
        if static_peers.is_none() {
            for i in 0..sim.nodes.len() {
                sim.start(i);
            }
        }
        sim
    }

    /// Gives process `i` a saved room state to find at its next start (as
    /// the node reads its state file).
    pub fn set_saved(&mut self, i: usize, saved: Option<SavedState>) {
        self.nodes[i].saved = saved;
    }

    /// Sets the static peers process `i` is configured with from its next
    /// start on (partial knowledge only; see [`Sim::with_static_peers`]).
    pub fn set_static_peers(&mut self, i: usize, peers: &[usize]) {
        if let Some(p) = self.nodes[i].static_peers.as_mut() {
            *p = peers.iter().copied().collect();
        }
    }

    /// The address process `i` has on the simulated network.
    #[must_use]
    pub fn address(i: usize) -> SocketAddr {
        let i = u32::try_from(i).expect("a simulated room is small");
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | (i & 0xff_ffff))),
            4000,
        )
    }

    fn process_at(&self, a: SocketAddr) -> Option<usize> {
        match a.ip() {
            IpAddr::V4(ip) if a.port() == 4000 => {
                let i = usize::try_from(u32::from(ip) & 0xff_ffff).ok()?;
                (i < self.nodes.len()).then_some(i)
            }
            _ => None,
        }
    }

    /// Where process `i`'s datagrams for member `id` go: nowhere if its
    /// shell does not know the address (neither in its book nor from its
    /// member's referrals).
    fn resolve(&self, i: usize, id: MemberId) -> Option<usize> {
        let j = *self.index.get(&id)?;
        let n = &self.nodes[i];
        let Some(book) = &n.static_peers else {
            return Some(j);
        };
        if book.contains(&j) || n.learned.contains(&j) {
            return Some(j);
        }
        let m = self.nodes[i].member.as_ref()?;
        m.address_of(id).and_then(|a| self.process_at(a))
    }

    /// Every process `i`'s shell would send a datagram for everyone to.
    fn everyone(&self, i: usize) -> Vec<usize> {
        let n = &self.nodes[i];
        let Some(book) = &n.static_peers else {
            return (0..self.nodes.len()).filter(|&j| j != i).collect();
        };
        let mut all: BTreeSet<usize> = book.union(&n.learned).copied().collect();
        if let Some(m) = self.nodes[i].member.as_ref() {
            all.extend(m.known_addresses().filter_map(|a| self.process_at(a)));
        }
        all.remove(&i);
        all.into_iter().collect()
    }

    /// The seed this run was built from.
    #[must_use]
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Current true time (ns).
    #[must_use]
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of simulated processes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no processes.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn local(&self, i: usize, t: u64) -> LocalTime {
        let n = &self.nodes[i];
        let drifted = i128::from(t) + i128::from(t) * i128::from(n.drift_ppb) / 1_000_000_000;
        LocalTime((drifted + i128::from(n.offset)).max(0) as u64)
    }

    fn true_time(&self, i: usize, l: LocalTime) -> u64 {
        let n = &self.nodes[i];
        let rel = i128::from(l.0) - i128::from(n.offset);
        let t = rel * 1_000_000_000 / (1_000_000_000 + i128::from(n.drift_ppb));
        // Round up so the member sees a local time at or past its deadline.
        (t + 1).max(0) as u64
    }

    fn push(&mut self, at: u64, action: Action) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, action)));
    }

    /// Starts (or restarts) process `i` with a new incarnation.
    pub fn start(&mut self, i: usize) {
        let boot = BootId(self.rng.random::<u32>() | 1);
        let mut cfg = self.config.clone();
        cfg.role = self.nodes[i].role;
        cfg.stem = (cfg.role == Role::Speaker).then_some((i % 4) as u8);
        cfg.restored = self.nodes[i].saved.clone();
        let local = self.local(i, self.now);
        let n = &mut self.nodes[i];
        n.member = Some(Member::new(n.id, boot, cfg, local));
        n.boots += 1;
        n.started = self.now;
        n.settled_since = self.now;
        n.frozen_until = None;
        n.backlog.clear();
        n.timer = None;
        // A new process: its address book starts from its configuration.
        n.learned.clear();
        self.after_input(i);
    }

    /// Kills process `i` at once (kill -9): no goodbye.
    pub fn crash(&mut self, i: usize) {
        self.nodes[i].member = None;
        self.nodes[i].timer = None;
        self.nodes[i].backlog.clear();
    }

    /// Stops process `i` gracefully (SIGTERM): it says goodbye first.
    pub fn stop(&mut self, i: usize) {
        let local = self.local(i, self.now);
        if let Some(m) = self.nodes[i].member.as_mut() {
            m.leave(local);
        }
        self.flush(i);
        self.crash(i);
    }

    /// Freezes process `i` (SIGSTOP) for `dur` ns.
    pub fn freeze(&mut self, i: usize, dur: u64) {
        let until = self.now + dur;
        self.nodes[i].frozen_until = Some(until);
        self.push(until, Action::Thaw { node: i });
    }

    /// Makes every timer of process `i` fire `lag` ns late.
    pub fn set_loop_lag(&mut self, i: usize, lag: u64) {
        self.nodes[i].loop_lag = lag;
    }

    /// Blocks traffic from `a` to `b` (one way).
    pub fn block(&mut self, a: usize, b: usize) {
        self.blocked.insert((a, b));
    }

    /// Splits the room: no traffic between `side` and the rest.
    pub fn partition(&mut self, side: &[usize]) {
        for &a in side {
            for b in 0..self.nodes.len() {
                if !side.contains(&b) {
                    self.blocked.insert((a, b));
                    self.blocked.insert((b, a));
                }
            }
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Whether process `i` runs.
    #[must_use]
    pub fn alive(&self, i: usize) -> bool {
        self.nodes[i].member.is_some()
    }

    /// The member of process `i`, if it runs.
    #[must_use]
    pub fn member(&self, i: usize) -> Option<&Member> {
        self.nodes[i].member.as_ref()
    }

    /// The member of process `i`, mutably (to feed it what a shell would,
    /// such as audio health), if it runs.
    pub fn member_mut(&mut self, i: usize) -> Option<&mut Member> {
        self.nodes[i].member.as_mut()
    }

    /// Member id of process `i`.
    #[must_use]
    pub fn id(&self, i: usize) -> MemberId {
        self.nodes[i].id
    }

    /// Process `i`'s local clock now.
    #[must_use]
    pub fn local_now(&self, i: usize) -> LocalTime {
        self.local(i, self.now)
    }

    /// Casts `event` at process `i`; returns whether it was accepted.
    pub fn cast(&mut self, i: usize, event: Event) -> bool {
        let local = self.local(i, self.now);
        let Some(m) = self.nodes[i].member.as_mut() else {
            return false;
        };
        match m.cast(local, event) {
            Ok(seq) => {
                self.cast
                    .entry((self.nodes[i].id, seq, event))
                    .or_insert(self.now);
                self.metrics.votes_cast += 1;
                self.after_input(i);
                true
            }
            Err(_) => false,
        }
    }

    /// A random event on a random channel.
    pub fn random_event(&mut self) -> Event {
        let channel = if self.rng.random_bool(0.3) {
            Channel::All
        } else {
            Channel::Stem(self.rng.random_range(0..4))
        };
        match self.rng.random_range(0..4) {
            0 => Event::Play { channel },
            1 => Event::Pause { channel },
            2 => Event::Seek {
                channel,
                to: Frames(self.rng.random_range(0..48_000 * 300)),
            },
            _ => Event::Volume {
                channel,
                gain: Gain(self.rng.random_range(0..=100)),
            },
        }
    }

    /// Draws from the run's random stream (for workloads and fault plans).
    pub fn rng(&mut self) -> &mut SmallRng {
        &mut self.rng
    }

    /// Runs until true time `until` (ns).
    pub fn run_until(&mut self, until: u64) {
        // Clock errors are sampled every 100 ms of true time.
        let mut next_sample = (self.now / 100_000_000 + 1) * 100_000_000;
        while let Some(Reverse((at, _, _))) = self.queue.peek() {
            let at = *at;
            if at > until {
                break;
            }
            while next_sample <= at {
                self.now = next_sample;
                self.sample_clocks();
                next_sample += 100_000_000;
            }
            let Some(Reverse((at, _, action))) = self.queue.pop() else {
                break;
            };
            self.now = at;
            self.dispatch(action);
        }
        self.now = until;
    }

    /// Runs for `dur` ns, casting about `votes_per_sec` random votes per
    /// second from random live members.
    pub fn run_with_votes(&mut self, dur: u64, votes_per_sec: f64) {
        let end = self.now + dur;
        let step = 10_000_000; // decide every 10 ms whether to vote
        let p = votes_per_sec * step as f64 / 1e9;
        while self.now < end {
            let next = (self.now + step).min(end);
            self.run_until(next);
            if p > 0.0 && self.rng.random_bool(p.min(1.0)) {
                let i = self.rng.random_range(0..self.nodes.len());
                let e = self.random_event();
                self.cast(i, e);
            }
        }
    }

    fn dispatch(&mut self, action: Action) {
        match action {
            Action::Deliver { from, to, payload } => {
                if self.nodes[to].member.is_none() {
                    return;
                }
                // The shell learns the sender's address, and tells its
                // member when it is new (as the node's mesh loop does).
                let local = self.local(to, self.now);
                let from_id = self.nodes[from].id;
                let node = &mut self.nodes[to];
                if node.learned.insert(from)
                    && let Some(m) = node.member.as_mut()
                {
                    m.learn_address(local, from_id, Sim::address(from));
                }
                if self.nodes[to].frozen_until.is_some() {
                    if self.nodes[to].backlog.len() < 512 {
                        self.nodes[to].backlog.push(payload);
                    }
                    return;
                }
                self.metrics.delivered += 1;
                let local = self.local(to, self.now);
                if let Some(m) = self.nodes[to].member.as_mut() {
                    m.handle_datagram(local, &payload);
                }
                self.after_input(to);
            }
            Action::Timer { node } => {
                let n = &self.nodes[node];
                if n.member.is_none() || n.timer != Some(self.now) || n.frozen_until.is_some() {
                    return;
                }
                let local = self.local(node, self.now);
                if let Some(m) = self.nodes[node].member.as_mut() {
                    m.handle_timeout(local);
                }
                self.after_input(node);
            }
            Action::Thaw { node } => {
                if self.nodes[node].frozen_until.is_some_and(|u| u <= self.now) {
                    self.nodes[node].frozen_until = None;
                    let backlog = std::mem::take(&mut self.nodes[node].backlog);
                    let local = self.local(node, self.now);
                    if let Some(m) = self.nodes[node].member.as_mut() {
                        m.handle_timeout(local);
                        for p in backlog {
                            m.handle_datagram(local, &p);
                        }
                    }
                    self.after_input(node);
                }
            }
        }
    }

    /// Drains a member's outputs and re-arms its timer.
    fn after_input(&mut self, i: usize) {
        self.flush(i);
        self.collect_events(i);
        let Some(m) = self.nodes[i].member.as_ref() else {
            return;
        };
        if let Some(deadline) = m.poll_timeout() {
            let at = self.true_time(i, deadline).max(self.now + 1) + self.nodes[i].loop_lag;
            if self.nodes[i].timer != Some(at) {
                self.nodes[i].timer = Some(at);
                self.push(at, Action::Timer { node: i });
            }
        }
    }

    fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i]
            .member
            .as_mut()
            .and_then(Member::poll_transmit)
        {
            let payload: Rc<[u8]> = t.payload.into();
            let targets: Vec<usize> = match t.dest {
                Dest::Member(id) => self.resolve(i, id).into_iter().collect(),
                Dest::Members(ids) => ids.iter().filter_map(|&id| self.resolve(i, id)).collect(),
                Dest::Everyone => self.everyone(i),
                Dest::Strangers { except } => {
                    let skip: BTreeSet<usize> = except
                        .iter()
                        .filter_map(|&id| self.resolve(i, id))
                        .collect();
                    self.everyone(i)
                        .into_iter()
                        .filter(|j| !skip.contains(j))
                        .collect()
                }
            };
            for to in targets {
                self.send(i, to, Rc::clone(&payload));
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, payload: Rc<[u8]>) {
        if from == to || self.blocked.contains(&(from, to)) {
            return;
        }
        if self.net.loss > 0.0 && self.rng.random_bool(self.net.loss) {
            return;
        }
        let (lo, hi) = self.net.base_latency;
        // One base latency per pair, the same both ways (a switched LAN);
        // jitter supplies the asymmetry. A constant one-way asymmetry is
        // invisible to any round-trip clock estimate, so it would only
        // measure the link, not the protocol.
        let pair = (from.min(to), from.max(to));
        let base = *self
            .link_latency
            .entry(pair)
            .or_insert_with(|| self.rng.random_range(lo..=hi.max(lo)));
        let copies = if self.net.duplicate > 0.0 && self.rng.random_bool(self.net.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = if self.net.jitter > 0 {
                self.rng.random_range(0..=self.net.jitter)
            } else {
                0
            };
            let at = self.now + base + jitter;
            self.push(
                at,
                Action::Deliver {
                    from,
                    to,
                    payload: Rc::clone(&payload),
                },
            );
        }
    }

    fn collect_events(&mut self, i: usize) {
        let now = self.now;
        let local = self.local(i, now);
        let mut decided = Vec::new();
        let mut led = false;
        let node = &mut self.nodes[i];
        let Some(m) = node.member.as_mut() else {
            return;
        };
        while let Some(ev) = m.poll_event() {
            match ev {
                MemberEvent::Decided(a) => decided.push(a),
                MemberEvent::LeaderChanged { leader } => {
                    node.settled_since = now;
                    led |= leader == Some(node.id);
                }
                MemberEvent::RoomChanged { .. } => node.settled_since = now,
                _ => {}
            }
        }
        if led {
            self.check_one_leader_per_term(i, local);
        }
        if decided.is_empty() {
            return;
        }
        let (room, mesh_now) = {
            let m = self.nodes[i].member.as_ref().expect("checked above");
            (m.status(local).room, m.mesh_time(local))
        };
        let Some(room) = room else {
            return;
        };
        for a in decided {
            let c = Commit {
                id: a.entry.id,
                digest: a.digest,
                apply_at: a.apply_at,
            };
            match self.commits.get(&(room, a.entry.id.round)) {
                Some(prev) if *prev != c => {
                    self.metrics.agreement_violations += 1;
                    if self.metrics.first_violation.is_none() {
                        self.metrics.first_violation = Some(format!(
                            "agreement: member {} committed {c:?} for round {:?} of {room:?}, \
                             another committed {prev:?}",
                            self.nodes[i].id, a.entry.id.round
                        ));
                    }
                }
                Some(_) => {}
                None => {
                    self.metrics.rounds_decided += 1;
                    self.commits.insert((room, a.entry.id.round), c);
                    for change in &a.entry.changes {
                        match *change {
                            ViewChange::Evict(id) => {
                                self.metrics.removals.push((now, room, id, false));
                            }
                            ViewChange::Leave(id) => {
                                self.metrics.removals.push((now, room, id, true));
                            }
                            ViewChange::Join(_) => {}
                        }
                    }
                }
            }
            self.metrics.decisions.push((now, i, room, a.entry.id));
            // Commit gaps of the busiest room.
            let last = self.last_commit_seen.entry(room).or_insert(now);
            if now > *last {
                self.metrics.max_commit_gap = self.metrics.max_commit_gap.max(now - *last);
                *last = now;
            }
            // True time the change takes effect here: when it is both known
            // and due.
            let due = mesh_now.map_or(now, |m| now + a.apply_at.0.saturating_sub(m.0));
            for v in &a.effective {
                self.vote_applied(v, due);
            }
        }
    }

    /// Raft's election safety: at most one member leads a room in a term.
    fn check_one_leader_per_term(&mut self, i: usize, local: LocalTime) {
        let Some(st) = self.nodes[i].member.as_ref().map(|m| m.status(local)) else {
            return;
        };
        let (Some(room), true) = (st.room, st.leader == Some(st.id)) else {
            return;
        };
        let id = self.nodes[i].id;
        match self.leaders.insert((room, st.term), id) {
            Some(other) if other != id => {
                self.metrics.agreement_violations += 1;
                if self.metrics.first_violation.is_none() {
                    self.metrics.first_violation = Some(format!(
                        "two leaders of {room:?} in term {:?}: {other} and {id}",
                        st.term
                    ));
                }
            }
            _ => {}
        }
    }

    fn vote_applied(&mut self, v: &Vote, at: u64) {
        let key = (v.member, v.seq, v.event);
        if !self.cast.contains_key(&key) {
            self.metrics.validity_violations += 1;
            if self.metrics.first_violation.is_none() {
                self.metrics.first_violation = Some(format!("validity: {v:?} was never cast"));
            }
            return;
        }
        let e = self.applied.entry(key).or_insert((at, 0));
        e.0 = e.0.max(at);
        e.1 += 1;
    }

    fn sample_clocks(&mut self) {
        // Mesh time of every settled member against its leader's, at the
        // same true instant.
        for i in 0..self.nodes.len() {
            let Some(m) = self.nodes[i].member.as_ref() else {
                continue;
            };
            if self.now < self.nodes[i].settled_since + 2_000_000_000 || m.is_leader() {
                continue;
            }
            let local = self.local(i, self.now);
            let st = m.status(local);
            let (Some(leader), Some(mine)) = (st.leader, m.mesh_time(local)) else {
                continue;
            };
            let Some(&li) = self.index.get(&leader) else {
                continue;
            };
            let Some(lm) = self.nodes[li].member.as_ref() else {
                continue;
            };
            let llocal = self.local(li, self.now);
            if lm.status(llocal).room != st.room || !lm.is_leader() {
                continue;
            }
            if let Some(theirs) = lm.mesh_time(llocal) {
                self.metrics.clock_error.push(mine.0.abs_diff(theirs.0));
            }
        }
    }

    /// Marks `[from, to]` (true time) as disturbed: votes cast then are
    /// reported apart.
    pub fn mark_disturbed(&mut self, from: u64, to: u64) {
        self.disturbed.push((from, to));
    }

    /// Finishes latency bookkeeping; call once at the end of a run.
    pub fn finish(&mut self) {
        self.metrics.votes_applied = self.applied.len() as u64;
        let (mut calm, mut rough) = (Vec::new(), Vec::new());
        for (k, (at, _)) in &self.applied {
            let Some(&c) = self.cast.get(k) else { continue };
            let disturbed = self
                .disturbed
                .iter()
                .any(|&(a, b)| c >= a && c <= b + 1_000_000_000);
            if disturbed { &mut rough } else { &mut calm }.push(at.saturating_sub(c));
        }
        calm.sort_unstable();
        rough.sort_unstable();
        self.metrics.vote_latency = calm;
        self.metrics.disturbed_latency = rough;
        self.metrics.clock_error.sort_unstable();
    }

    /// Rooms of the live members, with the members in each.
    #[must_use]
    pub fn rooms(&self) -> BTreeMap<Option<RoomId>, Vec<usize>> {
        let mut rooms: BTreeMap<Option<RoomId>, Vec<usize>> = BTreeMap::new();
        for i in 0..self.nodes.len() {
            if let Some(m) = self.nodes[i].member.as_ref() {
                rooms
                    .entry(m.status(self.local(i, self.now)).room)
                    .or_default()
                    .push(i);
            }
        }
        rooms
    }

    /// Whether every live member is in one room and holds the same state
    /// (same committed digest, or committed tips at most `slack` rounds
    /// apart with equal digests where they coincide).
    #[must_use]
    pub fn converged(&self, slack: u64) -> bool {
        let rooms = self.rooms();
        if rooms.len() != 1 || rooms.keys().next().is_some_and(Option::is_none) {
            return false;
        }
        let statuses: Vec<_> = (0..self.nodes.len())
            .filter_map(|i| {
                self.nodes[i]
                    .member
                    .as_ref()
                    .map(|m| m.status(self.local(i, self.now)))
            })
            .collect();
        let lo = statuses.iter().map(|s| s.commit.round.0).min().unwrap_or(0);
        let hi = statuses.iter().map(|s| s.commit.round.0).max().unwrap_or(0);
        let view_ok = statuses
            .iter()
            .all(|s| s.view.len() == statuses.len() && s.leader == statuses[0].leader);
        view_ok && hi - lo <= slack
    }

    /// Runs in 10 ms steps until [`Sim::converged`] holds or `limit` ns
    /// pass; returns how long it took, or None.
    pub fn run_until_converged(&mut self, slack: u64, limit: u64) -> Option<u64> {
        let start = self.now;
        while !self.converged(slack) {
            if self.now >= start + limit {
                return None;
            }
            self.run_until(self.now + ms(10));
        }
        Some(self.now - start)
    }

    /// Process index of the current leader of the largest room, if any.
    #[must_use]
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.member(i).is_some_and(Member::is_leader))
    }

    /// Processes whose committed view contains `id`.
    #[must_use]
    pub fn holders_of(&self, id: MemberId) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.member(i).is_some_and(|m| {
                    m.status(self.local(i, self.now))
                        .view
                        .iter()
                        .any(|v| v.id == id)
                })
            })
            .collect()
    }

    /// True time process `i` started its current incarnation.
    #[must_use]
    pub fn started(&self, i: usize) -> u64 {
        self.nodes[i].started
    }

    /// Percentile `p` (0–100) of a sorted sample, or 0 when empty.
    #[must_use]
    pub fn percentile(sorted: &[u64], p: f64) -> u64 {
        if sorted.is_empty() {
            return 0;
        }
        let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    /// Fails with the seed and the first violation if any invariant broke.
    pub fn assert_invariants(&self) {
        assert!(
            self.metrics.agreement_violations == 0 && self.metrics.validity_violations == 0,
            "seed {}: {} agreement and {} validity violations; first: {}",
            self.seed,
            self.metrics.agreement_violations,
            self.metrics.validity_violations,
            self.metrics.first_violation.as_deref().unwrap_or("?")
        );
    }
}

/// Helper for nanoseconds in tests and the report.
#[must_use]
pub fn ms(n: u64) -> u64 {
    Nanos::from_millis(n).0
}

/// What one randomised partial-knowledge start came to.
#[derive(Clone, Debug)]
pub struct PartialStart {
    /// Speakers and controllers.
    pub members: usize,
    /// Simulated time from the last boot to one room, if it formed.
    pub formed: Option<u64>,
    /// The rooms when it did not form, or split again later.
    pub split: Option<String>,
}

/// A random set of static peers under which the room is reachable: a
/// random spanning tree (each process after the first knows, or is known
/// by, one earlier process), plus a few extra random links.
pub fn random_static_peers(rng: &mut SmallRng, n: usize) -> Vec<Vec<usize>> {
    let mut peers: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    for k in 1..n {
        let (a, b) = (order[k], order[rng.random_range(0..k)]);
        // Who knows whom: either direction, as people configure it.
        if rng.random_bool(0.5) {
            peers[a].insert(b);
        } else {
            peers[b].insert(a);
        }
    }
    for _ in 0..rng.random_range(0..n) {
        let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
        if a != b {
            peers[a].insert(b);
        }
    }
    peers.into_iter().map(|s| s.into_iter().collect()).collect()
}

/// One randomised start with partial knowledge of peers (seeded): 2 to 8
/// speakers and up to one controller, static peers from
/// [`random_static_peers`], up to 5 % loss and 3 ms of jitter, boots spread
/// over 3 s. Checks that one room forms within 15 s of the last boot and
/// holds for 3 s more; the invariants are asserted as in every run.
#[must_use]
pub fn partial_knowledge_start(seed: u64) -> PartialStart {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed_cafe);
    let speakers = rng.random_range(2..=8);
    let controllers = rng.random_range(0..=1);
    let n = speakers + controllers;
    let peers = random_static_peers(&mut rng, n);
    let net = NetConfig {
        loss: rng.random_range(0.0..0.05),
        jitter: rng.random_range(0..ms(3)),
        ..NetConfig::default()
    };
    let mut sim =
        Sim::with_static_peers(seed, speakers, controllers, net, Config::default(), &peers);
    let mut boots: Vec<(u64, usize)> = (0..n)
        .map(|i| (rng.random_range(0..ms(3_000)), i))
        .collect();
    boots.sort_unstable();
    for (at, i) in boots {
        sim.run_until(at);
        sim.start(i);
    }
    let formed = sim.run_until_converged(2, ms(15_000));
    let mut split = formed.is_none().then(|| format!("{:?}", sim.rooms()));
    if formed.is_some() {
        sim.run_until(sim.now() + ms(3_000));
        let rooms = sim.rooms();
        if rooms.len() != 1 || rooms.keys().any(Option::is_none) {
            split = Some(format!("split later: {rooms:?}"));
        }
    }
    sim.finish();
    sim.assert_invariants();
    PartialStart {
        members: n,
        formed,
        split,
    }
}
