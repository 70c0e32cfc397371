//! TX side of the advanced descriptor ring.

use std::mem::ManuallyDrop;
use std::sync::atomic::{Ordering, fence};

use oxpmd_dma::{OffloadFlags, Packet, PoolCaches, RawBuffer};

use crate::headers::{HeaderLayout, L3};

use super::desc::{self, tx};
use super::{QueueRegs, RingMemory, check_ring_size};
use crate::burst::Burst;
use crate::stats::QueueCounters;

/// RS is requested on (at least) every this many descriptors; cleanup frees this many at a time.
pub const TX_RS_THRESH: usize = 32;

/// Longest packet sent (and longest data of one descriptor; 82576 limit).
pub const MAX_TX_LEN: usize = 16_383;

/// Most segments (data descriptors) of one packet: a bound that keeps every packet within a
/// ring of [`MIN_RING_SIZE`](super::MIN_RING_SIZE) descriptors.
pub const MAX_TX_SEGS: usize = 32;

/// Longest TCP payload of one TSO packet (PAYLEN has 18 bits).
pub const MAX_TSO_PAYLOAD: usize = (1 << 18) - 1;

/// Whether the ring can send `p`: not empty, not longer than [`MAX_TX_LEN`] (a TSO packet: its
/// headers in the first segment, a payload up to [`MAX_TSO_PAYLOAD`] and an MSS the device can
/// cut), and if chained, at most [`MAX_TX_SEGS`] segments none of which is empty.
#[inline(always)]
fn sendable(p: &Packet) -> bool {
    let len_ok = if p.flags().contains(OffloadFlags::TX_TCP_SEG) {
        tso_layout(p).is_some()
    } else {
        p.len() <= MAX_TX_LEN
    };
    !p.is_empty()
        && len_ok
        && (p.is_contiguous() || (p.nb_segs() <= MAX_TX_SEGS && p.segments().all(|s| !s.is_empty())))
}

/// The headers of a TSO packet when the device can segment it: TCP over IPv4 or IPv6, every
/// header in the first segment, an MSS of 1..=[`MAX_TX_LEN`] less the headers, a payload up to
/// [`MAX_TSO_PAYLOAD`], and header lengths the context descriptor's fields can hold.
fn tso_layout(p: &Packet) -> Option<HeaderLayout> {
    let h = HeaderLayout::for_tso(p.data(), p.tso_segsz(), MAX_TX_LEN)?;
    let payload = p.len().checked_sub(h.header_len())?;
    let fits = payload <= MAX_TSO_PAYLOAD && h.l2_len < 128 && h.l3_len < 512 && h.l4_len < 256;
    fits.then_some(h)
}

/// Why a TX ring could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TxRingError {
    /// Ring size refused.
    #[error("tx ring: {0}")]
    Size(String),
    /// Descriptor memory too small or misaligned.
    #[error(
        "tx ring: descriptor memory of {len} bytes at {ptr:#x} cannot hold {descs} descriptors aligned to 128"
    )]
    Memory {
        /// Bytes available.
        len: usize,
        /// CPU address.
        ptr: usize,
        /// Descriptors asked for.
        descs: usize,
    },
}

/// Offload context currently loaded in the device's context slot.
#[derive(Clone, Copy, PartialEq, Eq)]
struct TxContext {
    vlan_macip_lens: u32,
    type_tucmd: u32,
    /// MSS and L4LEN (TSO only; the index is added when written).
    mss_l4len: u32,
}

/// TX advanced descriptor ring: see the [module documentation](super).
pub struct AdvTxRing<R: QueueRegs, M: RingMemory> {
    base: *mut u8,
    mask: usize,
    /// Next descriptor to write.
    tail: usize,
    /// Oldest descriptor not yet cleaned.
    clean: usize,
    /// Descriptors written since the last RS.
    since_rs: usize,
    /// FIFO of descriptor indices that carry RS: `rs_marks[rs_head..rs_tail]` (mod count).
    rs_marks: Box<[u32]>,
    rs_head: usize,
    rs_tail: usize,
    /// Context index used in data and context descriptors (0 on 82576; per-queue on 82575).
    ctx_idx: u32,
    ctx: Option<TxContext>,
    /// Buffer of each data descriptor until cleaned; NULL for context / empty slots.
    slots: Box<[RawBuffer]>,
    /// Where cleanup frees the sent buffers: the cache of each buffer's own pool, in bulk.
    caches: PoolCaches,
    /// Descriptor index of each packet taken by the current burst (kept by the CPU: descriptor
    /// memory is device-writable, so it is never read back to find them).
    data_at: Box<[u16]>,
    regs: R,
    /// Dropped by hand in `Drop`, only once the device is known to be off (else leaked).
    mem: ManuallyDrop<M>,
}

