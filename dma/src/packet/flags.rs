//! [`OffloadFlags`]: offload and status flags of a packet.

/// Offload and status flags of a packet (a bit set, in the manner of `rte_mbuf.ol_flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct OffloadFlags(pub u64);

impl OffloadFlags {
    /// No flag.
    pub const EMPTY: Self = Self(0);
    /// RX: the RSS hash field is valid.
    pub const RX_RSS_HASH: Self = Self(1 << 0);
    /// RX: the device checked the IPv4 header checksum and it is good.
    pub const RX_IP_CKSUM_GOOD: Self = Self(1 << 1);
    /// RX: the IPv4 header checksum is bad.
    pub const RX_IP_CKSUM_BAD: Self = Self(1 << 2);
    /// RX: the TCP/UDP checksum is good.
    pub const RX_L4_CKSUM_GOOD: Self = Self(1 << 3);
    /// RX: the TCP/UDP checksum is bad.
    pub const RX_L4_CKSUM_BAD: Self = Self(1 << 4);
    /// RX: a VLAN tag was stripped into the VLAN TCI field.
    pub const RX_VLAN_STRIPPED: Self = Self(1 << 5);
    /// TX: compute the IPv4 header checksum.
    pub const TX_IP_CKSUM: Self = Self(1 << 32);
    /// TX: compute the TCP checksum.
    pub const TX_TCP_CKSUM: Self = Self(1 << 33);
    /// TX: compute the UDP checksum.
    pub const TX_UDP_CKSUM: Self = Self(1 << 34);
    /// TX: insert the VLAN tag from the VLAN TCI field.
    pub const TX_VLAN_INSERT: Self = Self(1 << 35);
    /// TX: TCP segmentation offload.
    pub const TX_TCP_SEG: Self = Self(1 << 36);

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether no flag is set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Sets the flags of `other`.
    #[inline]
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }
    /// Clears the flags of `other`.
    #[inline]
    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }
}

impl core::ops::BitOr for OffloadFlags {
    type Output = Self;
    #[inline]
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}
impl core::ops::BitOrAssign for OffloadFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}
impl core::ops::BitAnd for OffloadFlags {
    type Output = Self;
    #[inline]
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}
