//! The fake device: the device side of split and packed rings over the rings' own memory, a
//! doorbell that records what the driver asked of it, and the frames and queues the tests use.

use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, Mutex};

use oxpmd_dma::{Mempool, Packet, flush_thread_caches};

use crate::adv_ring::HeapRingMemory;
use crate::drivers::virtio::packed::{self, PackedRing, packed_bytes};
use crate::drivers::virtio::queue::{Doorbell, VirtioRxQueue, VirtioTxQueue, tx_header_table_bytes};
use crate::drivers::virtio::regs::nethdr;
use crate::drivers::virtio::split::{
    AVAIL_F_NO_INTERRUPT, DESC_F_NEXT, DESC_F_WRITE, SplitLayout, SplitRing, USED_F_NO_NOTIFY, Virtqueue,
};

/// A chain as the device sees it: (addr, len, flags) per descriptor.
pub(super) type Chain = Vec<(u64, u32, u16)>;

/// The device side of one split ring, over the ring's memory.
pub(super) struct FakeDevice {
    pub(super) base: usize,
    pub(super) layout: SplitLayout,
    pub(super) last_avail: u16,
    pub(super) used_idx: u16,
    pub(super) violations: Vec<String>,
}

impl FakeDevice {
    pub(super) fn new<M: crate::adv_ring::RingMemory>(ring: &SplitRing<M>) -> FakeDevice {
        FakeDevice {
            base: ring.base_ptr() as usize,
            layout: ring.layout(),
            last_avail: 0,
            used_idx: 0,
            violations: Vec::new(),
        }
    }

    pub(super) fn p(&self, off: usize) -> *mut u8 {
        assert!(off < self.layout.bytes);
        (self.base + off) as *mut u8
    }

    pub(super) fn r16(&self, off: usize) -> u16 {
        // SAFETY: inside the ring memory (asserted), 2-aligned field.
        u16::from_le(unsafe { self.p(off).cast::<u16>().read_volatile() })
    }

    pub(super) fn w16(&self, off: usize, v: u16) {
        // SAFETY: as r16; the device owns the used ring.
        unsafe { self.p(off).cast::<u16>().write_volatile(v.to_le()) }
    }

    pub(super) fn avail_flags(&self) -> u16 {
        self.r16(self.layout.avail)
    }

    pub(super) fn set_no_notify(&self, on: bool) {
        self.w16(self.layout.used, if on { USED_F_NO_NOTIFY } else { 0 });
    }

    /// Descriptor i: (addr, len, flags, next).
    pub(super) fn desc(&self, i: u16) -> (u64, u32, u16, u16) {
        let p = self.p(16 * usize::from(i));
        // SAFETY: descriptor i < size lies in the table; fields aligned.
        unsafe {
            (
                u64::from_le(p.cast::<u64>().read_volatile()),
                u32::from_le(p.add(8).cast::<u32>().read_volatile()),
                u16::from_le(p.add(12).cast::<u16>().read_volatile()),
                u16::from_le(p.add(14).cast::<u16>().read_volatile()),
            )
        }
    }

    /// Takes the next available chain: (head, [(addr, len, flags)]).
    pub(super) fn pop_avail(&mut self) -> Option<(u16, Chain)> {
        let idx = self.r16(self.layout.avail + 2);
        if idx == self.last_avail {
            return None;
        }
        fence(Ordering::Acquire);
        let size = self.layout.size;
        let slot = self.layout.avail + 4 + 2 * (usize::from(self.last_avail) & (size - 1));
        let head = self.r16(slot);
        self.last_avail = self.last_avail.wrapping_add(1);
        if usize::from(head) >= size {
            self.violations.push(format!("head {head} out of range"));
            return None;
        }
        let mut chain = Vec::new();
        let mut i = head;
        loop {
            let (a, l, f, n) = self.desc(i);
            chain.push((a, l, f));
            if f & DESC_F_NEXT == 0 {
                break;
            }
            if usize::from(n) >= size || chain.len() > size {
                self.violations.push(format!("bad chain from {head}"));
                break;
            }
            i = n;
        }
        Some((head, chain))
    }

