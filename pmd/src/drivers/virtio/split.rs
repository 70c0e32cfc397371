//! The split virtqueue (virtio 1.x, section "Split Virtqueues"), driver side.
//!
//! Memory layout inside one [`RingMemory`] (device-visible, touched only through raw pointers):
//!
//! ```text
//! 0                  descriptor table: size x 16 bytes {addr le64, len le32, flags le16, next le16}
//! 16*size            available ring: flags le16, idx le16, ring[size] le16, used_event le16
//! align 64           used ring:      flags le16, idx le16, ring[size] {id le32, len le32}, avail_event le16
//! ```
//!
//! - Adding a buffer chain takes descriptors from a free list kept in CPU-only memory (a shadow
//!   of the `next` links), writes them, and puts the head in the next available slot;
//!   [`SplitRing::publish`] then issues a release fence and writes `avail.idx` once for the whole
//!   burst (design invariant 2).
//! - The descriptor table is device-writable (mapped read/write through the IOMMU), so the driver
//!   never reads it back: the `next` field is written from the shadow and the shadow alone says
//!   which descriptors form a chain or are free. Every index is masked to the ring size, and the
//!   only device values used as an index (used ids) are checked against the size and the chains
//!   in flight first, in release builds too (invariant 5).
//! - [`SplitRing::needs_notify`] tells whether the device asked for notifications (used ring flag
//!   `NO_NOTIFY` clear), after a full fence, so a polling driver only rings the doorbell when the
//!   device sleeps.
//! - Interrupts are off (`avail.flags = NO_INTERRUPT`) from the start; an RX queue that sleeps
//!   on its interrupt turns them on only for the wait ([`Virtqueue::set_interrupts`]).
//! - [`SplitRing::pop_used`] reads `used.idx` (volatile), then an acquire fence, then the entry; the
//!   entry's id and length are device input: an id that is not a published chain in flight is
//!   reported ([`Used::BadId`]) and never followed, a length larger than the chain's writable
//!   room is reported ([`Used::BadLen`], the chain is still taken back). Both are counted
//!   ([`Virtqueue::errors`]); nothing panics and no ring state changes for a bad id.
//!
//! The ring does not own buffers: its users keep a table of what each head carries and release it
//! when the head comes back (invariant 1: the CPU touches a buffer only after its chain came back).
#![allow(unsafe_code)]

use std::sync::atomic::{Ordering, fence};

use crate::adv_ring::RingMemory;

/// Descriptor flag: the chain continues in `next`.
pub const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer (otherwise it reads it).
pub const DESC_F_WRITE: u16 = 2;
/// Available ring flag: the driver does not want interrupts.
pub const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Used ring flag: the device does not want notifications.
pub const USED_F_NO_NOTIFY: u16 = 1;
/// Largest split queue (the specification's limit).
pub const MAX_QUEUE_SIZE: usize = 32768;
/// Alignment of the used ring inside the ring memory (the specification needs 4; a cache line
/// keeps the device's writes off the driver's lines).
const USED_ALIGN: usize = 64;

/// Offsets of the three parts of a split ring of `size` entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitLayout {
    /// Entries.
    pub size: usize,
    /// Offset of the available ring.
    pub avail: usize,
    /// Offset of the used ring.
    pub used: usize,
    /// Total bytes.
    pub bytes: usize,
}

impl SplitLayout {
    /// The layout for `size` entries (a power of two, 1..=32768).
    pub fn new(size: usize) -> Option<SplitLayout> {
        if !size.is_power_of_two() || size > MAX_QUEUE_SIZE {
            return None;
        }
        let avail = 16 * size;
        let used = (avail + 6 + 2 * size).next_multiple_of(USED_ALIGN);
        let bytes = used + 6 + 8 * size;
        Some(SplitLayout {
            size,
            avail,
            used,
            bytes,
        })
    }
}

/// Why a ring could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitRingError {
    /// Size refused.
    #[error("virtqueue size {0} invalid: expected a power of two in 1..=32768")]
    Size(usize),
    /// Memory too small or misaligned.
    #[error(
        "virtqueue memory of {len} bytes at {ptr:#x} cannot hold {size} entries ({need} bytes, 16-aligned)"
    )]
    Memory {
        /// Bytes available.
        len: usize,
        /// CPU address.
        ptr: usize,
        /// Entries.
        size: usize,
        /// Bytes needed.
        need: usize,
    },
}

