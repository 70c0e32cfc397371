//! igbvf queues on the shared advanced descriptor ring: ring memory (a [`RingSlice`] of a DMA
//! region mapped through the VF's VFIO container), the queue's tail / enable registers, and the
//! [`RxQueueOps`] / [`TxQueueOps`] wrappers.
// One `unsafe impl` (QueueRegs) and one unsafe block (the TX ring's discard after a reset).
#![deny(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxpmd_vfio::{BarError, Register};

use super::{IgbvfError, VfShared};
use crate::adv_ring::{AdvRxRing, QueueRegs};
use crate::burst::Burst;
use crate::driver::{RxQueueOps, TxQueueOps};
use crate::drivers::adv_tx_queue::AdvTxQueue;
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

/// How long a queue enable may take to read back.
const QUEUE_ENABLE_TIMEOUT: Duration = Duration::from_millis(100);

/// Programs a ring's base and length, head = tail = 0.
fn program_ring(shared: &VfShared, dir: VfDir, q: u16, iova: u64, len: u32) -> Result<(), BarError> {
    let (b, l) = (&shared.bar, &shared.layout);
    b.write32(l.reg(dir, q, qregs::DBAL), iova as u32)?;
    b.write32(l.reg(dir, q, qregs::DBAH), (iova >> 32) as u32)?;
    b.write32(l.reg(dir, q, qregs::DLEN), len)?;
    b.write32(l.reg(dir, q, qregs::DH), 0)?;
    b.write32(l.reg(dir, q, qregs::DT), 0)?;
    Ok(())
}

/// Sets the queue's enable bit and waits until it reads back.
fn enable_queue(shared: &VfShared, dir: VfDir, q: u16) -> Result<(), IgbvfError> {
    let ctl = shared.layout.reg(dir, q, qregs::DCTL);
    shared.bar.write32(ctl, qregs::DCTL_ENABLE)?;
    let t = Instant::now();
    loop {
        if shared.bar.read32(ctl)? & qregs::DCTL_ENABLE != 0 {
            return Ok(());
        }
        if t.elapsed() > QUEUE_ENABLE_TIMEOUT {
            return Err(IgbvfError::QueueEnable(dir.name()));
        }
        std::thread::yield_now();
    }
}

/// Programs RX queue `q` (ring at `iova`, `len` bytes, SRRCTL value `srrctl`) and enables it;
/// the caller arms the ring next (RDT).
pub(crate) fn start_rx(
    shared: &VfShared,
    q: u16,
    iova: u64,
    len: u32,
    srrctl: u32,
) -> Result<(), IgbvfError> {
    program_ring(shared, VfDir::Rx, q, iova, len)?;
    shared
        .bar
        .write32(shared.layout.reg(VfDir::Rx, q, qregs::SRRCTL), srrctl)?;
    enable_queue(shared, VfDir::Rx, q)
}

/// Programs TX queue `q` (ring at `iova`, `len` bytes) and enables it.
pub(crate) fn start_tx(shared: &VfShared, q: u16, iova: u64, len: u32) -> Result<(), IgbvfError> {
    program_ring(shared, VfDir::Tx, q, iova, len)?;
    enable_queue(shared, VfDir::Tx, q)
}

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
fn quiesce_for_rebuild(shared: &VfShared, dir: VfDir, q: u16) -> Rebuild {
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
            self.state = quiesce_for_rebuild(&s, VfDir::Rx, self.queue);
        }
        if self.state == Rebuild::Failed {
            return 0;
        }
        // Frames the device completed before it lost the queue were received: deliver them.
        if self.ring.has_pending() {
            return self.ring.rx_burst(out, c);
        }
        self.ring.repost_all();
        if let Err(e) = start_rx(
            &s,
            self.queue,
            self.ring.iova(),
            self.ring.len_bytes(),
            self.srrctl,
        ) {
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
        s.recovery.set_live(VfDir::Rx, self.queue);
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
        self.shared.recovery.clear_live_one(VfDir::Rx, self.queue);
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
            self.state = quiesce_for_rebuild(&s, VfDir::Tx, self.queue);
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
        if let Err(e) = start_tx(&s, self.queue, ring.iova(), ring.len_bytes()) {
            // The next call disables (read back) and tries again; the ring stays empty until then.
            log::warn!("{}: TX queue {}: restart after a reset: {e}", s.name, self.queue);
            self.state = Rebuild::Current;
            return false;
        }
        self.epoch = epoch;
        self.state = Rebuild::Current;
        s.recovery.set_live(VfDir::Tx, self.queue);
        log::info!("{}: TX queue {}: rebuilt after the reset", s.name, self.queue);
        true
    }
}

impl Drop for VfTxQueue {
    fn drop(&mut self) {
        self.shared.recovery.clear_live_one(VfDir::Tx, self.queue);
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

    fn reclaim(&mut self) -> usize {
        let epoch = self.shared.recovery.epoch();
        if (epoch != self.epoch || self.state != Rebuild::Current) && !self.rebuild(epoch) {
            return 0;
        }
        self.inner.reclaim()
    }
}
