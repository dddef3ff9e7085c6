//! Receiving mesh datagrams with the kernel's arrival timestamp.
//!
//! Clock probes need the instant a datagram arrived, not the instant the
//! mesh loop got round to it: the wake-up delay lies on one path of a probe
//! only and would bias every follower's clock estimate by half of it (tens of
//! µs on a busy machine, measured by `bench-sync`). `SO_TIMESTAMPNS` makes
//! the kernel stamp each datagram on arrival; this module reads that stamp
//! and converts it to the node's local clock. (The kernel turns arrival
//! stamping on system-wide a moment after the first socket asks; datagrams
//! read before then carry the time they were read, as before.)

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use autoharmonize_protocol::LocalTime;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use nix::time::{ClockId, clock_gettime};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::clock::LocalClock;

/// Asks the kernel to stamp every datagram `socket` receives.
///
/// # Errors
/// The socket option is refused (then arrivals are dated when read).
pub fn enable(socket: &UdpSocket) -> io::Result<()> {
    setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
}

/// Receives one datagram into `buf`: its length, its sender, and its arrival
/// on `clock` (the kernel's stamp when there is one, else the time it was
/// read).
///
/// # Errors
/// As `recv_from`.
pub async fn recv(
    socket: &UdpSocket,
    clock: &LocalClock,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, LocalTime)> {
    let (len, from, stamp) = socket
        .async_io(Interest::READABLE, || recv_now(socket, buf))
        .await?;
    let now = clock.now();
    Ok((len, from, stamp.map_or(now, |s| arrival(now, s))))
}

fn recv_now(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<TimeSpec>)> {
    let mut cmsg = nix::cmsg_space!(TimeSpec);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let from = msg
        .address
        .as_ref()
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::V4((*v4).into()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
        })
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without a sender"))?;
    let stamp = msg.cmsgs().ok().and_then(|mut c| {
        c.find_map(|m| match m {
            ControlMessageOwned::ScmTimestampns(ts) => Some(ts),
            _ => None,
        })
    });
    Ok((msg.bytes, from, stamp))
}

/// The local instant of a kernel stamp (`CLOCK_REALTIME`), given the local
/// time `now` just after it was read: `now` minus the datagram's age on the
/// real-time clock. A stamp from the future or older than a second (the
/// real-time clock was stepped meanwhile) is not trusted: `now` is used.
fn arrival(now: LocalTime, stamp: TimeSpec) -> LocalTime {
    let Ok(real_now) = clock_gettime(ClockId::CLOCK_REALTIME) else {
        return now;
    };
    let age = real_now - stamp;
    let age_ns = i128::from(age.tv_sec()) * 1_000_000_000 + i128::from(age.tv_nsec());
    if (0..1_000_000_000).contains(&age_ns) {
        // The age is at most a second, so a skewed local clock (≤ a few
        // hundred ppm in tests) would change it by under a µs: ignored.
        LocalTime(now.0.saturating_sub(age_ns as u64))
    } else {
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stamps_arrival_not_reading() {
        let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        enable(&b).expect("SO_TIMESTAMPNS");
        let clock = LocalClock::system();
        // The kernel switches arrival stamping on for the whole system a
        // moment after the first socket asks (a deferred static key); until
        // then datagrams are stamped when read. Give it that moment.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let sent = clock.now();
        a.send_to(b"x", b.local_addr().expect("addr"))
            .await
            .expect("send");
        // Read it 50 ms late: the stamp must still date the arrival.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut buf = [0u8; 16];
        let (len, from, at) = recv(&b, &clock, &mut buf).await.expect("recv");
        let after = clock.now();
        assert_eq!(len, 1);
        assert_eq!(from, a.local_addr().expect("addr"));
        assert!(at >= sent, "stamped {at:?}, before it was sent at {sent:?}");
        assert!(
            after.0 - at.0 >= 45_000_000,
            "stamped {} ms before reading, expected about 50",
            (after.0 - at.0) / 1_000_000
        );
    }
}
