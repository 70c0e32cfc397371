//! The packed virtqueue (virtio 1.1, section "Packed Virtqueues"), driver side; used when the
//! device offers `VIRTIO_F_RING_PACKED` and the driver is opened with packed rings asked for.
//!
//! Memory layout inside one [`RingMemory`]:
//!
//! ```text
//! 0          descriptor ring: size x 16 bytes {addr le64, len le32, id le16, flags le16}
//! 16*size    driver event suppression: off_wrap le16, flags le16
//! +4         device event suppression: off_wrap le16, flags le16
//! ```
//!
//! - The driver writes a chain into consecutive ring slots; each descriptor's flags carry
//!   AVAIL = the driver's wrap counter and USED = its inverse. The chain's first flags are written
//!   last, after a release fence (invariant 2): that store makes the whole chain available.
//! - The device writes one used descriptor per chain, in the slot where the driver reads next:
//!   AVAIL = USED = the used wrap counter; it carries the chain's buffer id and written length.
//!   The driver reads the flags (volatile), then an acquire fence, then id and length; it skips
//!   as many slots as that id's chain had. An id that is not in flight is reported
//!   ([`Used::BadId`]) and never followed (invariant 5). Since the slots a used descriptor covers
//!   are known only from its id, the driver cannot tell where the next one is after a bad id:
//!   the ring is marked broken ([`Virtqueue::is_broken`]), nothing more is added or taken back,
//!   and the buffers in flight go back at teardown, after the device reset (reopen the port). A
//!   length larger than the chain's writable room is reported ([`Used::BadLen`]); both count in
//!   [`Virtqueue::errors`].
//! - Interrupts off: driver event flags = DISABLE, ENABLE only while an RX queue sleeps on its
//!   interrupt ([`Virtqueue::set_interrupts`]; off_wrap is unused without EVENT_IDX). Notifications: sent unless the device's event
//!   flags say DISABLE.
#![allow(unsafe_code)]

use std::sync::atomic::{Ordering, fence};

use super::split::{Seg, Used, Virtqueue};
use crate::adv_ring::RingMemory;

/// Descriptor flag: the chain continues in the next slot.
pub const F_NEXT: u16 = 1;
/// Descriptor flag: device-writable.
pub const F_WRITE: u16 = 2;
/// Descriptor flag: available (compared with the wrap counter).
pub const F_AVAIL: u16 = 1 << 7;
/// Descriptor flag: used (compared with the wrap counter).
pub const F_USED: u16 = 1 << 15;
/// Event suppression flags: notifications / interrupts enabled.
pub const EVENT_ENABLE: u16 = 0;
/// Event suppression flags: disabled.
pub const EVENT_DISABLE: u16 = 1;

/// Bytes a packed ring of `size` entries needs (`None` for a size that is not a power of two in
/// 1..=32768: the driver keeps power-of-two sizes).
pub fn packed_bytes(size: usize) -> Option<usize> {
    (size.is_power_of_two() && size <= 32768).then_some(16 * size + 8)
}

/// The driver side of a packed virtqueue in device-visible memory.
pub struct PackedRing<M: RingMemory> {
    base: *mut u8,
    size: u16,
    /// Next slot to write, and the driver's wrap counter.
    next_avail: u16,
    avail_wrap: bool,
    /// Next slot to read for a used descriptor, and the used wrap counter.
    last_used: u16,
    used_wrap: bool,
    num_free: u16,
    /// Free buffer ids (a stack).
    free_ids: Vec<u16>,
    /// Descriptors of the chain with buffer id i; 0 when i is not in flight.
    chain_len: Box<[u16]>,
    /// Bytes of the device-writable buffers of the chain with buffer id i.
    room: Box<[u32]>,
    pending: bool,
    /// Set at the first bad id: the used slots can no longer be followed.
    broken: bool,
    /// Anomalies in used descriptors.
    errors: u64,
    mem: M,
}

