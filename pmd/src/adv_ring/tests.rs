//! The ring against the fake device: RX wrap-around, nombuf, multi-descriptor frames, errors and
//! offload flags, TX RS batching and cleanup, checksum-offload contexts, teardown order, no leaks.

use std::sync::Arc;

use oxpmd_dma::{IdentityMap, Mempool, MempoolConfig, OffloadFlags, Packet, PageSize, RegionOptions};

use super::fake::FakeDevice;
use super::{AdvRxRing, AdvTxRing, HeapRingMemory, RingMemory, TX_RS_THRESH, desc};
use crate::burst::Burst;
use crate::stats::QueueCounters;

pub(super) fn pool(name: &str, capacity: usize) -> Mempool {
    let cfg = MempoolConfig {
        cache_size: 32.min(capacity / 2),
        region: RegionOptions {
            page_size: PageSize::Base4K,
            allow_4k_fallback: true,
        },
        ..MempoolConfig::new(name, capacity)
    };
    Mempool::new(&cfg, Arc::new(IdentityMap)).expect("test pool")
}

fn frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

fn seq_of(p: &Packet) -> u32 {
    u32::from_be_bytes(p.data()[14..18].try_into().unwrap())
}

type TestRx = AdvRxRing<super::fake::FakeRegs, HeapRingMemory>;
type TestTx = AdvTxRing<super::fake::FakeRegs, HeapRingMemory>;

fn rx_ring(pool: &Mempool, count: usize) -> (TestRx, FakeDevice) {
    let mem = HeapRingMemory::new(count);
    // SAFETY: the ring memory lives in the ring, which the tests keep alive while they use `dev`.
    let dev = unsafe { FakeDevice::new(mem.as_ptr(), count) };
    let mut ring = AdvRxRing::new(mem, dev.rx_regs(), pool, count, 7, 0).unwrap();
    ring.arm();
    (ring, dev)
}

fn tx_ring(count: usize) -> (TestTx, FakeDevice) {
    let mem = HeapRingMemory::new(count);
    // SAFETY: the ring memory lives in the ring, which the tests keep alive while they use `dev`.
    let dev = unsafe { FakeDevice::new(mem.as_ptr(), count) };
    let ring = AdvTxRing::new(mem, dev.tx_regs(), count).unwrap();
    (ring, dev)
}

pub(super) fn leak_free(pool: &Mempool) -> bool {
    oxpmd_dma::flush_thread_caches();
    pool.available() == pool.capacity()
}

#[test]
fn rx_delivers_frames_in_order_with_metadata_and_one_tail_write_per_burst() {
    let p = pool("rx-basic", 512);
    let (mut ring, dev) = rx_ring(&p, 64);
    assert_eq!(dev.owned(), 63, "arm gives count - 1 descriptors");
    assert!(dev.receive(&frame(1, 64), 0, Some(0xabcd)));
    assert!(dev.receive(
        &frame(2, 128),
        desc::rx_status::IPCS | desc::rx_status::L4CS,
        None
    ));
    assert!(dev.receive(&frame(3, 60), desc::rx_status::IPCS | desc::rx_error::IPE, None));
    let writes = dev.state().tail_writes;
    let mut b = Burst::new();
    let mut c = QueueCounters::default();
    assert_eq!(ring.rx_burst(&mut b, &mut c), 3);
    assert_eq!(dev.state().tail_writes, writes + 1, "one tail write per burst");
    assert_eq!(dev.state().tail, 2, "tail = last recycled descriptor");
    let v: Vec<_> = b.iter().map(|p| (seq_of(p), p.len(), p.port())).collect();
    assert_eq!(v, [(1, 64, 7), (2, 128, 7), (3, 60, 7)]);
    assert!(b.as_slice()[0].flags().contains(OffloadFlags::RX_RSS_HASH));
    assert_eq!(b.as_slice()[0].rss_hash(), 0xabcd);
    assert!(
        b.as_slice()[1]
            .flags()
            .contains(OffloadFlags::RX_IP_CKSUM_GOOD | OffloadFlags::RX_L4_CKSUM_GOOD)
    );
    assert!(b.as_slice()[2].flags().contains(OffloadFlags::RX_IP_CKSUM_BAD));
    assert_eq!((c.packets, c.bytes), (3, 252));
    // Nothing more: no DD, no packet, no tail write.
    b.clear();
    assert_eq!(ring.rx_burst(&mut b, &mut c), 0);
    assert_eq!(dev.state().tail_writes, writes + 1);
    assert!(dev.state().violations.is_empty(), "{:?}", dev.state().violations);
}

