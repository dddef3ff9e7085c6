//! Fuzz target: the authenticated envelope ([`Opener::open`]).
//!
//! Every input is used twice:
//!
//! 1. **Raw**: the bytes as one received datagram, opened under a fixed group
//!    key by a fresh opener. It must never panic; if it opens (the committed
//!    seeds are genuine datagrams sealed under this key), the plaintext is
//!    exactly the datagram minus the envelope, and the same bytes a second
//!    time are a replay.
//! 2. **Structured**: the bytes choose a sender, an epoch and a few
//!    plaintexts, which are sealed for real, then a sequence of deliveries
//!    to one opener, each either genuine or altered (bytes flipped or the
//!    datagram cut short). An altered datagram must never open; a genuine
//!    one opens exactly once, with the sender, epoch, counter and plaintext
//!    it was sealed with, however many forgeries arrived before it; a
//!    datagram bearing the opener's own id is refused as reflected.

#![no_main]

use autoharmonize_protocol::MemberId;
use autoharmonize_protocol::envelope::{
    Epoch, GroupKey, MAX_PLAINTEXT, OVERHEAD, OpenError, Opener, Sealer,
};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// The fixed group secret. `examples/seeds.rs` seals the open_envelope seeds
/// with the same one, so seeds open and mutations start from genuine bytes.
const SECRET: &[u8] = b"autoharmonize fuzz secret, 32 b!";

/// The opening member's id (the seeds are sealed by other members).
const ME: MemberId = MemberId(1);

/// Most plaintexts one structured input seals.
const MAX_SEALED: usize = 4;

/// Most deliveries one structured input makes.
const MAX_DELIVERIES: usize = 16;

fuzz_target!(|data: &[u8]| {
    let key = GroupKey::new(SECRET).expect("the fixed secret is long enough");
    raw(&key, data);
    // Running out of fuzzer bytes only ends the scenario early.
    let _ = structured(&key, &mut Unstructured::new(data));
});

fn raw(key: &GroupKey, data: &[u8]) {
    let mut opener = Opener::new(key, ME);
    let sender = match opener.open(data) {
        Ok(opened) => {
            assert_eq!(opened.plaintext.len() + OVERHEAD, data.len());
            assert_ne!(opened.sender, ME);
            opened.sender
        }
        Err(_) => return,
    };
    assert_eq!(opener.open(data), Err(OpenError::Replayed { sender }));
}

fn structured(key: &GroupKey, u: &mut Unstructured<'_>) -> Result<()> {
    let sender = MemberId(u.arbitrary()?);
    let epoch = Epoch(u.arbitrary()?);
    let mut sealer = Sealer::new(key, sender, epoch);
    let count = u.int_in_range(1..=MAX_SEALED)?;
    let mut sealed = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u.int_in_range(0..=MAX_PLAINTEXT)?;
        let plaintext = u.bytes(len)?.to_vec();
        let mut datagram = Vec::new();
        sealer
            .seal(&plaintext, &mut datagram)
            .expect("plaintext is within MAX_PLAINTEXT and the counter is fresh");
        sealed.push((plaintext, datagram));
    }

    let mut opener = Opener::new(key, ME);
    let mut opened = [false; MAX_SEALED];
    for _ in 0..MAX_DELIVERIES {
        if u.is_empty() {
            break;
        }
        let i = u.choose_index(count)?;
        let (plaintext, genuine) = &sealed[i];
        let delivered = alter(u, genuine)?;

        let result = opener.open(&delivered);
        if delivered != *genuine {
            assert!(result.is_err(), "an altered datagram opened: {result:?}");
            continue;
        }
        if sender == ME {
            assert_eq!(result, Err(OpenError::Reflected));
            continue;
        }
        if opened[i] {
            assert_eq!(result, Err(OpenError::Replayed { sender }));
            continue;
        }
        let got = result.expect("a genuine datagram opens the first time");
        assert_eq!(got.sender, sender);
        assert_eq!(got.epoch, epoch);
        assert_eq!(got.counter, i as u64);
        assert_eq!(got.plaintext, plaintext.as_slice());
        opened[i] = true;
    }
    Ok(())
}

/// The datagram as delivered: unchanged, with a few bytes flipped, or cut
/// short. Flips may cancel out; the caller compares with the original.
fn alter(u: &mut Unstructured<'_>, genuine: &[u8]) -> Result<Vec<u8>> {
    let mut out = genuine.to_vec();
    match u.int_in_range(0..=2u8)? {
        0 => {}
        1 => {
            for _ in 0..u.int_in_range(1..=3u8)? {
                let at = u.choose_index(out.len())?;
                out[at] ^= u.int_in_range(1..=255u8)?;
            }
        }
        _ => {
            let keep = u.choose_index(out.len())?;
            out.truncate(keep);
        }
    }
    Ok(out)
}
