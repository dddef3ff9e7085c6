//! Simulation report: runs a room in the deterministic simulator and prints
//! agreement, vote-to-applied latency, convergence after partitions heal,
//! clock error and simulation speed. `--matrix` runs 4/16/64 members at
//! 0/2/10 % loss and rewrites the simulation section of `docs/benchmarks.md`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use autoharmonize_tests::sim::{self, NetConfig, Sim, ms};
use clap::Parser;
use rand::Rng;

/// Run the Autoharmonize protocol core in a deterministic simulated room.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Speakers in the room.
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// Probability that a datagram is lost (0.0–1.0).
    #[arg(long, default_value_t = 0.02)]
    loss: f64,
    /// Extra one-way delay per datagram, uniform in [0, jitter] ms.
    #[arg(long, default_value_t = 30.0)]
    jitter_ms: f64,
    /// Simulated seconds.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Random votes per second across the room.
    #[arg(long, default_value_t = 2.0)]
    votes_per_sec: f64,
    /// Seconds between partitions (a random minority cut off for 3 s);
    /// 0 for none.
    #[arg(long, default_value_t = 30)]
    partition_every: u64,
    /// Seed of the run (the same seed gives the same run).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run the 4/16/64 x 0/2/10 % matrix and rewrite the simulation section
    /// of this markdown file (e.g. docs/benchmarks.md).
    #[arg(long)]
    matrix: Option<PathBuf>,
    /// Check the foundation issue's targets (8 speakers at 2 % loss: p99
    /// vote-to-applied, heal rounds; 64 speakers: speed) and rewrite the
    /// targets section of this markdown file.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// Run 100 randomised starts with partial knowledge of peers (static
    /// peers only, as without mDNS) and rewrite that section of this
    /// markdown file.
    #[arg(long)]
    partial: Option<PathBuf>,
}

struct Report {
    nodes: usize,
    loss: f64,
    jitter_ms: f64,
    seconds: u64,
    seed: u64,
    rounds: u64,
    violations: u64,
    votes_cast: u64,
    votes_applied: u64,
    latency: [u64; 3],
    disturbed: [u64; 3],
    heal_rounds: Vec<u64>,
    clock: [u64; 2],
    max_gap: u64,
    speedup: f64,
    messages: u64,
}

fn run(
    nodes: usize,
    loss: f64,
    jitter_ms: f64,
    seconds: u64,
    votes: f64,
    every: u64,
    seed: u64,
) -> Report {
    let net = NetConfig {
        loss,
        jitter: (jitter_ms * 1e6) as u64,
        ..NetConfig::default()
    };
    let wall = Instant::now();
    let mut sim = Sim::new(seed, nodes, 0, net);
    sim.run_until(ms(3_000));
    let end = sim.now() + seconds * 1_000_000_000;
    let mut heal_rounds = Vec::new();
    while sim.now() < end {
        if every == 0 {
            sim.run_with_votes(end - sim.now(), votes);
            break;
        }
        let chunk = (every * 1_000_000_000).min(end - sim.now());
        // Quiet first half, then a partition of a random minority for 3 s.
        sim.run_with_votes(chunk.saturating_sub(ms(8_000)), votes);
        if sim.now() + ms(8_000) > end || nodes < 3 {
            sim.run_with_votes(end.saturating_sub(sim.now()), votes);
            break;
        }
        let minority = (nodes - 1) / 2;
        let mut side: Vec<usize> = (0..nodes).collect();
        for i in (1..side.len()).rev() {
            let j = sim.rng().random_range(0..=i);
            side.swap(i, j);
        }
        side.truncate(minority.max(1));
        sim.partition(&side);
        let cut = sim.now();
        sim.run_with_votes(ms(3_000), votes);
        sim.heal();
        let healed = sim.now();
        sim.mark_disturbed(cut, healed);
        while !sim.converged(2) && sim.now() < healed + ms(4_000) {
            sim.run_until(sim.now() + ms(10));
        }
        heal_rounds.push((sim.now() - healed).div_ceil(ms(100)));
        sim.run_with_votes(ms(5_000).saturating_sub(sim.now() - healed), votes);
    }
    sim.run_until(sim.now() + ms(1_000));
    sim.finish();
    let elapsed = wall.elapsed().as_secs_f64();
    let m = &sim.metrics;
    Report {
        nodes,
        loss,
        jitter_ms,
        seconds,
        seed,
        rounds: m.rounds_decided,
        violations: m.agreement_violations + m.validity_violations,
        votes_cast: m.votes_cast,
        votes_applied: m.votes_applied,
        latency: [50.0, 99.0, 100.0].map(|p| Sim::percentile(&m.vote_latency, p)),
        disturbed: [50.0, 99.0, 100.0].map(|p| Sim::percentile(&m.disturbed_latency, p)),
        heal_rounds,
        clock: [50.0, 99.0].map(|p| Sim::percentile(&m.clock_error, p)),
        max_gap: m.max_commit_gap,
        speedup: (seconds + 4) as f64 / elapsed,
        messages: m.delivered,
    }
}