#[test]
fn rx_wraps_around_many_times_without_loss_or_leak() {
    let p = pool("rx-wrap", 512);
    {
        let (mut ring, dev) = rx_ring(&p, 64);
        let mut b = Burst::new();
        let mut c = QueueCounters::default();
        let mut next_expected = 0u32;
        let mut seq = 0u32;
        for round in 0..50 {
            let n = 20 + (round % 25);
            for _ in 0..n {
                assert!(
                    dev.receive(&frame(seq, 64), 0, None),
                    "device ran out of descriptors"
                );
                seq += 1;
            }
            while ring.rx_burst(&mut b, &mut c) > 0 {
                for pkt in b.drain() {
                    assert_eq!(seq_of(&pkt), next_expected);
                    next_expected += 1;
                }
            }
        }
        assert_eq!(next_expected, seq);
        assert_eq!(c.packets, u64::from(seq));
        assert_eq!(dev.state().missed, 0);
        assert_eq!(dev.owned(), 63, "every descriptor given back");
        assert!(dev.state().violations.is_empty());
    }
    assert!(leak_free(&p), "pool not full after the ring was dropped: {p:?}");
}

#[test]
fn rx_never_hands_out_a_posted_buffer() {
    let p = pool("rx-posted", 512);
    let (mut ring, dev) = rx_ring(&p, 64);
    let mut held = Vec::new();
    let mut c = QueueCounters::default();
    for round in 0..6 {
        for k in 0..20 {
            assert!(dev.receive(&frame(round * 100 + k, 64), 0, None));
        }
        let mut b = Burst::new();
        ring.rx_burst(&mut b, &mut c);
        held.extend(b.drain());
        let posted = dev.posted_addrs();
        // Invariant 1: a buffer the CPU holds is never one the device may write.
        for pkt in &held {
            assert!(
                !posted.contains(&pkt.buf_iova()),
                "packet buffer still posted to the device"
            );
            assert!(
                !posted.contains(&pkt.data_iova()),
                "packet buffer still posted to the device"
            );
        }
        // Payloads unchanged since reception (the device never wrote a held buffer).
        for (i, pkt) in held.iter().enumerate() {
            let r = i as u32 / 20;
            assert_eq!(seq_of(pkt), r * 100 + (i as u32 % 20));
        }
    }
}

#[test]
fn rx_nombuf_keeps_the_slot_buffer_and_counts() {
    // Pool: 64 for the ring + 32 spares + 4 extra.
    let p = pool("rx-nombuf", 100);
    let (mut ring, dev) = rx_ring(&p, 64);
    let mut c = QueueCounters::default();
    // Drain the pool completely.
    let mut hoard = Vec::new();
    while let Some(x) = p.alloc() {
        hoard.push(x);
    }
    let mut got = 0;
    let mut b = Burst::with_capacity(64).unwrap();
    for s in 0..60 {
        assert!(dev.receive(&frame(s, 64), 0, None));
    }
    got += ring.rx_burst(&mut b, &mut c);
    // The spares allow some packets; the rest are dropped for lack of buffers.
    assert!(got < 60, "got {got}");
    assert_eq!(c.rx_nombuf as usize, 60 - got);
    let in_use_before = p.in_use();
    // Slots kept their buffers: the device can receive into all of them again.
    assert_eq!(dev.owned(), 63);
    drop(hoard);
    oxpmd_dma::flush_thread_caches();
    b.clear();
    for s in 0..10 {
        assert!(dev.receive(&frame(1000 + s, 64), 0, None));
    }
    assert_eq!(ring.rx_burst(&mut b, &mut c), 10);
    assert_eq!(seq_of(&b.as_slice()[0]), 1000);
    assert!(in_use_before > 0);
    drop(b);
    drop(ring);
    assert!(leak_free(&p));
}

