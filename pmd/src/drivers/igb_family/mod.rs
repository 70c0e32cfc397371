//! What the igb (82576 PF) and igbvf (82576 VF) drivers share, written once: a queue's register
//! block and the steps that enable, program and disable it ([`queue_ctl`]), the registers a ring
//! of the shared [`adv_ring`](crate::adv_ring) drives ([`ring_regs`]), a port's rings and queue
//! set-up ([`port_queues`]), the TX queue ([`tx_queue`]), the open steps both take ([`open`]),
//! and the form of their register-offset types ([`register_type`]: `IgbReg`, `VfReg`), checked
//! against BAR0 once when it is mapped.
//!
//! A PF and a VF of the 82576 lay out each queue's registers the same way (RDBAL .. RXDCTL at the
//! same offsets inside the queue's block); only where the blocks are differs
//! ([`queue_regs::QueueBlocks`]). Each driver says how its queue registers are reached by
//! implementing [`QueueDevice`].

pub(crate) mod open;
pub(crate) mod port_queues;
pub(crate) mod queue_ctl;
pub(crate) mod queue_regs;
pub(crate) mod register_type;
pub(crate) mod ring_regs;
pub(crate) mod tx_queue;

use std::time::Duration;

use oxpmd_vfio::Register;

use self::queue_regs::QueueReg;

/// Direction of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Dir {
    Rx,
    Tx,
}

impl Dir {
    /// "RX" or "TX", for messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Dir::Rx => "RX",
            Dir::Tx => "TX",
        }
    }
}

/// A PCI function of the 82576 family whose queues this module drives: where its queue registers
/// are, and how its DMA is stopped as a last resort.
///
/// # Safety
/// [`read_queue`](Self::read_queue) returns what the device's register holds (no cached or
/// modelled value), so that RXDCTL/TXDCTL.ENABLE read back as 0 means the device fetches and
/// writes back no more descriptors of that queue (the rings free their memory on it, see
/// [`QueueRegs`](crate::adv_ring::QueueRegs)); [`stop_bus_master`](Self::stop_bus_master) returns
/// true only once the function can no longer access memory.
#[allow(unsafe_code)]
pub(crate) unsafe trait QueueDevice: Send + Sync {
    /// The device's name, for messages.
    fn name(&self) -> &str;

    /// Reads register `r` of queue `q` of `dir`.
    fn read_queue(&self, dir: Dir, q: u16, r: QueueReg) -> u32;

    /// Writes register `r` of queue `q` of `dir`.
    fn write_queue(&self, dir: Dir, q: u16, r: QueueReg, v: u32);

    /// The tail register of queue `q` of `dir`, for the datapath.
    fn tail(&self, dir: Dir, q: u16) -> Register;

    /// Turns the function's bus mastering off (a queue would not disable); true once it is off.
    fn stop_bus_master(&self, dir: Dir, q: u16) -> bool;
}

/// Failures of the shared code (inside [`PortError::Driver`](crate::PortError::Driver), with the
/// device and the operation).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FamilyError {
    /// The RX mempool is not mapped for this device.
    #[error(
        "mempool `{pool}` is not mapped in this port's IOMMU container; create it with \
         Port::dma_map() of this port (or of any PCI port this process opened itself: those \
         share one container)"
    )]
    PoolNotMapped {
        /// Pool name.
        pool: String,
    },
    /// The ring memory was not usable.
    #[error("descriptor ring: {0}")]
    Ring(String),
    /// A queue did not report enabled.
    #[error("{dir} queue {queue}: enable bit not set {timeout:?} after enabling")]
    QueueEnableTimeout {
        /// "RX" or "TX".
        dir: &'static str,
        /// Queue.
        queue: u16,
        /// Wait.
        timeout: Duration,
    },
}

/// `e` as the failure of `op` on `device`.
pub(crate) fn port_err(
    device: &str,
    op: &'static str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> crate::error::PortError {
    crate::error::PortError::Driver {
        device: device.to_string(),
        op,
        source: Box::new(e),
    }
}
