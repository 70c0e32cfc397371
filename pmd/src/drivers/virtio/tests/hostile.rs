//! A hostile split-ring device: it rewrites the `next` and `flags` fields of every
//! descriptor, posted or free, and returns ids and lengths of its choosing. The driver must never
//! follow those values: no panic (the old code tripped its offset debug_assert here, and in a
//! release build wrote outside the ring), no descriptor handed out twice, no buffer leaked or freed
//! twice, every anomaly counted.

use std::sync::atomic::{Ordering, fence};

use oxpmd_dma::flush_thread_caches;

use super::fake::{FakeBell, FakeDevice, Split, frame, hdr, ring_mem, rx_queue};
use crate::burst::Burst;
use crate::drivers::virtio::split::{DESC_F_NEXT, Seg, SplitRing, Used};
use crate::stats::QueueCounters;
use crate::vport::virtual_pool;

use crate::test_rng::TestRng as Rng;

impl FakeDevice {
    /// Rewrites `next` and `flags` of every descriptor with garbage: out-of-range indices
    /// (up to 0xFFFF) and in-range ones pointing into other chains.
    fn scribble(&self, rng: &mut Rng) {
        for i in 0..self.layout.size {
            let r = rng.next_u64();
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
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    // Chains in flight (published): head -> (descriptors, writable room).
    let mut in_flight: std::collections::HashMap<u16, (Vec<u16>, u32)> = Default::default();
    let mut bogus = 0u64;
    let mut completed = 0u64;
    for round in 0..20_000u64 {
        // Add chains of 1..=3 descriptors while they fit; check the chain the driver wrote
        // (before the device scribbles on it) uses free descriptors only.
        loop {
            let n = 1 + (rng.next_u64() % 3) as usize;
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
            if rng.next_u64() % 2 == 0 {
                continue;
            }
            match rng.next_u64() % 5 {
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
    let mut rng = Rng::new(0xDEAD_BEEF_1234_5678);
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
            match rng.next_u64() % 6 {
                0 => {
                    dev.push_used(u32::MAX - (rng.next_u64() as u32 % 1000), 64);
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
