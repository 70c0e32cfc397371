//! Advanced descriptor ring: cost of one RX burst and one TX burst of 32 packets against
//! in-memory descriptors whose write-back is already done (no device, no MMIO).
//!
//! Cycles are measured with `rdtsc` around the burst call only (the fake write-back, allocating the
//! packets to send and freeing the received ones happen outside the timed window, all through this
//! thread's mempool cache, as on a forwarding core); the back-to-back `rdtsc` overhead is measured
//! and subtracted. Criterion's time is derived from those cycles and the TSC frequency
//! (calibrated against the monotonic clock). Caveat: the write-backs were written by this CPU,
//! so the descriptors are in its cache; a real device's write invalidates those lines.
//!
//! A third figure, `forward`, times an RX burst and the TX burst of the same packets on another
//! ring together: a forwarding core's whole driver work per packet (RX refill allocating from the
//! pool, TX cleanup freeing what was sent), without a MAC rewrite (as DPDK's io forwarding).
//!
//! Run: `cargo bench --bench desc_ring`. Prints `rx: X cycles/pkt`, `tx: Y cycles/pkt` and
//! `forward: Z cycles/pkt`: the mean over bursts that were not preempted (longer than 20 us),
//! then the median and the raw mean.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use oxpmd::dma::Mempool;
use oxpmd::pmd::adv_ring::fake::{BenchRegs, WritebackWriter};
use oxpmd::pmd::adv_ring::{AdvRxRing, AdvTxRing, HeapRingMemory, RingMemory};
use oxpmd::pmd::vport::virtual_pool;
use oxpmd::pmd::{Burst, QueueCounters};

const RING: usize = 1024;
const BURST: usize = 32;

#[inline(always)]
fn tsc() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86_64 (reads the time-stamp counter).
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        use std::sync::OnceLock;
        static T0: OnceLock<Instant> = OnceLock::new();
        T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// TSC ticks per second and the cost of two back-to-back reads.
fn calibrate() -> (f64, u64) {
    let (t0, c0) = (Instant::now(), tsc());
    std::thread::sleep(Duration::from_millis(200));
    let (t1, c1) = (Instant::now(), tsc());
    let hz = (c1 - c0) as f64 / (t1 - t0).as_secs_f64();
    let mut best = u64::MAX;
    for _ in 0..10_000 {
        let a = tsc();
        let b = tsc();
        best = best.min(b - a);
    }
    (hz, best)
}

/// Bursts longer than this (20 us at 2.5 GHz) were preempted or interrupted: left out of the mean.
const PREEMPTED: u64 = 50_000;

/// Mean of the per-burst samples that were not preempted.
fn robust_mean(v: &[u64]) -> f64 {
    let kept: Vec<u64> = v.iter().copied().filter(|&d| d < PREEMPTED).collect();
    if kept.is_empty() {
        return 0.0;
    }
    kept.iter().sum::<u64>() as f64 / kept.len() as f64
}