/// One buffer of a chain: device address, length, and whether the device writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seg {
    /// Device (IO virtual) address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable (RX buffers, status bytes) or device-readable (TX data).
    pub write: bool,
}

/// A used-ring entry the driver took back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    /// Chain `id` is back; the device wrote `len` bytes into its writable part.
    Chain {
        /// Head descriptor index.
        id: u16,
        /// Bytes written by the device.
        len: u32,
    },
    /// The device returned an id that is not a chain in flight (a device bug): ignored, nothing
    /// is freed.
    BadId(u32),
    /// Chain `id` is back (its buffers are the driver's again), but the device claims it wrote
    /// `len` bytes, more than the chain's writable part: the contents must not be trusted.
    BadLen {
        /// Head descriptor index.
        id: u16,
        /// The length the device reported.
        len: u32,
    },
}

/// The driver side of a virtqueue, split or packed: what the net queues and the control queue
/// need. Ids returned by [`Virtqueue::add`] are below [`Virtqueue::size`] and come back in
/// [`Used::Chain`].
pub trait Virtqueue: Send {
    /// Entries.
    fn size(&self) -> usize;
    /// Free descriptors.
    fn num_free(&self) -> usize;
    /// Chains added and not yet taken back.
    fn in_flight(&self) -> usize;
    /// The id the next [`Virtqueue::add`] will return, if a descriptor is free.
    fn next_free_id(&self) -> Option<u16>;
    /// Adds a chain (readable parts first); `None` when it does not fit (nothing changed).
    fn add(&mut self, segs: &[Seg]) -> Option<u16>;
    /// Makes what was added visible to the device (release fence first); whether anything was new.
    fn publish(&mut self) -> bool;
    /// Whether the device asked to be notified (after a full fence).
    fn needs_notify(&self) -> bool;
    /// Whether a used chain is waiting.
    fn has_used(&self) -> bool;
    /// Takes back the next used chain (acquire fence before reading it).
    fn pop_used(&mut self) -> Option<Used>;
    /// Device address of the descriptor area (queue_desc).
    fn desc_iova(&self) -> u64;
    /// Device address of the driver area (queue_driver).
    fn avail_iova(&self) -> u64;
    /// Device address of the device area (queue_device).
    fn used_iova(&self) -> u64;
    /// Anomalies seen in what the device returned (bad ids, bad lengths).
    fn errors(&self) -> u64;
    /// Whether the ring stopped working after a device error it cannot recover from (then
    /// nothing is added or taken back; the buffers in flight go back at teardown, after the
    /// device reset; reopen the port).
    fn is_broken(&self) -> bool {
        false
    }
    /// Asks the device for used-buffer notifications (interrupts) or tells it not to send them
    /// (virtio 1.1, "Used Buffer Notification Suppression" for split rings, "Event Suppression
    /// Structure Format" for packed ones). Without VIRTIO_F_EVENT_IDX (never negotiated) this
    /// is a flag the device reads after it has written a used entry (QEMU hw/virtio/virtio.c
    /// `virtio_should_notify`, after a full barrier): to arm, the caller turns it on, issues a
    /// full fence and then looks at the used ring once more (`has_used`), so an entry written
    /// before the device could see the flag is found by that look. Not on the per-burst path.
    fn set_interrupts(&mut self, on: bool);
}

