//! Mesh benchmark with real node processes in network namespaces (needs
//! root): join time over 20 joins, crash detection time and the longest
//! gap between decided rounds over 20 kill -9s, and CPU and RSS of an idle
//! node in a 5-node mesh. Writes its section of `docs/benchmarks.md`.
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

    let ms = |d: Duration| d.as_millis();
    let report = format!(
        "Command: `cargo build --release -p autoharmonize-node && cargo run --release -p autoharmonize-tests --bin bench-mesh -- --write docs/benchmarks.md` (as root)  \n\
         Machine: {} cores, one process per network namespace, 5 speakers, static peers, heartbeat 100 ms. Figures are polled every 5–20 ms through each node's status endpoint, which refreshes every 50 ms, so they include up to ~70 ms of observation delay.\n\n\
         | figure | p50 | p99 | max | target |\n|---|---|---|---|---|\n\
         | join: process start → in every node's view ({} joins) | {} ms | {} ms | {} ms | — |\n\
         | crash detection: kill -9 → out of every view ({} kills) | {} ms | {} ms | {} ms | ≤ 1 s |\n\
         | longest gap between decided rounds after a kill -9 | {} ms | {} ms | {} ms | ≤ 1 s |\n\n\
         Idle node in a 5-node mesh over {} s: CPU {:.2}% of a core (max of 5 nodes; each: {}), RSS {} KiB max (each: {}). Target: < 1% of a core, < 10 MB.\n",
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
    Ok(())
}
