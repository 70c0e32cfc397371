//! Unit tests of the virtio-net driver: feature negotiation, the split ring, and the RX / TX
//! queues against a fake device that plays the device side over the same in-memory rings.
//!
//! Buffer addresses are CPU addresses here (pools over `IdentityMap`, `HeapRingMemory`).

use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, Mutex};

use oxpmd_dma::{Mempool, OffloadFlags, Packet, flush_thread_caches};

use super::ctrl::{CtrlCommand, CtrlError, CtrlQueue};
use super::packed::{self, PackedRing, packed_bytes};
use super::queue::{Doorbell, VirtioRxQueue, VirtioTxQueue, tx_header_table_bytes};
use super::regs::{feature, nethdr};
use super::split::{
    AVAIL_F_NO_INTERRUPT, DESC_F_NEXT, DESC_F_WRITE, Seg, SplitLayout, SplitRing, USED_F_NO_NOTIFY, Used,
    Virtqueue,
};
use super::{REQUIRED_FEATURES, VirtioError, negotiate};
use crate::adv_ring::HeapRingMemory;
use crate::burst::Burst;
use crate::checksum::{complete_l4_checksum, ipv4_header_checksum};
use crate::stats::QueueCounters;
use crate::vport::virtual_pool;

// ---------------------------------------------------------------------------------------------
// Feature negotiation.

const DEV: &str = "0000:00:08.0";

#[test]
fn negotiation_takes_required_and_offered_optional_features() {
    let offered = feature::VERSION_1
        | feature::ACCESS_PLATFORM
        | feature::NET_MAC
        | feature::NET_STATUS
        | feature::NET_MRG_RXBUF
        | feature::RING_PACKED
        | feature::RING_EVENT_IDX
        | feature::NET_CTRL_VQ;
    let f = negotiate(DEV, offered, false).unwrap();
    assert_eq!(f & REQUIRED_FEATURES, REQUIRED_FEATURES);
    assert_ne!(f & feature::NET_MAC, 0);
    assert_ne!(f & feature::NET_STATUS, 0);
    assert_ne!(f & feature::NET_MRG_RXBUF, 0);
    // Never more than offered, and nothing the driver does not implement.
    assert_eq!(f & !offered, 0);
    assert_eq!(f & (feature::RING_PACKED | feature::RING_EVENT_IDX), 0);
    assert_ne!(
        f & feature::NET_CTRL_VQ,
        0,
        "the control queue is used when offered"
    );
    assert_eq!(f & feature::NET_CSUM, 0, "CSUM not offered, not taken");
}

#[test]
fn control_queue_features_need_the_control_queue() {
    let base = feature::VERSION_1 | feature::ACCESS_PLATFORM;
    let extra = feature::NET_CTRL_RX | feature::NET_MQ | feature::NET_CTRL_MAC_ADDR;
    assert_eq!(
        negotiate(DEV, base | extra, false).unwrap() & extra,
        0,
        "no CTRL_VQ: none of them"
    );
    let f = negotiate(DEV, base | extra | feature::NET_CTRL_VQ, false).unwrap();
    assert_eq!(f & (extra | feature::NET_CTRL_VQ), extra | feature::NET_CTRL_VQ);
}

#[test]
fn device_without_version_1_is_refused_with_the_fix() {
    let e = negotiate(DEV, feature::ACCESS_PLATFORM | feature::NET_MAC, false).unwrap_err();
    assert!(matches!(e, VirtioError::MissingFeature { .. }));
    let msg = e.to_string();
    assert!(msg.contains(DEV), "{msg}");
    assert!(msg.contains("VIRTIO_F_VERSION_1"), "{msg}");
    assert!(
        !msg.contains("ACCESS_PLATFORM (bit"),
        "only the missing bit is named: {msg}"
    );
    assert!(
        msg.contains("-device virtio-net-pci,disable-legacy=on,iommu_platform=on"),
        "{msg}"
    );
    assert!(msg.contains("legacy"), "{msg}");
}

#[test]
fn device_without_access_platform_is_refused_with_the_fix() {
    let e = negotiate(
        DEV,
        feature::VERSION_1 | feature::NET_MAC | feature::NET_MRG_RXBUF,
        false,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(DEV), "{msg}");
    assert!(msg.contains("VIRTIO_F_ACCESS_PLATFORM (bit 33)"), "{msg}");
    assert!(msg.contains("IOMMU"), "{msg}");
    assert!(msg.contains("iommu_platform=on"), "{msg}");
    // Both missing: both named.
    let msg = negotiate(DEV, 0, false).unwrap_err().to_string();
    assert!(
        msg.contains("VIRTIO_F_VERSION_1") && msg.contains("VIRTIO_F_ACCESS_PLATFORM"),
        "{msg}"
    );
}

// ---------------------------------------------------------------------------------------------
// The fake device.

/// A chain as the device sees it: (addr, len, flags) per descriptor.
type Chain = Vec<(u64, u32, u16)>;

/// The device side of one split ring, over the ring's memory.
struct FakeDevice {
    base: usize,
    layout: SplitLayout,
    last_avail: u16,
    used_idx: u16,
    violations: Vec<String>,
}

impl FakeDevice {
    fn new<M: crate::adv_ring::RingMemory>(ring: &SplitRing<M>) -> FakeDevice {
        FakeDevice {
            base: ring.base_ptr() as usize,
            layout: ring.layout(),
            last_avail: 0,
            used_idx: 0,
            violations: Vec::new(),
        }
    }

    fn p(&self, off: usize) -> *mut u8 {
        assert!(off < self.layout.bytes);
        (self.base + off) as *mut u8
    }

    fn r16(&self, off: usize) -> u16 {
        // SAFETY: inside the ring memory (asserted), 2-aligned field.
        u16::from_le(unsafe { self.p(off).cast::<u16>().read_volatile() })
    }

    fn w16(&self, off: usize, v: u16) {
        // SAFETY: as r16; the device owns the used ring.
        unsafe { self.p(off).cast::<u16>().write_volatile(v.to_le()) }
    }

    fn avail_flags(&self) -> u16 {
        self.r16(self.layout.avail)
    }

    fn set_no_notify(&self, on: bool) {
        self.w16(self.layout.used, if on { USED_F_NO_NOTIFY } else { 0 });
    }

