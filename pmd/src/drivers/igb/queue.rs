//! igb queues on top of the shared advanced descriptor ring: the ring memory (a slice of a DMA
//! region mapped through the port's VFIO container), the queue's registers (tail, enable) and the
//! [`RxQueueOps`] / [`TxQueueOps`] wrappers.
//!
//! The only unsafe code of the driver: the `RingMemory` implementation below.
#![allow(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxpmd_dma::{Mempool, Packet};
use oxpmd_vfio::Register;

use super::regs::{Reg, queue};
use super::{IgbShared, MappedPools};
use crate::adv_ring::{AdvRxRing, AdvTxRing, QueueRegs};
use crate::burst::Burst;
use crate::driver::{RxQueueOps, TxQueueOps};
use crate::iommu::RingSlice;
use crate::stats::QueueCounters;

/// How long a queue disable may take before it is reported.
pub(crate) const QUEUE_DISABLE_TIMEOUT: Duration = Duration::from_millis(100);

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

/// RX tail writes are batched: RDT is written once at least this many descriptors were
/// returned since the last write (DPDK's igb does the same with rx_free_thresh = 32). Every tail
/// write is a trap into the device model under emulation; on hardware it is a posted PCIe write.
pub(crate) const RX_TAIL_THRESH: u32 = 32;

/// The registers one ring drives: its tail, and its enable bit for the teardown.
pub(crate) struct IgbQueueRegs {
    shared: Arc<IgbShared>,
    tail: Register,
    dir: Dir,
    queue: u16,
    /// RX: the tail value last written and the ring size (for the batching).
    last_tail: Option<u32>,
    ring_size: u32,
}

impl IgbQueueRegs {
    pub(crate) fn new(
        shared: Arc<IgbShared>,
        dir: Dir,
        queue: u16,
        ring_size: usize,
    ) -> Result<Self, oxpmd_vfio::BarError> {
        let tail = shared.bar.register(dir.reg(queue, queue::DT).off())?;
        Ok(IgbQueueRegs {
            shared,
            tail,
            dir,
            queue,
            last_tail: None,
            ring_size: ring_size as u32,
        })
    }
}

