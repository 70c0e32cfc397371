//! l2fwd between an `xdp:` port on a kernel-driven interface of the test VM and an igb port our
//! driver owns through VFIO, sharing one chunk-aligned pool (mapped for the igb port's IOMMU
//! domain and registered as the UMEM): igb TX → link → the kernel driver → XDP → AF_XDP RX →
//! forwarded (MACs swapped) from the same buffer → AF_XDP TX → the kernel driver → link → igb
//! RX. Every frame must come back byte-exact, none lost, at a moderate rate (a window of 32 in
//! flight).
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use oxpmd_dma::{Mempool, MempoolConfig};
use oxpmd_pmd::{Burst, MacAddr, Port, PortConfig, RxQueue, TxQueue};

use super::vm_kernel_peer::*;

/// Marker after the UDP header: tells our frames from the kernel's own traffic.
const MAGIC: [u8; 4] = *b"OXDP";

/// Test frame `seq`: IPv4/UDP from 10.80.x.y (one source address per flow, so the NIC's RSS
/// spreads the flows over its queues), `len` bytes.
pub fn frame(dst: MacAddr, src: MacAddr, seq: u32, flows: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = (len - 14) as u16;
    let flow = seq % flows;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&[10, 80, (flow >> 8) as u8, flow as u8]);
    ip[16..20].copy_from_slice(&[10, 81, 0, 1]);
    let c = csum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&(1024 + flow as u16).to_be_bytes());
    f[36..38].copy_from_slice(&9000u16.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
    f[42..46].copy_from_slice(&MAGIC);
    f[46..50].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[50..].iter_mut().enumerate() {
        *b = (i as u32 ^ seq.wrapping_mul(2654435761)) as u8;
    }
    f
}

fn seq_of(d: &[u8]) -> Option<u32> {
    (d.len() >= 50 && d[12..14] == [0x08, 0x00] && d[42..46] == MAGIC)
        .then(|| u32::from_be_bytes(d[46..50].try_into().unwrap()))
}

fn len_of(seq: u32) -> usize {
    64 + (seq as usize * 37) % (1514 - 64)
}

