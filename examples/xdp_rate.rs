//! TX rate of an `xdp:` port: 64-byte frames sent from the UMEM pool (no copy by us) on one
//! queue for a few seconds, counted where they arrive: the kernel's `rx_packets` of the far end
//! of the link (a veth peer, or the NIC at the other end). Prints the figure and the command.
//!
//! `cargo run --release --example xdp_rate -- IFACE PEER_IFACE [SECONDS] [mode=auto|zc|copy]`
//!
//! The peer's counter is the same one DPDK's `testpmd --vdev net_af_xdp0,iface=IFACE
//! --forward-mode=txonly` is measured with, so both are compared on the same path.

use std::time::{Duration, Instant};

use oxpmd::dma::{IdentityMap, Mempool, MempoolConfig, PageSize, RegionOptions};
use oxpmd::pmd::vport::xdp_pool;
use oxpmd::pmd::{Burst, Port, PortConfig};

fn rx_packets(iface: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/rx_packets"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: xdp_rate IFACE PEER_IFACE [SECONDS] [mode=auto|zc|copy]");
        std::process::exit(2);
    }
    let (iface, peer) = (&args[1], &args[2]);
    let secs: u64 = args.get(3).map_or(Ok(5), |s| s.parse())?;
    let mode = args.get(4).map(|m| format!(",{m}")).unwrap_or_default();
    // 2 MiB pages where reserved, else 4 KiB (the kernel pins the UMEM page by page either way).
    let pool = xdp_pool("xdp_rate", 8192, 256, std::sync::Arc::new(IdentityMap)).or_else(|e| {
        eprintln!("xdp_rate: {e}; using 4 KiB pages");
        Mempool::new(
            &MempoolConfig {
                headroom: 128,
                data_room: 1920,
                chunk_aligned: true,
                region: RegionOptions {
                    page_size: PageSize::Base4K,
                    allow_4k_fallback: true,
                },
                ..MempoolConfig::new("xdp_rate", 8192)
            },
            std::sync::Arc::new(IdentityMap),
        )
    })?;
    let mut port = Port::open(&format!("xdp:{iface}:0{mode}"), 0)?;
    port.configure(&PortConfig::new(pool.clone()).queues(1, 1).ring_sizes(2048, 2048))?;
    port.start()?;
    let driver = port.info().driver;
    let (_rx, mut tx) = port.take_queues()?;
    let tx = &mut tx[0];
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    let mut burst = Burst::new();
    let mut fresh: Vec<Option<oxpmd::dma::Packet>> = (0..32).map(|_| None).collect();
    // Warm up, then count over `secs`.
    let warm = Instant::now() + Duration::from_millis(500);
    let mut start = None;
    let mut sent = 0u64;
    loop {
        let now = Instant::now();
        if start.is_none() && now >= warm {
            start = Some((now, rx_packets(peer), sent));
        }
        if let Some((t0, _, _)) = start
            && now.duration_since(t0) >= Duration::from_secs(secs)
        {
            break;
        }
        let room = burst.room();
        if room > 0 && pool.alloc_bulk(&mut fresh[..room]).is_ok() {
            for p in fresh[..room].iter_mut().filter_map(Option::take) {
                let mut p = p;
                let _ = p.extend_from_slice(&frame);
                let _ = burst.push(p);
            }
        }
        sent += tx.tx_burst(&mut burst) as u64;
    }
    let (t0, rx0, sent0) = start.expect("ran past the warm-up");
    let dt = t0.elapsed().as_secs_f64();
    let arrived = rx_packets(peer) - rx0;
    println!(
        "xdp_rate: xdp:{iface}{mode} ({driver}) -> {peer}: {:.3} Mpps arrived, {:.3} Mpps sent, 60-byte \
         frames, {dt:.1} s",
        arrived as f64 / dt / 1e6,
        (sent - sent0) as f64 / dt / 1e6
    );
    Ok(())
}