// SAFETY: `base` points into `mem`, owned by the ring, and the raw buffers are owned by the ring;
// moving the ring moves all of it.
unsafe impl<R: QueueRegs, M: RingMemory> Send for AdvTxRing<R, M> {}

impl<R: QueueRegs, M: RingMemory> AdvTxRing<R, M> {
    /// Builds an empty ring of `count` descriptors in `mem` (zeroed here). Program the base
    /// ([`AdvTxRing::iova`]) and length ([`AdvTxRing::len_bytes`]), TDH = TDT = 0, then enable.
    pub fn new(mem: M, regs: R, count: usize) -> Result<Self, TxRingError> {
        check_ring_size(count).map_err(TxRingError::Size)?;
        let ptr = mem.as_ptr();
        if mem.len() < count * desc::DESC_SIZE || (ptr as usize) % desc::RING_ALIGN != 0 {
            return Err(TxRingError::Memory {
                len: mem.len(),
                ptr: ptr as usize,
                descs: count,
            });
        }
        for i in 0..count {
            // SAFETY: i < count: inside the ring; the device does not own it yet.
            unsafe {
                desc::write_u64(ptr, i, 0, 0);
                desc::write_u64(ptr, i, 8, 0);
            }
        }
        Ok(AdvTxRing {
            base: ptr,
            mask: count - 1,
            tail: 0,
            clean: 0,
            since_rs: 0,
            rs_marks: vec![0; count].into_boxed_slice(),
            rs_head: 0,
            rs_tail: 0,
            ctx_idx: 0,
            ctx: None,
            slots: vec![RawBuffer::NULL; count].into_boxed_slice(),
            caches: PoolCaches::new(),
            data_at: vec![0; crate::burst::MAX_BURST].into_boxed_slice(),
            regs,
            mem: ManuallyDrop::new(mem),
        })
    }

    /// Sets the context slot index written into descriptors (82575 needs a unique one per queue).
    pub fn set_context_index(&mut self, idx: u32) {
        self.ctx_idx = idx & 0x7;
        self.ctx = None;
    }

    /// Device address of the descriptor ring (TDBAL / TDBAH).
    pub fn iova(&self) -> u64 {
        self.mem.iova()
    }

    /// Ring length in bytes (TDLEN).
    pub fn len_bytes(&self) -> u32 {
        ((self.mask + 1) * desc::DESC_SIZE) as u32
    }

    /// Descriptors in the ring.
    pub fn size(&self) -> usize {
        self.mask + 1
    }

    /// Descriptors free for new packets.
    #[inline(always)]
    pub fn free_descs(&self) -> usize {
        self.mask - ((self.tail.wrapping_sub(self.clean)) & self.mask)
    }

    /// Packets (data descriptors) the device may still be sending or that await cleanup.
    pub fn in_flight(&self) -> usize {
        (self.tail.wrapping_sub(self.clean)) & self.mask
    }

    /// Frees the packets of every batch whose RS descriptor the device marked done; returns how
    /// many descriptors were reclaimed.
    #[inline]
    pub fn cleanup(&mut self) -> usize {
        self.cleanup_until(usize::MAX)
    }

