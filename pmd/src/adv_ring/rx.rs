//! RX side of the advanced descriptor ring.

use std::mem::ManuallyDrop;
use std::sync::atomic::{Ordering, fence};

use oxpmd_dma::{Mempool, MempoolCache, OffloadFlags, Packet, RawBuffer};

use super::desc::{self, rx_error, rx_read, rx_status, rx_wb};
use super::{QueueRegs, RingMemory, check_ring_size};
use crate::burst::Burst;
use crate::stats::QueueCounters;

/// Why an RX ring could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RxRingError {
    /// Ring size refused.
    #[error("rx ring: {0}")]
    Size(String),
    /// Descriptor memory too small or misaligned.
    #[error(
        "rx ring: descriptor memory of {len} bytes at {ptr:#x} cannot hold {descs} descriptors aligned to 128"
    )]
    Memory {
        /// Bytes available.
        len: usize,
        /// CPU address.
        ptr: usize,
        /// Descriptors asked for.
        descs: usize,
    },
    /// The pool could not fill the ring.
    #[error("rx ring: mempool could not supply {needed} buffers to fill the ring; make the pool larger")]
    Pool {
        /// Buffers needed.
        needed: usize,
    },
    /// The pool's buffers are smaller than a frame.
    #[error("rx ring: mempool buffers have {room} bytes of data room, at least {min} needed")]
    BufferTooSmall {
        /// Data room of a buffer.
        room: usize,
        /// Minimum.
        min: usize,
    },
}

/// RX advanced descriptor ring: see the [module documentation](super).
pub struct AdvRxRing<R: QueueRegs, M: RingMemory> {
    base: *mut u8,
    mask: usize,
    /// Next descriptor to check for DD.
    next: usize,
    /// Inside a frame spanning descriptors: drop until its EOP.
    discarding: bool,
    port: u16,
    queue: u16,
    /// Report a tag the device flags with VP as stripped (its TCI in the packet): the device
    /// strips (igb with CTRL.VME, a VF whose PF strips its port VLAN).
    vlan_stripped: bool,
    /// Buffer posted in each slot (raw: the device may own it).
    slots: Box<[RawBuffer]>,
    /// Replacement buffers for one burst, taken in bulk; `spare[..spare_len]` are owned by the
    /// ring (raw: their metadata is reset when they are handed out).
    spare: Box<[RawBuffer]>,
    spare_len: usize,
    /// The ring's own cache of its pool: refills take from it in bulk, with no per-burst lookup.
    cache: MempoolCache,
    regs: R,
    /// Dropped by hand in `Drop`, only once the device is known to be off (else leaked).
    mem: ManuallyDrop<M>,
}

// SAFETY: `base` points into `mem`, owned by the ring; the raw buffers are owned by the ring. Moving
// the ring to another thread moves all of it; nothing is shared.
unsafe impl<R: QueueRegs, M: RingMemory> Send for AdvRxRing<R, M> {}

/// Smallest buffer data room accepted for an RX ring (a full standard frame).
pub const MIN_RX_BUFFER: usize = 1518;

impl<R: QueueRegs, M: RingMemory> AdvRxRing<R, M> {
    /// Builds a ring of `count` descriptors in `mem`, posts a buffer from `pool` in every slot and
    /// writes their read-format descriptors. The device is not told yet: program the base
    /// ([`AdvRxRing::iova`]) and length ([`AdvRxRing::len_bytes`]), enable the queue, then call
    /// [`AdvRxRing::arm`].
    pub fn new(
        mem: M,
        regs: R,
        pool: &Mempool,
        count: usize,
        port: u16,
        queue: u16,
    ) -> Result<Self, RxRingError> {
        check_ring_size(count).map_err(RxRingError::Size)?;
        let ptr = mem.as_ptr();
        if mem.len() < count * desc::DESC_SIZE || (ptr as usize) % desc::RING_ALIGN != 0 {
            return Err(RxRingError::Memory {
                len: mem.len(),
                ptr: ptr as usize,
                descs: count,
            });
        }
        let room = pool.data_room();
        if room < MIN_RX_BUFFER {
            return Err(RxRingError::BufferTooSmall {
                room,
                min: MIN_RX_BUFFER,
            });
        }
        let mut cache = pool.cache();
        let mut slots = vec![RawBuffer::NULL; count].into_boxed_slice();
        if cache.get_bulk(&mut slots).is_err() {
            return Err(RxRingError::Pool { needed: count });
        }
        let mut ring = AdvRxRing {
            base: ptr,
            mask: count - 1,
            next: 0,
            discarding: false,
            port,
            queue,
            vlan_stripped: true,
            slots,
            spare: vec![RawBuffer::NULL; crate::burst::MAX_BURST].into_boxed_slice(),
            spare_len: 0,
            cache,
            regs,
            mem: ManuallyDrop::new(mem),
        };
        for i in 0..count {
            let b = ring.slots[i];
            ring.post(i, b);
        }
        Ok(ring)
    }

