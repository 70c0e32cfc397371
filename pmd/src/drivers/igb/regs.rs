//! Intel 82576 PF register map: the registers this driver touches, grouped per block, with the
//! offsets and bits of the 82576 datasheet (as QEMU's `igb` model implements them).
//!
//! Every register is an [`IgbReg`]: a value of it is below [`IgbReg::EXTENT`] by construction,
//! so once the BAR was checked to map that much (`BarView::new`, at open) no access needs a check.
#![deny(unsafe_code)]
#![allow(clippy::unreadable_literal)]

use crate::drivers::igb_family::register_type::bar0_registers;

bar0_registers!(
    /// A register of the PF's BAR0: its byte offset, 4-aligned and below [`IgbReg::EXTENT`]
    /// (the end of TX queue 15's block, the highest register this driver uses).
    IgbReg,
    "82576 PF",
    queue::BLOCKS.tx + queue::BLOCKS.stride * queue::NUM_QUEUES as usize
);

/// Device control and status.
pub mod general {
    use super::IgbReg;
    /// Device control.
    pub const CTRL: IgbReg = IgbReg::new(0x0000);
    /// Device status (read-only).
    pub const STATUS: IgbReg = IgbReg::new(0x0008);
    /// Extended device control.
    pub const CTRL_EXT: IgbReg = IgbReg::new(0x0018);

    /// CTRL: set link up (lets the MAC follow the PHY's link).
    pub const CTRL_SLU: u32 = 1 << 6;
    /// CTRL: VLAN mode enable: received 802.1Q tags (EtherType VET) are stripped into the
    /// descriptor, and TX descriptors with VLE insert one.
    pub const CTRL_VME: u32 = 1 << 30;
    /// CTRL: device reset (self-clearing).
    pub const CTRL_RST: u32 = 1 << 26;

    /// STATUS: full duplex.
    pub const STATUS_FD: u32 = 1 << 0;
    /// STATUS: link up.
    pub const STATUS_LU: u32 = 1 << 1;
    /// STATUS: speed field (bits 7:6): 00 = 10, 01 = 100, 1x = 1000 Mbit/s.
    pub const STATUS_SPEED_MASK: u32 = 0b11 << 6;
    /// STATUS speed field value for 100 Mbit/s.
    pub const STATUS_SPEED_100: u32 = 0b01 << 6;

    /// CTRL_EXT: PF reset done (releases the VFs from reset).
    pub const CTRL_EXT_PFRSTD: u32 = 1 << 14;
    /// CTRL_EXT: a driver has taken the device.
    pub const CTRL_EXT_DRV_LOAD: u32 = 1 << 28;
}

/// Interrupt cause and mask registers. Every interrupt stays masked except those a user asks
/// for (link-state events: LSC on the "other causes" MSI-X vector).
pub mod interrupt {
    use super::IgbReg;
    /// Interrupt cause read (clear on read once GPIE.NSICR is set).
    pub const ICR: IgbReg = IgbReg::new(0x00C0);
    /// Interrupt mask set (and read).
    pub const IMS: IgbReg = IgbReg::new(0x00D0);
    /// Interrupt mask clear.
    pub const IMC: IgbReg = IgbReg::new(0x00D8);
    /// General purpose interrupt enable.
    pub const GPIE: IgbReg = IgbReg::new(0x1514);
    /// Extended interrupt mask set (one bit per MSI-X vector in MSI-X mode).
    pub const EIMS: IgbReg = IgbReg::new(0x1524);
    /// Extended interrupt mask clear.
    pub const EIMC: IgbReg = IgbReg::new(0x1528);
    /// Extended interrupt cause read (write 1 to clear a vector's bit).
    pub const EICR: IgbReg = IgbReg::new(0x1580);
    /// Extended interrupt auto clear: EICR bits cleared when their vector's message is sent.
    pub const EIAC: IgbReg = IgbReg::new(0x152C);
    /// Interrupt vector allocation of the queues: register q holds RX queue q in bits 7:0 (TX
    /// queue q in 15:8, queues q+8 above).
    pub const fn ivar(q: u16) -> IgbReg {
        IgbReg::new(0x1700 + 4 * q as usize)
    }
    /// Interrupt vector allocation of the "other" causes (bits 15:8; TCP timer in 7:0).
    pub const IVAR_MISC: IgbReg = IgbReg::new(0x1740);
    /// Every cause.
    pub const ALL: u32 = 0xFFFF_FFFF;

    /// ICR / IMS: link status change.
    pub const ICR_LSC: u32 = 1 << 2;
    /// GPIE: ICR is cleared by reading it (without it, MSI-X mode keeps ICR set after a read).
    pub const GPIE_NSICR: u32 = 1 << 0;
    /// GPIE: multiple MSI-X vectors (EICR bits are vectors, not queues).
    pub const GPIE_MSIX_MODE: u32 = 1 << 4;
    /// GPIE: PBA support, required in MSI-X mode.
    pub const GPIE_PBA: u32 = 1 << 31;
    /// IVAR entry: the allocation is valid.
    pub const IVAR_VALID: u32 = 0x80;
    /// Shift of the "other causes" entry in IVAR_MISC.
    pub const IVAR_MISC_OTHER_SHIFT: u32 = 8;
}

