//! The rings after the device lost their queue (a reset): RX posts every slot's own buffer again,
//! TX gives its in-flight packets back, and both run on from descriptor 0 with nothing leaked.

use oxpmd_dma::Packet;

use super::fake::FakeDevice;
use super::tests::{leak_free, pool};
use super::{AdvRxRing, AdvTxRing, HeapRingMemory, RingMemory};
use crate::burst::Burst;
use crate::stats::QueueCounters;

fn frame(seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[12..14].copy_from_slice(&[0x88, 0xB5]);
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

fn seq_of(p: &Packet) -> u32 {
    u32::from_be_bytes(p.data()[14..18].try_into().unwrap())
}

/// The device forgets the queue (as a reset does): disabled, head = tail = 0.
fn device_reset(dev: &FakeDevice) {
    let mut st = dev.state();
    st.disabled = true;
    st.head = 0;
    st.tail = 0;
}

#[test]
fn rx_after_a_reset_delivers_what_was_written_back_then_reposts_its_own_buffers() {
    let p = pool("rx-reset", 256);
    let mem = HeapRingMemory::new(64);
    // SAFETY: the ring memory lives in the ring, which outlives every use of `dev` below.
    let dev = unsafe { FakeDevice::new(mem.as_ptr(), 64) };
    let mut ring = AdvRxRing::new(mem, dev.rx_regs(), &p, 64, 0, 0).unwrap();
    ring.arm();
    let (mut b, mut c) = (Burst::new(), QueueCounters::default());
    for s in 0..10 {
        assert!(dev.receive(&frame(s), 0, None));
    }
    assert_eq!(ring.rx_burst(&mut b, &mut c), 10);
    b.clear();
    // Three more arrive, then the device loses the queue before they are taken.
    for s in 10..13 {
        assert!(dev.receive(&frame(s), 0, None));
    }
    device_reset(&dev);
    // They were received: delivered first, in order.
    assert!(ring.has_pending());
    assert_eq!(ring.rx_burst(&mut b, &mut c), 3);
    assert_eq!(b.iter().map(seq_of).collect::<Vec<_>>(), [10, 11, 12]);
    b.clear();
    // Recycling those slots wrote the tail of the disabled queue; the driver programs the tail
    // again (0) before it enables the queue, so that write is never acted upon.
    assert_eq!(dev.state().violations, ["tail write on a disabled queue"]);
    dev.state().violations.clear();
    assert!(!ring.has_pending());
    oxpmd_dma::flush_thread_caches();
    let in_use = p.capacity() - p.available();
    ring.repost_all();
    oxpmd_dma::flush_thread_caches();
    assert_eq!(
        p.capacity() - p.available(),
        in_use,
        "the repost takes no buffer and frees none"
    );
    // The device is set up again (head 0) and armed: it owns count - 1 descriptors, each with a
    // distinct buffer, and the frames land in order from descriptor 0.
    dev.state().disabled = false;
    ring.arm();
    assert_eq!(dev.owned(), 63);
    let mut addrs = dev.posted_addrs();
    addrs.sort_unstable();
    addrs.dedup();
    assert_eq!(addrs.len(), 63, "every posted buffer is distinct");
    for s in 100..110 {
        assert!(dev.receive(&frame(s), 0, None));
    }
    assert_eq!(ring.rx_burst(&mut b, &mut c), 10);
    assert_eq!(
        b.iter().map(seq_of).collect::<Vec<_>>(),
        (100..110).collect::<Vec<_>>()
    );
    b.clear();
    assert!(dev.state().violations.is_empty(), "{:?}", dev.state().violations);
    drop(ring);
    assert!(leak_free(&p), "every buffer back after the port is dropped");
}

#[test]
fn tx_after_a_reset_returns_its_in_flight_packets_and_sends_from_descriptor_0() {
    let p = pool("tx-reset", 256);
    let mem = HeapRingMemory::new(64);
    // SAFETY: the ring memory lives in the ring, which outlives every use of `dev` below.
    let dev = unsafe { FakeDevice::new(mem.as_ptr(), 64) };
    let mut ring = AdvTxRing::new(mem, dev.tx_regs(), 64).unwrap();
    dev.state().hold_tx = true;
    let (mut b, mut c) = (Burst::new(), QueueCounters::default());
    for s in 0..20 {
        let mut pk = p.alloc().unwrap();
        pk.extend_from_slice(&frame(s)).unwrap();
        b.push(pk).unwrap();
    }
    assert_eq!(ring.tx_burst(&mut b, &mut c), 20);
    assert_eq!(ring.in_flight(), 20);
    device_reset(&dev);
    // SAFETY: the fake queue is disabled (device_reset): it reads nothing more.
    let lost = unsafe { ring.discard_in_flight() };
    assert_eq!(
        lost, 20,
        "the packets whose completion was never seen are counted"
    );
    assert_eq!(ring.in_flight(), 0);
    assert!(leak_free(&p), "the in-flight packets are back in the pool");
    // Set up again: TDH = TDT = 0, enabled; sending goes on from descriptor 0.
    {
        let mut st = dev.state();
        st.disabled = false;
        st.hold_tx = false;
    }
    for s in 50..54 {
        let mut pk = p.alloc().unwrap();
        pk.extend_from_slice(&frame(s)).unwrap();
        b.push(pk).unwrap();
    }
    assert_eq!(ring.tx_burst(&mut b, &mut c), 4);
    let st = dev.state();
    let sent: Vec<u32> = st
        .sent
        .iter()
        .map(|f| u32::from_be_bytes(f.data[14..18].try_into().unwrap()))
        .collect();
    assert_eq!(sent, [50, 51, 52, 53], "only the packets sent after the reset");
    assert_eq!(st.head, 4);
    assert!(st.violations.is_empty(), "{:?}", st.violations);
    drop(st);
    drop(ring);
    assert!(leak_free(&p));
}
