//! Mesh benchmark with real node processes in network namespaces (needs
//! root): join time over 20 joins, crash detection time and the longest
//! gap between decided rounds over 20 kill -9s, CPU and RSS of an idle
//! node in a 5-node mesh, the time a chain of 5 static peers takes to form
//! one room, and 20 power cuts of a whole room (every node killed at once
//! at a random instant, then restarted: is the room back as it was?).
//! Writes its section of `docs/benchmarks.md`; the last line printed is
//! `mesh: chain_p99_ms=… power_cuts_restored=…/… …`.
//!
//! Build the node first: `cargo build --release -p autoharmonize-node`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use autoharmonize_tests::netns;
use autoharmonize_tests::room::{Discovery, Room};
use clap::Parser;

/// Measure the node mesh with real processes in network namespaces.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The node binary (default: autoharmonize-node next to this program).
    #[arg(long)]
    node: Option<PathBuf>,
    /// Joins and kills to measure.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// Seconds of idle time for the CPU figure.
    #[arg(long, default_value_t = 30)]
    idle_seconds: u64,
    /// Fresh chains of 5 static peers to form.
    #[arg(long, default_value_t = 10)]
    chains: usize,
    /// Power cuts of a whole room.
    #[arg(long, default_value_t = 20)]
    cuts: usize,
    /// Seed of the power cuts' instants.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rewrite the mesh section of this markdown file.
    #[arg(long)]
    write: Option<PathBuf>,
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort_unstable();
    if v.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[rank.min(v.len() - 1)]
}

fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) in parens.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("stat format")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context("VmRSS value")?
        .parse()?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !netns::require_root_or_skip("bench-mesh") {
        bail!("bench-mesh needs root (network namespaces)");
    }
    let node = match args.node {
        Some(p) => p,
        None => std::env::current_exe()?
            .parent()
            .context("exe dir")?
            .join("autoharmonize-node"),
    };
    anyhow::ensure!(
        node.exists(),
        "{} not found: build it with cargo build --release -p autoharmonize-node",
        node.display()
    );
    let n = 5;
    let all: Vec<usize> = (0..n).collect();
    let mut room = Room::new("ahbench", n, &node, Discovery::StaticPeers);
    room.start_all();
    room.wait_for(Duration::from_secs(10), |r| r.agree_on(&all))
        .context("the room did not form")?;

    // Crash detection and commit gap, then the join of the restarted node.
    let mut detect = Vec::new();
    let mut gaps = Vec::new();
    let mut joins = Vec::new();
    for k in 0..args.repeats {
        let victim = k % n;
        let others: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
        let watcher = others[0];
        let start = Instant::now();
        room.kill9(victim);
        let mut last_round = None;
        let mut last_change = Instant::now();
        let mut gap = Duration::ZERO;
        let mut dropped = None;
        while start.elapsed() < Duration::from_secs(5) {
            if let Some(r) = room
                .status(watcher)
                .and_then(|s| s["commit_round"].as_u64())
                && Some(r) != last_round
            {
                gap = gap.max(last_change.elapsed());
                last_round = Some(r);
                last_change = Instant::now();
            }
            if dropped.is_none() && room.agree_on(&others) {
                dropped = Some(start.elapsed());
            }
            if dropped.is_some() && start.elapsed() > Duration::from_millis(1_500) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let dropped = dropped.context("a killed node was never dropped")?;
        detect.push(dropped);
        gaps.push(gap);
        let spawned = Instant::now();
        room.start(victim);
        let joined = room
            .wait_for(Duration::from_secs(10), |r| r.agree_on(&all))
            .context("a restarted node never rejoined")?;
        joins.push(joined);
        println!(
            "run {k}: victim {victim}: dropped after {} ms, longest commit gap {} ms, rejoined {} ms after start",
            dropped.as_millis(),
            gap.as_millis(),
            (spawned.elapsed().min(joined)).as_millis()
        );
    }

    // Idle CPU and RSS, every node, over idle_seconds.
    let pids: Vec<u32> = all.iter().filter_map(|&i| room.pid(i)).collect();
    let hz = 100.0; // USER_HZ on Linux
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect::<Result<_>>()?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(args.idle_seconds));
    let secs = t0.elapsed().as_secs_f64();
    let after: Vec<u64> = pids.iter().map(|&p| cpu_ticks(p)).collect::<Result<_>>()?;
    let cpu: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) as f64 / hz / secs * 100.0)
        .collect();
    let rss: Vec<u64> = pids.iter().map(|&p| rss_kib(p)).collect::<Result<_>>()?;
    let cpu_max = cpu.iter().copied().fold(0.0, f64::max);
    let rss_max = rss.iter().copied().max().unwrap_or(0);

    drop(room);
    let mut chain = chain_formation(&node, args.chains)?;
    let cuts = power_cuts(&node, args.cuts, args.seed)?;

    let ms = |d: Duration| d.as_millis();
    let report = format!(
        "Command: `cargo build --release -p autoharmonize-node && cargo run --release -p autoharmonize-tests --bin bench-mesh -- --write docs/benchmarks.md` (as root)  \n\
         Machine: {} cores, one process per network namespace, 5 speakers, static peers, heartbeat 100 ms. Figures are polled every 5–20 ms through each node's status endpoint, which refreshes every 50 ms, so they include up to ~70 ms of observation delay.\n\n\
         | figure | p50 | p99 | max | target |\n|---|---|---|---|---|\n\
         | join: process start → in every node's view ({} joins) | {} ms | {} ms | {} ms | — |\n\
         | crash detection: kill -9 → out of every view ({} kills) | {} ms | {} ms | {} ms | ≤ 1 s |\n\
         | longest gap between decided rounds after a kill -9 | {} ms | {} ms | {} ms | ≤ 1 s |\n\n\
         Idle node in a 5-node mesh over {} s: CPU {:.2}% of a core (max of 5 nodes; each: {}), RSS {} KiB max (each: {}). Target: < 1% of a core, < 10 MB.\n\n\
         | figure | p50 | p99 | max | target |\n|---|---|---|---|---|\n\
         | chain of 5 static peers (node i knows only node i-1), all started at once → one room ({} chains) | {} ms | {} ms | {} ms | ≤ 3 s |\n\
         | power cut: 3 nodes killed at once, restarted → one room, restored ({} cuts) | {} ms | {} ms | {} ms | — |\n\n\
         Power cuts (seed {}): {} of {} came back with the track, every channel paused within 0.5 s of where it stood (worst {} ms off), gains and pauses (target: 20 of 20). The cuts fall at random instants 0.3–2 s after the room last changed, while two of three channels play and the state files are rewritten every 250 ms.\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        joins.len(),
        ms(percentile(&mut joins, 50.0)),
        ms(percentile(&mut joins, 99.0)),
        ms(percentile(&mut joins, 100.0)),
        detect.len(),
        ms(percentile(&mut detect, 50.0)),
        ms(percentile(&mut detect, 99.0)),
        ms(percentile(&mut detect, 100.0)),
        ms(percentile(&mut gaps, 50.0)),
        ms(percentile(&mut gaps, 99.0)),
        ms(percentile(&mut gaps, 100.0)),
        args.idle_seconds,
        cpu_max,
        cpu.iter()
            .map(|c| format!("{c:.2}%"))
            .collect::<Vec<_>>()
            .join(", "),
        rss_max,
        rss.iter()
            .map(|r| format!("{r}"))
            .collect::<Vec<_>>()
            .join(", "),
        chain.len(),
        ms(percentile(&mut chain, 50.0)),
        ms(percentile(&mut chain, 99.0)),
        ms(percentile(&mut chain, 100.0)),
        cuts.back.len(),
        ms(percentile(&mut cuts.back.clone(), 50.0)),
        ms(percentile(&mut cuts.back.clone(), 99.0)),
        ms(percentile(&mut cuts.back.clone(), 100.0)),
        args.seed,
        cuts.restored,
        cuts.total,
        cuts.worst_off_ms,
    );
    println!("{report}");
    if let Some(path) = args.write {
        autoharmonize_tests::report::write_section(
            &path,
            "bench-mesh",
            "Node mesh (real processes)",
            &report,
        )?;
        println!("wrote {}", path.display());
    }
    println!(
        "mesh: chain_p99_ms={} power_cuts_restored={}/{} power_cut_worst_off_ms={}",
        ms(percentile(&mut chain, 99.0)),
        cuts.restored,
        cuts.total,
        cuts.worst_off_ms
    );
    Ok(())
}

/// Forms `chains` fresh rooms of 5 nodes where node i knows only node i-1;
/// returns the time from starting them to one room.
fn chain_formation(node: &std::path::Path, chains: usize) -> Result<Vec<Duration>> {
    let all: Vec<usize> = (0..5).collect();
    let mut took = Vec::new();
    for k in 0..chains {
        let mut room = Room::new("ahchainb", 5, node, Discovery::Chain);
        let start = Instant::now();
        room.start_all();
        room.wait_for(Duration::from_secs(20), |r| r.agree_on(&all))
            .context("a chain of static peers did not form one room")?;
        let formed = start.elapsed();
        println!("chain {k}: one room after {} ms", formed.as_millis());
        took.push(formed);
    }
    Ok(took)
}

