//! 802.1Q VLAN tags in software: insertion on TX and stripping on RX for devices that do not do
//! it themselves (virtio-net has neither), with the same packet metadata as the hardware path
//! (`Packet::vlan_tci`, `OffloadFlags::TX_VLAN_INSERT`, `OffloadFlags::RX_VLAN_STRIPPED`).
#![forbid(unsafe_code)]

use oxpmd_dma::{OffloadFlags, Packet};

/// The 802.1Q tag protocol identifier.
pub const TPID_8021Q: u16 = 0x8100;
/// Bytes of a tag.
pub const TAG_LEN: usize = 4;
/// Destination and source MAC: the tag goes right after them.
const MACS: usize = 12;
/// Largest VLAN id (4095 is reserved by 802.1Q but accepted by filter tables).
pub const MAX_VID: u16 = 4095;

/// Inserts `pkt.vlan_tci()` as an 802.1Q tag after the MAC addresses and clears
/// `TX_VLAN_INSERT`, so that a packet retried after a full ring is not tagged twice. Returns
/// false (the packet unchanged) when it has no 4 bytes of headroom or is shorter than the two
/// MAC addresses.
pub fn insert_tag(pkt: &mut Packet) -> bool {
    if !can_insert_tag(pkt) {
        return false;
    }
    let tci = pkt.vlan_tci();
    if pkt.prepend(TAG_LEN).is_none() {
        return false;
    }
    let d = pkt.data_mut();
    d.copy_within(TAG_LEN..TAG_LEN + MACS, 0);
    d[MACS..MACS + 2].copy_from_slice(&TPID_8021Q.to_be_bytes());
    d[MACS + 2..MACS + 4].copy_from_slice(&tci.to_be_bytes());
    let mut f = pkt.flags();
    f.remove(OffloadFlags::TX_VLAN_INSERT);
    pkt.set_flags(f);
    true
}

/// Whether [`insert_tag`] can tag `pkt`: 4 bytes of headroom and the two MAC addresses.
pub fn can_insert_tag(pkt: &Packet) -> bool {
    pkt.len() >= MACS && pkt.headroom() >= TAG_LEN
}

/// Removes an outer 802.1Q tag, if the frame has one: the TCI goes to `pkt.vlan_tci()` and
/// `RX_VLAN_STRIPPED` is set, as the Intel NICs report a stripped tag. Returns whether it did.
pub fn strip_tag(pkt: &mut Packet) -> bool {
    let d = pkt.data();
    if d.len() < MACS + TAG_LEN + 2 || u16::from_be_bytes([d[MACS], d[MACS + 1]]) != TPID_8021Q {
        return false;
    }
    let tci = u16::from_be_bytes([d[MACS + 2], d[MACS + 3]]);
    pkt.data_mut().copy_within(0..MACS, TAG_LEN);
    if pkt.adjust(TAG_LEN).is_none() {
        return false;
    }
    pkt.set_vlan_tci(tci);
    pkt.set_flags(pkt.flags() | OffloadFlags::RX_VLAN_STRIPPED);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vport::virtual_pool;

    fn frame() -> Vec<u8> {
        let mut f: Vec<u8> = (0..12).collect();
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend(100..146u8);
        f
    }

    #[test]
    fn insert_then_strip_gives_the_frame_and_tci_back() {
        let pool = virtual_pool("vlan-sw", 8, 0).unwrap();
        let mut p = pool.alloc().unwrap();
        p.extend_from_slice(&frame()).unwrap();
        p.set_vlan_tci(0x2064);
        p.set_flags(OffloadFlags::TX_VLAN_INSERT | OffloadFlags::TX_IP_CKSUM);
        assert!(insert_tag(&mut p));
        assert_eq!(p.len(), frame().len() + 4);
        assert_eq!(&p.data()[..12], &frame()[..12]);
        assert_eq!(&p.data()[12..16], &[0x81, 0x00, 0x20, 0x64]);
        assert_eq!(&p.data()[16..], &frame()[12..]);
        assert_eq!(
            p.flags(),
            OffloadFlags::TX_IP_CKSUM,
            "insert flag cleared, others kept"
        );
        p.set_vlan_tci(0);
        p.set_flags(OffloadFlags::EMPTY);
        assert!(strip_tag(&mut p));
        assert_eq!(p.data(), &frame()[..]);
        assert_eq!(p.vlan_tci(), 0x2064);
        assert!(p.flags().contains(OffloadFlags::RX_VLAN_STRIPPED));
        assert!(!strip_tag(&mut p), "untagged now");
    }

    #[test]
    fn no_headroom_or_a_runt_is_left_alone() {
        let pool = virtual_pool("vlan-sw-2", 8, 0).unwrap();
        let mut p = pool.alloc().unwrap();
        let room = p.headroom();
        p.prepend(room).unwrap();
        p.set_len(0).unwrap();
        p.extend_from_slice(&frame()).unwrap();
        assert_eq!(p.headroom(), 0);
        assert!(!insert_tag(&mut p));
        assert_eq!(p.data(), &frame()[..]);
        let mut q = pool.alloc().unwrap();
        q.extend_from_slice(&[0u8; 11]).unwrap();
        assert!(!insert_tag(&mut q));
        assert!(!strip_tag(&mut q));
    }
}