/// MDI control: PHY register access.
pub mod mdic {
    use super::IgbReg;
    /// MDI control register.
    pub const MDIC: IgbReg = IgbReg::new(0x0020);
    /// Shift of the PHY register number.
    pub const REG_SHIFT: u32 = 16;
    /// Shift of the PHY address.
    pub const PHY_SHIFT: u32 = 21;
    /// The internal PHY's address.
    pub const PHY_ADDR: u32 = 1;
    /// Operation: write.
    pub const OP_WRITE: u32 = 1 << 26;
    /// Operation: read.
    pub const OP_READ: u32 = 2 << 26;
    /// The operation has completed.
    pub const READY: u32 = 1 << 28;
    /// The operation failed.
    pub const ERROR: u32 = 1 << 30;
    /// Mask of the data field.
    pub const DATA_MASK: u32 = 0xFFFF;

    /// PHY register 0: basic mode control (MII BMCR).
    pub const PHY_BMCR: u32 = 0;
    /// BMCR: full duplex.
    pub const BMCR_FULL_DUPLEX: u32 = 0x0100;
    /// BMCR: restart autonegotiation.
    pub const BMCR_RESTART_AN: u32 = 0x0200;
    /// BMCR: autonegotiation enable.
    pub const BMCR_AN_ENABLE: u32 = 0x1000;
    /// BMCR: speed selection MSB (1000 Mbit/s with the LSB clear).
    pub const BMCR_SPEED_1000: u32 = 0x0040;
}

/// Receive control and filters.
pub mod rx {
    use super::IgbReg;
    /// Receive control.
    pub const RCTL: IgbReg = IgbReg::new(0x0100);
    /// Receive checksum control.
    pub const RXCSUM: IgbReg = IgbReg::new(0x5000);

    /// RCTL: receiver enable.
    pub const RCTL_EN: u32 = 1 << 1;
    /// RCTL: unicast promiscuous.
    pub const RCTL_UPE: u32 = 1 << 3;
    /// RCTL: multicast promiscuous.
    pub const RCTL_MPE: u32 = 1 << 4;
    /// RCTL: long packets (beyond 1522 bytes).
    pub const RCTL_LPE: u32 = 1 << 5;
    /// RCTL: loopback mode field (bits 7:6); 01 = MAC loopback.
    pub const RCTL_LBM_MASK: u32 = 0b11 << 6;
    /// RCTL: accept broadcast.
    pub const RCTL_BAM: u32 = 1 << 15;
    /// RCTL: strip the Ethernet CRC.
    pub const RCTL_SECRC: u32 = 1 << 26;

    /// RXCSUM: IPv4 header checksum offload.
    pub const RXCSUM_IPOFLD: u32 = 1 << 8;
    /// RXCSUM: TCP/UDP checksum offload.
    pub const RXCSUM_TUOFLD: u32 = 1 << 9;
    /// RXCSUM: packet checksum disable: the write-back carries the RSS hash (needed for RSS).
    pub const RXCSUM_PCSD: u32 = 1 << 13;

    /// RLPML: the longest frame received with RCTL.LPE, FCS included (bits 13:0).
    pub const RLPML: IgbReg = IgbReg::new(0x5004);
}

/// Transmit control.
pub mod tx {
    use super::IgbReg;
    /// Transmit control.
    pub const TCTL: IgbReg = IgbReg::new(0x0400);
    /// TCTL: transmitter enable.
    pub const TCTL_EN: u32 = 1 << 1;
    /// TCTL: pad short packets.
    pub const TCTL_PSP: u32 = 1 << 3;
    /// TCTL: collision threshold (bits 11:4).
    pub const TCTL_CT_SHIFT: u32 = 4;
    /// TCTL: collision distance (bits 21:12).
    pub const TCTL_COLD_SHIFT: u32 = 12;
    /// TCTL: retransmit on late collision.
    pub const TCTL_RTLC: u32 = 1 << 24;
    /// The TCTL value this driver uses when transmitting (the datasheet's defaults, full duplex).
    pub const TCTL_ON: u32 =
        TCTL_EN | TCTL_PSP | (0xF << TCTL_CT_SHIFT) | (0x3F << TCTL_COLD_SHIFT) | TCTL_RTLC;
}

/// Address filters: the receive address table and the multicast table.
pub mod filter {
    use super::IgbReg;
    /// Multicast table array: 128 registers of 32 bits.
    pub const MTA: IgbReg = IgbReg::new(0x5200);
    /// Word `n` of the multicast table.
    pub const fn mta(n: usize) -> IgbReg {
        IgbReg::new(MTA.off() + 4 * n)
    }
    /// Word `n` of the VLAN filter table (4096 bits).
    pub const fn vfta(n: usize) -> IgbReg {
        IgbReg::new(crate::sriov::regs::vfta(n))
    }
    /// Entries of the multicast table.
    pub const MTA_LEN: usize = 128;
    /// Receive address low of entry 0 (the port's MAC, bytes 0..4).
    pub const RAL0: IgbReg = IgbReg::new(0x5400);
    /// Receive address high of entry 0 (bytes 4..6, AV, pool select).
    pub const RAH0: IgbReg = IgbReg::new(0x5404);
    /// RAH: address valid.
    pub const RAH_AV: u32 = 1 << 31;
}

