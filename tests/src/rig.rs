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

#[cfg(test)]
mod tests {
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
