//! vm-topology: virtio
//!
//! The virtio-net driver against QEMU's modern virtio-net-pci (disable-legacy=on,
//! iommu_platform=on) in the test VM, through vfio-pci and the emulated Intel IOMMU. Its link
//! peer is an igb port driven by our igb driver. Run with
//! `cargo xtask vm test -p oxpmd-pmd vm_virtio`.
//!
//! Ports come from the environment: the virtio-net port (OXPMD_PORTn_MODEL = virtio-net) and its
//! peer (OXPMD_PORTn_PEER). Each port has its own mempool made with its own `dma_map()`: the igb
//! and virtio drivers keep separate VFIO containers (see docs/virtio.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxpmd_dma::{DmaMap, Mempool, MempoolConfig, Packet};
use oxpmd_pmd::drivers::virtio::regs::feature;
use oxpmd_pmd::drivers::virtio::{REQUIRED_FEATURES, VirtioDriver, VirtioOptions};
use oxpmd_pmd::{Burst, MacAddr, OpenOptions, Port, PortConfig, PortStats, RxQueue, TxQueue};
use oxpmd_vfio::PciAddress;

/// Guard against a hang only (never a speed assertion).
const DEADLINE: Duration = Duration::from_secs(120);
const RING: usize = 256;
const N: usize = 2000;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run in the test VM"))
}

/// (virtio port index, its peer's index).
fn ports() -> (usize, usize) {
    let n: usize = env("OXPMD_NUM_PORTS").parse().unwrap();
    let v = (0..n)
        .find(|i| env(&format!("OXPMD_PORT{i}_MODEL")) == "virtio-net")
        .expect("the topology has a virtio-net port");
    let peer: usize = env(&format!("OXPMD_PORT{v}_PEER")).parse().unwrap();
    (v, peer)
}

fn addr(n: usize) -> PciAddress {
    PciAddress::parse(&env(&format!("OXPMD_PORT{n}"))).unwrap()
}

fn qemu_mac(n: usize) -> MacAddr {
    env(&format!("OXPMD_PORT{n}_MAC")).parse().unwrap()
}

fn pool_for(port: &Port, name: &str, n: usize) -> Mempool {
    let map: Arc<dyn DmaMap> = port.dma_map().expect("a PCI port has a DMA map");
    Mempool::new(
        &MempoolConfig {
            cache_size: 64,
            ..MempoolConfig::new(name, n)
        },
        map,
    )
    .expect("mempool")
}

fn pool_full(p: &Mempool) -> bool {
    oxpmd_dma::flush_thread_caches();
    p.available() == p.capacity()
}

struct Side {
    port: Port,
    pool: Mempool,
    rx: RxQueue,
    tx: TxQueue,
}

/// Opens port `n` through the registry (PCI id -> driver), one queue pair, started.
fn bring_up(n: usize, name: &str) -> Side {
    let port = Port::open(&env(&format!("OXPMD_PORT{n}")), n as u16)
        .unwrap_or_else(|e| panic!("open port {n}: {e}"));
    start_port(port, n, name)
}

/// Configures and starts an opened port: one queue pair, a pool from its DMA map, link up.
fn start_port(mut port: Port, n: usize, name: &str) -> Side {
    let pool = pool_for(&port, name, 4096);
    port.configure(&PortConfig::new(pool.clone()).ring_sizes(RING, RING))
        .unwrap_or_else(|e| panic!("configure port {n}: {e}"));
    port.start().unwrap();
    port.wait_link_up(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("port {n} link: {e}"));
    let (mut rx, mut tx) = port.take_queues().unwrap();
    Side {
        port,
        pool,
        rx: rx.remove(0),
        tx: tx.remove(0),
    }
}

/// A frame of `len` bytes (>= 60) from `src` to `dst`, EtherType 0x88B5, carrying `seq` and a
/// pattern derived from it.
fn frame(dst: MacAddr, src: MacAddr, seq: u32, len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(7).wrapping_add(seq) as u8)
        .collect();
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x88B5u16.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

fn seq_of(d: &[u8]) -> u32 {
    u32::from_be_bytes([d[14], d[15], d[16], d[17]])
}