#[test]
fn rx_drops_and_counts_frames_spanning_descriptors_and_error_frames() {
    let p = pool("rx-multi", 512);
    let (mut ring, dev) = rx_ring(&p, 64);
    let mut c = QueueCounters::default();
    assert!(dev.receive(&frame(1, 3000), 0, None)); // two descriptors, EOP on the second
    assert!(dev.receive(&frame(2, 100), 0, None));
    assert!(dev.receive(&frame(3, 5000), 0, None)); // three descriptors
    assert!(dev.receive(&frame(4, 100), desc::rx_error::RXE, None)); // CRC / frame error
    assert!(dev.receive(&frame(5, 100), 0, None));
    let mut b = Burst::new();
    let in_use = p.in_use() + b.capacity(); // the ring keeps one burst of spare buffers
    assert_eq!(ring.rx_burst(&mut b, &mut c), 2);
    assert_eq!(b.iter().map(seq_of).collect::<Vec<_>>(), [2, 5]);
    assert_eq!(c.rx_multiseg_dropped, 2);
    assert_eq!(c.ierrors, 1);
    assert_eq!(dev.owned(), 63, "dropped frames' descriptors were recycled");
    assert_eq!(p.in_use(), in_use, "no buffer lost");
}

#[test]
fn rx_bounds_a_device_length_larger_than_the_buffer() {
    let p = pool("rx-len", 512);
    let (mut ring, dev) = rx_ring(&p, 64);
    let mut c = QueueCounters::default();
    // A device that claims more than the buffer holds (buffer size misconfigured).
    dev.state().force_len = Some(60_000);
    assert!(dev.receive(&frame(1, 100), 0, None));
    let mut b = Burst::new();
    assert_eq!(ring.rx_burst(&mut b, &mut c), 0);
    assert_eq!(c.ierrors, 1);
}

#[test]
fn rx_teardown_disables_the_queue_before_returning_buffers() {
    let p = pool("rx-drop", 512);
    let (ring, dev) = rx_ring(&p, 64);
    let probe_pool = p.clone();
    dev.set_probe(Box::new(move || probe_pool.available()));
    drop(ring);
    let st = dev.state();
    assert!(st.disabled);
    let at_disable = st.probe_at_disable.unwrap();
    assert!(
        at_disable <= p.capacity() - 64,
        "buffers were back before the queue was disabled"
    );
    drop(st);
    assert!(leak_free(&p));
}

#[test]
fn rx_teardown_with_a_failed_disable_stops_device_dma_before_returning_buffers() {
    let p = pool("rx-drop-escalate", 512);
    let (ring, dev) = rx_ring(&p, 64);
    dev.state().disable_fails = true;
    drop(ring);
    let st = dev.state();
    assert!(!st.disabled, "the fake queue ignored the disable");
    assert!(st.dma_stopped, "the failed disable was escalated");
    drop(st);
    assert!(leak_free(&p), "device DMA stopped: the buffers may go back");
}

#[test]
fn rx_teardown_leaks_posted_buffers_when_the_device_cannot_be_stopped() {
    let p = pool("rx-drop-leak", 512);
    let (ring, dev) = rx_ring(&p, 64);
    {
        let mut st = dev.state();
        st.disable_fails = true;
        st.stop_dma_fails = true;
    }
    drop(ring);
    oxpmd_dma::flush_thread_caches();
    assert_eq!(
        p.available(),
        p.capacity() - 64,
        "the 64 posted buffers must not go back to the pool"
    );
    // The device still owns the descriptors and writes into a leaked buffer: memory that nothing
    // else uses (no packet of the pool aliases it).
    assert!(dev.receive(&frame(9, 64), 0, None));
    oxpmd_dma::flush_thread_caches();
    assert_eq!(p.available(), p.capacity() - 64);
    assert!(dev.state().violations.is_empty());
}

#[test]
fn tx_teardown_leaks_in_flight_buffers_when_the_device_cannot_be_stopped() {
    let p = pool("tx-drop-leak", 512);
    let (mut ring, dev) = tx_ring(64);
    dev.state().hold_tx = true;
    let mut c = QueueCounters::default();
    let mut b = Burst::new();
    for i in 0..10 {
        b.push(tx_packet(&p, i, 64)).unwrap();
    }
    assert_eq!(ring.tx_burst(&mut b, &mut c), 10);
    {
        let mut st = dev.state();
        st.disable_fails = true;
        st.stop_dma_fails = true;
    }
    drop(ring);
    oxpmd_dma::flush_thread_caches();
    assert_eq!(
        p.available(),
        p.capacity() - 10,
        "in-flight buffers must not go back"
    );
}

