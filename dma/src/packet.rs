//! Packet buffers: [`Packet`] (an owned handle), [`RawBuffer`] (the driver's raw path),
//! [`OffloadFlags`] and the [`EthernetHeader`] view.
//!
//! # Where a buffer's parts live
//! ```text
//! metadata arena (CPU only, never mapped for a device)    DMA region (mapped for the device)
//! | BufMeta 64 B | BufMeta 64 B | ...                      | headroom | data room | headroom | ...
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

use core::ptr::NonNull;

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::mempool::PoolShared;

/// Offload and status flags of a packet (a bit set, in the manner of `rte_mbuf.ol_flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct OffloadFlags(pub u64);

impl OffloadFlags {
    /// No flag.
    pub const EMPTY: Self = Self(0);
    /// RX: the RSS hash field is valid.
    pub const RX_RSS_HASH: Self = Self(1 << 0);
    /// RX: the device checked the IPv4 header checksum and it is good.
    pub const RX_IP_CKSUM_GOOD: Self = Self(1 << 1);
    /// RX: the IPv4 header checksum is bad.
    pub const RX_IP_CKSUM_BAD: Self = Self(1 << 2);
    /// RX: the TCP/UDP checksum is good.
    pub const RX_L4_CKSUM_GOOD: Self = Self(1 << 3);
    /// RX: the TCP/UDP checksum is bad.
    pub const RX_L4_CKSUM_BAD: Self = Self(1 << 4);
    /// RX: a VLAN tag was stripped into the VLAN TCI field.
    pub const RX_VLAN_STRIPPED: Self = Self(1 << 5);
    /// TX: compute the IPv4 header checksum.
    pub const TX_IP_CKSUM: Self = Self(1 << 32);
    /// TX: compute the TCP checksum.
    pub const TX_TCP_CKSUM: Self = Self(1 << 33);
    /// TX: compute the UDP checksum.
    pub const TX_UDP_CKSUM: Self = Self(1 << 34);
    /// TX: insert the VLAN tag from the VLAN TCI field.
    pub const TX_VLAN_INSERT: Self = Self(1 << 35);
    /// TX: TCP segmentation offload.
    pub const TX_TCP_SEG: Self = Self(1 << 36);

    /// The raw bits.
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }
    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether no flag is set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Sets the flags of `other`.
    #[inline]
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }
    /// Clears the flags of `other`.
    #[inline]
    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }
}

impl core::ops::BitOr for OffloadFlags {
    type Output = Self;
    #[inline]
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}
impl core::ops::BitOrAssign for OffloadFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}
impl core::ops::BitAnd for OffloadFlags {
    type Output = Self;
    #[inline]
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

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

/// The metadata of one buffer, in its pool's CPU-only metadata arena (like `rte_mbuf`'s first
/// cache line, but out of the device's reach). The identity fields (`pool`, `buf_addr`,
/// `buf_iova`, `buf_len`, `headroom`) are written once, when the pool is carved; the per-use
/// fields are written only through `Packet`'s checked operations and the pool's reset.
#[repr(C, align(64))]
pub(crate) struct BufMeta {
    /// Owning pool (identity and where the buffer returns).
    pub(crate) pool: *const PoolShared,
    /// CPU address of the buffer (start of the headroom) in the pool's DMA region.
    pub(crate) buf_addr: *mut u8,
    /// IOVA of `buf_addr`.
    pub(crate) buf_iova: u64,
    pub(crate) data_off: u16,
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
    pub(crate) _pad: [u16; 3],
    pub(crate) user: u64,
}

/// Size of one buffer's metadata (in the metadata arena, not in the DMA region).
pub const META_SIZE: usize = core::mem::size_of::<BufMeta>();
const _: () = assert!(META_SIZE == 64);

impl BufMeta {
    /// Resets the per-use metadata (data offset, length, port, queue, hash, flags, VLAN, user).
    #[inline(always)]
    pub(crate) fn reset(&mut self) {
        self.data_off = self.headroom;
        self.data_len = 0;
        self.port = 0;
        self.queue = 0;
        self.rss_hash = 0;
        self.flags = OffloadFlags::EMPTY;
        self.vlan_tci = 0;
        self.user = 0;
    }
}

/// A buffer in raw form, for drivers: a plain pointer, `Copy`, with no ownership tracking.
/// While a buffer is raw (posted to a device ring, or in a driver's software ring) nothing
/// frees it; forgetting it leaks the buffer (it stays counted as in use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(transparent)]
pub struct RawBuffer(pub(crate) *mut BufMeta);

// SAFETY: a RawBuffer is an address; its users (drivers) move buffers between threads only
// through the unsafe contracts of Packet::from_raw / the pool's raw put.
unsafe impl Send for RawBuffer {}
// SAFETY: as above; no method dereferences it without an unsafe contract.
unsafe impl Sync for RawBuffer {}

impl RawBuffer {
    /// A null placeholder for arrays (never valid for the accessors below).
    pub const NULL: RawBuffer = RawBuffer(core::ptr::null_mut());

