//! How many bytes a UDP socket has waiting in the kernel to be sent.
//!
//! Datagrams to an address the kernel is still resolving wait in its ARP
//! queue and count against the socket's send buffer until they leave or
//! are dropped (up to 3 s). The mesh paces sends to silent peers only
//! while this backlog is long (`protocol::pacing`), so it reads it: the
//! `tx_queue` column of `/proc/self/net/udp` (or `udp6`), the row whose
//! inode is the socket's. Reading it is a few hundred bytes of text, done
//! with the 50 ms status refresh.

use std::io;
use std::os::fd::AsFd;

/// Bytes in the send queue of `socket`, from this network namespace's
/// socket table.
///
/// # Errors
/// The table cannot be read, or has no row for the socket.
pub fn queued_bytes(socket: &impl AsFd, ipv6: bool) -> io::Result<u64> {
    let inode = nix::sys::stat::fstat(socket.as_fd())
        .map_err(io::Error::from)?
        .st_ino;
    let table = if ipv6 {
        "/proc/self/net/udp6"
    } else {
        "/proc/self/net/udp"
    };
    let text = std::fs::read_to_string(table)?;
    tx_queue_of(&text, inode).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no row for socket inode {inode} in {table}"),
        )
    })
}

/// The `tx_queue` of the row with `inode` in a `/proc/net/udp` table:
/// `sl local rem st tx_queue:rx_queue tr:when retrnsmt uid timeout inode …`,
/// the queues in hexadecimal.
fn tx_queue_of(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        let (tx, _rx) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(tx, 16).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  101: 0100007F:1E1E 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41234 2 0000000000000000 0
  102: 00000000:1E1E 00000000:0000 07 0000C300:00000000 00:00000000 00000000     0        0 55120 2 0000000000000000 3
";

    #[test]
    fn finds_the_sockets_row_by_inode() {
        assert_eq!(tx_queue_of(TABLE, 55120), Some(0xC300));
        assert_eq!(tx_queue_of(TABLE, 41234), Some(0));
        assert_eq!(tx_queue_of(TABLE, 7), None);
        assert_eq!(tx_queue_of("", 7), None);
        assert_eq!(tx_queue_of("header\ngarbage line", 7), None);
    }

    #[test]
    fn reads_a_real_sockets_queue() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        assert_eq!(queued_bytes(&socket, false).expect("own row"), 0);
    }
}