#[test]
fn tx_teardown_with_a_failed_disable_returns_buffers_after_stopping_device_dma() {
    let p = pool("tx-drop-escalate", 512);
    let (mut ring, dev) = tx_ring(64);
    dev.state().hold_tx = true;
    let mut c = QueueCounters::default();
    let mut b = Burst::new();
    for i in 0..10 {
        b.push(tx_packet(&p, i, 64)).unwrap();
    }
    assert_eq!(ring.tx_burst(&mut b, &mut c), 10);
    dev.state().disable_fails = true;
    drop(ring);
    assert!(dev.state().dma_stopped);
    assert!(leak_free(&p));
}

fn tx_packet(p: &Mempool, seq: u32, len: usize) -> Packet {
    let mut pkt = p.alloc().unwrap();
    pkt.extend_from_slice(&frame(seq, len)).unwrap();
    pkt
}

#[test]
fn tx_sends_in_order_with_rs_every_thresh_descriptors() {
    let p = pool("tx-basic", 512);
    let (mut ring, dev) = tx_ring(64);
    let mut c = QueueCounters::default();
    let mut sent = 0u32;
    for _ in 0..10 {
        let mut b = Burst::new();
        for _ in 0..32 {
            b.push(tx_packet(&p, sent, 64 + (sent as usize % 7))).unwrap();
            sent += 1;
        }
        let writes = dev.state().tail_writes;
        assert_eq!(ring.tx_burst(&mut b, &mut c), 32);
        assert!(b.is_empty());
        assert_eq!(dev.state().tail_writes, writes + 1, "one tail write per burst");
    }
    let st = dev.state();
    assert_eq!(st.sent.len(), 320);
    for (i, f) in st.sent.iter().enumerate() {
        assert_eq!(u32::from_be_bytes(f.data[14..18].try_into().unwrap()), i as u32);
        assert_eq!(f.data.len(), 64 + i % 7);
        assert_eq!(f.rs, (i + 1) % TX_RS_THRESH == 0, "RS on descriptor {i}");
    }
    assert!(st.violations.is_empty(), "{:?}", st.violations);
    assert_eq!(c.packets, 320);
    drop(st);
    // Every batch completed: cleanup frees them all (tx_burst only cleans when it needs room).
    assert!(ring.in_flight() >= TX_RS_THRESH);
    ring.cleanup();
    assert_eq!(ring.in_flight(), 0);
    drop(ring);
    assert!(leak_free(&p));
}

#[test]
fn tx_full_ring_keeps_the_rest_in_order_and_cleans_up_in_batches() {
    let p = pool("tx-full", 512);
    let (mut ring, dev) = tx_ring(64);
    dev.state().hold_tx = true;
    let mut c = QueueCounters::default();
    let mut b = Burst::with_capacity(100).unwrap();
    for s in 0..100 {
        b.push(tx_packet(&p, s, 64)).unwrap();
    }
    assert_eq!(ring.tx_burst(&mut b, &mut c), 63, "a ring of 64 holds 63");
    assert_eq!(b.len(), 37);
    assert_eq!(seq_of(&b.as_slice()[0]), 63, "the rest stays in order");
    assert_eq!(ring.tx_burst(&mut b, &mut c), 0, "nothing completed yet");
    // The device sends everything; only the RS descriptors (31) get DD.
    dev.tx_complete();
    assert_eq!(dev.state().sent.len(), 63);
    let in_use = p.in_use();
    // Cleanup reclaims whole batches only (up to the last RS): 32 descriptors.
    assert_eq!(ring.cleanup(), 32);
    assert_eq!(p.in_use() + 32, in_use, "batch freed in bulk");
    assert_eq!(ring.tx_burst(&mut b, &mut c), 32);
    assert_eq!(seq_of(&b.as_slice()[0]), 95);
    dev.tx_complete();
    drop(b);
    let st = dev.state();
    let seqs: Vec<u32> = st
        .sent
        .iter()
        .map(|f| u32::from_be_bytes(f.data[14..18].try_into().unwrap()))
        .collect();
    assert_eq!(seqs, (0..95).collect::<Vec<_>>());
    drop(st);
    drop(ring);
    assert!(leak_free(&p));
}

