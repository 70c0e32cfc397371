//! l2fwd's forwarding loop over ring ports: exact delivery, order, MAC rewrite, no leaks.
#![allow(clippy::needless_range_loop)] // two sides indexed in parallel arrays

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use oxpmd_dma::Mempool;
use oxpmd_pmd::forward::{Forwarder, FwdConfig, FwdCounters, l2fwd_dst_mac, l2fwd_pairs};
use oxpmd_pmd::vport::virtual_pool;
use oxpmd_pmd::{Burst, MacAddr, Port, PortConfig, RxQueue, TxQueue};

struct Rig {
    app: Vec<Port>,
    peers: Vec<(Port, RxQueue, TxQueue)>,
    fwd: Forwarder,
    counters: Vec<Arc<FwdCounters>>,
}

fn rig(tag: &str, pool: &Mempool, cfg: FwdConfig) -> Rig {
    let cfgp = PortConfig::new(pool.clone()).ring_sizes(1024, 1024);
    let mut app = Vec::new();
    let mut peers = Vec::new();
    for i in 0..2u16 {
        let name = format!("ring:{tag}{i}");
        let mut p = Port::open(&name, i).unwrap();
        p.configure(&cfgp).unwrap();
        p.start().unwrap();
        app.push(p);
        let mut peer = Port::open(&name, 10 + i).unwrap();
        peer.configure(&cfgp).unwrap();
        peer.start().unwrap();
        let (mut rx, mut tx) = peer.take_queues().unwrap();
        peers.push((peer, rx.remove(0), tx.remove(0)));
    }
    let counters: Vec<Arc<FwdCounters>> = (0..2).map(|_| Arc::new(FwdCounters::default())).collect();
    let mut fwd = Forwarder::new(cfg).unwrap();
    let mut rxs = Vec::new();
    for p in app.iter_mut() {
        let mac = p.mac_addr();
        let id = p.id();
        let (mut rx, mut tx) = p.take_queues().unwrap();
        fwd.add_tx(tx.remove(0), mac, counters[usize::from(id)].clone())
            .unwrap();
        rxs.push(rx.remove(0));
    }
    for ((port, dst), rx) in l2fwd_pairs(&[0, 1]).into_iter().zip(rxs) {
        assert_eq!(port, rx.port_id());
        fwd.add_rx(rx, dst, counters[usize::from(port)].clone()).unwrap();
    }
    Rig {
        app,
        peers,
        fwd,
        counters,
    }
}

fn packet(pool: &Mempool, seq: u64) -> oxpmd_dma::Packet {
    let mut p = pool.alloc().unwrap();
    let mut f = [0u8; 64];
    f[..6].copy_from_slice(&[0xaa; 6]);
    f[6..12].copy_from_slice(&[0xbb; 6]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14..22].copy_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&f).unwrap();
    p
}

fn seq(p: &oxpmd_dma::Packet) -> u64 {
    u64::from_be_bytes(p.data()[14..22].try_into().unwrap())
}

fn full(p: &Mempool) -> bool {
    oxpmd_dma::flush_thread_caches();
    p.available() == p.capacity()
}

/// Sends `n` packets into each direction and checks every one arrives once, in order, rewritten.
fn exchange(r: &mut Rig, pool: &Mempool, n: u64, mac_updating: bool) {
    let macs: Vec<MacAddr> = r.app.iter().map(|p| p.mac_addr()).collect();
    let mut next_in = [0u64; 2];
    let mut next_out = [0u64; 2];
    let mut b = Burst::new();
    let mut spins = 0;
    while next_out != [n, n] {
        for side in 0..2 {
            // Inject at the peer of port `side`: it arrives on port `side`, leaves on 1 - side.
            while next_in[side] < n && !b.is_full() {
                b.push(packet(pool, next_in[side])).unwrap();
                next_in[side] += 1;
            }
            let before = b.len();
            let took = r.peers[side].2.tx_burst(&mut b);
            next_in[side] -= (before - took) as u64;
            b.clear();
        }
        r.fwd.poll_once();
        r.fwd.flush_all();
        for side in 0..2 {
            let out = 1 - side;
            r.peers[out].1.rx_burst(&mut b);
            for p in b.drain() {
                assert_eq!(seq(&p), next_out[side], "exact, in-order delivery");
                next_out[side] += 1;
                let eth = p.eth().unwrap();
                if mac_updating {
                    assert_eq!(eth.dst, l2fwd_dst_mac(out as u16).0);
                    assert_eq!(eth.src, macs[out].0);
                } else {
                    assert_eq!((eth.dst, eth.src), ([0xaa; 6], [0xbb; 6]));
                }
            }
        }
        spins += 1;
        assert!(spins < 10 * n + 1000, "forwarding stalled at {next_out:?}");
    }
    r.fwd.publish();
    for side in 0..2 {
        let s = r.counters[side].snapshot();
        assert_eq!((s.rx, s.tx, s.dropped), (n, n, 0));
    }
}

#[test]
fn forwards_every_packet_with_mac_rewrite() {
    let pool = virtual_pool("l2fwd-ring", 8192, 64).unwrap();
    {
        let mut r = rig("fwdA", &pool, FwdConfig::default());
        exchange(&mut r, &pool, 20_000, true);
    }
    assert!(full(&pool), "every buffer back in the pool");
}

#[test]
fn forwards_unchanged_without_mac_updating_and_odd_bursts() {
    let pool = virtual_pool("l2fwd-ring2", 8192, 64).unwrap();
    {
        let cfg = FwdConfig {
            mac_updating: false,
            burst: 7,
            ..FwdConfig::default()
        };
        let mut r = rig("fwdB", &pool, cfg);
        exchange(&mut r, &pool, 5_000, false);
    }
    assert!(full(&pool));
}

#[test]
fn worker_thread_stops_on_flag_and_flushes() {
    let pool = virtual_pool("l2fwd-ring3", 8192, 64).unwrap();
    {
        let r = rig("fwdC", &pool, FwdConfig::default());
        let Rig {
            app,
            mut peers,
            mut fwd,
            counters,
        } = r;
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let h = std::thread::spawn(move || {
            fwd.run(&s2);
            fwd
        });
        let mut b = Burst::new();
        let n = 3_000u64;
        let mut sent = 0;
        while sent < n {
            while sent < n && !b.is_full() {
                b.push(packet(&pool, sent)).unwrap();
                sent += 1;
            }
            let before = b.len();
            let took = peers[0].2.tx_burst(&mut b);
            sent -= (before - took) as u64;
            b.clear();
        }
        let mut got = 0u64;
        while got < n {
            peers[1].1.rx_burst(&mut b);
            for p in b.drain() {
                assert_eq!(seq(&p), got);
                got += 1;
            }
            std::thread::yield_now();
        }
        stop.store(true, Ordering::Relaxed);
        let fwd = h.join().unwrap();
        assert_eq!(counters[0].snapshot().rx, n);
        assert_eq!(counters[1].snapshot().tx, n);
        drop(fwd);
        drop(peers);
        drop(app);
    }
    assert!(full(&pool));
}