// SAFETY: `base` points into `mem`, which the ring owns; moving the ring moves all of it.
unsafe impl<M: RingMemory> Send for PackedRing<M> {}

impl<M: RingMemory> PackedRing<M> {
    /// Builds an empty ring of `size` entries in `mem` (zeroed: no descriptor is available to the
    /// device, since AVAIL 0 differs from the device's initial wrap counter 1); interrupts off.
    pub fn new(mem: M, size: usize) -> Option<Self> {
        let bytes = packed_bytes(size)?;
        let ptr = mem.as_ptr();
        if mem.len() < bytes || (ptr as usize) % 16 != 0 {
            return None;
        }
        // SAFETY: `mem` is valid for `bytes` bytes (checked); the device does not own it yet.
        unsafe { std::ptr::write_bytes(ptr, 0, bytes) };
        let mut r = PackedRing {
            base: ptr,
            size: size as u16,
            next_avail: 0,
            avail_wrap: true,
            last_used: 0,
            used_wrap: true,
            num_free: size as u16,
            free_ids: (0..size as u16).rev().collect(),
            chain_len: vec![0; size].into_boxed_slice(),
            room: vec![0; size].into_boxed_slice(),
            pending: false,
            broken: false,
            errors: 0,
            mem,
        };
        r.write_u16(16 * size + 2, EVENT_DISABLE);
        Some(r)
    }

    #[inline(always)]
    fn write_u16(&mut self, off: usize, v: u16) {
        debug_assert!(off + 2 <= 16 * usize::from(self.size) + 8);
        // SAFETY: inside the ring memory (layout checked at new), 2-aligned.
        unsafe { self.base.add(off).cast::<u16>().write_volatile(v.to_le()) }
    }

    #[inline(always)]
    fn read_u16(&self, off: usize) -> u16 {
        debug_assert!(off + 2 <= 16 * usize::from(self.size) + 8);
        // SAFETY: as in write_u16.
        u16::from_le(unsafe { self.base.add(off).cast::<u16>().read_volatile() })
    }

    #[inline(always)]
    fn avail_bits(wrap: bool) -> u16 {
        if wrap { F_AVAIL } else { F_USED }
    }

    /// CPU address of the ring memory (for fake devices in tests).
    #[cfg(test)]
    pub(crate) fn base_ptr(&self) -> *mut u8 {
        self.base
    }
}

impl<M: RingMemory> Virtqueue for PackedRing<M> {
    fn size(&self) -> usize {
        usize::from(self.size)
    }

    #[inline(always)]
    fn num_free(&self) -> usize {
        usize::from(self.num_free)
    }

    #[inline(always)]
    fn in_flight(&self) -> usize {
        usize::from(self.size) - self.free_ids.len()
    }

    #[inline(always)]
    fn next_free_id(&self) -> Option<u16> {
        if self.num_free == 0 || self.broken {
            return None;
        }
        self.free_ids.last().copied()
    }

    #[inline]
    fn add(&mut self, segs: &[Seg]) -> Option<u16> {
        let n = segs.len();
        if n == 0 || n > usize::from(self.num_free) || self.broken {
            return None;
        }
        let id = self.free_ids.pop()?;
        let mut room = 0u32;
        let head = self.next_avail;
        let head_wrap = self.avail_wrap;
        let mut head_flags = 0;
        for (k, seg) in segs.iter().enumerate() {
            let slot = usize::from(self.next_avail);
            let mut flags = Self::avail_bits(self.avail_wrap);
            if seg.write {
                flags |= F_WRITE;
                room = room.saturating_add(seg.len);
            }
            if k + 1 < n {
                flags |= F_NEXT;
            }
            // SAFETY: slot < size: the descriptor lies in the ring; the device does not own it
            // (it is free: the chain that used it came back, or it was never made available).
            unsafe {
                let p = self.base.add(16 * slot);
                p.cast::<u64>().write_volatile(seg.addr.to_le());
                p.add(8).cast::<u32>().write_volatile(seg.len.to_le());
                p.add(12).cast::<u16>().write_volatile(id.to_le());
            }
            if k == 0 {
                head_flags = flags;
            } else {
                self.write_u16(16 * slot + 14, flags);
            }
            self.next_avail += 1;
            if self.next_avail == self.size {
                self.next_avail = 0;
                self.avail_wrap = !self.avail_wrap;
            }
        }
        debug_assert_eq!(head_flags & (F_AVAIL | F_USED), Self::avail_bits(head_wrap));
        // Invariant 2: the rest of the chain first, then the head's flags.
        fence(Ordering::Release);
        self.write_u16(16 * usize::from(head) + 14, head_flags);
        self.num_free -= n as u16;
        self.chain_len[usize::from(id)] = n as u16;
        self.room[usize::from(id)] = room;
        self.pending = true;
        Some(id)
    }