    /// Like [`AdvTxRing::cleanup`] but stops once `want` descriptors are free: the cost of freeing
    /// stays spread over the bursts (one batch of [`TX_RS_THRESH`] at a time, as DPDK does).
    #[inline]
    fn cleanup_until(&mut self, want: usize) -> usize {
        let mut reclaimed = 0;
        while self.rs_head != self.rs_tail && self.free_descs() < want {
            let rs = self.rs_marks[self.rs_head & self.mask] as usize;
            // SAFETY: rs < count: inside the ring.
            let st = unsafe { desc::read_u32(self.base, rs, tx::OLINFO_STATUS) };
            if st & tx::STA_DD == 0 {
                break;
            }
            // Invariant 2: DD first, then anything else the device wrote.
            fence(Ordering::Acquire);
            let (start, n) = (self.clean, ((rs + self.mask + 1 - self.clean) & self.mask) + 1);
            // The batch is one run of slots, or two when it wraps; each freed in bulk.
            let first = n.min(self.slots.len() - start);
            for (from, len) in [(start, first), (0, n - first)] {
                let batch = &mut self.slots[from..from + len];
                // SAFETY: buffers this ring posted (NULL: context descriptors); DD on the batch's
                // RS descriptor means the device finished every descriptor up to it (in order).
                unsafe { self.caches.put_bulk(batch) };
                batch.fill(RawBuffer::NULL);
            }
            reclaimed += n;
            self.clean = (rs + 1) & self.mask;
            self.rs_head += 1;
        }
        reclaimed
    }

    /// Transmits packets from the front of `pkts`; what does not fit in the ring stays in `pkts`,
    /// in order. Returns how many were taken. A chained packet takes one data descriptor per
    /// segment (EOP on the last); each segment is freed on its own once sent. Packets the ring
    /// cannot send (empty, above [`MAX_TX_LEN`], more than [`MAX_TX_SEGS`] segments or an empty
    /// segment) are freed and counted in `c.ierrors` (TX errors). Counts packets and bytes.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        // Invariant 5: a length the device cannot send (0, or beyond one descriptor) never
        // reaches a descriptor; such packets are freed and counted.
        if !pkts.iter().all(sendable) {
            let before = pkts.len();
            pkts.retain(sendable);
            c.ierrors += (before - pkts.len()) as u64;
        }
        // Descriptors the burst needs at least (a chain takes one per segment).
        let n: usize = pkts.iter().map(Packet::nb_segs).sum();
        if self.free_descs() < n.max(TX_RS_THRESH) {
            self.cleanup_until(n.max(TX_RS_THRESH));
        }
        let base = self.base;
        let mask = self.mask;
        let mut tail = self.tail;
        let mut free = self.free_descs();
        let mut taken = 0usize;
        let mut bytes = 0u64;
        let v = pkts.vec_mut();
        for pkt in v.iter().take(self.data_at.len()) {
            let flags = pkt.flags();
            let len = pkt.len();
            let offload = flags.bits()
                & (OffloadFlags::TX_IP_CKSUM
                    | OffloadFlags::TX_TCP_CKSUM
                    | OffloadFlags::TX_UDP_CKSUM
                    | OffloadFlags::TX_VLAN_INSERT
                    | OffloadFlags::TX_TCP_SEG)
                    .bits()
                != 0;
            let Offload {
                ctx,
                popts,
                cmd: dcmd,
                paylen,
            } = if offload {
                offload_context(pkt, flags)
            } else {
                Offload::none(len)
            };
            let need_ctx = ctx.is_some() && ctx != self.ctx;
            let segs = pkt.nb_segs();
            if free < segs + usize::from(need_ctx) {
                break;
            }
            if need_ctx {
                let cx = ctx.unwrap_or(TxContext {
                    vlan_macip_lens: 0,
                    type_tucmd: 0,
                    mss_l4len: 0,
                });
                // SAFETY: tail <= mask: inside the ring; free > 0 so the CPU owns it.
                unsafe {
                    desc::write_u32(base, tail, tx::CTX_VLAN_MACIP_LENS, cx.vlan_macip_lens);
                    desc::write_u32(base, tail, tx::CTX_SEQNUM_SEED, 0);
                    desc::write_u32(base, tail, tx::CTX_TYPE_TUCMD_MLHL, cx.type_tucmd);
                    desc::write_u32(
                        base,
                        tail,
                        tx::CTX_MSS_L4LEN_IDX,
                        cx.mss_l4len | (self.ctx_idx << tx::IDX_SHIFT),
                    );
                }
                self.ctx = ctx;
                tail = (tail + 1) & mask;
                free -= 1;
                self.since_rs += 1;
            }
            // PAYLEN (the whole packet; with TSO its TCP payload) in every data descriptor, as
            // the datasheet asks of the first and tolerates in the others.
            let olinfo = (paylen << tx::PAYLEN_SHIFT) | popts | (self.ctx_idx << tx::IDX_SHIFT);
            self.data_at[taken] = tail as u16;
            self.since_rs += segs;
            let rs = self.since_rs >= TX_RS_THRESH;
            for (k, (iova, seg_len)) in pkt.dma_segments().enumerate() {
                let last = k + 1 == segs;
                let mut cmd = seg_len as u32 | tx::DTYP_DATA | tx::CMD_DEXT | tx::CMD_IFCS | dcmd;
                if last {
                    cmd |= tx::CMD_EOP;
                    if rs {
                        // RS on the packet's last descriptor: its DD covers every one before.
                        cmd |= tx::CMD_RS;
                        self.since_rs = 0;
                        self.rs_marks[self.rs_tail & mask] = tail as u32;
                        self.rs_tail += 1;
                    }
                }
                // SAFETY: tail inside the ring and owned by the CPU (free >= segs, checked).
                unsafe {
                    desc::write_u64(base, tail, tx::BUFFER_ADDR, iova);
                    desc::write_u32(base, tail, tx::CMD_TYPE_LEN, cmd);
                    desc::write_u32(base, tail, tx::OLINFO_STATUS, olinfo);
                }
                tail = (tail + 1) & mask;
            }
            free -= segs;
            taken += 1;
            bytes += len as u64;
        }
        if taken == 0 {
            return 0;
        }
        // Slots are filled after the loop so that the borrow of `v` above stays shared; a context
        // descriptor's slot stays NULL. A chain is taken apart: each segment's slot holds that
        // segment alone, freed when its descriptor is cleaned.
        for (k, pkt) in v.drain(..taken).enumerate() {
            let mut at = usize::from(self.data_at[k]);
            let mut cur = Some(pkt);
            while let Some(p) = cur {
                let (seg, rest) = p.split_first_segment();
                self.slots[at] = seg.into_raw();
                at = (at + 1) & mask;
                cur = rest;
            }
        }
        self.tail = tail;
        // Invariant 2: descriptors, release fence, then the tail register. One write per burst.
        fence(Ordering::Release);
        self.regs.write_tail(tail as u32);
        c.packets += taken as u64;
        c.bytes += bytes;
        taken
    }
}

