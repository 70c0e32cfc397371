//! Layout and bits of the 16-byte advanced descriptors (82576 / igb, igbvf; identical on 82599 / ixgbe).
//!
//! Descriptors live in memory the device reads and writes, so they are never Rust references: every
//! access is a volatile load or store through a raw pointer to one naturally aligned field.
#![allow(clippy::unreadable_literal)]

/// Size of one descriptor in bytes.
pub const DESC_SIZE: usize = 16;
/// Descriptor ring length in bytes must be a multiple of this (RDLEN / TDLEN), base aligned to it.
pub const RING_ALIGN: usize = 128;

/// RX read format (what the driver posts).
pub mod rx_read {
    /// Offset of the packet buffer address (u64).
    pub const PKT_ADDR: usize = 0;
    /// Offset of the header buffer address (u64, 0: no header split).
    pub const HDR_ADDR: usize = 8;
}

/// RX write-back format (what the device returns).
pub mod rx_wb {
    /// Offset of pkt_info (u16: RSS type in bits 3:0, packet type above).
    pub const PKT_INFO: usize = 0;
    /// Offset of the RSS hash (u32).
    pub const RSS_HASH: usize = 4;
    /// Offset of status/error (u32).
    pub const STATUS_ERROR: usize = 8;
    /// Offset of the length of the data in this descriptor's buffer (u16).
    pub const LENGTH: usize = 12;
    /// Offset of the VLAN tag (u16).
    pub const VLAN: usize = 14;
}

/// RX status bits (low part of status_error).
pub mod rx_status {
    /// Descriptor done: the device wrote this descriptor back.
    pub const DD: u32 = 0x1;
    /// End of packet: the last descriptor of a frame.
    pub const EOP: u32 = 0x2;
    /// The frame carried a VLAN tag (stripped into the VLAN field).
    pub const VP: u32 = 0x8;
    /// The device checked the L4 (TCP/UDP) checksum.
    pub const L4CS: u32 = 0x20;
    /// The device checked the IPv4 header checksum.
    pub const IPCS: u32 = 0x40;
}

/// RX error bits (high part of status_error).
pub mod rx_error {
    /// L4 checksum error.
    pub const L4E: u32 = 0x2000_0000;
    /// IPv4 header checksum error.
    pub const IPE: u32 = 0x4000_0000;
    /// Frame error (CRC, symbol, ...): RXE.
    pub const RXE: u32 = 0x8000_0000;
    /// Error bits that make a frame unusable.
    pub const FRAME: u32 = RXE;
}

/// Mask of the RSS type field in pkt_info; non-zero means the RSS hash is valid.
pub const RX_PKT_INFO_RSS_TYPE_MASK: u16 = 0xF;

/// TX data and context descriptor fields.
pub mod tx {
    /// Offset of the buffer address (u64) in a data descriptor.
    pub const BUFFER_ADDR: usize = 0;
    /// Offset of cmd_type_len (u32) in a data descriptor.
    pub const CMD_TYPE_LEN: usize = 8;
    /// Offset of olinfo_status (u32) in a data descriptor; the write-back DD bit lives here too.
    pub const OLINFO_STATUS: usize = 12;

    /// Descriptor type: advanced data.
    pub const DTYP_DATA: u32 = 0x0030_0000;
    /// Descriptor type: advanced context.
    pub const DTYP_CTXT: u32 = 0x0020_0000;
    /// End of packet.
    pub const CMD_EOP: u32 = 0x0100_0000;
    /// Insert FCS (CRC).
    pub const CMD_IFCS: u32 = 0x0200_0000;
    /// Report status: the device writes DD back into this descriptor.
    pub const CMD_RS: u32 = 0x0800_0000;
    /// Descriptor extension: advanced format.
    pub const CMD_DEXT: u32 = 0x2000_0000;
    /// VLAN insertion.
    pub const CMD_VLE: u32 = 0x4000_0000;
    /// Shift of PAYLEN in olinfo_status.
    pub const PAYLEN_SHIFT: u32 = 14;
    /// Shift of the context index (IDX) in olinfo_status and mss_l4len_idx.
    pub const IDX_SHIFT: u32 = 4;
    /// Insert the IPv4 header checksum (olinfo POPTS).
    pub const POPTS_IXSM: u32 = 0x100;
    /// Insert the TCP/UDP checksum (olinfo POPTS).
    pub const POPTS_TXSM: u32 = 0x200;
    /// Write-back: descriptor done (in olinfo_status / the status dword).
    pub const STA_DD: u32 = 0x1;

