//! virtio-net RX interrupts: receiveq N signals on MSI-X vector 1 + N (vector 0 is the
//! configuration change, [`super::intr::CONFIG_VECTOR`]).
//!
//! The vector is written to the queue's `queue_msix_vector` in the common configuration and read
//! back: a device that cannot use it answers NO_VECTOR (virtio 1.1, "Virtqueue Configuration"
//! under "PCI-specific Initialization And Device Operation"; QEMU hw/virtio/virtio-pci.c answers
//! NO_VECTOR when the vector is beyond the ones it has). QEMU takes the write at any time, also
//! after DRIVER_OK (it re-routes the queue's notifications at once), so a started port can turn
//! RX interrupts on.
//!
//! virtio has no per-vector mask register: what keeps a polling queue quiet is the ring's own
//! suppression ([`Virtqueue::set_interrupts`]), off except during a wait. Arming drains the
//! eventfd first (an interrupt the device sent as the last wait ended, for frames polled since),
//! then turns the ring's interrupts on and looks at the ring again; disarming turns them off and
//! drains the eventfd. Without EVENT_IDX the split ring's flag is only a hint to the device
//! (virtio 1.1, "Used Buffer Notification Suppression"): an interrupt sent while polling is
//! drained at the next arm and wakes nothing.
#![forbid(unsafe_code)]

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use super::queue::VirtioRxQueue;
use super::regs::common;
use super::split::Virtqueue;
use super::{VirtioDoorbell, VirtioShared, drv_err};
use crate::burst::Burst;
use crate::driver::RxQueueOps;
use crate::error::{PortError, Result};
use crate::stats::QueueCounters;

/// A virtio-net RX queue as the port layer sees it. Field order: the interrupt is detached
/// before the queue's drop resets the device.
pub(super) struct RxQueueBox<Q: Virtqueue> {
    intr: Option<VirtioRxInterrupt>,
    rxq: VirtioRxQueue<VirtioDoorbell, Q>,
    shared: Arc<VirtioShared>,
    /// Its virtqueue index (2 x queue).
    index: u16,
}

impl<Q: Virtqueue> RxQueueBox<Q> {
    pub(super) fn new(rxq: VirtioRxQueue<VirtioDoorbell, Q>, shared: Arc<VirtioShared>, index: u16) -> Self {
        RxQueueBox {
            intr: None,
            rxq,
            shared,
            index,
        }
    }
}

impl<Q: Virtqueue> RxQueueOps for RxQueueBox<Q> {
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        self.rxq.rx_burst(out, c)
    }

    fn enable_interrupt(&mut self, _device: &str, queue: u16) -> Result<()> {
        if self.intr.is_none() {
            self.intr = Some(VirtioRxInterrupt::enable(self.shared.clone(), queue, self.index)?);
        }
        Ok(())
    }

    fn interrupt_fd(&self) -> Option<BorrowedFd<'_>> {
        self.intr.as_ref().and_then(VirtioRxInterrupt::fd)
    }

    fn arm_interrupt(&mut self) -> Result<bool> {
        if let Some(i) = &self.intr {
            i.drain()?;
        }
        Ok(self.rxq.arm_interrupt())
    }

    fn disarm_interrupt(&mut self) -> Result<()> {
        self.rxq.disarm_interrupt();
        match &self.intr {
            Some(i) => i.drain(),
            None => Ok(()),
        }
    }
}

/// The MSI-X vector of one RX virtqueue; dropping it gives the queue NO_VECTOR again.
struct VirtioRxInterrupt {
    shared: Arc<VirtioShared>,
    irqs: Arc<oxpmd_vfio::Interrupts>,
    index: u16,
    vector: u16,
}

impl VirtioRxInterrupt {
    /// Enables MSI-X (once per device) and routes virtqueue `index` (receiveq `queue`) to its
    /// vector; refused when the device has too few vectors or answers NO_VECTOR.
    fn enable(shared: Arc<VirtioShared>, queue: u16, index: u16) -> Result<VirtioRxInterrupt> {
        let name = shared.name.clone();
        let irqs = shared
            .msix
            .get(&shared.device)
            .map_err(|e| drv_err(&name, "enable MSI-X for RX interrupts", e))?;
        let vector = super::intr::CONFIG_VECTOR + 1 + queue;
        let refused = |why: String| PortError::InvalidConfig {
            device: name.clone(),
            op: "enable RX interrupt",
            reason: format!("RX queue {queue} (virtqueue {index}) needs MSI-X vector {vector}: {why}"),
        };
        if usize::from(vector) >= irqs.len() {
            return Err(refused(format!(
                "the device offers {} vectors (QEMU: raise virtio-net-pci `vectors`)",
                irqs.len()
            )));
        }
        let got = shared
            .set_queue_vector(index, vector)
            .map_err(|e| drv_err(&name, "set the RX queue's MSI-X vector", e))?;
        if got != vector {
            return Err(refused(format!(
                "the device answered {got:#06x} (NO_VECTOR is {:#06x}) for queue_msix_vector: it \
                 cannot signal this queue; poll it instead",
                common::NO_VECTOR
            )));
        }
        Ok(VirtioRxInterrupt {
            shared,
            irqs,
            index,
            vector,
        })
    }

    /// Consumes the vector's eventfd count.
    fn drain(&self) -> Result<()> {
        self.irqs
            .take_count(usize::from(self.vector))
            .map(|_| ())
            .map_err(|e| drv_err(&self.shared.name, "read the RX interrupt", e))
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.irqs.eventfd(usize::from(self.vector)).map(|f| f.as_fd())
    }
}

impl Drop for VirtioRxInterrupt {
    fn drop(&mut self) {
        // After a teardown reset the device has forgotten every vector: nothing to undo.
        if self.shared.stopped.is_done() {
            return;
        }
        if let Err(e) = self.shared.set_queue_vector(self.index, common::NO_VECTOR) {
            log::warn!(
                "{}: virtqueue {} interrupt off: {e}",
                self.shared.name,
                self.index
            );
        }
    }
}

impl VirtioShared {
    /// Writes virtqueue `index`'s `queue_msix_vector` and returns what the device reads back.
    /// `queue_select` is shared by every queue of the device: the lock keeps two queues (on two
    /// threads) from selecting under each other.
    fn set_queue_vector(&self, index: u16, vector: u16) -> std::result::Result<u16, oxpmd_vfio::BarError> {
        let _g = self.queue_select.lock().unwrap_or_else(|p| p.into_inner());
        self.w16(common::QUEUE_SELECT, index)?;
        self.w16(common::QUEUE_MSIX_VECTOR, vector)?;
        self.r16(common::QUEUE_MSIX_VECTOR)
    }
}
