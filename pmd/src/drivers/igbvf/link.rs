//! The VF's link, as STATUS and the PF's mailbox messages say, and its link events by polling.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::mbx::BarMailbox;
use super::regs;
use super::{VfShared, drv_err};
use crate::driver::LinkStatus;
use crate::error::Result;

/// The VF's link: STATUS.LU (the PF's physical link), held down while the PF's last message
/// said so (`oxpmd vf set ... state disable`: a CONTROL message without CTS).
pub(super) fn vf_link(shared: &VfShared, mbx: Option<&Mutex<BarMailbox>>) -> Result<LinkStatus> {
    let st = shared.regs.status();
    let pf_up = match mbx {
        Some(m) => {
            let m = m.lock().unwrap_or_else(|p| p.into_inner());
            m.poll_pf_message()
                .map_err(|e| drv_err(&shared.name, "read the PF's message", e))?;
            m.pf_link_up()
        }
        None => true,
    };
    let up = st & regs::STATUS_LU != 0 && pf_up;
    Ok(LinkStatus {
        up,
        speed_mbps: if up { 1000 } else { 0 },
        full_duplex: up && st & regs::STATUS_FD != 0,
    })
}

/// How often [`VfLinkPoll`] looks while an application waits.
const LINK_POLL: Duration = Duration::from_millis(10);

/// Link events of a VF by polling: the VF has no link interrupt of its own in QEMU's model (its
/// mailbox vector lands on its RX vector, hw/net/igb_core.c `igb_msix_notify`), and part of its
/// link is the PF's word in the mailbox. Each poll reads STATUS and any PF message (one BAR
/// read when nothing changed); a wait looks every [`LINK_POLL`].
pub(super) struct VfLinkPoll {
    pub(super) shared: Arc<VfShared>,
    pub(super) mbx: Option<Arc<Mutex<BarMailbox>>>,
}

impl crate::link_events::LinkEventSource for VfLinkPoll {
    fn read_link(&mut self) -> Result<LinkStatus> {
        vf_link(&self.shared, self.mbx.as_deref())
    }

    fn take_wakeup(&mut self) -> Result<bool> {
        // Every poll looks: there is no interrupt to say when.
        Ok(true)
    }

    fn wait_wakeup(&mut self, timeout: Duration) -> Result<bool> {
        std::thread::sleep(timeout.min(LINK_POLL));
        Ok(true)
    }

    fn wakeup_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    fn describe(&self) -> String {
        format!("polled every {LINK_POLL:?} (STATUS and the PF's mailbox messages)")
    }
}
