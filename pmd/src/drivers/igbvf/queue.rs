//! igbvf queues on the shared advanced descriptor ring: the [`RxQueueOps`] / [`TxQueueOps`]
//! wrappers, which rebuild their rings after a reset.
// One unsafe block: the TX ring's discard after a reset.
#![deny(unsafe_code)]

use std::sync::Arc;

use super::VfShared;
use crate::adv_ring::AdvRxRing;
use crate::burst::Burst;
use crate::driver::{RxQueueOps, TxQueueOps};
use crate::drivers::igb_family::Dir;
use crate::drivers::igb_family::queue_ctl::{disable_queue, start_queue};
use crate::drivers::igb_family::ring_regs::RingRegs;
use crate::drivers::igb_family::tx_queue::AdvTxQueue;
use crate::iommu::RingSlice;
use crate::stats::QueueCounters;

/// The registers a ring of the VF drives.
pub(crate) type VfQueueRegs = RingRegs<VfShared>;

/// Where a queue stands in a recovery (see `super::recovery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rebuild {
    /// Built in the current epoch.
    Current,
    /// Disabled (read back), its ring not rebuilt yet.
    Quiesced,
    /// It would not disable: its ring is never touched again (its `Drop` decides: stop the
    /// device's DMA or leak).
    Failed,
}

/// Disables queue `q` for a rebuild: its live flag first (the watchdog must not take the
/// disable for a reset), then the enable bit, read back.
fn quiesce_for_rebuild(shared: &VfShared, dir: Dir, q: u16) -> Rebuild {
    shared.recovery.clear_live_one(dir, q);
    if disable_queue(shared, dir, q) {
        Rebuild::Quiesced
    } else {
        log::error!(
            "{}: {} queue {q}: it would not disable after a reset; it stays stopped (reopen \
             the port)",
            shared.name,
            dir.name()
        );
        Rebuild::Failed
    }
}

/// An igbvf RX queue.
pub(crate) struct VfRxQueue {
    pub(crate) ring: AdvRxRing<VfQueueRegs, RingSlice>,
    pub(crate) shared: Arc<VfShared>,
    pub(crate) intr: Option<super::intr::VfRxInterrupt>,
    queue: u16,
    /// SRRCTL as set up (written again after a reset).
    srrctl: u32,
    /// The recovery epoch the ring was built in.
    epoch: u64,
    state: Rebuild,
}

impl VfRxQueue {
    pub(crate) fn new(
        ring: AdvRxRing<VfQueueRegs, RingSlice>,
        shared: Arc<VfShared>,
        queue: u16,
        srrctl: u32,
    ) -> Self {
        let epoch = shared.recovery.epoch();
        VfRxQueue {
            ring,
            shared,
            intr: None,
            queue,
            srrctl,
            epoch,
            state: Rebuild::Current,
        }
    }

    /// The VF was reset since the ring was built: disable, hand out the frames written back
    /// before the loss, then post every slot's buffer again and restart the queue.
    #[cold]
    fn rebuild(&mut self, epoch: u64, out: &mut Burst, c: &mut QueueCounters) -> usize {
        let s = self.shared.clone();
        if self.state == Rebuild::Current {
            self.state = quiesce_for_rebuild(&s, Dir::Rx, self.queue);
        }
        if self.state == Rebuild::Failed {
            return 0;
        }
        // Frames the device completed before it lost the queue were received: deliver them.
        if self.ring.has_pending() {
            return self.ring.rx_burst(out, c);
        }
        self.ring.repost_all();
        let (iova, len) = (self.ring.iova(), self.ring.len_bytes());
        if let Err(e) = start_queue(&*s, Dir::Rx, self.queue, iova, len, Some(self.srrctl)) {
            // The PF or the VF went away again: the next burst disables (read back) and tries
            // again.
            log::warn!("{}: RX queue {}: restart after a reset: {e}", s.name, self.queue);
            self.state = Rebuild::Current;
            return 0;
        }
        self.ring.arm();
        if let Some(i) = self.intr.take() {
            // The reset dropped the queue's routing to its vector.
            drop(i);
            match super::intr::VfRxInterrupt::enable(s.clone(), self.queue) {
                Ok(i) => self.intr = Some(i),
                Err(e) => log::error!(
                    "{}: RX queue {}: RX interrupt after a reset: {e}",
                    s.name,
                    self.queue
                ),
            }
        }
        s.recovery.set_live(Dir::Rx, self.queue);
        s.recovery.queue_back();
        self.epoch = epoch;
        self.state = Rebuild::Current;
        log::info!("{}: RX queue {}: rebuilt after the reset", s.name, self.queue);
        0
    }
}

