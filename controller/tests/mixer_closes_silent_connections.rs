//! A client that connects to the mixer and sends nothing, stops halfway
//! through its headers, goes quiet after a request, or never finishes a
//! body does not hold its connection for ever: the mixer closes each of
//! them (the header-read timeout, which is also the idle timeout, and the
//! request timeout), and keeps answering everyone else.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{LoopRoom, Mixer};

/// Far longer than the mixer's 5 s header and 15 s request timeouts: a
/// read still blocked after this means the connection was never closed.
const PATIENCE: Duration = Duration::from_secs(40);

/// Sends `prefix`, then nothing; reads until the mixer closes the
/// connection. Returns what it answered, or `None` if the connection was
/// still open after `PATIENCE`.
fn until_closed(port: u16, prefix: &[u8]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    s.set_read_timeout(Some(PATIENCE)).expect("read timeout");
    s.write_all(prefix).expect("writes");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            // Reset by the server: closed too.
            Err(_) => return Some(String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

#[test]
fn silent_and_stalled_connections_are_closed() {
    let room = LoopRoom::start(0);
    let mixer = Mixer::start(&room, None);
    let port = mixer.port;
    let host = format!("Host: 127.0.0.1:{port}\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("nothing sent", Vec::new()),
        (
            "half a head",
            format!("GET /api/state HTTP/1.1\r\n{host}").into_bytes(),
        ),
        (
            "idle after a request",
            format!("GET /api/state HTTP/1.1\r\n{host}\r\n").into_bytes(),
        ),
        (
            "half a body",
            format!(
                "POST /api/act HTTP/1.1\r\n{host}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"op\":"
            )
            .into_bytes(),
        ),
    ];
    let waits: Vec<_> = cases
        .into_iter()
        .map(|(what, prefix)| {
            (
                what,
                std::thread::spawn(move || until_closed(port, &prefix)),
            )
        })
        .collect();
    let mut answers = std::collections::BTreeMap::new();
    for (what, w) in waits {
        let answer = w.join().expect("client thread");
        assert!(
            answer.is_some(),
            "{what}: still open after {PATIENCE:?}: {}",
            mixer.output()
        );
        answers.insert(what, answer.unwrap_or_default());
    }
    assert!(answers["nothing sent"].is_empty(), "{answers:?}");
    assert!(
        answers["idle after a request"].starts_with("HTTP/1.1 200"),
        "the request was answered before the idle close: {answers:?}"
    );
    assert!(
        answers["half a body"].starts_with("HTTP/1.1 408"),
        "a stalled body is answered 408: {answers:?}"
    );
    // The mixer still answers.
    let (code, body) = support::http(port, "GET", "/api/state", None, &[]).expect("answers");
    assert_eq!(code, 200, "{body}");
}
