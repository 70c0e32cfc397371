//! RX interrupts of a VF: its RX queue 0 on its MSI-X vector 0 (VTIVAR0 bits 7:0), masked
//! (VTEIMC) until armed (VTEIMS), auto-cleared on delivery (VTEIAC), as the kernel's igbvf
//! routes it (RX vector 0, TX 1, mailbox 2). QEMU's model forwards a VF's causes to the VF's own
//! MSI-X vectors (hw/net/igb_core.c `igb_msix_notify`); a PF must have put the device in MSI-X
//! mode (GPIE), which our PF host does.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use oxpmd_vfio::{BarView, Interrupts, IrqKind};

use super::regs::{VTEIAC, VTEICR, VTEIMC, VTEIMS, VTIVAR0, VfReg};
use super::{IgbvfError, VfShared, drv_err};
use crate::error::{PortError, Result};

/// VTIVAR entry: the vector is valid.
const IVAR_VALID: u32 = 0x80;
/// The vector of RX queue 0.
const RX_VECTOR: u32 = 0;
/// MSI-X vectors of an 82576 VF.
const VF_VECTORS: u32 = 3;

fn vfio(e: oxpmd_vfio::Error) -> IgbvfError {
    IgbvfError::Vfio {
        source: Box::new(e),
        hint: "",
    }
}

/// RX queue 0's interrupt.
pub(crate) struct VfRxInterrupt {
    shared: Arc<VfShared>,
    /// The VF's registers (a PF pool port has no interrupt of its own).
    regs: BarView<VfReg>,
    irqs: Interrupts,
}

impl VfRxInterrupt {
    /// Enables the VF's MSI-X vectors through VFIO and routes RX queue 0 to vector 0, masked.
    pub(crate) fn enable(shared: Arc<VfShared>, queue: u16) -> Result<VfRxInterrupt> {
        let name = shared.name.clone();
        let (Some(device), Some(b)) = (shared.device.as_ref(), shared.regs.vf()) else {
            // A PF pool port: its interrupts are the PF host's.
            return Err(PortError::NoRxInterrupt { device: name, queue });
        };
        let irqs = device
            .enable_irqs(IrqKind::Msix, VF_VECTORS)
            .map_err(|e| drv_err(&name, "enable MSI-X for RX interrupts", vfio(e)))?;
        let bit = 1u32 << RX_VECTOR;
        b.write(VTEIMC, bit);
        b.modify(VTIVAR0, IVAR_VALID | RX_VECTOR, 0xFF);
        b.modify(VTEIAC, bit, 0);
        let regs = b.clone();
        Ok(VfRxInterrupt { shared, regs, irqs })
    }

    /// Unmasks the vector, its cause cleared first (frames the last poll took left it set), and
    /// with it any count the eventfd got after the last disarm took it (as igb's `arm` says).
    pub(crate) fn arm(&self) -> Result<()> {
        let bit = 1u32 << RX_VECTOR;
        let b = &self.regs;
        b.write(VTEICR, bit);
        self.irqs
            .take_count(RX_VECTOR as usize)
            .map_err(|e| drv_err(&self.shared.name, "read the RX interrupt", vfio(e)))?;
        b.write(VTEIMS, bit);
        Ok(())
    }

    /// Masks the vector and consumes its count.
    pub(crate) fn disarm(&self) -> Result<()> {
        let name = &self.shared.name;
        self.regs.write(VTEIMC, 1 << RX_VECTOR);
        self.irqs
            .take_count(RX_VECTOR as usize)
            .map(|_| ())
            .map_err(|e| drv_err(name, "read the RX interrupt", vfio(e)))
    }

    /// The vector's eventfd.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.irqs.eventfd(RX_VECTOR as usize).map(|f| f.as_fd())
    }
}

impl Drop for VfRxInterrupt {
    fn drop(&mut self) {
        let b = &self.regs;
        b.write(VTEIMC, 1 << RX_VECTOR);
        b.modify(VTIVAR0, 0, 0xFF);
    }
}
