//! The virtio-net TX queue (the module documentation of [`super`] says how it works).
#![allow(unsafe_code)]

use oxpmd_dma::{OffloadFlags, Packet, PoolCaches, RawBuffer};
use std::mem::ManuallyDrop;

use super::super::regs::nethdr;
use super::super::split::{Seg, Used, Virtqueue};
use super::{Doorbell, QueueError, free_posted, stopped_for_teardown};
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

/// Extra bytes of ring memory a TX queue of `size` entries needs after the ring (header table).
pub fn tx_header_table_bytes(size: usize) -> usize {
    16 * size
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
            return Err(QueueError::Ring(super::super::split::SplitRingError::Memory {
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

    /// Sends packets from the front of `pkts`; see the [module documentation](super).
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
        let in_flight = self.ring.in_flight();
        if !stopped_for_teardown(&mut self.doorbell, || {
            format!("virtio TX queue: {in_flight} chains' buffers and the ring memory")
        }) {
            return;
        }
        // SAFETY: the queue's own posted buffers; the device is stopped.
        unsafe { free_posted(&mut self.bufs) };
        // SAFETY: dropped once, here; the device no longer accesses the ring or the header table.
        unsafe {
            ManuallyDrop::drop(&mut self.ring);
            ManuallyDrop::drop(&mut self.hdr_mem);
        }
    }
}