fn print(r: &Report) {
    println!(
        "{} speakers, loss {:.0}%, jitter 0-{} ms, {} s simulated, seed {}",
        r.nodes,
        r.loss * 100.0,
        r.jitter_ms,
        r.seconds,
        r.seed
    );
    println!(
        "  agreement: {} ({} rounds decided, {} violations)",
        if r.violations == 0 {
            "100%"
        } else {
            "VIOLATED"
        },
        r.rounds,
        r.violations
    );
    println!(
        "  votes: {} cast, {} applied; cast-to-applied-everywhere p50 {} ms, p99 {} ms, max {} ms",
        r.votes_cast,
        r.votes_applied,
        r.latency[0] / 1_000_000,
        r.latency[1] / 1_000_000,
        r.latency[2] / 1_000_000
    );
    println!(
        "  votes cast during or within 1 s of a partition: p50 {} ms, p99 {} ms, max {} ms",
        r.disturbed[0] / 1_000_000,
        r.disturbed[1] / 1_000_000,
        r.disturbed[2] / 1_000_000
    );
    println!(
        "  partition heals: {} heals, rounds to converge max {} (all: {:?})",
        r.heal_rounds.len(),
        r.heal_rounds.iter().max().copied().unwrap_or(0),
        r.heal_rounds
    );
    println!(
        "  clock error vs the reference: p50 {} us, p99 {} us",
        r.clock[0] / 1_000,
        r.clock[1] / 1_000
    );
    println!(
        "  longest gap between commits: {} ms; {} datagrams; {:.0}x faster than real time",
        r.max_gap / 1_000_000,
        r.messages,
        r.speedup
    );
}

const BEGIN: &str = "<!-- simulate:begin -->";
const END: &str = "<!-- simulate:end -->";

