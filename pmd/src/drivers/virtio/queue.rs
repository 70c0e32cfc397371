//! virtio-net RX and TX queues on a [`Virtqueue`] (split or packed).
//!
//! - RX: every buffer is one device-writable descriptor starting [`nethdr::LEN`] bytes before the
//!   buffer's data offset, so the device writes the 12-byte net header into the headroom and the
//!   frame at the data offset: no copy. A frame the device merged over several buffers
//!   (VIRTIO_NET_F_MRG_RXBUF, `num_buffers > 1` in the first one's header) becomes a chained
//!   packet: the first segment starts after the header, the others at the start of their buffer
//!   (only the first holds a header). `num_buffers` is the device's word: it is bounded by the
//!   largest frame the queue accepts, and a frame beyond it is dropped and counted
//!   (`rx_multiseg_dropped`).
//! - TX: the net header is prepended into the packet's headroom (one descriptor per packet); a
//!   packet without 12 bytes of headroom gets a two-descriptor chain whose header lives in a
//!   per-slot table in the ring memory. Checksum offload: `TX_TCP_CKSUM` / `TX_UDP_CKSUM` become
//!   `NEEDS_CSUM` with `csum_start` / `csum_offset` (the application has put the pseudo-header
//!   sum in the checksum field, as for the Intel NICs); `TX_IP_CKSUM` is computed here in
//!   software (virtio has no IPv4 header checksum offload). TSO (`TX_TCP_SEG` with a segment
//!   size): when the device negotiated VIRTIO_NET_F_HOST_TSO4 / 6 (with NET_CSUM), the header
//!   carries `gso_type` TCPV4 / TCPV6, `hdr_len` and `gso_size` and the device cuts the packet
//!   (up to [`MAX_TSO_LEN`]); any other TSO packet is refused and counted.
//! - The doorbell is rung once per burst, and only when the device asks for it (used ring flag).
//! - Teardown (invariant 3): a queue's `Drop` first calls [`Doorbell::stop_device`] (virtio 1.0
//!   has no per-queue stop: the device is reset, which stops all its DMA), then frees its buffers.
//!   If the device could not be stopped, the buffers and the ring memory are leaked instead: the
//!   device may still write them.
//! - Device anomalies (used ids not in flight, lengths beyond the buffer) are counted, never
//!   followed: whatever the [`Virtqueue`] reports, a buffer is taken back only from a slot this
//!   queue filled when it posted it (the posted-id check), so a wrong id can never become a
//!   packet; a ring that cannot go on (a packed ring after a bad id) is reported once and the
//!   queue then does nothing until it is dropped (reopen the port).
#![allow(unsafe_code)]

use oxpmd_dma::{ChainBuilder, Mempool, MempoolCache, OffloadFlags, Packet, PoolCaches, RawBuffer};
use std::mem::ManuallyDrop;

use super::regs::nethdr;
use super::split::{Seg, Used, Virtqueue};
use crate::adv_ring::RingMemory;
use crate::burst::{Burst, MAX_BURST};
use crate::checksum::{Checksum, complete_l4_checksum_packet, ipv4_header_checksum};
use crate::headers::{HeaderLayout, L3};
use crate::stats::QueueCounters;

/// Longest frame the TX path accepts (a standard frame with VLAN tags fits many times).
pub const MAX_TX_LEN: usize = 9728;
/// Most segments of one TX packet (each is one descriptor, after the header's).
pub const MAX_TX_SEGS: usize = 32;
/// Longest TSO packet the TX path gives the device to segment (headers included): 64 KiB, the
/// most a GSO packet of Linux's virtio-net carries and what QEMU's device takes.
pub const MAX_TSO_LEN: usize = 64 * 1024;