/// Runs the l2fwd check between our igb port `ours` and the kernel interface `kernel` gives
/// (called once our port holds its device, so a kernel driver loaded then leaves it alone).
pub fn l2fwd(ours: &str, kernel: impl FnOnce() -> String, pool_size: usize) {
    const N: u32 = 3000;
    const FLOWS: u32 = 64;
    const WINDOW: u32 = 32;
    let mut igb = Port::open(ours, 0).unwrap_or_else(|e| panic!("open {ours}: {e}"));
    let map = igb.dma_map().expect("igb has a DMA map");
    // One pool for both ports: the UMEM of the xdp: port, reachable by the igb port's DMA.
    // 4096-byte chunks: igb receives into whole KiB and needs a data room of 2048 at least.
    let pool = Mempool::new(
        &MempoolConfig {
            cache_size: 64,
            headroom: 128,
            data_room: 2048,
            chunk_aligned: true,
            ..MempoolConfig::new("vm_xdp", pool_size)
        },
        map,
    )
    .unwrap();
    assert_eq!(pool.element_size(), 4096);
    igb.configure(&PortConfig::new(pool.clone()).ring_sizes(256, 256))
        .unwrap();
    igb.set_promiscuous(true).unwrap();
    igb.start().unwrap();

    let iface = &kernel();
    run("ip", &["link", "set", "dev", iface, "up"]);
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{iface}/disable_ipv6"), "1");
    let spec = format!("xdp:{iface}");
    let mut xdp = Port::open(&spec, 1).unwrap_or_else(|e| panic!("open {spec}: {e}"));
    let queues = xdp.info().max_rx_queues;
    xdp.configure(
        &PortConfig::new(pool.clone())
            .queues(queues, queues)
            .ring_sizes(256, 256),
    )
    .unwrap_or_else(|e| panic!("configure {spec}: {e}"));
    xdp.start().unwrap();
    println!("{spec}: driver {}, {queues} queues", xdp.info().driver);
    igb.wait_link_up(Duration::from_secs(30)).unwrap();
    wait_carrier(iface);
    xdp.wait_link_up(Duration::from_secs(30)).unwrap();
    println!("{spec}: link {}", xdp.link_status().unwrap());

    let (igb_mac, xdp_mac) = (igb.mac_addr(), xdp.mac_addr());
    let (mut irxs, mut itxs) = igb.take_queues().unwrap();
    let (mut xrx, mut xtx) = xdp.take_queues().unwrap();
    let (irx, itx): (&mut RxQueue, &mut TxQueue) = (&mut irxs[0], &mut itxs[0]);

    let mut per_queue = vec![0u64; queues as usize];
    let mut back: HashMap<u32, ()> = HashMap::new();
    let (mut sent, mut b_in, mut b_fwd, mut b_out) = (0u32, Burst::new(), Burst::new(), Burst::new());
    let t = Instant::now();
    let mut last_progress = Instant::now();
    // Probes first, one every 100 ms, until one makes the round trip: attaching native XDP
    // restarts the kernel driver's queues, and its link can be reported up a moment before
    // they carry frames. Probes are not counted.
    const PROBE: u32 = 1 << 31;
    let (mut ready, mut probes, mut last_probe) = (false, 0u32, None::<Instant>);
    while !ready || back.len() < N as usize {
        if !ready {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no probe made the round trip in 30 s ({probes} sent)"
            );
            if last_probe.is_none_or(|l| l.elapsed() >= Duration::from_millis(100)) {
                let mut p = pool.alloc().expect("a buffer");
                p.extend_from_slice(&frame(xdp_mac, igb_mac, PROBE + probes, FLOWS, 64))
                    .unwrap();
                b_out.push(p).unwrap();
                probes += 1;
                last_probe = Some(Instant::now());
            }
        } else {
            if last_progress.elapsed() >= Duration::from_secs(10) {
                let missing: Vec<u32> = (0..sent).filter(|s| !back.contains_key(s)).collect();
                panic!(
                    "no progress for 10 s: sent {sent}, back {}; missing {} (first: {:?}); xdp stats {:?}",
                    back.len(),
                    missing.len(),
                    &missing[..missing.len().min(16)],
                    xdp.stats().ok()
                );
            }
            // Keep at most WINDOW frames in flight.
            while sent < N && sent - (back.len() as u32) < WINDOW && b_out.room() > 0 {
                let mut p = pool.alloc().expect("a buffer");
                p.extend_from_slice(&frame(xdp_mac, igb_mac, sent, FLOWS, len_of(sent)))
                    .unwrap();
                b_out.push(p).unwrap();
                sent += 1;
            }
        }
        while !b_out.is_empty() {
            itx.tx_burst(&mut b_out);
        }
        // The xdp: port forwards what it receives, MACs swapped, from the same buffer.
        for (q, rx) in xrx.iter_mut().enumerate() {
            rx.rx_burst(&mut b_in);
            for mut p in b_in.drain() {
                let Some(seq) = seq_of(p.data()) else { continue };
                assert!(pool.owns(&p), "received into the UMEM without a copy");
                if seq < PROBE {
                    per_queue[q] += 1;
                }
                let d = p.data_mut();
                let (dst, src) = d.split_at_mut(6);
                dst.swap_with_slice(&mut src[..6]);
                b_fwd.push(p).unwrap();
            }
            while !b_fwd.is_empty() {
                xtx[0].tx_burst(&mut b_fwd);
            }
        }
        for tx in xtx.iter_mut() {
            tx.reclaim();
        }
        itx.reclaim();
        irx.rx_burst(&mut b_in);
        for p in b_in.drain() {
            let Some(seq) = seq_of(p.data()) else { continue };
            if seq >= PROBE {
                if !ready {
                    println!(
                        "probe {} made the round trip after {:.1} s",
                        seq - PROBE,
                        t.elapsed().as_secs_f64()
                    );
                    ready = true;
                    last_progress = Instant::now();
                }
                continue;
            }
            let mut want = frame(igb_mac, xdp_mac, seq, FLOWS, len_of(seq));
            want[0..6].copy_from_slice(&igb_mac.0);
            assert_eq!(p.data(), &want[..], "frame {seq} came back changed");
            assert!(back.insert(seq, ()).is_none(), "frame {seq} came back twice");
            last_progress = Instant::now();
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let xs = xdp.stats().unwrap();
    println!(
        "vm_xdp l2fwd: {N} frames igb -> {spec} -> igb, all back byte-exact, in {secs:.1} s; per \
         xdp RX queue: {per_queue:?}; xdp stats: ipackets {} opackets {} imissed {}",
        xs.ipackets, xs.opackets, xs.imissed
    );
    let mut x = Vec::new();
    if let Ok(v) = xdp.xstats() {
        x = v;
    }
    for s in x.iter().filter(|s| s.value != 0) {
        println!("  {} = {}", s.name, s.value);
    }
    drop((irxs, itxs, xrx, xtx));
    drop(xdp);
    drop(igb);
    oxpmd_dma::flush_thread_caches();
    assert_eq!(pool.available(), pool.capacity(), "every buffer back in the pool");
}