fn matrix(path: &PathBuf, seconds: u64, votes: f64, every: u64, seed: u64) -> Result<()> {
    let mut table = String::new();
    let cpu = autoharmonize_tests::report::cpu_model();
    writeln!(table, "{BEGIN}")?;
    writeln!(
        table,
        "Command: `cargo run --release -p autoharmonize-tests --bin simulate -- --matrix docs/benchmarks.md --seconds {seconds}`  \nMachine: {cpu}, {} cores; one core used. Jitter 0–30 ms one way, base latency 0.2–2 ms per pair (the same both ways), clocks offset up to 1 h and drifting ±200 ppm, {votes} random votes/s, a random minority partitioned for 3 s every {every} s. Heartbeat 100 ms.\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    )?;
    writeln!(
        table,
        "| speakers | loss | rounds decided | agreement | votes applied/cast | vote→applied everywhere p50 / p99 / max (ms) | heal → same state, rounds (max) | clock error p50 / p99 (µs) | longest commit gap (ms) | speed vs real time |"
    )?;
    writeln!(table, "|---|---|---|---|---|---|---|---|---|---|")?;
    for nodes in [4usize, 16, 64] {
        for loss in [0.0, 0.02, 0.10] {
            let r = run(nodes, loss, 30.0, seconds, votes, every, seed);
            print(&r);
            writeln!(
                table,
                "| {} | {:.0}% | {} | {} | {}/{} | {} / {} / {} | {} | {} / {} | {} | {:.0}x |",
                r.nodes,
                r.loss * 100.0,
                r.rounds,
                if r.violations == 0 {
                    "100%".to_string()
                } else {
                    format!("{} violations", r.violations)
                },
                r.votes_applied,
                r.votes_cast,
                r.latency[0] / 1_000_000,
                r.latency[1] / 1_000_000,
                r.latency[2] / 1_000_000,
                r.heal_rounds.iter().max().copied().unwrap_or(0),
                r.clock[0] / 1_000,
                r.clock[1] / 1_000,
                r.max_gap / 1_000_000,
                r.speedup
            )?;
        }
    }
    write!(table, "{END}")?;
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &old[..a], table, &old[b + END.len()..]),
        _ => format!("{old}\n## Protocol simulation\n\n{table}\n"),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn replace_section(path: &PathBuf, begin: &str, end: &str, title: &str, body: &str) -> Result<()> {
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{begin}\n{body}{end}");
    let new = match (old.find(begin), old.find(end)) {
        (Some(a), Some(b)) if b > a => format!("{}{}{}", &old[..a], block, &old[b + end.len()..]),
        _ => format!("{old}\n## {title}\n\n{block}\n"),
    };
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

fn targets(path: &PathBuf) -> Result<()> {
    let mut body = String::new();
    writeln!(
        body,
        "Command: `cargo run --release -p autoharmonize-tests --bin simulate -- --targets docs/benchmarks.md`  \nMachine: {} cores; one used. 600 simulated seconds per run, 2 % loss, jitter 0–30 ms, clocks offset up to 1 h and drifting ±200 ppm, heartbeat 100 ms.\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
    )?;
    writeln!(body, "| target | run | figure | met |\n|---|---|---|---|")?;
    for seed in 1..=3 {
        let r = run(8, 0.02, 30.0, 600, 2.0, 0, seed);
        print(&r);
        let ok = r.violations == 0 && r.latency[1] <= 300_000_000;
        writeln!(
            body,
            "| 8 speakers: agreement 100 %, vote→applied everywhere p99 ≤ 300 ms | seed {seed}, no partitions | {} violations in {} rounds; p50 {} ms, p99 {} ms, max {} ms over {} votes | {} |",
            r.violations,
            r.rounds,
            r.latency[0] / 1_000_000,
            r.latency[1] / 1_000_000,
            r.latency[2] / 1_000_000,
            r.votes_applied,
            if ok { "yes" } else { "**no**" }
        )?;
    }
    let r = run(8, 0.02, 30.0, 600, 2.0, 30, 1);
    print(&r);
    let worst = r.heal_rounds.iter().max().copied().unwrap_or(0);
    writeln!(
        body,
        "| 8 speakers: same state within 5 rounds of a partition healing | seed 1, a minority cut off for 3 s every 30 s | worst of {} heals: {} rounds; {} violations | {} |",
        r.heal_rounds.len(),
        worst,
        r.violations,
        if worst <= 5 && r.violations == 0 {
            "yes"
        } else {
            "**no**"
        }
    )?;
    let r = run(64, 0.02, 30.0, 120, 2.0, 0, 1);
    print(&r);
    writeln!(
        body,
        "| 64 speakers simulate ≥ 20x faster than real time on one core | seed 1, 120 s, no partitions | {:.1}x ({} datagrams) | {} |",
        r.speedup,
        r.messages,
        if r.speedup >= 20.0 { "yes" } else { "**no**" }
    )?;
    writeln!(
        body,
        "\nCrash removal within 1 s and no eviction of live members at 10 % loss are asserted by `tests/tests/crash_is_evicted_within_a_second.rs` and `tests/tests/no_live_member_evicted_at_10pct_loss.rs` (simulated time, so they are tests, not benchmarks)."
    )?;
    replace_section(
        path,
        "<!-- targets:begin -->",
        "<!-- targets:end -->",
        "Foundation targets",
        &body,
    )?;
    println!("wrote {}", path.display());
    Ok(())
}

fn partial(path: &PathBuf) -> Result<()> {
    let starts = 100u64;
    let t0 = Instant::now();
    let runs: Vec<sim::PartialStart> = (0..starts).map(sim::partial_knowledge_start).collect();
    let split: Vec<u64> = (0..starts)
        .filter(|&s| runs[s as usize].split.is_some())
        .collect();
    let mut formed: Vec<u64> = runs.iter().filter_map(|r| r.formed).collect();
    formed.sort_unstable();
    let members: usize = runs.iter().map(|r| r.members).sum();
    let body = format!(
        "Command: `cargo run --release -p autoharmonize-tests --bin simulate -- --partial docs/benchmarks.md`  \n\
         Machine: {} cores; one used ({:.1} s of wall time). {starts} seeded starts of 2–8 speakers and up to one controller ({members} members in all), each knowing only its static peers (a random spanning tree of who-knows-whom plus a few extra links, no mDNS), 0–5 % loss, 0–3 ms jitter, boots spread over 3 s.\n\n\
         | target | figure | met |\n|---|---|---|\n\
         | 0 split rooms in 100 randomised partial-knowledge starts | {} split (seeds {:?}); one room p50 {} ms, p99 {} ms, max {} ms after the last boot | {} |\n",
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        t0.elapsed().as_secs_f64(),
        split.len(),
        split,
        Sim::percentile(&formed, 50.0) / 1_000_000,
        Sim::percentile(&formed, 99.0) / 1_000_000,
        formed.last().copied().unwrap_or(0) / 1_000_000,
        if split.is_empty() { "yes" } else { "**no**" },
    );
    print!("{body}");
    replace_section(
        path,
        "<!-- partial:begin -->",
        "<!-- partial:end -->",
        "Joining with partial knowledge of peers (simulated)",
        &body,
    )?;
    println!("wrote {}", path.display());
    println!("partial: split_rooms={}/{starts}", split.len());
    Ok(())
}

fn main() -> Result<()> {
    let a = Args::parse();
    anyhow::ensure!(
        (0.0..=1.0).contains(&a.loss),
        "--loss must be between 0 and 1"
    );
    anyhow::ensure!(a.nodes >= 1 && a.nodes <= 64, "--nodes must be 1 to 64");
    if let Some(path) = &a.targets {
        return targets(path);
    }
    if let Some(path) = &a.partial {
        return partial(path);
    }
    if let Some(path) = &a.matrix {
        return matrix(path, a.seconds, a.votes_per_sec, a.partition_every, a.seed);
    }
    let r = run(
        a.nodes,
        a.loss,
        a.jitter_ms,
        a.seconds,
        a.votes_per_sec,
        a.partition_every,
        a.seed,
    );
    print(&r);
    if r.violations > 0 {
        anyhow::bail!("invariant violations (seed {})", a.seed);
    }
    Ok(())
}