    /// Whether this is [`RawBuffer::NULL`].
    #[inline]
    pub fn is_null(self) -> bool {
        self.0.is_null()
    }

    /// IOVA of the buffer start (start of the headroom).
    ///
    /// # Safety
    /// `self` is a buffer taken from a live pool and not yet returned to it.
    #[inline]
    pub unsafe fn buf_iova(self) -> u64 {
        // SAFETY: the metadata is valid for the buffer's lifetime (caller contract).
        unsafe { (*self.0).buf_iova }
    }

    /// IOVA where a device should write a received frame: buffer start + default headroom.
    ///
    /// # Safety
    /// As [`RawBuffer::buf_iova`].
    #[inline]
    pub unsafe fn rx_data_iova(self) -> u64 {
        // SAFETY: caller contract.
        unsafe { (*self.0).buf_iova + u64::from((*self.0).headroom) }
    }

    /// IOVA of the current data start (for TX after [`Packet::into_raw`]).
    ///
    /// # Safety
    /// As [`RawBuffer::buf_iova`].
    #[inline]
    pub unsafe fn data_iova(self) -> u64 {
        // SAFETY: caller contract.
        unsafe { (*self.0).buf_iova + u64::from((*self.0).data_off) }
    }

    /// Current data length (for TX descriptors).
    ///
    /// # Safety
    /// As [`RawBuffer::buf_iova`].
    #[inline]
    pub unsafe fn data_len(self) -> usize {
        // SAFETY: caller contract.
        unsafe { usize::from((*self.0).data_len) }
    }

    /// Room for received data at the default headroom (what an RX descriptor may receive).
    ///
    /// # Safety
    /// As [`RawBuffer::buf_iova`].
    #[inline]
    pub unsafe fn rx_room(self) -> usize {
        // SAFETY: caller contract. headroom < buf_len since carving (CPU-only fields).
        unsafe { usize::from((*self.0).buf_len - (*self.0).headroom) }
    }
}

/// Errors of packet length operations.
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
}

/// An owned packet buffer of a mempool; see the [module documentation](self) for the layout and
/// the ownership invariant. One pointer wide: moving it is cheap. Dropping it returns the buffer
/// to its pool (through the current thread's cache).
#[repr(transparent)]
pub struct Packet {
    meta: NonNull<BufMeta>,
}

// SAFETY: a Packet owns its buffer exclusively; the pool it returns to is thread-safe.
unsafe impl Send for Packet {}
// SAFETY: &Packet gives only shared access to the buffer bytes and metadata.
unsafe impl Sync for Packet {}

