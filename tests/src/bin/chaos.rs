//! Chaos soak benchmark (issue 9): a room of real node processes in network
//! namespaces, a real controller and fake buttons voting, and seeded random
//! faults (kill -9, SIGTERM, SIGSTOP, link down, partitions of every shape,
//! replays, garbage, a wrong-secret speaker, CPU load, long isolation) for
//! the given time, with the invariant checks of `autoharmonize_tests::chaos`
//! running throughout. Exits 1 if any invariant broke; with `--write` it
//! rewrites its section of `docs/benchmarks.md`. Root required. Build the
//! binaries first:
//! `cargo build --release -p autoharmonize-node -p autoharmonize-controller`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use autoharmonize_tests::chaos::{self, ChaosConfig, ChaosReport};
use clap::Parser;

/// Runs the chaos soak.
#[derive(Parser)]
struct Args {
    /// Speakers.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Minutes of faults.
    #[arg(long, default_value_t = 60.0)]
    minutes: f64,
    /// Seed of every random choice (faults, votes, presses).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The node binary (default: autoharmonize-node next to this program).
    #[arg(long)]
    node: Option<PathBuf>,
    /// The controller binary (default: autoharmonize next to this program).
    #[arg(long)]
    controller: Option<PathBuf>,
    /// Print every fault as it is injected.
    #[arg(long)]
    verbose: bool,
    /// If any invariant broke, keep the logs and DAC records here.
    #[arg(long)]
    keep_logs: Option<PathBuf>,
    /// Rewrite the chaos section of this markdown file
    /// (docs/benchmarks.md).
    #[arg(long)]
    write: Option<PathBuf>,
}

fn beside_me(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_default()
}

