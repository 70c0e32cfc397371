//! [`HeaderLayout`]: where a frame's L2, L3 and L4 headers are, read once with bounds checks,
//! for every TX offload (the Intel context descriptor, virtio-net's checksum and segmentation
//! fields, software checksums).
#![forbid(unsafe_code)]

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
/// EtherType of an 802.1Q tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// The network-layer protocol of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3 {
    /// IPv4 (its header length in [`HeaderLayout::l3_len`]).
    Ipv4,
    /// IPv6 without extension headers (40 bytes).
    Ipv6,
}

/// Offsets and lengths of a frame's headers: Ethernet (one 802.1Q tag allowed), IPv4 or IPv6,
/// then TCP or UDP. Built by [`HeaderLayout::parse`], which checks every length against the
/// bytes it is given, so every offset it reports lies inside them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLayout {
    /// Bytes of the Ethernet header and its VLAN tag (14 or 18).
    pub l2_len: usize,
    /// The network protocol.
    pub l3: L3,
    /// Bytes of the IP header (IPv4: IHL * 4; IPv6: 40).
    pub l3_len: usize,
    /// The IP protocol field (IPv4) or next header (IPv6).
    pub proto: u8,
    /// Bytes of the TCP header (data offset * 4) or 8 for UDP; 0 when the L4 header is of
    /// another protocol or does not fit in the bytes given.
    pub l4_len: usize,
}

impl HeaderLayout {
    /// The headers at the start of `d` (the first segment of a packet: offloads need every
    /// header there), or `None` when they are not Ethernet + IPv4/IPv6 or do not fit.
    pub fn parse(d: &[u8]) -> Option<HeaderLayout> {
        let be16 = |at: usize| d.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let mut l2_len = 14;
        let mut ethertype = be16(12)?;
        if ethertype == ETHERTYPE_VLAN {
            l2_len = 18;
            ethertype = be16(16)?;
        }
        let (l3, l3_len, proto) = match ethertype {
            ETHERTYPE_IPV4 => {
                let ihl = usize::from(*d.get(l2_len)? & 0xF) * 4;
                (L3::Ipv4, ihl, *d.get(l2_len + 9)?)
            }
            ETHERTYPE_IPV6 => (L3::Ipv6, 40, *d.get(l2_len + 6)?),
            _ => return None,
        };
        if l3_len < 20 || d.len() < l2_len + l3_len {
            return None;
        }
        let l4 = l2_len + l3_len;
        let l4_len = match proto {
            PROTO_TCP => d
                .get(l4 + 12)
                .map(|b| usize::from(b >> 4) * 4)
                .filter(|&n| n >= 20 && d.len() >= l4 + n)
                .unwrap_or(0),
            PROTO_UDP if d.len() >= l4 + 8 => 8,
            _ => 0,
        };
        Some(HeaderLayout {
            l2_len,
            l3,
            l3_len,
            proto,
            l4_len,
        })
    }

    /// Offset of the L4 header.
    pub fn l4_offset(&self) -> usize {
        self.l2_len + self.l3_len
    }

    /// Bytes of every header (L2 + L3 + L4): where a TCP segment's payload starts.
    pub fn header_len(&self) -> usize {
        self.l4_offset() + self.l4_len
    }

    /// Whether the L4 header is a complete TCP header.
    pub fn is_tcp(&self) -> bool {
        self.proto == PROTO_TCP && self.l4_len >= 20
    }

    /// Whether the L4 header is a complete UDP header.
    pub fn is_udp(&self) -> bool {
        self.proto == PROTO_UDP && self.l4_len == 8
    }

