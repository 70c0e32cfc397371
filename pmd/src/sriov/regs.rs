//! PF-side register map of the 82576's VF mailboxes, VMDq pools, VLAN filters and per-pool
//! statistics (offsets in the PF's BAR0), from the datasheet as reflected in Linux igb
//! (e1000_regs.h) and QEMU's igb model (hw/net/igb_regs.h).
#![forbid(unsafe_code)]

/// P2VMAILBOX(vf): the PF's view of VF `vf`'s mailbox control.
pub const fn p2vmailbox(vf: usize) -> usize {
    0x0C00 + 4 * vf
}
/// P2VMAILBOX: the PF sent a message (the VF sees PFSTS).
pub const P2V_STS: u32 = 0x01;
/// P2VMAILBOX: the PF acknowledges the VF's message (the VF sees PFACK).
pub const P2V_ACK: u32 = 0x02;
/// P2VMAILBOX: the VF holds the buffer (read only).
pub const P2V_VFU: u32 = 0x04;
/// P2VMAILBOX: the PF holds the buffer.
pub const P2V_PFU: u32 = 0x08;
/// P2VMAILBOX: force the VF's lock off.
pub const P2V_RVFU: u32 = 0x10;
/// VMBMEM(vf): VF `vf`'s 16-word mailbox memory.
pub const fn vmbmem(vf: usize) -> usize {
    0x0800 + 0x40 * vf
}
/// Mailbox VF interrupt causes: VFREQ bits 7:0, VFACK bits 23:16 (write 1 to clear).
pub const MBVFICR: usize = 0x0C80;
/// MBVFICR: VF `vf` sent a request.
pub const fn mbvficr_req(vf: usize) -> u32 {
    1 << vf
}
/// MBVFICR: VF `vf` acknowledged the PF's message.
pub const fn mbvficr_ack(vf: usize) -> u32 {
    1 << (16 + vf)
}
/// Mailbox interrupt mask.
pub const MBVFIMR: usize = 0x0C84;
/// VF function-level reset events (write 1 to clear).
pub const VFLRE: usize = 0x0C88;
/// Receive enable per pool.
pub const VFRE: usize = 0x0C8C;
/// Transmit enable per pool.
pub const VFTE: usize = 0x0C90;
/// Multiple receive queues command.
pub const MRQC: usize = 0x5818;
/// MRQC: VMDq pools, no RSS.
pub const MRQC_VMDQ: u32 = 0x3;
/// Virtualization control.
pub const VT_CTL: usize = 0x581C;
/// VT_CTL: default pool shift (bits 9:7).
pub const VT_CTL_DEF_POOL_SHIFT: u32 = 7;
/// VT_CTL: drop unmatched unicast instead of delivering it to the default pool.
pub const VT_CTL_DISABLE_DEF_POOL: u32 = 1 << 29;
/// VMOLR(pool): receive options of a pool.
pub const fn vmolr(pool: usize) -> usize {
    0x5AD0 + 4 * pool
}
/// VMOLR: largest frame (bits 13:0) when LPE is set.
pub const VMOLR_RLPML_MASK: u32 = 0x3FFF;
/// VMOLR: long packets up to RLPML.
pub const VMOLR_LPE: u32 = 1 << 16;
/// VMOLR: accept untagged frames.
pub const VMOLR_AUPE: u32 = 1 << 24;
/// VMOLR: accept multicast matching the MTA hash.
pub const VMOLR_ROMPE: u32 = 1 << 25;
/// VMOLR: accept broadcast.
pub const VMOLR_BAM: u32 = 1 << 27;
/// VMOLR: multicast promiscuous.
pub const VMOLR_MPME: u32 = 1 << 28;
/// VMOLR: strip the CRC.
pub const VMOLR_STRCRC: u32 = 1 << 31;
/// TX switch control.
pub const DTXSWC: usize = 0x3500;
/// DTXSWC: MAC anti-spoof enable for pool `p` (bits 7:0).
pub const fn dtxswc_mac_spoof(pool: usize) -> u32 {
    1 << pool
}
/// DTXSWC: switch frames between pools locally (VMDq loopback).
pub const DTXSWC_LOOPBACK: u32 = 1 << 31;
/// Receive address low / high of entry `n` (0..16).
pub const fn ral(n: usize) -> usize {
    0x5400 + 8 * n
}
/// Receive address high of entry `n`.
pub const fn rah(n: usize) -> usize {
    0x5404 + 8 * n
}
/// RAH: the pool select bit of pool `p` (bits 25:18).
pub const fn rah_pool(pool: usize) -> u32 {
    1 << (18 + pool)
}
/// RXDCTL of hardware queue `q`.
pub const fn rxdctl(q: usize) -> usize {
    0xC028 + 0x40 * q
}
/// TXDCTL of hardware queue `q`.
pub const fn txdctl(q: usize) -> usize {
    0xE028 + 0x40 * q
}
/// Queue enable bit of RXDCTL / TXDCTL.
pub const DCTL_ENABLE: u32 = 1 << 25;
/// General purpose interrupt enable.
pub const GPIE: usize = 0x1514;
/// GPIE: non-selective interrupt clear on read.
pub const GPIE_NSICR: u32 = 1 << 0;
/// GPIE: MSI-X mode (per-vector causes; needed for VF interrupts).
pub const GPIE_MSIX_MODE: u32 = 1 << 4;
/// GPIE: extended interrupt auto-mask enable.
pub const GPIE_EIAME: u32 = 1 << 30;
/// GPIE: PBA support.
pub const GPIE_PBA: u32 = 1 << 31;
/// VMOLR: strip the VLAN tag of received frames (the VF sees it in the descriptor).
pub const VMOLR_STRVLAN: u32 = 1 << 30;
/// VMVIR(pool): the pool's default (port) VLAN, inserted on transmit.
pub const fn vmvir(pool: usize) -> usize {
    0x3700 + 4 * pool
}
/// VMVIR: always insert the default VLAN (VLANA = 01b).
pub const VMVIR_VLANA_DEFAULT: u32 = 1 << 30;
/// VLVF(n): VLAN pool filter `n` (0..32): VLAN id, pool bits, enable.
pub const fn vlvf(n: usize) -> usize {
    0x5D00 + 4 * n
}
/// Number of VLVF entries.
pub const VLVF_ENTRIES: usize = 32;
/// VLVF: VLAN id mask (bits 11:0).
pub const VLVF_VLANID_MASK: u32 = 0xFFF;
/// VLVF: pool select bit of pool `p` (bits 19:12).
pub const fn vlvf_pool(pool: usize) -> u32 {
    1 << (12 + pool)
}
/// VLVF: the entry is valid.
pub const VLVF_VI_EN: u32 = 1 << 31;
/// VFTA(n): the VLAN filter table (128 words, one bit per VLAN id).
pub const fn vfta(n: usize) -> usize {
    0x5600 + 4 * n
}
/// Words of the VLAN filter table.
pub const VFTA_WORDS: usize = 128;
/// RCTL: VLAN filter enable (frames with a VLAN tag must match VFTA, and VLVF in VMDq mode).
pub const RCTL_VFE: u32 = 1 << 18;
/// RLPML: the largest frame the port receives with RCTL.LPE (bits 13:0).
pub const RLPML: usize = 0x5004;
/// PVTCTRL(vf): the PF's alias of VF `vf`'s CTRL (RST resets the VF: its queues stop, VFLRE).
pub const fn pvtctrl(vf: usize) -> usize {
    0x10000 + 0x100 * vf
}
/// Per-pool statistics, read by the PF (rolling 32-bit counters, not cleared on read).
pub mod pool_stats {
    /// Good packets received by pool `p`.
    pub const fn gprc(pool: usize) -> usize {
        0x10010 + 0x100 * pool
    }
    /// Good packets transmitted by pool `p`.
    pub const fn gptc(pool: usize) -> usize {
        0x10014 + 0x100 * pool
    }
    /// Good octets received by pool `p`.
    pub const fn gorc(pool: usize) -> usize {
        0x10018 + 0x100 * pool
    }
    /// Good octets transmitted by pool `p`.
    pub const fn gotc(pool: usize) -> usize {
        0x10034 + 0x100 * pool
    }
    /// Multicast packets received by pool `p`.
    pub const fn mprc(pool: usize) -> usize {
        0x1003C + 0x100 * pool
    }
}
