//! Receive-side scaling configuration: which header fields a device hashes ([`RssHash`]), the
//! hash key and the redirection table (RETA) that maps the hash's low bits to RX queues. Set at
//! configure ([`PortConfig::rss_key`](crate::PortConfig::rss_key),
//! [`PortConfig::rss_hash`](crate::PortConfig::rss_hash)) and at run time
//! ([`Port::rss_reta_update`](crate::Port::rss_reta_update)); what a device offers is in
//! [`DeviceInfo`](crate::DeviceInfo) (`reta_size`, `rss_key_len`, `rss_hash`).
#![forbid(unsafe_code)]

crate::flag_set::flag_set! {
    /// The header fields a device may hash, as a set (DPDK's `RTE_ETH_RSS_*` of the same name).
    RssHash {
        /// IPv4 source and destination addresses (any IPv4 packet).
        IPV4 = 0, "ipv4";
        /// IPv4 addresses and TCP ports.
        IPV4_TCP = 1, "ipv4-tcp";
        /// IPv4 addresses and UDP ports.
        IPV4_UDP = 2, "ipv4-udp";
        /// IPv6 source and destination addresses.
        IPV6 = 3, "ipv6";
        /// IPv6 addresses and TCP ports.
        IPV6_TCP = 4, "ipv6-tcp";
        /// IPv6 addresses and UDP ports.
        IPV6_UDP = 5, "ipv6-udp";
        /// IPv6 addresses from the extension headers (home address, routing header).
        IPV6_EX = 6, "ipv6-ex";
        /// IPv6 TCP with the addresses from the extension headers.
        IPV6_TCP_EX = 7, "ipv6-tcp-ex";
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
