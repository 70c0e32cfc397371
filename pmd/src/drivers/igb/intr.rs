//! igb link-state events: ICR.LSC routed to MSI-X vector 0 ("other causes").
//!
//! What the 82576 (and QEMU's model of it) needs for an LSC to reach an eventfd: GPIE.MSIX_MODE
//! (EICR bits name vectors), IVAR_MISC's "other causes" entry valid and pointing at the vector,
//! IMS.LSC (the cause enabled), EIMS for the vector (the vector enabled) and EIAC for it (its EICR
//! bit clears when the message is sent, so the next LSC raises a new one). An interrupt is only
//! raised for a cause not already pending in ICR, so every wake-up reads ICR (clear on read with
//! GPIE.NSICR) before it reads STATUS: a change that lands between the two is then either in the
//! STATUS read or raises a fresh interrupt.
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use oxpmd_vfio::BarError;

use super::regs::{general, interrupt};
use super::{IgbShared, drv_err, link_from_status};
use crate::driver::LinkStatus;
use crate::error::Result;
use crate::link_events::{LinkEventSource, MsixWakeup};

/// The MSI-X vector of the "other causes" (LSC among them), as Linux igb uses it.
pub(crate) const LINK_VECTOR: u32 = 0;

/// The igb [`LinkEventSource`]; dropping it masks LSC and the vector again.
pub(crate) struct IgbLinkSource {
    shared: Arc<IgbShared>,
    wake: MsixWakeup,
}

impl IgbLinkSource {
    /// Enables MSI-X (once per device) and routes LSC to [`LINK_VECTOR`] (one source per port at
    /// a time).
    pub(crate) fn arm(shared: Arc<IgbShared>) -> Result<IgbLinkSource> {
        let wake = shared
            .msix
            .claim_link(&shared.device, &shared.name, LINK_VECTOR as usize)?;
        let src = IgbLinkSource { shared, wake };
        src.program()
            .map_err(|e| drv_err(&src.shared.name, "route LSC to MSI-X vector 0", e))?;
        Ok(src)
    }

    fn program(&self) -> std::result::Result<(), BarError> {
        let s = &self.shared;
        let bit = 1u32 << LINK_VECTOR;
        s.modify(
            interrupt::GPIE,
            interrupt::GPIE_MSIX_MODE | interrupt::GPIE_NSICR | interrupt::GPIE_PBA,
            0,
        )?;
        s.modify(
            interrupt::IVAR_MISC,
            (interrupt::IVAR_VALID | LINK_VECTOR) << interrupt::IVAR_MISC_OTHER_SHIFT,
            0xFF << interrupt::IVAR_MISC_OTHER_SHIFT,
        )?;
        s.modify(interrupt::EIAC, bit, 0)?;
        // A stale LSC left pending would keep the next one from raising an interrupt.
        s.read(interrupt::ICR)?;
        s.write(interrupt::IMS, interrupt::ICR_LSC)?;
        s.write(interrupt::EIMS, bit)?;
        Ok(())
    }
}

impl LinkEventSource for IgbLinkSource {
    fn read_link(&mut self) -> Result<LinkStatus> {
        let st = self
            .shared
            .read(general::STATUS)
            .map_err(|e| drv_err(&self.shared.name, "read STATUS", e))?;
        Ok(link_from_status(st))
    }

    fn take_wakeup(&mut self) -> Result<bool> {
        if !self.wake.take()? {
            return Ok(false);
        }
        self.shared
            .read(interrupt::ICR)
            .map_err(|e| drv_err(&self.shared.name, "read ICR", e))?;
        Ok(true)
    }

    fn wait_wakeup(&mut self, timeout: Duration) -> Result<bool> {
        self.wake.wait(timeout)
    }

    fn wakeup_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wake.fd()
    }

    fn describe(&self) -> String {
        format!("MSI-X vector {LINK_VECTOR} (ICR.LSC)")
    }
}

impl Drop for IgbLinkSource {
    fn drop(&mut self) {
        let s = &self.shared;
        let off = s
            .write(interrupt::IMC, interrupt::ICR_LSC)
            .and_then(|_| s.write(interrupt::EIMC, 1 << LINK_VECTOR))
            .and_then(|_| s.modify(interrupt::IVAR_MISC, 0, 0xFF << interrupt::IVAR_MISC_OTHER_SHIFT));
        if let Err(e) = off {
            log::warn!("{}: link events off: {e}", s.name);
        }
        s.msix.release_link();
    }
}
