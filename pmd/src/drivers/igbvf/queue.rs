//! igbvf queues on the shared advanced descriptor ring: ring memory (a [`RingSlice`] of a DMA
//! region mapped through the VF's VFIO container), the queue's tail / enable registers, and the
//! [`RxQueueOps`] / [`TxQueueOps`] wrappers.
// One `unsafe impl` (QueueRegs); no unsafe block.
#![deny(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxpmd_vfio::Register;

use super::VfShared;
use crate::adv_ring::{AdvRxRing, QueueRegs};
use crate::burst::Burst;
use crate::driver::RxQueueOps;
use crate::drivers::igb::regs::queue as qregs;
use crate::iommu::RingSlice;
use crate::stats::QueueCounters;

/// RX or TX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VfDir {
    Rx,
    Tx,
}

impl VfDir {
    pub(crate) fn name(self) -> &'static str {
        match self {
            VfDir::Rx => "RX",
            VfDir::Tx => "TX",
        }
    }
}

/// How long a queue disable may take before it is reported (igb's value; its `queue` module is
/// private to the igb driver).
const QUEUE_DISABLE_TIMEOUT: Duration = Duration::from_millis(100);

/// Where a port's queue registers are: a VF's own BAR (queue `q` at 0x2800 / 0x3800 + 0x100 q)
/// or a PF pool's hardware queues in the PF's BAR (0xC000 / 0xE000 + 0x40 q).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueLayout {
    rx_base: usize,
    tx_base: usize,
    stride: usize,
}

impl QueueLayout {
    /// The VF register map.
    pub(crate) const VF: QueueLayout = QueueLayout {
        rx_base: 0x2800,
        tx_base: 0x3800,
        stride: 0x100,
    };

    /// Queue 0 of the port is hardware queue `hwq` of the PF.
    pub(crate) const fn pf_queue(hwq: u16) -> QueueLayout {
        QueueLayout {
            rx_base: 0xC000 + 0x40 * hwq as usize,
            tx_base: 0xE000 + 0x40 * hwq as usize,
            stride: 0x40,
        }
    }

    /// Offset of register `field` of queue `q` in direction `dir`.
    pub(crate) fn reg(&self, dir: VfDir, q: u16, field: usize) -> usize {
        let base = match dir {
            VfDir::Rx => self.rx_base,
            VfDir::Tx => self.tx_base,
        };
        base + self.stride * usize::from(q) + field
    }
}

/// Clears a queue's enable bit and waits until it reads back off.
pub(crate) fn disable_queue(shared: &VfShared, dir: VfDir, q: u16) -> bool {
    let ctl = shared.layout.reg(dir, q, qregs::DCTL);
    let Ok(v) = shared.bar.read32(ctl) else {
        return false;
    };
    if v & qregs::DCTL_ENABLE == 0 {
        return true;
    }
    if shared.bar.write32(ctl, v & !qregs::DCTL_ENABLE).is_err() {
        return false;
    }
    let start = Instant::now();
    loop {
        match shared.bar.read32(ctl) {
            Ok(v) if v & qregs::DCTL_ENABLE == 0 => return true,
            Ok(_) if start.elapsed() < QUEUE_DISABLE_TIMEOUT => std::thread::yield_now(),
            _ => {
                log::error!(
                    "{}: {} queue {q}: still enabled {QUEUE_DISABLE_TIMEOUT:?} after clearing it",
                    shared.name,
                    dir.name()
                );
                return false;
            }
        }
    }
}

/// The tail and enable registers of one VF queue.
pub(crate) struct VfQueueRegs {
    shared: Arc<VfShared>,
    tail: Register,
    dir: VfDir,
    queue: u16,
}

impl VfQueueRegs {
    pub(crate) fn new(shared: Arc<VfShared>, dir: VfDir, queue: u16) -> Result<Self, oxpmd_vfio::BarError> {
        let tail = shared.bar.register(shared.layout.reg(dir, queue, qregs::DT))?;
        Ok(VfQueueRegs {
            shared,
            tail,
            dir,
            queue,
        })
    }
}

// SAFETY: `try_disable` returns true only once RXDCTL/TXDCTL.ENABLE reads back 0 (the 82576 then
// fetches and writes back no more descriptors of the queue); `stop_device_dma` only once bus
// mastering is off in the VF's config space (no DMA at all). `disable` goes through `try_disable`.
#[allow(unsafe_code)]
unsafe impl QueueRegs for VfQueueRegs {
    #[inline(always)]
    fn write_tail(&mut self, tail: u32) {
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
        let Some(device) = self.shared.device.as_ref() else {
            // A PF pool port: the device is the PF, owned by the PF host; its bus mastering
            // cannot be turned off from here (the ring then leaks its buffers).
            log::error!(
                "{}: {} queue {}: no VFIO device of its own (PF pool port): DMA cannot be stopped",
                self.shared.name,
                self.dir.name(),
                self.queue
            );
            return false;
        };
        crate::iommu::stop_bus_master(device, &self.shared.name, self.dir.name(), self.queue, "VF")
    }
}

/// An igbvf RX queue.
pub(crate) struct VfRxQueue {
    pub(crate) ring: AdvRxRing<VfQueueRegs, RingSlice>,
    pub(crate) shared: Arc<VfShared>,
    pub(crate) intr: Option<super::intr::VfRxInterrupt>,
}

impl RxQueueOps for VfRxQueue {
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        self.ring.rx_burst(out, c)
    }

    fn enable_interrupt(&mut self, _device: &str, queue: u16) -> crate::error::Result<()> {
        if self.intr.is_none() {
            self.intr = Some(super::intr::VfRxInterrupt::enable(self.shared.clone(), queue)?);
        }
        Ok(())
    }

    fn interrupt_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.intr.as_ref().and_then(super::intr::VfRxInterrupt::fd)
    }

    fn arm_interrupt(&mut self) -> crate::error::Result<bool> {
        if let Some(i) = &self.intr {
            i.arm()?;
        }
        // After the unmask: a frame written before it is seen here.
        Ok(self.ring.has_pending())
    }

    fn disarm_interrupt(&mut self) -> crate::error::Result<()> {
        match &self.intr {
            Some(i) => i.disarm(),
            None => Ok(()),
        }
    }
}
