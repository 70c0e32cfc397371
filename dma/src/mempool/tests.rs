use super::*;
use crate::map::IdentityMap;
use crate::packet::OffloadFlags;
use crate::region::PageSize;
use std::sync::atomic::AtomicBool;

fn small(name: &str, capacity: usize, cache: usize) -> MempoolConfig {
    MempoolConfig {
        cache_size: cache,
        region: RegionOptions {
            page_size: PageSize::Base4K,
            allow_4k_fallback: true,
        },
        ..MempoolConfig::new(name, capacity)
    }
}

fn pool(name: &str, capacity: usize, cache: usize) -> Mempool {
    Mempool::new(&small(name, capacity, cache), Arc::new(IdentityMap)).unwrap()
}

#[test]
fn packet_and_option_are_one_pointer() {
    assert_eq!(core::mem::size_of::<Packet>(), 8);
    assert_eq!(core::mem::size_of::<Option<Packet>>(), 8);
    assert_eq!(core::mem::size_of::<RawBuffer>(), 8);
}

#[test]
fn bad_configs_are_errors() {
    let map: Arc<dyn DmaMap> = Arc::new(IdentityMap);
    let e = |c: MempoolConfig| Mempool::new(&c, map.clone()).unwrap_err();
    assert!(matches!(e(small("z", 0, 0)), MempoolError::ZeroCapacity { .. }));
    assert!(matches!(
        e(small("c", 1024, 513)),
        MempoolError::CacheTooLarge { max: 512, .. }
    ));
    assert!(matches!(
        e(small("c2", 100, 67)),
        MempoolError::CacheTooLarge { max: 66, .. }
    ));
    assert!(matches!(
        e(MempoolConfig {
            data_room: 10,
            ..small("d", 8, 0)
        }),
        MempoolError::DataRoomTooSmall { .. }
    ));
    assert!(matches!(
        e(MempoolConfig {
            data_room: 65535,
            ..small("b", 8, 0)
        }),
        MempoolError::BufferTooLarge { .. }
    ));
    assert!(matches!(
        e(small("o", usize::MAX / 2, 0)),
        MempoolError::CapacityTooLarge { .. }
    ));
    let msg = e(small("named", 1024, 600)).to_string();
    assert!(msg.contains("named") && msg.contains("600"), "{msg}");
}

#[test]
fn alloc_until_exhausted_then_everything_comes_back() {
    let p = pool("exh", 100, 16);
    let mut c = p.cache();
    let mut pkts = Vec::new();
    while let Some(pkt) = c.alloc() {
        pkts.push(pkt);
    }
    assert_eq!(pkts.len(), 100);
    assert_eq!(p.in_use(), 100);
    let mut slots: [Option<Packet>; 4] = Default::default();
    assert_eq!(c.alloc_bulk(&mut slots), Err(Exhausted));
    assert!(slots.iter().all(Option::is_none));
    assert!(p.alloc().is_none());
    drop(pkts.pop());
    assert_eq!(p.available(), 1);
    let mut slots2: [Option<Packet>; 2] = Default::default();
    assert_eq!(
        c.alloc_bulk(&mut slots2),
        Err(Exhausted),
        "bulk is all or nothing"
    );
    assert_eq!(p.available(), 1);
    drop(pkts);
    assert_eq!(p.available(), 100);
    assert!(c.alloc_bulk(&mut slots).is_ok());
    assert_eq!(c.free_bulk(&mut slots), 4);
    assert_eq!(p.available(), 100);
}

