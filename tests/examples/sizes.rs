use autoharmonize_protocol::wire::*;
use postcard::experimental::max_size::MaxSize;
fn main() {
    println!(
        "message {} entry {} change {} append {} snapshot {} heartbeat {}",
        MAX_MESSAGE_SIZE,
        Entry::POSTCARD_MAX_SIZE,
        ViewChange::POSTCARD_MAX_SIZE,
        Append::POSTCARD_MAX_SIZE,
        Snapshot::POSTCARD_MAX_SIZE,
        Heartbeat::POSTCARD_MAX_SIZE
    );
}
