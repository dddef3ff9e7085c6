//! Streaming in one process over loopback TCP: real exchange servers, real
//! fetch loops, the real chunk cache and the decoder-side source, without
//! the mesh. Asserts what the decoder gets, frame for frame, against a
//! local decode of the same file:
//!
//! - a stem held by two peers streams in and plays bit-exact, its chunks
//!   fetched from both;
//! - wherever data was missing the source played silence and kept its
//!   position (no drift): every block is either silence or exactly the
//!   reference frames for its position;
//! - a seek far ahead resumes on exactly the target frame, for a WAV stem
//!   and for a FLAC one (whose seek reads scattered parts of the file);
//! - a holder serving a tampered file: its bad chunks are rejected and
//!   fetched from the other holder; audio stays exact;
//! - a stranger without the room's secret is refused at the handshake;
//! - a restart with the same cache plays without fetching anything.

mod audio_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use autoharmonize_node::audio::StreamSpec;
use autoharmonize_node::audio::decode::{AudioSource, StemDecoder};
use autoharmonize_node::library::hash_file;
use autoharmonize_node::stream::link::{LinkError, LinkOptions, Peer};
use autoharmonize_node::stream::source::StreamedStem;
use autoharmonize_node::stream::{StaticHolders, StreamConfig, Streaming};
use autoharmonize_protocol::envelope::GroupKey;
use autoharmonize_protocol::exchange::{ExchangeError, LinkKey};

const SECRET: &[u8] = b"correct horse battery staple 42";
const RATE: u32 = 48_000;
const SPEC: StreamSpec = StreamSpec {
    rate: RATE,
    channels: 2,
};
const BLOCK: usize = 1024;

fn key(secret: &[u8]) -> LinkKey {
    LinkKey::from_group(&GroupKey::new(secret).expect("secret"))
}

/// A 16-bit stereo WAV whose samples never repeat within the file (so a
/// frame from the wrong place cannot pass for the right one).
fn write_stem(path: &Path, seconds: u32) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for f in 0..seconds * RATE {
        let v = ((f.wrapping_mul(2_654_435_761) >> 16) & 0x7fff) as i16 - 0x3fff;
        w.write_sample(v).expect("sample");
        w.write_sample(v.wrapping_neg()).expect("sample");
    }
    w.finalize().expect("wav");
}

fn holder(dir: &Path, name: &str, serve: Option<(&Path, &Path)>) -> Arc<Streaming> {
    let s = Streaming::start(
        &StreamConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            cache_dir: dir.join(format!("{name}-cache")),
            cache_max_bytes: 1 << 30,
            link: LinkOptions::default(),
        },
        key(SECRET),
        Arc::new(StaticHolders(Vec::new())),
    )
    .expect("holder starts");
    if let Some((file, manifest_of)) = serve {
        s.serve_file(file.to_path_buf(), hash_file(manifest_of).expect("hash"));
    }
    Arc::new(s)
}

fn client(dir: &Path, cache: &str, holders: Vec<SocketAddr>) -> Streaming {
    Streaming::start(
        &StreamConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            cache_dir: dir.join(cache),
            cache_max_bytes: 1 << 30,
            link: LinkOptions::default(),
        },
        key(SECRET),
        Arc::new(StaticHolders(holders)),
    )
    .expect("client starts")
}

/// The reference: the stem decoded locally, every frame.
fn reference(path: &Path) -> Vec<f32> {
    let mut d = StemDecoder::open(path).expect("decode");
    let mut all = Vec::new();
    let mut buf = vec![0.0f32; BLOCK * 2];
    loop {
        let n = d.read(&mut buf).expect("read");
        all.extend_from_slice(&buf[..n * 2]);
        if n < BLOCK {
            return all;
        }
    }
}

