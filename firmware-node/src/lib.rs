//! `autoharmonize-node`, the daemon every speaker runs: it wires the sans-IO
//! `autoharmonize-protocol` core to sockets, discovery, audio and GPIO.
//!
//! Modules so far:
//! - [`cli`]: the command line.
//! - [`config`]: the configuration file and flags, validated.
//! - [`member_id`]: the speaker's persistent identity.
//! - [`logging`]: log output.
//!
//! The binary (`src/main.rs`) only strings these together; logic lives here
//! so tests can reach it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod config;
pub mod logging;
pub mod member_id;
