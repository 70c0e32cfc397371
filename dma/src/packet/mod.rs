//! Packet buffers: [`Packet`] (an owned handle, possibly a chain of segments), [`RawBuffer`]
//! (the driver's raw path), [`ChainBuilder`], [`OffloadFlags`] and the [`EthernetHeader`] view.
//!
//! # Where a buffer's parts live
//! ```text
//! metadata arena (CPU only, never mapped for a device)    DMA region (mapped for the device)
//! | BufMeta 128 B | BufMeta 128 B | ...                    | headroom | data room | headroom | ...
//!   ^ Packet / RawBuffer point here ------ buf_addr -----> ^ buf_iova
//! ```
//! A [`Packet`] is a pointer to its buffer's `BufMeta` in the pool's metadata arena: pool, buffer
//! address and IOVA, lengths, offsets, flags, RSS hash, VLAN. None of it lies where a device can
//! write (design invariant 6): a device can change the bytes of a buffer (headroom and data room),
//! never where the CPU thinks a buffer is, how long it is, or which pool it returns to. Every
//! length operation keeps `data_off + data_len <= buf_len`, so a data slice never leaves its
//! buffer whatever the bytes say. See `docs/memory-model.md`.
//!
//! # Ownership invariant (design invariant 1)
//! A [`Packet`] exists only while the CPU owns its buffer: a driver turns it into a
//! [`RawBuffer`] ([`Packet::into_raw`]) before posting the buffer to a device and turns it back
//! ([`Packet::from_raw`], `unsafe`) only after it observed the device's completion (DD). That is
//! what makes [`Packet::data`] / [`Packet::data_mut`] sound: no device writes the bytes while a
//! slice over them exists.
//!
//! # Chained packets
//! A frame larger than one buffer is a chain of segments, linked like an `rte_mbuf` chain: the
//! head's [`Packet::len`] is the length of the whole packet and [`Packet::nb_segs`] its segment
//! count; [`Packet::data`] is the head segment's bytes, [`Packet::segments`] iterates all of
//! them, [`Packet::copy_out`] copies a range out across segments and [`Packet::linearize`] moves
//! the whole frame into the head when it fits. Dropping the head frees every segment, each to its
//! own pool. A single-segment packet never reads the second cache line of its metadata, where the
//! link lives (see `BufMeta`).

mod chain;
mod flags;
mod meta;
mod raw;

use core::ptr::NonNull;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

pub use chain::{ChainBuilder, DmaSegments, Segments, SegmentsMut};
pub use flags::OffloadFlags;
pub(crate) use meta::BufMeta;
pub use meta::META_SIZE;
pub use raw::RawBuffer;

/// An Ethernet II header view (network-endian ethertype), read and written via zerocopy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct EthernetHeader {
    /// Destination MAC.
    pub dst: [u8; 6],
    /// Source MAC.
    pub src: [u8; 6],
    /// EtherType (e.g. 0x0800 IPv4), big-endian on the wire.
    pub ethertype: U16,
}

impl EthernetHeader {
    /// Header length in bytes.
    pub const LEN: usize = 14;
}

/// Errors of packet length and chain operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The new length would not fit between the data offset and the end of the buffer.
    #[error("packet: length {len} exceeds the room after the data offset ({room} bytes)")]
    TooLong {
        /// Length asked for.
        len: usize,
        /// Room available.
        room: usize,
    },
    /// The operation works on a single-segment packet only and this one is a chain.
    #[error(
        "packet: {op} needs a single-segment packet and this one has {nb_segs} segments; \
         call linearize() first or work segment by segment"
    )]
    Chained {
        /// The operation.
        op: &'static str,
        /// Segments of the packet.
        nb_segs: usize,
    },
    /// Chaining would exceed the segment count or the length a packet can have.
    #[error(
        "packet: chaining would give {nb_segs} segments and {len} bytes, beyond the limits of \
         {max_segs} segments and {max_len} bytes"
    )]
    ChainTooLong {
        /// Segments the chain would have.
        nb_segs: usize,
        /// Bytes the chain would have.
        len: usize,
        /// Largest segment count.
        max_segs: usize,
        /// Largest packet length.
        max_len: usize,
    },
    /// A range outside the packet's data.
    #[error("packet: bytes {offset}..{end} asked for, the packet has {len}")]
    OutOfRange {
        /// Start of the range.
        offset: usize,
        /// End of the range.
        end: usize,
        /// Packet length.
        len: usize,
    },
}

