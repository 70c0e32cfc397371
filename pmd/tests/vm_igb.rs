//! vm-topology: pair
//!
//! The igb PF driver against QEMU's emulated 82576 pair (OXPMD_PORT0 <-> OXPMD_PORT1) in the test
//! VM: link, MAC, exact delivery both ways, statistics, RSS, checksum offloads, promiscuous mode,
//! teardown. Run with `cargo xtask vm test -p oxpmd-pmd vm_igb`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use oxpmd_dma::{DmaMap, Mempool, MempoolConfig, OffloadFlags, Packet};
use oxpmd_pmd::drivers::igb::{IgbDriver, IgbStatsReader};
use oxpmd_pmd::rss::RssHash;
use oxpmd_pmd::{Burst, MacAddr, OpenOptions, Port, PortConfig, RxQueue, TxQueue};
use oxpmd_vfio::PciAddress;

/// Guard against a hang only (never a speed assertion): how long to wait for frames.
const DEADLINE: Duration = Duration::from_secs(60);
const RING: usize = 512;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run in the test VM"))
}

fn addr(n: usize) -> PciAddress {
    PciAddress::parse(&env(&format!("OXPMD_PORT{n}"))).unwrap()
}

struct Opened {
    port: Port,
    stats: IgbStatsReader,
    restarted: Instant,
}

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Debug
    }
    fn log(&self, r: &log::Record<'_>) {
        eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
    }
    fn flush(&self) {}
}

fn open(n: usize) -> Opened {
    if log::set_logger(&StderrLogger).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
    let drv = IgbDriver::open(
        addr(n),
        &OpenOptions {
            port_id: n as u16,
            ..OpenOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("open port {n}: {e}"));
    let stats = drv.stats_reader();
    let restarted = drv.link_restarted_at();
    Opened {
        port: Port::with_driver(Box::new(drv), n as u16),
        stats,
        restarted,
    }
}

fn pool_for(port: &Port, name: &str, n: usize) -> Mempool {
    let map: Arc<dyn DmaMap> = port.dma_map().expect("igb has a DMA map");
    Mempool::new(
        &MempoolConfig {
            cache_size: 64,
            ..MempoolConfig::new(name, n)
        },
        map,
    )
    .expect("mempool")
}

fn checksum(data: &[u8], init: u32) -> u16 {
    let mut sum = init;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 + UDP frame of `len` bytes (>= 60) carrying `seq`, with correct checksums.
fn udp_frame(dst: MacAddr, src: MacAddr, sport: u16, seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (len - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 0, 0, 1]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 2]);
    let c = checksum(ip, 0);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let udp_len = ip_len - 20;
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&9000u16.to_be_bytes());
    f[38..40].copy_from_slice(&udp_len.to_be_bytes());
    f[42..46].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[46..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    let c = udp_checksum(&f);
    f[40..42].copy_from_slice(&c.to_be_bytes());
    f
}

fn udp_checksum(f: &[u8]) -> u16 {
    let udp_len = u16::from_be_bytes([f[38], f[39]]);
    let mut pseudo = 0u32;
    for w in [
        u16::from_be_bytes([f[26], f[27]]),
        u16::from_be_bytes([f[28], f[29]]),
        u16::from_be_bytes([f[30], f[31]]),
        u16::from_be_bytes([f[32], f[33]]),
        17,
        udp_len,
    ] {
        pseudo += u32::from(w);
    }
    let mut seg = f[34..34 + usize::from(udp_len)].to_vec();
    seg[6] = 0;
    seg[7] = 0;
    match checksum(&seg, pseudo) {
        0 => 0xFFFF,
        c => c,
    }
}

fn seq_of(d: &[u8]) -> u32 {
    u32::from_be_bytes([d[42], d[43], d[44], d[45]])
}

fn packet(pool: &Mempool, bytes: &[u8]) -> Packet {
    let mut p = pool.alloc().expect("pool has a buffer");
    p.extend_from_slice(bytes).unwrap();
    p
}

