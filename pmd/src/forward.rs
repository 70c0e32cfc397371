//! The l2fwd forwarding engine (DPDK `examples/l2fwd` behaviour), shared by `examples/l2fwd/`
//! and the tests.
//!
//! Each worker owns the RX queues it polls and the TX queues of their destination ports. Received
//! packets get their MACs rewritten (src = TX port MAC, dst = `02:00:00:00:00:<txport>`) unless
//! MAC updating is off, are buffered per TX port, and each buffer is sent when it is full or when
//! the drain interval (100 us) has passed; what the TX queue refuses is dropped and counted.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use oxpmd_dma::Packet;

use crate::burst::{Burst, BurstCapacityError};
use crate::mac::MacAddr;
use crate::port::{RxQueue, TxQueue};
use crate::rx_interrupt::wait_for_rx;

/// DPDK l2fwd's TX drain interval.
pub const DRAIN_INTERVAL: Duration = Duration::from_micros(100);

/// The destination of each port under l2fwd's pairing: consecutive enabled ports form pairs
/// (first <-> second, third <-> fourth, ...); with an odd count the last port sends to itself,
/// as DPDK does. Returns `(port, destination)` in the order given.
pub fn l2fwd_pairs(ports: &[u16]) -> Vec<(u16, u16)> {
    let mut out = Vec::with_capacity(ports.len());
    for pair in ports.chunks(2) {
        match *pair {
            [a, b] => {
                out.push((a, b));
                out.push((b, a));
            }
            [a] => out.push((a, a)),
            _ => {}
        }
    }
    out
}

/// The destination MAC l2fwd writes for TX port `port`: `02:00:00:00:00:<port>`.
pub fn l2fwd_dst_mac(port: u16) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, port as u8])
}

/// Per-port forwarding counters, published by the workers (relaxed stores) and read by the stats
/// printer.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct FwdCounters {
    rx: AtomicU64,
    tx: AtomicU64,
    dropped: AtomicU64,
}

/// A snapshot of [`FwdCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FwdSnapshot {
    /// Packets received on the port.
    pub rx: u64,
    /// Packets sent on the port.
    pub tx: u64,
    /// Packets that the port's TX queue refused, dropped.
    pub dropped: u64,
}