    /// Context descriptor: offset of vlan_macip_lens (u32): IPLEN bits 8:0, MACLEN bits 15:9, VLAN 31:16.
    pub const CTX_VLAN_MACIP_LENS: usize = 0;
    /// Context descriptor: offset of seqnum_seed (u32, 0).
    pub const CTX_SEQNUM_SEED: usize = 4;
    /// Context descriptor: offset of type_tucmd_mlhl (u32).
    pub const CTX_TYPE_TUCMD_MLHL: usize = 8;
    /// Context descriptor: offset of mss_l4len_idx (u32).
    pub const CTX_MSS_L4LEN_IDX: usize = 12;
    /// Shift of MACLEN in vlan_macip_lens.
    pub const CTX_MACLEN_SHIFT: u32 = 9;
    /// Shift of the VLAN tag in vlan_macip_lens.
    pub const CTX_VLAN_SHIFT: u32 = 16;
    /// TUCMD: the packet is IPv4 (IP checksum may be inserted).
    pub const TUCMD_IPV4: u32 = 0x0400;
    /// TUCMD L4 type: UDP.
    pub const TUCMD_L4T_UDP: u32 = 0x0000;
    /// TUCMD L4 type: TCP.
    pub const TUCMD_L4T_TCP: u32 = 0x0800;
    /// TUCMD L4 type: SCTP.
    pub const TUCMD_L4T_SCTP: u32 = 0x1000;
    /// Data descriptor DCMD: TCP segmentation (the context holds MSS and L4LEN).
    pub const CMD_TSE: u32 = 0x8000_0000;
    /// Shift of the MSS in mss_l4len_idx.
    pub const CTX_MSS_SHIFT: u32 = 16;
    /// Shift of L4LEN (the TCP header length) in mss_l4len_idx.
    pub const CTX_L4LEN_SHIFT: u32 = 8;
}

/// Pointer to field `off` of descriptor `idx` in a ring starting at `base`.
///
/// # Safety
/// `base` must point to a ring of more than `idx` descriptors and `off + size_of::<T>() <= 16`.
#[inline(always)]
pub(crate) unsafe fn field<T>(base: *mut u8, idx: usize, off: usize) -> *mut T {
    // SAFETY: the caller guarantees the descriptor and field lie inside the ring allocation.
    unsafe { base.add(idx * DESC_SIZE + off).cast::<T>() }
}

/// Volatile load of a little-endian u32 field.
///
/// # Safety
/// As [`field`]; `off` is 4-byte aligned and the ring base is 16-byte aligned.
#[inline(always)]
pub(crate) unsafe fn read_u32(base: *mut u8, idx: usize, off: usize) -> u32 {
    // SAFETY: in bounds and aligned per the caller's contract; volatile because the device writes it.
    u32::from_le(unsafe { field::<u32>(base, idx, off).read_volatile() })
}

/// Volatile load of a little-endian u16 field.
///
/// # Safety
/// As [`field`]; `off` is 2-byte aligned.
#[inline(always)]
pub(crate) unsafe fn read_u16(base: *mut u8, idx: usize, off: usize) -> u16 {
    // SAFETY: in bounds and aligned per the caller's contract; volatile because the device writes it.
    u16::from_le(unsafe { field::<u16>(base, idx, off).read_volatile() })
}

/// Volatile store of a little-endian u32 field.
///
/// # Safety
/// As [`field`]; `off` is 4-byte aligned; the CPU owns the descriptor.
#[inline(always)]
pub(crate) unsafe fn write_u32(base: *mut u8, idx: usize, off: usize, v: u32) {
    // SAFETY: in bounds and aligned per the caller's contract.
    unsafe { field::<u32>(base, idx, off).write_volatile(v.to_le()) }
}

/// Volatile store of a little-endian u64 field.
///
/// # Safety
/// As [`field`]; `off` is 8-byte aligned; the CPU owns the descriptor.
#[inline(always)]
pub(crate) unsafe fn write_u64(base: *mut u8, idx: usize, off: usize, v: u64) {
    // SAFETY: in bounds and aligned per the caller's contract.
    unsafe { field::<u64>(base, idx, off).write_volatile(v.to_le()) }
}

/// Volatile load of a little-endian u64 field (the device's side: only the fake device reads
/// what the driver wrote).
///
/// # Safety
/// As [`field`]; `off` is 8-byte aligned.
#[cfg(any(test, feature = "test-support"))]
#[inline(always)]
pub(crate) unsafe fn read_u64(base: *mut u8, idx: usize, off: usize) -> u64 {
    // SAFETY: in bounds and aligned per the caller's contract.
    u64::from_le(unsafe { field::<u64>(base, idx, off).read_volatile() })
}