/// Sends every frame (bursts of 32), retrying what the ring did not take. With `window`, never
/// more than `window.1` frames ahead of the receiver's count `window.0` (so that a receiver slowed
/// down by the emulation never finds its ring overrun: delivery must then be exact).
fn send_paced(
    tx: &mut TxQueue,
    pool: &Mempool,
    frames: &[Vec<u8>],
    flags: OffloadFlags,
    window: Option<(&AtomicUsize, usize)>,
) {
    let mut burst = Burst::new();
    let t = Instant::now();
    for (c, chunk) in frames.chunks(32).enumerate() {
        if let Some((done, ahead)) = window {
            while c * 32 > done.load(Ordering::Acquire) + ahead && t.elapsed() < DEADLINE {
                std::thread::yield_now();
            }
        }
        for f in chunk {
            let mut p = packet(pool, f);
            p.set_flags(flags);
            burst.push(p).unwrap();
        }
        while !burst.is_empty() {
            tx.tx_burst(&mut burst);
            assert!(t.elapsed() < DEADLINE, "TX ring never drained");
            if !burst.is_empty() {
                tx.reclaim();
                std::thread::yield_now();
            }
        }
    }
}

fn send_all(tx: &mut TxQueue, pool: &Mempool, frames: &[Vec<u8>], flags: OffloadFlags) {
    send_paced(tx, pool, frames, flags, None);
}

/// Receives until `n` packets arrived on `rxs` (or the hang guard fires), publishing the count.
fn receive_counting(rxs: &mut [RxQueue], n: usize, done: &AtomicUsize) -> Vec<Packet> {
    let mut got = Vec::new();
    let mut burst = Burst::new();
    let t = Instant::now();
    while got.len() < n && t.elapsed() < DEADLINE {
        let mut any = false;
        for q in rxs.iter_mut() {
            if q.rx_burst(&mut burst) > 0 {
                any = true;
                got.extend(burst.drain());
            }
        }
        done.store(got.len(), Ordering::Release);
        if !any {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // Anything extra (duplicates) that is already there.
    std::thread::sleep(Duration::from_millis(200));
    for q in rxs.iter_mut() {
        while q.rx_burst(&mut burst) > 0 {
            got.extend(burst.drain());
        }
    }
    got
}

fn receive(rxs: &mut [RxQueue], n: usize) -> Vec<Packet> {
    receive_counting(rxs, n, &AtomicUsize::new(0))
}

/// Sends `frames` while another thread receives them on `rxs`, at most half an RX ring ahead.
fn send_and_receive(
    tx: &mut TxQueue,
    rxs: &mut [RxQueue],
    pool: &Mempool,
    frames: &[Vec<u8>],
    flags: OffloadFlags,
) -> Vec<Packet> {
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let h = s.spawn(|| receive_counting(rxs, frames.len(), &done));
        send_paced(tx, pool, frames, flags, Some((&done, RING / 2)));
        h.join().expect("receiver thread")
    })
}

fn pool_full(p: &Mempool) -> bool {
    oxpmd_dma::flush_thread_caches();
    p.available() == p.capacity()
}

fn bus_master_on(a: PciAddress) -> bool {
    let cfg = std::fs::read(format!("/sys/bus/pci/devices/{a}/config")).expect("config space");
    u16::from_le_bytes([cfg[4], cfg[5]]) & 0x4 != 0
}

struct Pair {
    a: Opened,
    b: Opened,
    pool: Mempool,
}

/// Opens both ports, one pool from port 0's DMA map, `rxq_b` RX queues on port 1, started, link up.
fn pair(rxq_b: u16) -> Pair {
    pair_with(|c| c.queues(rxq_b, 1))
}