impl core::fmt::Debug for Packet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Packet")
            .field("len", &self.len())
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

    /// Gives up the handle without returning the buffer, for posting it to a device.
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
    /// by another Packet), and no device accesses it any more (its completion was observed).
    #[inline]
    pub unsafe fn from_raw(raw: RawBuffer) -> Packet {
        debug_assert!(!raw.0.is_null());
        // SAFETY: non-null by contract.
        let meta = unsafe { NonNull::new_unchecked(raw.0) };
        Packet { meta }
    }

    /// Resets the metadata: data at the default headroom, length 0, flags/port/queue/hash 0.
    #[inline]
    pub fn reset(&mut self) {
        self.meta_mut().reset();
    }

    /// Data length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.meta().data_len)
    }

    /// Whether the packet holds no data.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.meta().data_len == 0
    }

    /// Bytes free in front of the data.
    #[inline]
    pub fn headroom(&self) -> usize {
        usize::from(self.meta().data_off)
    }

    /// Bytes free after the data.
    #[inline]
    pub fn tailroom(&self) -> usize {
        let h = self.meta();
        usize::from(h.buf_len - h.data_off - h.data_len)
    }

    /// Headroom + data room of the buffer.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        usize::from(self.meta().buf_len)
    }

    /// The data bytes.
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

    /// The data bytes, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let h = self.meta();
        let (buf, off, len) = (h.buf_addr, usize::from(h.data_off), usize::from(h.data_len));
        // SAFETY: as in data(); &mut self makes the borrow exclusive.
        unsafe { core::slice::from_raw_parts_mut(buf.add(off), len) }
    }

    /// Sets the data length (e.g. from an RX descriptor), keeping the data offset. Bytes newly
    /// included are whatever the buffer holds (the device's frame, or stale data).
    #[inline]
    pub fn set_len(&mut self, len: usize) -> Result<(), PacketError> {
        let h = self.meta_mut();
        let room = usize::from(h.buf_len - h.data_off);
        if len > room {
            return Err(PacketError::TooLong { len, room });
        }
        h.data_len = len as u16;
        Ok(())
    }

    /// Grows the data at the front by `n` bytes (into the headroom) and returns them; `None`
    /// (nothing changed) if the headroom is too small.
    #[inline]
    pub fn prepend(&mut self, n: usize) -> Option<&mut [u8]> {
        let h = self.meta_mut();
        if n > usize::from(h.data_off) {
            return None;
        }
        h.data_off -= n as u16;
        h.data_len += n as u16;
        let (buf, off) = (h.buf_addr, usize::from(h.data_off));
        // SAFETY: [off, off + n) is inside the buffer; exclusive via &mut self.
        Some(unsafe { core::slice::from_raw_parts_mut(buf.add(off), n) })
    }

    /// Grows the data at the end by `n` bytes and returns them; `None` if the tailroom is too
    /// small.
    #[inline]
    pub fn append(&mut self, n: usize) -> Option<&mut [u8]> {
        let h = self.meta_mut();
        let end = usize::from(h.data_off) + usize::from(h.data_len);
        if n > usize::from(h.buf_len) - end {
            return None;
        }
        h.data_len += n as u16;
        let buf = h.buf_addr;
        // SAFETY: [end, end + n) is inside the buffer; exclusive via &mut self.
        Some(unsafe { core::slice::from_raw_parts_mut(buf.add(end), n) })
    }

    /// Appends a copy of `bytes`; `Err` (nothing changed) if the tailroom is too small.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) -> Result<(), PacketError> {
        let room = self.tailroom();
        match self.append(bytes.len()) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(PacketError::TooLong {
                len: bytes.len(),
                room,
            }),
        }
    }

    /// Removes `n` bytes from the front (like `rte_pktmbuf_adj`); `None` if `n > len`.
    #[inline]
    pub fn adjust(&mut self, n: usize) -> Option<()> {
        let h = self.meta_mut();
        if n > usize::from(h.data_len) {
            return None;
        }
        h.data_off += n as u16;
        h.data_len -= n as u16;
        Some(())
    }

    /// Removes `n` bytes from the end (like `rte_pktmbuf_trim`); `None` if `n > len`.
    #[inline]
    pub fn trim(&mut self, n: usize) -> Option<()> {
        let h = self.meta_mut();
        if n > usize::from(h.data_len) {
            return None;
        }
        h.data_len -= n as u16;
        Some(())
    }

    /// IOVA of the data start (for TX descriptors).
    #[inline]
    pub fn data_iova(&self) -> u64 {
        self.meta().buf_iova + u64::from(self.meta().data_off)
    }

    /// IOVA of the buffer start (start of the headroom).
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

    /// Id of the pool the buffer belongs to (see [`Mempool::id`](crate::Mempool::id)).
    #[inline]
    pub fn pool_id(&self) -> u64 {
        // SAFETY: the pool outlives its outstanding buffers.
        unsafe { (*self.meta().pool).id }
    }

    /// The Ethernet header at the start of the data, if the data is long enough.
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

impl Drop for Packet {
    #[inline]
    fn drop(&mut self) {
        crate::mempool::return_one(self.meta);
    }
}