impl Drop for VfRxQueue {
    fn drop(&mut self) {
        // The ring disables the queue next: not a loss for the reset watchdog.
        self.shared.recovery.clear_live_one(Dir::Rx, self.queue);
    }
}

impl RxQueueOps for VfRxQueue {
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        let epoch = self.shared.recovery.epoch();
        if epoch != self.epoch || self.state != Rebuild::Current {
            return self.rebuild(epoch, out, c);
        }
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

/// An igbvf TX queue: the shared advanced TX queue, rebuilt after a reset.
pub(crate) struct VfTxQueue {
    inner: AdvTxQueue<VfQueueRegs>,
    shared: Arc<VfShared>,
    queue: u16,
    epoch: u64,
    state: Rebuild,
}

impl VfTxQueue {
    pub(crate) fn new(inner: AdvTxQueue<VfQueueRegs>, shared: Arc<VfShared>, queue: u16) -> Self {
        let epoch = shared.recovery.epoch();
        VfTxQueue {
            inner,
            shared,
            queue,
            epoch,
            state: Rebuild::Current,
        }
    }

    /// The VF was reset since the ring was built: disable, give the packets still in the ring
    /// back to their pools (counted as lost), restart the queue. False while it cannot send.
    #[cold]
    fn rebuild(&mut self, epoch: u64) -> bool {
        let s = self.shared.clone();
        if self.state == Rebuild::Current {
            self.state = quiesce_for_rebuild(&s, Dir::Tx, self.queue);
        }
        if self.state == Rebuild::Failed {
            return false;
        }
        // What the device marked done before it lost the queue was sent: freed as usual, not
        // counted as lost.
        self.inner.ring.cleanup();
        // SAFETY: the queue's enable bit read back 0 just now (quiesce_for_rebuild: every call
        // here starts in `Current`): the device no longer reads its descriptors or buffers.
        #[allow(unsafe_code)]
        let lost = unsafe { self.inner.ring.discard_in_flight() };
        s.recovery.add_tx_dropped(lost);
        let ring = &self.inner.ring;
        if let Err(e) = start_queue(&*s, Dir::Tx, self.queue, ring.iova(), ring.len_bytes(), None) {
            // The next call disables (read back) and tries again; the ring stays empty until then.
            log::warn!("{}: TX queue {}: restart after a reset: {e}", s.name, self.queue);
            self.state = Rebuild::Current;
            return false;
        }
        self.epoch = epoch;
        self.state = Rebuild::Current;
        s.recovery.set_live(Dir::Tx, self.queue);
        log::info!("{}: TX queue {}: rebuilt after the reset", s.name, self.queue);
        true
    }
}

impl Drop for VfTxQueue {
    fn drop(&mut self) {
        self.shared.recovery.clear_live_one(Dir::Tx, self.queue);
    }
}

impl TxQueueOps for VfTxQueue {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        // `down` before the epoch: once `down` reads false, the epoch of that recovery is seen.
        let down = self.shared.recovery.is_down();
        let epoch = self.shared.recovery.epoch();
        if (epoch != self.epoch || self.state != Rebuild::Current) && !self.rebuild(epoch) || down {
            // The VF is reset (or its queue could not restart): nothing would be sent.
            let n = pkts.len();
            pkts.clear();
            self.shared.recovery.add_tx_dropped(n);
            return n;
        }
        self.inner.tx_burst(pkts, c)
    }

    fn reclaim(&mut self, c: &mut QueueCounters) -> usize {
        let epoch = self.shared.recovery.epoch();
        if (epoch != self.epoch || self.state != Rebuild::Current) && !self.rebuild(epoch) {
            return 0;
        }
        self.inner.reclaim(c)
    }
}