/// The headers of a TSO packet when the device negotiated segmentation for its family
/// (`tso[0]` IPv4, `tso[1]` IPv6): TCP, every header in the first segment, an MSS of
/// 1..=[`MAX_TX_LEN`] less the headers, the whole packet at most [`MAX_TSO_LEN`].
fn tso_layout(p: &Packet, tso: [bool; 2]) -> Option<HeaderLayout> {
    let h = HeaderLayout::for_tso(p.data(), p.tso_segsz(), MAX_TX_LEN)?;
    let family = match h.l3 {
        L3::Ipv4 => tso[0],
        L3::Ipv6 => tso[1],
    };
    let fits = family && p.len() > h.header_len() && p.len() <= MAX_TSO_LEN;
    fits.then_some(h)
}

/// What a queue needs from the device besides its ring memory.
///
/// # Safety
/// [`stop_device`](Doorbell::stop_device) returns `true` only when the device can no longer
/// read or write the queue's ring and buffers: the queue then frees both, and a device still
/// writing would corrupt memory that has been reused.
pub unsafe trait Doorbell: Send {
    /// Notifies the device that the queue has new available buffers (a 16-bit write of the queue
    /// index to its notify address).
    fn notify(&mut self);
    /// Stops the device's DMA to this queue's ring and buffers and returns once it is stopped,
    /// even when another thread (another queue, the driver) is stopping it at the same time.
    /// Called once by the queue's `Drop`, before any buffer is freed. Returns whether the device
    /// is known to be stopped; when not, the queue leaks its buffers and ring memory.
    fn stop_device(&mut self) -> bool;
}

/// Extra bytes of ring memory a TX queue of `size` entries needs after the ring (header table).
pub fn tx_header_table_bytes(size: usize) -> usize {
    16 * size
}

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

/// Why a queue could not be built.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Ring layout refused.
    #[error(transparent)]
    Ring(#[from] super::split::SplitRingError),
    /// The pool could not fill the ring.
    #[error("mempool could not supply {needed} buffers to fill the RX ring; make the pool larger")]
    Pool {
        /// Buffers needed.
        needed: usize,
    },
    /// The pool's buffers leave no room for the net header.
    #[error(
        "mempool buffers have {headroom} bytes of headroom; the virtio-net header needs {need} \
         (use the default headroom of 128)"
    )]
    Headroom {
        /// Headroom of the pool.
        headroom: usize,
        /// Needed.
        need: usize,
    },
}

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

    /// Receives up to `out.room()` frames; see the [module documentation](self).
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
        // Invariant 3: the device is stopped before any buffer goes back.
        let stopped = self.doorbell.stop_device();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if !stopped {
            log::error!(
                "virtio RX queue {}: the device could not be stopped: its {} posted buffers and \
                 ring memory are leaked (the device may still write them)",
                self.queue,
                self.ring.in_flight()
            );
            return;
        }
        for b in self.bufs.iter_mut() {
            let b = std::mem::replace(b, RawBuffer::NULL);
            if !b.is_null() {
                // SAFETY: a buffer owned by this queue; the device is stopped.
                drop(unsafe { Packet::from_raw(b) });
            }
        }
        for &b in &self.spare[..core::mem::take(&mut self.spare_len)] {
            // SAFETY: taken from the cache by this queue and never posted.
            drop(unsafe { Packet::from_raw(b) });
        }
        // SAFETY: dropped once, here; the device no longer accesses the ring.
        unsafe { ManuallyDrop::drop(&mut self.ring) };
    }
}

/// Checks that a packet's memory is mapped for the device (design invariant 3); `None` in tests.
pub trait TxAddressCheck: Send {
    /// Fast check: packets of this pool are known good.
    fn knows(&self, pool_id: u64) -> bool;
    /// Full check of one packet (remembers its pool when good).
    fn check(&mut self, pkt: &Packet) -> bool;
    /// Device name for messages.
    fn device(&self) -> &str;
}

