//! The Raspberry Pi's GPIO header through `rppal`: the only code that
//! touches real pins.
//!
//! Why it is this thin: nothing here can run in CI (no Pi), so it does
//! nothing but translate. Each button pin is an input with the internal
//! pull-up (active-low wiring, the default) or pull-down, and an interrupt
//! on both edges whose callback, on rppal's interrupt thread, stamps the
//! edge and hands it to the node's runtime through a bounded channel. The
//! LED pin is an output. Debouncing is left to [`super::debounce`] (rppal's
//! own debounce would hide the bounces the tests model).
//!
//! Invariant: the interrupt callback never blocks (a full channel drops the
//! edge: the runtime is then far behind and a lost bounce is harmless), and
//! every pin is released (reset to its previous mode) when the board drops.

use rppal::gpio::{Gpio, InputPin, Level, OutputPin, Trigger};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Board, Button, Edge};
use crate::config::GpioConfig;

/// Raw edges buffered between rppal's interrupt thread and the runtime.
const EDGE_QUEUE: usize = 64;

/// The configured pins of a Raspberry Pi.
pub struct PiBoard {
    /// Held so their interrupts stay armed; released on drop.
    _buttons: Vec<InputPin>,
    led: Option<OutputPin>,
    edges: mpsc::Receiver<Edge>,
}

impl PiBoard {
    /// Claims the configured pins.
    ///
    /// # Errors
    /// Off a Raspberry Pi (the model is unknown), without permission to the
    /// GPIO device (the user is not in the `gpio` group), or when a pin is
    /// taken. Retrying does not help until the cause is fixed.
    pub fn open(config: &GpioConfig) -> Result<PiBoard, rppal::gpio::Error> {
        let gpio = Gpio::new()?;
        let (tx, edges) = mpsc::channel(EDGE_QUEUE);
        let mut buttons = Vec::with_capacity(3);
        for (button, pin) in [
            (Button::PlayPause, config.play_pause),
            (Button::VolumeUp, config.volume_up),
            (Button::VolumeDown, config.volume_down),
        ] {
            let Some(pin) = pin else { continue };
            let pin = gpio.get(pin)?;
            let mut input = if config.active_low {
                pin.into_input_pullup()
            } else {
                pin.into_input_pulldown()
            };
            let active_low = config.active_low;
            let tx = tx.clone();
            input.set_async_interrupt(Trigger::Both, None, move |event| {
                let high = event.trigger == Trigger::RisingEdge;
                let _ = tx.try_send(Edge {
                    button,
                    pressed: high != active_low,
                    at: Instant::now(),
                });
            })?;
            buttons.push(input);
        }
        let led = match config.led {
            Some(pin) => Some(gpio.get(pin)?.into_output_low()),
            None => None,
        };
        Ok(PiBoard {
            _buttons: buttons,
            led,
            edges,
        })
    }
}

impl Board for PiBoard {
    async fn next_edge(&mut self) -> Option<Edge> {
        self.edges.recv().await
    }

    fn set_led(&mut self, lit: bool) {
        if let Some(led) = &mut self.led {
            led.write(if lit { Level::High } else { Level::Low });
        }
    }
}