impl FwdCounters {
    /// Reads the counters.
    pub fn snapshot(&self) -> FwdSnapshot {
        FwdSnapshot {
            rx: self.rx.load(Ordering::Relaxed),
            tx: self.tx.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Settings of a worker.
#[derive(Debug, Clone)]
pub struct FwdConfig {
    /// Rewrite MACs (l2fwd's default; `--no-mac-updating` turns it off).
    pub mac_updating: bool,
    /// Burst size (RX burst and TX buffer), `1..=MAX_BURST`.
    pub burst: usize,
    /// How often partly filled TX buffers are sent.
    pub drain_interval: Duration,
}

impl Default for FwdConfig {
    fn default() -> Self {
        FwdConfig {
            mac_updating: true,
            burst: crate::burst::DEFAULT_BURST,
            drain_interval: DRAIN_INTERVAL,
        }
    }
}

struct RxEntry {
    queue: RxQueue,
    /// Index into `tx` of the destination.
    tx: usize,
    counters: Arc<FwdCounters>,
    rx: u64,
}

struct TxEntry {
    queue: TxQueue,
    buf: Burst,
    src: MacAddr,
    dst: MacAddr,
    port_id: u16,
    counters: Arc<FwdCounters>,
    tx: u64,
    dropped: u64,
}

/// Why a queue could not be added to a worker.
#[derive(Debug, thiserror::Error)]
pub enum FwdError {
    /// The burst size is out of range.
    #[error("l2fwd: {0}")]
    Burst(#[from] BurstCapacityError),
    /// An RX port's destination has no TX queue in this worker.
    #[error("l2fwd: RX port {rx} forwards to port {dst}, whose TX queue is not owned by this worker")]
    NoTxQueue {
        /// RX port.
        rx: u16,
        /// Destination port.
        dst: u16,
    },
}

/// One forwarding worker (one per core).
pub struct Forwarder {
    cfg: FwdConfig,
    rx: Vec<RxEntry>,
    tx: Vec<TxEntry>,
    rxbuf: Burst,
}

impl Forwarder {
    /// An empty worker.
    pub fn new(cfg: FwdConfig) -> Result<Forwarder, FwdError> {
        let rxbuf = Burst::with_capacity(cfg.burst)?;
        Ok(Forwarder {
            cfg,
            rx: Vec::new(),
            tx: Vec::new(),
            rxbuf,
        })
    }

    /// Adds the TX queue of port `queue.port_id()`, whose MAC is `src_mac`.
    pub fn add_tx(
        &mut self,
        queue: TxQueue,
        src_mac: MacAddr,
        counters: Arc<FwdCounters>,
    ) -> Result<(), FwdError> {
        let port_id = queue.port_id();
        self.tx.push(TxEntry {
            queue,
            buf: Burst::with_capacity(self.cfg.burst)?,
            src: src_mac,
            dst: l2fwd_dst_mac(port_id),
            port_id,
            counters,
            tx: 0,
            dropped: 0,
        });
        Ok(())
    }

    /// Adds an RX queue forwarding to port `dst` (whose TX queue must already be added).
    pub fn add_rx(&mut self, queue: RxQueue, dst: u16, counters: Arc<FwdCounters>) -> Result<(), FwdError> {
        let rx = queue.port_id();
        let tx = self
            .tx
            .iter()
            .position(|t| t.port_id == dst)
            .ok_or(FwdError::NoTxQueue { rx, dst })?;
        self.rx.push(RxEntry {
            queue,
            tx,
            counters,
            rx: 0,
        });
        Ok(())
    }

    /// One round: one RX burst on every RX queue, forwarding what arrived. Returns packets
    /// received.
    #[inline]
    pub fn poll_once(&mut self) -> usize {
        let mut total = 0;
        for e in self.rx.iter_mut() {
            let n = e.queue.rx_burst(&mut self.rxbuf);
            if n == 0 {
                continue;
            }
            e.rx += n as u64;
            total += n;
            let t = &mut self.tx[e.tx];
            if self.cfg.mac_updating {
                for p in self.rxbuf.iter_mut() {
                    rewrite_macs(p, t.dst, t.src);
                }
            }
            // Buffer for the TX port; send when the buffer is full (DPDK rte_eth_tx_buffer).
            if t.buf.is_empty() {
                std::mem::swap(&mut t.buf, &mut self.rxbuf);
            } else {
                for p in self.rxbuf.drain() {
                    if let Err(p) = t.buf.push(p) {
                        // Full: send, then buffer the rest.
                        flush(t);
                        let _ = t.buf.push(p);
                    }
                }
            }
            if t.buf.is_full() {
                flush(t);
            }
        }
        total
    }

    /// Sends every buffered packet (drops and counts what the TX queues refuse).
    pub fn flush_all(&mut self) {
        for t in self.tx.iter_mut() {
            if !t.buf.is_empty() {
                flush(t);
            }
        }
    }

    /// Publishes the counters for the stats printer.
    pub fn publish(&self) {
        for e in &self.rx {
            e.counters.rx.store(e.rx, Ordering::Relaxed);
        }
        for t in &self.tx {
            t.counters.tx.store(t.tx, Ordering::Relaxed);
            t.counters.dropped.store(t.dropped, Ordering::Relaxed);
        }
    }

    /// Forwards until `stop` is set: polls, and every drain interval sends partly filled TX
    /// buffers and publishes counters. Flushes and publishes once more before returning.
    pub fn run(&mut self, stop: &AtomicBool) {
        let mut timer = DrainTimer::new();
        loop {
            self.poll_once();
            if self.drain_if_due(&mut timer) && stop.load(Ordering::Relaxed) {
                break;
            }
        }
        self.flush_all();
        self.publish();
    }

    /// Called once per round: every drain interval, sends partly filled TX buffers and publishes
    /// the counters. Returns whether it did.
    #[inline]
    fn drain_if_due(&mut self, timer: &mut DrainTimer) -> bool {
        timer.rounds = timer.rounds.wrapping_add(1);
        // Reading the clock costs ~20 ns: once every 8 rounds is enough for a 100 us drain.
        if timer.rounds & 7 != 0 {
            return false;
        }
        let now = Instant::now();
        if now.duration_since(timer.last) < self.cfg.drain_interval {
            return false;
        }
        timer.last = now;
        self.flush_all();
        self.publish();
        true
    }

    /// Forwards until `stop` is set, like [`run`](Self::run) while frames flow, but sleeps when
    /// idle (DPDK l3fwd-power's heuristic): after `idle_polls` consecutive rounds in which no RX
    /// queue had a frame, it sends what the TX buffers hold and publishes the counters (nothing
    /// waits for a drain timer that a sleeping worker would not run), then sleeps in
    /// [`wait_for_rx`] on all its RX queues for at most `max_sleep`, so that `stop` is seen
    /// within that time. A wait that times out sleeps again after one more empty round; a
    /// wake-up resumes busy polling. Each RX queue needs [`RxQueue::enable_rx_interrupt`]
    /// first. Returns the number of sleeps, or the first error of a wait.
    pub fn run_rx_interrupt(
        &mut self,
        stop: &AtomicBool,
        idle_polls: u32,
        max_sleep: Duration,
    ) -> crate::error::Result<u64> {
        let mut timer = DrainTimer::new();
        let mut empty = 0u32;
        let mut sleeps = 0u64;
        let result = loop {
            if self.poll_once() > 0 {
                empty = 0;
            } else {
                empty = empty.saturating_add(1);
            }
            if self.drain_if_due(&mut timer) && stop.load(Ordering::Relaxed) {
                break Ok(sleeps);
            }
            if empty < idle_polls.max(1) {
                continue;
            }
            self.flush_all();
            self.publish();
            if stop.load(Ordering::Relaxed) {
                break Ok(sleeps);
            }
            let mut queues: Vec<&mut RxQueue> = self.rx.iter_mut().map(|e| &mut e.queue).collect();
            // wait_for_rx arms every queue and then looks at each ring again, so a frame that
            // arrived after the last empty round is found, not stranded until the next one.
            match wait_for_rx(&mut queues, max_sleep) {
                Ok(ready) => {
                    sleeps += 1;
                    // Timed out: one more empty round and back to sleep; woken: poll again.
                    empty = if ready.is_empty() {
                        idle_polls.max(1) - 1
                    } else {
                        0
                    };
                    timer.last = Instant::now();
                }
                Err(e) => break Err(e),
            }
        };
        self.flush_all();
        self.publish();
        result
    }

    /// Gives the queues back (e.g. to drop them in a chosen order).
    pub fn into_queues(self) -> (Vec<RxQueue>, Vec<TxQueue>) {
        (
            self.rx.into_iter().map(|e| e.queue).collect(),
            self.tx.into_iter().map(|t| t.queue).collect(),
        )
    }
}

/// When the TX buffers were last drained, and the rounds since the clock was last read.
struct DrainTimer {
    last: Instant,
    rounds: u32,
}

impl DrainTimer {
    fn new() -> DrainTimer {
        DrainTimer {
            last: Instant::now(),
            rounds: 0,
        }
    }
}

#[inline]
fn flush(t: &mut TxEntry) {
    let n = t.queue.tx_burst(&mut t.buf);
    t.tx += n as u64;
    if !t.buf.is_empty() {
        t.dropped += t.buf.len() as u64;
        t.buf.clear();
    }
}

/// l2fwd's MAC rewrite: dst = `02:00:00:00:00:<txport>`, src = the TX port's MAC.
#[inline(always)]
pub fn rewrite_macs(p: &mut Packet, dst: MacAddr, src: MacAddr) {
    if let Some(h) = p.eth_mut() {
        h.dst = dst.0;
        h.src = src.0;
    }
}
