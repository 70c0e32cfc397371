//! igb queues on top of the shared advanced descriptor ring: how the shared queue code reaches
//! the PF's queue registers ([`QueueDevice`]) and the [`RxQueueOps`] wrapper (the TX wrapper is
//! shared with igbvf: `igb_family::tx_queue`).
//!
//! The only unsafe code of the driver: the `QueueDevice` implementation below.
#![allow(unsafe_code)]

use std::sync::Arc;

use oxpmd_vfio::Register;

use std::os::fd::BorrowedFd;

use super::IgbShared;
use super::intr::IgbRxInterrupt;
use super::regs::queue;
use crate::adv_ring::AdvRxRing;
use crate::burst::Burst;
use crate::driver::RxQueueOps;
use crate::drivers::igb_family::queue_regs::QueueReg;
use crate::drivers::igb_family::ring_regs::RingRegs;
use crate::drivers::igb_family::{Dir, QueueDevice};
use crate::error::Result;
use crate::iommu::RingSlice;
use crate::stats::QueueCounters;

/// The registers a ring of the PF drives.
pub(crate) type IgbQueueRegs = RingRegs<IgbShared>;

// SAFETY: `read_queue` is a volatile read of the PF's BAR0 (no cached value); `stop_bus_master`
// returns true only once bus mastering is off in the PF's command register.
unsafe impl QueueDevice for IgbShared {
    fn name(&self) -> &str {
        &self.name
    }

    fn read_queue(&self, dir: Dir, q: u16, r: QueueReg) -> u32 {
        self.read(queue::reg(dir, q, r))
    }

    fn write_queue(&self, dir: Dir, q: u16, r: QueueReg, v: u32) {
        self.write(queue::reg(dir, q, r), v);
    }

    fn tail(&self, dir: Dir, q: u16) -> Register {
        self.regs.register(queue::reg(dir, q, QueueReg::DT))
    }

    fn stop_bus_master(&self, dir: Dir, q: u16) -> bool {
        crate::iommu::stop_bus_master(&self.device, &self.name, dir.name(), q, "port")
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
