//! The TX queue against the fake device.

use oxpmd_dma::{OffloadFlags, flush_thread_caches};

use super::fake::{Dev, FakeBell, Kind, frame, packet, tx_queue};
use crate::burst::Burst;
use crate::checksum::{complete_l4_checksum, ipv4_header_checksum};
use crate::drivers::virtio::regs::nethdr;
use crate::drivers::virtio::split::Virtqueue;
use crate::stats::QueueCounters;
use crate::vport::virtual_pool;

both_kinds!(
    tx_sends_a_chain_as_one_descriptor_chain,
    tx_sends_frames_unchanged_with_a_zero_header_and_frees_them,
    tx_keeps_what_does_not_fit_in_order_and_refuses_bad_lengths,
    tx_checksum_offload_fills_the_header_or_is_done_in_software,
    tx_without_headroom_uses_a_header_descriptor,
    tx_software_checksums_survive_a_full_ring,
);

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
