//! Writes the seed inputs of the fuzz targets: real datagrams, taken from
//! three members of a room talking over a lossless network for a few
//! seconds of simulated time.
//!
//! Run once, from the repository root, when the wire format changes:
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/seeds
//! ```
//!
//! It writes `<dir>/decode_message/<kind>` (the first datagram of every
//! message kind the members sent) and `<dir>/open_envelope/<kind>` (a few of
//! those sealed under the fixed key of the `open_envelope` target). The
//! output is the same on every run: members are deterministic.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use autoharmonize_protocol::catalogue::{StemInfo, TrackInfo, bounded};
use autoharmonize_protocol::content::{StemHash, TrackId};
use autoharmonize_protocol::envelope::{Epoch, GroupKey, Opener, Sealer};
use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::member::{Config, Dest, Member};
use autoharmonize_protocol::transport::{Frames, Gain, MAX_CHANNELS};
use autoharmonize_protocol::wire::Message;
use autoharmonize_protocol::{BootId, Channel, LocalTime, MemberId, Nanos};

/// Keep in step with `fuzz_targets/open_envelope.rs`.
const SECRET: &[u8] = b"autoharmonize fuzz secret, 32 b!";

/// Kinds also written sealed, for the envelope target.
const SEALED_KINDS: [&str; 3] = ["heartbeat", "vote_cast", "leave"];

/// Simulated time the room runs for.
const RUN_FOR: Nanos = Nanos::from_secs(6);

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(std::env::args().nth(1).context("usage: seeds <dir>")?);
    let seeds = collect();

    let decode_dir = dir.join("decode_message");
    std::fs::create_dir_all(&decode_dir)?;
    for (kind, bytes) in &seeds {
        std::fs::write(decode_dir.join(kind), bytes)?;
    }

    let open_dir = dir.join("open_envelope");
    std::fs::create_dir_all(&open_dir)?;
    let key = GroupKey::new(SECRET).context("fixed secret")?;
    let mut sealer = Sealer::new(&key, MemberId(2), Epoch(1));
    // The target opens as member 1: check that each seed really opens there,
    // so the fuzzer starts from genuine datagrams.
    let mut opener = Opener::new(&key, MemberId(1));
    for kind in SEALED_KINDS {
        let plain = seeds
            .get(kind)
            .with_context(|| format!("no {kind} was sent"))?;
        let mut sealed = Vec::new();
        sealer.seal(plain, &mut sealed).context("seal")?;
        let opened = opener.open(&sealed).context("a seed does not open")?;
        anyhow::ensure!(
            opened.plaintext == plain.as_slice(),
            "seed opened to other bytes"
        );
        std::fs::write(open_dir.join(kind), sealed)?;
    }

    let total: usize = seeds.values().map(Vec::len).sum();
    println!(
        "{} kinds, {total} bytes unsealed: {:?}",
        seeds.len(),
        seeds.keys().collect::<Vec<_>>()
    );
    Ok(())
}

/// Runs the room and keeps the first datagram of each kind, by kind name.
fn collect() -> BTreeMap<&'static str, Vec<u8>> {
    let mut now = LocalTime(0);
    let mut members: Vec<Member> = (2..=4)
        .map(|id| Member::new(MemberId(id), BootId(1), Config::default(), now))
        .collect();
    // One member holds a track: the others ask for its index and its
    // description (catalogue messages), and a load of it is voted.
    let track = track();
    members[0].set_library("fuzz speaker", vec![(track.clone(), 0b1)]);
    let mut seeds = BTreeMap::new();
    let mut cast = [false; 3];
    let mut left = false;

    while now.0 < RUN_FOR.0 {
        if !cast[0] && now.0 >= Nanos::from_secs(2).0 {
            cast[0] = members[0]
                .cast(
                    now,
                    Event::Play {
                        channel: Channel::All,
                    },
                )
                .is_ok();
        }
        if !cast[1] && now.0 >= Nanos::from_secs(3).0 {
            let event = Event::Volume {
                channel: Channel::Stem(1),
                gain: Gain(40),
            };
            cast[1] = members[1].cast(now, event).is_ok();
        }
        if !cast[2] && now.0 >= Nanos::from_secs(3).0 + Nanos::from_millis(500).0 {
            let event = Event::Load {
                track: track.id,
                channels: 1,
                length: track.length,
            };
            cast[2] = members[2].cast(now, event).is_ok();
        }
        // The leader says goodbye and exits, so the other two elect a new one.
        if !left && now.0 >= Nanos::from_secs(4).0 {
            if let Some(i) = members.iter().position(Member::is_leader) {
                members[i].leave(now);
                deliver(&mut members, now, &mut seeds);
                members.remove(i);
            }
            left = true;
        }
        deliver(&mut members, now, &mut seeds);
        let Some(next) = members.iter().filter_map(Member::poll_timeout).min() else {
            break;
        };
        now = next.max(now);
        for m in &mut members {
            if m.poll_timeout().is_some_and(|t| t <= now) {
                m.handle_timeout(now);
            }
        }
    }
    seeds
}

/// Delivers every pending datagram at once (lossless, no latency) until the
/// members fall quiet, noting new kinds.
fn deliver(members: &mut [Member], now: LocalTime, seeds: &mut BTreeMap<&'static str, Vec<u8>>) {
    loop {
        let mut sent = Vec::new();
        for (from, m) in members.iter_mut().enumerate() {
            while let Some(t) = m.poll_transmit() {
                sent.push((from, t));
            }
            while m.poll_event().is_some() {}
        }
        if sent.is_empty() {
            return;
        }
        for (from, t) in sent {
            if let Ok(msg) = Message::decode(&t.payload) {
                seeds.entry(kind(&msg)).or_insert_with(|| t.payload.clone());
            }
            for (to, m) in members.iter_mut().enumerate() {
                let wanted = match &t.dest {
                    Dest::Member(id) => *id == m.id(),
                    Dest::Members(ids) => ids.contains(&m.id()),
                    Dest::Everyone => to != from,
                    Dest::Strangers { except } => to != from && !except.contains(&m.id()),
                };
                if wanted {
                    m.handle_datagram(now, &t.payload);
                }
            }
        }
    }
}

/// A one-stem track (a made-up stem hash: only its description travels).
fn track() -> TrackInfo {
    let stems: heapless::Vec<StemInfo, MAX_CHANNELS> = [StemInfo {
        name: bounded("drums"),
        hash: StemHash([7; 32]),
    }]
    .into_iter()
    .collect();
    TrackInfo {
        id: TrackId::of(stems.iter().map(|s| (s.name.as_str(), s.hash))),
        title: bounded("Fuzz Song"),
        length: Frames::from_secs(90),
        stems,
    }
}

fn kind(msg: &Message) -> &'static str {
    match msg {
        Message::Heartbeat(_) => "heartbeat",
        Message::Append(_) => "append",
        Message::VoteCast(_) => "vote_cast",
        Message::ClockReply(_) => "clock_reply",
        Message::JoinRequest(_) => "join_request",
        Message::Snapshot(_) => "snapshot",
        Message::SnapshotRequest(_) => "snapshot_request",
        Message::Campaign(_) => "campaign",
        Message::Ballot(_) => "ballot",
        Message::Leave(_) => "leave",
        Message::CatalogueRequest(_) => "catalogue_request",
        Message::CatalogueReply(_) => "catalogue_reply",
        Message::Referral(_) => "referral",
    }
}