impl QueueRegs for IgbQueueRegs {
    #[inline(always)]
    fn write_tail(&mut self, tail: u32) {
        if self.dir == Dir::Rx {
            // Hand descriptors back in batches: the device keeps all but at most
            // RX_TAIL_THRESH - 1 of the free ones in view. TX tails are never delayed (QEMU
            // transmits inside the TDT write; hardware starts on it).
            if let Some(last) = self.last_tail {
                let advanced = (tail + self.ring_size - last) % self.ring_size.max(1);
                if advanced < RX_TAIL_THRESH.min(self.ring_size / 4) {
                    return;
                }
            }
            self.last_tail = Some(tail);
        }
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
        let s = &self.shared;
        crate::iommu::stop_bus_master(&s.device, &s.name, self.dir.name(), self.queue, "port")
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
///
/// QEMU's igb model drops a frame whose buffer crosses an IOMMU page boundary (its TX path maps
/// each buffer in one piece and gives up when the mapping comes back shorter). Such a packet
/// (rare: only buffers that straddle a hugepage boundary of their pool) is copied into a buffer
/// of the port's pool that does not straddle one before it is sent; real hardware would not need
/// this, but it costs one compare per packet.
pub(crate) struct IgbTxQueue {
    pub(crate) ring: AdvTxRing<IgbQueueRegs, RingSlice>,
    pub(crate) pools: MappedPools,
    /// Pool for the copies of straddling packets.
    pub(crate) pool: Mempool,
    /// log2 of the IOMMU page size a buffer must not cross.
    pub(crate) page_shift: u32,
    /// Packets copied because they straddled a page boundary.
    pub(crate) copied: u64,
    /// Buffers kept for those copies when the pool has none to spare at that moment.
    pub(crate) reserve: Vec<Packet>,
}

/// Buffers a TX queue keeps for copies of straddling packets.
pub(crate) const TX_COPY_RESERVE: usize = 8;

/// Whether `len` bytes at `iova` cross a `1 << shift` boundary.
#[inline(always)]
pub(crate) fn straddles(iova: u64, len: usize, shift: u32) -> bool {
    len > 1 && (iova >> shift) != ((iova + len as u64 - 1) >> shift)
}

impl IgbTxQueue {
    /// A copy of `p` in a buffer of the port's pool that does not cross a page boundary.
    #[cold]
    fn unstraddled_copy(&mut self, p: &Packet) -> Option<Packet> {
        let mut q = self.spare_buffer()?;
        q.extend_from_slice(p.data()).ok()?;
        if straddles(q.data_iova(), q.len(), self.page_shift) {
            return None;
        }
        {
            log::debug!(
                "{}: TX: packet at {:#x}+{} crosses a page boundary: copied to {:#x}",
                self.pools.device(),
                p.data_iova(),
                p.len(),
                q.data_iova()
            );
            q.set_flags(p.flags());
            q.set_vlan_tci(p.vlan_tci());
            q.set_port(p.port());
        }
        self.refill_reserve();
        Some(q)
    }

    /// An empty buffer whose whole room lies within one page: from the pool, else the reserve.
    fn spare_buffer(&mut self) -> Option<Packet> {
        let mut rejected = Vec::new();
        for _ in 0..4 {
            let Some(q) = self.pool.alloc() else { break };
            if straddles(q.data_iova(), q.tailroom(), self.page_shift) {
                rejected.push(q);
                continue;
            }
            return Some(q);
        }
        self.reserve.pop()
    }

    /// Tops the reserve up from the pool (best effort).
    pub(crate) fn refill_reserve(&mut self) {
        let mut rejected = Vec::new();
        while self.reserve.len() < TX_COPY_RESERVE && rejected.len() < 2 * TX_COPY_RESERVE {
            let Some(q) = self.pool.alloc() else { break };
            if straddles(q.data_iova(), q.tailroom(), self.page_shift) {
                rejected.push(q);
            } else {
                self.reserve.push(q);
            }
        }
    }
}

impl TxQueueOps for IgbTxQueue {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        let refused = self.pools.retain_mapped(pkts, c);
        let shift = self.page_shift;
        if pkts.iter().any(|p| straddles(p.data_iova(), p.len(), shift)) {
            for i in 0..pkts.len() {
                let p = &pkts.as_slice()[i];
                if straddles(p.data_iova(), p.len(), shift) {
                    match self.unstraddled_copy(p) {
                        Some(q) => {
                            pkts.as_mut_slice()[i] = q;
                            self.copied += 1;
                        }
                        None => log::warn!(
                            "{}: TX: a packet crosses an IOMMU page boundary and no buffer was free \
                             to copy it; QEMU's igb model will drop it",
                            self.pools.device()
                        ),
                    }
                }
            }
        }
        refused + self.ring.tx_burst(pkts, c)
    }

    fn reclaim(&mut self) -> usize {
        self.ring.cleanup()
    }
}

impl Drop for IgbTxQueue {
    fn drop(&mut self) {
        if self.copied > 0 {
            log::info!(
                "{}: TX: {} packet(s) copied because their buffer crossed an IOMMU page boundary",
                self.pools.device(),
                self.copied
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::straddles;

    #[test]
    fn straddling_is_crossing_a_page_boundary() {
        const SHIFT: u32 = 21;
        let page = 1u64 << SHIFT;
        assert!(!straddles(page - 64, 64, SHIFT), "ends exactly at the boundary");
        assert!(straddles(page - 64, 65, SHIFT));
        assert!(!straddles(page, 1514, SHIFT));
        assert!(straddles(3 * page - 1, 2, SHIFT));
        assert!(!straddles(3 * page - 1, 1, SHIFT));
        assert!(!straddles(5, 0, SHIFT));
    }
}