    pub(super) fn push_used(&mut self, id: u32, len: u32) {
        let size = self.layout.size;
        let e = self.layout.used + 4 + 8 * (usize::from(self.used_idx) & (size - 1));
        // SAFETY: the used entry lies in the used ring; 8-aligned.
        unsafe {
            self.p(e).cast::<u32>().write_volatile(id.to_le());
            self.p(e + 4).cast::<u32>().write_volatile(len.to_le());
        }
        self.used_idx = self.used_idx.wrapping_add(1);
        fence(Ordering::Release);
        self.w16(self.layout.used + 2, self.used_idx);
    }
}

impl Dev for FakeDevice {
    fn pop_avail(&mut self) -> Option<(u16, Chain)> {
        FakeDevice::pop_avail(self)
    }
    fn push_used(&mut self, id: u32, len: u32) {
        FakeDevice::push_used(self, id, len)
    }
    fn set_no_notify(&self, on: bool) {
        FakeDevice::set_no_notify(self, on)
    }
    fn violations(&mut self) -> &mut Vec<String> {
        &mut self.violations
    }
    fn interrupts_wanted(&self) -> bool {
        self.avail_flags() & AVAIL_F_NO_INTERRUPT == 0
    }
}

/// The device side of a ring, split or packed, for the queue tests.
pub(super) trait Dev {
    /// Takes the next available chain: (id, [(addr, len, flags)]).
    fn pop_avail(&mut self) -> Option<(u16, Chain)>;
    /// Completes chain `id`, `len` bytes written.
    fn push_used(&mut self, id: u32, len: u32);
    /// Sets or clears "no notifications, please".
    fn set_no_notify(&self, on: bool);
    /// Protocol violations seen.
    fn violations(&mut self) -> &mut Vec<String>;
    /// Whether the driver asks for used-buffer interrupts.
    fn interrupts_wanted(&self) -> bool;

    /// RX: writes `hdr` + `frame` into the next available buffer; false when none is posted.
    fn deliver(&mut self, hdr: [u8; 12], frame: &[u8]) -> bool {
        let Some((head, chain)) = self.pop_avail() else {
            return false;
        };
        let (addr, len, flags) = chain[0];
        if flags & DESC_F_WRITE == 0 || chain.len() != 1 {
            self.violations().push(format!("RX chain {head}: {chain:?}"));
        }
        let total = 12 + frame.len();
        assert!(total <= len as usize, "frame larger than the posted buffer");
        // SAFETY: the driver posted [addr, addr + len) device-writable; IOVA = VA here.
        unsafe {
            std::ptr::copy_nonoverlapping(hdr.as_ptr(), addr as *mut u8, 12);
            std::ptr::copy_nonoverlapping(frame.as_ptr(), (addr + 12) as *mut u8, frame.len());
        }
        self.push_used(u32::from(head), total as u32);
        true
    }

    /// RX with MRG_RXBUF: writes `hdr` and as much of `frame` as fits into the next buffers,
    /// one after another (only the first holds the header), and completes each. Returns the
    /// buffers used, 0 when too few are posted.
    fn deliver_merged(&mut self, frame: &[u8], buffers: u16) -> usize {
        let mut bytes = hdr(buffers, 0).to_vec();
        bytes.extend_from_slice(frame);
        let mut at = 0;
        let mut used = 0;
        while at < bytes.len() {
            let Some((head, chain)) = self.pop_avail() else {
                return 0;
            };
            let (addr, len, _) = chain[0];
            let n = (len as usize).min(bytes.len() - at);
            // SAFETY: the driver posted [addr, addr + len) device-writable; IOVA = VA here.
            unsafe { std::ptr::copy_nonoverlapping(bytes[at..].as_ptr(), addr as *mut u8, n) };
            self.push_used(u32::from(head), n as u32);
            at += n;
            used += 1;
        }
        used
    }

    /// TX: takes every available chain, returns (header, frame) of each, completes them.
    fn transmit(&mut self) -> Vec<([u8; 12], Vec<u8>)> {
        let mut out = Vec::new();
        while let Some((head, chain)) = self.pop_avail() {
            let mut bytes = Vec::new();
            for (addr, len, flags) in &chain {
                if flags & DESC_F_WRITE != 0 {
                    self.violations()
                        .push(format!("TX chain {head} has a writable buffer"));
                }
                // SAFETY: the driver posted [addr, addr + len) device-readable; IOVA = VA.
                bytes.extend_from_slice(unsafe {
                    std::slice::from_raw_parts(*addr as *const u8, *len as usize)
                });
            }
            let hdr: [u8; 12] = bytes[..12].try_into().unwrap();
            out.push((hdr, bytes[12..].to_vec()));
            self.push_used(u32::from(head), 0);
        }
        out
    }
}

