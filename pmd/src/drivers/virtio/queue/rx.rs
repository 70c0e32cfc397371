//! The virtio-net RX queue (the module documentation of [`super`] says how it works).
#![allow(unsafe_code)]

use oxpmd_dma::{ChainBuilder, Mempool, MempoolCache, OffloadFlags, Packet, RawBuffer};
use std::mem::ManuallyDrop;

use super::super::regs::nethdr;
use super::super::split::{Seg, Used, Virtqueue};
use super::{Doorbell, QueueError, free_posted, stopped_for_teardown};
use crate::burst::{Burst, MAX_BURST};
use crate::stats::QueueCounters;

/// The RX queue.
pub struct VirtioRxQueue<D: Doorbell, Q: Virtqueue> {
    /// Dropped only once the device is known stopped (leaked otherwise).
    ring: ManuallyDrop<Q>,
    /// Buffer of each chain head in flight; NULL otherwise.
    bufs: Box<[RawBuffer]>,
    /// Replacement buffers taken in bulk from `cache`; `spare[..spare_len]` are owned.
    spare: Box<[RawBuffer]>,
    spare_len: usize,
    /// The queue's own cache of its pool (no per-burst lookup).
    cache: MempoolCache,
    port: u16,
    queue: u16,
    /// Remaining buffers of a merged frame being dropped.
    discard: u32,
    /// The segments so far of a merged frame (kept across bursts), and how many buffers of it
    /// are still to come.
    partial: ChainBuilder,
    merge_left: u32,
    /// The first buffer's header flags of the frame being merged.
    frame_flags: u8,
    /// Longest frame handed out; the device's `num_buffers` is bounded by what it needs.
    max_frame: usize,
    /// Data room of one buffer.
    room: usize,
    guest_csum: bool,
    /// Strip outer 802.1Q tags in software (the device has no such feature).
    vlan_strip: bool,
    bad_ids: u64,
    bad_lens: u64,
    broken_reported: bool,
    doorbell: D,
}

// SAFETY: the ring and the raw buffers it holds are owned by the queue; moving the queue moves all
// of it (the Mempool handle is Send).
unsafe impl<D: Doorbell, Q: Virtqueue> Send for VirtioRxQueue<D, Q> {}

#[inline(always)]
fn rx_seg(b: RawBuffer) -> Seg {
    // SAFETY: `b` is a live buffer owned by the queue (caller's context).
    let (data, room) = unsafe { (b.rx_data_iova(), b.rx_room()) };
    Seg {
        addr: data - nethdr::LEN as u64,
        len: (room + nethdr::LEN) as u32,
        write: true,
    }
}

impl<D: Doorbell, Q: Virtqueue> VirtioRxQueue<D, Q> {
    /// Takes an empty `ring`, posts one buffer of `pool` per entry and publishes them (the
    /// device is told when the driver sets DRIVER_OK and kicks). `guest_csum`: the device reports
    /// validated checksums (VIRTIO_NET_F_GUEST_CSUM negotiated).
    pub fn new(
        ring: Q,
        doorbell: D,
        pool: &Mempool,
        port: u16,
        queue: u16,
        guest_csum: bool,
    ) -> Result<Self, QueueError> {
        let size = ring.size();
        if pool.headroom() < nethdr::LEN {
            return Err(QueueError::Headroom {
                headroom: pool.headroom(),
                need: nethdr::LEN,
            });
        }
        let mut cache = pool.cache();
        let mut fill = vec![RawBuffer::NULL; size];
        cache
            .get_bulk(&mut fill)
            .map_err(|_| QueueError::Pool { needed: size })?;
        let mut q = VirtioRxQueue {
            ring: ManuallyDrop::new(ring),
            bufs: vec![RawBuffer::NULL; size].into_boxed_slice(),
            spare: vec![RawBuffer::NULL; MAX_BURST].into_boxed_slice(),
            spare_len: 0,
            cache,
            port,
            queue,
            discard: 0,
            partial: ChainBuilder::new(),
            merge_left: 0,
            frame_flags: 0,
            max_frame: pool.data_room(),
            room: pool.data_room(),
            guest_csum,
            vlan_strip: false,
            bad_ids: 0,
            bad_lens: 0,
            broken_reported: false,
            doorbell,
        };
        for b in fill {
            q.post(b);
        }
        q.ring.publish();
        Ok(q)
    }