#[test]
fn tx_checksum_offload_loads_a_context_once_per_header_layout() {
    let p = pool("tx-csum", 512);
    let (mut ring, dev) = tx_ring(64);
    let mut c = QueueCounters::default();
    let mut b = Burst::new();
    for s in 0..3 {
        let mut pkt = tx_packet(&p, s, 80);
        {
            let d = pkt.data_mut();
            d[14] = 0x45; // IPv4, IHL 5
            d[14 + 9] = 17; // UDP
        }
        pkt.set_flags(OffloadFlags::TX_IP_CKSUM | OffloadFlags::TX_UDP_CKSUM);
        b.push(pkt).unwrap();
    }
    b.push(tx_packet(&p, 9, 64)).unwrap(); // no offload
    assert_eq!(ring.tx_burst(&mut b, &mut c), 4);
    let st = dev.state();
    assert_eq!(st.sent.len(), 4);
    let lens = (14u32 << desc::tx::CTX_MACLEN_SHIFT) | 20;
    for f in &st.sent[..3] {
        assert_eq!(f.popts, desc::tx::POPTS_IXSM | desc::tx::POPTS_TXSM);
        let (l, tucmd) = f.context.unwrap();
        assert_eq!(l, lens);
        assert_eq!(tucmd & desc::tx::TUCMD_IPV4, desc::tx::TUCMD_IPV4);
        assert_eq!(tucmd & desc::tx::TUCMD_L4T_TCP, 0, "UDP");
    }
    assert_eq!(st.sent[3].popts, 0);
    // One context descriptor + 4 data descriptors.
    assert_eq!(st.head, 5);
    assert!(st.violations.is_empty(), "{:?}", st.violations);
    drop(st);
    drop(ring);
    assert!(leak_free(&p));
}

#[test]
fn tx_teardown_disables_first_and_frees_packets_in_flight() {
    let p = pool("tx-drop", 512);
    let (mut ring, dev) = tx_ring(64);
    dev.state().hold_tx = true;
    let probe_pool = p.clone();
    dev.set_probe(Box::new(move || probe_pool.available()));
    let mut c = QueueCounters::default();
    let mut b = Burst::new();
    for s in 0..20 {
        b.push(tx_packet(&p, s, 64)).unwrap();
    }
    assert_eq!(ring.tx_burst(&mut b, &mut c), 20);
    drop(ring);
    let st = dev.state();
    assert!(st.disabled);
    assert!(
        st.probe_at_disable.unwrap() <= p.capacity() - 20,
        "packets freed before disable"
    );
    drop(st);
    assert!(leak_free(&p));
}

#[test]
fn ring_setup_refuses_bad_sizes_and_memory() {
    let p = pool("setup", 512);
    for bad in [0usize, 3, 32, 100, 8192] {
        let mem = HeapRingMemory::new(bad.max(1));
        // SAFETY: `dev` only serves the (failing) constructor calls below; `mem` outlives them.
        let dev = unsafe { FakeDevice::new(mem.as_ptr(), bad.max(1)) };
        assert!(
            AdvRxRing::new(mem, dev.rx_regs(), &p, bad, 0, 0).is_err(),
            "rx size {bad}"
        );
        let mem = HeapRingMemory::new(bad.max(1));
        assert!(AdvTxRing::new(mem, dev.tx_regs(), bad).is_err(), "tx size {bad}");
    }
    // Memory too small for the ring.
    let mem = HeapRingMemory::new(64);
    // SAFETY: the device is never used to touch descriptors here.
    let dev = unsafe { FakeDevice::new(mem.as_ptr(), 128) };
    assert!(AdvRxRing::new(mem, dev.rx_regs(), &p, 128, 0, 0).is_err());
    // Pool too small to fill the ring.
    let small = pool("setup-small", 16);
    let mem = HeapRingMemory::new(64);
    // SAFETY: the device is never used to touch descriptors here.
    let dev = unsafe { FakeDevice::new(mem.as_ptr(), 64) };
    assert!(AdvRxRing::new(mem, dev.rx_regs(), &small, 64, 0, 0).is_err());
    assert!(leak_free(&small));
}

