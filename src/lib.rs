//! oxpmd: a poll-mode NIC driver framework.
//!
//! Applications name this one crate. It re-exports the three layers:
//! - [`vfio`]: the kernel interface (VFIO container, group, device, VF token, sysfs PCI management);
//! - [`dma`]: memory a device may touch (hugepage regions, IOVA allocation, packets, mempools, rings);
//! - [`pmd`]: ports, queues and drivers.
#![forbid(unsafe_code)]

pub use oxpmd_dma as dma;
pub use oxpmd_pmd as pmd;
pub use oxpmd_vfio as vfio;