impl<M: RingMemory> Virtqueue for SplitRing<M> {
    fn size(&self) -> usize {
        SplitRing::size(self)
    }
    #[inline(always)]
    fn num_free(&self) -> usize {
        SplitRing::num_free(self)
    }
    #[inline(always)]
    fn in_flight(&self) -> usize {
        SplitRing::in_flight(self)
    }
    #[inline(always)]
    fn next_free_id(&self) -> Option<u16> {
        self.next_free_head()
    }
    #[inline(always)]
    fn add(&mut self, segs: &[Seg]) -> Option<u16> {
        SplitRing::add(self, segs)
    }
    #[inline(always)]
    fn publish(&mut self) -> bool {
        SplitRing::publish(self)
    }
    #[inline(always)]
    fn needs_notify(&self) -> bool {
        SplitRing::needs_notify(self)
    }
    #[inline(always)]
    fn has_used(&self) -> bool {
        SplitRing::has_used(self)
    }
    #[inline(always)]
    fn pop_used(&mut self) -> Option<Used> {
        SplitRing::pop_used(self)
    }
    fn desc_iova(&self) -> u64 {
        SplitRing::desc_iova(self)
    }
    fn avail_iova(&self) -> u64 {
        SplitRing::avail_iova(self)
    }
    fn used_iova(&self) -> u64 {
        SplitRing::used_iova(self)
    }
    fn errors(&self) -> u64 {
        self.errors
    }
    fn set_interrupts(&mut self, on: bool) {
        // avail.flags: NO_INTERRUPT is its only bit the driver uses.
        self.write_u16(self.layout.avail, if on { 0 } else { AVAIL_F_NO_INTERRUPT });
    }
}

/// What the driver knows of the chain headed at a descriptor (CPU-only memory).
#[derive(Debug, Clone, Copy, Default)]
struct ChainInfo {
    /// Descriptors in the chain; 0 when this is not the head of a chain in flight.
    len: u16,
    /// Whether `avail.idx` was published past it (only then may the device return it).
    published: bool,
    /// Bytes of its device-writable buffers (the most the device may report).
    room: u32,
}

/// The driver side of a split virtqueue in device-visible memory.
pub struct SplitRing<M: RingMemory> {
    base: *mut u8,
    layout: SplitLayout,
    mask: u16,
    free_head: u16,
    num_free: u16,
    /// Shadow of `avail.idx`: entries added, published or not.
    next_avail: u16,
    /// Value of `avail.idx` last written.
    published: u16,
    /// Next used entry to read.
    last_used: u16,
    /// Chains added and not yet taken back.
    chains: u16,
    /// CPU-only shadow of the descriptors' `next` links: the free list and the chains in flight.
    /// The device's copy is written from it, never read.
    next: Box<[u16]>,
    /// The chain headed at each descriptor.
    chain: Box<[ChainInfo]>,
    /// CPU-only copy of the available ring's entries (which heads `publish` makes visible).
    avail_heads: Box<[u16]>,
    /// Anomalies in used entries.
    errors: u64,
    mem: M,
}

// SAFETY: `base` points into `mem`, which the ring owns; moving the ring moves all of it.
unsafe impl<M: RingMemory> Send for SplitRing<M> {}

impl<M: RingMemory> SplitRing<M> {
    /// Builds an empty ring of `size` entries in `mem`: zeroes it, threads the free list, and
    /// sets `avail.flags = NO_INTERRUPT`. Give the device [`SplitRing::desc_iova`],
    /// [`SplitRing::avail_iova`] and [`SplitRing::used_iova`].
    pub fn new(mem: M, size: usize) -> Result<Self, SplitRingError> {
        let layout = SplitLayout::new(size).ok_or(SplitRingError::Size(size))?;
        let ptr = mem.as_ptr();
        if mem.len() < layout.bytes || (ptr as usize) % 16 != 0 {
            return Err(SplitRingError::Memory {
                len: mem.len(),
                ptr: ptr as usize,
                size,
                need: layout.bytes,
            });
        }
        // SAFETY: `mem` is valid for `layout.bytes` bytes (checked) and the device does not own
        // it yet (the queue is not enabled).
        unsafe { std::ptr::write_bytes(ptr, 0, layout.bytes) };
        let mut ring = SplitRing {
            base: ptr,
            layout,
            mask: (size - 1) as u16,
            free_head: 0,
            num_free: size as u16,
            next_avail: 0,
            published: 0,
            last_used: 0,
            chains: 0,
            next: (0..size).map(|i| ((i + 1) % size) as u16).collect(),
            chain: vec![ChainInfo::default(); size].into_boxed_slice(),
            avail_heads: vec![0; size].into_boxed_slice(),
            errors: 0,
            mem,
        };
        ring.write_u16(layout.avail, AVAIL_F_NO_INTERRUPT);
        Ok(ring)
    }

