//! The capture-aware forwarding loop of `--pcap`, and its per-port counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use oxpmd::pmd::capture::{CaptureTap, now_ns};
use oxpmd::pmd::forward::{FwdSnapshot, rewrite_macs};
use oxpmd::pmd::{Burst, MacAddr, RxQueue, TxQueue};

/// Per-port counters of the capture-aware loop, published with relaxed stores by their worker.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct LoopCounters {
    pub(crate) rx: AtomicU64,
    pub(crate) tx: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

impl LoopCounters {
    pub(crate) fn snapshot(&self) -> FwdSnapshot {
        FwdSnapshot {
            rx: self.rx.load(Ordering::Relaxed),
            tx: self.tx.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

pub(crate) struct CapRx {
    pub(crate) queue: RxQueue,
    /// Index into the worker's TX list.
    pub(crate) tx: usize,
    pub(crate) capture: bool,
    pub(crate) counters: Arc<LoopCounters>,
    pub(crate) rx: u64,
}

pub(crate) struct CapTx {
    pub(crate) queue: TxQueue,
    pub(crate) src: MacAddr,
    pub(crate) dst: MacAddr,
    pub(crate) counters: Arc<LoopCounters>,
    pub(crate) tx: u64,
    pub(crate) dropped: u64,
}

/// The capture-aware forwarding loop (`--pcap`): RX burst, copy chosen ports' frames into capture
/// records (no syscall, no allocation; a full capture ring only counts a drop), MAC rewrite, TX
/// burst to the partner; what TX refuses is dropped and counted.
pub(crate) fn capture_loop(
    rx: &mut [CapRx],
    tx: &mut [CapTx],
    tap: &mut CaptureTap,
    mac_updating: bool,
    burst: usize,
    stop: &AtomicBool,
) {
    let Ok(mut b) = Burst::with_capacity(burst) else {
        return;
    };
    let publish = |rx: &[CapRx], tx: &[CapTx], tap: &CaptureTap| {
        for e in rx {
            e.counters.rx.store(e.rx, Ordering::Relaxed);
        }
        for t in tx {
            t.counters.tx.store(t.tx, Ordering::Relaxed);
            t.counters.dropped.store(t.dropped, Ordering::Relaxed);
        }
        tap.publish();
    };
    let mut round = 0u32;
    loop {
        for e in rx.iter_mut() {
            let n = e.queue.rx_burst(&mut b);
            if n == 0 {
                continue;
            }
            e.rx += n as u64;
            if e.capture {
                let ts = now_ns();
                for p in b.iter() {
                    tap.capture_packet(p, ts);
                }
            }
            let t = &mut tx[e.tx];
            if mac_updating {
                for p in b.iter_mut() {
                    rewrite_macs(p, t.dst, t.src);
                }
            }
            t.tx += t.queue.tx_burst(&mut b) as u64;
            if !b.is_empty() {
                t.dropped += b.len() as u64;
                b.clear();
            }
        }
        round = round.wrapping_add(1);
        if round % 256 == 0 {
            publish(rx, tx, tap);
            if stop.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    publish(rx, tx, tap);
}
