//! TCP segmentation offload (VIRTIO_NET_F_HOST_TSO4 / 6) on the TX queue against the fake
//! device: the GSO fields of the header, and the refusals.

use oxpmd_dma::{ChainBuilder, Mempool, OffloadFlags, Packet};

use super::fake::{Dev, FakeBell, Kind, packet, tx_queue};
use crate::burst::Burst;
use crate::drivers::virtio::regs::nethdr;
use crate::stats::QueueCounters;
use crate::vport::virtual_pool;

both_kinds!(
    tso_packets_carry_the_gso_header_of_their_family,
    tso_packets_the_device_cannot_segment_are_refused_and_counted,
);

/// Ethernet + IPv4 (or IPv6) + a 20-byte TCP header, the IP lengths those of `payload` bytes.
fn tcp_headers(v6: bool, payload: usize) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    if v6 {
        f.extend_from_slice(&[0x86, 0xDD, 0x60, 0, 0, 0]);
        f.extend_from_slice(&((20 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[6, 64]);
        f.extend_from_slice(&[0xfd; 32]);
    } else {
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&((40 + payload) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    }
    f.extend_from_slice(&[
        0x1c, 0x20, 0x15, 0x18, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f
}

/// A TSO packet: the headers in a segment of their own, then `payload` bytes in 2000-byte
/// segments.
fn tso_packet(pool: &Mempool, v6: bool, payload: usize, mss: u16) -> Packet {
    let mut b = ChainBuilder::new();
    b.push(packet(pool, &tcp_headers(v6, payload))).unwrap();
    let data: Vec<u8> = (0..payload).map(|i| i as u8).collect();
    for part in data.chunks(2000) {
        b.push(packet(pool, part)).unwrap();
    }
    let mut p = b.take().unwrap();
    p.set_flags(OffloadFlags::TX_TCP_SEG | OffloadFlags::TX_TCP_CKSUM | OffloadFlags::TX_IP_CKSUM);
    p.set_tso_segsz(mss);
    p
}

fn le16(h: &[u8; 12], at: usize) -> u16 {
    u16::from_le_bytes([h[at], h[at + 1]])
}

fn tso_packets_carry_the_gso_header_of_their_family<K: Kind>() {
    let pool = virtual_pool("vio-tso", 64, 0).unwrap();
    let bell = FakeBell::default();
    let mut q = tx_queue::<K>(64, &bell, true).with_tso(true, true);
    let mut dev = K::dev(q.ring());
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    burst.push(tso_packet(&pool, false, 20_000, 1448)).unwrap();
    burst.push(tso_packet(&pool, true, 20_000, 1428)).unwrap();
    assert_eq!(q.tx_burst(&mut burst, &mut c), 2);
    assert_eq!(c.ierrors, 0);
    let sent = dev.transmit();
    assert_eq!(sent.len(), 2);
    for ((h, f), (v6, mss, hdrs)) in sent.iter().zip([(false, 1448u16, 54u16), (true, 1428, 74)]) {
        assert_eq!(h[nethdr::FLAGS], nethdr::F_NEEDS_CSUM);
        let gso = if v6 { nethdr::GSO_TCPV6 } else { nethdr::GSO_TCPV4 };
        assert_eq!(h[nethdr::GSO_TYPE], gso);
        assert_eq!(le16(h, nethdr::HDR_LEN), hdrs, "headers up to the TCP payload");
        assert_eq!(le16(h, nethdr::GSO_SIZE), mss);
        assert_eq!(le16(h, nethdr::CSUM_START), hdrs - 20, "the TCP header");
        assert_eq!(le16(h, nethdr::CSUM_OFFSET), 16, "TCP's checksum field");
        assert_eq!(
            f.len(),
            usize::from(hdrs) + 20_000,
            "the whole packet, for the device to cut"
        );
        let at = usize::from(hdrs) - 20 + 16;
        assert_eq!(
            u16::from_be_bytes([f[at], f[at + 1]]),
            20 + 20_000,
            "the pseudo-header sum (0 here) gains the TCP length, as virtio's GSO wants"
        );
    }
}

fn tso_packets_the_device_cannot_segment_are_refused_and_counted<K: Kind>() {
    let pool = virtual_pool("vio-tso-no", 64, 0).unwrap();
    let bell = FakeBell::default();
    let mut c = QueueCounters::default();
    let mut burst = Burst::new();
    // No HOST_TSO negotiated (the test VM's devices: QEMU offers it only with a vnet-header
    // peer): every TSO packet is refused.
    let mut q = tx_queue::<K>(64, &bell, true);
    let mut dev = K::dev(q.ring());
    burst.push(tso_packet(&pool, false, 5000, 1448)).unwrap();
    q.tx_burst(&mut burst, &mut c);
    assert!(burst.is_empty(), "a refused packet is taken (and freed)");
    assert_eq!((c.packets, c.ierrors), (0, 1));
    assert!(dev.transmit().is_empty());
    // HOST_TSO4 only: IPv6 refused, IPv4 taken.
    let mut q = tx_queue::<K>(64, &bell, true).with_tso(true, false);
    let mut dev = K::dev(q.ring());
    burst.push(tso_packet(&pool, true, 5000, 1428)).unwrap();
    burst.push(tso_packet(&pool, false, 5000, 1448)).unwrap();
    q.tx_burst(&mut burst, &mut c);
    assert_eq!((c.packets, c.ierrors), (1, 2));
    assert_eq!(dev.transmit()[0].0[nethdr::GSO_TYPE], nethdr::GSO_TCPV4);
    q.cleanup();
    // No checksum offload: no segmentation either (it needs NET_CSUM).
    let mut q = tx_queue::<K>(64, &bell, false).with_tso(true, true);
    burst.push(tso_packet(&pool, false, 5000, 1448)).unwrap();
    q.tx_burst(&mut burst, &mut c);
    assert_eq!((c.packets, c.ierrors), (1, 3));
    // An MSS of 0, a payload beyond 64 KiB, headers that are not TCP: refused.
    let mut q = tx_queue::<K>(128, &bell, true).with_tso(true, true);
    burst.push(tso_packet(&pool, false, 5000, 0)).unwrap();
    burst.push(tso_packet(&pool, false, 64 * 1024, 1448)).unwrap();
    let mut udp = tso_packet(&pool, false, 3000, 1448);
    udp.data_mut()[23] = 17;
    burst.push(udp).unwrap();
    q.tx_burst(&mut burst, &mut c);
    assert_eq!((c.packets, c.ierrors), (1, 6));
    assert!(burst.is_empty());
    drop(q);
    oxpmd_dma::flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity(), "every refused packet freed");
}