#[test]
fn packet_operations_never_panic_and_keep_bounds() {
    let p = pool("ops", 8, 0);
    let mut pkt = p.alloc().unwrap();
    assert_eq!((pkt.len(), pkt.headroom(), pkt.tailroom()), (0, 128, 2048));
    assert!(pkt.append(2049).is_none());
    pkt.append(60).unwrap().fill(0xaa);
    assert!(pkt.prepend(129).is_none());
    let h = pkt.prepend(14).unwrap();
    h[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    h[12..14].copy_from_slice(&[0x08, 0x00]);
    assert_eq!(pkt.len(), 74);
    let eth = pkt.eth().unwrap();
    assert_eq!(eth.dst, [2, 0, 0, 0, 0, 1]);
    assert_eq!(eth.ethertype.get(), 0x0800);
    pkt.eth_mut().unwrap().src = [2, 0, 0, 0, 0, 9];
    assert_eq!(&pkt.data()[6..12], &[2, 0, 0, 0, 0, 9]);
    assert_eq!(pkt.data_iova(), pkt.buf_iova() + 114);
    assert!(pkt.adjust(75).is_none());
    pkt.adjust(14).unwrap();
    assert!(pkt.trim(61).is_none());
    pkt.trim(10).unwrap();
    assert_eq!(pkt.len(), 50);
    assert!(pkt.eth().is_some());
    pkt.trim(40).unwrap();
    assert!(pkt.eth().is_none(), "10 bytes is shorter than an Ethernet header");
    assert_eq!(
        pkt.set_len(2048 + 128 - 128 + 1),
        Err(crate::PacketError::TooLong {
            len: 2049,
            room: 2048
        })
    );
    pkt.set_len(2048).unwrap();
    assert_eq!(pkt.tailroom(), 0);
    assert!(pkt.extend_from_slice(&[1]).is_err());
    pkt.set_rss_hash(7);
    pkt.set_flags(OffloadFlags::RX_RSS_HASH | OffloadFlags::RX_IP_CKSUM_GOOD);
    assert!(pkt.flags().contains(OffloadFlags::RX_RSS_HASH));
    assert_eq!(pkt.pool_id(), p.id());
    drop(pkt);
    let pkt = p.alloc().unwrap();
    assert_eq!(
        (pkt.len(), pkt.headroom(), pkt.rss_hash(), pkt.flags()),
        (0, 128, 0, OffloadFlags::EMPTY)
    );
}

#[test]
fn iova_follows_the_mapping() {
    struct Offset;
    // SAFETY: a test map for in-process use: no device is given its IOVAs.
    unsafe impl DmaMap for Offset {
        fn name(&self) -> String {
            "offset map".into()
        }
        unsafe fn map(&self, _v: *mut u8, _l: usize, _a: usize) -> Result<u64, DmaMapError> {
            Ok(0x1_0000_0000)
        }
        unsafe fn unmap(&self, _i: u64, _v: *mut u8, _l: usize) -> Result<(), DmaMapError> {
            Ok(())
        }
    }
    let p = Mempool::new(&small("iova", 4, 0), Arc::new(Offset)).unwrap();
    assert_eq!(p.region().iova(), Some(0x1_0000_0000));
    let mut seen = Vec::new();
    let mut c = p.cache();
    let mut raws = [RawBuffer::NULL; 4];
    c.get_bulk(&mut raws).unwrap();
    for r in raws {
        // SAFETY: taken from the live pool above.
        let (iova, rx) = unsafe { (r.buf_iova(), r.rx_data_iova()) };
        // 4 KiB pages, 2176-byte buffers: one buffer at the start of each page.
        assert_eq!((iova - 0x1_0000_0000) % 4096, 0);
        assert_eq!(rx, iova + 128);
        seen.push(iova);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4);
    // SAFETY: taken from this pool, given back once.
    unsafe { c.put_bulk(&raws) }.unwrap();
}

#[test]
fn cross_pool_return_is_refused() {
    let a = pool("a", 16, 4);
    let b = pool("b", 16, 4);
    let mut ca = a.cache();
    let mut cb = b.cache();
    let pa = ca.alloc().unwrap();
    let pa = cb.free(pa).expect_err("a's packet refused by b");
    let mut slots = [Some(pa), cb.alloc(), None];
    assert_eq!(cb.free_bulk(&mut slots), 1, "only b's packet taken");
    assert!(slots[0].is_some() && slots[1].is_none());
    let raw = slots[0].take().unwrap().into_raw();
    let mut braw = [RawBuffer::NULL];
    cb.get_bulk(&mut braw).unwrap();
    // SAFETY: the put is refused before any buffer is taken.
    let refused = unsafe { cb.put_bulk(&[braw[0], raw]) };
    assert_eq!(refused, Err(ForeignBuffer { index: 1 }));
    assert_eq!(b.in_use(), 1);
    // SAFETY: each given back to its own pool, once.
    unsafe {
        cb.put_bulk_unchecked(&braw);
        ca.put_bulk(&[raw]).unwrap();
    }
    assert_eq!((a.in_use(), b.in_use()), (0, 0));
}

#[test]
fn multithreaded_churn_returns_every_buffer() {
    const CAP: usize = 2048;
    let p = pool("churn", CAP, 64);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Packet>>(64);
    let rx = Arc::new(Mutex::new(rx));
    let mut hs = Vec::new();
    for t in 0..4 {
        let p = p.clone();
        let tx = tx.clone();
        let rx = rx.clone();
        hs.push(std::thread::spawn(move || {
            let mut c = p.cache();
            let mut slots: [Option<Packet>; 8] = Default::default();
            for i in 0..3000 {
                if t % 2 == 0 {
                    // Producers: explicit cache, send packets to other threads.
                    if c.alloc_bulk(&mut slots).is_ok() {
                        let v: Vec<Packet> = slots.iter_mut().filter_map(Option::take).collect();
                        // Never block: consumers may have finished.
                        drop(tx.try_send(v));
                    }
                    if i % 3 == 0 {
                        if let Some(mut x) = p.alloc() {
                            x.append(10).unwrap();
                        }
                    }
                } else {
                    // Consumers: drop what they get (per-thread cache), or return in bulk.
                    let got = rx.lock().unwrap().try_recv();
                    if let Ok(v) = got {
                        if i % 2 == 0 {
                            drop(v);
                        } else {
                            let mut s: Vec<Option<Packet>> = v.into_iter().map(Some).collect();
                            let n = s.len();
                            assert_eq!(c.free_bulk(&mut s), n);
                        }
                    }
                    let _ = p.alloc_bulk(&mut slots);
                }
            }
        }));
    }
    drop(tx);
    for h in hs {
        h.join().unwrap();
    }
    // Leftovers in the channel.
    while let Ok(v) = rx.lock().unwrap().try_recv() {
        drop(v);
    }
    assert_eq!(p.available(), CAP);
    assert_eq!(p.in_use(), 0);
    // The main thread's cache is counted too; after a flush the ring holds all.
    flush_thread_caches();
    assert_eq!(p.shared().ring.len(), CAP);
}

#[test]
fn pool_on_hugepages_or_clear_error() {
    use crate::region::tests::{HUGEPAGE_LOCK, Reservation};
    let _g = HUGEPAGE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let _r = Reservation::try_add(1);
    // 900 buffers of 2240 bytes: 2016000 bytes, one 2 MiB page.
    let config = MempoolConfig::new("huge", 900);
    match Mempool::new(&config, Arc::new(IdentityMap)) {
        Ok(p) => {
            assert_eq!(p.region().page_size(), PageSize::Huge2M);
            assert_eq!(p.region().len(), 2 << 20);
            let mut c = p.cache();
            let mut v = Vec::new();
            while let Some(pkt) = c.alloc() {
                v.push(pkt);
            }
            assert_eq!(v.len(), 900);
            drop(v);
            drop(c);
            assert_eq!(p.available(), 900);
        }
        Err(MempoolError::Region { source, .. }) => {
            assert!(
                matches!(
                    source,
                    RegionError::NoHugepagesReserved { .. } | RegionError::TooFewFree { .. }
                ),
                "{source:?}"
            );
            oxpmd_test_skip::skip(format_args!(
                "hugepage mempool: no 2 MiB page could be had: {source}"
            ));
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[test]
fn racing_last_handle_and_last_packets_free_exactly_once() {
    struct Count(Arc<AtomicUsize>);
    // SAFETY: a test map for in-process use: no device is given its IOVAs.
    unsafe impl DmaMap for Count {
        fn name(&self) -> String {
            "count".into()
        }
        unsafe fn map(&self, v: *mut u8, _l: usize, _a: usize) -> Result<u64, DmaMapError> {
            Ok(v as u64)
        }
        unsafe fn unmap(&self, _i: u64, _v: *mut u8, _l: usize) -> Result<(), DmaMapError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }
    for round in 0..20 {
        let unmaps = Arc::new(AtomicUsize::new(0));
        let p = Mempool::new(&small("race", 256, 16), Arc::new(Count(unmaps.clone()))).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(4));
        let hs: Vec<_> = (0..3)
            .map(|t| {
                let mut c = p.cache();
                let mut slots: Vec<Option<Packet>> = (0..40).map(|_| None).collect();
                c.alloc_bulk(&mut slots).unwrap();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    // Mix the three ways back: explicit cache, Drop, and a dropped cache.
                    if (t + round) % 3 == 0 {
                        assert_eq!(c.free_bulk(&mut slots), 40);
                    }
                    drop(slots);
                    drop(c);
                })
            })
            .collect();
        barrier.wait();
        drop(p);
        for h in hs {
            h.join().unwrap();
        }
        assert_eq!(
            unmaps.load(Ordering::SeqCst),
            1,
            "round {round}: freed exactly once, after the last"
        );
    }
}

struct Watch(Arc<AtomicBool>);
// SAFETY: a test map for in-process use: no device is given its IOVAs.
unsafe impl DmaMap for Watch {
    fn name(&self) -> String {
        "watch".into()
    }
    unsafe fn map(&self, v: *mut u8, _l: usize, _a: usize) -> Result<u64, DmaMapError> {
        Ok(v as u64)
    }
    unsafe fn unmap(&self, _i: u64, _v: *mut u8, _l: usize) -> Result<(), DmaMapError> {
        self.0.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn dropping_the_pool_with_packets_out_is_sound() {
    let unmapped = Arc::new(AtomicBool::new(false));
    let p = Mempool::new(&small("late", 64, 8), Arc::new(Watch(unmapped.clone()))).unwrap();
    let mut c = p.cache();
    let mut slots: [Option<Packet>; 16] = Default::default();
    c.alloc_bulk(&mut slots).unwrap();
    let mut one = p.alloc().unwrap();
    drop(c);
    drop(p);
    assert!(
        !unmapped.load(Ordering::SeqCst),
        "packets are out: region still mapped"
    );
    one.extend_from_slice(b"still usable").unwrap();
    let h = std::thread::spawn(move || drop(slots));
    h.join().unwrap();
    assert!(!unmapped.load(Ordering::SeqCst), "one packet still out");
    assert_eq!(one.data(), b"still usable");
    drop(one);
    assert!(
        unmapped.load(Ordering::SeqCst),
        "last packet back: pool freed and unmapped"
    );
}

struct CountUnmaps(Arc<AtomicUsize>);
// SAFETY: a test map for in-process use: no device is given its IOVAs.
unsafe impl DmaMap for CountUnmaps {
    fn name(&self) -> String {
        "count unmaps".into()
    }
    unsafe fn map(&self, v: *mut u8, _l: usize, _a: usize) -> Result<u64, DmaMapError> {
        Ok(v as u64)
    }
    unsafe fn unmap(&self, _i: u64, _v: *mut u8, _l: usize) -> Result<(), DmaMapError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn a_running_thread_releases_its_cache_of_a_dropped_pool() {
    // Regression (review M2): a worker's per-thread cache used to keep a dropped pool (its
    // memory and device mapping) alive until the worker exited or made a new cache.
    use std::sync::mpsc::channel;
    let unmaps = Arc::new(AtomicUsize::new(0));
    let a = Mempool::new(&small("closed-a", 64, 8), Arc::new(CountUnmaps(unmaps.clone()))).unwrap();
    let c_unmaps = Arc::new(AtomicUsize::new(0));
    let c = Mempool::new(&small("closed-c", 64, 8), Arc::new(CountUnmaps(c_unmaps.clone()))).unwrap();
    let b = pool("live-b", 64, 8);
    let (to_worker, from_main) = channel::<u32>();
    let (to_main, from_worker) = channel::<()>();
    let (wa, wb, wc) = (a.clone(), b.clone(), c.clone());
    let worker = std::thread::spawn(move || {
        // Per-thread caches of A, B and C, each holding buffers.
        for p in [&wa, &wb, &wc] {
            let v: Vec<Packet> = (0..4).map(|_| p.alloc().unwrap()).collect();
            drop(v);
        }
        drop((wa, wc));
        let b_pkt = wb.alloc().unwrap();
        to_main.send(()).unwrap();
        // 1: one operation on pool B (its cache exists: the fast path).
        assert_eq!(from_main.recv().unwrap(), 1);
        drop(wb.alloc().unwrap());
        to_main.send(()).unwrap();
        // 2: the documented hook, no pool operation.
        assert_eq!(from_main.recv().unwrap(), 2);
        release_closed_pool_caches();
        to_main.send(()).unwrap();
        // Keep running (and holding B's cache and a packet) until told to end.
        assert_eq!(from_main.recv().unwrap(), 3);
        drop(b_pkt);
    });
    from_worker.recv().unwrap();
    drop(a);
    assert_eq!(
        unmaps.load(Ordering::SeqCst),
        0,
        "the worker's cache still holds A"
    );
    to_worker.send(1).unwrap();
    from_worker.recv().unwrap();
    assert_eq!(
        unmaps.load(Ordering::SeqCst),
        1,
        "A released after the worker's next operation on B"
    );
    drop(c);
    assert_eq!(
        c_unmaps.load(Ordering::SeqCst),
        0,
        "the worker's cache still holds C"
    );
    to_worker.send(2).unwrap();
    from_worker.recv().unwrap();
    assert_eq!(c_unmaps.load(Ordering::SeqCst), 1, "C released by the hook");
    assert_eq!(
        b.in_use(),
        1,
        "B untouched: its packet is out, its cache counted free"
    );
    to_worker.send(3).unwrap();
    worker.join().unwrap();
    assert_eq!(b.in_use(), 0);
    assert_eq!(
        (unmaps.load(Ordering::SeqCst), c_unmaps.load(Ordering::SeqCst)),
        (1, 1)
    );
}

#[test]
fn raw_round_trip_through_a_driver_ring() {
    let p = pool("raw", 32, 8);
    let mut c = p.cache();
    let mut pkt = c.alloc().unwrap();
    pkt.extend_from_slice(&[1, 2, 3]).unwrap();
    let raw = pkt.into_raw();
    assert_eq!(p.in_use(), 1);
    // SAFETY: the buffer is ours and no device has it.
    let back = unsafe { Packet::from_raw(raw) };
    assert_eq!(back.data(), &[1, 2, 3]);
    drop(back);
    assert_eq!(p.in_use(), 0);
}

#[test]
fn alloc_bulk_filled_appends_reset_packets_with_the_template_or_nothing() {
    let p = pool("filled", 64, 16);
    let fill = FillTemplate {
        data_len: 60,
        port: 3,
        queue: 2,
    };
    // A used packet comes back with offsets, flags and user data changed: the fill resets them.
    let mut used = p.alloc().unwrap();
    used.set_len(100).unwrap();
    used.set_user(7);
    used.set_rss_hash(9);
    used.set_flags(OffloadFlags::RX_RSS_HASH);
    assert!(used.prepend(4).is_some());
    drop(used);
    let mut v: Vec<Packet> = Vec::with_capacity(40);
    v.push(p.alloc().unwrap());
    p.alloc_bulk_filled(&mut v, 39, fill).unwrap();
    assert_eq!(v.len(), 40);
    for pkt in &v[1..] {
        assert_eq!((pkt.len(), pkt.port(), pkt.queue()), (60, 3, 2));
        assert_eq!(
            (pkt.rss_hash(), pkt.user(), pkt.flags()),
            (0, 0, OffloadFlags::EMPTY)
        );
        assert_eq!(pkt.headroom(), p.headroom());
        assert_eq!(pkt.data().len(), 60);
    }
    assert_eq!(
        v[0].len(),
        0,
        "the packet already in the vector is left as it was"
    );
    assert_eq!(p.in_use(), 40);
    // No room in the vector, a length past the data room, an empty pool: nothing taken.
    assert_eq!(
        p.alloc_bulk_filled(&mut v, 1, fill),
        Err(FillError::NoRoom { want: 1, spare: 0 })
    );
    let mut w: Vec<Packet> = Vec::with_capacity(32);
    let too_long = FillTemplate {
        data_len: (p.data_room() + 1) as u16,
        ..fill
    };
    assert!(matches!(
        p.alloc_bulk_filled(&mut w, 1, too_long),
        Err(FillError::TooLong { .. })
    ));
    assert_eq!(
        p.alloc_bulk_filled(&mut w, 25, fill),
        Err(FillError::Exhausted(Exhausted))
    );
    assert!(w.is_empty());
    assert_eq!(p.in_use(), 40);
    let too_long_text = p.alloc_bulk_filled(&mut w, 1, too_long).unwrap_err().to_string();
    assert!(too_long_text.contains("data room"), "{too_long_text}");
    drop(v);
    assert_eq!(p.in_use(), 0);
}
