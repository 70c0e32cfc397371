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

/// V2PMAILBOX bits.
pub mod mbx {
    /// Request: the VF posted a message.
    pub const REQ: u32 = 0x01;
    /// The VF acknowledges the PF's message.
    pub const ACK: u32 = 0x02;
    /// The VF holds the buffer.
    pub const VFU: u32 = 0x04;
    /// The PF holds the buffer.
    pub const PFU: u32 = 0x08;
    /// The PF posted a message (clear on read).
    pub const PFSTS: u32 = 0x10;
    /// The PF acknowledged the VF's message (clear on read).
    pub const PFACK: u32 = 0x20;
    /// Reset in progress.
    pub const RSTI: u32 = 0x40;
    /// Reset done (clear on read).
    pub const RSTD: u32 = 0x80;
}

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
