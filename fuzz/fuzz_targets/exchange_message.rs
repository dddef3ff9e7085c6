//! Fuzz target: any byte string through the chunk exchange's decoders
//! (`protocol::exchange`): a request as a server reads it, a response as a
//! client reads it, and a frame header's length check.
//!
//! Hostile bytes must give a message or a typed error, never a panic; a
//! decoded message must encode back to exactly the input (the layout has
//! one encoding per message), and no announced length above `MAX_BODY` is
//! accepted (a peer cannot make us allocate more).

#![no_main]

use autoharmonize_protocol::exchange::{FrameChecker, MAX_BODY, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::decode(data) {
        assert_eq!(r.encode(), data, "request encoding is not canonical");
    }
    if let Ok(r) = Response::decode(data) {
        assert_eq!(r.encode(), data, "response encoding is not canonical");
    }
    if let Some(header) = data.get(..4).and_then(|h| <[u8; 4]>::try_from(h).ok())
        && let Ok(len) = FrameChecker::body_len(header)
    {
        assert!(len <= MAX_BODY);
    }
});
