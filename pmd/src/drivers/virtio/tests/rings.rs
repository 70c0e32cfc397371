//! The split and packed rings against the fake device: wrap-around, publish, event suppression,
//! ids and lengths a device must not be trusted with.

use oxpmd_dma::flush_thread_caches;

use super::fake::{Dev, FakeBell, FakeDevice, Kind, Packed, frame, hdr, ring_mem, rx_queue};
use crate::burst::Burst;
use crate::drivers::virtio::packed::{self};
use crate::drivers::virtio::split::{
    AVAIL_F_NO_INTERRUPT, DESC_F_NEXT, DESC_F_WRITE, Seg, SplitLayout, SplitRing, Used, Virtqueue,
};
use crate::stats::QueueCounters;
use crate::vport::virtual_pool;

both_kinds!(chains_wrap_without_losing_descriptors,);

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