/// The TX queue.
pub struct VirtioTxQueue<D: Doorbell, Q: Virtqueue, H: RingMemory> {
    /// Dropped only once the device is known stopped (leaked otherwise).
    ring: ManuallyDrop<Q>,
    /// Memory of the header table (kept alive; accessed through `hdr_ptr`); dropped like `ring`.
    hdr_mem: ManuallyDrop<H>,
    bufs: Box<[RawBuffer]>,
    /// Offset of the header table in the ring memory, and its CPU / device addresses.
    hdr_ptr: *mut u8,
    hdr_iova: u64,
    csum: bool,
    /// The device segments TCP over IPv4 / IPv6 (VIRTIO_NET_F_HOST_TSO4 / 6 negotiated).
    tso: [bool; 2],
    scratch: Box<[RawBuffer]>,
    /// Where cleanup frees the sent buffers: the cache of each buffer's own pool, in bulk.
    caches: PoolCaches,
    /// Heads of the chains added in the current burst, in packet order.
    heads: Box<[u16]>,
    check: Option<Box<dyn TxAddressCheck>>,
    bad_ids: u64,
    broken_reported: bool,
    doorbell: D,
}

// SAFETY: the ring, the header table (inside the ring memory) and the raw buffers are owned by
// the queue; moving it moves all of it.
unsafe impl<D: Doorbell, Q: Virtqueue, H: RingMemory> Send for VirtioTxQueue<D, Q, H> {}

/// Fills a 12-byte net header for `pkt` (flags, csum fields), computing the IPv4 header
/// checksum in software when asked.
#[inline(always)]
fn net_header(pkt: &mut Packet, csum: bool, tso: [bool; 2]) -> [u8; nethdr::LEN] {
    let mut h = [0u8; nethdr::LEN];
    let flags = pkt.flags();
    if flags.contains(OffloadFlags::TX_TCP_SEG)
        && let Some(l) = tso_layout(pkt, tso)
    {
        // The device cuts the payload into `gso_size` pieces and writes each segment's IP
        // lengths, IPv4 id and checksum, TCP sequence number and checksum; the TCP checksum
        // field holds the pseudo-header sum without the length, as for the Intel devices. The
        // big packet's own IPv4 header checksum is made valid here when asked: a device that
        // hands the packet to a host stack whole (QEMU with a tap) may have it checked there
        // (a Linux bridge's netfilter drops a bad one) before it is cut.
        if flags.contains(OffloadFlags::TX_IP_CKSUM) && l.l3 == L3::Ipv4 {
            ipv4_header_checksum(pkt.data_mut(), l.l2_len, l.l3_len);
        }
        // The application put the pseudo-header sum without the length in the TCP checksum
        // field (the Intel convention, as DPDK's); a virtio device, like Linux's GSO, takes it
        // with the length of the whole TCP segment and adjusts it per segment: add it.
        let at = l.l4_offset() + 16;
        let tcp_len = pkt.len() - l.l4_offset();
        let d = pkt.data_mut();
        let mut sum = Checksum::new();
        sum.add(&d[at..at + 2]);
        sum.add(&(tcp_len as u32).to_be_bytes());
        d[at..at + 2].copy_from_slice(&sum.folded().to_be_bytes());
        h[nethdr::FLAGS] = nethdr::F_NEEDS_CSUM;
        h[nethdr::GSO_TYPE] = match l.l3 {
            L3::Ipv4 => nethdr::GSO_TCPV4,
            L3::Ipv6 => nethdr::GSO_TCPV6,
        };
        h[nethdr::HDR_LEN..nethdr::HDR_LEN + 2].copy_from_slice(&(l.header_len() as u16).to_le_bytes());
        h[nethdr::GSO_SIZE..nethdr::GSO_SIZE + 2].copy_from_slice(&pkt.tso_segsz().to_le_bytes());
        h[nethdr::CSUM_START..nethdr::CSUM_START + 2].copy_from_slice(&(l.l4_offset() as u16).to_le_bytes());
        h[nethdr::CSUM_OFFSET..nethdr::CSUM_OFFSET + 2].copy_from_slice(&16u16.to_le_bytes());
        return h;
    }
    let wants = OffloadFlags(
        flags.bits()
            & (OffloadFlags::TX_IP_CKSUM | OffloadFlags::TX_TCP_CKSUM | OffloadFlags::TX_UDP_CKSUM).bits(),
    );
    if wants.is_empty() {
        return h;
    }
    let Some(l) = HeaderLayout::parse(pkt.data()) else {
        return h;
    };
    if flags.contains(OffloadFlags::TX_IP_CKSUM) && l.l3 == L3::Ipv4 {
        ipv4_header_checksum(pkt.data_mut(), l.l2_len, l.l3_len);
    }
    let field = if flags.contains(OffloadFlags::TX_TCP_CKSUM) && l.is_tcp() {
        Some(16u16)
    } else if flags.contains(OffloadFlags::TX_UDP_CKSUM) && l.is_udp() {
        Some(6u16)
    } else {
        None
    };
    if let Some(off) = field {
        let start = l.l4_offset();
        if csum {
            h[nethdr::FLAGS] = nethdr::F_NEEDS_CSUM;
            h[nethdr::CSUM_START..nethdr::CSUM_START + 2].copy_from_slice(&(start as u16).to_le_bytes());
            h[nethdr::CSUM_OFFSET..nethdr::CSUM_OFFSET + 2].copy_from_slice(&off.to_le_bytes());
        } else {
            // The device cannot: do what it would, in software, over every segment.
            complete_l4_checksum_packet(pkt, start, usize::from(off));
        }
    }
    h[nethdr::GSO_TYPE] = nethdr::GSO_NONE;
    h
}