#[test]
fn tx_frees_and_counts_packets_the_device_cannot_send() {
    let p = pool("tx-bad", 512);
    let (mut ring, dev) = tx_ring(64);
    let mut c = QueueCounters::default();
    let mut b = Burst::new();
    b.push(tx_packet(&p, 1, 64)).unwrap();
    b.push(p.alloc().unwrap()).unwrap(); // empty
    b.push(tx_packet(&p, 2, 64)).unwrap();
    assert_eq!(ring.tx_burst(&mut b, &mut c), 2);
    assert_eq!(c.ierrors, 1);
    let seqs: Vec<u32> = dev
        .state()
        .sent
        .iter()
        .map(|f| u32::from_be_bytes(f.data[14..18].try_into().unwrap()))
        .collect();
    assert_eq!(seqs, [1, 2]);
    drop(ring);
    assert!(leak_free(&p));
}

/// The bytes of every segment of `p`.
fn bytes_of(p: &Packet) -> Vec<u8> {
    p.segments().flatten().copied().collect()
}

/// A frame of `len` bytes whose payload after the sequence number counts up (mod 251).
fn long_frame(seq: u32, len: usize) -> Vec<u8> {
    let mut f = frame(seq, len);
    for (i, b) in f.iter_mut().enumerate().skip(18) {
        *b = (i % 251) as u8;
    }
    f
}

#[test]
fn rx_scatter_chains_a_frame_over_its_descriptors_with_the_eop_metadata() {
    let p = pool("rx-scatter", 512);
    let (mut ring, dev) = rx_ring(&p, 64);
    ring.set_max_frame(9018);
    let mut c = QueueCounters::default();
    let jumbo = long_frame(1, 9014);
    assert!(dev.receive(&jumbo, desc::rx_status::IPCS, Some(0x1234)));
    assert!(dev.receive(&frame(2, 60), 0, None));
    let exact = long_frame(3, 4096);
    assert!(dev.receive(&exact, 0, None));
    let mut b = Burst::new();
    assert_eq!(ring.rx_burst(&mut b, &mut c), 3);
    let v = b.as_slice();
    assert_eq!((v[0].nb_segs(), v[0].len(), v[0].seg_len()), (5, 9014, 2048));
    assert_eq!(bytes_of(&v[0]), jumbo, "byte-exact over five buffers");
    assert_eq!(v[0].rss_hash(), 0x1234);
    assert!(
        v[0].flags()
            .contains(OffloadFlags::RX_IP_CKSUM_GOOD | OffloadFlags::RX_RSS_HASH)
    );
    assert_eq!((v[1].nb_segs(), v[1].len()), (1, 60));
    assert_eq!((v[2].nb_segs(), v[2].len()), (2, 4096));
    assert_eq!(bytes_of(&v[2]), exact);
    assert_eq!((c.packets, c.bytes), (3, 9014 + 60 + 4096));
    assert_eq!(c.rx_multiseg_dropped, 0);
    drop(b);
    drop(ring);
    assert!(leak_free(&p));
}

#[test]
fn rx_scatter_drops_a_frame_beyond_the_max_frame_and_goes_on() {
    let p = pool("rx-scatter-long", 512);
    let (mut ring, dev) = rx_ring(&p, 64);
    ring.set_max_frame(5000);
    let mut c = QueueCounters::default();
    assert!(dev.receive(&long_frame(1, 9014), 0, None));
    assert!(dev.receive(&long_frame(2, 5000), 0, None));
    assert!(dev.receive(&frame(3, 100), desc::rx_error::RXE, None));
    assert!(dev.receive(&frame(4, 100), 0, None));
    let mut b = Burst::new();
    assert_eq!(ring.rx_burst(&mut b, &mut c), 2);
    assert_eq!(
        b.iter().map(|p| (seq_of(p), p.len())).collect::<Vec<_>>(),
        [(2, 5000), (4, 100)]
    );
    assert_eq!((c.rx_multiseg_dropped, c.ierrors), (1, 1));
    assert_eq!(dev.owned(), 63, "every descriptor went back to the device");
    drop(b);
    drop(ring);
    assert!(leak_free(&p));
}

