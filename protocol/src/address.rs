//! Members' network addresses, as far as the protocol needs them: to refer
//! a newcomer to the members of a room it reached through someone else.
//!
//! The shell owns sockets and the address book it sends with; the core only
//! learns, from the shell, where each member's authenticated datagrams came
//! from ([`crate::member::Member::learn_address`]), and hands those
//! addresses on in a [`crate::wire::Referral`]. That is what lets a speaker
//! or a controller join through *any* member: a follower that receives a
//! join request answers with the leader's and the view's addresses, and the
//! newcomer asks the leader next (`docs/protocol.md`, "Joining").
//!
//! Invariant: the table is bounded ([`MAX_ADDRESSES`]) and an address
//! learned from a datagram is never replaced by one merely referred by a
//! third member (the first is what the network showed; the second is a
//! hint).

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::collections::BTreeMap;

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

use crate::ids::MemberId;
use crate::time::LocalTime;
use crate::wire::MAX_MEMBERS;

/// Most addresses a member keeps: its view and as many strangers.
pub const MAX_ADDRESSES: usize = 2 * MAX_MEMBERS;

/// A UDP socket address in a fixed, float-free wire form.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, MaxSize,
)]
pub enum WireAddr {
    /// IPv4 address and port.
    V4 {
        /// Address octets.
        ip: [u8; 4],
        /// UDP port.
        port: u16,
    },
    /// IPv6 address and port (scope ids do not travel: link-local
    /// addresses are only meaningful on the sender's interface).
    V6 {
        /// Address octets.
        ip: [u8; 16],
        /// UDP port.
        port: u16,
    },
}

impl From<SocketAddr> for WireAddr {
    fn from(a: SocketAddr) -> WireAddr {
        match a.ip() {
            IpAddr::V4(ip) => WireAddr::V4 {
                ip: ip.octets(),
                port: a.port(),
            },
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                // A dual-stack socket reports IPv4 peers as mapped addresses.
                Some(v4) => WireAddr::V4 {
                    ip: v4.octets(),
                    port: a.port(),
                },
                None => WireAddr::V6 {
                    ip: ip.octets(),
                    port: a.port(),
                },
            },
        }
    }
}

impl From<WireAddr> for SocketAddr {
    fn from(a: WireAddr) -> SocketAddr {
        match a {
            WireAddr::V4 { ip, port } => SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port),
            WireAddr::V6 { ip, port } => SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port),
        }
    }
}

impl WireAddr {
    /// Whether the address can name a peer at all (not unspecified, port
    /// not 0): a referral carrying anything else is ignored.
    #[must_use]
    pub fn is_usable(&self) -> bool {
        let sa = SocketAddr::from(*self);
        sa.port() != 0 && !sa.ip().is_unspecified() && !sa.ip().is_multicast()
    }
}

/// A member and where it can be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub struct PeerAddress {
    /// The member.
    pub id: MemberId,
    /// Its mesh socket as the referring member sees it.
    pub addr: WireAddr,
}

/// How an address became known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// Another member told us (a hint, until the member itself answers).
    Referred,
    /// An authenticated datagram from the member came from it.
    Seen,
}

/// The addresses this member knows, bounded.
#[derive(Clone, Debug, Default)]
pub(crate) struct AddressTable {
    known: BTreeMap<MemberId, (WireAddr, Source, LocalTime)>,
}

impl AddressTable {
    /// The member's datagrams come from `addr`.
    pub(crate) fn seen(&mut self, id: MemberId, addr: WireAddr, now: LocalTime) {
        self.insert(id, addr, Source::Seen, now);
    }

    /// Another member says `id` is at `addr`; kept only if we have not
    /// seen `id` ourselves (a hint never overrides what the network showed).
    pub(crate) fn referred(&mut self, id: MemberId, addr: WireAddr, now: LocalTime) {
        if !addr.is_usable() {
            return;
        }
        if self
            .known
            .get(&id)
            .is_some_and(|&(_, s, _)| s == Source::Seen)
        {
            return;
        }
        self.insert(id, addr, Source::Referred, now);
    }

    fn insert(&mut self, id: MemberId, addr: WireAddr, source: Source, now: LocalTime) {
        if self.known.len() >= MAX_ADDRESSES && !self.known.contains_key(&id) {
            // Forget the entry learned the longest ago, hints first.
            if let Some(old) = self
                .known
                .iter()
                .min_by_key(|&(_, &(_, s, t))| (s, t))
                .map(|(&id, _)| id)
            {
                self.known.remove(&old);
            }
        }
        self.known.insert(id, (addr, source, now));
    }

    /// Where `id` can be reached, if known.
    pub(crate) fn get(&self, id: MemberId) -> Option<WireAddr> {
        self.known.get(&id).map(|&(a, _, _)| a)
    }

    /// Forgets addresses of members `keep` rejects that were learned
    /// before `older_than` (strangers that went away).
    pub(crate) fn retain_recent(&mut self, keep: impl Fn(MemberId) -> bool, older_than: LocalTime) {
        self.known
            .retain(|&id, &mut (_, _, t)| keep(id) || t >= older_than);
    }

    /// Every known address.
    pub(crate) fn iter(&self) -> impl Iterator<Item = WireAddr> + '_ {
        self.known.values().map(|&(a, _, _)| a)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.known.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8, port: u16) -> WireAddr {
        WireAddr::V4 {
            ip: [127, 0, 0, last],
            port,
        }
    }

    #[test]
    fn socket_addresses_round_trip_and_mapped_v4_is_v4() {
        let a: SocketAddr = "127.0.0.9:4200".parse().expect("valid");
        assert_eq!(SocketAddr::from(WireAddr::from(a)), a);
        let b: SocketAddr = "[::1]:4200".parse().expect("valid");
        assert_eq!(SocketAddr::from(WireAddr::from(b)), b);
        let mapped: SocketAddr = "[::ffff:127.0.0.9]:4200".parse().expect("valid");
        assert_eq!(WireAddr::from(mapped), WireAddr::from(a));
    }

    #[test]
    fn a_referral_never_overrides_what_was_seen() {
        let mut t = AddressTable::default();
        t.seen(MemberId(1), v4(1, 1), LocalTime(1));
        t.referred(MemberId(1), v4(2, 2), LocalTime(2));
        assert_eq!(t.get(MemberId(1)), Some(v4(1, 1)));
        t.referred(MemberId(2), v4(2, 2), LocalTime(2));
        t.seen(MemberId(2), v4(3, 3), LocalTime(3));
        assert_eq!(t.get(MemberId(2)), Some(v4(3, 3)));
    }

    #[test]
    fn unusable_referred_addresses_are_ignored() {
        let mut t = AddressTable::default();
        t.referred(MemberId(1), v4(1, 0), LocalTime(1));
        t.referred(
            MemberId(2),
            WireAddr::V4 {
                ip: [0, 0, 0, 0],
                port: 9,
            },
            LocalTime(1),
        );
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn the_table_stays_bounded_and_drops_hints_first() {
        let mut t = AddressTable::default();
        t.seen(MemberId(0), v4(0, 1), LocalTime(0));
        for i in 1..(3 * MAX_ADDRESSES as u64) {
            t.referred(MemberId(i), v4(1, 1), LocalTime(i));
            assert!(t.len() <= MAX_ADDRESSES);
        }
        assert_eq!(t.get(MemberId(0)), Some(v4(0, 1)), "seen kept over hints");
    }
}
