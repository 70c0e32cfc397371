//! RX interrupts of a VF: its RX queue 0 on its MSI-X vector 0 (VTIVAR0 bits 7:0), masked
//! (VTEIMC) until armed (VTEIMS), auto-cleared on delivery (VTEIAC), as the kernel's igbvf
//! routes it (RX vector 0, TX 1, mailbox 2). QEMU's model forwards a VF's causes to the VF's own
//! MSI-X vectors (hw/net/igb_core.c `igb_msix_notify`); a PF must have put the device in MSI-X
//! mode (GPIE), which our PF host does.

use std::os::fd::BorrowedFd;
use std::sync::Arc;

use oxpmd_vfio::{Interrupts, IrqKind};

use super::{IgbvfError, VfShared, drv_err};
use crate::error::{PortError, Result};

/// VF registers of the interrupt block.
const VTEIMS: usize = 0x1524;
const VTEIMC: usize = 0x1528;
const VTEIAC: usize = 0x152C;
const VTEICR: usize = 0x1580;
const VTIVAR0: usize = 0x1700;
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
    irqs: Interrupts,
}

impl VfRxInterrupt {
    /// Enables the VF's MSI-X vectors through VFIO and routes RX queue 0 to vector 0, masked.
    pub(crate) fn enable(shared: Arc<VfShared>, queue: u16) -> Result<VfRxInterrupt> {
        let name = shared.name.clone();
        let Some(device) = shared.device.as_ref() else {
            // A PF pool port: its interrupts are the PF host's.
            return Err(PortError::NoRxInterrupt { device: name, queue });
        };
        let irqs = device
            .enable_irqs(IrqKind::Msix, VF_VECTORS)
            .map_err(|e| drv_err(&name, "enable MSI-X for RX interrupts", vfio(e)))?;
        let b = &shared.bar;
        let bit = 1u32 << RX_VECTOR;
        b.write32(VTEIMC, bit)
            .and_then(|()| b.read32(VTIVAR0))
            .and_then(|v| b.write32(VTIVAR0, (v & !0xFF) | IVAR_VALID | RX_VECTOR))
            .and_then(|()| b.read32(VTEIAC))
            .and_then(|v| b.write32(VTEIAC, v | bit))
            .map_err(|e| drv_err(&name, "route the RX queue to its MSI-X vector", e))?;
        Ok(VfRxInterrupt { shared, irqs })
    }

    /// Unmasks the vector, its cause cleared first (frames the last poll took left it set).
    pub(crate) fn arm(&self) -> Result<()> {
        let bit = 1u32 << RX_VECTOR;
        let b = &self.shared.bar;
        b.write32(VTEICR, bit)
            .and_then(|()| b.write32(VTEIMS, bit))
            .map_err(|e| drv_err(&self.shared.name, "arm the RX interrupt", e))
    }

    /// Masks the vector and consumes its count.
    pub(crate) fn disarm(&self) -> Result<()> {
        let name = &self.shared.name;
        self.shared
            .bar
            .write32(VTEIMC, 1 << RX_VECTOR)
            .map_err(|e| drv_err(name, "disarm the RX interrupt", e))?;
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
        let b = &self.shared.bar;
        let off = b
            .write32(VTEIMC, 1 << RX_VECTOR)
            .and_then(|()| b.read32(VTIVAR0))
            .and_then(|v| b.write32(VTIVAR0, v & !0xFF));
        if let Err(e) = off {
            log::warn!("{}: RX interrupt off: {e}", self.shared.name);
        }
    }
}