#[test]
fn rx_scatter_bounds_the_segments_of_a_frame_a_device_never_ends() {
    let p = pool("rx-scatter-endless", 512);
    let (mut ring, dev) = rx_ring(&p, 64);
    ring.set_max_frame(4096);
    let mut c = QueueCounters::default();
    // Zero-length, non-EOP write-backs (a faulty device): at most 4096 / 2048 of them chain.
    dev.state().force_len = Some(0);
    assert!(dev.receive(&long_frame(1, 2048 * 6), 0, None));
    dev.state().force_len = None;
    assert!(dev.receive(&frame(2, 64), 0, None));
    let mut b = Burst::new();
    assert_eq!(ring.rx_burst(&mut b, &mut c), 1);
    assert_eq!(seq_of(&b.as_slice()[0]), 2);
    assert_eq!(c.rx_multiseg_dropped, 1);
    drop(b);
    drop(ring);
    assert!(leak_free(&p));
}

/// A chain of segments of `sizes` bytes holding `long_frame(seq, total)`.
fn tx_chain(p: &Mempool, seq: u32, sizes: &[usize]) -> (Packet, Vec<u8>) {
    let all = long_frame(seq, sizes.iter().sum());
    let mut b = oxpmd_dma::ChainBuilder::new();
    let mut at = 0;
    for &n in sizes {
        let mut s = p.alloc().unwrap();
        s.extend_from_slice(&all[at..at + n]).unwrap();
        b.push(s).unwrap();
        at += n;
    }
    (b.take().unwrap(), all)
}

#[test]
fn tx_sends_a_chain_as_one_frame_over_one_descriptor_per_segment() {
    let p = pool("tx-chain", 512);
    let (mut ring, dev) = tx_ring(64);
    let mut c = QueueCounters::default();
    let mut b = Burst::with_capacity(40).unwrap();
    let mut want = Vec::new();
    for s in 0..40u32 {
        let (pkt, bytes) = if s % 3 == 0 {
            tx_chain(&p, s, &[54, 2000, 2000, 960])
        } else {
            let f = long_frame(s, 100);
            let mut pkt = p.alloc().unwrap();
            pkt.extend_from_slice(&f).unwrap();
            (pkt, f)
        };
        want.push(bytes);
        b.push(pkt).unwrap();
    }
    // 14 chains of 4 and 26 single packets: 82 descriptors, more than the ring holds at once.
    let mut sent = ring.tx_burst(&mut b, &mut c);
    while !b.is_empty() {
        ring.cleanup();
        sent += ring.tx_burst(&mut b, &mut c);
    }
    assert_eq!(sent, 40);
    let st = dev.state();
    assert!(st.violations.is_empty(), "{:?}", st.violations);
    let got: Vec<&Vec<u8>> = st.sent.iter().map(|f| &f.data).collect();
    assert_eq!(
        got,
        want.iter().collect::<Vec<_>>(),
        "every frame whole and in order"
    );
    drop(st);
    assert_eq!(c.bytes, want.iter().map(|f| f.len() as u64).sum::<u64>());
    ring.cleanup();
    drop(ring);
    assert!(leak_free(&p), "every segment freed on its own");
}

#[test]
fn tx_frees_and_counts_chains_it_cannot_send() {
    let p = pool("tx-chain-bad", 512);
    let (mut ring, dev) = tx_ring(64);
    let mut c = QueueCounters::default();
    let mut b = Burst::new();
    // An empty middle segment, too many segments, a chain longer than MAX_TX_LEN.
    let (mut holed, _) = tx_chain(&p, 1, &[60, 60]);
    holed.chain(p.alloc().unwrap()).unwrap();
    let mut tail = p.alloc().unwrap();
    tail.extend_from_slice(&[7; 10]).unwrap();
    holed.chain(tail).unwrap();
    b.push(holed).unwrap();
    b.push(tx_chain(&p, 2, &[20; super::MAX_TX_SEGS + 1]).0).unwrap();
    b.push(tx_chain(&p, 3, &[2000; 9]).0).unwrap();
    b.push(tx_chain(&p, 4, &[60, 60]).0).unwrap();
    assert_eq!(ring.tx_burst(&mut b, &mut c), 1);
    assert_eq!(c.ierrors, 3);
    let st = dev.state();
    assert_eq!(st.sent.len(), 1);
    assert_eq!(u32::from_be_bytes(st.sent[0].data[14..18].try_into().unwrap()), 4);
    drop(st);
    ring.cleanup();
    drop(ring);
    assert!(leak_free(&p));
}