    /// Descriptor i: (addr, len, flags, next).
    fn desc(&self, i: u16) -> (u64, u32, u16, u16) {
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
    fn pop_avail(&mut self) -> Option<(u16, Chain)> {
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

    fn push_used(&mut self, id: u32, len: u32) {
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
trait Dev {
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
struct FakePacked {
    base: usize,
    size: u16,
    next: u16,
    avail_wrap: bool,
    used_slot: u16,
    used_wrap: bool,
    chain_len: std::collections::HashMap<u16, u16>,
    violations: Vec<String>,
}

impl FakePacked {
    fn new<M: crate::adv_ring::RingMemory>(ring: &PackedRing<M>) -> FakePacked {
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

    fn p(&self, off: usize) -> *mut u8 {
        assert!(off < packed_bytes(usize::from(self.size)).unwrap());
        (self.base + off) as *mut u8
    }

    fn r16(&self, off: usize) -> u16 {
        // SAFETY: inside the ring memory (asserted), 2-aligned.
        u16::from_le(unsafe { self.p(off).cast::<u16>().read_volatile() })
    }

    fn w16(&self, off: usize, v: u16) {
        // SAFETY: as r16.
        unsafe { self.p(off).cast::<u16>().write_volatile(v.to_le()) }
    }

    fn driver_event_flags(&self) -> u16 {
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
trait Kind {
    type Q: Virtqueue + 'static;
    type D: Dev;
    fn ring(size: usize) -> Self::Q;
    fn dev(q: &Self::Q) -> Self::D;
}

struct Split;
struct Packed;

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

/// Runs a generic test for both ring kinds.
macro_rules! both_kinds {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn split() {
                    super::$name::<super::Split>();
                }
                #[test]
                fn packed() {
                    super::$name::<super::Packed>();
                }
            }
        )*
    };
}

both_kinds!(
    rx_chains_merged_buffers_into_one_packet,
    tx_sends_a_chain_as_one_descriptor_chain,
    rx_delivers_frames_unchanged_across_wrap_around,
    rx_reports_validated_checksums_and_rings_only_when_asked,
    rx_drops_merged_frames_bad_lengths_and_counts_empty_pools,
    tx_sends_frames_unchanged_with_a_zero_header_and_frees_them,
    tx_keeps_what_does_not_fit_in_order_and_refuses_bad_lengths,
    tx_checksum_offload_fills_the_header_or_is_done_in_software,
    tx_without_headroom_uses_a_header_descriptor,
    tx_software_checksums_survive_a_full_ring,
    chains_wrap_without_losing_descriptors,
    rx_arming_finds_frames_written_while_suppressed,
);

/// 70,000 chains of 1..=3 descriptors through an 8-entry ring (the split ring's 16-bit indices
/// and the packed ring's wrap counters wrap many times); every descriptor comes back.
fn chains_wrap_without_losing_descriptors<K: Kind>() {
    let size = 8;
    let mut ring = K::ring(size);
    let mut dev = K::dev(&ring);
    let mut in_flight: Vec<(u16, usize, u64)> = Vec::new();
    for n in 0..70_000u64 {
        let len = 1 + (n % 3) as usize;
        let segs: Vec<Seg> = (0..len)
            .map(|k| Seg {
                addr: n * 8 + k as u64,
                len: 100 + k as u32,
                write: k + 1 == len,
            })
            .collect();
        while ring.num_free() < len {
            let (id, chain) = dev.pop_avail().expect("published chains");
            let (want_id, want_len, want_addr) = in_flight.remove(0);
            assert_eq!((id, chain.len()), (want_id, want_len));
            for (k, (addr, l, f)) in chain.iter().enumerate() {
                assert_eq!(*addr, want_addr + k as u64, "descriptor {k} of chain {id}");
                assert_eq!(*l, 100 + k as u32);
                assert_eq!(f & DESC_F_NEXT != 0, k + 1 < chain.len());
                assert_eq!(f & DESC_F_WRITE != 0, k + 1 == chain.len());
            }
            dev.push_used(u32::from(id), 7);
            match ring.pop_used() {
                Some(Used::Chain { id: got, len }) => assert_eq!((got, len), (id, 7)),
                other => panic!("{other:?}"),
            }
        }
        let id = ring.add(&segs).unwrap();
        in_flight.push((id, len, n * 8));
        ring.publish();
    }
    while let Some((id, _)) = dev.pop_avail() {
        dev.push_used(u32::from(id), 0);
    }
    while ring.pop_used().is_some() {}
    assert_eq!(ring.num_free(), size, "every descriptor is back");
    assert_eq!(ring.in_flight(), 0);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

#[test]
fn packed_ring_event_suppression_and_bad_ids() {
    let mut ring = Packed::ring(8);
    let mut dev = Packed::dev(&ring);
    assert_eq!(dev.driver_event_flags(), packed::EVENT_DISABLE, "no interrupts");
    assert!(dev.pop_avail().is_none(), "a zeroed ring has nothing available");
    let id = ring
        .add(&[Seg {
            addr: 0x1000,
            len: 64,
            write: true,
        }])
        .unwrap();
    assert!(ring.publish());
    assert!(ring.needs_notify());
    dev.set_no_notify(true);
    assert!(!ring.needs_notify());
    assert_eq!(dev.pop_avail().unwrap().0, id);
    let free = ring.num_free();
    dev.chain_len.insert(5, 1);
    dev.push_used(5, 10); // not in flight
    assert_eq!(ring.pop_used(), Some(Used::BadId(5)));
    assert_eq!(ring.num_free(), free, "nothing freed for a bad id");
    // Where the next used descriptor is cannot be known any more: the ring stops for good
    // (before, it skipped one slot and read the rest of its life out of step with the device).
    assert!(ring.is_broken());
    assert_eq!(ring.errors(), 1);
    dev.push_used(u32::from(id), 10); // a good one after it: not taken
    assert!(!ring.has_used());
    assert_eq!(ring.pop_used(), None);
    let seg = Seg {
        addr: 0x2000,
        len: 64,
        write: true,
    };
    assert_eq!(ring.next_free_id(), None);
    assert_eq!(ring.add(&[seg]), None, "nothing is added to a broken ring");
    assert_eq!(
        ring.in_flight(),
        1,
        "its buffer stays the driver's, freed at teardown"
    );
}

#[test]
fn packed_ring_reports_lengths_beyond_the_writable_room() {
    let mut ring = Packed::ring(8);
    let mut dev = Packed::dev(&ring);
    let segs = [
        Seg {
            addr: 0x1000,
            len: 20,
            write: false,
        },
        Seg {
            addr: 0x2000,
            len: 64,
            write: true,
        },
    ];
    let id = ring.add(&segs).unwrap();
    assert_eq!(dev.pop_avail().unwrap().0, id);
    dev.push_used(u32::from(id), 65);
    assert_eq!(ring.pop_used(), Some(Used::BadLen { id, len: 65 }));
    assert_eq!(ring.num_free(), 8, "the chain is taken back");
    assert_eq!(ring.errors(), 1);
    assert!(!ring.is_broken(), "a bad length does not lose track of the slots");
    let id = ring.add(&segs).unwrap();
    assert_eq!(dev.pop_avail().unwrap().0, id);
    dev.push_used(u32::from(id), 64);
    assert_eq!(ring.pop_used(), Some(Used::Chain { id, len: 64 }));
}

#[test]
fn packed_rx_queue_stops_after_a_bad_id_and_leaks_nothing() {
    let pool = virtual_pool("vio-rx-packed-bad", 64 + 40, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<Packed>(&pool, 32, &bell);
    let mut dev = Packed::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    assert!(dev.deliver(hdr(1, 0), &frame(1, 64)));
    assert_eq!(q.rx_burst(&mut burst, &mut c), 1);
    burst.clear();
    let (good, _) = dev.pop_avail().unwrap();
    dev.chain_len.insert(777, 1);
    dev.push_used(777, 76);
    dev.push_used(u32::from(good), 76);
    assert_eq!(q.rx_burst(&mut burst, &mut c), 0);
    assert_eq!(c.ierrors, 1, "the bad id is counted");
    assert!(q.ring().is_broken());
    // (The bogus entry took a slot the device had not consumed, so the fake cannot deliver in
    // order any more either; the good entry after it is what a desynchronised driver would read.)
    assert_eq!(q.rx_burst(&mut burst, &mut c), 0, "a broken queue takes nothing");
    assert_eq!(c.ierrors, 1);
    drop(q);
    flush_thread_caches();
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "every buffer back after the device stop"
    );
}

/// A doorbell that counts notifications and records the pool's free count when the device is
/// stopped (to prove buffers go back only after the stop).
#[derive(Clone, Default)]
struct FakeBell {
    state: Arc<Mutex<BellState>>,
}

#[derive(Default)]
struct BellState {
    notifies: usize,
    stops: usize,
    free_at_stop: Option<usize>,
    pool: Option<Mempool>,
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

fn ring_mem(size: usize) -> HeapRingMemory {
    let layout = SplitLayout::new(size).unwrap();
    HeapRingMemory::new((layout.bytes.next_multiple_of(16) + tx_header_table_bytes(size)).div_ceil(16))
}

// ---------------------------------------------------------------------------------------------
// The split ring.

#[test]
fn layout_is_the_specifications() {
    let l = SplitLayout::new(256).unwrap();
    assert_eq!(l.avail, 4096);
    assert_eq!(l.used % 4, 0);
    assert!(l.used >= l.avail + 6 + 2 * 256);
    assert_eq!(l.bytes, l.used + 6 + 8 * 256);
    assert!(SplitLayout::new(100).is_none());
    assert!(SplitLayout::new(65536).is_none());
    assert!(SplitLayout::new(32768).is_some());
}

#[test]
fn chains_wrap_the_16_bit_indices_without_losing_descriptors() {
    let size = 8;
    let mut ring = SplitRing::new(ring_mem(size), size).unwrap();
    let mut dev = FakeDevice::new(&ring);
    let seg = |a: u64, w| Seg {
        addr: a,
        len: 100,
        write: w,
    };
    // 70,000 chains of 1..=3 descriptors: both 16-bit indices wrap.
    let mut in_flight: Vec<(u16, usize)> = Vec::new();
    for n in 0..70_000u64 {
        let len = 1 + (n % 3) as usize;
        let segs: Vec<Seg> = (0..len).map(|k| seg(n * 8 + k as u64, k + 1 == len)).collect();
        while ring.num_free() < len {
            // Device completes the oldest chain.
            let (head, chain) = dev.pop_avail().expect("published chains");
            let want = in_flight.remove(0);
            assert_eq!((head, chain.len()), want);
            // Readable parts first, the last one writable; NEXT on all but the last.
            for (k, (_, _, f)) in chain.iter().enumerate() {
                assert_eq!(f & DESC_F_NEXT != 0, k + 1 < chain.len());
                assert_eq!(f & DESC_F_WRITE != 0, k + 1 == chain.len());
            }
            dev.push_used(u32::from(head), 7);
            match ring.pop_used() {
                Some(Used::Chain { id, len }) => assert_eq!((id, len), (head, 7)),
                other => panic!("{other:?}"),
            }
        }
        let head = ring.add(&segs).unwrap();
        in_flight.push((head, len));
        ring.publish();
    }
    // Drain.
    while let Some((head, _)) = dev.pop_avail() {
        dev.push_used(u32::from(head), 0);
    }
    while ring.pop_used().is_some() {}
    assert_eq!(ring.num_free(), size, "every descriptor is back on the free list");
    assert_eq!(ring.in_flight(), 0);
    assert_eq!(ring.heads_in_flight().count(), 0);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

#[test]
fn nothing_is_visible_before_publish_and_full_rings_refuse() {
    let mut ring = SplitRing::new(ring_mem(4), 4).unwrap();
    let mut dev = FakeDevice::new(&ring);
    let s = Seg {
        addr: 0x1000,
        len: 64,
        write: false,
    };
    assert!(ring.add(&[]).is_none());
    ring.add(&[s, s, s]).unwrap();
    assert!(dev.pop_avail().is_none(), "not published yet");
    assert!(ring.add(&[s, s]).is_none(), "one descriptor left");
    assert_eq!(ring.num_free(), 1);
    assert!(ring.publish());
    assert!(!ring.publish(), "nothing new");
    assert_eq!(dev.pop_avail().unwrap().1.len(), 3);
}

#[test]
fn event_suppression_flags() {
    let mut ring = SplitRing::new(ring_mem(16), 16).unwrap();
    let dev = FakeDevice::new(&ring);
    // The polling driver never wants interrupts.
    assert_eq!(dev.avail_flags(), AVAIL_F_NO_INTERRUPT);
    ring.add(&[Seg {
        addr: 0x2000,
        len: 1,
        write: true,
    }])
    .unwrap();
    ring.publish();
    assert!(ring.needs_notify(), "the device has not suppressed notifications");
    dev.set_no_notify(true);
    assert!(!ring.needs_notify(), "the device is polling: no doorbell");
    dev.set_no_notify(false);
    assert!(ring.needs_notify());
}

#[test]
fn unknown_used_ids_are_reported_not_followed() {
    let mut ring = SplitRing::new(ring_mem(8), 8).unwrap();
    let mut dev = FakeDevice::new(&ring);
    let head = ring
        .add(&[Seg {
            addr: 0x3000,
            len: 10,
            write: true,
        }])
        .unwrap();
    ring.publish();
    let free = ring.num_free();
    dev.push_used(99, 10); // out of range
    dev.push_used(u32::from(head) + 1, 10); // in range, not in flight
    assert_eq!(ring.pop_used(), Some(Used::BadId(99)));
    assert_eq!(ring.pop_used(), Some(Used::BadId(u32::from(head) + 1)));
    assert_eq!(ring.num_free(), free, "nothing freed for a bad id");
    dev.push_used(u32::from(head), 10);
    assert_eq!(ring.pop_used(), Some(Used::Chain { id: head, len: 10 }));
    // The same id again (a device returning a chain twice) is refused too.
    dev.push_used(u32::from(head), 10);
    assert_eq!(ring.pop_used(), Some(Used::BadId(u32::from(head))));
    assert_eq!(ring.num_free(), 8);
}

// ---------------------------------------------------------------------------------------------
// RX queue.

fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u32).wrapping_add(seq) as u8).collect();
    f[0..6].copy_from_slice(&[0x52, 0x54, 0, 0, 1, 3]);
    f[6..12].copy_from_slice(&[0x52, 0x54, 0, 0, 1, 2]);
    f[12..14].copy_from_slice(&0x88B5u16.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

fn hdr(num_buffers: u16, flags: u8) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[nethdr::FLAGS] = flags;
    h[nethdr::NUM_BUFFERS..].copy_from_slice(&num_buffers.to_le_bytes());
    h
}

fn rx_queue<K: Kind>(pool: &Mempool, size: usize, bell: &FakeBell) -> VirtioRxQueue<FakeBell, K::Q> {
    bell.state.lock().unwrap().pool = Some(pool.clone());
    VirtioRxQueue::new(K::ring(size), bell.clone(), pool, 3, 0, true).unwrap()
}

/// RX interrupts: suppressed until armed and again after; arming looks at the ring after
/// turning them on, so a frame that landed while they were off is reported, not slept on. Polling
/// never changes the suppression.
fn rx_arming_finds_frames_written_while_suppressed<K: Kind>() {
    let pool = virtual_pool("vio-rx-irq", 128, 32).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<K>(&pool, 16, &bell);
    let mut dev = K::dev(q.ring());
    let (mut c, mut burst) = (QueueCounters::default(), Burst::new());
    assert!(!dev.interrupts_wanted(), "interrupts on before any arm");
    assert!(!q.arm_interrupt(), "an empty ring reported a frame");
    assert!(dev.interrupts_wanted());
    q.disarm_interrupt();
    assert!(!dev.interrupts_wanted());
    // A frame lands while suppressed (between the last empty poll and the arm).
    assert!(dev.deliver(hdr(1, 0), &frame(7, 60)));
    assert!(q.arm_interrupt(), "the look after arming missed the frame");
    q.disarm_interrupt();
    assert_eq!(q.rx_burst(&mut burst, &mut c), 1);
    assert!(!dev.interrupts_wanted(), "polling turned interrupts on");
    assert_eq!(burst.drain().next().unwrap().data(), &frame(7, 60)[..]);
    assert!(!q.arm_interrupt());
    q.disarm_interrupt();
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

fn rx_delivers_frames_unchanged_across_wrap_around<K: Kind>() {
    let pool = virtual_pool("vio-rx", 512, 32).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<K>(&pool, 64, &bell);
    let mut dev = K::dev(q.ring());
    // Every buffer is posted device-writable, 12 bytes before the data offset.
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    let mut next = 0u32;
    let total = 1000u32;
    let mut sent = 0u32;
    while next < total {
        // The device fills up to 40 buffers, the driver takes bursts of 32.
        for _ in 0..40 {
            if sent < total && dev.deliver(hdr(1, 0), &frame(sent, 60 + (sent as usize % 1400))) {
                sent += 1;
            }
        }
        while q.rx_burst(&mut burst, &mut c) > 0 {
            for p in burst.drain() {
                assert_eq!(
                    p.data(),
                    &frame(next, 60 + (next as usize % 1400))[..],
                    "frame {next}"
                );
                assert_eq!(p.port(), 3);
                assert!(p.flags().is_empty());
                next += 1;
            }
        }
    }
    assert_eq!(c.packets, u64::from(total));
    let bytes: u64 = (0..total).map(|s| 60 + (s as u64 % 1400)).sum();
    assert_eq!(c.bytes, bytes);
    assert_eq!((c.ierrors, c.rx_nombuf, c.rx_multiseg_dropped), (0, 0, 0));
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    // The ring stays full: every buffer taken was replaced.
    assert_eq!(q.ring().num_free(), 0);
    drop(q);
    flush_thread_caches();
    let st = bell.state.lock().unwrap();
    assert_eq!(st.stops, 1);
    assert!(
        st.free_at_stop.unwrap() < pool.capacity(),
        "buffers were still held when the device was stopped"
    );
    assert_eq!(pool.available(), pool.capacity(), "no buffer leaked");
}

fn rx_reports_validated_checksums_and_rings_only_when_asked<K: Kind>() {
    let pool = virtual_pool("vio-rx-csum", 256, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<K>(&pool, 16, &bell);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    dev.set_no_notify(true);
    assert!(dev.deliver(hdr(1, nethdr::F_DATA_VALID), &frame(1, 100)));
    assert_eq!(q.rx_burst(&mut burst, &mut c), 1);
    assert_eq!(burst.as_slice()[0].flags(), OffloadFlags::RX_L4_CKSUM_GOOD);
    assert_eq!(
        bell.state.lock().unwrap().notifies,
        0,
        "the device asked for no notification"
    );
    dev.set_no_notify(false);
    assert!(dev.deliver(hdr(1, 0), &frame(2, 100)));
    assert_eq!(q.rx_burst(&mut burst, &mut c), 1);
    assert_eq!(
        bell.state.lock().unwrap().notifies,
        1,
        "buffers reposted: the device is told"
    );
    // Nothing new: no ring access beyond the used index, no notification.
    assert_eq!(q.rx_burst(&mut burst, &mut c), 0);
    assert_eq!(bell.state.lock().unwrap().notifies, 1);
}

fn rx_drops_merged_frames_bad_lengths_and_counts_empty_pools<K: Kind>() {
    let pool = virtual_pool("vio-rx-bad", 64 + 8, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<K>(&pool, 64, &bell);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    // A frame merged over 3 buffers: all three dropped, counted once.
    assert!(dev.deliver(hdr(3, 0), &frame(1, 1500)));
    assert!(dev.deliver(hdr(0, 0), &frame(2, 1500)));
    assert!(dev.deliver(hdr(0, 0), &frame(3, 100)));
    // A used length shorter than the header (a device bug).
    let (head, _) = dev.pop_avail().unwrap();
    dev.push_used(u32::from(head), 5);
    // A good one.
    assert!(dev.deliver(hdr(1, 0), &frame(4, 80)));
    assert_eq!(q.rx_burst(&mut burst, &mut c), 1);
    assert_eq!(burst.as_slice()[0].data(), &frame(4, 80)[..]);
    assert_eq!(c.rx_multiseg_dropped, 1);
    assert_eq!(c.ierrors, 1);
    assert_eq!(q.ring().num_free(), 0, "dropped buffers were reposted");
    // Empty pool: frames are dropped, counted, the buffers stay posted.
    let mut hold = Vec::new();
    while let Some(p) = pool.alloc() {
        hold.push(p);
    }
    burst.clear();
    for s in 0..5 {
        assert!(dev.deliver(hdr(1, 0), &frame(10 + s, 64)));
    }
    let got = q.rx_burst(&mut burst, &mut c);
    // Spare buffers taken before the pool ran dry may still deliver a few.
    assert_eq!(got as u64 + c.rx_nombuf, 5);
    assert!(c.rx_nombuf > 0);
    assert_eq!(q.ring().num_free(), 0);
    burst.clear();
    drop(hold);
    drop(q);
    flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity(), "no buffer leaked");
}

/// MRG_RXBUF: a frame over several buffers becomes one chained packet, byte-exact; a frame whose
/// `num_buffers` exceeds what the largest frame needs is dropped whole and counted.
fn rx_chains_merged_buffers_into_one_packet<K: Kind>() {
    let pool = virtual_pool("vio-rx-mrg", 256, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<K>(&pool, 64, &bell);
    q.set_max_frame(9018);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    let jumbo = frame(1, 9014);
    let room = pool.data_room();
    let n = (9014usize + 12).div_ceil(room + 12) as u16;
    assert_eq!(dev.deliver_merged(&jumbo, n), usize::from(n));
    assert!(dev.deliver(hdr(1, 0), &frame(2, 80)));
    // A frame over 40 buffers: more than 9018 bytes need. The device's count is followed for
    // the buffers to drop (frame 4's buffer is the third of them), not for a packet.
    assert_eq!(dev.deliver_merged(&frame(3, 3000), 40), 2);
    assert!(dev.deliver(hdr(1, 0), &frame(4, 80)));
    assert_eq!(q.rx_burst(&mut burst, &mut c), 2);
    let v = burst.as_slice();
    assert_eq!((v[0].nb_segs(), v[0].len()), (usize::from(n), 9014));
    let got: Vec<u8> = v[0].segments().flatten().copied().collect();
    assert_eq!(got, jumbo);
    assert_eq!(v[1].data(), &frame(2, 80)[..]);
    assert_eq!((c.packets, c.bytes, c.rx_multiseg_dropped), (2, 9014 + 80, 1));
    burst.clear();
    assert_eq!(q.rx_burst(&mut burst, &mut c), 0);
    drop(burst);
    assert_eq!(q.ring().num_free(), 0, "every buffer went back to the device");
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    drop(q);
    flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity(), "no buffer leaked");
}

#[test]
fn rx_refuses_pools_without_room_for_the_header() {
    let pool = virtual_pool("vio-rx-pool", 16, 0).unwrap();
    let bell = FakeBell::default();
    match VirtioRxQueue::new(Split::ring(32), bell, &pool, 0, 0, false) {
        Err(e) => assert!(e.to_string().contains("32 buffers"), "{e}"),
        Ok(_) => panic!("a 16-buffer pool cannot fill 32 entries"),
    }
    flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity());
}

// ---------------------------------------------------------------------------------------------
// TX queue.

fn tx_queue<K: Kind>(
    size: usize,
    bell: &FakeBell,
    csum: bool,
) -> VirtioTxQueue<FakeBell, K::Q, HeapRingMemory> {
    VirtioTxQueue::new(K::ring(size), HeapRingMemory::new(size), bell.clone(), csum, None).unwrap()
}

fn packet(pool: &Mempool, bytes: &[u8]) -> Packet {
    let mut p = pool.alloc().unwrap();
    p.extend_from_slice(bytes).unwrap();
    p
}

/// A chained packet goes out as one descriptor chain (header, then a descriptor per segment) and
/// every segment is freed once the device returns it.
fn tx_sends_a_chain_as_one_descriptor_chain<K: Kind>() {
    let pool = virtual_pool("vio-tx-chain", 256, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = tx_queue::<K>(64, &bell, false);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    let f = frame(9, 5000);
    let mut pkt = packet(&pool, &f[..1000]);
    pkt.chain(packet(&pool, &f[1000..3000])).unwrap();
    pkt.chain(packet(&pool, &f[3000..])).unwrap();
    burst.push(pkt).unwrap();
    burst.push(packet(&pool, &frame(10, 64))).unwrap();
    assert_eq!(q.tx_burst(&mut burst, &mut c), 2);
    let sent = dev.transmit();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].1, f, "the chain arrives whole");
    assert_eq!(sent[1].1, frame(10, 64));
    assert_eq!(c.bytes, 5064);
    q.cleanup();
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    drop(q);
    flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity(), "every segment freed");
}

fn tx_sends_frames_unchanged_with_a_zero_header_and_frees_them<K: Kind>() {
    let pool = virtual_pool("vio-tx", 512, 32).unwrap();
    let bell = FakeBell::default();
    let mut q = tx_queue::<K>(64, &bell, false);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    let mut sent = Vec::new();
    for round in 0..40u32 {
        for k in 0..32u32 {
            let f = frame(round * 32 + k, 60 + (k as usize * 37) % 1400);
            burst.push(packet(&pool, &f)).unwrap();
        }
        while !burst.is_empty() {
            let n = q.tx_burst(&mut burst, &mut c);
            sent.extend(dev.transmit());
            if n == 0 {
                q.cleanup();
            }
        }
    }
    sent.extend(dev.transmit());
    assert_eq!(sent.len(), 40 * 32);
    for (i, (h, f)) in sent.iter().enumerate() {
        assert_eq!(h, &[0u8; 12], "no offload: an all-zero header");
        let i = i as u32;
        assert_eq!(f, &frame(i, 60 + ((i % 32) as usize * 37) % 1400), "frame {i}");
    }
    assert_eq!(c.packets, 40 * 32);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
    assert!(bell.state.lock().unwrap().notifies > 0);
    q.cleanup();
    flush_thread_caches();
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "sent packets went back to the pool"
    );
}

fn tx_keeps_what_does_not_fit_in_order_and_refuses_bad_lengths<K: Kind>() {
    let pool = virtual_pool("vio-tx-full", 256, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = tx_queue::<K>(16, &bell, false);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    let empty = pool.alloc().unwrap();
    burst.push(empty).unwrap();
    for k in 0..24u32 {
        burst.push(packet(&pool, &frame(k, 64))).unwrap();
    }
    assert_eq!(q.tx_burst(&mut burst, &mut c), 1 + 16, "1 refused + 16 taken");
    assert_eq!(c.ierrors, 1);
    assert_eq!(burst.len(), 8);
    let left: Vec<u32> = burst
        .iter()
        .map(|p| u32::from_be_bytes(p.data()[14..18].try_into().unwrap()))
        .collect();
    assert_eq!(left, (16..24).collect::<Vec<_>>());
    assert_eq!(dev.transmit().len(), 16);
    assert_eq!(q.tx_burst(&mut burst, &mut c), 8);
    assert_eq!(dev.transmit().len(), 8);
    // Device holds nothing; the queue drop stops the device and frees what is left.
    burst.push(packet(&pool, &frame(99, 64))).unwrap();
    assert_eq!(q.tx_burst(&mut burst, &mut c), 1);
    bell.state.lock().unwrap().pool = Some(pool.clone());
    drop(q);
    flush_thread_caches();
    assert_eq!(bell.state.lock().unwrap().stops, 1);
    assert_eq!(pool.available(), pool.capacity(), "no buffer leaked");
}

/// An Ethernet + IPv4 + UDP frame whose UDP checksum field holds the pseudo-header sum (the
/// convention for checksum offload).
fn udp_frame_partial() -> Vec<u8> {
    let mut f = frame(7, 80);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = &mut f[14..34];
    ip.fill(0);
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&66u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    f[34..36].copy_from_slice(&1000u16.to_be_bytes());
    f[36..38].copy_from_slice(&2000u16.to_be_bytes());
    f[38..40].copy_from_slice(&46u16.to_be_bytes());
    // Pseudo-header sum: src, dst, proto, UDP length.
    let mut s = 0x0a00u32 + 0x0001 + 0x0a00 + 0x0002 + 17 + 46;
    while s >> 16 != 0 {
        s = (s & 0xFFFF) + (s >> 16);
    }
    f[40..42].copy_from_slice(&(s as u16).to_be_bytes());
    f
}

fn verify_sum(d: &[u8]) -> u16 {
    let mut s = 0u32;
    for w in d.chunks(2) {
        s += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while s >> 16 != 0 {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

fn tx_checksum_offload_fills_the_header_or_is_done_in_software<K: Kind>() {
    let pool = virtual_pool("vio-tx-csum", 64, 0).unwrap();
    let flags = OffloadFlags::TX_IP_CKSUM | OffloadFlags::TX_UDP_CKSUM;
    // Device with CSUM: NEEDS_CSUM, csum_start = 34, csum_offset = 6; IP checksum in software.
    let bell = FakeBell::default();
    let mut q = tx_queue::<K>(16, &bell, true);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    let mut p = packet(&pool, &udp_frame_partial());
    p.set_flags(flags);
    burst.push(p).unwrap();
    q.tx_burst(&mut burst, &mut c);
    let (h, f) = dev.transmit().pop().unwrap();
    assert_eq!(h[nethdr::FLAGS], nethdr::F_NEEDS_CSUM);
    assert_eq!(u16::from_le_bytes([h[6], h[7]]), 34);
    assert_eq!(u16::from_le_bytes([h[8], h[9]]), 6);
    assert_eq!(verify_sum(&f[14..34]), 0xFFFF, "IPv4 header checksum valid");
    assert_eq!(&f[40..42], &udp_frame_partial()[40..42], "L4 left to the device");
    // Device without CSUM: the driver completes the UDP checksum itself.
    let mut q2 = tx_queue::<K>(16, &bell, false);
    let mut dev2 = K::dev(q2.ring());
    let mut p = packet(&pool, &udp_frame_partial());
    p.set_flags(flags);
    burst.push(p).unwrap();
    q2.tx_burst(&mut burst, &mut c);
    let (h, f) = dev2.transmit().pop().unwrap();
    assert_eq!(h, [0u8; 12]);
    // Verify: pseudo header + UDP segment sums to 0xFFFF.
    let mut seg = f[34..].to_vec();
    let pseudo = [10u8, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 46];
    seg.extend_from_slice(&pseudo);
    assert_eq!(verify_sum(&seg), 0xFFFF, "UDP checksum valid");
    // Helpers on their own.
    let mut g = udp_frame_partial();
    ipv4_header_checksum(&mut g, 14, 20);
    assert_eq!(verify_sum(&g[14..34]), 0xFFFF);
    complete_l4_checksum(&mut g, 500, 6); // out of range: ignored, no panic
}

fn tx_without_headroom_uses_a_header_descriptor<K: Kind>() {
    let pool = virtual_pool("vio-tx-chain", 64, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = tx_queue::<K>(16, &bell, false);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    let mut p = pool.alloc().unwrap();
    let room = p.headroom();
    // Use up the headroom but 4 bytes, then put the frame there.
    let f = frame(5, 64);
    let start = p.prepend(room - 4).unwrap().len();
    assert_eq!(start, room - 4);
    p.set_len(f.len()).unwrap();
    p.data_mut().copy_from_slice(&f);
    assert!(p.headroom() < nethdr::LEN);
    burst.push(p).unwrap();
    assert_eq!(q.tx_burst(&mut burst, &mut c), 1);
    assert_eq!(q.ring().num_free(), 14, "a two-descriptor chain");
    let (h, got) = dev.transmit().pop().unwrap();
    assert_eq!(h, [0u8; 12]);
    assert_eq!(got, f);
    q.cleanup();
    assert_eq!(q.ring().num_free(), 16);
    assert!(dev.violations().is_empty(), "{:?}", dev.violations());
}

// ---------------------------------------------------------------------------------------------
// Control queue.

#[test]
fn control_commands_are_three_descriptor_chains_and_acks_are_checked() {
    let size = 16;
    let bell = FakeBell::default();
    let mut q = CtrlQueue::new(Split::ring(size), HeapRingMemory::new(4), bell.clone()).unwrap();
    let dev = Arc::new(Mutex::new(FakeDevice::new(q.ring())));
    // The device: answers each command with ack = 0 for class 0, 1 otherwise, and records it.
    type Seen = Vec<(u8, u8, Vec<u8>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // The device thread reads the ring's memory: it is scoped and told to stop on every way out
    // of the driver's side (a failed assertion included), so it never outlives the ring.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|scope| {
        let (dev, seen, stop) = (&dev, &seen, &stop);
        scope.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut d = dev.lock().unwrap();
                if let Some((head, chain)) = d.pop_avail() {
                    assert_eq!(chain.len(), 3, "header, data, ack");
                    assert_eq!(chain[0].1, 2);
                    assert_eq!(chain[0].2 & DESC_F_WRITE, 0);
                    assert_eq!(chain[1].2 & DESC_F_WRITE, 0);
                    assert_eq!((chain[2].1, chain[2].2 & DESC_F_WRITE), (1, DESC_F_WRITE));
                    // SAFETY: the driver posted these buffers (IOVA = VA in this test).
                    let (class, cmd, data) = unsafe {
                        let h = chain[0].0 as *const u8;
                        (
                            *h,
                            *h.add(1),
                            std::slice::from_raw_parts(chain[1].0 as *const u8, chain[1].1 as usize).to_vec(),
                        )
                    };
                    // SAFETY: the ack byte is device-writable.
                    unsafe { *(chain[2].0 as *mut u8) = u8::from(class != 0) };
                    seen.lock().unwrap().push((class, cmd, data));
                    d.push_used(u32::from(head), 1);
                }
                drop(d);
                std::thread::yield_now();
            }
        });
        let _stop = StopOnDrop(stop);
        q.command(0, 0, &[1]).unwrap();
        q.command(0, 1, &[0]).unwrap();
        let e = q.command(1, 1, &[2, 0, 0, 0, 0, 7]).unwrap_err();
        assert_eq!(
            e,
            CtrlError::Refused {
                class: 1,
                cmd: 1,
                ack: 1
            }
        );
        assert!(matches!(q.command(0, 0, &[]), Err(CtrlError::Invalid { .. })));
        assert!(matches!(q.command(0, 0, &[0; 9]), Err(CtrlError::Invalid { .. })));
    });
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(0, 0, vec![1]), (0, 1, vec![0]), (1, 1, vec![2, 0, 0, 0, 0, 7])]
    );
    assert_eq!(bell.state.lock().unwrap().notifies, 3, "one doorbell per command");
    assert_eq!(q.ring().num_free(), size);
    assert!(dev.lock().unwrap().violations.is_empty());
}

/// A packet left in the burst because the ring was full is changed only when it is finally taken:
/// its software checksum is computed once, and valid.
fn tx_software_checksums_survive_a_full_ring<K: Kind>() {
    let pool = virtual_pool("vio-tx-retry", 64, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = tx_queue::<K>(16, &bell, false);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    // One packet with headroom (1 descriptor), then packets without (2 descriptors each): the
    // ring fills with one descriptor left, which the next packet cannot use.
    for i in 0..12 {
        let f = udp_frame_partial();
        let mut p = pool.alloc().unwrap();
        if i > 0 {
            let room = p.headroom();
            p.prepend(room - 4).unwrap();
            p.set_len(0).unwrap();
            p.append(f.len()).unwrap().copy_from_slice(&f);
        } else {
            p.extend_from_slice(&f).unwrap();
        }
        p.set_flags(OffloadFlags::TX_IP_CKSUM | OffloadFlags::TX_UDP_CKSUM);
        burst.push(p).unwrap();
    }
    assert_eq!(
        q.tx_burst(&mut burst, &mut c),
        8,
        "1 + 7 chains of 2: one descriptor left"
    );
    assert_eq!(q.ring().num_free(), 1);
    assert_eq!(burst.len(), 4);
    let mut sent = dev.transmit();
    assert_eq!(q.tx_burst(&mut burst, &mut c), 4);
    sent.extend(dev.transmit());
    assert_eq!(sent.len(), 12);
    let pseudo = [10u8, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 46];
    for (i, (_, f)) in sent.iter().enumerate() {
        assert_eq!(verify_sum(&f[14..34]), 0xFFFF, "frame {i}: IPv4 checksum");
        let mut seg = f[34..].to_vec();
        seg.extend_from_slice(&pseudo);
        assert_eq!(verify_sum(&seg), 0xFFFF, "frame {i}: UDP checksum");
    }
}

// ---------------------------------------------------------------------------------------------
// A hostile split-ring device (review H2): it rewrites the `next` and `flags` fields of every
// descriptor, posted or free, and returns ids and lengths of its choosing. The driver must never
// follow those values: no panic (the old code tripped its offset debug_assert here, and in a
// release build wrote outside the ring), no descriptor handed out twice, no buffer leaked or freed
// twice, every anomaly counted.

/// A small xorshift generator (deterministic).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl FakeDevice {
    /// Rewrites `next` and `flags` of every descriptor with garbage: out-of-range indices
    /// (up to 0xFFFF) and in-range ones pointing into other chains.
    fn scribble(&self, rng: &mut Rng) {
        for i in 0..self.layout.size {
            let r = rng.next();
            let next = if r & 1 == 0 {
                0x8000 | (r >> 8) as u16
            } else {
                (r >> 8) as u16 % self.layout.size as u16
            };
            let p = self.p(16 * i);
            // SAFETY: descriptor i < size lies in the table; 2-aligned fields. A device may write
            // anything here: that is the point.
            unsafe {
                p.add(12).cast::<u16>().write_volatile(((r >> 32) as u16).to_le());
                p.add(14).cast::<u16>().write_volatile(next.to_le());
            }
        }
    }

    /// Takes the next available head from the available ring without following any chain.
    fn pop_avail_head(&mut self) -> Option<u16> {
        let idx = self.r16(self.layout.avail + 2);
        if idx == self.last_avail {
            return None;
        }
        fence(Ordering::Acquire);
        let slot = self.layout.avail + 4 + 2 * (usize::from(self.last_avail) & (self.layout.size - 1));
        self.last_avail = self.last_avail.wrapping_add(1);
        Some(self.r16(slot))
    }
}

#[test]
fn hostile_split_device_cannot_steer_the_free_list() {
    let size = 16;
    let mut ring = SplitRing::new(ring_mem(size), size).unwrap();
    let mut dev = FakeDevice::new(&ring);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Chains in flight (published): head -> (descriptors, writable room).
    let mut in_flight: std::collections::HashMap<u16, (Vec<u16>, u32)> = Default::default();
    let mut bogus = 0u64;
    let mut completed = 0u64;
    for round in 0..20_000u64 {
        // Add chains of 1..=3 descriptors while they fit; check the chain the driver wrote
        // (before the device scribbles on it) uses free descriptors only.
        loop {
            let n = 1 + (rng.next() % 3) as usize;
            let segs: Vec<Seg> = (0..n)
                .map(|k| Seg {
                    addr: round * 64 + k as u64,
                    len: 100,
                    write: k + 1 == n,
                })
                .collect();
            let Some(head) = ring.add(&segs) else { break };
            let mut descs = vec![head];
            let mut i = head;
            for _ in 1..n {
                let (_, _, f, next) = dev.desc(i);
                assert_ne!(f & DESC_F_NEXT, 0);
                assert!(usize::from(next) < size, "driver wrote next {next}");
                descs.push(next);
                i = next;
            }
            for d in &descs {
                for (h, (other, _)) in &in_flight {
                    assert!(
                        !other.contains(d),
                        "descriptor {d} of new chain {head} is in chain {h}"
                    );
                }
            }
            let mut uniq = descs.clone();
            uniq.sort_unstable();
            uniq.dedup();
            assert_eq!(uniq.len(), n, "chain {head} reuses a descriptor: {descs:?}");
            // An id added but not published: the device may not return it.
            if round % 97 == 0 {
                dev.push_used(u32::from(head), 0);
                bogus += 1;
                assert_eq!(ring.pop_used(), Some(Used::BadId(u32::from(head))));
            }
            ring.publish();
            in_flight.insert(head, (descs, 100));
        }
        dev.scribble(&mut rng);
        while dev.pop_avail_head().is_some() {}
        // Return some chains (in any order), mixed with bogus entries.
        let heads: Vec<u16> = in_flight.keys().copied().collect();
        for h in heads {
            if rng.next() % 2 == 0 {
                continue;
            }
            match rng.next() % 5 {
                0 => {
                    dev.push_used(0x1_0000 + u32::from(h), 1); // out of range
                    bogus += 1;
                    assert!(matches!(ring.pop_used(), Some(Used::BadId(_))));
                }
                1 => {
                    // Too long for the chain: taken back, reported.
                    dev.push_used(u32::from(h), 101);
                    bogus += 1;
                    assert_eq!(ring.pop_used(), Some(Used::BadLen { id: h, len: 101 }));
                    in_flight.remove(&h);
                    completed += 1;
                    // The same id again: not in flight any more.
                    dev.push_used(u32::from(h), 0);
                    bogus += 1;
                    assert_eq!(ring.pop_used(), Some(Used::BadId(u32::from(h))));
                }
                _ => {
                    dev.push_used(u32::from(h), 100);
                    assert_eq!(ring.pop_used(), Some(Used::Chain { id: h, len: 100 }));
                    in_flight.remove(&h);
                    completed += 1;
                }
            }
        }
        let used: usize = in_flight.values().map(|(d, _)| d.len()).sum();
        assert_eq!(ring.num_free(), size - used, "round {round}");
        assert_eq!(ring.in_flight(), in_flight.len());
    }
    assert!(completed > 10_000);
    assert_eq!(ring.errors(), bogus, "every anomaly counted");
    // Drain: every descriptor comes back.
    for h in in_flight.keys() {
        dev.push_used(u32::from(*h), 0);
    }
    while ring.pop_used().is_some() {}
    assert_eq!(ring.num_free(), size);
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn hostile_split_device_rx_no_panic_no_leak_no_double_free() {
    let pool = virtual_pool("vio-rx-hostile", 64 + 40, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = rx_queue::<Split>(&pool, 64, &bell);
    let mut dev = FakeDevice::new(q.ring());
    let mut rng = Rng(0xDEAD_BEEF_1234_5678);
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    let mut posted: Vec<u16> = Vec::new();
    let mut bogus = 0u64;
    let mut good = 0u64;
    for _ in 0..3_000 {
        dev.scribble(&mut rng);
        while let Some(h) = dev.pop_avail_head() {
            posted.push(h);
        }
        for _ in 0..8 {
            match rng.next() % 6 {
                0 => {
                    dev.push_used(u32::MAX - (rng.next() as u32 % 1000), 64);
                    bogus += 1;
                }
                1 if !posted.is_empty() => {
                    // A length past the buffer.
                    let h = posted.remove(0);
                    dev.push_used(u32::from(h), 0x7FFF_FFFF);
                    bogus += 1;
                    // And the same id once more: no longer in flight.
                    dev.push_used(u32::from(h), 64);
                    bogus += 1;
                }
                _ if !posted.is_empty() => {
                    let h = posted.remove(0);
                    let (addr, _, _, _) = dev.desc(h);
                    let f = frame(good as u32, 64);
                    // SAFETY: the driver posted this buffer device-writable (addr/len untouched by
                    // the scribbling, which changes flags and next only); IOVA = VA.
                    unsafe {
                        std::ptr::copy_nonoverlapping(hdr(1, 0).as_ptr(), addr as *mut u8, 12);
                        std::ptr::copy_nonoverlapping(f.as_ptr(), (addr + 12) as *mut u8, f.len());
                    }
                    dev.push_used(u32::from(h), 12 + 64);
                    good += 1;
                }
                _ => {}
            }
        }
        while q.rx_burst(&mut burst, &mut c) > 0 {
            burst.clear();
        }
    }
    assert_eq!(c.packets, good, "every good frame delivered");
    assert_eq!(c.ierrors, bogus, "every anomaly counted");
    assert_eq!(q.ring().errors(), bogus);
    assert_eq!(q.ring().num_free(), 0, "every buffer taken back was posted again");
    assert_eq!(q.ring().in_flight(), 64);
    assert!(good > 5_000 && bogus > 5_000, "good {good}, bogus {bogus}");
    drop(q);
    flush_thread_caches();
    assert_eq!(
        pool.available(),
        pool.capacity(),
        "no buffer leaked or freed twice"
    );
}

// ---------------------------------------------------------------------------------------------
// Teardown races (review H3): the RX queue, the TX queue and the driver are dropped on three
// threads at once. Each queue frees its buffers as soon as `stop_device` returns, so the fake
// device records every return that happens while its reset has not completed (status not yet
// read back 0). Before the fix, the stop was marked done before the reset ran: the losers
// returned at once and freed their buffers while the winner was still resetting.

/// The device side of a reset that takes a while to complete.
#[derive(Default)]
struct ResettingDevice {
    /// Device status (nonzero: running; 0 once the reset completed).
    status: std::sync::atomic::AtomicU8,
    resets: std::sync::atomic::AtomicUsize,
    /// Stops that returned (so buffers were freed) while the device still ran.
    freed_while_running: std::sync::atomic::AtomicUsize,
}

impl ResettingDevice {
    /// Writes status 0 and polls until the device reads back 0; the device completes the reset
    /// after a few hundred polls, giving the other threads every chance to run meanwhile.
    fn reset(&self) -> bool {
        self.resets.fetch_add(1, Ordering::SeqCst);
        for _ in 0..200 {
            std::thread::yield_now();
        }
        self.status.store(0, Ordering::SeqCst);
        true
    }
}

#[derive(Clone)]
struct RacingBell {
    stop: Arc<super::StopOnce>,
    dev: Arc<ResettingDevice>,
}

// SAFETY: returns the outcome of the one reset of the shared fake device, after it completed (the
// test counts any buffer freed while the fake still ran).
unsafe impl Doorbell for RacingBell {
    fn notify(&mut self) {}
    fn stop_device(&mut self) -> bool {
        let ok = self.stop.stop(|| self.dev.reset());
        // The queue frees its buffers right after this returns.
        if self.dev.status.load(Ordering::SeqCst) != 0 {
            self.dev.freed_while_running.fetch_add(1, Ordering::SeqCst);
        }
        ok
    }
}

#[test]
fn queues_and_driver_dropped_concurrently_free_nothing_before_the_reset_completes() {
    let pool = virtual_pool("vio-drop-race", 16 + 8 + 40, 0).unwrap();
    let rounds = 300;
    let mut freed_early = 0;
    for _ in 0..rounds {
        let dev = Arc::new(ResettingDevice::default());
        dev.status.store(0x0F, Ordering::SeqCst);
        let bell = RacingBell {
            stop: Arc::new(super::StopOnce::new()),
            dev: dev.clone(),
        };
        let rxq = VirtioRxQueue::new(Split::ring(16), bell.clone(), &pool, 0, 0, false).unwrap();
        let mut txq = VirtioTxQueue::new(
            Split::ring(16),
            HeapRingMemory::new(16),
            bell.clone(),
            false,
            None,
        )
        .unwrap();
        let mut burst = Burst::new();
        for s in 0..8 {
            assert!(burst.push(packet(&pool, &frame(s, 64))).is_ok());
        }
        let mut c = QueueCounters::default();
        assert_eq!(txq.tx_burst(&mut burst, &mut c), 8, "8 packets left in flight");
        let start = Arc::new(std::sync::Barrier::new(3));
        let (s1, s2) = (start.clone(), start.clone());
        let a = std::thread::spawn(move || {
            s1.wait();
            drop(rxq);
        });
        let b = std::thread::spawn(move || {
            s2.wait();
            drop(txq);
        });
        // The driver's Drop: the same stop, then bus mastering off.
        start.wait();
        let mut driver = bell.clone();
        assert!(driver.stop_device());
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(dev.resets.load(Ordering::SeqCst), 1, "one reset per teardown");
        freed_early += dev.freed_while_running.load(Ordering::SeqCst);
    }
    assert_eq!(
        freed_early, 0,
        "a queue freed its buffers before the device reset completed"
    );
    flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity(), "every buffer back");
}

#[test]
fn a_failed_stop_leaks_the_buffers_instead_of_freeing_them() {
    #[derive(Clone)]
    struct FailingBell;
    // SAFETY: never claims a stop (always false): the queue then frees nothing.
    unsafe impl Doorbell for FailingBell {
        fn notify(&mut self) {}
        fn stop_device(&mut self) -> bool {
            false
        }
    }
    let pool = virtual_pool("vio-stop-fails", 16 + 8, 0).unwrap();
    let rxq = VirtioRxQueue::new(Split::ring(16), FailingBell, &pool, 0, 0, false).unwrap();
    drop(rxq);
    flush_thread_caches();
    assert_eq!(
        pool.available(),
        pool.capacity() - 16,
        "the 16 posted buffers stay out of the pool: the device may still write them"
    );
}
