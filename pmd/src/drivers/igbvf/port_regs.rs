//! Where an igbvf port's registers are: a VF's own BAR0, or, for a port on the PF's own pool,
//! hardware queues of the PF in the PF's BAR0; and how the shared queue code reaches them
//! ([`QueueDevice`]).
#![deny(unsafe_code)]

use oxpmd_vfio::{BarView, Register};

use super::VfShared;
use super::regs::{self, VfReg};
use crate::drivers::igb::regs::{IgbReg, general, queue as pf_queue};
use crate::drivers::igb_family::queue_regs::QueueReg;
use crate::drivers::igb_family::{Dir, QueueDevice};

/// A port's registers, each view checked at open to hold every register it is read through.
pub(crate) enum PortRegs {
    /// A VF's own BAR0.
    Vf(BarView<VfReg>),
    /// A port on the PF's own pool: its queue `q` is hardware queue `hwq + q` of the PF.
    PfPool {
        /// The PF's BAR0.
        pf: BarView<IgbReg>,
        /// The port's first hardware queue.
        hwq: u16,
    },
}

impl PortRegs {
    /// The VF's own registers (`None` for a PF pool port: no mailbox, interrupts or counters
    /// of its own).
    pub(crate) fn vf(&self) -> Option<&BarView<VfReg>> {
        match self {
            PortRegs::Vf(v) => Some(v),
            PortRegs::PfPool { .. } => None,
        }
    }

    /// STATUS (the VF's mirrors the PF's).
    pub(crate) fn status(&self) -> u32 {
        match self {
            PortRegs::Vf(v) => v.read(regs::STATUS),
            PortRegs::PfPool { pf, .. } => pf.read(general::STATUS),
        }
    }
}

// SAFETY: `read_queue` is a volatile read of the BAR that holds the port's queues (the VF's, or
// the PF's for a PF pool port; no cached value); `stop_bus_master` returns true only once bus
// mastering is off in the VF's command register (a PF pool port has no device of its own and
// returns false).
#[allow(unsafe_code)]
unsafe impl QueueDevice for VfShared {
    fn name(&self) -> &str {
        &self.name
    }

    fn read_queue(&self, dir: Dir, q: u16, r: QueueReg) -> u32 {
        match &self.regs {
            PortRegs::Vf(v) => v.read(VfReg::queue(dir, q, r)),
            PortRegs::PfPool { pf, hwq } => pf.read(pf_queue::reg(dir, hwq + q, r)),
        }
    }

    fn write_queue(&self, dir: Dir, q: u16, r: QueueReg, v: u32) {
        match &self.regs {
            PortRegs::Vf(b) => b.write(VfReg::queue(dir, q, r), v),
            PortRegs::PfPool { pf, hwq } => pf.write(pf_queue::reg(dir, hwq + q, r), v),
        }
    }

    fn tail(&self, dir: Dir, q: u16) -> Register {
        match &self.regs {
            PortRegs::Vf(v) => v.register(VfReg::queue(dir, q, QueueReg::DT)),
            PortRegs::PfPool { pf, hwq } => pf.register(pf_queue::reg(dir, hwq + q, QueueReg::DT)),
        }
    }

    fn stop_bus_master(&self, dir: Dir, q: u16) -> bool {
        let Some(device) = self.device.as_ref() else {
            // A PF pool port: the device is the PF, owned by the PF host; its bus mastering
            // cannot be turned off from here (the ring then leaks its buffers).
            log::error!(
                "{}: {} queue {q}: no VFIO device of its own (PF pool port): DMA cannot be stopped",
                self.name,
                dir.name(),
            );
            return false;
        };
        crate::iommu::stop_bus_master(device, &self.name, dir.name(), q, "VF")
    }
}
