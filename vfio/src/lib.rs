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
//! SR-IOV through vfio-pci (loaded with `enable_sriov=1`): the PF's owner sets a token, then creates
//! the VFs; a VF user opens its VF with that token.
//!
//! ```no_run
//! use oxpmd_vfio::{Container, PciAddress, Sysfs, VfToken};
//! # fn main() -> oxpmd_vfio::Result<()> {
//! let sys = Sysfs::new();
//! let pf = PciAddress::parse("0000:00:02.0")?;
//! sys.set_num_vfs(pf, 0)?;                        // vfio-pci binds no PF with VFs enabled
//! sys.bind_vfio_pci(pf)?;
//! let owner = Container::open()?;
//! let pf_dev = owner.open_device(pf, None)?;
//! let token = VfToken::generate();
//! token.save("/run/oxpmd/pf.token".as_ref())?;    // 0600, never overwritten
//! pf_dev.set_vf_token(&token)?;                   // VFIO_DEVICE_FEATURE (PCI_VF_TOKEN)
//! sys.set_num_vfs(pf, 2)?;                        // vfio-pci captures the VFs (driver_override)
//! let vf = sys.device(pf)?.virtfns[0];
//! // In the VF user's process:
//! let token = VfToken::load("/run/oxpmd/pf.token".as_ref())?;
//! let vf_dev = Container::open()?.open_device(vf, Some(&token))?;
//! # let _ = vf_dev; Ok(()) }
//! ```
//!
//! No-IOMMU mode ([`noiommu`]) is refused unless the caller opts in with the `unsafe` [`NoIommu::accept_unsafe`].
//! Only the group path (`/dev/vfio/<group>`) is implemented; a device opened through the newer cdev
//! path (`/dev/vfio/devices/vfioN` + iommufd, token in `VFIO_DEVICE_BIND_IOMMUFD`) would only need
//! another way to obtain the device fd: everything on [`Device`] works on that fd.
//!
//! Several groups and devices share one [`Container`] (one IOMMU address space); DMA mappings are
//! tracked and unmapped when the last handle to the container goes. The only `unsafe` is in the
//! ioctl, eventfd and BAR access wrappers (`sys`, `container`, `device`, `bar`, `bar_view`), each
//! justified.

pub mod bar;
pub mod bar_view;
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
pub use bar_view::{BarTooSmall, BarView, RegisterMap};
pub use container::{Container, DmaMapping, Group, GroupStatus, IommuInfo, IovaRange, adopt_device};
pub use device::{Device, DeviceInfo, Interrupts, IrqInfo, IrqKind, RegionInfo, SparseArea, wait_readable};
pub use error::{BarError, BarErrorKind, Error, Op, Result};
pub use noiommu::NoIommu;
pub use pci::{GroupMember, PciAddress, PciDevice, PreviousBinding, Sysfs};
pub use token::VfToken;

#[cfg(test)]
mod tests {
    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_cross_threads() {
        send_sync::<crate::Container>();
        send_sync::<crate::Group>();
        send_sync::<crate::Device>();
        send_sync::<crate::Bar>();
        send_sync::<crate::Register>();
        send_sync::<crate::Interrupts>();
        send_sync::<crate::Error>();
        send_sync::<crate::VfToken>();
    }
}