/// Multiple receive queues and RSS.
pub mod rss {
    use super::IgbReg;
    /// Multiple receive queues command.
    pub const MRQC: IgbReg = IgbReg::new(0x5818);
    /// Redirection table: 32 registers, 128 one-byte entries (queue index in the low 4 bits).
    pub const RETA: IgbReg = IgbReg::new(0x5C00);
    /// Register `n` of the redirection table.
    pub const fn reta(n: usize) -> IgbReg {
        IgbReg::new(RETA.off() + 4 * n)
    }
    /// Entries of the redirection table.
    pub const RETA_ENTRIES: usize = 128;
    /// RSS random key: 10 registers (40 bytes).
    pub const RSSRK: IgbReg = IgbReg::new(0x5C80);
    /// Register `n` of the RSS key.
    pub const fn rssrk(n: usize) -> IgbReg {
        IgbReg::new(RSSRK.off() + 4 * n)
    }
    /// Registers of the RSS key.
    pub const RSSRK_LEN: usize = 10;

    /// MRQC bits 1:0 = 2: RSS without VMDq.
    pub const MRQC_ENABLE_RSS: u32 = 0x2;
    /// Hash TCP over IPv4.
    pub const MRQC_FIELD_IPV4_TCP: u32 = 1 << 16;
    /// Hash IPv4 addresses.
    pub const MRQC_FIELD_IPV4: u32 = 1 << 17;
    /// Hash TCP over IPv6 with extension headers.
    pub const MRQC_FIELD_IPV6_TCP_EX: u32 = 1 << 18;
    /// Hash IPv6 with extension headers.
    pub const MRQC_FIELD_IPV6_EX: u32 = 1 << 19;
    /// Hash IPv6 addresses.
    pub const MRQC_FIELD_IPV6: u32 = 1 << 20;
    /// Hash TCP over IPv6.
    pub const MRQC_FIELD_IPV6_TCP: u32 = 1 << 21;
    /// Hash UDP over IPv4.
    pub const MRQC_FIELD_IPV4_UDP: u32 = 1 << 22;
    /// Hash UDP over IPv6.
    pub const MRQC_FIELD_IPV6_UDP: u32 = 1 << 23;
    /// Every hash field this driver enables.
    pub const MRQC_FIELDS: u32 = MRQC_FIELD_IPV4_TCP
        | MRQC_FIELD_IPV4
        | MRQC_FIELD_IPV6_TCP_EX
        | MRQC_FIELD_IPV6_EX
        | MRQC_FIELD_IPV6
        | MRQC_FIELD_IPV6_TCP
        | MRQC_FIELD_IPV4_UDP
        | MRQC_FIELD_IPV6_UDP;
}

// The statistics registers are listed, with their names, in `super::stats::COUNTERS`.

/// Per-queue registers: RX queue `q` at `0xC000 + 0x40 * q`, TX queue `q` at `0xE000 + 0x40 * q`
/// (the registers of one block are the family's, `igb_family::queue_regs::QueueReg`).
pub mod queue {
    use super::IgbReg;
    use crate::drivers::igb_family::Dir;
    use crate::drivers::igb_family::queue_regs::{QueueBlocks, QueueReg};

    /// Queues of the 82576.
    pub const NUM_QUEUES: u16 = 16;
    /// Where the PF's queue blocks lie.
    pub(crate) const BLOCKS: QueueBlocks = QueueBlocks {
        rx: 0xC000,
        tx: 0xE000,
        stride: 0x40,
        queues: NUM_QUEUES,
    };

    /// Register `r` of queue `q` of `dir`.
    pub(crate) const fn reg(dir: Dir, q: u16, r: QueueReg) -> IgbReg {
        IgbReg::new(BLOCKS.offset(dir, q, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_blocks_follow_the_datasheet() {
        use crate::drivers::igb_family::Dir;
        use crate::drivers::igb_family::queue_regs::QueueReg;
        assert_eq!(queue::reg(Dir::Rx, 0, QueueReg::DBAL).off(), 0xC000);
        assert_eq!(queue::reg(Dir::Rx, 1, QueueReg::DT).off(), 0xC058);
        assert_eq!(queue::reg(Dir::Rx, 3, QueueReg::DCTL).off(), 0xC0E8);
        assert_eq!(queue::reg(Dir::Tx, 0, QueueReg::DT).off(), 0xE018);
        assert_eq!(queue::reg(Dir::Tx, 2, QueueReg::DCTL).off(), 0xE0A8);
        assert_eq!(interrupt::ivar(3).off(), 0x170C);
        assert_eq!(filter::vfta(127).off(), 0x57FC);
        assert_eq!(IgbReg::EXTENT, 0xE400);
        assert_eq!(tx::TCTL_ON, 0x0103_F0FA);
        assert_eq!(rss::MRQC_FIELDS, 0x00FF_0000);
    }
}
