//! The speaker's own controls: buttons that cast votes and a status LED.
//!
//! Why it exists: anyone in the room can press play/pause or volume on any
//! speaker, and every speaker follows at the same instant, because a press
//! is only a vote, cast through the same command channel as the status
//! endpoint's `POST /cast` ([`crate::status::Command::Cast`]); the room's
//! decision comes back through the mesh like any other.
//!
//! Layout: the logic is pure and tested with paused time
//! ([`debounce`]: raw edges to presses; [`controls`]: presses to votes;
//! [`led`]: state to blink pattern). Hardware is one small trait,
//! [`Board`], with the Raspberry Pi implementation in [`pi`] (rppal) and a
//! scripted one in [`fake`] for tests. [`run`] ties them together in one
//! task on the node's runtime.
//!
//! Invariant: nothing here blocks the runtime or panics on what the
//! hardware reports, and GPIO being unavailable never stops the node: off a
//! Raspberry Pi it says so once ([`start`]) and the speaker runs on.

pub mod controls;
pub mod debounce;
pub mod fake;
pub mod fifo;
pub mod led;
pub mod pi;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use controls::Button;
use controls::{Agreed, Controls};
use debounce::Debouncer;
use led::{Blinker, LedState, Pattern};

use crate::config::GpioConfig;
use crate::status::{Command, NodeStatus};

/// How long the LED blinks fast after the room refused a press.
pub const REFUSED_SHOWN: Duration = Duration::from_secs(3);

/// How long a press waits for the mesh loop to take its vote before it is
/// given up (the loop answers within one iteration unless it is wedged).
pub const CAST_TIMEOUT: Duration = Duration::from_secs(1);

/// A raw level change on a button's pin, bounces included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// Which button.
    pub button: Button,
    /// The new level means pressed (active-low wiring already accounted
    /// for).
    pub pressed: bool,
    /// When the hardware saw it.
    pub at: Instant,
}

/// The hardware seam: where button edges come from and where the LED level
/// goes. Implemented by [`pi::PiBoard`] (rppal) and [`fake::FakeBoard`].
pub trait Board: Send + 'static {
    /// The next raw edge of any button; `None` once no edge can come any
    /// more (the buttons then stay silent and the LED keeps working). Must
    /// be cancel-safe: [`run`] drops it when another input wins.
    fn next_edge(&mut self) -> impl Future<Output = Option<Edge>> + Send;

    /// Switches the status LED; does nothing without one.
    fn set_led(&mut self, lit: bool);
}

/// What [`run`] needs besides the board.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Debounce window.
    pub debounce: Duration,
    /// Volume change per press, in percent points.
    pub volume_step: u8,
}

impl Settings {
    /// From the validated `[gpio]` table.
    #[must_use]
    pub fn of(config: &GpioConfig) -> Settings {
        Settings {
            debounce: Duration::from_millis(config.debounce_ms),
            volume_step: config.volume_step,
        }
    }
}

/// Opens the Raspberry Pi's GPIO for the configured pins and spawns [`run`]
/// on the current runtime. Off a Pi (or without permission) it logs one
/// warning and returns `None`: the speaker runs on without buttons.
pub fn start(
    config: &GpioConfig,
    status: watch::Receiver<Arc<NodeStatus>>,
    commands: mpsc::Sender<Command>,
) -> Option<tokio::task::JoinHandle<()>> {
    if !config.any_pin() {
        info!("GPIO: no buttons or LED configured ([gpio] in the config file)");
        return None;
    }
    match pi::PiBoard::open(config) {
        Ok(board) => {
            info!(
                play_pause = ?config.play_pause,
                volume_up = ?config.volume_up,
                volume_down = ?config.volume_down,
                led = ?config.led,
                "GPIO buttons and LED active"
            );
            Some(spawn_run(board, config, status, commands))
        }
        Err(e) => {
            warn!("GPIO unavailable ({e}): buttons and status LED are off; the speaker runs on");
            None
        }
    }
}

/// Test only (`--test-buttons-fifo`): spawns [`run`] with buttons pressed
/// through the named pipe at `path` ([`fifo::FifoBoard`]) instead of GPIO
/// pins. Returns `None`, with a warning, if the pipe cannot be opened.
pub fn start_test_fifo(
    path: &std::path::Path,
    config: &GpioConfig,
    status: watch::Receiver<Arc<NodeStatus>>,
    commands: mpsc::Sender<Command>,
) -> Option<tokio::task::JoinHandle<()>> {
    match fifo::FifoBoard::open(path) {
        Ok(board) => {
            warn!(path = %path.display(), "TEST ONLY: buttons are pressed through a named pipe");
            Some(spawn_run(board, config, status, commands))
        }
        Err(e) => {
            warn!(path = %path.display(), "test button pipe unavailable ({e}): no buttons");
            None
        }
    }
}

