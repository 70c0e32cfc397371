//! The registers one ring of the shared advanced ring drives on an 82576 function: its tail, and
//! its enable bit for the teardown ([`QueueRegs`]).
//!
//! One unsafe item: the `QueueRegs` implementation.
#![allow(unsafe_code)]

use std::sync::Arc;

use oxpmd_vfio::Register;

use super::queue_ctl::disable_queue;
use super::{Dir, QueueDevice};
use crate::adv_ring::QueueRegs;

/// RX tail writes are batched on the PF: RDT is written once at least this many descriptors were
/// returned since the last write (DPDK's igb does the same with rx_free_thresh = 32). Every tail
/// write is a trap into the device model under emulation; on hardware it is a posted PCIe write.
pub(crate) const RX_TAIL_THRESH: u32 = 32;

/// How RX tail writes are batched.
#[derive(Debug, Clone, Copy)]
struct TailBatch {
    /// The tail value last written.
    last: Option<u32>,
    ring_size: u32,
}

/// The tail and enable registers of one queue of `D`.
pub(crate) struct RingRegs<D: QueueDevice> {
    dev: Arc<D>,
    tail: Register,
    dir: Dir,
    queue: u16,
    /// RX with batched tail writes: the batching state.
    batch: Option<TailBatch>,
}

impl<D: QueueDevice> RingRegs<D> {
    /// The registers of queue `queue` of `dir`; `batch_rx_tail` batches an RX ring of
    /// `ring_size` descriptors' tail writes (see [`RX_TAIL_THRESH`]).
    pub(crate) fn new(dev: Arc<D>, dir: Dir, queue: u16, ring_size: usize, batch_rx_tail: bool) -> Self {
        let tail = dev.tail(dir, queue);
        RingRegs {
            dev,
            tail,
            dir,
            queue,
            batch: (batch_rx_tail && dir == Dir::Rx).then_some(TailBatch {
                last: None,
                ring_size: ring_size as u32,
            }),
        }
    }
}

// SAFETY: `try_disable` returns true only once RXDCTL/TXDCTL.ENABLE reads back 0 from the device
// (`QueueDevice::read_queue`'s contract; the 82576 then fetches and writes back no more
// descriptors of the queue); `stop_device_dma` only once bus mastering is off
// (`QueueDevice::stop_bus_master`'s contract). `disable` goes through `try_disable`.
unsafe impl<D: QueueDevice> QueueRegs for RingRegs<D> {
    #[inline(always)]
    fn write_tail(&mut self, tail: u32) {
        if let Some(b) = &mut self.batch {
            // Hand descriptors back in batches: the device keeps all but at most
            // RX_TAIL_THRESH - 1 of the free ones in view. TX tails are never delayed (QEMU
            // transmits inside the TDT write; hardware starts on it).
            if let Some(last) = b.last {
                let advanced = (tail + b.ring_size - last) % b.ring_size.max(1);
                if advanced < RX_TAIL_THRESH.min(b.ring_size / 4) {
                    return;
                }
            }
            b.last = Some(tail);
        }
        self.tail.write(tail);
    }

    fn disable(&mut self) {
        self.try_disable();
    }

    fn try_disable(&mut self) -> bool {
        disable_queue(&*self.dev, self.dir, self.queue)
    }

    fn stop_device_dma(&mut self) -> bool {
        // The whole function loses DMA: only reached when one of its queues would not stop.
        self.dev.stop_bus_master(self.dir, self.queue)
    }
}