    /// Accepts frames up to `max` bytes merged over several buffers (at least one buffer's
    /// room; only meaningful with VIRTIO_NET_F_MRG_RXBUF, without which the device never merges).
    pub fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max.max(self.room);
    }

    /// Strips outer 802.1Q tags of received frames in software (`RX_VLAN_STRIPPED`, the TCI in
    /// the packet), or not (the default).
    pub fn set_vlan_strip(&mut self, on: bool) {
        self.vlan_strip = on;
    }

    /// The ring (addresses for the device).
    pub fn ring(&self) -> &Q {
        &self.ring
    }

    /// Rings the doorbell (after DRIVER_OK, so the device sees the posted buffers).
    pub fn kick(&mut self) {
        self.doorbell.notify();
    }

    /// Arms the ring's interrupt, then looks once more: whether a used buffer is already there
    /// (the caller must then poll, not sleep). The fence orders the flag store before the
    /// `used` load, as the device orders its `used.idx` store before its flag load: one of the
    /// two sides sees the other (virtio 1.1, "Receiving Used Buffers From The Device").
    pub fn arm_interrupt(&mut self) -> bool {
        self.ring.set_interrupts(true);
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        self.ring.has_used()
    }

    /// Suppresses the ring's interrupt again (while the caller polls).
    pub fn disarm_interrupt(&mut self) {
        self.ring.set_interrupts(false);
    }

    /// Posts buffer `b` (owned by the queue) in a free descriptor.
    #[inline(always)]
    fn post(&mut self, b: RawBuffer) {
        match self.ring.add(&[rx_seg(b)]) {
            Some(head) => self.bufs[usize::from(head)] = b,
            None => {
                // Cannot happen (one descriptor comes back per buffer taken); never leak.
                log::error!("virtio RX queue {}: no free descriptor for a buffer", self.queue);
                // SAFETY: `b` is owned by the queue and not posted.
                drop(unsafe { Packet::from_raw(b) });
            }
        }
    }

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

    #[inline(always)]
    fn take_spare(&mut self) -> Option<RawBuffer> {
        if self.spare_len > 0 || self.refill_spares(1) {
            self.spare_len -= 1;
            Some(self.spare[self.spare_len])
        } else {
            None
        }
    }

    /// Gives up the frame whose buffer at hand could not be taken: its segments so far are
    /// freed and the buffers still to come (after this one) are dropped as they arrive.
    fn drop_frame(&mut self) {
        self.discard = self.merge_left.saturating_sub(1);
        self.merge_left = 0;
        drop(self.partial.take());
    }

    /// Counts (and logs once) a used id that names no buffer in flight.
    #[cold]
    fn bad_id(&mut self, id: usize) {
        self.bad_ids += 1;
        if self.bad_ids == 1 {
            log::error!("virtio RX queue {}: device returned unknown id {id}", self.queue);
        }
    }

    /// Receives up to `out.room()` frames; see the [module documentation](super).
    #[inline]
    pub fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        let room = out.room();
        if room == 0 || !self.ring.has_used() {
            return 0;
        }
        let errors_before = self.ring.errors();
        let _ = self.refill_spares(room);
        let mut got = 0usize;
        let mut bytes = 0u64;
        let mut consumed = false;
        while got < room {
            let Some(used) = self.ring.pop_used() else {
                break;
            };
            consumed = true;
            let (id, len) = match used {
                Used::Chain { id, len } => (usize::from(id), len as usize),
                Used::BadId(id) => {
                    self.bad_id(id as usize);
                    continue;
                }
                Used::BadLen { id, len } => {
                    // The buffer is back but its contents are not to be trusted: post it again.
                    let Some(slot) = self.bufs.get_mut(usize::from(id)) else {
                        self.bad_id(usize::from(id));
                        continue;
                    };
                    let b = std::mem::replace(slot, RawBuffer::NULL);
                    self.bad_lens += 1;
                    if self.bad_lens == 1 {
                        log::error!(
                            "virtio RX queue {}: device reported {len} bytes for a smaller buffer",
                            self.queue
                        );
                    }
                    if !b.is_null() {
                        self.post(b);
                    }
                    continue;
                }
            };
            // The posted-id check: only a slot this queue filled when posting holds a buffer.
            let b = match self.bufs.get_mut(id) {
                Some(slot) if !slot.is_null() => std::mem::replace(slot, RawBuffer::NULL),
                _ => {
                    self.bad_id(id);
                    continue;
                }
            };
            // SAFETY: the buffer was posted by this queue in chain `id` (its slot was filled by
            // `post` and is emptied here, once), which the device has returned (used entry seen
            // after the acquire fence): it no longer accesses it.
            let mut pkt = unsafe { Packet::from_raw(b) };
            pkt.reset();
            if self.discard > 0 {
                self.discard -= 1;
                self.post(pkt.into_raw());
                continue;
            }
            // Invariant 5: the device-written length is bounded by the buffer (and, in the first
            // buffer of a frame, must hold the header).
            let first = self.merge_left == 0;
            let ok = (!first || len >= nethdr::LEN)
                && pkt.prepend(nethdr::LEN).is_some()
                && pkt.set_len(len).is_ok();
            if !ok {
                c.ierrors += 1;
                self.drop_frame();
                pkt.reset();
                self.post(pkt.into_raw());
                continue;
            }
            if first {
                let (f, num_buffers) = {
                    let h = pkt.data();
                    (
                        h[nethdr::FLAGS],
                        u16::from_le_bytes([h[nethdr::NUM_BUFFERS], h[nethdr::NUM_BUFFERS + 1]]),
                    )
                };
                self.frame_flags = f;
                // A frame needs at most max_frame / room buffers; more is not a frame we take.
                let most = self.max_frame.div_ceil(self.room) as u32;
                if num_buffers == 0 || u32::from(num_buffers) > most {
                    c.rx_multiseg_dropped += 1;
                    self.discard = u32::from(num_buffers).saturating_sub(1);
                    pkt.reset();
                    self.post(pkt.into_raw());
                    continue;
                }
                let _ = pkt.adjust(nethdr::LEN);
                self.merge_left = u32::from(num_buffers);
            }
            let Some(fresh) = self.take_spare() else {
                c.rx_nombuf += 1;
                self.drop_frame();
                pkt.reset();
                self.post(pkt.into_raw());
                continue;
            };
            self.post(fresh);
            self.merge_left -= 1;
            if !first || self.merge_left > 0 {
                if self.partial.push(pkt).is_err() || self.partial.len() > self.max_frame {
                    c.rx_multiseg_dropped += 1;
                    self.merge_left += 1;
                    self.drop_frame();
                    continue;
                }
                if self.merge_left > 0 {
                    continue;
                }
                let Some(whole) = self.partial.take() else {
                    continue;
                };
                pkt = whole;
            }
            pkt.set_port(self.port);
            pkt.set_queue(self.queue);
            if self.guest_csum && self.frame_flags & nethdr::F_DATA_VALID != 0 {
                pkt.set_flags(OffloadFlags::RX_L4_CKSUM_GOOD);
            }
            // Bytes as they crossed the link (with the tag), as the Intel NICs count them.
            bytes += pkt.len() as u64;
            if self.vlan_strip {
                crate::vlan::strip_tag(&mut pkt);
            }
            out.vec_mut().push(pkt);
            got += 1;
        }
        if consumed && self.ring.publish() && self.ring.needs_notify() {
            self.doorbell.notify();
        }
        // Device anomalies (bad ids and lengths) count as receive errors.
        c.ierrors += self.ring.errors() - errors_before;
        if self.ring.is_broken() && !self.broken_reported {
            self.broken_reported = true;
            log::error!(
                "virtio RX queue {}: the device broke the ring protocol; the queue is stopped, reopen the port",
                self.queue
            );
        }
        c.packets += got as u64;
        c.bytes += bytes;
        got
    }
}

impl<D: Doorbell, Q: Virtqueue> Drop for VirtioRxQueue<D, Q> {
    fn drop(&mut self) {
        let (queue, in_flight) = (self.queue, self.ring.in_flight());
        if !stopped_for_teardown(&mut self.doorbell, || {
            format!("virtio RX queue {queue}: its {in_flight} posted buffers and ring memory")
        }) {
            return;
        }
        // SAFETY: the queue's own posted buffers; the device is stopped.
        unsafe { free_posted(&mut self.bufs) };
        for &b in &self.spare[..core::mem::take(&mut self.spare_len)] {
            // SAFETY: taken from the cache by this queue and never posted.
            drop(unsafe { Packet::from_raw(b) });
        }
        // SAFETY: dropped once, here; the device no longer accesses the ring.
        unsafe { ManuallyDrop::drop(&mut self.ring) };
    }
}
