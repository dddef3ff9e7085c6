//! Streaming benchmark (issue 8): a node with no media streams its stem
//! from two holders (three node processes in network namespaces, recording
//! virtual DACs; see `autoharmonize_tests::stream_run`), at injected link
//! delays (the node's test-only `--test-link-delay-ms`, as the kernel has
//! no netem). Measures, per delay:
//!
//! - seek-to-audible: seeks far ahead to positions never fetched; from the
//!   instant the holders play the target (their change, dated from their
//!   own recordings) to the first instant the streamer plays in sync with
//!   them (within 1 ms, for 20 ms), and also from the vote's cast;
//! - start-to-audible: the streamer restarted cold (empty cache) into the
//!   playing room; from its process start to its first in-sync emission
//!   (includes joining the room and timing its DAC, not only fetching);
//! - bytes fetched against bytes played over the seek runs.
//!
//! Writes its section of `docs/benchmarks.md`. Root required. Build the
//! node first (`cargo build --release -p autoharmonize-node`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use autoharmonize_tests::stream_run::{
    HOLDERS, RATE, STREAMER, StreamLab, audible_in_sync, changed_to,
};
use autoharmonize_tests::sync_run::SyncReport;
use clap::Parser;

/// Measures streaming latency and waste.
#[derive(Parser)]
struct Args {
    /// Runs of each measurement per delay.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Injected link delays, ms (each way).
    #[arg(long, value_delimiter = ',', default_values_t = [0u64, 50])]
    delays: Vec<u64>,
    /// The node binary (default: autoharmonize-node next to this program).
    #[arg(long)]
    node: Option<PathBuf>,
    /// Rewrite the streaming section of this markdown file.
    #[arg(long)]
    write: Option<PathBuf>,
}

struct Figures {
    delay: u64,
    seek_ms: Vec<f64>,
    seek_from_cast_ms: Vec<f64>,
    seek_missed: usize,
    start_ms: Vec<f64>,
    start_missed: usize,
    fetched: u64,
    played: u64,
}