/// SIGINT and SIGTERM end the run early and cleanly (nodes stopped,
/// namespaces removed) instead of killing it with its processes left
/// behind.
fn stop_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            eprintln!("chaos: signal {sig} received: stopping the run and cleaning up");
            chaos::interrupt();
        }
    });
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    stop_on_signals()?;
    if !autoharmonize_tests::netns::require_root_or_skip("chaos") {
        bail!("the chaos soak needs root (network namespaces)");
    }
    let cfg = ChaosConfig {
        nodes: args.nodes,
        duration: Duration::from_secs_f64(args.minutes * 60.0),
        seed: args.seed,
        node_bin: args.node.unwrap_or_else(|| beside_me("autoharmonize-node")),
        controller_bin: args
            .controller
            .unwrap_or_else(|| beside_me("autoharmonize")),
        verbose: args.verbose,
        keep_logs: args.keep_logs,
        heal_bound: chaos::HEAL_BOUND,
        sync_bound_us: chaos::SYNC_BOUND_US,
    };
    for b in [&cfg.node_bin, &cfg.controller_bin] {
        if !b.exists() {
            bail!(
                "{} not found: build it with cargo build --release -p autoharmonize-node -p autoharmonize-controller",
                b.display()
            );
        }
    }
    let r = chaos::run(&cfg)?;
    let text = render(&r, &args.minutes);
    println!("{text}");
    for v in &r.violations {
        println!("{v}");
    }
    if r.interrupted {
        bail!(
            "interrupted after {:.1} minutes ({} violations so far); docs not written",
            r.ran.as_secs_f64() / 60.0,
            r.violations.len()
        );
    }
    if let Some(path) = args.write {
        autoharmonize_tests::report::write_section(
            &path,
            "chaos",
            "Chaos soak (real processes)",
            &text,
        )?;
        println!("wrote {}", path.display());
    }
    if !r.violations.is_empty() {
        bail!("{} invariant violations", r.violations.len());
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn render(r: &ChaosReport, minutes: &f64) -> String {
    let cpu = autoharmonize_tests::report::cpu_model();
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Command: `cargo build --release -p autoharmonize-node -p autoharmonize-controller && cargo run --release -p autoharmonize-tests --bin chaos -- --nodes {} --minutes {minutes} --seed {} --write docs/benchmarks.md` (as root)  ",
        r.nodes, r.seed
    );
    let _ = writeln!(
        t,
        "Machine: {cpu}, {cores} cores, shared with other work. Ran {:.1} minutes of faults ({} episodes), {} speakers on virtual DACs playing the timecode stem, one controller casting verbs back to back and fake buttons pressed on random speakers ({} presses). Tolerances and what each check means: docs/chaos.md.\n",
        r.ran.as_secs_f64() / 60.0,
        r.episodes,
        r.nodes,
        r.presses
    );
    let _ = writeln!(t, "| fault | injected |\n|---|---|");
    for (k, v) in &r.faults {
        let _ = writeln!(t, "| {k} | {v} |");
    }
    let _ = writeln!(t, "| **total** | **{}** |\n", r.fault_count());
    let sorted = |v: &[Duration]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    let heals = sorted(&r.heals);
    let rejoins = sorted(&r.rejoins);
    let q = |v: &[Duration], q: f64| {
        if v.is_empty() {
            "–".to_owned()
        } else {
            ms(v[((v.len() - 1) as f64 * q).round() as usize])
        }
    };
    let applied = r.controller.get(&0).copied().unwrap_or(0);
    let verbs: u64 = r.controller.values().sum();
    let _ = writeln!(t, "| figure | value | target |\n|---|---|---|");
    let _ = writeln!(t, "| invariant violations | {} | 0 |", r.violations.len());
    let _ = writeln!(t, "| panics in node logs | {} | 0 |", r.panics);
    let _ = writeln!(
        t,
        "| heal → one settled room ({} heals): p50 / p99 / max | {} / {} / {} | 5 rounds (500 ms); violation above {} (measuring from outside) |",
        heals.len(),
        q(&heals, 0.5),
        q(&heals, 0.99),
        q(&heals, 1.0),
        ms(chaos::HEAL_BOUND)
    );
    let waits = sorted(&r.network_waits);
    let _ = writeln!(
        t,
        "| heal → network delivering again, after a carrier loss ({} heals waited for ARP): p50 / max | {} / {} | – (the kernel's 1 s ARP retry; the heal row is measured from here) |",
        waits.len(),
        q(&waits, 0.5),
        q(&waits, 1.0)
    );
    let _ = writeln!(
        t,
        "| restart → one settled room ({} restarts): p50 / max | {} / {} | ≤ {} s |",
        rejoins.len(),
        q(&rejoins, 0.5),
        q(&rejoins, 1.0),
        chaos::REJOIN_BOUND.as_secs()
    );
    let _ = writeln!(
        t,
        "| longest control stall (between two controller verbs applied) | {} | – |",
        ms(r.longest_stall)
    );
    let _ = writeln!(
        t,
        "| controller verbs applied / cast | {applied} / {verbs} (by exit code: {:?}) | – |",
        r.controller
    );
    let _ = writeln!(
        t,
        "| inter-node sync error, {} instants: p50 / p99 / max | {:.1} / {:.1} / {:.1} µs | p99 ≤ 50 µs; violation > {} µs for {} instants |",
        r.spreads_us.len(),
        r.sync_quantile(0.5),
        r.sync_quantile(0.99),
        r.sync_quantile(1.0),
        chaos::SYNC_BOUND_US,
        chaos::SYNC_RUN
    );
    let _ = writeln!(
        t,
        "| xruns while the hypervisor took ≥ {} ms of this VM's CPU (not counted; its steal over the run: {:.1} s) | {} | – |",
        chaos::STEAL_EXCUSE.as_millis(),
        r.host_steal.as_secs_f64(),
        r.xruns_host_steal
    );
    let _ = writeln!(
        t,
        "| minority members checked read-only and unchanged | {} | – |",
        r.minority_checks
    );
    let _ = writeln!(
        t,
        "| lone speakers that founded a solo room | {} | – |",
        r.solo_rooms
    );
    let _ = writeln!(
        t,
        "| committed rounds cross-checked for agreement | {} | – |\n",
        r.rounds_checked
    );
    let _ = writeln!(
        t,
        "Memory (anonymous RSS of each speaker's longest-lived process; node 0 is never killed):\n\n| node | processes | longest life | RSS start (after {} s) | RSS end | growth |\n|---|---|---|---|---|---|",
        chaos::RSS_WARMUP.as_secs()
    );
    for (i, f) in r.rss.iter().enumerate() {
        let _ = writeln!(
            t,
            "| {i} | {} | {:.0} s | {} KiB | {} KiB | {:+} KiB |",
            r.starts.get(i).copied().unwrap_or(0),
            f.life.as_secs_f64(),
            f.start_kb,
            f.end_kb,
            f.end_kb as i64 - f.start_kb as i64
        );
    }
    if !r.violations.is_empty() {
        // By kind, with the first three of each in full: the run's output
        // has every one.
        let mut kinds: Vec<&str> = r.violations.iter().map(|v| v.kind).collect();
        kinds.sort_unstable();
        kinds.dedup();
        let _ = writeln!(
            t,
            "\nViolations by kind (first three of each; the run's output lists all):\n\n```"
        );
        for k in kinds {
            let of: Vec<_> = r.violations.iter().filter(|v| v.kind == k).collect();
            let _ = writeln!(t, "{k}: {}", of.len());
            for v in of.iter().take(3) {
                let _ = write!(t, "{v}");
            }
        }
        let _ = writeln!(t, "```");
    }
    t
}
