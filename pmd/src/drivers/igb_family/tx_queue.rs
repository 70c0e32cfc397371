//! The TX queue of the 82576 drivers (igb and igbvf) on the advanced descriptor ring: the ring,
//! and the check that every packet lies in memory mapped for the device (design invariant 3).
#![forbid(unsafe_code)]

use crate::adv_ring::{AdvTxRing, QueueRegs};
use crate::burst::Burst;
use crate::driver::TxQueueOps;
use crate::iommu::{MappedPools, RingSlice};
use crate::stats::QueueCounters;

/// A TX queue: packets of pools already checked pass at the cost of one compare; a packet of
/// another pool is checked once against the container's mappings, and refused (dropped, counted
/// as an error) when it is not mapped there.
///
/// No packet is copied: mempools carve their regions so that no buffer crosses a page (see
/// `oxpmd_dma::mempool`), which is what QEMU's igb model needs (it maps each TX buffer in one
/// piece and drops the frame when the IOMMU translation comes back shorter).
pub(crate) struct AdvTxQueue<R: QueueRegs> {
    pub(crate) ring: AdvTxRing<R, RingSlice>,
    pub(crate) pools: MappedPools,
}

impl<R: QueueRegs> TxQueueOps for AdvTxQueue<R> {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        let refused = self.pools.retain_mapped(pkts, c);
        refused + self.ring.tx_burst(pkts, c)
    }

    fn reclaim(&mut self, _c: &mut QueueCounters) -> usize {
        self.ring.cleanup()
    }
}
