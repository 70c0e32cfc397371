//! igb queues on top of the shared advanced descriptor ring: the queue's registers (tail, enable)
//! and the [`RxQueueOps`] wrapper (the TX wrapper is shared with igbvf: `drivers::adv_tx_queue`).
//!
//! The only unsafe code of the driver: the `QueueRegs` implementation below.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxpmd_vfio::Register;

use std::os::fd::BorrowedFd;

use super::IgbShared;
use super::intr::IgbRxInterrupt;
use super::regs::{Reg, queue};
use crate::adv_ring::{AdvRxRing, QueueRegs};
use crate::burst::Burst;
use crate::driver::RxQueueOps;
use crate::error::Result;
use crate::iommu::RingSlice;
use crate::stats::QueueCounters;

/// How long a queue disable may take before it is reported.
pub(crate) const QUEUE_DISABLE_TIMEOUT: Duration = Duration::from_millis(100);

/// Direction of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Rx,
    Tx,
}

impl Dir {
    pub(crate) fn reg(self, q: u16, field: usize) -> Reg {
        match self {
            Dir::Rx => queue::rx(q, field),
            Dir::Tx => queue::tx(q, field),
        }
    }
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dir::Rx => "RX",
            Dir::Tx => "TX",
        }
    }
}

/// Clears a queue's enable bit and waits until the device reports it off. Returns false (and
/// logs) when it did not turn off in time.
pub(crate) fn disable_queue(shared: &IgbShared, dir: Dir, q: u16) -> bool {
    let ctl = dir.reg(q, queue::DCTL);
    let Ok(v) = shared.read(ctl) else { return false };
    if v & queue::DCTL_ENABLE == 0 {
        return true;
    }
    if shared.write(ctl, v & !queue::DCTL_ENABLE).is_err() {
        return false;
    }
    let start = Instant::now();
    loop {
        match shared.read(ctl) {
            Ok(v) if v & queue::DCTL_ENABLE == 0 => return true,
            Ok(_) if start.elapsed() < QUEUE_DISABLE_TIMEOUT => std::thread::yield_now(),
            _ => {
                log::error!(
                    "{}: {} queue {q}: still enabled {:?} after clearing its enable bit",
                    shared.name,
                    dir.name(),
                    QUEUE_DISABLE_TIMEOUT
                );
                return false;
            }
        }
    }
}

/// RX tail writes are batched: RDT is written once at least this many descriptors were
/// returned since the last write (DPDK's igb does the same with rx_free_thresh = 32). Every tail
/// write is a trap into the device model under emulation; on hardware it is a posted PCIe write.
pub(crate) const RX_TAIL_THRESH: u32 = 32;

/// The registers one ring drives: its tail, and its enable bit for the teardown.
pub(crate) struct IgbQueueRegs {
    shared: Arc<IgbShared>,
    tail: Register,
    dir: Dir,
    queue: u16,
    /// RX: the tail value last written and the ring size (for the batching).
    last_tail: Option<u32>,
    ring_size: u32,
}

impl IgbQueueRegs {
    pub(crate) fn new(
        shared: Arc<IgbShared>,
        dir: Dir,
        queue: u16,
        ring_size: usize,
    ) -> Result<Self, oxpmd_vfio::BarError> {
        let tail = shared.bar.register(dir.reg(queue, queue::DT).off())?;
        Ok(IgbQueueRegs {
            shared,
            tail,
            dir,
            queue,
            last_tail: None,
            ring_size: ring_size as u32,
        })
    }
}

// SAFETY: `try_disable` returns true only once RXDCTL/TXDCTL.ENABLE reads back 0 (the 82576 then
// fetches and writes back no more descriptors of the queue); `stop_device_dma` only once bus
// mastering is off in the PF's config space (no DMA at all). `disable` goes through `try_disable`.
unsafe impl QueueRegs for IgbQueueRegs {
    #[inline(always)]
    fn write_tail(&mut self, tail: u32) {
        if self.dir == Dir::Rx {
            // Hand descriptors back in batches: the device keeps all but at most
            // RX_TAIL_THRESH - 1 of the free ones in view. TX tails are never delayed (QEMU
            // transmits inside the TDT write; hardware starts on it).
            if let Some(last) = self.last_tail {
                let advanced = (tail + self.ring_size - last) % self.ring_size.max(1);
                if advanced < RX_TAIL_THRESH.min(self.ring_size / 4) {
                    return;
                }
            }
            self.last_tail = Some(tail);
        }
        self.tail.write(tail);
    }

    fn disable(&mut self) {
        self.try_disable();
    }

    fn try_disable(&mut self) -> bool {
        disable_queue(&self.shared, self.dir, self.queue)
    }

    fn stop_device_dma(&mut self) -> bool {
        // The whole port loses DMA: only reached when one of its queues would not stop.
        let s = &self.shared;
        crate::iommu::stop_bus_master(&s.device, &s.name, self.dir.name(), self.queue, "port")
    }
}

/// An igb RX queue. Field order: the interrupt is detached before the ring is disabled and freed.
pub(crate) struct IgbRxQueue {
    pub(crate) intr: Option<IgbRxInterrupt>,
    pub(crate) ring: AdvRxRing<IgbQueueRegs, RingSlice>,
    pub(crate) shared: Arc<IgbShared>,
}

impl RxQueueOps for IgbRxQueue {
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        self.ring.rx_burst(out, c)
    }

    fn enable_interrupt(&mut self, _device: &str, queue: u16) -> Result<()> {
        if self.intr.is_none() {
            self.intr = Some(IgbRxInterrupt::enable(self.shared.clone(), queue)?);
        }
        Ok(())
    }

    fn interrupt_fd(&self) -> Option<BorrowedFd<'_>> {
        self.intr.as_ref().and_then(IgbRxInterrupt::fd)
    }

    fn arm_interrupt(&mut self) -> Result<bool> {
        if let Some(i) = &self.intr {
            i.arm()?;
        }
        // After the unmask: a frame written before it is seen here.
        Ok(self.ring.has_pending())
    }

    fn disarm_interrupt(&mut self) -> Result<()> {
        match &self.intr {
            Some(i) => i.disarm(),
            None => Ok(()),
        }
    }
}