/// Reads blocks in real time (one block per block's duration, as the
/// renderer would) until `until` frames past the
/// start position were real audio or `timeout` passes; checks every block.
/// Returns (frames of real audio, frames of silence).
fn play(src: &mut StreamedStem, refr: &[f32], until: u64, timeout: Duration) -> (u64, u64) {
    let start = Instant::now();
    let mut buf = vec![0.0f32; BLOCK * 2];
    let (mut real, mut silent) = (0u64, 0u64);
    while real < until && start.elapsed() < timeout {
        let pos = src.position();
        let n = src.read(&mut buf).expect("streamed read never fails");
        assert_eq!(
            src.position(),
            pos + n as u64,
            "position follows every frame"
        );
        if n == 0 {
            break;
        }
        let got = &buf[..n * 2];
        std::thread::sleep(Duration::from_micros(
            BLOCK as u64 * 1_000_000 / u64::from(RATE),
        ));
        if got.iter().all(|&x| x == 0.0) {
            silent += n as u64;
        } else {
            let at = usize::try_from(pos).expect("pos") * 2;
            assert_eq!(
                got,
                &refr[at..at + n * 2],
                "frames {pos}.. are the stem's own"
            );
            real += n as u64;
        }
    }
    (real, silent)
}

fn stem_status(s: &Streaming) -> autoharmonize_node::stream::fetcher::FetchStatus {
    s.status()
        .stems
        .into_iter()
        .next()
        .expect("one streamed stem")
}

#[test]
fn a_stem_held_by_two_peers_streams_exactly_through_a_seek() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("stem.wav");
    write_stem(&file, 20);
    let refr = reference(&file);
    let stem = hash_file(&file).expect("hash").stem_hash();
    let (a, b, c) = streams_exactly_through_a_seek(dir.path(), &file);

    let s = stem_status(&c);
    eprintln!("status: {s:?}");
    assert_eq!(
        s.per_holder.len(),
        2,
        "both holders served chunks: {:?}",
        s.per_holder
    );
    assert!(s.per_holder.iter().all(|(_, n)| *n > 0));
    assert_eq!(s.rejected, 0);
    // Nothing far beyond the window after the seek was fetched: the
    // stretch between the first play and the seek target stayed out.
    let chunks_between = (15 * RATE * 4 - 4 * RATE * 4) as u64 / 65_536;
    assert!(
        s.fetched_bytes < (s.chunks - chunks_between / 2) * 65_536,
        "fetched {} bytes of a {}-chunk stem",
        s.fetched_bytes,
        s.chunks
    );

    // A restart with the same cache: plays at once, fetches nothing of
    // what it had.
    let fetched_before = s.fetched_bytes;
    let c2 = client(
        dir.path(),
        "c-cache",
        vec![a.listen_addr(), b.listen_addr()],
    );
    let mut src = c2.stream(stem, SPEC);
    let (real, _) = play(&mut src, &refr, u64::from(RATE), Duration::from_secs(10));
    assert!(real >= u64::from(RATE));
    let s2 = stem_status(&c2);
    assert_eq!(
        s2.fetched_bytes, 0,
        "the first second was cached and valid (first run fetched {fetched_before})"
    );
}

/// Streams `file` from two holders: 3 s from the start, then a seek to
/// 15 s + 123 frames and 1 s from there, every block silence or exact.
/// Returns the holders and the client, for further checks.
fn streams_exactly_through_a_seek(
    dir: &Path,
    file: &Path,
) -> (Arc<Streaming>, Arc<Streaming>, Streaming) {
    let refr = reference(file);
    let stem = hash_file(file).expect("hash").stem_hash();
    let a = holder(dir, "a", Some((file, file)));
    let b = holder(dir, "b", Some((file, file)));
    let c = client(dir, "c-cache", vec![a.listen_addr(), b.listen_addr()]);
    let mut src = c.stream(stem, SPEC);
    // From the start: silence until the first chunks are in, then exact.
    let (real, silent) = play(
        &mut src,
        &refr,
        3 * u64::from(RATE),
        Duration::from_secs(20),
    );
    assert!(
        real >= 3 * u64::from(RATE),
        "3 s of real audio, got {real} frames ({silent} silent)"
    );
    // A seek far ahead: silence (in sync) until the data is there, then
    // exactly the frames from the target on.
    let target = 15 * u64::from(RATE) + 123;
    src.seek(target).expect("seek");
    assert_eq!(src.position(), target);
    let (real, _) = play(&mut src, &refr, u64::from(RATE), Duration::from_secs(20));
    assert!(real >= u64::from(RATE), "1 s after the seek, got {real}");
    assert_eq!(stem_status(&c).rejected, 0);
    (a, b, c)
}