/// Median of per-burst samples.
fn median(v: &mut [u64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    v[v.len() / 2] as f64
}

/// Keeps burst sample `d` (while there is room) and returns it, for the total.
fn record(samples: &mut Vec<u64>, d: u64) -> u64 {
    if samples.len() < samples.capacity() {
        samples.push(d);
    }
    d
}

/// Prints one figure: cycles per packet, the mean over bursts not preempted, then the median and
/// the raw mean; `what` says what the timed window holds beyond the burst call.
fn report(name: &str, what: &str, samples: &mut [u64], cycles: u64, pkts: u64) {
    println!(
        "{name}: {:.1} cycles/pkt (mean of bursts not preempted), {:.1} median, {:.1} raw mean (burst {BURST}, \
         rdtsc{what})",
        robust_mean(samples) / BURST as f64,
        median(samples) / BURST as f64,
        cycles as f64 / pkts.max(1) as f64
    );
}

fn pool() -> Mempool {
    virtual_pool("desc-ring-bench", 8192, 256).expect("bench pool")
}

fn bench(c: &mut Criterion) {
    let (hz, overhead) = calibrate();
    println!("tsc: {:.3} GHz, rdtsc pair overhead {overhead} cycles", hz / 1e9);
    let to_dur = |cycles: u64| Duration::from_secs_f64(cycles as f64 / hz);

    // RX
    let p = pool();
    let mem = HeapRingMemory::new(RING);
    // SAFETY: the ring memory lives inside `rx` for the whole benchmark.
    let mut wb = unsafe { WritebackWriter::new(mem.as_ptr(), RING) };
    let mut rx = AdvRxRing::new(mem, BenchRegs::default(), &p, RING, 0, 0).expect("rx ring");
    rx.arm();
    let mut out = Burst::new();
    let mut cnt = QueueCounters::default();
    let mut next = 0usize;
    let (mut rx_cycles, mut rx_pkts) = (0u64, 0u64);
    let mut rx_samples: Vec<u64> = Vec::with_capacity(1 << 20);
    c.bench_function("rx_burst_32", |b| {
        b.iter_custom(|iters| {
            let mut total = 0u64;
            for _ in 0..iters {
                for k in 0..BURST {
                    wb.rx_done(next + k, 64);
                }
                next += BURST;
                let t0 = tsc();
                let n = rx.rx_burst(&mut out, &mut cnt);
                let t1 = tsc();
                assert_eq!(n, BURST);
                total += record(&mut rx_samples, (t1 - t0).saturating_sub(overhead));
                out.clear();
            }
            rx_cycles += total;
            rx_pkts += iters * BURST as u64;
            to_dur(total)
        })
    });
    report("rx", "", &mut rx_samples, rx_cycles, rx_pkts);
    drop(rx);

    // TX
    let mem = HeapRingMemory::new(RING);
    // SAFETY: the ring memory lives inside `tx` for the whole benchmark.
    let mut wb = unsafe { WritebackWriter::new(mem.as_ptr(), RING) };
    let mut tx = AdvTxRing::new(mem, BenchRegs::default(), RING).expect("tx ring");
    let mut pos = 0usize;
    let mut slots: Vec<Option<oxpmd::dma::Packet>> = (0..BURST).map(|_| None).collect();
    let (mut tx_cycles, mut tx_pkts) = (0u64, 0u64);
    let mut tx_samples: Vec<u64> = Vec::with_capacity(1 << 20);
    c.bench_function("tx_burst_32", |b| {
        b.iter_custom(|iters| {
            let mut total = 0u64;
            for _ in 0..iters {
                p.alloc_bulk(&mut slots).expect("pool");
                for s in slots.iter_mut() {
                    let mut pkt = s.take().expect("allocated");
                    let _ = pkt.set_len(64);
                    let _ = out.push(pkt);
                }
                let t0 = tsc();
                let n = tx.tx_burst(&mut out, &mut cnt);
                let t1 = tsc();
                assert_eq!(n, BURST);
                total += record(&mut tx_samples, (t1 - t0).saturating_sub(overhead));
                wb.tx_done(pos, pos + BURST);
                pos += BURST;
            }
            tx_cycles += total;
            tx_pkts += iters * BURST as u64;
            to_dur(total)
        })
    });
    report(
        "tx",
        ", includes cleanup and freeing",
        &mut tx_samples,
        tx_cycles,
        tx_pkts,
    );
    drop(tx);

    // Forwarding: what a forwarding core's driver work per packet is, whole. An RX burst from
    // one ring (its refill allocates replacement buffers from the pool), the same packets sent
    // as they are on another ring (its cleanup frees the packets the device has sent), timed
    // together; the fake device's write-backs happen outside the window, as a device's would.
    let rx_mem = HeapRingMemory::new(RING);
    let tx_mem = HeapRingMemory::new(RING);
    // SAFETY: both ring memories live inside their rings for the rest of the benchmark.
    let (mut rx_wb, mut tx_wb) = unsafe {
        (
            WritebackWriter::new(rx_mem.as_ptr(), RING),
            WritebackWriter::new(tx_mem.as_ptr(), RING),
        )
    };
    let mut rx = AdvRxRing::new(rx_mem, BenchRegs::default(), &p, RING, 0, 0).expect("rx ring");
    rx.arm();
    let mut tx = AdvTxRing::new(tx_mem, BenchRegs::default(), RING).expect("tx ring");
    let (mut next, mut pos) = (0usize, 0usize);
    let (mut fwd_cycles, mut fwd_pkts) = (0u64, 0u64);
    let mut fwd_samples: Vec<u64> = Vec::with_capacity(1 << 20);
    c.bench_function("forward_32", |b| {
        b.iter_custom(|iters| {
            let mut total = 0u64;
            for _ in 0..iters {
                for k in 0..BURST {
                    rx_wb.rx_done(next + k, 64);
                }
                next += BURST;
                let t0 = tsc();
                let n = rx.rx_burst(&mut out, &mut cnt);
                let sent = tx.tx_burst(&mut out, &mut cnt);
                let t1 = tsc();
                assert_eq!((n, sent), (BURST, BURST));
                total += record(&mut fwd_samples, (t1 - t0).saturating_sub(overhead));
                tx_wb.tx_done(pos, pos + BURST);
                pos += BURST;
            }
            fwd_cycles += total;
            fwd_pkts += iters * BURST as u64;
            to_dur(total)
        })
    });
    report(
        "forward",
        "; RX with refill, TX with cleanup and freeing, no MAC rewrite",
        &mut fwd_samples,
        fwd_cycles,
        fwd_pkts,
    );
    drop(rx);
    drop(tx);
    drop(out);
}

criterion_group!(benches, bench);
criterion_main!(benches);
