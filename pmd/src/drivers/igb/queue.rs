//! igb queues on top of the shared advanced descriptor ring: the ring memory (a slice of a DMA
//! region mapped through the port's VFIO container), the queue's registers (tail, enable) and the
//! [`RxQueueOps`] / [`TxQueueOps`] wrappers.
//!
//! The only unsafe code of the driver: the `RingMemory` implementation below.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxpmd_dma::DmaRegion;
use oxpmd_vfio::Register;

use super::regs::{Reg, queue};
use super::{IgbShared, MappedPools};
use crate::adv_ring::{AdvRxRing, AdvTxRing, QueueRegs, RingMemory};
use crate::burst::Burst;
use crate::driver::{RxQueueOps, TxQueueOps};
use crate::stats::QueueCounters;

/// How long a queue disable may take before it is reported.
pub(crate) const QUEUE_DISABLE_TIMEOUT: Duration = Duration::from_millis(100);

/// A piece of a DMA region that holds one descriptor ring. The region stays alive (and mapped for
/// the device) for as long as any ring of the port holds a slice of it.
pub(crate) struct RingSlice {
    region: Arc<DmaRegion>,
    offset: usize,
    len: usize,
    iova: u64,
}

impl RingSlice {
    /// `len` bytes at `offset` of a mapped `region`; `None` if the region is not mapped or the
    /// slice does not fit or is not 128-byte aligned.
    pub(crate) fn new(region: Arc<DmaRegion>, offset: usize, len: usize) -> Option<RingSlice> {
        let base = region.iova()?;
        let end = offset.checked_add(len)?;
        if end > region.len() || offset % crate::adv_ring::desc::RING_ALIGN != 0 || len == 0 {
            return None;
        }
        Some(RingSlice {
            iova: base + offset as u64,
            region,
            offset,
            len,
        })
    }
}

// SAFETY: the slice lies inside the region (checked in `new`), the region is page-aligned so the
// slice is 128-byte aligned, the device sees it at `iova` (the region is mapped through the
// device's container and stays mapped until the last `Arc` is dropped), and the region's memory
// lives as long as the `Arc` this value holds.
unsafe impl RingMemory for RingSlice {
    fn as_ptr(&self) -> *mut u8 {
        // Inside the region: checked in `new`.
        self.region.as_ptr().wrapping_add(self.offset)
    }
    fn iova(&self) -> u64 {
        self.iova
    }
    fn len(&self) -> usize {
        self.len
    }
}

/// Direction of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    Rx,
    Tx,
}

impl Dir {
    pub(crate) fn reg(self, q: u16, field: usize) -> Reg {
        match self {
            Dir::Rx => queue::rx(q, field),
            Dir::Tx => queue::tx(q, field),
        }
    }
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dir::Rx => "RX",
            Dir::Tx => "TX",
        }
    }
}

/// Clears a queue's enable bit and waits until the device reports it off. Returns false (and
/// logs) when it did not turn off in time.
pub(crate) fn disable_queue(shared: &IgbShared, dir: Dir, q: u16) -> bool {
    let ctl = dir.reg(q, queue::DCTL);
    let Ok(v) = shared.read(ctl) else { return false };
    if v & queue::DCTL_ENABLE == 0 {
        return true;
    }
    if shared.write(ctl, v & !queue::DCTL_ENABLE).is_err() {
        return false;
    }
    let start = Instant::now();
    loop {
        match shared.read(ctl) {
            Ok(v) if v & queue::DCTL_ENABLE == 0 => return true,
            Ok(_) if start.elapsed() < QUEUE_DISABLE_TIMEOUT => std::thread::yield_now(),
            _ => {
                log::error!(
                    "{}: {} queue {q}: still enabled {:?} after clearing its enable bit",
                    shared.name,
                    dir.name(),
                    QUEUE_DISABLE_TIMEOUT
                );
                return false;
            }
        }
    }
}

/// The registers one ring drives: its tail, and its enable bit for the teardown.
pub(crate) struct IgbQueueRegs {
    shared: Arc<IgbShared>,
    tail: Register,
    dir: Dir,
    queue: u16,
}

impl IgbQueueRegs {
    pub(crate) fn new(shared: Arc<IgbShared>, dir: Dir, queue: u16) -> Result<Self, oxpmd_vfio::BarError> {
        let tail = shared.bar.register(dir.reg(queue, queue::DT).off())?;
        Ok(IgbQueueRegs {
            shared,
            tail,
            dir,
            queue,
        })
    }
}

impl QueueRegs for IgbQueueRegs {
    #[inline(always)]
    fn write_tail(&mut self, tail: u32) {
        self.tail.write(tail);
    }

    fn disable(&mut self) {
        disable_queue(&self.shared, self.dir, self.queue);
    }
}

/// An igb RX queue.
pub(crate) struct IgbRxQueue {
    pub(crate) ring: AdvRxRing<IgbQueueRegs, RingSlice>,
}

impl RxQueueOps for IgbRxQueue {
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        self.ring.rx_burst(out, c)
    }
}

/// An igb TX queue. Every packet handed to it must lie in memory mapped for the device (design
/// invariant 3): packets of pools already checked pass at the cost of one compare; a packet of
/// another pool is checked once against the container's mappings, and refused (dropped, counted
/// as an error) when it is not mapped there.
pub(crate) struct IgbTxQueue {
    pub(crate) ring: AdvTxRing<IgbQueueRegs, RingSlice>,
    pub(crate) pools: MappedPools,
}

impl TxQueueOps for IgbTxQueue {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        let mut refused = 0usize;
        if !pkts.iter().all(|p| self.pools.knows(p.pool_id())) {
            let pools = &mut self.pools;
            pkts.retain(|p| {
                let ok = pools.check(p);
                if !ok {
                    refused += 1;
                }
                ok
            });
            if refused > 0 {
                log::warn!(
                    "{}: TX: {refused} packet(s) refused: their memory is not mapped for this device \
                     (create the mempool with Port::dma_map())",
                    pools.device()
                );
                c.ierrors += refused as u64;
            }
        }
        refused + self.ring.tx_burst(pkts, c)
    }

    fn reclaim(&mut self) -> usize {
        self.ring.cleanup()
    }
}
