//! Receive-side scaling configuration: which header fields a device hashes ([`RssHash`]), the
//! hash key and the redirection table (RETA) that maps the hash's low bits to RX queues. Set at
//! configure ([`PortConfig::rss_key`](crate::PortConfig::rss_key),
//! [`PortConfig::rss_hash`](crate::PortConfig::rss_hash)) and at run time
//! ([`Port::rss_reta_update`](crate::Port::rss_reta_update)); what a device offers is in
//! [`DeviceInfo`](crate::DeviceInfo) (`reta_size`, `rss_key_len`, `rss_hash`).
#![forbid(unsafe_code)]

use std::fmt;

/// The header fields a device may hash, as a set (DPDK's `RTE_ETH_RSS_*` of the same name).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RssHash(u32);

impl RssHash {
    /// None.
    pub const NONE: Self = Self(0);
    /// IPv4 source and destination addresses (any IPv4 packet).
    pub const IPV4: Self = Self(1 << 0);
    /// IPv4 addresses and TCP ports.
    pub const IPV4_TCP: Self = Self(1 << 1);
    /// IPv4 addresses and UDP ports.
    pub const IPV4_UDP: Self = Self(1 << 2);
    /// IPv6 source and destination addresses.
    pub const IPV6: Self = Self(1 << 3);
    /// IPv6 addresses and TCP ports.
    pub const IPV6_TCP: Self = Self(1 << 4);
    /// IPv6 addresses and UDP ports.
    pub const IPV6_UDP: Self = Self(1 << 5);
    /// IPv6 addresses from the extension headers (home address, routing header).
    pub const IPV6_EX: Self = Self(1 << 6);
    /// IPv6 TCP with the addresses from the extension headers.
    pub const IPV6_TCP_EX: Self = Self(1 << 7);

    const NAMES: [(Self, &'static str); 8] = [
        (Self::IPV4, "ipv4"),
        (Self::IPV4_TCP, "ipv4-tcp"),
        (Self::IPV4_UDP, "ipv4-udp"),
        (Self::IPV6, "ipv6"),
        (Self::IPV6_TCP, "ipv6-tcp"),
        (Self::IPV6_UDP, "ipv6-udp"),
        (Self::IPV6_EX, "ipv6-ex"),
        (Self::IPV6_TCP_EX, "ipv6-tcp-ex"),
    ];

    /// Whether every type of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no type is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl std::ops::BitOr for RssHash {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

impl fmt::Debug for RssHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RssHash({self})")
    }
}

impl fmt::Display for RssHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Self::NAMES
            .iter()
            .filter(|(h, _)| self.contains(*h))
            .map(|(_, n)| *n)
            .collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}

/// The redirection table a port starts with: entry `i` to queue `i % queues`.
pub fn round_robin_reta(size: usize, queues: u16) -> Vec<u16> {
    let q = queues.max(1);
    (0..size).map(|i| (i % usize::from(q)) as u16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_print_their_names_and_contain() {
        let h = RssHash::IPV4 | RssHash::IPV4_UDP;
        assert_eq!(h.to_string(), "ipv4,ipv4-udp");
        assert!(h.contains(RssHash::IPV4) && !h.contains(RssHash::IPV6));
        assert_eq!(RssHash::NONE.to_string(), "none");
        assert_eq!(round_robin_reta(8, 3), vec![0, 1, 2, 0, 1, 2, 0, 1]);
    }
}
