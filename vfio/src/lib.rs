//! oxpmd-vfio: the kernel interface of oxpmd: VFIO container, group, device, VF token, sysfs PCI.
//!
//! The flow for one device:
//!
//! ```no_run
//! use oxpmd_vfio::{Container, PciAddress, pci::Sysfs};
//! # fn main() -> oxpmd_vfio::Result<()> {
//! let addr = PciAddress::parse("0000:00:02.0")?;
//! Sysfs::new().bind_vfio_pci(addr)?;             // driver_override + drivers_probe
//! let container = Container::open()?;             // /dev/vfio/vfio, type1v2
//! let dev = container.open_device(addr, None)?;   // group viable, attached, device fd
//! let bar0 = dev.map_bar(0)?;
//! let status = bar0.read32(0x0008)?;
//! # let _ = status; Ok(()) }
//! ```
//!
//! Several groups and devices share one [`Container`] (one IOMMU address space); DMA mappings are
//! tracked and unmapped when the last handle to the container goes. The only `unsafe` is in the
//! ioctl, eventfd and BAR access wrappers (`sys`, `container`, `device`, `bar`), each justified.

pub mod bar;
pub mod container;
pub mod device;
pub mod error;
pub mod noiommu;
pub mod pci;
mod sys;
pub mod token;
pub mod uapi;

#[cfg(test)]
mod testutil;

pub use bar::{Bar, Register};
pub use container::{Container, DmaMapping, Group, GroupStatus, IommuInfo, IovaRange};
pub use device::{Device, DeviceInfo, Interrupts, IrqInfo, IrqKind, RegionInfo, SparseArea};
pub use error::{BarError, BarErrorKind, Error, Op, Result};
pub use noiommu::NoIommu;
pub use pci::{GroupMember, PciAddress, PciDevice, PreviousBinding, Sysfs};
pub use token::VfToken;