/// The device side of one packed ring, over the ring's memory.
pub(super) struct FakePacked {
    pub(super) base: usize,
    pub(super) size: u16,
    pub(super) next: u16,
    pub(super) avail_wrap: bool,
    pub(super) used_slot: u16,
    pub(super) used_wrap: bool,
    pub(super) chain_len: std::collections::HashMap<u16, u16>,
    pub(super) violations: Vec<String>,
}

impl FakePacked {
    pub(super) fn new<M: crate::adv_ring::RingMemory>(ring: &PackedRing<M>) -> FakePacked {
        FakePacked {
            base: ring.base_ptr() as usize,
            size: Virtqueue::size(ring) as u16,
            next: 0,
            avail_wrap: true,
            used_slot: 0,
            used_wrap: true,
            chain_len: Default::default(),
            violations: Vec::new(),
        }
    }

    pub(super) fn p(&self, off: usize) -> *mut u8 {
        assert!(off < packed_bytes(usize::from(self.size)).unwrap());
        (self.base + off) as *mut u8
    }

    pub(super) fn r16(&self, off: usize) -> u16 {
        // SAFETY: inside the ring memory (asserted), 2-aligned.
        u16::from_le(unsafe { self.p(off).cast::<u16>().read_volatile() })
    }

    pub(super) fn w16(&self, off: usize, v: u16) {
        // SAFETY: as r16.
        unsafe { self.p(off).cast::<u16>().write_volatile(v.to_le()) }
    }

    pub(super) fn driver_event_flags(&self) -> u16 {
        self.r16(16 * usize::from(self.size) + 2)
    }
}

impl Dev for FakePacked {
    fn pop_avail(&mut self) -> Option<(u16, Chain)> {
        let f = self.r16(16 * usize::from(self.next) + 14);
        let avail = f & packed::F_AVAIL != 0;
        let used = f & packed::F_USED != 0;
        if avail != self.avail_wrap || used == self.avail_wrap {
            return None;
        }
        fence(Ordering::Acquire);
        let mut chain = Vec::new();
        let mut id: u16;
        loop {
            let slot = 16 * usize::from(self.next);
            // SAFETY: the descriptor lies in the ring; the driver made it available.
            let (a, l, i) = unsafe {
                let p = self.p(slot);
                (
                    u64::from_le(p.cast::<u64>().read_volatile()),
                    u32::from_le(p.add(8).cast::<u32>().read_volatile()),
                    u16::from_le(p.add(12).cast::<u16>().read_volatile()),
                )
            };
            let f = self.r16(slot + 14);
            if (f & packed::F_AVAIL != 0) != self.avail_wrap {
                self.violations
                    .push(format!("descriptor {} of a chain not available", self.next));
            }
            chain.push((a, l, f & (packed::F_NEXT | packed::F_WRITE)));
            id = i;
            self.next += 1;
            if self.next == self.size {
                self.next = 0;
                self.avail_wrap = !self.avail_wrap;
            }
            if f & packed::F_NEXT == 0 || chain.len() > usize::from(self.size) {
                break;
            }
        }
        self.chain_len.insert(id, chain.len() as u16);
        Some((id, chain))
    }

    fn push_used(&mut self, id: u32, len: u32) {
        let n = self.chain_len.remove(&(id as u16)).unwrap_or(1);
        let slot = 16 * usize::from(self.used_slot);
        // SAFETY: the used descriptor lies in the ring.
        unsafe {
            let p = self.p(slot);
            p.add(8).cast::<u32>().write_volatile(len.to_le());
            p.add(12).cast::<u16>().write_volatile((id as u16).to_le());
        }
        fence(Ordering::Release);
        let flags = if self.used_wrap {
            packed::F_AVAIL | packed::F_USED
        } else {
            0
        };
        self.w16(slot + 14, flags);
        self.used_slot += n;
        if self.used_slot >= self.size {
            self.used_slot -= self.size;
            self.used_wrap = !self.used_wrap;
        }
    }

