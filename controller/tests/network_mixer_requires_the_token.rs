//! A mixer opened to the network answers nothing without the access token
//! it printed: not the page, not the API, not the WebSocket; and a
//! WebSocket from another origin is refused even with the token. A loopback
//! mixer refuses requests that name a foreign host (DNS rebinding).

mod support;

use std::time::Duration;

use support::{LoopRoom, Mixer, http, wait_for};

fn token_from(output: &str) -> Option<String> {
    output
        .split("access token ")
        .nth(1)
        .and_then(|rest| rest.split('.').next())
        .map(str::to_owned)
}

#[test]
fn a_network_mixer_needs_the_token_and_its_own_origin() {
    // No speakers needed: access is checked before anything else.
    let room = LoopRoom::start(0);
    let mixer = Mixer::start(&room, Some("0.0.0.0"));
    let printed = wait_for(Duration::from_secs(5), || {
        token_from(&mixer.output()).is_some()
    });
    assert!(printed, "no token printed: {}", mixer.output());
    let token = token_from(&mixer.output()).expect("token");
    assert_eq!(token.len(), 32, "{token}");
    // The QR code follows the address line: wait for it too (reading the
    // output right after the token raced with its printing).
    let qr = wait_for(Duration::from_secs(5), || {
        let out = mixer.output();
        out.contains('█') || out.contains('▀')
    });
    assert!(qr, "a QR code is printed: {}", mixer.output());

    let p = mixer.port;
    for path in ["/", "/api/state", "/ws"] {
        let (code, _) = http(p, "GET", path, None, &[]).expect("answers");
        assert_eq!(code, 401, "{path} without a token");
        let (code, _) = http(p, "GET", &format!("{path}?token=0123"), None, &[]).expect("answers");
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let (code, _) = http(
        p,
        "POST",
        "/api/act",
        Some(r#"{"op":"play","channel":"all"}"#),
        &[],
    )
    .expect("answers");
    assert_eq!(code, 401, "acting without a token");

    let (code, body) = http(p, "GET", &format!("/?token={token}"), None, &[]).expect("answers");
    assert_eq!(code, 200);
    assert!(body.contains("<title>Autoharmonize mixer</title>"));
    let bearer = format!("Bearer {token}");
    let (code, body) =
        http(p, "GET", "/api/state", None, &[("Authorization", &bearer)]).expect("answers");
    assert_eq!(code, 200);
    assert!(body.contains("\"connection\""), "{body}");

    let upgrade = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    let ws = format!("/ws?token={token}");
    let mut foreign = upgrade.to_vec();
    foreign.push(("Origin", "http://evil.example"));
    let (code, _) = support::http_head_only(p, "GET", &ws, &foreign).expect("answers");
    assert_eq!(code, 403, "cross-origin WebSocket");
    let own = format!("http://127.0.0.1:{p}");
    let mut same = upgrade.to_vec();
    same.push(("Origin", &own));
    let (code, _) = support::http_head_only(p, "GET", &ws, &same).expect("answers");
    assert_eq!(code, 101, "same-origin WebSocket with the token");
}

#[test]
fn a_loopback_mixer_answers_only_to_loopback_names() {
    let room = LoopRoom::start(0);
    let mixer = Mixer::start(&room, None);
    let p = mixer.port;
    let (code, _) = http(p, "GET", "/api/state", None, &[]).expect("answers");
    assert_eq!(code, 200, "loopback needs no token");
    assert!(!mixer.output().contains("access token"));
    let (code, _) = support::http_as_host(p, "evil.example", "/api/state").expect("answers");
    assert_eq!(code, 401, "a rebinding page's request");
}