    /// The headers of a packet a device is to cut into TCP segments (TSO), when every one of
    /// them is at the start of `d` (the first segment), it is TCP, and segments of `mss` payload
    /// bytes make frames of at most `max_frame` bytes. What else a device bounds (the whole
    /// packet's length, its field widths, the families it negotiated) its driver checks.
    pub fn for_tso(d: &[u8], mss: u16, max_frame: usize) -> Option<HeaderLayout> {
        let h = HeaderLayout::parse(d).filter(HeaderLayout::is_tcp)?;
        let mss = usize::from(mss);
        (mss >= 1 && h.header_len() + mss <= max_frame).then_some(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ethertype: u16, vlan: bool, l3: &[u8], l4: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            f.extend_from_slice(&[0, 100]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f.extend_from_slice(l4);
        f
    }

    fn ipv4(ihl: u8, proto: u8) -> Vec<u8> {
        let mut h = vec![0u8; usize::from(ihl) * 4];
        h[0] = 0x40 | ihl;
        h[9] = proto;
        h
    }

    fn tcp(doff: u8) -> Vec<u8> {
        let mut t = vec![0u8; usize::from(doff) * 4];
        t[12] = doff << 4;
        t
    }

    #[test]
    fn ipv4_tcp_with_options_and_a_vlan_tag() {
        let f = frame(ETHERTYPE_IPV4, true, &ipv4(6, PROTO_TCP), &tcp(8));
        let h = HeaderLayout::parse(&f).unwrap();
        assert_eq!((h.l2_len, h.l3, h.l3_len, h.l4_len), (18, L3::Ipv4, 24, 32));
        assert_eq!((h.l4_offset(), h.header_len()), (42, 74));
        assert!(h.is_tcp() && !h.is_udp());
    }

    #[test]
    fn ipv6_udp() {
        let mut v6 = vec![0u8; 40];
        v6[6] = PROTO_UDP;
        let f = frame(ETHERTYPE_IPV6, false, &v6, &[0; 8]);
        let h = HeaderLayout::parse(&f).unwrap();
        assert_eq!((h.l2_len, h.l3, h.l3_len, h.l4_len), (14, L3::Ipv6, 40, 8));
        assert!(h.is_udp());
    }

    #[test]
    fn truncated_or_lying_headers_are_refused_or_bounded() {
        // An IHL below 5, an IHL beyond the bytes, a TCP data offset beyond the bytes.
        assert!(HeaderLayout::parse(&frame(ETHERTYPE_IPV4, false, &ipv4(4, PROTO_TCP), &[])).is_none());
        let mut big = ipv4(5, PROTO_TCP);
        big[0] = 0x4F;
        assert!(HeaderLayout::parse(&frame(ETHERTYPE_IPV4, false, &big, &[])).is_none());
        let mut t = tcp(5);
        t[12] = 15 << 4;
        let h = HeaderLayout::parse(&frame(ETHERTYPE_IPV4, false, &ipv4(5, PROTO_TCP), &t)).unwrap();
        assert_eq!(
            h.l4_len, 0,
            "a TCP header longer than the frame is not a TCP header"
        );
        assert!(!h.is_tcp());
        assert!(HeaderLayout::parse(&frame(0x0806, false, &[0; 28], &[])).is_none());
        assert!(HeaderLayout::parse(&[0u8; 13]).is_none());
        for n in 0..60 {
            let f = frame(ETHERTYPE_IPV4, true, &ipv4(5, PROTO_TCP), &tcp(5));
            if let Some(h) = HeaderLayout::parse(&f[..n.min(f.len())]) {
                assert!(h.header_len() <= n);
            }
        }
    }

    #[test]
    fn tso_needs_tcp_and_a_segment_that_fits() {
        let f = frame(ETHERTYPE_IPV4, false, &ipv4(5, PROTO_TCP), &tcp(5));
        // 14 + 20 + 20 bytes of headers: an MSS of 1446 makes 1500-byte frames.
        assert_eq!(
            HeaderLayout::for_tso(&f, 1446, 1500).map(|h| h.header_len()),
            Some(54)
        );
        assert!(HeaderLayout::for_tso(&f, 1447, 1500).is_none());
        assert!(HeaderLayout::for_tso(&f, 0, 1500).is_none());
        let udp = frame(ETHERTYPE_IPV4, false, &ipv4(5, PROTO_UDP), &[0; 8]);
        assert!(HeaderLayout::for_tso(&udp, 100, 1500).is_none());
    }
}
