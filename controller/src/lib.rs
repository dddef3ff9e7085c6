//! `autoharmonize`, the laptop controller: a member of the speakers' mesh
//! that owns no speaker. It votes and observes, and shows and steers the
//! room through a web mixer and command-line verbs. Speakers never depend
//! on it.
//!
//! Modules:
//! - [`cli`]: the command line and its exit codes.
//! - [`link`]: the controller's mesh member (the node's mesh loop, with the
//!   controller role) and "act, then wait until applied".
//! - [`action`]: what a person asks for, checked before a vote is cast.
//! - [`position`]: `m:ss` to frames and back.
//! - [`fair`]: per-client queues served round-robin.
//! - [`ballot`]: our votes on their way into the member: each client's own
//!   queue, fed to the member in fair turns, and what they make pending.
//! - [`pending`]: which channels wait for one of our votes.
//! - [`mixer`]: the state the mixer and the verbs show.
//! - [`report`]: the verbs' text output.
//! - [`output`]: writing to stdout and stderr without panicking when the
//!   reader has gone (`status --json | head`).
//! - [`access`]: token, host and origin checks for the web mixer.
//! - [`web`]: the web mixer (page, WebSocket, JSON API).
//! - [`demo`]: `autoharmonize demo`, a room of real speaker processes on
//!   this computer playing a synthesized song.
//!
//! The binary (`src/main.rs`) strings these together.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod action;
pub mod ballot;
pub mod cli;
pub mod demo;
pub mod fair;
pub mod link;
pub mod mixer;
pub mod output;
pub mod pending;
pub mod position;
pub mod report;
pub mod web;