fn frames(dst: MacAddr, src: MacAddr, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| frame(dst, src, i as u32, 60 + (i * 53) % 1455))
        .collect()
}

fn packet(pool: &Mempool, bytes: &[u8]) -> Packet {
    let mut p = pool.alloc().expect("pool has a buffer");
    p.extend_from_slice(bytes).unwrap();
    p
}

/// Pushes every packet of `burst` into `tx`, reclaiming while the ring is full.
fn flush(tx: &mut TxQueue, burst: &mut Burst, t: Instant) {
    while !burst.is_empty() {
        tx.tx_burst(burst);
        assert!(t.elapsed() < DEADLINE, "TX ring never drained");
        if !burst.is_empty() {
            tx.reclaim();
            std::thread::yield_now();
        }
    }
}

/// Sends `frames` on `from` while receiving on `to` (at most `RING / 2` ahead), in one thread;
/// returns the received packets.
fn send_receive(from: &mut Side, to: &mut Side, frames: &[Vec<u8>]) -> Vec<Packet> {
    let mut got: Vec<Packet> = Vec::new();
    let mut burst = Burst::new();
    let mut rxb = Burst::new();
    let t = Instant::now();
    let mut next = 0;
    while got.len() < frames.len() && t.elapsed() < DEADLINE {
        while next < frames.len() && next < got.len() + RING / 2 && !burst.is_full() {
            burst.push(packet(&from.pool, &frames[next])).unwrap();
            next += 1;
        }
        flush(&mut from.tx, &mut burst, t);
        if to.rx.rx_burst(&mut rxb) > 0 {
            got.extend(rxb.drain());
        } else {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    // Late duplicates, if any.
    std::thread::sleep(Duration::from_millis(200));
    while to.rx.rx_burst(&mut rxb) > 0 {
        got.extend(rxb.drain());
    }
    got
}

/// Every frame arrived once, unchanged, in order.
fn check_exact(got: &[Packet], sent: &[Vec<u8>], what: &str) {
    if got.len() != sent.len() {
        let seqs: std::collections::BTreeSet<u32> = got.iter().map(|p| seq_of(p.data())).collect();
        let missing: Vec<u32> = (0..sent.len() as u32)
            .filter(|s| !seqs.contains(s))
            .take(20)
            .collect();
        println!(
            "{what}: missing (first 20) {missing:?}, {} distinct received",
            seqs.len()
        );
    }
    assert_eq!(
        got.len(),
        sent.len(),
        "{what}: {} of {} frames arrived",
        got.len(),
        sent.len()
    );
    for (i, (p, f)) in got.iter().zip(sent).enumerate() {
        assert_eq!(seq_of(p.data()), i as u32, "{what}: frame {i} out of order");
        assert_eq!(p.data(), &f[..], "{what}: frame {i} changed");
    }
}

fn bytes(frames: &[Vec<u8>]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}

/// Prints a figure and appends it to `$OXPMD_VM_RUN_DIR/vm_virtio-figures.txt` (kept on the host
/// under target/testvm/runs/, since libtest hides the output of passing tests).
fn report(line: &str) {
    println!("{line}");
    if let Ok(dir) = std::env::var("OXPMD_VM_RUN_DIR") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{dir}/vm_virtio-figures.txt"))
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn stats(s: &mut Side) -> PortStats {
    s.port.stats().unwrap()
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn opens_negotiates_and_reads_the_mac() {
    let (v, _) = ports();
    let drv = VirtioDriver::open(
        addr(v),
        &OpenOptions {
            port_id: v as u16,
            ..OpenOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("open virtio port {v}: {e}"));
    let f = drv.features();
    println!(
        "virtio port {v}: features {f:#x}, capabilities {:?}",
        drv.capabilities()
    );
    assert_eq!(f & REQUIRED_FEATURES, REQUIRED_FEATURES);
    assert_ne!(f & feature::NET_MAC, 0, "QEMU offers the MAC");
    assert_eq!(f & feature::RING_PACKED, 0, "split rings only");
    let st = drv.device_status().unwrap();
    assert_eq!(
        st & 0x0B,
        0x0B,
        "ACKNOWLEDGE | DRIVER | FEATURES_OK, status {st:#x}"
    );
    let mut port = Port::with_driver(Box::new(drv), v as u16);
    assert_eq!(port.mac_addr(), qemu_mac(v), "MAC from the device configuration");
    assert_eq!(port.info().driver, "virtio-net");
    assert!(port.link_status().unwrap().up);
    assert_ne!(f & feature::NET_CTRL_VQ, 0, "QEMU offers the control queue");
    assert_ne!(f & feature::NET_CTRL_RX, 0);
    // Before start the modes are recorded (sent at DRIVER_OK).
    port.set_promiscuous(false).unwrap();
    port.set_all_multicast(true).unwrap();
    drop(port);
    // Dropped: reset (status 0) and bus mastering off.
    let cfg = std::fs::read(format!("/sys/bus/pci/devices/{}/config", addr(v))).unwrap();
    assert_eq!(
        u16::from_le_bytes([cfg[4], cfg[5]]) & 0x4,
        0,
        "bus mastering off after drop"
    );
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn frames_cross_both_ways_unchanged_and_counters_agree() {
    let (v, peer) = ports();
    let mut igb = bring_up(peer, "vio-peer");
    let mut vio = bring_up(v, "vio-port");
    let (vmac, imac) = (vio.port.mac_addr(), igb.port.mac_addr());

    // igb -> virtio.
    let to_vio = frames(vmac, imac, N);
    let got = send_receive(&mut igb, &mut vio, &to_vio);
    println!(
        "after igb -> virtio: igb {:?}\nvirtio {:?}",
        stats(&mut igb),
        stats(&mut vio)
    );
    check_exact(&got, &to_vio, "igb -> virtio");
    drop(got);
    // virtio -> igb.
    let to_igb = frames(imac, vmac, N);
    let got = send_receive(&mut vio, &mut igb, &to_igb);
    check_exact(&got, &to_igb, "virtio -> igb");
    drop(got);

    let (si, sv) = (stats(&mut igb), stats(&mut vio));
    println!("igb port {peer}: {si:?}\nvirtio port {v}: {sv:?}");
    assert_eq!((sv.ipackets, sv.ibytes), (N as u64, bytes(&to_vio)));
    assert_eq!((sv.opackets, sv.obytes), (N as u64, bytes(&to_igb)));
    assert_eq!(
        (si.opackets, si.obytes),
        (sv.ipackets, sv.ibytes),
        "igb sent what virtio got"
    );
    assert_eq!(
        (si.ipackets, si.ibytes),
        (sv.opackets, sv.obytes),
        "igb got what virtio sent"
    );
    assert_eq!(sv.ierrors + sv.rx_nombuf + sv.rx_multiseg_dropped, 0);
    assert_eq!(si.imissed, 0);

    // Teardown: every buffer back in each pool.
    let (ip, vp) = (igb.pool.clone(), vio.pool.clone());
    drop(vio);
    drop(igb);
    assert!(
        pool_full(&vp),
        "virtio pool: {}/{}",
        vp.available(),
        vp.capacity()
    );
    assert!(pool_full(&ip), "igb pool: {}/{}", ip.available(), ip.capacity());
}

/// Receives on `to` whatever arrives within `quiet` of the last frame (or until `want` frames).
fn collect(to: &mut Side, want: usize, quiet: Duration) -> Vec<Packet> {
    let mut got = Vec::new();
    let mut b = Burst::new();
    let t = Instant::now();
    let mut last = Instant::now();
    while t.elapsed() < DEADLINE && last.elapsed() < quiet {
        if to.rx.rx_burst(&mut b) > 0 {
            got.extend(b.drain());
            last = Instant::now();
            if got.len() > want {
                break;
            }
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    got
}

fn send(from: &mut Side, frames: &[Vec<u8>]) {
    let mut b = Burst::new();
    for f in frames {
        b.push(packet(&from.pool, f)).unwrap();
        if b.is_full() {
            flush(&mut from.tx, &mut b, Instant::now());
        }
    }
    flush(&mut from.tx, &mut b, Instant::now());
}

/// With the control virtqueue: not promiscuous by default (frames for another unicast MAC are
/// filtered by the device), promiscuous on request, and a new MAC address set through the
/// control queue is the one filtered on.
#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn rx_filter_follows_promiscuous_mode_and_mac() {
    let (v, peer) = ports();
    let mut igb = bring_up(peer, "filt-peer");
    let mut vio = bring_up(v, "filt-port");
    let (vmac, imac) = (vio.port.mac_addr(), igb.port.mac_addr());
    let other = MacAddr([0x02, 0, 0, 0, 0, 0x99]);
    let quiet = Duration::from_secs(2);
    // Not promiscuous: foreign frames (seq 0..10) dropped, own frames (seq 10..20) received.
    let mut fs: Vec<Vec<u8>> = (0..10).map(|i| frame(other, imac, i, 64)).collect();
    fs.extend((10..20).map(|i| frame(vmac, imac, i, 64)));
    send(&mut igb, &fs);
    let got: Vec<u32> = collect(&mut vio, 10, quiet)
        .iter()
        .map(|p| seq_of(p.data()))
        .collect();
    assert_eq!(
        got,
        (10..20).collect::<Vec<_>>(),
        "only frames for the port's MAC"
    );
    // Promiscuous: everything.
    vio.port.set_promiscuous(true).unwrap();
    send(&mut igb, &fs);
    let got: Vec<u32> = collect(&mut vio, 20, quiet)
        .iter()
        .map(|p| seq_of(p.data()))
        .collect();
    assert_eq!(got, (0..20).collect::<Vec<_>>(), "promiscuous: every frame");
    // New MAC, not promiscuous: frames for the new MAC pass, for the old one not.
    vio.port.set_promiscuous(false).unwrap();
    let new_mac = MacAddr([0x02, 0, 0, 0, 0, 0x77]);
    vio.port.set_mac_addr(new_mac).unwrap();
    assert_eq!(vio.port.mac_addr(), new_mac);
    let mut fs: Vec<Vec<u8>> = (0..10).map(|i| frame(vmac, imac, i, 64)).collect();
    fs.extend((10..20).map(|i| frame(new_mac, imac, i, 64)));
    send(&mut igb, &fs);
    let got: Vec<u32> = collect(&mut vio, 10, quiet)
        .iter()
        .map(|p| seq_of(p.data()))
        .collect();
    assert_eq!(got, (10..20).collect::<Vec<_>>(), "only frames for the new MAC");
}

/// The igb peer sends; the virtio port echoes every frame back with the MACs swapped (the
/// packets it received, no copy); the igb port must get each one back, unchanged otherwise.
/// Prints the echo rate (frames per second through the virtio port, both directions counted once).
#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn echo_through_the_virtio_port() {
    let (v, peer) = ports();
    let mut igb = bring_up(peer, "echo-peer");
    let mut vio = bring_up(v, "echo-port");
    let (vmac, imac) = (vio.port.mac_addr(), igb.port.mac_addr());
    let sent = frames(vmac, imac, 4 * N);
    let want: Vec<Vec<u8>> = sent
        .iter()
        .map(|f| {
            let mut f = f.clone();
            let (dst, src) = f.split_at_mut(6);
            dst.swap_with_slice(&mut src[..6]);
            f
        })
        .collect();
    // Received frames are checked and freed at once (holding them would empty the pool).
    let mut got = 0usize;
    let (mut b, mut vb, mut ib) = (Burst::new(), Burst::new(), Burst::new());
    let t = Instant::now();
    let mut next = 0;
    while got < sent.len() && t.elapsed() < DEADLINE {
        while next < sent.len() && next < got + RING / 2 && !b.is_full() {
            b.push(packet(&igb.pool, &sent[next])).unwrap();
            next += 1;
        }
        flush(&mut igb.tx, &mut b, t);
        if vio.rx.rx_burst(&mut vb) > 0 {
            for p in vb.iter_mut() {
                let d = p.data_mut();
                let (dst, src) = d.split_at_mut(6);
                dst.swap_with_slice(&mut src[..6]);
            }
            flush(&mut vio.tx, &mut vb, t);
        }
        if igb.rx.rx_burst(&mut ib) > 0 {
            for p in ib.drain() {
                assert!(got < want.len(), "more frames than sent");
                assert_eq!(seq_of(p.data()), got as u32, "echo: frame {got} out of order");
                assert_eq!(p.data(), &want[got][..], "echo: frame {got} changed");
                got += 1;
            }
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let (si, sv) = (stats(&mut igb), stats(&mut vio));
    assert_eq!(
        got,
        sent.len(),
        "echo: {got} of {} frames back: igb {si:?}, virtio {sv:?}",
        sent.len()
    );
    assert_eq!(sv.ipackets, sent.len() as u64);
    assert_eq!(sv.opackets, sent.len() as u64);
    assert_eq!((si.opackets, si.ipackets), (sv.ipackets, sv.opackets));
    report(&format!(
        "virtio echo: {} frames ({} bytes) in {secs:.2} s: {:.0} frames/s echoed (window {})",
        sent.len(),
        bytes(&sent),
        sent.len() as f64 / secs,
        RING / 2
    ));
}

/// Dropping the port resets the device; opening it again works and traffic flows again.
#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn reopen_after_teardown() {
    let (v, peer) = ports();
    let mut igb = bring_up(peer, "re-peer");
    for round in 0..2 {
        let mut vio = bring_up(v, "re-port");
        let sent = frames(igb.port.mac_addr(), vio.port.mac_addr(), 100);
        let got = send_receive(&mut vio, &mut igb, &sent);
        check_exact(&got, &sent, &format!("round {round}"));
        drop(got);
        let p = vio.pool.clone();
        drop(vio);
        assert!(pool_full(&p), "round {round}: {}/{}", p.available(), p.capacity());
    }
}

/// Loop forwarding (testpmd `--port-topology=loop --forward-mode=io --tx-first`): the igb peer and
/// the virtio port each send back what they receive, on the same port; 64 frames of 64 bytes
/// circulate for OXPMD_VIRTIO_BENCH_SECS (default 10) seconds. Prints the frames forwarded per
/// second by each port: compare with DPDK's testpmd in the same VM (docs/virtio.md).
#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn loop_forwarding_rate() {
    let secs: u64 = std::env::var("OXPMD_VIRTIO_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let (v, peer) = ports();
    let mut igb = bring_up(peer, "loop-peer");
    igb.port.set_promiscuous(true).unwrap();
    let mut vio = bring_up(v, "loop-port");
    vio.port.set_promiscuous(true).unwrap();
    let dst = MacAddr([0x02, 0, 0, 0, 0, 1]);
    let mut b = Burst::new();
    for s in [&mut igb, &mut vio] {
        for i in 0..32 {
            b.push(packet(&s.pool, &frame(dst, s.port.mac_addr(), i, 64)))
                .unwrap();
        }
        flush(&mut s.tx, &mut b, Instant::now());
    }
    let t = Instant::now();
    let mut fwd = [0u64; 2];
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let mut last = (Instant::now(), 0u64, 0u64);
    while t.elapsed() < Duration::from_secs(secs) {
        for (k, s) in [&mut igb, &mut vio].into_iter().enumerate() {
            if s.rx.rx_burst(&mut b) > 0 {
                fwd[k] += b.len() as u64;
                s.tx.tx_burst(&mut b);
                // What the ring could not take is dropped, as testpmd does.
                b.clear();
            }
        }
        if last.0.elapsed() >= Duration::from_secs(2) {
            let dt = last.0.elapsed().as_secs_f64();
            samples.push((dt, fwd[0] - last.1, fwd[1] - last.2));
            last = (Instant::now(), fwd[0], fwd[1]);
        }
    }
    let el = t.elapsed().as_secs_f64();
    for (dt, a, bb) in &samples {
        println!(
            "  sample: igb {:.0} pps, virtio {:.0} pps",
            *a as f64 / dt,
            *bb as f64 / dt
        );
    }
    report(&format!(
        "loop-forwarding: igb port {peer} {:.0} pps, virtio port {v} {:.0} pps ({} s, single thread)",
        fwd[0] as f64 / el,
        fwd[1] as f64 / el,
        secs
    ));
    assert!(fwd[1] > 0, "the virtio port forwarded nothing");
}

/// Packed virtqueues when asked for: used if the device offers VIRTIO_F_RING_PACKED (QEMU:
/// `packed=on`), else the driver falls back to split rings. Either way frames cross both ways
/// exactly. Prints which kind ran.
#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn packed_option_uses_packed_rings_when_offered() {
    let (v, peer) = ports();
    let mut igb = bring_up(peer, "pk-peer");
    let drv = VirtioDriver::open_with(
        addr(v),
        &OpenOptions {
            port_id: v as u16,
            ..OpenOptions::default()
        },
        VirtioOptions { packed: true },
    )
    .unwrap_or_else(|e| panic!("open virtio port {v}: {e}"));
    let packed = drv.packed();
    assert_eq!(packed, drv.features() & feature::RING_PACKED != 0);
    report(&format!(
        "virtio port {v}: packed option: {} virtqueues (features {:#x})",
        if packed {
            "packed"
        } else {
            "split (RING_PACKED not offered)"
        },
        drv.features()
    ));
    let mut vio = start_port(Port::with_driver(Box::new(drv), v as u16), v, "pk-port");
    let (vmac, imac) = (vio.port.mac_addr(), igb.port.mac_addr());
    let to_vio = frames(vmac, imac, N);
    let got = send_receive(&mut igb, &mut vio, &to_vio);
    check_exact(&got, &to_vio, "igb -> virtio");
    drop(got);
    let to_igb = frames(imac, vmac, N);
    let got = send_receive(&mut vio, &mut igb, &to_igb);
    check_exact(&got, &to_igb, "virtio -> igb");
    drop(got);
    let sv = stats(&mut vio);
    assert_eq!((sv.ipackets, sv.opackets), (N as u64, N as u64));
    let p = vio.pool.clone();
    drop(vio);
    assert!(pool_full(&p));
}

/// The full error chain, for messages wrapped by the port layer.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(" | ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn a_device_without_access_platform_is_refused() {
    // QEMU `virtio-net-pci,disable-legacy=on` without iommu_platform: modern (1af4:1041), no
    // ACCESS_PLATFORM, so its DMA would bypass the IOMMU. The driver must refuse it, naming the
    // device, the missing feature and the fix, and leave it with bus mastering off.
    let a = env("OXPMD_VIRTIO_NO_IOMMU");
    let addr = PciAddress::parse(&a).unwrap();
    let err = match VirtioDriver::open(addr, &OpenOptions::default()) {
        Ok(_) => panic!("opened {a}, a virtio device without ACCESS_PLATFORM"),
        Err(e) => e,
    };
    let msg = error_chain(&err);
    println!("refusal: {msg}");
    assert!(msg.contains(&a), "the message names the device: {msg}");
    assert!(
        msg.contains("ACCESS_PLATFORM"),
        "the message names the missing feature: {msg}"
    );
    assert!(
        msg.contains("iommu_platform=on"),
        "the message gives the fix: {msg}"
    );
    assert!(
        !msg.contains("VERSION_1,"),
        "VERSION_1 is offered by this device: {msg}"
    );
    // Through the registry (what l2fwd does), the same refusal.
    match Port::open(&a, 9) {
        Ok(_) => panic!("Port::open accepted {a}"),
        Err(e) => {
            let m = error_chain(&e);
            assert!(m.contains("ACCESS_PLATFORM"), "{m}");
        }
    }
    // Nothing was left able to DMA: bus mastering (PCI COMMAND bit 2) is off.
    let cfg = std::fs::read(format!("/sys/bus/pci/devices/{a}/config")).unwrap();
    let command = u16::from_le_bytes([cfg[4], cfg[5]]);
    assert_eq!(
        command & 0x4,
        0,
        "bus master left on after the refusal: COMMAND {command:#06x}"
    );
}
