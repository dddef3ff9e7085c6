//! `autoharmonize-node`, the daemon every speaker runs: it wires the sans-IO
//! `autoharmonize-protocol` core to sockets, discovery, audio and GPIO.
//!
//! Modules so far:
//! - [`cli`]: the command line.
//! - [`config`]: the configuration file and flags, validated.
//! - [`identity`]: the speaker's persistent id and boot epoch.
//! - [`atomic_file`]: replacing a file so a power cut leaves old or new.
//! - [`room_state`]: the room's last agreed state, kept on disk.
//! - [`logging`]: log output.
//! - [`clock`]: the local clock every protocol input is stamped with.
//! - [`catalogue`]: the room's tracks and who holds which stem, for the
//!   status page, the controller and stem fetching.
//! - [`library`]: the tracks this speaker holds, hashed and cached.
//! - [`mesh`]: the UDP mesh loop driving the protocol core.
//! - [`recv_stamp`]: kernel arrival timestamps for received datagrams.
//! - [`send_queue`]: the bytes a socket has waiting in the kernel, which
//!   decide whether sends to silent peers are paced.
//! - [`status`]: the loopback status and control endpoint.
//! - [`discovery`]: finding the other speakers over mDNS.
//! - [`gpio`]: buttons that cast votes and the status LED.
//! - [`notify`]: systemd readiness and watchdog notifications.
//! - [`stream`]: peer-to-peer stem streaming (chunk exchange, cache, fetcher).
//!
//! The binary (`src/main.rs`) only strings these together; logic lives here
//! so tests can reach it.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod atomic_file;
pub mod audio;
pub mod catalogue;
pub mod cli;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod gpio;
pub mod identity;
pub mod library;
pub mod logging;
pub mod mesh;
pub mod notify;
pub mod recv_stamp;
pub mod room_state;
pub mod send_queue;
pub mod status;
pub mod stream;
