//! The network-namespace lab gives hosts that reach each other by unicast
//! and by link-local multicast (what mDNS needs), partitions a host when its
//! link goes down, touches nothing in the machine's own namespace, and
//! leaves no namespace behind.
//!
//! The multicast sender and receiver are this test binary itself, re-run
//! inside a host's namespace on the ignored `udp_probe` test, so the test
//! needs no program beyond `ip` and `ping`.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use autoharmonize_tests::netns::{self, Lab};

/// The mDNS group and port: the lab must carry exactly what discovery uses.
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);
const PORT: u16 = 5353;
const PROBE_ENV: &str = "NETNS_LAB_PROBE";
const PAYLOAD: &str = "autoharmonize-lab-probe";

#[test]
fn lab_connects_partitions_and_cleans_up() {
    if !netns::require_root_or_skip("lab_connects_partitions_and_cleans_up")
        || !netns::require_command_or_skip("lab_connects_partitions_and_cleans_up", "ping", "-V")
    {
        return;
    }
    let root_links_before = root_links();

    let mut lab = Lab::new("nslab", 3).expect("lab builds");
    let id = lab.id().to_owned();
    let names = netns::netns_list().expect("ip netns list");
    assert_eq!(
        names.iter().filter(|n| n.starts_with(&id)).count(),
        4,
        "a switch and three hosts: {names:?}"
    );
    assert_eq!(
        root_links(),
        root_links_before,
        "the lab must not add links to the machine's namespace"
    );

    // Unicast, both directions that matter.
    assert!(ping(&mut lab, 0, 2), "host 0 reaches host 2");
    assert!(ping(&mut lab, 2, 1), "host 2 reaches host 1");

    // Multicast from host 0 reaches host 2.
    let from = lab.addr(0).expect("host 0");
    let to = lab.addr(2).expect("host 2");
    let mut receiver = lab
        .spawn_with_stdio(
            2,
            probe(&format!("recv {to}")),
            Stdio::piped(),
            Stdio::inherit(),
        )
        .expect("receiver starts");
    let mut lines = BufReader::new(receiver.stdout.take().expect("piped stdout")).lines();
    wait_for_line(&mut lines, "probe: ready");
    let sent = lab
        .output(0, probe(&format!("send {from}")))
        .expect("sender runs");
    assert!(sent.status.success(), "sender: {sent:?}");
    let got = wait_for_line(&mut lines, "probe: received");
    assert_eq!(got, format!("probe: received {PAYLOAD} from {from}"));
    assert!(wait(&mut receiver).success());

    // Partition host 2, then heal it.
    lab.link_down(2).expect("link down");
    assert!(
        !ping(&mut lab, 0, 2),
        "host 2 is unreachable while unplugged"
    );
    assert!(ping(&mut lab, 0, 1), "the others still reach each other");
    lab.link_up(2).expect("link up");
    assert!(
        (0..5).any(|_| ping(&mut lab, 0, 2)),
        "host 2 is reachable again once plugged back"
    );

    // A process still running at drop is killed, and everything goes.
    let sleeper = {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        lab.spawn(1, cmd).expect("sleep starts")
    };
    let sleeper_pid = sleeper.id();
    drop(lab);
    let left: Vec<String> = netns::netns_list()
        .expect("ip netns list")
        .into_iter()
        .filter(|n| n.starts_with(&id))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(
        process_gone(sleeper_pid),
        "the sleeper {sleeper_pid} was killed"
    );
    drop(sleeper);
    assert_eq!(root_links(), root_links_before);
}

/// Helper run inside a namespace by the test above; does nothing otherwise.
/// `NETNS_LAB_PROBE="recv ADDR"` joins the mDNS group on ADDR's interface
/// and prints the first datagram; `"send ADDR"` sends one from ADDR.
#[test]
#[ignore = "helper: run inside a namespace by lab_connects_partitions_and_cleans_up"]
fn udp_probe() {
    let Ok(role) = std::env::var(PROBE_ENV) else {
        return;
    };
    let (verb, addr) = role.split_once(' ').expect("role is 'VERB ADDR'");
    let addr: Ipv4Addr = addr.parse().expect("an IPv4 address");
    match verb {
        "recv" => {
            let socket = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT))
                .expect("bind the mDNS port");
            socket
                .join_multicast_v4(&GROUP, &addr)
                .expect("join the mDNS group");
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            println!("probe: ready");
            let mut buf = [0u8; 512];
            let (n, from) = socket.recv_from(&mut buf).expect("a datagram within 5 s");
            let text = String::from_utf8_lossy(&buf[..n]);
            println!("probe: received {text} from {}", from.ip());
        }
        "send" => {
            let socket = UdpSocket::bind(SocketAddrV4::new(addr, 0)).expect("bind");
            // mDNS sends with TTL 255 (RFC 6762 §11).
            socket.set_multicast_ttl_v4(255).expect("ttl");
            socket
                .send_to(PAYLOAD.as_bytes(), SocketAddrV4::new(GROUP, PORT))
                .expect("send to the mDNS group");
        }
        other => panic!("unknown probe role {other:?}"),
    }
}

/// This test binary, re-run on `udp_probe` only.
fn probe(role: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary path"));
    cmd.args([
        "--exact",
        "udp_probe",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(PROBE_ENV, role);
    cmd
}

fn ping(lab: &mut Lab, from: usize, to: usize) -> bool {
    let target = lab.addr(to).expect("host exists");
    let mut cmd = Command::new("ping");
    cmd.args(["-c", "1", "-W", "1", &target.to_string()]);
    lab.output(from, cmd).expect("ping runs").status.success()
}

fn wait_for_line(lines: &mut impl Iterator<Item = std::io::Result<String>>, start: &str) -> String {
    for line in lines {
        let line = line.expect("probe output");
        // libtest prints "test udp_probe ... " on the same line first.
        if let Some(at) = line.find(start) {
            return line[at..].to_owned();
        }
    }
    panic!("probe ended without printing {start:?}");
}

fn wait(child: &mut Child) -> std::process::ExitStatus {
    child.wait().expect("child exits")
}

/// Link names in the namespace this test runs in.
fn root_links() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .expect("ip link");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_owned()))
        .collect();
    names.sort();
    names
}

/// Dead or a zombie (killed but not yet reaped by its `Child`).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|s| s == 'Z' || s == 'X'),
        Err(_) => true,
    }
}