impl<D: Doorbell, Q: Virtqueue, H: RingMemory> VirtioTxQueue<D, Q, H> {
    /// Takes an empty `ring` and `hdr_mem` for the header table ([`tx_header_table_bytes`] of
    /// the ring's size). `csum`: VIRTIO_NET_F_CSUM negotiated.
    pub fn new(
        ring: Q,
        hdr_mem: H,
        doorbell: D,
        csum: bool,
        check: Option<Box<dyn TxAddressCheck>>,
    ) -> Result<Self, QueueError> {
        let size = ring.size();
        let need = tx_header_table_bytes(size);
        if hdr_mem.len() < need {
            return Err(QueueError::Ring(super::split::SplitRingError::Memory {
                len: hdr_mem.len(),
                ptr: hdr_mem.as_ptr() as usize,
                size,
                need,
            }));
        }
        let hdr_ptr = hdr_mem.as_ptr();
        let hdr_iova = hdr_mem.iova();
        Ok(VirtioTxQueue {
            ring: ManuallyDrop::new(ring),
            hdr_mem: ManuallyDrop::new(hdr_mem),
            bufs: vec![RawBuffer::NULL; size].into_boxed_slice(),
            hdr_ptr,
            hdr_iova,
            csum,
            tso: [false; 2],
            scratch: vec![RawBuffer::NULL; size].into_boxed_slice(),
            caches: PoolCaches::new(),
            heads: vec![0; MAX_BURST.max(size)].into_boxed_slice(),
            check,
            bad_ids: 0,
            broken_reported: false,
            doorbell,
        })
    }

    /// Lets TSO packets (`TX_TCP_SEG`) of IPv4 (`v4`) and IPv6 (`v6`) through to the device,
    /// which negotiated VIRTIO_NET_F_HOST_TSO4 / 6 (and NET_CSUM, which they need); any other TSO
    /// packet stays refused and counted.
    pub fn with_tso(mut self, v4: bool, v6: bool) -> Self {
        self.tso = [v4 && self.csum, v6 && self.csum];
        self
    }

    /// The ring (addresses for the device).
    pub fn ring(&self) -> &Q {
        &self.ring
    }