fn measure(bin: &std::path::Path, delay: u64, runs: usize) -> Result<Figures> {
    // 10 s of headroom before the first target, 5 s between targets.
    let track = 10 + 5 * runs as u64 + 10;
    let mut lab = StreamLab::start(bin, track, delay)?;
    lab.seek(0);
    lab.cast(r#"{"event":"play","channel":"all"}"#);
    std::thread::sleep(Duration::from_secs(3));
    // Targets in a scrambled order, so no seek lands on prefetched data.
    let mut seeks = Vec::new();
    for k in 0..runs {
        let slot = (k * 7) % runs;
        // A different phase of the 100 ms timecode period each time, so
        // the jump is visible in the recording (whole seconds would land
        // on the phase being played).
        let target = (10 + 5 * slot as u64) * RATE + 600 + (k as u64 * 1_733) % 3_600;
        let cast = lab.seek(target);
        seeks.push((cast, target));
        std::thread::sleep(Duration::from_millis(2_500));
    }
    let status = lab.stream_status();
    let first_record = lab.records[STREAMER].clone();
    let holder_record = lab.records[HOLDERS[1]].clone();
    let fetched = status["fetched_bytes"].as_u64().unwrap_or(0);
    let played = status["played_bytes"].as_u64().unwrap_or(0);
    // Cold starts.
    let mut starts = Vec::new();
    for _ in 0..runs {
        // The room plays from 10 s for each start, well inside the track
        // (the cache is emptied anyway).
        lab.seek(10 * RATE);
        std::thread::sleep(Duration::from_millis(500));
        let spawned = lab.restart_streamer_cold()?;
        starts.push((spawned, lab.records[STREAMER].clone()));
        std::thread::sleep(Duration::from_secs(3));
    }
    let mut paths = vec![holder_record, first_record];
    paths.extend(starts.iter().map(|(_, p)| p.clone()));
    let series = lab.finish_paths(&paths)?;
    let (holder, first) = (&series[0], &series[1]);
    let mut f = Figures {
        delay,
        seek_ms: Vec::new(),
        seek_from_cast_ms: Vec::new(),
        seek_missed: 0,
        start_ms: Vec::new(),
        start_missed: 0,
        fetched,
        played,
    };
    for (cast, target) in seeks {
        let found = changed_to(holder, target, cast)
            .and_then(|c| Some((c, audible_in_sync(first, holder, c, c + 5_000_000_000)?)));
        match found {
            Some((changed, audible)) => {
                f.seek_ms
                    .push((audible.saturating_sub(changed)) as f64 / 1e6);
                f.seek_from_cast_ms
                    .push((audible.saturating_sub(cast)) as f64 / 1e6);
            }
            None => {
                eprintln!("seek to {target}: not heard in sync within 5 s");
                f.seek_missed += 1;
            }
        }
    }
    for ((spawned, _), s) in starts.iter().zip(&series[2..]) {
        let spawned = *spawned;
        match audible_in_sync(s, holder, spawned, spawned + 20_000_000_000) {
            Some(t) => f.start_ms.push((t - spawned) as f64 / 1e6),
            None => {
                eprintln!(
                    "start at {spawned}: never in sync within 20 s ({} points recorded, span {:?})",
                    s.len(),
                    s.span()
                );
                f.start_missed += 1;
            }
        }
    }
    f.seek_ms.sort_by(f64::total_cmp);
    f.seek_from_cast_ms.sort_by(f64::total_cmp);
    f.start_ms.sort_by(f64::total_cmp);
    Ok(f)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bin = match args.node {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("autoharmonize-node"))
            .unwrap_or_default(),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it with cargo build --release -p autoharmonize-node",
            bin.display()
        );
    }
    if args.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let mut all = Vec::new();
    for &d in &args.delays {
        eprintln!("measuring at {d} ms of injected delay…");
        all.push(measure(&bin, d, args.runs)?);
    }
    let q = |v: &[f64], x| SyncReport::quantile(v, x);
    let cpu = autoharmonize_tests::report::cpu_model();
    let mut report = format!(
        "Command: `cargo build -p autoharmonize-node && cargo run -p autoharmonize-tests --bin bench-stream -- --runs {} --delays {} --write docs/benchmarks.md` (as root)  \n\
         Machine: {cpu}, {} cores, shared with other builds; the node is a dev build (our crates at opt-level 1, dependencies optimised). Three node processes in network namespaces (veth); hosts 1 and 2 hold a 48 kHz mono float WAV timecode stem (192 kB/s), host 0 has no media and streams it; every node plays on a recording virtual DAC. The delay is injected by host 0 on every chunk request it sends and every answer it receives (round trip + 2 × delay). Seek-to-audible: seeks to positions never fetched, from the holders' audible change (dated on their own DAC record) to host 0's first emission in sync with them (within 1 ms for 20 ms); \"from the cast\" adds the vote's way through the mesh (heartbeat 100 ms). Start-to-audible: host 0 restarted with an empty cache into the playing room, from its process start to its first in-sync emission — that includes process start, joining the room and fitting its DAC's timing, not only fetching.\n\n\
         | delay (each way) | seek-to-audible p50 | p99 | from the cast p50 | p99 | start-to-audible p50 | p99 | missed | bytes fetched / played (seek runs) | target |\n|---|---|---|---|---|---|---|---|---|---|\n",
        args.runs,
        args.delays
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
    );
    for f in &all {
        report.push_str(&format!(
            "| {} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {} seeks, {} starts | {:.1} MB / {:.1} MB ({:.2}×) | {} |\n",
            f.delay,
            q(&f.seek_ms, 0.5),
            q(&f.seek_ms, 0.99),
            q(&f.seek_from_cast_ms, 0.5),
            q(&f.seek_from_cast_ms, 0.99),
            q(&f.start_ms, 0.5),
            q(&f.start_ms, 0.99),
            f.seek_missed,
            f.start_missed,
            f.fetched as f64 / 1e6,
            f.played as f64 / 1e6,
            f.fetched as f64 / f.played.max(1) as f64,
            if f.delay == 0 { "seek-to-audible ≤ 300 ms" } else { "" },
        ));
    }
    report.push('\n');
    println!("{report}");
    if let Some(path) = args.write {
        autoharmonize_tests::report::write_section(
            &path,
            "bench-stream",
            "Peer-to-peer streaming (real processes)",
            &report,
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
