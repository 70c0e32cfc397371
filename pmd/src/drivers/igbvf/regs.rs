//! The 82576 VF register map (VF BAR0, 16 KiB), from the datasheet as reflected in Linux igbvf.
#![forbid(unsafe_code)]

use crate::drivers::igb_family::queue_regs::QueueBlocks;

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

/// Where the VF's two queue blocks lie.
pub(crate) const QUEUE_BLOCKS: QueueBlocks = QueueBlocks {
    rx: 0x2800,
    tx: 0x3800,
    stride: 0x100,
    queues: 2,
};

// The statistics registers are listed in `super::stats`.

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::igb_family::Dir;
    use crate::drivers::igb_family::queue_regs::QueueReg;

    #[test]
    fn queue_offsets() {
        let b = QUEUE_BLOCKS;
        assert_eq!(b.offset(Dir::Rx, 0, QueueReg::DBAL), 0x2800);
        assert_eq!(b.offset(Dir::Rx, 1, QueueReg::DCTL), 0x2928);
        assert_eq!(b.offset(Dir::Tx, 0, QueueReg::DT), 0x3818);
        assert_eq!(b.offset(Dir::Tx, 1, QueueReg::DCTL), 0x3928);
    }
}
