//! The simulated hardware a test speaker runs on: a virtual DAC with its
//! own crystal error and a local clock offset and skewed from true time.
//! Every multi-process sync measurement (CI tests, benchmarks, the chaos
//! soak) gives its nodes these, so that one machine's processes, which
//! share one crystal, disagree the way real speakers do; and since the
//! harness knows each node's offset and skew, it can tell from a node's
//! status how far its mesh-clock estimate is from the truth.

use std::path::Path;

use serde_json::Value;

/// One speaker's simulated hardware.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rig {
    /// How much faster than nominal its DAC's crystal runs (ppm).
    pub dac_ppm: f64,
    /// Its local clock's offset from true time (ms).
    pub clock_offset_ms: u64,
    /// How much faster than true time its local clock runs (ppm).
    pub clock_skew_ppm: f64,
}

impl Rig {
    /// The node arguments that give it this hardware, its DAC recording
    /// what it emits (true time, sample) to `record`.
    #[must_use]
    pub fn args(&self, record: &Path) -> Vec<String> {
        vec![
            "--output".to_owned(),
            format!("virtual:{},0,record={}", self.dac_ppm, record.display()),
            "--test-clock-offset-ms".to_owned(),
            self.clock_offset_ms.to_string(),
            "--test-clock-skew-ppm".to_owned(),
            self.clock_skew_ppm.to_string(),
        ]
    }

    /// Its mesh-clock estimate minus true time (ns), from the local/mesh
    /// pair in its status: true time is recovered from the local reading
    /// by undoing the offset and skew (see `LocalClock::skewed`). Every
    /// node of a room whose estimate is right gives the same figure (the
    /// reference's offset), so differences between nodes are estimate
    /// errors.
    #[must_use]
    pub fn mesh_minus_true_ns(&self, status: &Value) -> Option<f64> {
        let mesh = status["mesh_time_ns"].as_u64()? as f64;
        Some(mesh - self.true_time_of(status)?)
    }

    /// The true time (`CLOCK_MONOTONIC_RAW`, ns) at which its status was
    /// taken: a status older than its refresh period tells of a stalled
    /// event loop.
    #[must_use]
    pub fn true_time_of(&self, status: &Value) -> Option<f64> {
        let local = status["local_time_ns"].as_u64()? as f64;
        let offset = self.clock_offset_ms as f64 * 1e6;
        let skew_ppb = (self.clock_skew_ppm * 1000.0).round();
        Some((local - offset) * 1e9 / (1e9 + skew_ppb))
    }
}

/// True time as the virtual DACs record it: `CLOCK_MONOTONIC_RAW`, ns.
#[must_use]
pub fn monotonic_raw_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_RAW)
        .map(|ts| {
            u64::try_from(ts.tv_sec()).unwrap_or(0) * 1_000_000_000
                + u64::try_from(ts.tv_nsec()).unwrap_or(0)
        })
        .unwrap_or(0)
}

/// CPU time the hypervisor took from this (virtual) machine that counts
/// as the cause of an xrun seen during it: a DAC buffer's worth (21 ms at
/// 4 × 256 frames). A real-time thread cannot run while the virtual CPU
/// under it does not; on bare metal steal stays 0 and nothing is excused.
pub const STEAL_EXCUSE: std::time::Duration = std::time::Duration::from_millis(20);

/// CPU time the hypervisor has taken from this machine since boot, all
/// CPUs together (`steal` in /proc/stat). `None` where it cannot be read.
#[must_use]
pub fn host_steal() -> Option<std::time::Duration> {
    steal_of(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The steal column of /proc/stat's `cpu` line, in USER_HZ ticks (100 a
/// second on every Linux ABI).
fn steal_of(stat: &str) -> Option<std::time::Duration> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: u64 = line.split_whitespace().nth(7)?.parse().ok()?;
    Some(std::time::Duration::from_millis(ticks.saturating_mul(10)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn steal_is_the_eighth_column_of_the_cpu_line() {
        let stat = "cpu  1043 12 733 91234 55 0 21 347 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(
            super::steal_of(stat),
            Some(std::time::Duration::from_millis(3_470))
        );
        assert_eq!(super::steal_of("cpu0 1 2 3\n"), None);
        assert_eq!(super::steal_of("cpu  1 2 3\n"), None);
        assert!(super::host_steal().is_some(), "Linux has /proc/stat");
    }

    use super::*;

    #[test]
    fn a_right_estimate_reads_as_the_reference_offset() {
        let rig = Rig {
            dac_ppm: 50.0,
            clock_offset_ms: 3_000,
            clock_skew_ppm: 100.0,
        };
        // True time 10 s; the local clock reads it skewed and offset; the
        // mesh clock (the reference's, 2 ms ahead of true time) read right.
        let truth = 10e9;
        let local = truth * (1.0 + 100e-6) + 3e9;
        let status = serde_json::json!({
            "local_time_ns": local as u64,
            "mesh_time_ns": (truth + 2e6) as u64,
        });
        let err = rig.mesh_minus_true_ns(&status).expect("both times present");
        assert!((err - 2e6).abs() < 2.0, "{err}");
        let taken = rig.true_time_of(&status).expect("local time present");
        assert!((taken - truth).abs() < 2.0, "{taken}");
        assert_eq!(rig.mesh_minus_true_ns(&serde_json::json!({})), None);
        let args = rig.args(Path::new("rec.txt"));
        assert_eq!(args[1], "virtual:50,0,record=rec.txt");
        assert_eq!(args[3], "3000");
    }
}