/// What a packet's data descriptors carry for its offloads.
struct Offload {
    /// The context it needs (`None`: none).
    ctx: Option<TxContext>,
    /// olinfo POPTS bits.
    popts: u32,
    /// DCMD bits (VLE, TSE).
    cmd: u32,
    /// PAYLEN: the packet's length, or with TSO its TCP payload's.
    paylen: u32,
}

impl Offload {
    fn none(len: usize) -> Offload {
        Offload {
            ctx: None,
            popts: 0,
            cmd: 0,
            paylen: len as u32,
        }
    }
}

/// The offload context a packet needs (from its headers, in its first segment) and its data
/// descriptors' bits. Checksums the headers do not allow are not asked of the device; a TSO
/// packet was checked by [`sendable`].
fn offload_context(pkt: &Packet, flags: OffloadFlags) -> Offload {
    let mut out = Offload::none(pkt.len());
    let (vle, vlan) = if flags.contains(OffloadFlags::TX_VLAN_INSERT) {
        (tx::CMD_VLE, u32::from(pkt.vlan_tci()) << tx::CTX_VLAN_SHIFT)
    } else {
        (0, 0)
    };
    out.cmd = vle;
    let h = HeaderLayout::parse(pkt.data());
    let mut tucmd = tx::DTYP_CTXT | tx::CMD_DEXT;
    let mut mss_l4len = 0;
    if let Some(h) = h {
        let ipv4 = h.l3 == L3::Ipv4;
        if ipv4 {
            tucmd |= tx::TUCMD_IPV4;
        }
        if flags.contains(OffloadFlags::TX_TCP_SEG) && h.is_tcp() {
            // The device cuts the payload into MSS-sized segments and fills in each one's IP
            // length, IPv4 checksum, TCP sequence number, flags and checksum.
            tucmd |= tx::TUCMD_L4T_TCP;
            out.popts |= tx::POPTS_TXSM | if ipv4 { tx::POPTS_IXSM } else { 0 };
            out.cmd |= tx::CMD_TSE;
            out.paylen = (pkt.len() - h.header_len()) as u32;
            mss_l4len = (u32::from(pkt.tso_segsz()) << tx::CTX_MSS_SHIFT)
                | ((h.l4_len as u32) << tx::CTX_L4LEN_SHIFT);
        } else {
            if ipv4 && flags.contains(OffloadFlags::TX_IP_CKSUM) {
                out.popts |= tx::POPTS_IXSM;
            }
            if flags.contains(OffloadFlags::TX_TCP_CKSUM) && h.is_tcp() {
                tucmd |= tx::TUCMD_L4T_TCP;
                out.popts |= tx::POPTS_TXSM;
            } else if flags.contains(OffloadFlags::TX_UDP_CKSUM) && h.is_udp() {
                tucmd |= tx::TUCMD_L4T_UDP;
                out.popts |= tx::POPTS_TXSM;
            }
        }
    }
    if out.popts == 0 && vle == 0 {
        return out;
    }
    let (l2, l3) = h.map_or((14, 0), |h| (h.l2_len, h.l3_len));
    out.ctx = Some(TxContext {
        vlan_macip_lens: vlan | ((l2 as u32) << tx::CTX_MACLEN_SHIFT) | (l3 as u32 & 0x1FF),
        type_tucmd: tucmd,
        mss_l4len,
    });
    out
}