    #[inline]
    fn publish(&mut self) -> bool {
        std::mem::replace(&mut self.pending, false)
    }

    #[inline]
    fn needs_notify(&self) -> bool {
        fence(Ordering::SeqCst);
        self.read_u16(16 * usize::from(self.size) + 4 + 2) & 0x3 != EVENT_DISABLE
    }

    #[inline(always)]
    fn has_used(&self) -> bool {
        if self.broken {
            return false;
        }
        let f = self.read_u16(16 * usize::from(self.last_used) + 14);
        let avail = f & F_AVAIL != 0;
        let used = f & F_USED != 0;
        avail == used && used == self.used_wrap
    }

    #[inline]
    fn pop_used(&mut self) -> Option<Used> {
        if !self.has_used() {
            return None;
        }
        fence(Ordering::Acquire);
        let slot = usize::from(self.last_used);
        // SAFETY: slot < size: inside the ring; the device wrote this used descriptor (flags seen).
        let (len, id) = unsafe {
            let p = self.base.add(16 * slot);
            (
                u32::from_le(p.add(8).cast::<u32>().read_volatile()),
                u16::from_le(p.add(12).cast::<u16>().read_volatile()),
            )
        };
        // Invariant 5: the id is device input.
        let n = match self.chain_len.get(usize::from(id)) {
            Some(&n) if n > 0 => n,
            _ => {
                // How many slots this used descriptor covers is unknown: the next one cannot be
                // found. Stop here for good rather than read slots out of step with the device.
                self.errors += 1;
                self.broken = true;
                return Some(Used::BadId(u32::from(id)));
            }
        };
        self.chain_len[usize::from(id)] = 0;
        self.advance_used(n);
        self.num_free += n;
        self.free_ids.push(id);
        if len > self.room[usize::from(id)] {
            self.errors += 1;
            return Some(Used::BadLen { id, len });
        }
        Some(Used::Chain { id, len })
    }

    fn errors(&self) -> u64 {
        self.errors
    }

    fn is_broken(&self) -> bool {
        self.broken
    }

    fn set_interrupts(&mut self, on: bool) {
        // The driver event suppression structure's flags (after the descriptor ring).
        let flags = if on { EVENT_ENABLE } else { EVENT_DISABLE };
        self.write_u16(16 * usize::from(self.size) + 2, flags);
    }

    fn desc_iova(&self) -> u64 {
        self.mem.iova()
    }

    fn avail_iova(&self) -> u64 {
        self.mem.iova() + 16 * u64::from(self.size)
    }

    fn used_iova(&self) -> u64 {
        self.mem.iova() + 16 * u64::from(self.size) + 4
    }
}

impl<M: RingMemory> PackedRing<M> {
    #[inline(always)]
    fn advance_used(&mut self, n: u16) {
        let next = self.last_used + n;
        if next >= self.size {
            self.last_used = next - self.size;
            self.used_wrap = !self.used_wrap;
        } else {
            self.last_used = next;
        }
    }
}
