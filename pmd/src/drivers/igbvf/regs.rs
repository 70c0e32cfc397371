//! The 82576 VF register map (VF BAR0, 16 KiB), from the datasheet as reflected in Linux igbvf.
#![forbid(unsafe_code)]

/// Device control; RST resets the VF.
pub const CTRL: usize = 0x0000;
/// CTRL: VF reset.
pub const CTRL_RST: u32 = 1 << 26;
/// Device status (link up in bit 1).
pub const STATUS: usize = 0x0008;
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS: full duplex.
pub const STATUS_FD: u32 = 1 << 0;
/// Mailbox memory: 16 words.
pub const VMBMEM: usize = 0x0800;
/// The VF's mailbox control.
pub const V2PMAILBOX: usize = 0x0C40;
/// Interrupt mask clear.
pub const EIMC: usize = 0x1528;

/// V2PMAILBOX bits (defined once, in the mailbox protocol).
pub use crate::sriov::mailbox::v2p as mbx;

/// Queue register `field` of RX queue `q` (0 or 1).
pub const fn rx(q: u16, field: usize) -> usize {
    0x2800 + 0x100 * q as usize + field
}

/// Queue register `field` of TX queue `q` (0 or 1).
pub const fn tx(q: u16, field: usize) -> usize {
    0x3800 + 0x100 * q as usize + field
}

// The statistics registers are listed in `super::stats`.

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::igb::regs::queue;

    #[test]
    fn queue_offsets() {
        assert_eq!(rx(0, queue::DBAL), 0x2800);
        assert_eq!(rx(1, queue::DCTL), 0x2928);
        assert_eq!(tx(0, queue::DT), 0x3818);
        assert_eq!(tx(1, queue::DCTL), 0x3928);
    }
}