/// Largest segment count of a chain.
pub const MAX_SEGS: usize = u16::MAX as usize;
/// Largest length of a (chained) packet.
pub const MAX_PKT_LEN: usize = u32::MAX as usize;

/// An owned packet buffer of a mempool, the head of a chain of segments when the packet is larger
/// than one buffer; see the [module documentation](self) for the layout and the ownership
/// invariant. One pointer wide: moving it is cheap. Dropping it returns every segment to its pool
/// (through the current thread's cache).
#[repr(transparent)]
pub struct Packet {
    meta: NonNull<BufMeta>,
}

// SAFETY: a Packet owns its buffers (its segments) exclusively; the pools they return to are
// thread-safe.
unsafe impl Send for Packet {}
// SAFETY: &Packet gives only shared access to the buffer bytes and metadata.
unsafe impl Sync for Packet {}

impl core::fmt::Debug for Packet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len())
            .field("nb_segs", &self.nb_segs())
            .field("data_off", &self.meta().data_off)
            .field("port", &self.port())
            .field("queue", &self.queue())
            .field("flags", &self.flags())
            .finish()
    }
}

impl Packet {
    #[inline(always)]
    fn meta(&self) -> &BufMeta {
        // SAFETY: the metadata is valid while the Packet exists (it owns the buffer and its pool
        // is kept alive by the outstanding-buffer count); no device can write it (CPU-only arena).
        unsafe { self.meta.as_ref() }
    }

    #[inline(always)]
    fn meta_mut(&mut self) -> &mut BufMeta {
        // SAFETY: as in meta(); &mut self gives exclusive access.
        unsafe { self.meta.as_mut() }
    }

    /// Wraps a metadata pointer (used by the pool).
    ///
    /// # Safety
    /// `meta` is a buffer of a live pool that the caller owns and that no device owns.
    #[inline(always)]
    pub(crate) unsafe fn from_meta(meta: NonNull<BufMeta>) -> Packet {
        Packet { meta }
    }

    /// Gives up the handle without returning the buffer, for posting it to a device. A chain
    /// stays linked (the raw buffer heads it); drivers that post one descriptor per segment take
    /// the segments apart first with [`Packet::split_first_segment`].
    #[inline]
    pub fn into_raw(self) -> RawBuffer {
        let p = self.meta.as_ptr();
        core::mem::forget(self);
        RawBuffer(p)
    }

    /// Takes back a buffer given up with [`Packet::into_raw`] or obtained raw from a pool.
    /// Metadata is kept as it was (call [`Packet::reset`] for a received buffer).
    ///
    /// # Safety
    /// `raw` is a live buffer of a live pool, owned by the caller (not in the pool, not owned
    /// by another Packet, not a segment inside another buffer's chain), and no device accesses
    /// it, nor any segment chained to it, any more (its completion was observed).
    #[inline]
    pub unsafe fn from_raw(raw: RawBuffer) -> Packet {
        debug_assert!(!raw.0.is_null());
        // SAFETY: non-null by contract.
        let meta = unsafe { NonNull::new_unchecked(raw.0) };
        Packet { meta }
    }

    /// Resets the metadata: data at the default headroom, length 0, one segment, flags / port /
    /// queue / hash 0. The segments chained after the head, if any, are freed.
    #[inline]
    pub fn reset(&mut self) {
        if self.meta().nb_segs != 1 {
            drop(self.take_tail());
        }
        self.meta_mut().reset();
    }

    /// Length in bytes of the whole packet (every segment).
    #[inline]
    pub fn len(&self) -> usize {
        self.meta().pkt_len as usize
    }

