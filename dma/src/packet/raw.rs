//! [`RawBuffer`]: a buffer in raw form, for drivers.

use super::meta::BufMeta;

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

    /// IOVA of the current data start (for TX after [`Packet::into_raw`](crate::Packet::into_raw)).
    ///
    /// # Safety
    /// As [`RawBuffer::buf_iova`].
    #[inline]
    pub unsafe fn data_iova(self) -> u64 {
        // SAFETY: caller contract.
        unsafe { (*self.0).buf_iova + u64::from((*self.0).data_off) }
    }

    /// Whether the buffer heads a chain of several segments (then it goes back to the pools
    /// through [`Packet::from_raw`](crate::Packet::from_raw) and a drop, never a raw bulk put).
    ///
    /// # Safety
    /// As [`RawBuffer::buf_iova`].
    #[inline]
    pub unsafe fn is_chained(self) -> bool {
        // SAFETY: caller contract.
        unsafe { (*self.0).nb_segs != 1 }
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