    /// Frees the buffers of every chain the device has returned; returns how many.
    #[inline]
    pub fn cleanup(&mut self) -> usize {
        let mut n = 0usize;
        while let Some(used) = self.ring.pop_used() {
            match used {
                // A TX chain has no writable part: a length is a device bug, but the device is
                // done with the buffer all the same (counted in the ring's errors).
                Used::Chain { id, .. } | Used::BadLen { id, .. } => {
                    // The posted-id check: only a slot filled when posting holds a buffer.
                    match self.bufs.get_mut(usize::from(id)) {
                        Some(slot) if !slot.is_null() => {
                            let b = std::mem::replace(slot, RawBuffer::NULL);
                            // SAFETY: a buffer this queue posted (live until freed here).
                            if unsafe { b.is_chained() } {
                                // SAFETY: as for the bulk put below: the device is done with
                                // every segment of the chain it returned.
                                drop(unsafe { Packet::from_raw(b) });
                            } else {
                                self.scratch[n] = b;
                                n += 1;
                            }
                        }
                        _ => {
                            self.bad_ids += 1;
                            if self.bad_ids == 1 {
                                log::error!("virtio TX: device returned id {id}, not in flight");
                            }
                        }
                    }
                }
                Used::BadId(id) => {
                    self.bad_ids += 1;
                    if self.bad_ids == 1 {
                        log::error!("virtio TX: device returned unknown id {id}");
                    }
                }
            }
        }
        if self.ring.is_broken() && !self.broken_reported {
            self.broken_reported = true;
            log::error!(
                "virtio TX queue: the device broke the ring protocol; the queue is stopped, reopen the port"
            );
        }
        // SAFETY: buffers this queue posted, each taken once from its slot; their chains came
        // back from the device (used entries read after the acquire fence), so the device no
        // longer reads them.
        unsafe { self.caches.put_bulk(&self.scratch[..n]) };
        n
    }

