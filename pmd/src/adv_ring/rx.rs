//! RX side of the advanced descriptor ring.

use std::mem::ManuallyDrop;
use std::sync::atomic::{Ordering, fence};

use oxpmd_dma::{ChainBuilder, Mempool, MempoolCache, OffloadFlags, Packet, RawBuffer};

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
    /// Inside a frame spanning descriptors that is being dropped: drop until its EOP.
    discarding: bool,
    /// The segments received so far of a frame spanning descriptors (kept across bursts).
    partial: ChainBuilder,
    /// Longest frame accepted (bytes over all its descriptors); longer ones are dropped and
    /// counted. One buffer's room unless the driver allows more ([`AdvRxRing::set_max_frame`]).
    max_frame: usize,
    /// Data room of one buffer (what one descriptor can receive).
    room: usize,
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
            partial: ChainBuilder::new(),
            max_frame: room,
            room,
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

    /// Accepts frames up to `max` bytes, received over as many descriptors as they need and
    /// handed out as chained packets (the device must be set to split them: SRRCTL's buffer
    /// size, LPE and RLPML). Longer frames are dropped and counted as `rx_multiseg_dropped`,
    /// whatever the device delivers. At least one buffer's room.
    pub fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max.max(self.room);
    }

    /// Longest frame accepted (see [`AdvRxRing::set_max_frame`]).
    pub fn max_frame(&self) -> usize {
        self.max_frame
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

    /// Receives up to `out.room()` frames into `out`; returns how many were appended. A frame
    /// over several descriptors becomes a chained packet (up to EOP; a frame whose EOP has not
    /// arrived yet waits in the ring for the next burst). Counts into `c`: packets, bytes,
    /// rx_nombuf, errors, frames dropped for their length.
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
            if self.discarding {
                self.discarding = !eop;
                self.post(idx, slot_buf);
                idx = (idx + 1) & mask;
                continue;
            }
            if eop && status & rx_error::FRAME != 0 {
                // The device's verdict on the whole frame is in its last descriptor.
                c.ierrors += 1;
                drop(self.partial.take());
                self.post(idx, slot_buf);
                idx = (idx + 1) & mask;
                continue;
            }
            // SAFETY: idx inside the ring; DD observed, so the device is done with it. Read
            // before `post` rewrites the descriptor (the read format overlays the write-back);
            // hash, packet type and VLAN count only in the EOP descriptor's.
            let (len, pkt_info, rss, vlan) = unsafe {
                (
                    usize::from(desc::read_u16(base, idx, rx_wb::LENGTH)),
                    desc::read_u16(base, idx, rx_wb::PKT_INFO),
                    desc::read_u32(base, idx, rx_wb::RSS_HASH),
                    desc::read_u16(base, idx, rx_wb::VLAN),
                )
            };
            // Invariant 5: the device-written length is bounded by the buffer's room, and a
            // frame's total by the largest frame accepted; a frame needs at most max_frame /
            // room descriptors (more, zero-length ones a faulty device wrote, would only hold
            // buffers). A frame that fails either is dropped whole, its buffer reposted as is.
            let bad_len = len > self.room;
            let too_long = self.partial.len() + len > self.max_frame
                || self.partial.nb_segs() >= self.max_frame.div_ceil(self.room)
                || (!eop && self.max_frame == self.room);
            // A replacement buffer: from the bulk spares, else one more try at the pool.
            let no_buf = !bad_len && !too_long && self.spare_len == 0 && !self.refill_spares(1);
            if bad_len || too_long || no_buf {
                if bad_len {
                    c.ierrors += 1;
                } else if too_long {
                    c.rx_multiseg_dropped += 1;
                } else {
                    c.rx_nombuf += 1;
                }
                drop(self.partial.take());
                self.discarding = !eop;
                self.post(idx, slot_buf);
                idx = (idx + 1) & mask;
                continue;
            }
            self.spare_len -= 1;
            let fresh = self.spare[self.spare_len];
            self.slots[idx] = fresh;
            self.post(idx, fresh);
            // SAFETY: the slot's buffer is a live pool buffer owned by this ring and the device
            // signalled DD for it: it no longer accesses it (invariant 1).
            let mut seg = unsafe { Packet::from_raw(slot_buf) };
            // Buffers come raw from the cache with their last user's metadata: reset it (data at
            // the default headroom, which is where `post` pointed the device). The metadata is in
            // CPU-only memory: the device wrote only the buffer's bytes.
            seg.reset();
            if seg.set_len(len).is_err() {
                // Cannot happen: len <= room was checked; never trust it blindly though.
                c.ierrors += 1;
                drop(seg);
                drop(self.partial.take());
                self.discarding = !eop;
                idx = (idx + 1) & mask;
                continue;
            }
            if !eop || !self.partial.is_empty() {
                if self.partial.push(seg).is_err() {
                    // Beyond a chain's limits (the bounds above keep a frame well inside them).
                    c.rx_multiseg_dropped += 1;
                    drop(self.partial.take());
                    self.discarding = !eop;
                    idx = (idx + 1) & mask;
                    continue;
                }
                if !eop {
                    idx = (idx + 1) & mask;
                    continue;
                }
                let Some(whole) = self.partial.take() else {
                    idx = (idx + 1) & mask;
                    continue;
                };
                seg = whole;
            }
            let frame_len = seg.len();
            self.fill_metadata(&mut seg, status, pkt_info, rss, vlan);
            bytes += frame_len as u64;
            out.vec_mut().push(seg);
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

    /// Port, queue, hash, checksum verdicts and VLAN of a received frame, from its EOP
    /// descriptor's write-back.
    #[inline(always)]
    fn fill_metadata(&self, pkt: &mut Packet, status: u32, pkt_info: u16, rss: u32, vlan: u16) {
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
    /// Call it with the queue disabled (the device no longer writes its descriptors or buffers);
    /// otherwise a frame the device writes while its slot is rewritten is lost. That is a
    /// correctness condition, not a safety one, hence a safe fn: every address written is that of
    /// a buffer the ring keeps posted before, during and after the call, so a device still
    /// running can write only into memory the ring owns for it, and nothing it writes into a
    /// descriptor is trusted (the write-back is bounded on the next [`rx_burst`](Self::rx_burst)).
    pub fn repost_all(&mut self) {
        self.next = 0;
        self.discarding = false;
        // A frame whose EOP never came: its segments are the CPU's (DD was seen for each).
        drop(self.partial.take());
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
