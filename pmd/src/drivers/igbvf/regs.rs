//! The 82576 VF register map (VF BAR0, 16 KiB), from the datasheet as reflected in Linux igbvf.
//!
//! Every register is a [`VfReg`]: a value of it is below [`VfReg::EXTENT`] by construction, so
//! once the BAR was checked to map that much (`BarView::new`, at open) no access needs a check.
#![deny(unsafe_code)]

use crate::drivers::igb_family::Dir;
use crate::drivers::igb_family::queue_regs::{QueueBlocks, QueueReg};
use crate::drivers::igb_family::register_type::bar0_registers;

bar0_registers!(
    /// A register of a VF's BAR0: its byte offset, 4-aligned and below [`VfReg::EXTENT`] (the
    /// end of TX queue 1's block, the highest register this driver uses).
    VfReg,
    "82576 VF",
    QUEUE_BLOCKS.tx + QUEUE_BLOCKS.stride * QUEUE_BLOCKS.queues as usize
);

impl VfReg {
    /// Register `r` of the VF's queue `q` of `dir`.
    pub(crate) const fn queue(dir: Dir, q: u16, r: QueueReg) -> VfReg {
        VfReg::new(QUEUE_BLOCKS.offset(dir, q, r))
    }

    /// Word `i` (modulo 16) of the mailbox memory.
    pub(crate) const fn vmbmem(i: usize) -> VfReg {
        VfReg::new(VMBMEM.off() + 4 * (i % crate::sriov::mailbox::MBX_WORDS))
    }
}

/// Device control; RST resets the VF.
pub const CTRL: VfReg = VfReg::new(0x0000);
/// CTRL: VF reset.
pub const CTRL_RST: u32 = 1 << 26;
/// Device status (link up in bit 1).
pub const STATUS: VfReg = VfReg::new(0x0008);
/// STATUS: link up.
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS: full duplex.
pub const STATUS_FD: u32 = 1 << 0;
/// Mailbox memory: 16 words.
pub const VMBMEM: VfReg = VfReg::new(0x0800);
/// The VF's mailbox control.
pub const V2PMAILBOX: VfReg = VfReg::new(0x0C40);

/// Extended interrupt mask set.
pub const VTEIMS: VfReg = VfReg::new(0x1524);
/// Extended interrupt mask clear.
pub const VTEIMC: VfReg = VfReg::new(0x1528);
/// Extended interrupt auto clear.
pub const VTEIAC: VfReg = VfReg::new(0x152C);
/// Extended interrupt cause (write 1 to clear).
pub const VTEICR: VfReg = VfReg::new(0x1580);
/// Interrupt vector allocation of queue 0 (RX in bits 7:0).
pub const VTIVAR0: VfReg = VfReg::new(0x1700);

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

    #[test]
    fn queue_offsets() {
        assert_eq!(VfReg::queue(Dir::Rx, 0, QueueReg::DBAL).off(), 0x2800);
        assert_eq!(VfReg::queue(Dir::Rx, 1, QueueReg::DCTL).off(), 0x2928);
        assert_eq!(VfReg::queue(Dir::Tx, 0, QueueReg::DT).off(), 0x3818);
        assert_eq!(VfReg::queue(Dir::Tx, 1, QueueReg::DCTL).off(), 0x3928);
        assert_eq!(VfReg::vmbmem(17).off(), 0x0804);
        assert_eq!(VfReg::EXTENT, 0x3A00);
    }
}
