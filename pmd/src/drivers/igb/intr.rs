//! igb interrupts: link-state events (ICR.LSC routed to MSI-X vector 0, "other causes") and RX
//! queue q's interrupt on vector 1 + q.
//!
//! What the 82576 (and QEMU's model of it) needs for an LSC to reach an eventfd: GPIE.MSIX_MODE
//! (EICR bits name vectors), IVAR_MISC's "other causes" entry valid and pointing at the vector,
//! IMS.LSC (the cause enabled), EIMS for the vector (the vector enabled) and EIAC for it (its EICR
//! bit clears when the message is sent, so the next LSC raises a new one). An interrupt is only
//! raised for a cause not already pending in ICR, so every wake-up reads ICR (clear on read with
//! GPIE.NSICR) before it reads STATUS: a change that lands between the two is then either in the
//! STATUS read or raises a fresh interrupt.
//!
//! An RX queue's vector: IVAR0[q] bits 7:0 name it (valid bit set), EIAC auto-clears its EICR bit,
//! and EIMS / EIMC unmask and mask it around each wait. A frame written while the vector is
//! masked leaves its EICR bit set, and unmasking would raise the interrupt at once; arming clears
//! that bit first (those frames were polled already, or are found by the look at the ring that
//! follows the unmask), so an idle queue does not wake for frames it has taken.
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use super::regs::{general, interrupt};
use super::{IgbShared, drv_err, link_from_status};
use crate::driver::LinkStatus;
use crate::error::{PortError, Result};
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
        src.program();
        Ok(src)
    }

    fn program(&self) {
        let s = &self.shared;
        let bit = 1u32 << LINK_VECTOR;
        msix_mode(s);
        s.modify(
            interrupt::IVAR_MISC,
            (interrupt::IVAR_VALID | LINK_VECTOR) << interrupt::IVAR_MISC_OTHER_SHIFT,
            0xFF << interrupt::IVAR_MISC_OTHER_SHIFT,
        );
        s.modify(interrupt::EIAC, bit, 0);
        // A stale LSC left pending would keep the next one from raising an interrupt.
        s.read(interrupt::ICR);
        s.write(interrupt::IMS, interrupt::ICR_LSC);
        s.write(interrupt::EIMS, bit);
    }
}

/// GPIE for MSI-X vectors: EICR bits name vectors, ICR clears on read, PBA support.
fn msix_mode(s: &IgbShared) {
    s.modify(
        interrupt::GPIE,
        interrupt::GPIE_MSIX_MODE | interrupt::GPIE_NSICR | interrupt::GPIE_PBA,
        0,
    );
}

impl LinkEventSource for IgbLinkSource {
    fn read_link(&mut self) -> Result<LinkStatus> {
        Ok(link_from_status(self.shared.read(general::STATUS)))
    }

    fn take_wakeup(&mut self) -> Result<bool> {
        if !self.wake.take()? {
            return Ok(false);
        }
        self.shared.read(interrupt::ICR);
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
        s.write(interrupt::IMC, interrupt::ICR_LSC);
        s.write(interrupt::EIMC, 1 << LINK_VECTOR);
        s.modify(interrupt::IVAR_MISC, 0, 0xFF << interrupt::IVAR_MISC_OTHER_SHIFT);
        s.msix.release_link();
    }
}

/// An RX queue's interrupt: MSI-X vector 1 + q.
pub(crate) struct IgbRxInterrupt {
    shared: Arc<IgbShared>,
    irqs: Arc<oxpmd_vfio::Interrupts>,
    queue: u16,
    vector: u32,
}

impl IgbRxInterrupt {
    /// Routes RX queue `queue` to its vector, masked.
    pub(crate) fn enable(shared: Arc<IgbShared>, queue: u16) -> Result<IgbRxInterrupt> {
        let name = shared.name.clone();
        let irqs = shared
            .msix
            .get(&shared.device)
            .map_err(|e| drv_err(&name, "enable MSI-X for RX interrupts", e))?;
        let vector = 1 + u32::from(queue);
        if vector as usize >= irqs.len() {
            return Err(PortError::InvalidConfig {
                device: name,
                op: "enable RX interrupt",
                reason: format!(
                    "RX queue {queue} needs MSI-X vector {vector}; the device offers {} vectors",
                    irqs.len()
                ),
            });
        }
        let intr = IgbRxInterrupt {
            shared,
            irqs,
            queue,
            vector,
        };
        intr.program();
        Ok(intr)
    }

    fn program(&self) {
        let s = &self.shared;
        msix_mode(s);
        s.write(interrupt::EIMC, 1 << self.vector);
        s.modify(
            interrupt::ivar(self.queue),
            interrupt::IVAR_VALID | self.vector,
            0xFF,
        );
        s.modify(interrupt::EIAC, 1 << self.vector, 0);
    }

    /// Unmasks the vector. Its EICR bit is cleared first: frames the last poll already took
    /// left it set, and unmasking would then raise a wake-up for nothing. So is a count the
    /// eventfd got after the last disarm took it (an interrupt raised just before that mask,
    /// whose signal came through the host later): it too announced frames the poll took. A frame
    /// written since is in the ring, where the caller looks next.
    pub(crate) fn arm(&self) -> Result<()> {
        let bit = 1 << self.vector;
        self.shared.write(interrupt::EICR, bit);
        self.irqs
            .take_count(self.vector as usize)
            .map_err(|e| drv_err(&self.shared.name, "read the RX interrupt", e))?;
        self.shared.write(interrupt::EIMS, bit);
        Ok(())
    }

    /// Masks the vector and consumes its count.
    pub(crate) fn disarm(&self) -> Result<()> {
        let name = &self.shared.name;
        self.shared.write(interrupt::EIMC, 1 << self.vector);
        self.irqs
            .take_count(self.vector as usize)
            .map(|_| ())
            .map_err(|e| drv_err(name, "read the RX interrupt", e))
    }

    /// The vector's eventfd.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.irqs.eventfd(self.vector as usize).map(|f| f.as_fd())
    }
}

impl Drop for IgbRxInterrupt {
    fn drop(&mut self) {
        let s = &self.shared;
        s.write(interrupt::EIMC, 1 << self.vector);
        s.modify(interrupt::ivar(self.queue), 0, 0xFF);
    }
}
