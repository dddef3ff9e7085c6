//! systemd supervision: readiness (`READY=1`) and the watchdog
//! (`WATCHDOG=1`), as `sd_notify(3)` specifies, through the `sd-notify`
//! crate (no libsystemd).
//!
//! Why it exists: the unit (`systemd/autoharmonize-node.service`) is
//! `Type=notify` with `WatchdogSec=`, so systemd starts the speakers that
//! depend on us only once we say READY, and restarts a node whose mesh loop
//! has stalled. The ping therefore comes from inside the mesh loop
//! ([`Watchdog::pet`], called once per iteration), never from a timer task of
//! its own: a separate task would keep pinging while the loop is wedged.
//!
//! Invariant: without `NOTIFY_SOCKET` (a node started by hand or by a test)
//! every call here is a cheap no-op, and a failed notification is logged,
//! never fatal: supervision must not be what stops a speaker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::{debug, info, warn};

/// What systemd asked of this process, read once at start.
#[derive(Clone, Debug)]
pub struct Supervisor {
    /// `NOTIFY_SOCKET` is set: systemd (or a test) listens for our state.
    socket: bool,
    /// The watchdog interval systemd enforces (`WATCHDOG_USEC`), if any
    /// applies to this process.
    watchdog: Option<Duration>,
}

impl Supervisor {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` and logs,
    /// once, whether systemd supervises this process.
    #[must_use]
    pub fn from_env() -> Supervisor {
        let socket = std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty());
        // `watchdog_enabled` already ignores a WATCHDOG_PID meant for
        // another process; an interval of zero is systemd's "off".
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        let supervisor = Supervisor { socket, watchdog };
        match (socket, supervisor.ping_every()) {
            (true, Some(every)) => info!(
                watchdog_ms = watchdog.map_or(0, |d| d.as_millis()),
                ping_every_ms = every.as_millis(),
                "supervised by systemd: readiness and watchdog notifications on"
            ),
            (true, None) => info!("supervised by systemd: readiness notification on, no watchdog"),
            (false, _) => info!("not supervised by systemd (no NOTIFY_SOCKET)"),
        }
        supervisor
    }

    /// How often the watchdog must be pinged: half the interval systemd
    /// enforces, as `sd_watchdog_enabled(3)` recommends, so one late
    /// iteration never costs a restart. `None` without a watchdog.
    #[must_use]
    pub fn ping_every(&self) -> Option<Duration> {
        ping_interval(self.socket, self.watchdog)
    }

    /// Tells systemd the node is up (`READY=1`).
    pub fn ready(&self) {
        self.send(
            &[NotifyState::Ready, NotifyState::Status("in the mesh")],
            "READY",
        );
    }

    /// Tells systemd the node is stopping (`STOPPING=1`), so a slow goodbye
    /// is not mistaken for a hang.
    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping], "STOPPING");
    }

    /// The watchdog the mesh loop pets; inert when systemd asked for none.
    #[must_use]
    pub fn watchdog(&self) -> Watchdog {
        Watchdog {
            every: self.ping_every(),
            last: None,
            warned: false,
            stall: None,
        }
    }

    fn send(&self, state: &[NotifyState<'_>], what: &str) {
        if !self.socket {
            return;
        }
        match sd_notify::notify(state) {
            Ok(()) => debug!("told systemd {what}"),
            Err(e) => warn!("cannot tell systemd {what}: {e}"),
        }
    }
}

/// Half the watchdog interval, when there is a socket to ping and a
/// watchdog to feed.
fn ping_interval(socket: bool, watchdog: Option<Duration>) -> Option<Duration> {
    watchdog.filter(|_| socket).map(|d| d / 2)
}

/// Pings systemd's watchdog from the loop that must stay alive.
#[derive(Debug)]
pub struct Watchdog {
    /// Ping period; `None` when no watchdog is enforced.
    every: Option<Duration>,
    /// When the last ping went out.
    last: Option<Instant>,
    /// A failed ping was logged at warn level (the next ones at debug).
    warned: bool,
    /// Test-only: set by SIGUSR1 to wedge the loop (see
    /// [`Watchdog::stall_on_sigusr1`]).
    stall: Option<Arc<AtomicBool>>,
}

impl Watchdog {
    /// A watchdog that never pings (no systemd).
    #[must_use]
    pub fn disabled() -> Watchdog {
        Watchdog {
            every: None,
            last: None,
            warned: false,
            stall: None,
        }
    }

    /// Test-only: after SIGUSR1, the next [`Watchdog::pet`] never returns,
    /// which wedges the mesh loop and nothing else (the status endpoint keeps
    /// answering). This is how `tests/notify_watchdog.rs` proves that the
    /// pings come from the loop itself. Must be called inside the runtime.
    ///
    /// # Errors
    /// If the signal handler cannot be installed.
    pub fn stall_on_sigusr1(&mut self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let flag = Arc::new(AtomicBool::new(false));
        let set = Arc::clone(&flag);
        tokio::spawn(async move {
            if usr1.recv().await.is_some() {
                set.store(true, Ordering::SeqCst);
            }
        });
        self.stall = Some(flag);
        Ok(())
    }

    /// Called once per iteration of the mesh loop: pings when half the
    /// watchdog interval has passed since the last ping.
    pub async fn pet(&mut self) {
        if self
            .stall
            .as_ref()
            .is_some_and(|s| s.load(Ordering::SeqCst))
        {
            warn!("test stall (SIGUSR1): the mesh loop stops here; the watchdog goes quiet");
            std::future::pending::<()>().await;
        }
        let Some(every) = self.every else { return };
        let now = Instant::now();
        if !due(self.last, every, now) {
            return;
        }
        self.last = Some(now);
        if let Err(e) = sd_notify::notify(&[NotifyState::Watchdog]) {
            if self.warned {
                debug!("watchdog ping failed: {e}");
            } else {
                self.warned = true;
                warn!("watchdog ping failed (systemd may restart this node): {e}");
            }
        }
    }
}

/// Whether a ping is due at `now`: never pinged, or `every` has passed.
fn due(last: Option<Instant>, every: Duration, now: Instant) -> bool {
    last.is_none_or(|last| now.saturating_duration_since(last) >= every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_at_half_the_interval_and_only_with_a_socket() {
        let five = Some(Duration::from_secs(5));
        assert_eq!(ping_interval(true, five), Some(Duration::from_millis(2500)));
        assert_eq!(ping_interval(false, five), None);
        assert_eq!(ping_interval(true, None), None);
    }

    #[test]
    fn a_ping_is_due_first_and_then_once_per_period() {
        let t0 = Instant::now();
        let every = Duration::from_millis(100);
        assert!(due(None, every, t0));
        assert!(!due(Some(t0), every, t0 + Duration::from_millis(99)));
        assert!(due(Some(t0), every, t0 + Duration::from_millis(100)));
        // A clock that seems to go backwards never panics or pings early.
        assert!(!due(Some(t0 + every), every, t0));
    }

    #[tokio::test]
    async fn a_disabled_watchdog_returns_at_once() {
        let mut w = Watchdog::disabled();
        w.pet().await;
        assert!(w.last.is_none());
    }
}
