//! Port and queue statistics.
//!
//! The thread that owns a queue counts into plain `u64`s ([`QueueCounters`], inside the queue) and
//! publishes them after each burst with relaxed atomic stores into a [`SharedQueueStats`] that only
//! it writes: one cache line, no read-modify-write, no lock. The control side reads that line with
//! relaxed loads at any time; each counter is exact and monotonic, counters may be one burst apart
//! from each other.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one queue, owned and updated by the queue's thread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Packets received (RX) or accepted for transmission (TX).
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// RX: frames dropped because the mempool was empty (the slot kept its buffer).
    pub rx_nombuf: u64,
    /// RX: frames the device flagged as erroneous; TX: packets refused as malformed.
    pub ierrors: u64,
    /// RX: frames spanning several descriptors (larger than one buffer), dropped.
    pub rx_multiseg_dropped: u64,
}

/// The published copy of a queue's counters: written by the queue's owner only, read by anyone.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct SharedQueueStats {
    packets: AtomicU64,
    bytes: AtomicU64,
    rx_nombuf: AtomicU64,
    errors: AtomicU64,
    multiseg: AtomicU64,
}

impl SharedQueueStats {
    /// Publishes the owner's counters (relaxed stores; only the owner calls this).
    #[inline(always)]
    pub fn publish(&self, c: &QueueCounters) {
        self.packets.store(c.packets, Ordering::Relaxed);
        self.bytes.store(c.bytes, Ordering::Relaxed);
        self.rx_nombuf.store(c.rx_nombuf, Ordering::Relaxed);
        self.errors.store(c.ierrors, Ordering::Relaxed);
        self.multiseg.store(c.rx_multiseg_dropped, Ordering::Relaxed);
    }

    /// Reads the published counters.
    pub fn snapshot(&self) -> QueueCounters {
        QueueCounters {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            rx_nombuf: self.rx_nombuf.load(Ordering::Relaxed),
            ierrors: self.errors.load(Ordering::Relaxed),
            rx_multiseg_dropped: self.multiseg.load(Ordering::Relaxed),
        }
    }
}

/// Counters the device keeps itself (read from its registers by the driver).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Frames the device dropped for lack of RX descriptors (or FIFO space).
    pub imissed: u64,
    /// Frames received with errors (CRC, length, symbol).
    pub ierrors: u64,
    /// Frames the device failed to send.
    pub oerrors: u64,
}

/// Statistics of a port (like `rte_eth_stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Packets received.
    pub ipackets: u64,
    /// Packets sent (accepted by TX queues).
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Frames dropped by the device (no descriptor).
    pub imissed: u64,
    /// Erroneous frames received (device and queue counts).
    pub ierrors: u64,
    /// Packets that failed on TX.
    pub oerrors: u64,
    /// RX frames dropped for an empty mempool.
    pub rx_nombuf: u64,
    /// RX frames dropped because they spanned several descriptors.
    pub rx_multiseg_dropped: u64,
    /// Per RX queue counters.
    pub rx_queues: Vec<QueueCounters>,
    /// Per TX queue counters.
    pub tx_queues: Vec<QueueCounters>,
}
