//! Off a Raspberry Pi, a node configured with buttons and an LED says once
//! that GPIO is unavailable and runs on: its mesh starts, it answers on its
//! status endpoint, and it stops cleanly on SIGTERM.

mod node_support;

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use node_support::{Node, free_port};

#[test]
fn configured_gpio_off_a_pi_warns_once_and_the_node_runs_on() {
    let model = std::fs::read_to_string("/sys/firmware/devicetree/base/model").unwrap_or_default();
    if model.contains("Raspberry Pi") {
        // On a Pi the pins open for real; this test is about other machines.
        eprintln!("!!! SKIPPED: this machine is a Raspberry Pi ({model})");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = [
        "--gpio-play-pause",
        "17",
        "--gpio-volume-up",
        "22",
        "--gpio-volume-down",
        "23",
        "--gpio-led",
        "27",
    ];
    let mut node = Node::start(dir.path(), free_port(), &flags, &[]);
    assert!(
        node.wait_log("mesh running", Duration::from_secs(10)),
        "{}",
        node.log()
    );
    // Give the node a few heartbeats to repeat itself if it were going to.
    std::thread::sleep(Duration::from_millis(500));
    kill(node.pid(), Signal::SIGTERM).expect("SIGTERM");
    assert_eq!(
        node.wait_exit(Duration::from_secs(5)),
        Some(0),
        "{}",
        node.log()
    );
    let log = node.log();
    let notices: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("GPIO unavailable"))
        .collect();
    assert_eq!(notices.len(), 1, "exactly one GPIO notice:\n{log}");
    assert!(
        notices[0].contains("WARN") && notices[0].contains("the speaker runs on"),
        "{}",
        notices[0]
    );
    assert!(log.contains("leaving the room"), "ran and left:\n{log}");
}