    /// Whether the packet holds no data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.meta().pkt_len == 0
    }

    /// Segments in the packet (1 unless chained).
    #[inline]
    pub fn nb_segs(&self) -> usize {
        usize::from(self.meta().nb_segs)
    }

    /// Whether the whole packet is in one buffer (then [`Packet::data`] is all of it).
    #[inline]
    pub fn is_contiguous(&self) -> bool {
        self.meta().nb_segs == 1
    }

    /// Bytes of data in the head segment (`data().len()`; [`Packet::len`] when not chained).
    #[inline]
    pub fn seg_len(&self) -> usize {
        usize::from(self.meta().data_len)
    }

    /// Bytes free in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.meta().data_off)
    }

    /// Bytes free after the head segment's data (the room [`Packet::append`] has when the
    /// packet is not chained).
    #[inline]
    pub fn tailroom(&self) -> usize {
        let h = self.meta();
        usize::from(h.buf_len - h.data_off - h.data_len)
    }

    /// Headroom + data room of the head segment's buffer.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        usize::from(self.meta().buf_len)
    }

    /// The head segment's data bytes: the whole packet when [`Packet::is_contiguous`], else its
    /// first [`Packet::seg_len`] bytes (see [`Packet::segments`]).
    #[inline]
    pub fn data(&self) -> &[u8] {
        let h = self.meta();
        // SAFETY: [data_off, data_off + data_len) lies within the buffer (maintained by every
        // length operation); the CPU owns the buffer while the Packet exists (invariant 1), so
        // no one writes it during the borrow.
        unsafe {
            core::slice::from_raw_parts(h.buf_addr.add(usize::from(h.data_off)), usize::from(h.data_len))
        }
    }

    /// The head segment's data bytes, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.meta();
        let (buf, off, len) = (h.buf_addr, usize::from(h.data_off), usize::from(h.data_len));
        // SAFETY: as in data(); &mut self makes the borrow exclusive.
        unsafe { core::slice::from_raw_parts_mut(buf.add(off), len) }
    }

    /// Sets the data length of a single-segment packet (e.g. from an RX descriptor), keeping the
    /// data offset. Bytes newly included are whatever the buffer holds (the device's frame, or
    /// stale data). A chain is refused ([`PacketError::Chained`]): change its length with
    /// [`Packet::append`] and [`Packet::trim`].
    #[inline]
    pub fn set_len(&mut self, len: usize) -> Result<(), PacketError> {
        let h = self.meta_mut();
        if h.nb_segs != 1 {
            return Err(PacketError::Chained {
                op: "set_len",
                nb_segs: usize::from(h.nb_segs),
            });
        }
        let room = usize::from(h.buf_len - h.data_off);
        if len > room {
            return Err(PacketError::TooLong { len, room });
        }
        h.data_len = len as u16;
        h.pkt_len = len as u32;
        Ok(())
    }

    /// Grows the data at the front by `n` bytes (into the head segment's headroom) and returns
    /// them; `None` (nothing changed) if the headroom is too small.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let h = self.meta_mut();
        if n > usize::from(h.data_off) {
            return None;
        }
        h.data_off -= n as u16;
        h.data_len += n as u16;
        h.pkt_len += n as u32;
        let (buf, off) = (h.buf_addr, usize::from(h.data_off));
        // SAFETY: [off, off + n) is inside the buffer; exclusive via &mut self.
        Some(unsafe { core::slice::from_raw_parts_mut(buf.add(off), n) })
    }

    /// Grows the data at the end by `n` bytes (into the last segment's tailroom) and returns
    /// them; `None` (nothing changed) if that tailroom is too small.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let last = self.last_segment();
        // SAFETY: `last` is a segment of this packet (the head itself, or a chained buffer the
        // packet owns); &mut self gives exclusive access to it.
        let l = unsafe { &mut *last.as_ptr() };
        let end = usize::from(l.data_off) + usize::from(l.data_len);
        if n > usize::from(l.buf_len) - end {
            return None;
        }
        l.data_len += n as u16;
        let buf = l.buf_addr;
        self.meta_mut().pkt_len += n as u32;
        // SAFETY: [end, end + n) is inside the last segment's buffer; exclusive via &mut self.
        Some(unsafe { core::slice::from_raw_parts_mut(buf.add(end), n) })
    }

    /// Appends a copy of `bytes` to the last segment; `Err` (nothing changed) if its tailroom is
    /// too small.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), PacketError> {
        match self.append(bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(PacketError::TooLong {
                len: bytes.len(),
                room: self.last_tailroom(),
            }),
        }
    }

    /// Removes `n` bytes from the front of the head segment (like `rte_pktmbuf_adj`); `None` if
    /// `n` is more than the head segment holds.
    #[inline]
    pub fn adjust(&mut self, n: usize) -> Option<()> {
        let h = self.meta_mut();
        if n > usize::from(h.data_len) {
            return None;
        }
        h.data_off += n as u16;
        h.data_len -= n as u16;
        h.pkt_len -= n as u32;
        Some(())
    }

    /// Removes `n` bytes from the end of the last segment (like `rte_pktmbuf_trim`); `None` if
    /// `n` is more than the last segment holds.
    #[inline]
    pub fn trim(&mut self, n: usize) -> Option<()> {
        let last = self.last_segment();
        // SAFETY: a segment of this packet, exclusive via &mut self (as in append()).
        let l = unsafe { &mut *last.as_ptr() };
        if n > usize::from(l.data_len) {
            return None;
        }
        l.data_len -= n as u16;
        self.meta_mut().pkt_len -= n as u32;
        Some(())
    }

    /// IOVA of the head segment's data start (for TX descriptors).
    #[inline]
    pub fn data_iova(&self) -> u64 {
        self.meta().buf_iova + u64::from(self.meta().data_off)
    }

    /// IOVA of the head segment's buffer start (start of the headroom).
    #[inline]
    pub fn buf_iova(&self) -> u64 {
        self.meta().buf_iova
    }

    /// Input / output port.
    #[inline]
    pub fn port(&self) -> u16 {
        self.meta().port
    }
    /// Sets the port.
    #[inline]
    pub fn set_port(&mut self, port: u16) {
        self.meta_mut().port = port;
    }
    /// Queue.
    #[inline]
    pub fn queue(&self) -> u16 {
        self.meta().queue
    }
    /// Sets the queue.
    #[inline]
    pub fn set_queue(&mut self, queue: u16) {
        self.meta_mut().queue = queue;
    }
    /// RSS hash (valid with [`OffloadFlags::RX_RSS_HASH`]).
    #[inline]
    pub fn rss_hash(&self) -> u32 {
        self.meta().rss_hash
    }
    /// Sets the RSS hash.
    #[inline]
    pub fn set_rss_hash(&mut self, hash: u32) {
        self.meta_mut().rss_hash = hash;
    }
    /// Offload / status flags.
    #[inline]
    pub fn flags(&self) -> OffloadFlags {
        self.meta().flags
    }
    /// Sets the flags.
    #[inline]
    pub fn set_flags(&mut self, flags: OffloadFlags) {
        self.meta_mut().flags = flags;
    }
    /// VLAN TCI (valid with RX_VLAN_STRIPPED / used with TX_VLAN_INSERT).
    #[inline]
    pub fn vlan_tci(&self) -> u16 {
        self.meta().vlan_tci
    }
    /// Sets the VLAN TCI.
    #[inline]
    pub fn set_vlan_tci(&mut self, tci: u16) {
        self.meta_mut().vlan_tci = tci;
    }
    /// TCP segmentation offload: the payload bytes of each segment the device cuts (the MSS);
    /// used with [`OffloadFlags::TX_TCP_SEG`].
    #[inline]
    pub fn tso_segsz(&self) -> u16 {
        self.meta().tso_segsz
    }
    /// Sets the TSO segment size (the MSS).
    #[inline]
    pub fn set_tso_segsz(&mut self, mss: u16) {
        self.meta_mut().tso_segsz = mss;
    }
    /// A free 64-bit field for the application or driver.
    #[inline]
    pub fn user(&self) -> u64 {
        self.meta().user
    }
    /// Sets the user field.
    #[inline]
    pub fn set_user(&mut self, v: u64) {
        self.meta_mut().user = v;
    }

    /// Id of the pool the head segment's buffer belongs to (see
    /// [`Mempool::id`](crate::Mempool::id)).
    #[inline]
    pub fn pool_id(&self) -> u64 {
        // SAFETY: the pool outlives its outstanding buffers.
        unsafe { (*self.meta().pool).id }
    }

    /// The Ethernet header at the start of the data, if the head segment is long enough.
    #[inline]
    pub fn eth(&self) -> Option<&EthernetHeader> {
        EthernetHeader::ref_from_prefix(self.data()).ok().map(|(h, _)| h)
    }

    /// The Ethernet header, mutable.
    #[inline]
    pub fn eth_mut(&mut self) -> Option<&mut EthernetHeader> {
        EthernetHeader::mut_from_prefix(self.data_mut())
            .ok()
            .map(|(h, _)| h)
    }

    #[inline(always)]
    pub(crate) fn meta_ptr(&self) -> NonNull<BufMeta> {
        self.meta
    }
}

