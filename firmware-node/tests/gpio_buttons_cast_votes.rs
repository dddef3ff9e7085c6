//! The GPIO task (`gpio::run`) on a scripted board, with tokio's paused
//! clock: bouncing contacts cast one vote per press, long presses of
//! play/pause cast once while volume repeats, presses faster than the
//! heartbeat build on each other, and the LED shows alone / pending /
//! playing / refused with the documented rhythms.
//!
//! The mesh side is a small scripted room that answers casts on the same
//! command channel the real mesh loop reads and publishes `NodeStatus`
//! snapshots like it: each accepted vote is pending for 250 ms (between two
//! and three heartbeats), then applied.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use autoharmonize_node::gpio::fake::{FakeBoard, LedLog};
use autoharmonize_node::gpio::led::{FAST_HALF, SLOW_HALF};
use autoharmonize_node::gpio::{self, Button, Settings};
use autoharmonize_node::status::{ChannelStatus, Command, NodeStatus, ViewMember};
use autoharmonize_protocol::event::Event;
use autoharmonize_protocol::ids::Channel;
use autoharmonize_protocol::member::CastError;
use autoharmonize_protocol::transport::Gain;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long the scripted room usually takes to decide a vote.
const DECIDE_AFTER: Duration = Duration::from_millis(250);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A room of `speakers` speakers with one channel.
fn status(speakers: usize, playing: bool, gain: u8) -> NodeStatus {
    NodeStatus {
        room: Some("1/a".into()),
        writable: true,
        view: (0..speakers)
            .map(|i| ViewMember {
                id: format!("{i}"),
                role: "speaker".into(),
                ..ViewMember::default()
            })
            .collect(),
        channels: vec![ChannelStatus {
            playing,
            gain,
            ..ChannelStatus::default()
        }],
        ..NodeStatus::default()
    }
}

/// What the scripted room saw: `(ms after t0, event)`.
type Casts = Arc<Mutex<Vec<(u64, Event)>>>;

/// How the scripted room answers.
#[derive(Clone, Copy)]
enum Room {
    /// Accepts every vote and applies it this long after the cast.
    DecidesAfter(Duration),
    /// Refuses every vote (read-only).
    Refuses,
}

/// Runs the GPIO task against a scripted room starting from `initial`.
fn start(
    board: FakeBoard,
    t0: Instant,
    initial: NodeStatus,
    room: Room,
) -> (Casts, tokio::task::JoinHandle<()>) {
    let (status_tx, status_rx) = watch::channel(Arc::new(initial));
    let status_tx = Arc::new(status_tx);
    let (commands_tx, mut commands_rx) = mpsc::channel::<Command>(16);
    let casts: Casts = Arc::default();
    let seen = Arc::clone(&casts);
    tokio::spawn(async move {
        let mut seq = 0;
        while let Some(Command::Cast(event, reply)) = commands_rx.recv().await {
            let at = u64::try_from((Instant::now() - t0).as_millis()).expect("small");
            seen.lock().expect("lock").push((at, event));
            let Room::DecidesAfter(after) = room else {
                let _ = reply.send(Err(CastError::ReadOnly));
                continue;
            };
            seq += 1;
            let _ = reply.send(Ok(seq));
            status_tx.send_modify(|s| Arc::make_mut(s).pending_votes += 1);
            let status_tx = Arc::clone(&status_tx);
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                status_tx.send_modify(|s| {
                    let s = Arc::make_mut(s);
                    s.pending_votes -= 1;
                    let c = &mut s.channels[0];
                    match event {
                        Event::Play { .. } => c.playing = true,
                        Event::Pause { .. } => c.playing = false,
                        Event::Volume { gain, .. } => c.gain = gain.0,
                        _ => {}
                    }
                });
            });
        }
    });
    let settings = Settings {
        debounce: ms(20),
        volume_step: 5,
    };
    let task = tokio::spawn(gpio::run(board, settings, status_rx, commands_tx));
    (casts, task)
}

fn volume(gain: u8) -> Event {
    Event::Volume {
        channel: Channel::All,
        gain: Gain(gain),
    }
}