    /// Entries (descriptors) in the ring.
    pub fn size(&self) -> usize {
        self.layout.size
    }

    /// The layout.
    pub fn layout(&self) -> SplitLayout {
        self.layout
    }

    /// Device address of the descriptor table (queue_desc).
    pub fn desc_iova(&self) -> u64 {
        self.mem.iova()
    }

    /// Device address of the available ring (queue_driver).
    pub fn avail_iova(&self) -> u64 {
        self.mem.iova() + self.layout.avail as u64
    }

    /// Device address of the used ring (queue_device).
    pub fn used_iova(&self) -> u64 {
        self.mem.iova() + self.layout.used as u64
    }

    /// Free descriptors.
    #[inline(always)]
    pub fn num_free(&self) -> usize {
        usize::from(self.num_free)
    }

    /// The head the next [`SplitRing::add`] will use, if a descriptor is free.
    #[inline(always)]
    pub fn next_free_head(&self) -> Option<u16> {
        (self.num_free > 0).then_some(self.free_head & self.mask)
    }

    /// Chains added and not yet taken back (published or not).
    #[inline(always)]
    pub fn in_flight(&self) -> usize {
        usize::from(self.chains)
    }

    /// Anomalies seen in used entries (bad ids, bad lengths).
    pub fn errors(&self) -> u64 {
        self.errors
    }

    #[inline(always)]
    fn write_u16(&mut self, off: usize, v: u16) {
        // Offsets come from masked indices and the layout, never from the device.
        debug_assert!(off + 2 <= self.layout.bytes);
        // SAFETY: `off` is a field offset inside the ring memory (layout checked at new), 2-aligned
        // (every field offset is even and the base is 16-aligned).
        unsafe { self.base.add(off).cast::<u16>().write_volatile(v.to_le()) }
    }

    #[inline(always)]
    fn read_u16(&self, off: usize) -> u16 {
        debug_assert!(off + 2 <= self.layout.bytes);
        // SAFETY: as in write_u16.
        u16::from_le(unsafe { self.base.add(off).cast::<u16>().read_volatile() })
    }

    #[inline(always)]
    fn read_u32(&self, off: usize) -> u32 {
        debug_assert!(off + 4 <= self.layout.bytes);
        // SAFETY: inside the ring memory, 4-aligned (used entries are 8-aligned).
        u32::from_le(unsafe { self.base.add(off).cast::<u32>().read_volatile() })
    }

    /// Writes descriptor `i` (masked to the ring) whole, its `next` field from the shadow.
    #[inline(always)]
    fn write_desc(&mut self, i: u16, seg: Seg, flags: u16, next: u16) {
        let off = 16 * usize::from(i & self.mask);
        // SAFETY: the masked index is below the ring size, so the descriptor lies in the table
        // (layout checked at new); the CPU owns it (it is on the free list). Fields: addr at 0
        // (8-aligned), len at 8, flags at 12, next at 14.
        unsafe {
            let p = self.base.add(off);
            p.cast::<u64>().write_volatile(seg.addr.to_le());
            p.add(8).cast::<u32>().write_volatile(seg.len.to_le());
            p.add(12).cast::<u16>().write_volatile(flags.to_le());
            p.add(14).cast::<u16>().write_volatile(next.to_le());
        }
    }

