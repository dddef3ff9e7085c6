//! Two people at one mixer: a page that sends votes as fast as it can (a
//! script on its WebSocket) fills only its own queue and is told so, while
//! another person's `play` through the HTTP API is accepted, cast within a
//! few turns and applied on every node. Before per-client queues, the fast
//! page filled the member's shared queue of 16 and the `play` was refused.

mod support;

use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use support::{LoopRoom, Mixer, wait_for};
use tungstenite::client::IntoClientRequest as _;
use tungstenite::{Message, WebSocket};

/// Votes the fast page sends in one burst: more than the member's queue
/// (16) and the page's own (4) together.
const BURST: usize = 30;

fn connect(port: u16) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let mut req = format!("ws://127.0.0.1:{port}/ws")
        .into_client_request()
        .expect("a request");
    req.headers_mut().insert(
        "Origin",
        format!("http://127.0.0.1:{port}")
            .parse()
            .expect("a header"),
    );
    let (ws, _) = tungstenite::client::client(req, stream).expect("WebSocket handshake");
    ws
}

/// The next message of the given type ("cast" or "error"), skipping states.
fn next_reply(ws: &mut WebSocket<TcpStream>) -> Value {
    loop {
        let msg = ws.read().expect("a message");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
            if v["type"] != "state" {
                return v;
            }
        }
    }
}

#[test]
fn a_fast_page_fills_its_own_queue_and_another_persons_play_goes_through() {
    let room = LoopRoom::start(3);
    room.wait_formed(3, Duration::from_secs(10));
    let mixer = Mixer::start(&room, None);
    let live = wait_for(Duration::from_secs(10), || {
        support::http_get(mixer.port, "/api/state")
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .is_some_and(|s| s["connection"] == "live")
    });
    assert!(live, "the mixer never went live: {}", mixer.output());

    let mut fast = connect(mixer.port);
    for g in 0..BURST {
        let vote = format!(r#"{{"op":"volume","channel":1,"gain":{}}}"#, 10 + g);
        fast.send(Message::text(vote)).expect("sent");
    }
    // Someone else presses play, right behind the burst.
    let (code, body) = support::http(
        mixer.port,
        "POST",
        "/api/act",
        Some(r#"{"op":"play","channel":"all"}"#),
        &[],
    )
    .expect("answers");
    assert_eq!(code, 200, "the other person's play was refused: {body}");
    let played = wait_for(Duration::from_secs(5), || {
        (0..room.len()).all(|i| {
            room.status(i)
                .and_then(|s| {
                    s["channels"]
                        .as_array()
                        .map(|c| c.iter().all(|c| c["playing"] == true))
                })
                .unwrap_or(false)
        })
    });
    assert!(played, "play was not applied on every node");

    // The fast page: every vote answered, the overflow refused with a
    // reason that names its own queue, the rest cast.
    let replies: Vec<Value> = (0..BURST).map(|_| next_reply(&mut fast)).collect();
    let cast = replies.iter().filter(|r| r["type"] == "cast").count();
    let refused: Vec<&Value> = replies.iter().filter(|r| r["type"] == "error").collect();
    assert!(cast >= 1 && !refused.is_empty(), "{replies:?}");
    assert!(cast < BURST, "{replies:?}");
    for r in &refused {
        assert!(
            r["message"]
                .as_str()
                .is_some_and(|m| m.contains("of your votes are already waiting for their turn")),
            "{r}"
        );
    }
    // Its accepted votes were applied too: channel 1 ends at one of them.
    let sent = 10..10 + u64::try_from(BURST).expect("small");
    let applied = wait_for(Duration::from_secs(10), || {
        (0..room.len()).all(|i| {
            room.status(i)
                .and_then(|s| s["channels"][1]["gain"].as_u64())
                .is_some_and(|g| sent.contains(&g))
        })
    });
    assert!(applied, "the fast page's votes were not applied");
    eprintln!("fast page: {cast} cast, {} refused", refused.len());
}