    /// Sends packets from the front of `pkts`; see the [module documentation](self).
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        let mut refused = 0usize;
        // Invariant 5: lengths the device must not be given are freed and counted, and so are
        // packets asking for a VLAN tag they have no room for.
        // TX_TCP_SEG: only what the device negotiated to segment (tso_layout).
        let tso = self.tso;
        let unsendable = |p: &Packet| {
            let seg = p.flags().contains(OffloadFlags::TX_TCP_SEG);
            p.is_empty()
                || (seg && tso_layout(p, tso).is_none())
                || (!seg && p.len() > MAX_TX_LEN)
                || (!p.is_contiguous() && (p.nb_segs() > MAX_TX_SEGS || p.segments().any(<[u8]>::is_empty)))
                || (p.flags().contains(OffloadFlags::TX_VLAN_INSERT) && !crate::vlan::can_insert_tag(p))
        };
        if pkts.iter().any(unsendable) {
            let before = pkts.len();
            pkts.retain(|p| !unsendable(p));
            refused += before - pkts.len();
        }
        // Invariant 3: only memory mapped for the device.
        if let Some(check) = self.check.as_mut()
            && !pkts.iter().all(|p| check.knows(p.pool_id()))
        {
            let before = pkts.len();
            pkts.retain(|p| check.check(p));
            let n = before - pkts.len();
            if n > 0 {
                log::warn!(
                    "{}: TX: {n} packet(s) refused: their memory is not mapped for this device \
                     (create the mempool with Port::dma_map() of this port)",
                    check.device()
                );
                refused += n;
            }
        }
        c.ierrors += refused as u64;
        if self.ring.num_free() < pkts.len().max(32) {
            self.cleanup();
        }
        let mut taken = 0usize;
        let mut bytes = 0u64;
        for pkt in pkts.iter_mut() {
            // Room first: the header may change the packet (software checksums, a VLAN tag),
            // which must happen only to a packet that is then taken.
            let tag = if pkt.flags().contains(OffloadFlags::TX_VLAN_INSERT) {
                crate::vlan::TAG_LEN
            } else {
                0
            };
            let inline_hdr = pkt.headroom() >= nethdr::LEN + tag;
            let descs = pkt.nb_segs() + usize::from(!inline_hdr);
            if self.ring.num_free() < descs {
                break;
            }
            if tag > 0 {
                // Cannot fail: packets without room for the tag were refused above.
                let inserted = crate::vlan::insert_tag(pkt);
                debug_assert!(inserted);
            }
            let h = net_header(pkt, self.csum, self.tso);
            let len = pkt.len();
            // The chain: the header (in the packet's headroom, or in the header table), then
            // one descriptor per segment.
            let hdr_seg = if inline_hdr {
                if let Some(room) = pkt.prepend(nethdr::LEN) {
                    room.copy_from_slice(&h);
                }
                None
            } else {
                // The header table slot of the head this chain will get.
                let Some(head) = self.next_head() else { break };
                let slot = usize::from(head) * 16;
                // SAFETY: slot < 16 * size: inside the header table of the ring memory, which the
                // CPU owns (head is free, so the device does not read this slot).
                unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), self.hdr_ptr.add(slot), h.len()) };
                Some(Seg {
                    addr: self.hdr_iova + slot as u64,
                    len: nethdr::LEN as u32,
                    write: false,
                })
            };
            let head = if pkt.is_contiguous() {
                let data = Seg {
                    addr: pkt.data_iova(),
                    len: pkt.seg_len() as u32,
                    write: false,
                };
                match hdr_seg {
                    Some(hs) => self.ring.add(&[hs, data]),
                    None => self.ring.add(&[data]),
                }
            } else {
                self.add_chain(hdr_seg, pkt)
            };
            if head.is_none() && inline_hdr {
                // Not taken: the packet stays in the burst as it was.
                let _ = pkt.adjust(nethdr::LEN);
            }
            let Some(head) = head else { break };
            self.heads[taken] = head;
            bytes += len as u64;
            taken += 1;
        }
        // Move the taken packets out of the burst into their slots.
        for (k, pkt) in pkts.drain_front(taken).enumerate() {
            self.bufs[usize::from(self.heads[k])] = pkt.into_raw();
        }
        if taken > 0 {
            self.ring.publish();
            if self.ring.needs_notify() {
                self.doorbell.notify();
            }
        }
        c.packets += taken as u64;
        c.bytes += bytes;
        refused + taken
    }

    /// Adds the descriptor chain of a chained packet: the header's descriptor (if it is not in
    /// the packet's headroom), then one per segment.
    #[cold]
    fn add_chain(&mut self, hdr: Option<Seg>, pkt: &Packet) -> Option<u16> {
        let mut segs = [Seg {
            addr: 0,
            len: 0,
            write: false,
        }; MAX_TX_SEGS + 1];
        let mut n = 0;
        for seg in hdr.into_iter().chain(pkt.dma_segments().map(|(addr, len)| Seg {
            addr,
            len: len as u32,
            write: false,
        })) {
            // At most MAX_TX_SEGS segments (longer chains were refused) and one header.
            *segs.get_mut(n)? = seg;
            n += 1;
        }
        self.ring.add(&segs[..n])
    }

    /// The head the next chain will get.
    #[inline(always)]
    fn next_head(&self) -> Option<u16> {
        self.ring.next_free_id()
    }
}

impl<D: Doorbell, Q: Virtqueue, H: RingMemory> Drop for VirtioTxQueue<D, Q, H> {
    fn drop(&mut self) {
        // Invariant 3: the device is stopped before any buffer goes back.
        let stopped = self.doorbell.stop_device();
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        if !stopped {
            log::error!(
                "virtio TX queue: the device could not be stopped: {} chains' buffers and the ring \
                 memory are leaked (the device may still read them)",
                self.ring.in_flight()
            );
            return;
        }
        for b in self.bufs.iter_mut() {
            let b = std::mem::replace(b, RawBuffer::NULL);
            if !b.is_null() {
                // SAFETY: a buffer owned by this queue; the device is stopped.
                drop(unsafe { Packet::from_raw(b) });
            }
        }
        // SAFETY: dropped once, here; the device no longer accesses the ring or the header table.
        unsafe {
            ManuallyDrop::drop(&mut self.ring);
            ManuallyDrop::drop(&mut self.hdr_mem);
        }
    }
}