/// Most buffers [`drop_packets`] gives back in one cache operation: a run that fits the cache
/// (its flush threshold is 1.5 times its size, 384 by default) is copied into it, where a longer
/// one would empty the cache into the ring first.
const DROP_RUN: usize = 64;

/// Drops every packet of `pkts`, leaving it empty: what dropping each one does, but a run of
/// single-segment packets of one pool goes back to it in one operation of this thread's cache
/// instead of one per packet (a TX queue freeing what it sent, a burst cleared).
pub fn drop_packets(pkts: &mut Vec<Packet>) {
    let n = pkts.len();
    // The vector forgets its packets first: each is read out and given up exactly once below,
    // and a panic on the way leaks the rest rather than dropping one twice.
    // SAFETY: 0 <= the current length; the elements stay initialised in the buffer.
    unsafe { pkts.set_len(0) };
    // A `Packet` is a `RawBuffer` in layout (both a transparent pointer to the metadata), so a
    // run of the vector's own elements is handed to the pool's cache as it lies: no copy.
    let base = pkts.as_ptr().cast::<RawBuffer>();
    // The run: elements [start, i), all single-segment buffers of `run_pool`.
    let mut start = 0;
    let mut run_pool = None;
    for i in 0..n {
        // SAFETY: i < n, the old length: an initialised element the vector no longer owns,
        // read as the pointer it is; it is given up below (in a run, or dropped).
        let raw = unsafe { base.add(i).read() };
        // SAFETY: a packet's metadata is live while the packet is (not yet given up).
        let chained = unsafe { (*raw.0).nb_segs } != 1;
        // SAFETY: as above; a packet's metadata pointer is never null (a `Packet` holds a
        // NonNull).
        let pool = (!chained).then(|| unsafe { crate::mempool::pool_of(NonNull::new_unchecked(raw.0)) });
        if pool != run_pool || chained || i - start == DROP_RUN {
            if let Some(prev) = run_pool {
                // SAFETY: elements [start, i) are live single-segment buffers of `prev` that
                // the vector no longer owns; they are given up here, once.
                unsafe {
                    crate::mempool::return_run(prev, core::slice::from_raw_parts(base.add(start), i - start))
                };
            }
            run_pool = pool;
            start = i;
        }
        if chained {
            // SAFETY: the element is a packet the vector gave up (above); dropped once here.
            drop(unsafe { core::ptr::read(base.add(i).cast::<Packet>()) });
            start = i + 1;
        }
    }
    if let Some(prev) = run_pool {
        // SAFETY: as above, for [start, n).
        unsafe { crate::mempool::return_run(prev, core::slice::from_raw_parts(base.add(start), n - start)) };
    }
}

impl Drop for Packet {
    #[inline]
    fn drop(&mut self) {
        if self.meta().nb_segs == 1 {
            crate::mempool::return_one(self.meta);
        } else {
            chain::free_chain(self.meta);
        }
    }
}

#[cfg(test)]
mod tests;
