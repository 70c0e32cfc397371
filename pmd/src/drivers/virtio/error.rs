//! [`VirtioError`]: why the virtio-net driver failed (inside `PortError::Driver`).

use oxpmd_vfio::BarError;

use super::caps::CapError;
use super::ctrl::CtrlError;
use super::{MODERN_DEVICE_FIX, RESET_TIMEOUT, queue};
use crate::error::PortError;

/// Failures of the virtio-net driver (wrapped in [`PortError::Driver`] with the device and the
/// operation).
#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    /// A required feature is not offered.
    #[error(
        "virtio device {device} does not offer {missing}, which this driver requires{why}; {MODERN_DEVICE_FIX}"
    )]
    MissingFeature {
        /// PCI address.
        device: String,
        /// The missing feature(s), named.
        missing: String,
        /// Why it is needed.
        why: &'static str,
    },
    /// The device did not accept the negotiated features.
    #[error("virtio device {device} cleared FEATURES_OK after the driver wrote features {features:#x}")]
    FeaturesRefused {
        /// PCI address.
        device: String,
        /// What the driver asked for.
        features: u64,
    },
    /// Capability list problem.
    #[error(transparent)]
    Caps(#[from] CapError),
    /// A register access failed (outside the mapped BAR).
    #[error("register access: {0}")]
    Bar(#[from] BarError),
    /// A VFIO operation failed.
    #[error(transparent)]
    Vfio(#[from] oxpmd_vfio::Error),
    /// A DMA mapping failed.
    #[error(transparent)]
    DmaMap(#[from] oxpmd_dma::DmaMapError),
    /// Ring memory could not be allocated.
    #[error(transparent)]
    Region(#[from] oxpmd_dma::RegionError),
    /// A queue could not be built.
    #[error(transparent)]
    Queue(#[from] queue::QueueError),
    /// The device did not finish its reset.
    #[error("device status still {0:#04x} {RESET_TIMEOUT:?} after writing 0 (reset)")]
    ResetTimeout(u8),
    /// The device reports an error state.
    #[error("device status {0:#04x}: DEVICE_NEEDS_RESET; reopen the port")]
    NeedsReset(u8),
    /// A virtqueue is not offered by the device.
    #[error("virtqueue {index} is not available (queue_size 0; the device has {num_queues} queues)")]
    NoQueue {
        /// Virtqueue index.
        index: u16,
        /// num_queues of the device.
        num_queues: u16,
    },
    /// The device's notify offset for a queue lies outside the notify structure.
    #[error("virtqueue {index}: notify offset {offset:#x} outside the notification structure")]
    NotifyOutOfRange {
        /// Virtqueue index.
        index: u16,
        /// Byte offset.
        offset: u64,
    },
    /// A control virtqueue command failed.
    #[error(transparent)]
    Ctrl(#[from] CtrlError),
    /// The RX mempool is not mapped for this device.
    #[error(
        "mempool `{pool}` is not mapped in this device's IOMMU container; create it with \
         Port::dma_map() of any PCI port of this process (all PCI ports share one container)"
    )]
    PoolNotMapped {
        /// Pool name.
        pool: String,
    },
    /// Misuse of the life cycle.
    #[error("{0}")]
    State(&'static str),
}

pub(crate) fn drv_err(device: &str, op: &'static str, e: impl Into<VirtioError>) -> PortError {
    PortError::Driver {
        device: device.to_string(),
        op,
        source: Box::new(e.into()),
    }
}