/// Spawns [`run`] for an opened `board` with the `[gpio]` settings on the
/// current runtime: how both [`start`] (pins) and [`start_test_fifo`] (the
/// test pipe) start their board, so the two cannot drift apart.
fn spawn_run<B: Board>(
    board: B,
    config: &GpioConfig,
    status: watch::Receiver<Arc<NodeStatus>>,
    commands: mpsc::Sender<Command>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(board, Settings::of(config), status, commands))
}

/// Reads the buttons, casts their votes and drives the LED until the mesh
/// loop goes away (its command or status channel closes).
pub async fn run<B: Board>(
    mut board: B,
    settings: Settings,
    mut status: watch::Receiver<Arc<NodeStatus>>,
    commands: mpsc::Sender<Command>,
) {
    let mut buttons = Button::ALL.map(|b| Debouncer::new(settings.debounce, b.repeats()));
    let mut controls = Controls::new(settings.volume_step);
    let mut blinker = Blinker::new();
    let mut refused_until: Option<Instant> = None;
    let mut edges_open = true;
    let mut presses: Vec<Button> = Vec::with_capacity(8);

    // The LED shows the state from the start (fast blink until a room forms).
    show(&mut board, &mut blinker, &status, &controls, false);
    loop {
        let deadline = buttons
            .iter()
            .filter_map(Debouncer::poll_timeout)
            .chain(blinker.poll_timeout())
            .chain(refused_until)
            .min();
        tokio::select! {
            edge = board.next_edge(), if edges_open => match edge {
                Some(e) => buttons[e.button.index()].on_edge(e.at, e.pressed),
                None => {
                    debug!("GPIO: button edges ended");
                    edges_open = false;
                }
            },
            changed = status.changed() => {
                if changed.is_err() {
                    break;
                }
                controls.on_status(status.borrow_and_update().pending_votes);
            }
            () = sleep_until(deadline) => {}
        }
        let now = Instant::now();
        if refused_until.is_some_and(|t| t <= now) {
            refused_until = None;
        }
        for button in Button::ALL {
            while buttons[button.index()].handle_timeout(now).is_some() {
                presses.push(button);
            }
        }
        for button in presses.drain(..) {
            let agreed = Agreed::of(&status.borrow());
            let Some(event) = controls.event_for(button, now, agreed) else {
                debug!(?button, "press changes nothing");
                continue;
            };
            match cast(&commands, event).await {
                Cast::Accepted(seq) => {
                    info!(?button, ?event, seq, "button vote cast");
                    controls.cast(event, now);
                    // Snapshots from before the cast would clear the
                    // intent too early; only later ones count.
                    status.mark_unchanged();
                }
                Cast::Refused(reason) => {
                    info!(?button, ?event, "button vote refused: {reason}");
                    refused_until = Some(Instant::now() + REFUSED_SHOWN);
                }
                Cast::Gone => return,
            }
        }
        if let Some(lit) = blinker.handle_timeout(now) {
            board.set_led(lit);
        }
        show(
            &mut board,
            &mut blinker,
            &status,
            &controls,
            refused_until.is_some(),
        );
    }
    debug!("GPIO: the mesh loop stopped");
}

fn show<B: Board>(
    board: &mut B,
    blinker: &mut Blinker,
    status: &watch::Receiver<Arc<NodeStatus>>,
    controls: &Controls,
    refused: bool,
) {
    let state = LedState::of(&status.borrow(), controls.in_flight(), refused);
    if let Some(lit) = blinker.show(Pattern::of(state), Instant::now()) {
        board.set_led(lit);
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// How a cast ended.
enum Cast {
    Accepted(u32),
    Refused(String),
    /// The mesh loop is gone: the node is stopping.
    Gone,
}

async fn cast(
    commands: &mpsc::Sender<Command>,
    event: autoharmonize_protocol::event::Event,
) -> Cast {
    let (tx, rx) = oneshot::channel();
    let sent = tokio::time::timeout(CAST_TIMEOUT, async {
        commands.send(Command::Cast(event, tx)).await.ok()?;
        rx.await.ok()
    })
    .await;
    match sent {
        Ok(Some(Ok(seq))) => Cast::Accepted(seq),
        Ok(Some(Err(e))) => Cast::Refused(e.to_string()),
        Ok(None) => Cast::Gone,
        Err(_) => Cast::Refused("the mesh loop did not answer in time".into()),
    }
}
