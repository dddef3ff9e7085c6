//! A speaker with no media plays a stem held by two others, in sync — real
//! node processes in network namespaces, recording virtual DACs (see
//! `autoharmonize_tests::stream_run`). Needs root; with `CI=true` a missing
//! prerequisite fails.
//!
//! One run, in phases (a 40 s timecode track):
//! 1. play from 0: the streamer's emissions match a holder's (sync p99 ≤
//!    250 µs, the bound of `audio_sync_netns.rs`) and are readable nearly
//!    all the time; both holders served chunks;
//! 2. holder 1's file rots on disk (a byte flipped in every 64 KiB of
//!    25–35 s), then a seek far ahead to 25 s: the streamer is audible in
//!    sync within 3 s of the holders' change, stays in sync, and rejected
//!    holder 1's bad chunks (fetched again from holder 2);
//! 3. holder 1 is killed mid-stream: the streamer keeps playing in sync
//!    from holder 2.

mod audio_support;

use std::time::Duration;

use autoharmonize_tests::stream_run::{
    RATE, STREAMER, StreamLab, audible_in_sync, changed_to, spreads,
};
use autoharmonize_tests::sync_run::{SyncReport, monotonic_raw_ns};

fn p99(v: &[f64]) -> f64 {
    SyncReport::quantile(v, 0.99)
}

#[test]
fn a_node_without_media_streams_in_sync_through_seek_tamper_and_holder_death() {
    if !audio_support::prerequisite(
        nix::unistd::Uid::effective().is_root(),
        "root (network namespaces)",
    ) {
        return;
    }
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_autoharmonize-node"));
    let lab = StreamLab::start(bin, 40, 0).expect("the room forms");

    // 1. Play from the start.
    lab.seek(0);
    lab.cast(r#"{"event":"play","channel":"all"}"#);
    let t_play = monotonic_raw_ns();
    std::thread::sleep(Duration::from_secs(7));
    let first = lab.stream_status();

    // 2. Holder 1's copy rots ahead of the playhead; seek there.
    let mut bytes = std::fs::read(&lab.files[1]).expect("holder 1's file");
    let (from, to) = (25 * RATE as usize * 4, 35 * RATE as usize * 4);
    for i in (from..to.min(bytes.len())).step_by(65_536) {
        bytes[i] ^= 0x5a;
    }
    std::fs::write(&lab.files[1], bytes).expect("tamper");
    let target = 25 * RATE + 1_234;
    let t_seek = lab.seek(target);
    std::thread::sleep(Duration::from_secs(5));
    let second = lab.stream_status();

    // 3. Holder 1 dies mid-stream.
    let mut lab = lab;
    let t_kill = monotonic_raw_ns();
    lab.room.kill9(1);
    std::thread::sleep(Duration::from_secs(5));
    let t_end = monotonic_raw_ns();
    let third = lab.stream_status();
    eprintln!(
        "streaming status after phase 1: {first}\nafter phase 2: {second}\nat the end: {third}"
    );
    let series = match lab.finish(&[STREAMER, 2]) {
        Ok(s) => s,
        Err(e) => panic!("recordings: {e}"),
    };
    let (s0, s2) = (&series[0], &series[1]);

    // Phase 1.
    let (sp, share) = spreads(s0, s2, t_play + 2_000_000_000, t_play + 7_000_000_000);
    eprintln!(
        "phase 1: {} instants, share {share:.3}, p50 {:.1} µs p99 {:.1} µs",
        sp.len(),
        SyncReport::quantile(&sp, 0.5),
        p99(&sp)
    );
    assert!(
        share > 0.9,
        "the streamer was readable {share:.3} of the time"
    );
    assert!(p99(&sp) <= 250.0, "sync p99 {:.1} µs", p99(&sp));
    let per_holder = first["per_holder"].as_array().cloned().unwrap_or_default();
    assert_eq!(per_holder.len(), 2, "both holders served chunks: {first}");

    // Phase 2.
    let changed = changed_to(s2, target, t_seek).expect("the holder played the seek target");
    let audible = audible_in_sync(s0, s2, changed, changed + 3_000_000_000)
        .expect("the streamer was audible in sync within 3 s of the seek");
    eprintln!(
        "seek to audible (after the holder's change): {:.1} ms",
        (audible - changed) as f64 / 1e6
    );
    let (sp, share) = spreads(s0, s2, audible, t_kill);
    assert!(
        share > 0.9,
        "after the seek the streamer was readable {share:.3} of the time"
    );
    assert!(
        p99(&sp) <= 250.0,
        "sync p99 after the seek {:.1} µs",
        p99(&sp)
    );
    assert!(
        second["rejected"].as_u64().unwrap_or(0) >= 1,
        "holder 1's rotten chunks were rejected: {second}"
    );

    // Phase 3.
    let (sp, share) = spreads(s0, s2, t_kill + 1_000_000_000, t_end - 500_000_000);
    eprintln!(
        "after the kill: {} instants, share {share:.3}, p99 {:.1} µs",
        sp.len(),
        p99(&sp)
    );
    assert!(
        share > 0.9,
        "after the kill the streamer was readable {share:.3} of the time"
    );
    assert!(
        p99(&sp) <= 250.0,
        "sync p99 after the kill {:.1} µs",
        p99(&sp)
    );
    assert!(
        third["fetched_bytes"].as_u64() > second["fetched_bytes"].as_u64(),
        "chunks kept arriving after the kill"
    );
}
