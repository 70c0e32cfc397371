//! The kernel's AF_XDP ABI (`include/uapi/linux/if_xdp.h`): socket options, the UMEM
//! registration, the ring offsets and descriptors. Plain data; the system calls are elsewhere.
#![forbid(unsafe_code)]

/// `AF_XDP` address family.
pub(crate) const AF_XDP: i32 = 44;
/// `SOL_XDP` socket-option level.
pub(crate) const SOL_XDP: i32 = 283;

/// `setsockopt` / `getsockopt` names.
pub(crate) const XDP_MMAP_OFFSETS: i32 = 1;
pub(crate) const XDP_RX_RING: i32 = 2;
pub(crate) const XDP_TX_RING: i32 = 3;
pub(crate) const XDP_UMEM_REG: i32 = 4;
pub(crate) const XDP_UMEM_FILL_RING: i32 = 5;
pub(crate) const XDP_UMEM_COMPLETION_RING: i32 = 6;
pub(crate) const XDP_STATISTICS: i32 = 7;
pub(crate) const XDP_OPTIONS: i32 = 8;

/// `sxdp_flags` of the bind.
pub(crate) const XDP_SHARED_UMEM: u16 = 1 << 0;
pub(crate) const XDP_COPY: u16 = 1 << 1;
pub(crate) const XDP_ZEROCOPY: u16 = 1 << 2;
pub(crate) const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;

/// `xdp_options.flags`: the socket is bound in zero-copy mode.
pub(crate) const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;

/// Ring flag: the kernel waits for a system call before it looks at the ring again.
pub(crate) const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;

/// mmap page offsets of the four rings.
pub(crate) const XDP_PGOFF_RX_RING: i64 = 0;
pub(crate) const XDP_PGOFF_TX_RING: i64 = 0x8000_0000;
pub(crate) const XDP_UMEM_PGOFF_FILL_RING: i64 = 0x1_0000_0000;
pub(crate) const XDP_UMEM_PGOFF_COMPLETION_RING: i64 = 0x1_8000_0000;

/// Headroom the kernel keeps in front of a received frame in a UMEM chunk (`XDP_PACKET_HEADROOM`).
pub(crate) const XDP_PACKET_HEADROOM: usize = 256;
/// Smallest chunk of an aligned UMEM (`XDP_UMEM_MIN_CHUNK_SIZE`); the largest is the page size.
pub(crate) const XDP_UMEM_MIN_CHUNK_SIZE: usize = 2048;
/// Largest chunk of an aligned UMEM: one 4 KiB page.
pub(crate) const XDP_UMEM_MAX_CHUNK_SIZE: usize = 4096;

/// `struct sockaddr_xdp`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SockaddrXdp {
    pub(crate) family: u16,
    pub(crate) flags: u16,
    pub(crate) ifindex: u32,
    pub(crate) queue_id: u32,
    pub(crate) shared_umem_fd: u32,
}

/// `struct xdp_umem_reg` (with `flags` and `tx_metadata_len`: 32 bytes, accepted since 5.4 with
/// the last field zero).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct XdpUmemReg {
    pub(crate) addr: u64,
    pub(crate) len: u64,
    pub(crate) chunk_size: u32,
    pub(crate) headroom: u32,
    pub(crate) flags: u32,
    pub(crate) tx_metadata_len: u32,
}

/// `struct xdp_ring_offset`: byte offsets in a ring's mapping.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct XdpRingOffset {
    pub(crate) producer: u64,
    pub(crate) consumer: u64,
    pub(crate) desc: u64,
    pub(crate) flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct XdpMmapOffsets {
    pub(crate) rx: XdpRingOffset,
    pub(crate) tx: XdpRingOffset,
    pub(crate) fr: XdpRingOffset,
    pub(crate) cr: XdpRingOffset,
}

/// `struct xdp_desc`: an RX or TX ring entry.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct XdpDesc {
    pub(crate) addr: u64,
    pub(crate) len: u32,
    pub(crate) options: u32,
}

/// `struct xdp_statistics`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    /// Dropped for other reasons.
    pub rx_dropped: u64,
    /// Dropped: an invalid fill descriptor.
    pub rx_invalid_descs: u64,
    /// Dropped: an invalid TX descriptor.
    pub tx_invalid_descs: u64,
    /// Dropped: the RX ring was full.
    pub rx_ring_full: u64,
    /// Times the fill ring was found empty.
    pub rx_fill_ring_empty_descs: u64,
    /// Times the TX ring was found empty.
    pub tx_ring_empty_descs: u64,
}

/// `struct xdp_options`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct XdpOptions {
    pub(crate) flags: u32,
}