impl<R: QueueRegs, M: RingMemory> AdvTxRing<R, M> {
    /// After the device lost the queue (a reset): returns every packet still in the ring to its
    /// pool, zeroes the descriptors and starts from descriptor 0, as a freshly built ring (then
    /// program TDBA / TDLEN, TDH = TDT = 0 and enable). Returns how many packets were in flight:
    /// whether the device sent them before it lost the queue is unknown (their DD may never have
    /// been written), so a caller counts them as lost.
    ///
    /// # Safety
    /// The queue is disabled, read back (the device no longer reads its descriptors or
    /// buffers): the buffers go back to their pools and may be reused at once.
    pub unsafe fn discard_in_flight(&mut self) -> usize {
        fence(Ordering::SeqCst);
        let mut lost = 0;
        for b in self.slots.iter_mut() {
            let b = std::mem::replace(b, RawBuffer::NULL);
            if !b.is_null() {
                // SAFETY: a buffer posted by this ring; the caller guarantees the device no
                // longer accesses it.
                drop(unsafe { Packet::from_raw(b) });
                lost += 1;
            }
        }
        for i in 0..self.slots.len() {
            // SAFETY: i < count: inside the ring; the queue is disabled (the caller's contract).
            unsafe {
                desc::write_u64(self.base, i, 0, 0);
                desc::write_u64(self.base, i, 8, 0);
            }
        }
        self.tail = 0;
        self.clean = 0;
        self.since_rs = 0;
        self.rs_head = 0;
        self.rs_tail = 0;
        // The device's context slot was reset with the queue.
        self.ctx = None;
        lost
    }
}

impl<R: QueueRegs, M: RingMemory> Drop for AdvTxRing<R, M> {
    fn drop(&mut self) {
        // Invariant 3: the queue is off before buffers go back and the memory is freed.
        let off = super::quiesce(&mut self.regs, format_args!("TX ring at {:#x}", self.mem.iova()));
        fence(Ordering::SeqCst);
        if !off {
            // The device may still read the in-flight buffers and descriptors: leak both (the
            // buffers' pool stays alive through the references they hold).
            let posted = self.slots.iter().filter(|b| !b.is_null()).count();
            log::error!(
                "TX ring at {:#x}: the queue could not be disabled and the device's DMA could not \
                 be stopped; leaking its {posted} in-flight buffers and its descriptor ring \
                 (restart the process to reclaim them)",
                self.mem.iova()
            );
            return;
        }
        for b in self.slots.iter_mut() {
            let b = std::mem::replace(b, RawBuffer::NULL);
            if !b.is_null() {
                // SAFETY: a buffer posted by this ring; the queue is disabled (or the device's DMA
                // stopped), the device is done.
                drop(unsafe { Packet::from_raw(b) });
            }
        }
        // SAFETY: dropped once, here; `mem` is not used afterwards (only `base` pointed into it).
        unsafe { ManuallyDrop::drop(&mut self.mem) };
    }
}