const PLAY: Event = Event::Play {
    channel: Channel::All,
};
const PAUSE: Event = Event::Pause {
    channel: Channel::All,
};

fn casts_of(casts: &Casts) -> Vec<(u64, Event)> {
    casts.lock().expect("lock").clone()
}

#[tokio::test(start_paused = true)]
async fn a_bouncing_press_casts_one_vote() {
    let t0 = Instant::now();
    let (board, _led) = FakeBoard::new(t0);
    // Five bounces on closing (last edge at 10 ms) and on opening.
    let board = board.press(100, Button::PlayPause, 200, 5);
    let (casts, _task) = start(
        board,
        t0,
        status(3, true, 50),
        Room::DecidesAfter(DECIDE_AFTER),
    );
    tokio::time::sleep(ms(2000)).await;
    assert_eq!(casts_of(&casts), vec![(130, PAUSE)]);
}

#[tokio::test(start_paused = true)]
async fn long_presses_toggle_once_but_volume_repeats() {
    let t0 = Instant::now();
    let (board, _led) = FakeBoard::new(t0);
    let board = board
        .press(0, Button::PlayPause, 3000, 2)
        .press(4000, Button::VolumeUp, 1000, 2);
    let (casts, _task) = start(
        board,
        t0,
        status(3, false, 50),
        Room::DecidesAfter(DECIDE_AFTER),
    );
    tokio::time::sleep(ms(6000)).await;
    // Play once for a 3 s hold; volume: the press at 4024 (after the
    // bounces), repeats 500 ms later and then every 200 ms until the
    // release at 5000 settles.
    assert_eq!(
        casts_of(&casts),
        vec![
            (24, PLAY),
            (4024, volume(55)),
            (4524, volume(60)),
            (4724, volume(65)),
            (4924, volume(70)),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn presses_faster_than_the_heartbeat_build_on_each_other() {
    let t0 = Instant::now();
    let (board, _led) = FakeBoard::new(t0);
    // Three volume-up presses within 150 ms, then two play/pause presses
    // within 100 ms: all before the room decides the first.
    let board = board
        .press(0, Button::VolumeUp, 30, 1)
        .press(60, Button::VolumeUp, 30, 1)
        .press(120, Button::VolumeUp, 30, 1)
        .press(200, Button::PlayPause, 30, 1)
        .press(260, Button::PlayPause, 30, 1);
    let (casts, _task) = start(
        board,
        t0,
        status(3, true, 50),
        Room::DecidesAfter(DECIDE_AFTER),
    );
    tokio::time::sleep(ms(1500)).await;
    assert_eq!(
        casts_of(&casts),
        vec![
            (22, volume(55)),
            (82, volume(60)),
            (142, volume(65)),
            (222, PAUSE),
            (282, PLAY),
        ]
    );
    // Once everything is decided, a press starts from the agreed state.
    let (board, _led) = FakeBoard::new(t0);
    let board = board.press(2000, Button::VolumeDown, 30, 0);
    let (casts, _task) = start(
        board,
        t0,
        status(3, true, 65),
        Room::DecidesAfter(DECIDE_AFTER),
    );
    tokio::time::sleep(ms(1500)).await;
    assert_eq!(casts_of(&casts), vec![(2020, volume(60))]);
}

/// The LED level at `at` from its log.
fn lit_at(led: &LedLog, at: Instant) -> bool {
    led.switches()
        .iter()
        .take_while(|(t, _)| *t <= at)
        .last()
        .is_some_and(|(_, lit)| *lit)
}

/// Switch times (ms after `from`) within `from..to`.
fn switch_times(led: &LedLog, from: Instant, to: Instant) -> Vec<u64> {
    led.switches()
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(t, _)| u64::try_from((*t - from).as_millis()).expect("small"))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_led_shows_alone_pending_and_playing() {
    let t0 = Instant::now();
    let (board, led) = FakeBoard::new(t0);
    // Paused in a room of three; play pressed at 1000 ms.
    let board = board.press(1000, Button::PlayPause, 50, 0);
    let (casts, _task) = start(
        board,
        t0,
        status(3, false, 50),
        Room::DecidesAfter(DECIDE_AFTER),
    );
    tokio::time::sleep(ms(900)).await;
    assert!(!led.lit(), "paused: dark");
    assert_eq!(switch_times(&led, t0, t0 + ms(900)), vec![0]);
    // The vote is cast at 1020 and pending until 1270: slow blink, starting
    // lit; then playing: steady.
    tokio::time::sleep(ms(3000)).await;
    assert_eq!(casts_of(&casts), vec![(1020, PLAY)]);
    assert!(lit_at(&led, t0 + ms(1021)), "lit at once on the press");
    assert!(
        lit_at(&led, t0 + ms(1269)),
        "pending: lit for the first half"
    );
    assert!(lit_at(&led, t0 + ms(1300)), "steady once playing");
    assert_eq!(switch_times(&led, t0 + ms(1000), t0 + ms(4000)), vec![20]);
    assert!(led.lit());

    // Alone (no room yet): fast blink, 125 ms on, 125 ms off.
    let t1 = Instant::now();
    let (board, led) = FakeBoard::new(t1);
    let (_casts, _task) = start(
        board,
        t1,
        NodeStatus::default(),
        Room::DecidesAfter(DECIDE_AFTER),
    );
    tokio::time::sleep(ms(1000)).await;
    let half = u64::try_from(FAST_HALF.as_millis()).expect("small");
    let want: Vec<u64> = (0..8).map(|i| i * half).collect();
    assert_eq!(switch_times(&led, t1, t1 + ms(1000)), want);
    assert!(lit_at(&led, t1 + ms(10)));
    assert!(!lit_at(&led, t1 + FAST_HALF + ms(10)));
}

#[tokio::test(start_paused = true)]
async fn a_slow_blink_keeps_its_rhythm_while_votes_stay_pending() {
    let t0 = Instant::now();
    let (board, led) = FakeBoard::new(t0);
    // A slow room (3 s per decision): the first vote, cast at 20, is
    // pending until 3020, the second, cast at 1120, until 4120.
    let board = board
        .press(0, Button::VolumeUp, 50, 0)
        .press(1100, Button::VolumeUp, 50, 0);
    let (casts, _task) = start(board, t0, status(3, true, 50), Room::DecidesAfter(ms(3000)));
    tokio::time::sleep(ms(5000)).await;
    assert_eq!(casts_of(&casts), vec![(20, volume(55)), (1120, volume(60))]);
    let half = u64::try_from(SLOW_HALF.as_millis()).expect("small");
    // Steady (playing) from 0; slow blink from the first cast at 20 (lit
    // already), not restarted by the second; steady again at 4120.
    let want: Vec<u64> = std::iter::once(0)
        .chain((1..=8).map(|i| 20 + i * half))
        .collect();
    assert_eq!(switch_times(&led, t0, t0 + ms(5000)), want);
    assert!(led.lit(), "steady again");
}

#[tokio::test(start_paused = true)]
async fn a_refused_press_blinks_fast_for_a_while() {
    let t0 = Instant::now();
    let (board, led) = FakeBoard::new(t0);
    let board = board.press(500, Button::PlayPause, 50, 0);
    let (casts, _task) = start(board, t0, status(3, true, 50), Room::Refuses);
    tokio::time::sleep(ms(5000)).await;
    assert_eq!(casts_of(&casts), vec![(520, PAUSE)]);
    // Steady before, fast blink for 3 s from the refusal, steady after.
    let switches = switch_times(&led, t0, t0 + ms(5000));
    assert_eq!(switches.first(), Some(&0));
    let blinking: Vec<u64> = switches.iter().copied().filter(|t| *t > 0).collect();
    assert_eq!(blinking.first(), Some(&(520 + 125)), "{switches:?}");
    assert!(
        blinking.iter().all(|t| *t <= 3520),
        "fast blink ends with the refusal: {switches:?}"
    );
    assert_eq!(blinking.len(), 24, "3 s of 125 ms halves: {switches:?}");
    assert!(led.lit(), "steady again");
}