    /// Whether the device strips VLAN tags (default: yes). A ring of a device that leaves them in
    /// the frame reports no `RX_VLAN_STRIPPED`, whatever its write-backs say.
    pub fn set_vlan_stripped(&mut self, stripped: bool) {
        self.vlan_stripped = stripped;
    }

    /// Device address of the descriptor ring (RDBAL / RDBAH).
    pub fn iova(&self) -> u64 {
        self.mem.iova()
    }

    /// Ring length in bytes (RDLEN).
    pub fn len_bytes(&self) -> u32 {
        ((self.mask + 1) * desc::DESC_SIZE) as u32
    }

    /// Descriptors in the ring.
    pub fn size(&self) -> usize {
        self.mask + 1
    }

    /// Hands the filled ring to the device: release fence, then RDT = count - 1.
    pub fn arm(&mut self) {
        fence(Ordering::Release);
        self.regs.write_tail(self.mask as u32);
    }

    /// Writes the read format of slot `i` for buffer `b` (re-written on every recycle: the device
    /// zeroes the write-back area).
    #[inline(always)]
    fn post(&mut self, i: usize, b: RawBuffer) {
        // SAFETY: `b` is a live buffer owned by this ring (in a slot or the spare array).
        let addr = unsafe { b.rx_data_iova() };
        // SAFETY: i <= mask < count: the descriptor lies in the ring memory; the CPU owns it (DD
        // seen, or not yet given to the device).
        unsafe {
            desc::write_u64(self.base, i, rx_read::PKT_ADDR, addr);
            desc::write_u64(self.base, i, rx_read::HDR_ADDR, 0);
        }
    }

    /// Refills the spare array up to `want` buffers in one bulk take from the ring's cache;
    /// false if the pool cannot supply them all (then the spare array is left as it was).
    #[inline(always)]
    fn refill_spares(&mut self, want: usize) -> bool {
        if self.spare_len >= want {
            return true;
        }
        if self.cache.get_bulk(&mut self.spare[self.spare_len..want]).is_ok() {
            self.spare_len = want;
            return true;
        }
        false
    }

    /// Whether the device has written back the next descriptor (a frame, or part of one, waits
    /// for [`rx_burst`](Self::rx_burst)). Reads only its status word.
    #[inline]
    pub fn has_pending(&self) -> bool {
        // SAFETY: next <= mask: inside the ring; a read of the status word the device may be
        // writing is what rx_burst does too (DD tells whether the rest is valid).
        let status = unsafe { desc::read_u32(self.base, self.next, rx_wb::STATUS_ERROR) };
        status & rx_status::DD != 0
    }