    fn set_no_notify(&self, on: bool) {
        let v = if on {
            packed::EVENT_DISABLE
        } else {
            packed::EVENT_ENABLE
        };
        self.w16(16 * usize::from(self.size) + 4 + 2, v);
    }

    fn violations(&mut self) -> &mut Vec<String> {
        &mut self.violations
    }

    fn interrupts_wanted(&self) -> bool {
        self.driver_event_flags() == packed::EVENT_ENABLE
    }
}

/// A ring kind for the generic queue tests.
pub(super) trait Kind {
    type Q: Virtqueue + 'static;
    type D: Dev;
    fn ring(size: usize) -> Self::Q;
    fn dev(q: &Self::Q) -> Self::D;
}

pub(super) struct Split;
pub(super) struct Packed;

impl Kind for Split {
    type Q = SplitRing<HeapRingMemory>;
    type D = FakeDevice;
    fn ring(size: usize) -> Self::Q {
        SplitRing::new(ring_mem(size), size).unwrap()
    }
    fn dev(q: &Self::Q) -> FakeDevice {
        FakeDevice::new(q)
    }
}

impl Kind for Packed {
    type Q = PackedRing<HeapRingMemory>;
    type D = FakePacked;
    fn ring(size: usize) -> Self::Q {
        PackedRing::new(
            HeapRingMemory::new(packed_bytes(size).unwrap().div_ceil(16)),
            size,
        )
        .unwrap()
    }
    fn dev(q: &Self::Q) -> FakePacked {
        FakePacked::new(q)
    }
}

/// A doorbell that counts notifications and records the pool's free count when the device is
/// stopped (to prove buffers go back only after the stop).
#[derive(Clone, Default)]
pub(super) struct FakeBell {
    pub(super) state: Arc<Mutex<BellState>>,
}

#[derive(Default)]
pub(super) struct BellState {
    pub(super) notifies: usize,
    pub(super) stops: usize,
    pub(super) free_at_stop: Option<usize>,
    pub(super) pool: Option<Mempool>,
}

// SAFETY: the fake device touches the rings only when a test drives it, never after the queue's
// drop has begun: once stopped, nothing accesses the ring or the buffers.
unsafe impl Doorbell for FakeBell {
    fn notify(&mut self) {
        self.state.lock().unwrap().notifies += 1;
    }
    fn stop_device(&mut self) -> bool {
        let mut s = self.state.lock().unwrap();
        s.stops += 1;
        flush_thread_caches();
        s.free_at_stop = s.pool.as_ref().map(|p| p.available());
        true
    }
}

pub(super) fn ring_mem(size: usize) -> HeapRingMemory {
    let layout = SplitLayout::new(size).unwrap();
    HeapRingMemory::new((layout.bytes.next_multiple_of(16) + tx_header_table_bytes(size)).div_ceil(16))
}

pub(super) fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_add(seq) as u8).collect();
    f[0..6].copy_from_slice(&[0x52, 0x54, 0, 0, 1, 3]);
    f[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 1, 2]);
    f[12..14].copy_from_slice(&0x88B5u16.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

pub(super) fn hdr(num_buffers: u16, flags: u8) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[nethdr::FLAGS] = flags;
    h[nethdr::NUM_BUFFERS..].copy_from_slice(&num_buffers.to_le_bytes());
    h
}

pub(super) fn rx_queue<K: Kind>(
    pool: &Mempool,
    size: usize,
    bell: &FakeBell,
) -> VirtioRxQueue<FakeBell, K::Q> {
    bell.state.lock().unwrap().pool = Some(pool.clone());
    VirtioRxQueue::new(K::ring(size), bell.clone(), pool, 3, 0, true).unwrap()
}

pub(super) fn tx_queue<K: Kind>(
    size: usize,
    bell: &FakeBell,
    csum: bool,
) -> VirtioTxQueue<FakeBell, K::Q, HeapRingMemory> {
    VirtioTxQueue::new(K::ring(size), HeapRingMemory::new(size), bell.clone(), csum, None).unwrap()
}

pub(super) fn packet(pool: &Mempool, bytes: &[u8]) -> Packet {
    let mut p = pool.alloc().unwrap();
    p.extend_from_slice(bytes).unwrap();
    p
}
