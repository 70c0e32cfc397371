//! The per-thread queue handles [`RxQueue`] / [`TxQueue`]: a driver queue with its counters,
//! published after each burst.
#![forbid(unsafe_code)]

use std::sync::Arc;

use crate::burst::Burst;
use crate::driver::{RxQueueOps, TxQueueOps};
use crate::error::{PortError, Result};
use crate::stats::{QueueCounters, SharedQueueStats};

/// An RX queue: owned by one thread, `Send`, no lock per burst.
pub struct RxQueue {
    ops: Box<dyn RxQueueOps>,
    rx_interrupt: bool,
    counters: QueueCounters,
    pub(super) shared: Arc<SharedQueueStats>,
    port_id: u16,
    queue: u16,
    device: Arc<str>,
}

impl std::fmt::Debug for RxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxQueue")
            .field("device", &self.device)
            .field("queue", &self.queue)
            .finish()
    }
}

impl RxQueue {
    /// Wraps a driver queue (done by [`Port::configure`](crate::Port::configure)).
    pub fn new(ops: Box<dyn RxQueueOps>, port_id: u16, queue: u16, device: Arc<str>) -> RxQueue {
        RxQueue {
            ops,
            rx_interrupt: false,
            counters: QueueCounters::default(),
            shared: Arc::default(),
            port_id,
            queue,
            device,
        }
    }

    /// Appends up to `out.room()` received packets to `out`; returns how many.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut Burst) -> usize {
        let n = self.ops.rx_burst(out, &mut self.counters);
        self.shared.publish(&self.counters);
        n
    }

    /// Gives this queue an RX interrupt of its own (an MSI-X vector, masked until a wait arms
    /// it): then [`wait_for_rx`](crate::rx_interrupt::wait_for_rx) can sleep on it. Refused
    /// ([`PortError::NoRxInterrupt`]) by a driver that has none.
    pub fn enable_rx_interrupt(&mut self) -> Result<()> {
        self.ops.enable_interrupt(&self.device, self.queue)?;
        self.rx_interrupt = true;
        Ok(())
    }

    /// Whether [`enable_rx_interrupt`](Self::enable_rx_interrupt) succeeded.
    pub fn rx_interrupt_enabled(&self) -> bool {
        self.rx_interrupt
    }

    /// The eventfd of the queue's RX interrupt, for an application's own epoll: arm with
    /// [`arm_rx_interrupt`](Self::arm_rx_interrupt) before sleeping on it.
    pub fn rx_interrupt_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.ops.interrupt_fd()
    }

    /// Unmasks the RX interrupt, then checks the ring once more: `true` when a frame is already
    /// there (do not sleep: poll). Never strands a frame that landed while the interrupt was masked.
    pub fn arm_rx_interrupt(&mut self) -> Result<bool> {
        if !self.rx_interrupt {
            return Err(PortError::RxInterruptNotEnabled {
                device: self.device.to_string(),
                queue: self.queue,
            });
        }
        self.ops.arm_interrupt()
    }

    /// Masks the RX interrupt again (after a wake-up, before polling) and consumes its count.
    pub fn disarm_rx_interrupt(&mut self) -> Result<()> {
        if !self.rx_interrupt {
            return Ok(());
        }
        self.ops.disarm_interrupt()
    }

    /// Port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// Queue index.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// Device name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// This queue's counters (as the owner sees them).
    pub fn counters(&self) -> QueueCounters {
        self.counters
    }
}

/// A TX queue: owned by one thread, `Send`, no lock per burst.
pub struct TxQueue {
    ops: Box<dyn TxQueueOps>,
    counters: QueueCounters,
    pub(super) shared: Arc<SharedQueueStats>,
    port_id: u16,
    queue: u16,
    device: Arc<str>,
}

impl std::fmt::Debug for TxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxQueue")
            .field("device", &self.device)
            .field("queue", &self.queue)
            .finish()
    }
}

impl TxQueue {
    /// Wraps a driver queue (done by [`Port::configure`](crate::Port::configure)).
    pub fn new(ops: Box<dyn TxQueueOps>, port_id: u16, queue: u16, device: Arc<str>) -> TxQueue {
        TxQueue {
            ops,
            counters: QueueCounters::default(),
            shared: Arc::default(),
            port_id,
            queue,
            device,
        }
    }

    /// Sends packets from the front of `pkts`; what was not taken stays in `pkts`, in order.
    /// Returns how many were taken.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut Burst) -> usize {
        // An empty burst still reaches a queue that holds packets, which it then passes on.
        if pkts.is_empty() && self.ops.held() == 0 {
            return 0;
        }
        let n = self.ops.tx_burst(pkts, &mut self.counters);
        self.shared.publish(&self.counters);
        n
    }

    /// Frees buffers of packets the device has finished sending.
    pub fn reclaim(&mut self) -> usize {
        let sent = self.counters.packets;
        let n = self.ops.reclaim(&mut self.counters);
        // Only a buffering queue sends here; a device queue's reclaim publishes nothing.
        if self.counters.packets != sent {
            self.shared.publish(&self.counters);
        }
        n
    }

    /// Packets this queue took but has not handed to its device yet (a buffering queue, such as
    /// a fault port's); they go out on later [`tx_burst`](Self::tx_burst) or
    /// [`reclaim`](Self::reclaim) calls. An application that stops sending and wants every frame
    /// it counted as sent to leave calls those while this is above 0.
    pub fn held(&self) -> usize {
        self.ops.held()
    }

    /// Port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// Queue index.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// Device name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// This queue's counters (as the owner sees them).
    pub fn counters(&self) -> QueueCounters {
        self.counters
    }
}