/// An Ethernet + IPv4/IPv6 + TCP (20-byte header) frame with `payload` bytes.
fn tcp_frame(ipv6: bool, payload: usize) -> Vec<u8> {
    let mut f = frame(1, 18);
    let l3 = if ipv6 {
        f[12..14].copy_from_slice(&0x86DDu16.to_be_bytes());
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[6] = 6;
        h
    } else {
        let mut h = vec![0u8; 20];
        h[0] = 0x45;
        h[9] = 6;
        h
    };
    f.truncate(14);
    f.extend_from_slice(&l3);
    let mut tcp = vec![0u8; 20];
    tcp[12] = 5 << 4;
    f.extend_from_slice(&tcp);
    f.extend((0..payload).map(|i| (i % 251) as u8));
    f
}

#[test]
fn tx_tso_loads_mss_and_header_lengths_and_sends_the_payload_length() {
    let p = pool("tx-tso", 512);
    let (mut ring, dev) = tx_ring(64);
    let mut c = QueueCounters::default();
    let mut b = Burst::new();
    for (ipv6, mss) in [(false, 1448u16), (true, 1428)] {
        let f = tcp_frame(ipv6, 9000);
        let mut pkt = p.alloc().unwrap();
        pkt.extend_from_slice(&f[..f.len() - 9000]).unwrap();
        pkt.chain(tx_chain(&p, 0, &[2000; 4]).0).unwrap();
        let mut last = p.alloc().unwrap();
        last.extend_from_slice(&[0; 1000]).unwrap();
        pkt.chain(last).unwrap();
        pkt.set_flags(OffloadFlags::TX_TCP_SEG | OffloadFlags::TX_TCP_CKSUM | OffloadFlags::TX_IP_CKSUM);
        pkt.set_tso_segsz(mss);
        b.push(pkt).unwrap();
    }
    // TSO without an MSS, and TSO of a frame that is not TCP: refused, counted.
    let mut no_mss = p.alloc().unwrap();
    no_mss.extend_from_slice(&tcp_frame(false, 100)).unwrap();
    no_mss.set_flags(OffloadFlags::TX_TCP_SEG);
    b.push(no_mss).unwrap();
    let mut udp = p.alloc().unwrap();
    udp.extend_from_slice(&frame(5, 100)).unwrap();
    udp.set_flags(OffloadFlags::TX_TCP_SEG);
    udp.set_tso_segsz(1000);
    b.push(udp).unwrap();
    assert_eq!(ring.tx_burst(&mut b, &mut c), 2);
    assert_eq!(c.ierrors, 2);
    let st = dev.state();
    assert!(st.violations.is_empty(), "{:?}", st.violations);
    assert_eq!(st.sent.len(), 2);
    for (f, (ipv6, mss, l3)) in st.sent.iter().zip([(false, 1448, 20), (true, 1428, 40)]) {
        assert_eq!(f.data.len(), 14 + l3 + 20 + 9000);
        assert_eq!(f.tso_mss, Some(mss));
        let (lens, tucmd) = f.context.unwrap();
        assert_eq!(
            (lens >> desc::tx::CTX_MACLEN_SHIFT & 0x7F, lens & 0x1FF),
            (14, l3 as u32)
        );
        assert_eq!(tucmd & desc::tx::TUCMD_L4T_TCP, desc::tx::TUCMD_L4T_TCP);
        assert_eq!(tucmd & desc::tx::TUCMD_IPV4 != 0, !ipv6);
        assert_eq!(f.popts & desc::tx::POPTS_TXSM, desc::tx::POPTS_TXSM);
        assert_eq!(f.popts & desc::tx::POPTS_IXSM != 0, !ipv6);
    }
    drop(st);
    ring.cleanup();
    drop(ring);
    assert!(leak_free(&p));
}