    /// Receives up to `out.room()` frames into `out`; returns how many were appended. Counts into
    /// `c`: packets, bytes, rx_nombuf, errors, dropped multi-descriptor frames.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        let room = out.room();
        if room == 0 {
            return 0;
        }
        // One bulk allocation for the whole burst; a partial pool falls back to one at a time.
        let _ = self.refill_spares(room);
        let base = self.base;
        let mask = self.mask;
        let mut idx = self.next;
        let mut consumed = 0usize;
        let mut got = 0usize;
        let mut bytes = 0u64;
        let v = out.vec_mut();
        while got < room {
            // SAFETY: idx <= mask: inside the ring.
            let status = unsafe { desc::read_u32(base, idx, rx_wb::STATUS_ERROR) };
            if status & rx_status::DD == 0 {
                break;
            }
            // Invariant 2: the rest of the write-back is read only after DD.
            fence(Ordering::Acquire);
            consumed += 1;
            let slot_buf = self.slots[idx];
            let eop = status & rx_status::EOP != 0;
            if self.discarding || !eop || status & rx_error::FRAME != 0 {
                if !eop && !self.discarding {
                    c.rx_multiseg_dropped += 1;
                }
                if eop && !self.discarding && status & rx_error::FRAME != 0 {
                    c.ierrors += 1;
                }
                self.discarding = !eop;
                self.post(idx, slot_buf);
                idx = (idx + 1) & mask;
                continue;
            }
            // A replacement buffer: from the bulk spares, else one more try at the pool.
            if self.spare_len == 0 && !self.refill_spares(1) {
                c.rx_nombuf += 1;
                self.post(idx, slot_buf);
                idx = (idx + 1) & mask;
                continue;
            }
            self.spare_len -= 1;
            let fresh = self.spare[self.spare_len];
            // SAFETY: idx inside the ring; DD observed, so the device is done with it.
            let (len, pkt_info, rss, vlan) = unsafe {
                (
                    desc::read_u16(base, idx, rx_wb::LENGTH),
                    desc::read_u16(base, idx, rx_wb::PKT_INFO),
                    desc::read_u32(base, idx, rx_wb::RSS_HASH),
                    desc::read_u16(base, idx, rx_wb::VLAN),
                )
            };
            self.slots[idx] = fresh;
            self.post(idx, fresh);
            // SAFETY: the slot's buffer is a live pool buffer owned by this ring and the device
            // signalled DD for it: it no longer accesses it (invariant 1).
            let mut pkt = unsafe { Packet::from_raw(slot_buf) };
            // Buffers come raw from the cache with their last user's metadata: reset it (data at
            // the default headroom, which is where `post` pointed the device). The metadata is in
            // CPU-only memory: the device wrote only the buffer's bytes.
            pkt.reset();
            // Invariant 5: the device-written length is bounded by the buffer's room.
            let len = usize::from(len);
            if pkt.set_len(len).is_err() {
                c.ierrors += 1;
                drop(pkt);
                idx = (idx + 1) & mask;
                continue;
            }
            pkt.set_port(self.port);
            pkt.set_queue(self.queue);
            let mut flags = OffloadFlags::EMPTY;
            if pkt_info & desc::RX_PKT_INFO_RSS_TYPE_MASK != 0 {
                pkt.set_rss_hash(rss);
                flags |= OffloadFlags::RX_RSS_HASH;
            }
            if status & rx_status::IPCS != 0 {
                flags |= if status & rx_error::IPE != 0 {
                    OffloadFlags::RX_IP_CKSUM_BAD
                } else {
                    OffloadFlags::RX_IP_CKSUM_GOOD
                };
            }
            if status & rx_status::L4CS != 0 {
                flags |= if status & rx_error::L4E != 0 {
                    OffloadFlags::RX_L4_CKSUM_BAD
                } else {
                    OffloadFlags::RX_L4_CKSUM_GOOD
                };
            }
            if self.vlan_stripped && status & rx_status::VP != 0 {
                pkt.set_vlan_tci(vlan);
                flags |= OffloadFlags::RX_VLAN_STRIPPED;
            }
            pkt.set_flags(flags);
            bytes += len as u64;
            v.push(pkt);
            got += 1;
            idx = (idx + 1) & mask;
        }
        if consumed > 0 {
            self.next = idx;
            // Invariant 2: descriptors first, then the tail. One tail write per burst.
            fence(Ordering::Release);
            self.regs.write_tail(((idx + mask) & mask) as u32);
        }
        c.packets += got as u64;
        c.bytes += bytes;
        got
    }
}

impl<R: QueueRegs, M: RingMemory> AdvRxRing<R, M> {
    /// After the device lost the queue (a reset): writes the read format of every slot again for
    /// the buffer it already holds and starts from descriptor 0, as a freshly built ring. No
    /// buffer changes hands: each slot keeps its buffer (none taken, none freed). Frames the
    /// device wrote back before it lost the queue are overwritten: take them first
    /// ([`rx_burst`](Self::rx_burst) until [`has_pending`](Self::has_pending) is false).
    /// Then program the base and length again (head 0), enable the queue and [`arm`](Self::arm).
    ///
    /// Precondition: the queue is disabled (the device no longer writes its descriptors or
    /// buffers); otherwise the device could write into a slot while it is being rewritten.
    pub fn repost_all(&mut self) {
        self.next = 0;
        self.discarding = false;
        for i in 0..self.slots.len() {
            let b = self.slots[i];
            self.post(i, b);
        }
    }
}

impl<R: QueueRegs, M: RingMemory> Drop for AdvRxRing<R, M> {
    fn drop(&mut self) {
        // Invariant 3: the queue is off before any buffer goes back or the ring memory is freed.
        let off = super::quiesce(
            &mut self.regs,
            format_args!("port {} RX queue {}", self.port, self.queue),
        );
        fence(Ordering::SeqCst);
        // The spares were never posted: back to the pool whatever the device's state.
        let spares = core::mem::take(&mut self.spare_len);
        for &b in &self.spare[..spares] {
            // SAFETY: taken from the cache by this ring and never given to the device.
            drop(unsafe { Packet::from_raw(b) });
        }
        if !off {
            // The device may still write into the posted buffers and the descriptors: neither
            // goes back. The RawBuffers are plain values (forgotten with `slots`); the buffers'
            // pool stays alive through the references they hold.
            log::error!(
                "port {} RX queue {}: the queue could not be disabled and the device's DMA could \
                 not be stopped; leaking its {} posted buffers and its descriptor ring (restart \
                 the process to reclaim them)",
                self.port,
                self.queue,
                self.slots.len()
            );
            return;
        }
        for &b in self.slots.iter() {
            // SAFETY: each is a live buffer owned by this ring, and the device no longer accesses it
            // (queue disabled or device DMA stopped above).
            drop(unsafe { Packet::from_raw(b) });
        }
        // SAFETY: dropped once, here; `mem` is not used afterwards (only `base` pointed into it).
        unsafe { ManuallyDrop::drop(&mut self.mem) };
    }
}
