//! The real binary under a notify socket of the test's own, as systemd
//! would run it (`Type=notify`, `WatchdogSec=`): it sends READY=1 once the
//! mesh is up, then WATCHDOG=1 at half the interval from `WATCHDOG_USEC`;
//! when its mesh loop is wedged (hidden `--test-stall-on-sigusr1`, then
//! SIGUSR1) the pings stop while the process and its status endpoint live
//! on, which is what makes systemd restart it. On SIGTERM it says
//! STOPPING=1 and exits 0.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};

mod node_support;

use node_support::{Node, free_port};

/// The watchdog interval the test asks for: pings are due every 200 ms.
const WATCHDOG_USEC: u64 = 400_000;

fn start(dir: &Path, socket: &Path, status_port: u16, extra: &[&str]) -> Node {
    let env = [
        ("NOTIFY_SOCKET", socket.display().to_string()),
        ("WATCHDOG_USEC", WATCHDOG_USEC.to_string()),
    ];
    Node::start(dir, status_port, extra, &env)
}

/// Receives notifications for up to `within`, stopping early after one
/// that holds the line `until`; returns whether one did, and everything
/// received.
fn receive_until(
    socket: &UnixDatagram,
    within: Duration,
    until: Option<&str>,
) -> (bool, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        socket
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        let Ok(n) = socket.recv(&mut buf) else { break };
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        let hit = until.is_some_and(|want| message.lines().any(|l| l == want));
        seen.push(message);
        if hit {
            return (true, seen);
        }
    }
    (false, seen)
}

/// Every notification received within `within`.
fn receive(socket: &UnixDatagram, within: Duration) -> Vec<String> {
    receive_until(socket, within, None).1
}

/// Receives until a notification holds the line `want`.
fn wait_for(socket: &UnixDatagram, want: &str, within: Duration) -> (bool, Vec<String>) {
    receive_until(socket, within, Some(want))
}

fn pings(messages: &[String]) -> usize {
    messages
        .iter()
        .filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
        .count()
}

/// `GET /status`: the HTTP status code, or 0 when nothing answers.
fn status_code(port: u16) -> u16 {
    let Ok(mut s) =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(2))
    else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    let request = "GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if s.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn ready_then_watchdog_pings_that_stop_when_the_loop_stalls() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    let port = free_port();
    let mut node = start(dir.path(), &socket_path, port, &["--test-stall-on-sigusr1"]);

    // READY=1 first, once the mesh is up.
    let (ready, first) = wait_for(&socket, "READY=1", Duration::from_secs(10));
    assert!(ready, "no READY=1 in {first:?}:\n{}", node.log());
    assert!(
        node.wait_log(
            "supervised by systemd: readiness and watchdog",
            Duration::from_secs(2)
        ),
        "logs that systemd supervises it:\n{}",
        node.log()
    );
    assert!(
        node.wait_log("mesh running", Duration::from_secs(2)),
        "{}",
        node.log()
    );

    // Pings keep coming: due every 200 ms, so at least 4 in 2 s even on a
    // loaded machine (10 when on time).
    let live = receive(&socket, Duration::from_secs(2));
    let n = pings(&live);
    assert!(n >= 4, "only {n} watchdog pings in 2 s: {live:?}");
    assert!(
        n <= 12,
        "pinged more often than half the interval: {n} in 2 s"
    );
    assert_eq!(status_code(port), 200, "status endpoint answers");

    // Wedge the mesh loop: the pings stop, the process does not.
    kill(node.pid(), Signal::SIGUSR1).expect("SIGUSR1");
    assert!(
        node.wait_log("test stall", Duration::from_secs(5)),
        "the loop reached its stall:\n{}",
        node.log()
    );
    let _in_flight = receive(&socket, Duration::from_millis(100));
    let stalled = receive(&socket, Duration::from_millis(1500));
    assert_eq!(
        pings(&stalled),
        0,
        "pings after the loop stalled: {stalled:?}"
    );
    assert!(
        node.child.try_wait().expect("wait").is_none(),
        "the process is alive, only its loop is stuck"
    );
    assert_eq!(
        status_code(port),
        200,
        "the rest of the node still runs, so only the loop's own pings kept systemd informed"
    );
}

#[test]
fn sigterm_says_stopping_and_exits_0() {
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    let mut node = start(dir.path(), &socket_path, free_port(), &[]);
    let (ready, first) = wait_for(&socket, "READY=1", Duration::from_secs(10));
    assert!(ready, "no READY=1 in {first:?}:\n{}", node.log());
    kill(node.pid(), Signal::SIGTERM).expect("SIGTERM");
    let (stopping, after) = wait_for(&socket, "STOPPING=1", Duration::from_secs(5));
    assert!(stopping, "no STOPPING=1 in {after:?}:\n{}", node.log());
    let code = node.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{}", node.log());
}