    /// Adds a chain of `segs` (device-readable parts should come before writable ones) and puts
    /// it in the next available slot, not yet published. Returns the head index, or `None` when
    /// there are not enough free descriptors (nothing changed) or `segs` is empty.
    #[inline]
    pub fn add(&mut self, segs: &[Seg]) -> Option<u16> {
        let n = segs.len();
        if n == 0 || n > usize::from(self.num_free) {
            return None;
        }
        let mask = self.mask;
        let head = self.free_head & mask;
        let mut i = head;
        let mut room = 0u32;
        for (k, seg) in segs.iter().enumerate() {
            let next = self.next[usize::from(i)] & mask;
            let mut flags = if seg.write { DESC_F_WRITE } else { 0 };
            if seg.write {
                room = room.saturating_add(seg.len);
            }
            if k + 1 < n {
                flags |= DESC_F_NEXT;
                self.write_desc(i, *seg, flags, next);
                i = next;
            } else {
                self.write_desc(i, *seg, flags, 0);
            }
        }
        self.free_head = self.next[usize::from(i)] & mask;
        self.num_free -= n as u16;
        self.chains += 1;
        self.chain[usize::from(head)] = ChainInfo {
            len: n as u16,
            published: false,
            room,
        };
        let slot_index = usize::from(self.next_avail & mask);
        self.avail_heads[slot_index] = head;
        self.write_u16(self.layout.avail + 4 + 2 * slot_index, head);
        self.next_avail = self.next_avail.wrapping_add(1);
        Some(head)
    }

    /// Makes every chain added so far visible to the device: release fence, then `avail.idx`
    /// (invariant 2). Returns whether anything new was published.
    #[inline]
    pub fn publish(&mut self) -> bool {
        if self.published == self.next_avail {
            return false;
        }
        let mut k = self.published;
        while k != self.next_avail {
            let head = self.avail_heads[usize::from(k & self.mask)];
            self.chain[usize::from(head)].published = true;
            k = k.wrapping_add(1);
        }
        fence(Ordering::Release);
        self.write_u16(self.layout.avail + 2, self.next_avail);
        self.published = self.next_avail;
        true
    }

    /// Whether the device wants a notification for what was published: a full fence (the
    /// `avail.idx` store must be visible before the flag is read), then `used.flags` NO_NOTIFY.
    #[inline]
    pub fn needs_notify(&self) -> bool {
        fence(Ordering::SeqCst);
        self.read_u16(self.layout.used) & USED_F_NO_NOTIFY == 0
    }

    /// Whether the device has returned a chain not yet taken back.
    #[inline(always)]
    pub fn has_used(&self) -> bool {
        self.read_u16(self.layout.used + 2) != self.last_used
    }

    /// Takes back the next used chain, if any: reads `used.idx`, acquire fence, then the entry
    /// (invariant 2). Its descriptors go back to the free list. The entry is device input
    /// (invariant 5): see [`Used`] for what a bad id or length gives.
    #[inline]
    pub fn pop_used(&mut self) -> Option<Used> {
        let used_idx = self.read_u16(self.layout.used + 2);
        if used_idx == self.last_used {
            return None;
        }
        fence(Ordering::Acquire);
        let e = self.layout.used + 4 + 8 * usize::from(self.last_used & self.mask);
        let id = self.read_u32(e);
        let len = self.read_u32(e + 4);
        self.last_used = self.last_used.wrapping_add(1);
        // Invariant 5: the id is device input: bounded by the ring, and a published chain in
        // flight, before it is used as an index.
        let info = match usize::try_from(id).ok().and_then(|i| self.chain.get(i)) {
            Some(c) if c.len > 0 && c.published => *c,
            _ => {
                self.errors += 1;
                return Some(Used::BadId(id));
            }
        };
        let head = id as u16 & self.mask;
        self.chain[usize::from(head)] = ChainInfo::default();
        // The chain's links are the CPU's shadow: the device cannot change them.
        let mut tail = head;
        for _ in 1..info.len {
            tail = self.next[usize::from(tail)] & self.mask;
        }
        self.next[usize::from(tail)] = self.free_head & self.mask;
        self.free_head = head;
        self.num_free += info.len;
        self.chains -= 1;
        if len > info.room {
            self.errors += 1;
            return Some(Used::BadLen { id: head, len });
        }
        Some(Used::Chain { id: head, len })
    }

    /// Heads of the chains still in flight (for teardown: their buffers go back once the device
    /// is stopped).
    pub fn heads_in_flight(&self) -> impl Iterator<Item = u16> + '_ {
        self.chain
            .iter()
            .enumerate()
            .filter(|(_, c)| c.len > 0)
            .map(|(i, _)| i as u16)
    }

    /// CPU address of the ring memory (for fake devices in tests).
    #[cfg(test)]
    pub(crate) fn base_ptr(&self) -> *mut u8 {
        self.base
    }
}