#[test]
fn a_flac_stem_streams_exactly_through_a_seek() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("stem.flac");
    // Never-repeating samples (as `write_stem`), so FLAC cannot shrink them
    // to a few chunks: the stem spans dozens of 64 KiB chunks.
    let samples: Vec<i16> = (0..20 * RATE)
        .flat_map(|f| {
            let v = ((f.wrapping_mul(2_654_435_761) >> 16) & 0x7fff) as i16 - 0x3fff;
            [v, v.wrapping_neg()]
        })
        .collect();
    audio_support::write_flac(&file, RATE, 2, &samples, 4096);
    let len = std::fs::metadata(&file).expect("flac").len();
    assert!(len > 20 * 65_536, "a {len}-byte FLAC is too few chunks");
    streams_exactly_through_a_seek(dir.path(), &file);
}

#[test]
fn a_tampered_chunk_is_rejected_and_fetched_from_the_other_holder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("stem.wav");
    write_stem(&file, 6);
    let refr = reference(&file);
    let stem = hash_file(&file).expect("hash").stem_hash();
    // Holder a's copy rotted on disk after it was hashed: every chunk
    // has a flipped byte.
    let bad: PathBuf = dir.path().join("bad.wav");
    let mut bytes = std::fs::read(&file).expect("read");
    for i in (1_000..bytes.len()).step_by(65_536) {
        bytes[i] ^= 0x40;
    }
    std::fs::write(&bad, bytes).expect("write");
    let a = holder(dir.path(), "a", Some((&bad, &file)));
    let b = holder(dir.path(), "b", Some((&file, &file)));
    let c = client(
        dir.path(),
        "c-cache",
        vec![a.listen_addr(), b.listen_addr()],
    );
    let mut src = c.stream(stem, SPEC);
    let (real, _) = play(
        &mut src,
        &refr,
        5 * u64::from(RATE),
        Duration::from_secs(20),
    );
    assert!(
        real >= 5 * u64::from(RATE),
        "5 s of exact audio, got {real}"
    );
    let s = stem_status(&c);
    eprintln!("status: {s:?}");
    assert!(s.rejected > 0, "the tampered chunks were seen and rejected");
    let from_a = s
        .per_holder
        .iter()
        .find(|(h, _)| *h == a.listen_addr().to_string())
        .map_or(0, |(_, n)| *n);
    assert_eq!(from_a, 0, "nothing from the tampered holder was kept");
}

#[test]
fn a_stranger_without_the_secret_gets_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("stem.wav");
    write_stem(&file, 1);
    let a = holder(dir.path(), "a", Some((&file, &file)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(Peer::connect(
        a.listen_addr(),
        &key(b"this is not the room's secret"),
        LinkOptions::default(),
    ));
    assert!(
        matches!(
            result,
            Err(LinkError::Refused {
                source: ExchangeError::BadProof,
                ..
            })
        ),
        "{result:?}"
    );
    // A stranger that ignores the server's proof and sends a made-up one
    // of its own, then a request, is cut off without an answer.
    {
        use std::io::{Read as _, Write as _};
        let mut raw = std::net::TcpStream::connect(a.listen_addr()).expect("connect");
        raw.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        raw.write_all(&autoharmonize_protocol::exchange::MAGIC)
            .expect("hello");
        raw.write_all(&[7u8; 32]).expect("nonce");
        let mut reply = [0u8; 64];
        raw.read_exact(&mut reply).expect("server nonce and proof");
        raw.write_all(&[9u8; 32]).expect("forged proof");
        let request = autoharmonize_protocol::exchange::Request::Manifest {
            id: 1,
            stem: hash_file(&file).expect("hash").stem_hash(),
        }
        .encode();
        let _ = raw.write_all(&(request.len() as u32).to_le_bytes());
        let _ = raw.write_all(&request);
        let _ = raw.write_all(&[0u8; 32]);
        let mut rest = Vec::new();
        let _ = raw.read_to_end(&mut rest);
        assert!(
            rest.is_empty(),
            "the server sent {} bytes to a stranger",
            rest.len()
        );
    }
    // The room's own key connects.
    let ok = rt.block_on(Peer::connect(
        a.listen_addr(),
        &key(SECRET),
        LinkOptions::default(),
    ));
    assert!(ok.is_ok(), "{ok:?}");
}
