//! `BufMeta`: the metadata of one buffer, in its pool's CPU-only arena.

use super::flags::OffloadFlags;
use crate::mempool::PoolShared;

/// The metadata of one buffer, in its pool's CPU-only metadata arena (like `rte_mbuf`'s two cache
/// lines, but out of the device's reach). The identity fields (`pool`, `buf_addr`, `buf_iova`,
/// `buf_len`, `headroom`) are written once, when the pool is carved; the per-use fields are
/// written only through `Packet`'s checked operations and the pool's reset.
///
/// The first cache line holds what every packet's datapath touches; the second what only chained
/// packets and segmentation offload touch (`next`, `tso_segsz`), so a single-segment packet's
/// receive, forward and free never reads it.
///
/// Chain invariant: for a buffer that heads a packet (a `Packet`, a raw buffer a driver holds)
/// and for every buffer in a pool, `nb_segs == 1` exactly when `next` is null. Only the head's
/// `nb_segs` and `pkt_len` count; inside a chain they are stale, and they are set again when a
/// segment is split off to head a packet of its own.
#[repr(C, align(64))]
pub(crate) struct BufMeta {
    /// Owning pool (identity and where the buffer returns).
    pub(crate) pool: *const PoolShared,
    /// CPU address of the buffer (start of the headroom) in the pool's DMA region.
    pub(crate) buf_addr: *mut u8,
    /// IOVA of `buf_addr`.
    pub(crate) buf_iova: u64,
    /// Offset of this segment's data from `buf_addr`.
    pub(crate) data_off: u16,
    /// Bytes of data in this segment.
    pub(crate) data_len: u16,
    /// Headroom + data room.
    pub(crate) buf_len: u16,
    /// Default headroom (data offset after reset).
    pub(crate) headroom: u16,
    pub(crate) port: u16,
    pub(crate) queue: u16,
    pub(crate) rss_hash: u32,
    pub(crate) flags: OffloadFlags,
    pub(crate) vlan_tci: u16,
    /// Segments in the packet this buffer heads (1: not chained).
    pub(crate) nb_segs: u16,
    /// Bytes of data in all segments of the packet this buffer heads.
    pub(crate) pkt_len: u32,
    pub(crate) user: u64,
    // Second cache line.
    /// The next segment of the chain, null in the last (and in a single-segment packet).
    pub(crate) next: *mut BufMeta,
    /// TCP segmentation offload: payload bytes per segment (MSS); valid with `TX_TCP_SEG`.
    pub(crate) tso_segsz: u16,
}

/// Size of one buffer's metadata (in the metadata arena, not in the DMA region).
pub const META_SIZE: usize = core::mem::size_of::<BufMeta>();
const _: () = assert!(META_SIZE == 128);
const _: () = assert!(core::mem::offset_of!(BufMeta, next) == 64);

impl BufMeta {
    /// The metadata of a freshly carved buffer: identity as given, per-use fields reset.
    pub(crate) fn new(
        pool: *const PoolShared,
        buf_addr: *mut u8,
        buf_iova: u64,
        buf_len: u16,
        headroom: u16,
    ) -> Self {
        let mut m = BufMeta {
            pool,
            buf_addr,
            buf_iova,
            data_off: 0,
            data_len: 0,
            buf_len,
            headroom,
            port: 0,
            queue: 0,
            rss_hash: 0,
            flags: OffloadFlags::EMPTY,
            vlan_tci: 0,
            nb_segs: 1,
            pkt_len: 0,
            user: 0,
            next: core::ptr::null_mut(),
            tso_segsz: 0,
        };
        m.reset();
        m
    }

    /// Resets the per-use metadata of a single-segment buffer (data offset, lengths, port, queue,
    /// hash, flags, VLAN, user). Touches the first cache line only: `next` is null already (the
    /// chain invariant), and `tso_segsz` counts only with `TX_TCP_SEG`, which the flags clear.
    #[inline(always)]
    pub(crate) fn reset(&mut self) {
        debug_assert!(self.next.is_null() && self.nb_segs == 1);
        self.data_off = self.headroom;
        self.data_len = 0;
        self.pkt_len = 0;
        self.port = 0;
        self.queue = 0;
        self.rss_hash = 0;
        self.flags = OffloadFlags::EMPTY;
        self.vlan_tci = 0;
        self.user = 0;
    }

    /// [`reset`](Self::reset), but with `fill`'s data length, port and queue in place of the
    /// zeros, in the same pass.
    ///
    /// # Safety
    /// `headroom + fill.data_len <= buf_len` (the length fits the data room): the packet's data
    /// slices are made from these fields without another check.
    #[inline(always)]
    pub(crate) unsafe fn reset_filled(&mut self, fill: &crate::mempool::FillTemplate) {
        debug_assert!(self.next.is_null() && self.nb_segs == 1);
        debug_assert!(self.headroom + fill.data_len <= self.buf_len);
        self.data_off = self.headroom;
        self.data_len = fill.data_len;
        self.pkt_len = u32::from(fill.data_len);
        self.port = fill.port;
        self.queue = fill.queue;
        self.rss_hash = 0;
        self.flags = OffloadFlags::EMPTY;
        self.vlan_tci = 0;
        self.user = 0;
    }
}