struct Cuts {
    total: usize,
    restored: usize,
    worst_off_ms: u64,
    back: Vec<Duration>,
}

/// One channel as a status shows it: playing, position, gain.
fn channel_states(s: &serde_json::Value) -> Vec<(bool, u64, u64)> {
    s["channels"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|c| {
                    (
                        c["playing"] == true,
                        c["position"].as_u64().unwrap_or(0),
                        c["gain"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A room of 3 nodes holding one 3-stem track; `cuts` times: kill every
/// node at once at a random instant, restart them, check the state.
fn power_cuts(node: &std::path::Path, cuts: usize, seed: u64) -> Result<Cuts> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let n = 3;
    let all: Vec<usize> = (0..n).collect();
    let mut room = Room::new("ahcut", n, node, Discovery::StaticPeers);
    let media = room.dir().join("media").join("song");
    std::fs::create_dir_all(&media)?;
    std::fs::write(
        media.join("track.toml"),
        "title = \"Power Cut\"\nstems = [\"a\", \"b\", \"c\"]\n",
    )?;
    for stem in ["a", "b", "c"] {
        autoharmonize_tests::timecode::write_wav(
            &media.join(format!("{stem}.wav")),
            48_000 * 600,
            1,
        )?;
    }
    for i in 0..n {
        room.set_media_dir(i, &room.dir().join("media"));
        room.set_args(i, &["--output", "null", "--channel", &i.to_string()]);
    }
    room.start_all();
    room.wait_for(Duration::from_secs(30), |r| r.agree_on(&all))
        .context("the power-cut room did not form")?;
    let cast = |room: &Room, json: &str| -> Result<()> {
        let (code, body) = room.cast(0, json);
        anyhow::ensure!(code == 200, "cast {json}: {code} {body}");
        Ok(())
    };
    cast(&room, r#"{"event":"seek","channel":"all","to":2880000}"#)?;
    cast(&room, r#"{"event":"volume","channel":1,"gain":40}"#)?;
    cast(&room, r#"{"event":"pause","channel":2}"#)?;
    let mut out = Cuts {
        total: cuts,
        restored: 0,
        worst_off_ms: 0,
        back: Vec::new(),
    };
    let track = room.status(0).context("status")?["track"]["id"].clone();
    for k in 0..cuts {
        cast(&room, r#"{"event":"play","channel":0}"#)?;
        cast(&room, r#"{"event":"play","channel":1}"#)?;
        std::thread::sleep(Duration::from_millis(rng.random_range(300..2_000)));
        let before = room.status(0).context("status before the cut")?;
        let read_at = Instant::now();
        for i in 0..n {
            room.kill9(i);
        }
        let cut_after = read_at.elapsed();
        let start = Instant::now();
        room.start_all();
        let back = room.wait_for(Duration::from_secs(30), |r| {
            r.agree_on(&all)
                && all
                    .iter()
                    .all(|&i| r.status(i).is_some_and(|s| s["restored"] == true))
        });
        if back.is_none() {
            println!("cut {k}: the room did not come back restored");
            continue;
        }
        let back = start.elapsed();
        out.back.push(back);
        let expected = channel_states(&before);
        let mut good = expected.len() == 3;
        let mut worst = 0u64;
        for i in 0..n {
            let s = room.status(i).context("status")?;
            good &= s["track"]["id"] == track;
            let got = channel_states(&s);
            good &= got.len() == expected.len();
            for (&(was, pos, gain), &(playing, now, now_gain)) in expected.iter().zip(&got) {
                let at_cut = pos
                    + if was {
                        u64::try_from(cut_after.as_micros() * 48 / 1_000)?
                    } else {
                        0
                    };
                let off = now.abs_diff(at_cut) / 48;
                worst = worst.max(off);
                good &= !playing && now_gain == gain && off <= 500;
            }
        }
        out.worst_off_ms = out.worst_off_ms.max(worst);
        if good {
            out.restored += 1;
        }
        println!(
            "cut {k}: back in {} ms, {} (worst {worst} ms off)",
            back.as_millis(),
            if good { "restored" } else { "NOT restored" }
        );
    }
    Ok(out)
}
