//! Inter-node sync benchmark (issue 5): four node processes in network
//! namespaces play the timecode stem on virtual DACs at −150/−50/+50/+150
//! ppm, node clocks offset by seconds and skewed up to ±100 ppm, with a
//! seek and a pause every minute; writes its section of
//! `docs/benchmarks.md`. Root required. Build the node first:
//! `cargo build --release -p autoharmonize-node`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use autoharmonize_tests::sync_run::{self, RIGS, SyncReport};
use clap::Parser;

/// Measures sync between four node processes.
#[derive(Parser)]
struct Args {
    /// Seconds of playback.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Seconds between seeks (a pause falls half-way between).
    #[arg(long, default_value_t = 60)]
    every: u64,
    /// Threads that keep a core busy (ordinary priority) for the whole run:
    /// `--busy-threads 1 --seconds 600` is the soak (zero xruns
    /// with the other core fully loaded).
    #[arg(long, default_value_t = 0)]
    busy_threads: usize,
    /// The node binary (default: autoharmonize-node next to this program).
    #[arg(long)]
    node: Option<PathBuf>,
    /// Rewrite the sync section of this markdown file.
    #[arg(long)]
    write: Option<PathBuf>,
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
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy: Vec<_> = (0..args.busy_threads)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(
                        x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1),
                    );
                }
            })
        })
        .collect();
    let load_before = load_average();
    let r = sync_run::run(&bin, args.seconds, args.every);
    let load_after = load_average();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in busy {
        let _ = b.join();
    }
    let r = r?;
    let q = |v: &[f64], x| SyncReport::quantile(v, x);
    let cpu = autoharmonize_tests::report::cpu_model();
    let report = format!(
        "Command: `cargo build --release -p autoharmonize-node && cargo run --release -p autoharmonize-tests --bin bench-sync -- --seconds {} --every {} --busy-threads {} --write docs/benchmarks.md` (as root)  \n\
         Machine: {cpu}, {} cores, shared. Four node processes, one per network namespace, virtual DACs at {:?} ppm, node clocks skewed {:?} ppm and offset by seconds; a seek every {} s and a 1 s pause half-way between. Positions read from each DAC's record of the timecode it emitted (true emission time, 1 ms apart); the spread is max − min of the four positions at each instant all four were readable ({} of {} instants).\n\n\
         | figure | p50 | p99 | max | target |\n|---|---|---|---|---|\n\
         | inter-node sync error (spread of 4 nodes) | {:.1} µs | {:.1} µs | {:.1} µs | p99 ≤ 50 µs |\n\
         | seek heard on every node ({} seeks): spread of the change instants | {:.1} µs | {:.1} µs | {:.1} µs | ≤ 1 ms |\n\n\
         Per node (xruns, underruns, re-cues, changes learnt late): {:?}.  \n\
         Per node, median offset from node 0 (µs): emitted sound {:.1?}; mesh clock estimate {:.1?}.  \n\
         Machine load (1-minute load average) at the start and end of the run: {load_before} and {load_after} (2 cores; other work on the machine counts).\n",
        args.seconds,
        args.every,
        args.busy_threads,
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        RIGS.map(|r| r.dac_ppm),
        RIGS.map(|r| r.clock_skew_ppm),
        args.every,
        r.spreads_us.len(),
        r.instants,
        q(&r.spreads_us, 0.5),
        q(&r.spreads_us, 0.99),
        q(&r.spreads_us, 1.0),
        r.change_spreads_us.len(),
        q(&r.change_spreads_us, 0.5),
        q(&r.change_spreads_us, 0.99),
        q(&r.change_spreads_us, 1.0),
        r.nodes,
        r.dac_offsets_us,
        r.clock_offsets_us,
    );
    println!("{report}");
    if let Some(path) = args.write {
        autoharmonize_tests::report::write_section(
            &path,
            "bench-sync",
            "Audio sync (real processes)",
            &report,
        )?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The 1-minute load average, as text (`?` if unreadable).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