/// [`pair`] with port 1's configuration (ring sizes set) changed by `b_config`.
fn pair_with(b_config: impl FnOnce(PortConfig) -> PortConfig) -> Pair {
    let mut a = open(0);
    let mut b = open(1);
    let pool = pool_for(&a.port, "vm_igb", 8192);
    a.port
        .configure(&PortConfig::new(pool.clone()).ring_sizes(RING, RING))
        .unwrap();
    b.port
        .configure(&b_config(PortConfig::new(pool.clone()).ring_sizes(RING, RING)))
        .unwrap();
    a.port.start().unwrap();
    b.port.start().unwrap();
    for (n, o) in [(0, &mut a), (1, &mut b)] {
        let l = o.port.wait_link_up(Duration::from_secs(30)).unwrap();
        println!(
            "port {n} {}: link {l} {:.3} s after autonegotiation restart",
            o.port.name(),
            o.restarted.elapsed().as_secs_f64()
        );
    }
    Pair { a, b, pool }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn link_comes_up_with_the_mac_qemu_gave() {
    for n in 0..2 {
        let mut o = open(n);
        let t = Instant::now();
        let l = o.port.wait_link_up(Duration::from_secs(30)).unwrap();
        let since_restart = o.restarted.elapsed();
        println!(
            "link-up time port {n}: {:.3} s after open returned, {:.3} s after autonegotiation restart ({l})",
            t.elapsed().as_secs_f64(),
            since_restart.as_secs_f64()
        );
        assert!(l.up && l.full_duplex && l.speed_mbps == 1000, "{l:?}");
        let want: MacAddr = env(&format!("OXPMD_PORT{n}_MAC")).parse().unwrap();
        assert_eq!(o.port.mac_addr(), want);
        assert_eq!(o.port.info().driver, "igb");
    }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn exact_delivery_both_ways_with_checksum_flags_and_stats() {
    let mut p = pair(1);
    let (mut arx, mut atx) = p.a.port.take_queues().unwrap();
    let (mut brx, mut btx) = p.b.port.take_queues().unwrap();
    const N: usize = 2000;
    for (dir, (tx, rx, dst, src)) in [
        (
            "0->1",
            (&mut atx[0], &mut brx, p.b.port.mac_addr(), p.a.port.mac_addr()),
        ),
        (
            "1->0",
            (&mut btx[0], &mut arx, p.a.port.mac_addr(), p.b.port.mac_addr()),
        ),
    ] {
        let frames: Vec<Vec<u8>> = (0..N)
            .map(|i| udp_frame(dst, src, 1000 + (i % 7) as u16, i as u32, 60 + (i * 37) % 1455))
            .collect();
        let t = Instant::now();
        let got = send_and_receive(tx, rx, &p.pool, &frames, OffloadFlags::EMPTY);
        let secs = t.elapsed().as_secs_f64();
        println!("{dir}: {} of {N} frames in {secs:.3} s", got.len());
        assert_eq!(got.len(), N, "{dir}: exactly N frames");
        for (i, pkt) in got.iter().enumerate() {
            assert_eq!(seq_of(pkt.data()), i as u32, "{dir}: in order, no duplicate");
            assert_eq!(pkt.data(), &frames[i][..], "{dir}: frame {i} unchanged");
            let f = pkt.flags();
            assert!(
                f.contains(OffloadFlags::RX_IP_CKSUM_GOOD) && f.contains(OffloadFlags::RX_L4_CKSUM_GOOD),
                "{dir}: frame {i} checksum flags {f:?}"
            );
            assert!(f.contains(OffloadFlags::RX_RSS_HASH), "{dir}: RSS hash reported");
        }
    }
    // Device counters agree with the queue counters, and with each other.
    let sa = p.a.port.stats().unwrap();
    let sb = p.b.port.stats().unwrap();
    let ha = p.a.stats.read().unwrap();
    let hb = p.b.stats.read().unwrap();
    println!("port 0: {sa:?}\n  hw {ha:?}\nport 1: {sb:?}\n  hw {hb:?}");
    assert_eq!((sa.opackets, sa.ipackets), (N as u64, N as u64));
    assert_eq!((sb.opackets, sb.ipackets), (N as u64, N as u64));
    assert_eq!(
        (ha.gptc, ha.gprc, hb.gptc, hb.gprc),
        (N as u64, N as u64, N as u64, N as u64)
    );
    assert_eq!(ha.gotc, hb.gorc, "octets sent by 0 = received by 1");
    assert_eq!(hb.gotc, ha.gorc);
    assert!(ha.gotc >= sa.obytes, "{} >= {}", ha.gotc, sa.obytes);
    assert_eq!((sa.imissed, sb.imissed, sa.ierrors, sb.ierrors), (0, 0, 0, 0));

    // Bad checksums are flagged bad; TX checksum offload repairs zeroed checksums.
    let (dst, src) = (p.b.port.mac_addr(), p.a.port.mac_addr());
    let mut bad = udp_frame(dst, src, 7, 1, 128);
    bad[24] ^= 0xFF; // IPv4 header checksum
    let mut bad_l4 = udp_frame(dst, src, 7, 2, 128);
    bad_l4[40] ^= 0xFF; // UDP checksum
    send_all(&mut atx[0], &p.pool, &[bad, bad_l4], OffloadFlags::EMPTY);
    let got = receive(&mut brx, 2);
    assert_eq!(got.len(), 2);
    assert!(
        got[0].flags().contains(OffloadFlags::RX_IP_CKSUM_BAD),
        "{:?}",
        got[0].flags()
    );
    assert!(got[1].flags().contains(OffloadFlags::RX_IP_CKSUM_GOOD));
    assert!(
        got[1].flags().contains(OffloadFlags::RX_L4_CKSUM_BAD),
        "{:?}",
        got[1].flags()
    );
    drop(got);
    let good = udp_frame(dst, src, 9, 3, 300);
    let mut zeroed = good.clone();
    zeroed[24] = 0;
    zeroed[25] = 0;
    zeroed[40] = 0;
    zeroed[41] = 0;
    send_all(
        &mut atx[0],
        &p.pool,
        &[zeroed],
        OffloadFlags::TX_IP_CKSUM | OffloadFlags::TX_UDP_CKSUM,
    );
    let got = receive(&mut brx, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data(), &good[..], "the device filled in both checksums");
    let f = got[0].flags();
    assert!(f.contains(OffloadFlags::RX_IP_CKSUM_GOOD) && f.contains(OffloadFlags::RX_L4_CKSUM_GOOD));
    drop(got);
    drop((arx, atx, brx, btx));
    drop(p.a);
    drop(p.b);
    assert!(
        pool_full(&p.pool),
        "every buffer back: {}/{}",
        p.pool.available(),
        p.pool.capacity()
    );
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn rss_spreads_flows_over_four_queues_as_the_table_says() {
    let mut p = pair(4);
    let (_arx, mut atx) = p.a.port.take_queues().unwrap();
    let (mut brx, _btx) = p.b.port.take_queues().unwrap();
    assert_eq!(brx.len(), 4);
    const N: usize = 512;
    let (dst, src) = (p.b.port.mac_addr(), p.a.port.mac_addr());
    // The key is random and the Toeplitz hash is linear in the input bits: flows whose ports differ
    // only in a few bits can, for an unlucky key, all share the low hash bits (seen once with ports
    // 2000..2511: only bit 11 decided the queue). Ports spread over all 16 bits (an odd multiplier is
    // a bijection, so they stay distinct) make that vanishingly unlikely.
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| udp_frame(dst, src, (i as u16).wrapping_mul(0x9E37) ^ 0x5A5A, i as u32, 64))
        .collect();
    let got = send_and_receive(&mut atx[0], &mut brx, &p.pool, &frames, OffloadFlags::EMPTY);
    assert_eq!(got.len(), N);
    let mut per_queue: HashMap<u16, usize> = HashMap::new();
    let mut seen = vec![false; N];
    for pkt in &got {
        assert!(pkt.flags().contains(OffloadFlags::RX_RSS_HASH));
        // Our redirection table maps entry i to queue i % 4; the entry is the hash's low 7 bits.
        assert_eq!(
            u32::from(pkt.queue()),
            (pkt.rss_hash() & 0x7F) % 4,
            "hash {:#x} on queue {}",
            pkt.rss_hash(),
            pkt.queue()
        );
        *per_queue.entry(pkt.queue()).or_default() += 1;
        let s = seq_of(pkt.data()) as usize;
        assert!(!seen[s], "duplicate {s}");
        seen[s] = true;
    }
    println!("RSS: frames per queue {per_queue:?}");
    assert_eq!(
        per_queue.len(),
        4,
        "512 flows reach all four queues: {per_queue:?}"
    );
    let distinct: std::collections::HashSet<u32> = got.iter().map(|p| p.rss_hash()).collect();
    assert!(distinct.len() > N / 2, "hashes differ per flow");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn unicast_filter_and_promiscuous_mode() {
    let mut p = pair(1);
    let (_arx, mut atx) = p.a.port.take_queues().unwrap();
    let (mut brx, _btx) = p.b.port.take_queues().unwrap();
    let src = p.a.port.mac_addr();
    let other = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    let frames: Vec<Vec<u8>> = (0..16).map(|i| udp_frame(other, src, 5, i, 64)).collect();
    send_all(&mut atx[0], &p.pool, &frames, OffloadFlags::EMPTY);
    std::thread::sleep(Duration::from_millis(500));
    let got = receive(&mut brx, 0);
    assert_eq!(got.len(), 0, "frames for another MAC are filtered out");
    p.b.port.set_promiscuous(true).unwrap();
    send_all(&mut atx[0], &p.pool, &frames, OffloadFlags::EMPTY);
    let got = receive(&mut brx, 16);
    assert_eq!(got.len(), 16, "promiscuous: every frame");
    p.b.port.set_promiscuous(false).unwrap();
    // Broadcast passes the filter.
    let bc = udp_frame(MacAddr([0xFF; 6]), src, 5, 99, 64);
    send_all(&mut atx[0], &p.pool, &[bc], OffloadFlags::EMPTY);
    assert_eq!(receive(&mut brx, 1).len(), 1);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn teardown_disables_bus_master_before_memory_goes_and_leaks_nothing() {
    let mut p = pair(2);
    let (arx, mut atx) = p.a.port.take_queues().unwrap();
    let (mut brx, btx) = p.b.port.take_queues().unwrap();
    let (dst, src) = (p.b.port.mac_addr(), p.a.port.mac_addr());
    let frames: Vec<Vec<u8>> = (0..300).map(|i| udp_frame(dst, src, i as u16, i, 64)).collect();
    let got = send_and_receive(&mut atx[0], &mut brx, &p.pool, &frames, OffloadFlags::EMPTY);
    assert_eq!(got.len(), 300);
    assert!(p.pool.in_use() > 0);
    assert!(bus_master_on(addr(0)) && bus_master_on(addr(1)));
    // Drop the ports while their queues are still alive: the device must be off already.
    drop(p.a);
    drop(p.b);
    assert!(!bus_master_on(addr(0)), "port 0: bus mastering off at port drop");
    assert!(!bus_master_on(addr(1)), "port 1: bus mastering off at port drop");
    assert!(!pool_full(&p.pool), "queues still hold their buffers");
    drop(got);
    drop((arx, atx, brx, btx));
    assert!(
        pool_full(&p.pool),
        "every buffer back after the queues: {}/{}",
        p.pool.available(),
        p.pool.capacity()
    );
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn frames_from_every_buffer_of_a_pool_arrive() {
    // QEMU's igb drops a TX buffer that crosses an IOMMU page: the pool's page-aware carving
    // must leave none that does, down to the last buffer of each 2 MiB page, with no copy in the
    // driver. Port 0 sends a full-size frame from every buffer of its own TX pool (RX on both
    // ports uses the other pool, so the test can hold all of this one).
    const PAGE: u64 = 2 << 20;
    const LEN: usize = 1514;
    let mut a = open(0);
    let mut b = open(1);
    let rx_pool = pool_for(&a.port, "vm_igb-rx", 4096);
    let tx_pool = pool_for(&a.port, "vm_igb-every-buffer", 3000);
    for o in [&mut a, &mut b] {
        o.port
            .configure(&PortConfig::new(rx_pool.clone()).ring_sizes(RING, RING))
            .unwrap();
        o.port.start().unwrap();
        o.port.wait_link_up(Duration::from_secs(30)).unwrap();
    }
    let (_arx, mut atx) = a.port.take_queues().unwrap();
    let (mut brx, _btx) = b.port.take_queues().unwrap();
    let (dst, src) = (b.port.mac_addr(), a.port.mac_addr());
    let mut all = Vec::new();
    while let Some(pk) = tx_pool.alloc() {
        all.push(pk);
    }
    assert_eq!(all.len(), tx_pool.capacity(), "every buffer of the TX pool held");
    all.sort_by_key(|pk| pk.buf_iova());
    let pages = (all.last().unwrap().buf_iova() - all[0].buf_iova()) / PAGE + 1;
    let mut last_of_page = 0;
    for (i, pk) in all.iter().enumerate() {
        let (start, end) = (pk.buf_iova(), pk.buf_iova() + pk.buffer_len() as u64 - 1);
        assert_eq!(
            start / PAGE,
            end / PAGE,
            "buffer {i} at {start:#x} crosses a 2 MiB page"
        );
        if all
            .get(i + 1)
            .is_none_or(|next| next.buf_iova() / PAGE != start / PAGE)
        {
            last_of_page += 1;
        }
    }
    assert_eq!(last_of_page as u64, pages, "one last buffer per page");
    let n = all.len();
    let frames: Vec<Vec<u8>> = (0..n).map(|i| udp_frame(dst, src, 4, i as u32, LEN)).collect();
    let got = std::thread::scope(|s| {
        let rx = s.spawn(|| receive(std::slice::from_mut(&mut brx[0]), n));
        let mut burst = Burst::new();
        let mut pkts = all.into_iter().zip(&frames);
        loop {
            while !burst.is_full() {
                let Some((mut pk, f)) = pkts.next() else { break };
                pk.extend_from_slice(f).unwrap();
                burst.push(pk).unwrap();
            }
            if burst.is_empty() {
                break;
            }
            atx[0].tx_burst(&mut burst);
            // Pace to what the emulated link drains, so no RX ring overflows.
            std::thread::sleep(Duration::from_micros(300));
        }
        rx.join().unwrap()
    });
    let mut seen = vec![0u32; n];
    for g in &got {
        let seq = seq_of(g.data()) as usize;
        assert!(seq < n, "unknown frame {seq}");
        assert_eq!(g.data(), &frames[seq][..], "frame {seq} intact");
        seen[seq] += 1;
    }
    let lost: Vec<usize> = (0..n).filter(|&i| seen[i] == 0).collect();
    println!(
        "sent one {LEN}-byte frame from each of {n} buffers over {pages} pages ({last_of_page} last \
         buffers of a page); received {}, lost {lost:?}",
        got.len()
    );
    assert!(lost.is_empty(), "frames lost from buffers {lost:?}");
    assert!(seen.iter().all(|&c| c == 1), "each frame once");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn rx_data_rooms_the_device_would_use_in_part_are_refused_and_the_others_receive_every_size() {
    // SRRCTL.BSIZEPKT counts whole KiB: a data room of 1518 or 1600 would become a 1 KiB buffer
    // (frames over 1024 bytes dropped); 2048 and 3000 become 2 KiB, never more than the buffer.
    let mut a = open(0);
    let mut b = open(1);
    let tx_pool = pool_for(&a.port, "vm_igb-srrctl-tx", 2048);
    a.port
        .configure(&PortConfig::new(tx_pool.clone()).ring_sizes(RING, RING))
        .unwrap();
    a.port.start().unwrap();
    for room in [1518, 1600] {
        let map: Arc<dyn DmaMap> = b.port.dma_map().unwrap();
        let pool = Mempool::new(
            &MempoolConfig {
                data_room: room,
                ..MempoolConfig::new(format!("room-{room}"), 1024)
            },
            map,
        )
        .unwrap();
        let e = b
            .port
            .configure(&PortConfig::new(pool).ring_sizes(RING, RING))
            .unwrap_err()
            .to_string();
        println!("data room {room}: {e}");
        assert!(
            e.contains(&format!("data room of {room} bytes"))
                && e.contains("would use 1024")
                && e.contains("full frame of 1522")
                && e.contains("at least 2048"),
            "{e}"
        );
    }
    let (_arx, mut atx) = a.port.take_queues().unwrap();
    let (dst, src) = (b.port.mac_addr(), a.port.mac_addr());
    for room in [2048, 3000] {
        // A port is configured once: a fresh open (device reset) for each data room.
        drop(b);
        b = open(1);
        let map: Arc<dyn DmaMap> = b.port.dma_map().unwrap();
        let pool = Mempool::new(
            &MempoolConfig {
                data_room: room,
                cache_size: 64,
                ..MempoolConfig::new(format!("room-{room}"), 2048)
            },
            map,
        )
        .unwrap();
        b.port
            .configure(&PortConfig::new(pool.clone()).ring_sizes(RING, RING))
            .unwrap();
        b.port.start().unwrap();
        a.port.wait_link_up(Duration::from_secs(30)).unwrap();
        b.port.wait_link_up(Duration::from_secs(30)).unwrap();
        let (mut brx, _btx) = b.port.take_queues().unwrap();
        // Every frame length from the minimum to the maximum (60..=1514 bytes without the FCS).
        let frames: Vec<Vec<u8>> = (60..=1514usize)
            .map(|len| udp_frame(dst, src, 5, len as u32, len))
            .collect();
        let n = frames.len();
        let got = std::thread::scope(|s| {
            let rx = s.spawn(|| receive(std::slice::from_mut(&mut brx[0]), n));
            for chunk in frames.chunks(32) {
                send_all(&mut atx[0], &tx_pool, chunk, OffloadFlags::EMPTY);
                std::thread::sleep(Duration::from_micros(300));
            }
            rx.join().unwrap()
        });
        let mut seen = std::collections::BTreeMap::new();
        for g in &got {
            let len = seq_of(g.data()) as usize;
            assert_eq!(
                g.data(),
                &frames[len - 60][..],
                "data room {room}: frame of {len} bytes intact"
            );
            *seen.entry(len).or_insert(0) += 1;
        }
        let missing: Vec<usize> = (60..=1514).filter(|l| !seen.contains_key(l)).collect();
        println!(
            "data room {room}: {} of {n} frame sizes received, missing {missing:?}",
            got.len()
        );
        assert!(
            missing.is_empty(),
            "data room {room}: frame sizes lost {missing:?}"
        );
        assert!(
            seen.values().all(|&c| c == 1),
            "data room {room}: each frame once"
        );
        drop(got);
        drop(brx);
    }
}

/// The key of Microsoft's RSS verification suite, with its published results below.
const MS_RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0,
    0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42,
    0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// The Toeplitz hash of `input` under `key`, bit by bit (written here, independent of the driver
/// and of the device): for each set input bit, XOR in the 32 key bits starting at its position.
fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_bit = |i: usize| u32::from((key[i / 8] >> (7 - i % 8)) & 1);
    let mut h = 0u32;
    for (n, byte) in input.iter().enumerate() {
        for b in 0..8 {
            if (byte >> (7 - b)) & 1 == 1 {
                let pos = n * 8 + b;
                h ^= (0..32).fold(0u32, |w, j| (w << 1) | key_bit(pos + j));
            }
        }
    }
    h
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn rss_key_hash_types_and_reta_set_through_the_api_steer_as_programmed() {
    // The hash function itself, against the published vector (66.9.149.187:2794 ->
    // 161.142.100.80:1766): IPv4 only 0x323e8fc2, with the ports 0x51ccc178.
    let v = [66u8, 9, 149, 187, 161, 142, 100, 80, 0x0a, 0xea, 0x06, 0xe6];
    assert_eq!(toeplitz(&MS_RSS_KEY, &v[..8]), 0x323e_8fc2);
    assert_eq!(toeplitz(&MS_RSS_KEY, &v), 0x51cc_c178);

    let mut p = pair_with(|c| {
        c.queues(4, 1)
            .rss_key(&MS_RSS_KEY)
            .rss_hash(RssHash::IPV4 | RssHash::IPV4_UDP)
    });
    assert_eq!(p.b.port.rss_key().as_deref(), Some(&MS_RSS_KEY[..]));
    assert_eq!(p.b.port.rss_reta(), &oxpmd_pmd::rss::round_robin_reta(128, 4)[..]);
    // Not round-robin: entry i to queue ((i >> 3) ^ i) % 4.
    let reta: Vec<u16> = (0..128u16).map(|i| ((i >> 3) ^ i) % 4).collect();
    p.b.port.rss_reta_update(&reta).unwrap();
    assert_eq!(p.b.port.rss_reta(), &reta[..]);
    // Bad tables change nothing.
    assert!(p.b.port.rss_reta_update(&reta[..64]).is_err());
    let mut bad = reta.clone();
    bad[7] = 4;
    let e = p.b.port.rss_reta_update(&bad).unwrap_err().to_string();
    assert!(e.contains("entry 7 names RX queue 4"), "{e}");
    assert_eq!(p.b.port.rss_reta(), &reta[..]);

    let (_arx, mut atx) = p.a.port.take_queues().unwrap();
    let (mut brx, _btx) = p.b.port.take_queues().unwrap();
    let (dst, src) = (p.b.port.mac_addr(), p.a.port.mac_addr());
    const N: usize = 256;
    let sport = |i: usize| (i as u16).wrapping_mul(0x9E37) ^ 0x5A5A;
    let frames: Vec<Vec<u8>> = (0..N)
        .map(|i| udp_frame(dst, src, sport(i), i as u32, 64))
        .collect();
    let got = send_and_receive(&mut atx[0], &mut brx, &p.pool, &frames, OffloadFlags::EMPTY);
    assert_eq!(got.len(), N);
    let mut per_queue: HashMap<u16, usize> = HashMap::new();
    for pkt in &got {
        let s = seq_of(pkt.data()) as usize;
        // udp_frame: 10.0.0.1 -> 10.0.0.2, source port sport(s), destination port 9000.
        let mut input = vec![10, 0, 0, 1, 10, 0, 0, 2];
        input.extend_from_slice(&sport(s).to_be_bytes());
        input.extend_from_slice(&9000u16.to_be_bytes());
        let want = toeplitz(&MS_RSS_KEY, &input);
        assert!(pkt.flags().contains(OffloadFlags::RX_RSS_HASH));
        assert_eq!(
            pkt.rss_hash(),
            want,
            "frame {s}: the device's hash is Toeplitz(key, IPv4 + UDP ports)"
        );
        assert_eq!(
            pkt.queue(),
            reta[(want & 0x7F) as usize],
            "frame {s}: hash {want:#x} steered by entry {}",
            want & 0x7F
        );
        *per_queue.entry(pkt.queue()).or_default() += 1;
    }
    println!("RSS with the verification key and a custom RETA: frames per queue {per_queue:?}");
    assert_eq!(per_queue.len(), 4, "{per_queue:?}");
}
