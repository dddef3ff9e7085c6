//! Fuzz target: any byte string through [`Message::decode`].
//!
//! Decoding hostile bytes must return a message or a typed error and never
//! panic (libFuzzer reports a panic as a crash). When the bytes do decode,
//! the message must survive a round trip: encoding it and decoding the
//! result gives the same message, and encoding is then a fixed point. The
//! input bytes themselves need not come back (postcard accepts some
//! non-minimal varints), which is why the round trip starts at the message.

#![no_main]

use autoharmonize_protocol::wire::{MAX_DATAGRAM, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::decode(data) else {
        return;
    };
    // A decoded datagram passed the size check, so it was small.
    assert!(data.len() <= MAX_DATAGRAM);
    let bytes = msg.encode();
    assert!(bytes.len() <= MAX_DATAGRAM, "encoding outgrew a datagram");
    let again = Message::decode(&bytes).expect("an encoded message decodes");
    assert_eq!(again, msg, "decode(encode(m)) != m");
    assert_eq!(again.encode(), bytes, "encoding is not a fixed point");
});
