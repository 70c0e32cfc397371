//! Errors: each names the operation and the device, and turns the errno into a cause and a fix
//! (`explain`: what each errno means for each operation).
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::pci::GroupMember;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Opening the VFIO container /dev/vfio/vfio.
    OpenContainer,
    /// VFIO_GET_API_VERSION.
    GetApiVersion,
    /// VFIO_CHECK_EXTENSION.
    CheckExtension,
    /// VFIO_SET_IOMMU.
    SetIommu,
    /// VFIO_IOMMU_GET_INFO.
    IommuGetInfo,
    /// VFIO_IOMMU_MAP_DMA.
    MapDma,
    /// VFIO_IOMMU_UNMAP_DMA.
    UnmapDma,
    /// Opening the VFIO group.
    OpenGroup,
    /// VFIO_GROUP_GET_STATUS.
    GroupGetStatus,
    /// VFIO_GROUP_SET_CONTAINER.
    GroupSetContainer,
    /// Opening the device (VFIO_GROUP_GET_DEVICE_FD).
    OpenDevice,
    /// VFIO_DEVICE_GET_INFO.
    DeviceGetInfo,
    /// VFIO_DEVICE_GET_REGION_INFO.
    RegionInfo,
    /// VFIO_DEVICE_GET_IRQ_INFO.
    IrqInfo,
    /// VFIO_DEVICE_SET_IRQS.
    SetIrqs,
    /// VFIO_DEVICE_RESET.
    Reset,
    /// Probing the VF token feature (VFIO_DEVICE_FEATURE).
    ProbeVfToken,
    /// Setting the VF token (VFIO_DEVICE_FEATURE).
    SetVfToken,
    /// Reading PCI config space.
    ConfigRead,
    /// Writing PCI config space.
    ConfigWrite,
    /// Mapping a BAR.
    MapBar,
    /// Creating an eventfd.
    CreateEventfd,
    /// Reading an eventfd.
    ReadEventfd,
    /// Listing PCI devices.
    ListPciDevices,
    /// Listing IOMMU group members.
    ListGroupMembers,
    /// Reading sysfs.
    ReadSysfs,
    /// Unbinding the driver.
    Unbind,
    /// Writing driver_override.
    DriverOverride,
    /// Writing drivers_probe.
    DriversProbe,
    /// Writing sriov_numvfs.
    SetNumVfs,
    /// Saving the VF token.
    SaveToken,
    /// Loading the VF token.
    LoadToken,
    /// Reading /proc/self/pagemap.
    ReadPagemap,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::OpenContainer => "opening the VFIO container /dev/vfio/vfio",
            Op::GetApiVersion => "VFIO_GET_API_VERSION",
            Op::CheckExtension => "VFIO_CHECK_EXTENSION",
            Op::SetIommu => "VFIO_SET_IOMMU",
            Op::IommuGetInfo => "VFIO_IOMMU_GET_INFO",
            Op::MapDma => "VFIO_IOMMU_MAP_DMA",
            Op::UnmapDma => "VFIO_IOMMU_UNMAP_DMA",
            Op::OpenGroup => "opening the VFIO group",
            Op::GroupGetStatus => "VFIO_GROUP_GET_STATUS",
            Op::GroupSetContainer => "VFIO_GROUP_SET_CONTAINER",
            Op::OpenDevice => "opening the device (VFIO_GROUP_GET_DEVICE_FD)",
            Op::DeviceGetInfo => "VFIO_DEVICE_GET_INFO",
            Op::RegionInfo => "VFIO_DEVICE_GET_REGION_INFO",
            Op::IrqInfo => "VFIO_DEVICE_GET_IRQ_INFO",
            Op::SetIrqs => "VFIO_DEVICE_SET_IRQS",
            Op::Reset => "VFIO_DEVICE_RESET",
            Op::ProbeVfToken => "probing the VF token feature (VFIO_DEVICE_FEATURE)",
            Op::SetVfToken => "setting the VF token (VFIO_DEVICE_FEATURE)",
            Op::ConfigRead => "reading PCI config space",
            Op::ConfigWrite => "writing PCI config space",
            Op::MapBar => "mapping a BAR",
            Op::CreateEventfd => "creating an eventfd",
            Op::ReadEventfd => "reading an eventfd",
            Op::ListPciDevices => "listing PCI devices",
            Op::ListGroupMembers => "listing IOMMU group members",
            Op::ReadSysfs => "reading sysfs",
            Op::Unbind => "unbinding the driver",
            Op::DriverOverride => "writing driver_override",
            Op::DriversProbe => "writing drivers_probe",
            Op::SetNumVfs => "writing sriov_numvfs",
            Op::SaveToken => "saving the VF token",
            Op::LoadToken => "loading the VF token",
            Op::ReadPagemap => "reading /proc/self/pagemap",
        })
    }
}

/// Why a BAR access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("BAR{bar} access at offset {offset:#x}: {kind}")]
pub struct BarError {
    /// The BAR index.
    pub bar: u32,
    /// The offset asked for.
    pub offset: usize,
    /// What was wrong.
    pub kind: BarErrorKind,
}

/// What was wrong with a BAR offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarErrorKind {
    /// Past the end of the BAR.
    OutOfBounds,
    /// Not 4-byte aligned.
    Misaligned,
    /// In a part of the BAR the kernel does not let us map (e.g. the MSI-X table).
    NotMapped,
}

impl fmt::Display for BarErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BarErrorKind::OutOfBounds => "past the end of the BAR",
            BarErrorKind::Misaligned => "not 4-byte aligned",
            BarErrorKind::NotMapped => "in an area the kernel does not allow to mmap (sparse mmap)",
        })
    }
}

fn opt_path(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| format!(" ({})", p.display()))
        .unwrap_or_default()
}

fn explanation(cause: &Option<String>, fix: &Option<String>) -> String {
    let mut s = String::new();
    if let Some(c) = cause {
        s.push_str(". Cause: ");
        s.push_str(c);
    }
    if let Some(f) = fix {
        s.push_str(". Fix: ");
        s.push_str(f);
    }
    s
}

fn members_list(m: &[GroupMember]) -> String {
    if m.is_empty() {
        return "(could not be listed: see /sys/kernel/iommu_groups/<group>/devices)".to_owned();
    }
    m.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(", ")
}

fn kernel_drivers(m: &[GroupMember]) -> String {
    let v: Vec<String> = m
        .iter()
        .filter(|m| m.driver.as_deref().is_some_and(|d| d != "vfio-pci"))
        .map(|m| m.address.clone())
        .collect();
    if v.is_empty() {
        "the members listed".to_owned()
    } else {
        v.join(", ")
    }
}

/// Every error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed; `cause` and `fix` translate its errno where the meaning is known.
    #[error("{op} for {subject}{} failed: {errno}{}", opt_path(.path), explanation(.cause, .fix))]
    Os {
        /// The operation.
        op: Op,
        /// The device, group or file it was done on.
        subject: String,
        /// The sysfs or device path, when there is one.
        path: Option<PathBuf>,
        /// The OS error.
        errno: io::Error,
        /// What the errno means here.
        cause: Option<String>,
        /// What to do about it.
        fix: Option<String>,
    },

    /// The IOMMU group has a member bound to a kernel driver.
    #[error(
        "IOMMU group {group} is not viable: every device in it must be bound to vfio-pci or to no driver. \
         Members: {}. Fix: bind {} to vfio-pci (or unbind them)",
        members_list(.members), kernel_drivers(.members)
    )]
    GroupNotViable {
        /// The group.
        group: u32,
        /// Its members and their drivers.
        members: Vec<GroupMember>,
    },

    /// `/dev/vfio/<group>` does not exist.
    #[error(
        "no VFIO group node for {subject} ({path}). Cause: the IOMMU is off, or the device is not bound to \
         vfio-pci. Fix: boot with intel_iommu=on (Intel) or amd_iommu=on (AMD) and enable VT-d / AMD-Vi in the \
         firmware; `modprobe vfio-pci` and bind the device to vfio-pci"
    )]
    NoGroupNode {
        /// The device or group.
        subject: String,
        /// The node looked for.
        path: PathBuf,
    },

    /// The device has no IOMMU group.
    #[error(
        "{address} has no IOMMU group. Cause: the IOMMU is off or not supported. Fix: boot with intel_iommu=on \
         (Intel) or amd_iommu=on (AMD) and enable VT-d / AMD-Vi in the firmware"
    )]
    NoIommuGroup {
        /// The device.
        address: String,
    },

    /// A no-IOMMU group was found but the caller did not opt in.
    #[error(
        "VFIO group {group} is a no-IOMMU group (/dev/vfio/noiommu-{group}): the device would have unrestricted \
         DMA access to all memory. Refused. Fix: use an IOMMU (intel_iommu=on / amd_iommu=on), or opt in \
         explicitly with Container::open_noiommu(unsafe {{ NoIommu::accept_unsafe() }})"
    )]
    NoIommuRefused {
        /// The group number.
        group: u32,
    },

    /// Not a valid PCI address.
    #[error(
        "invalid PCI address {input:?}: {reason}. Expected DDDD:BB:DD.F or BB:DD.F in hex, e.g. 0000:00:02.0; \
         list the devices with `ls /sys/bus/pci/devices`"
    )]
    BadPciAddress {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// No such PCI device.
    #[error("no PCI device {address} ({}). Fix: check the address with `ls /sys/bus/pci/devices`", .path.display())]
    NoSuchDevice {
        /// The address asked for.
        address: String,
        /// The sysfs path looked at.
        path: PathBuf,
    },

    /// A sysfs attribute had an unexpected value.
    #[error("unexpected value {value:?} in {}", .path.display())]
    BadSysfsValue {
        /// The attribute.
        path: PathBuf,
        /// Its content.
        value: String,
    },

    /// After driver_override and drivers_probe the device is not on the wanted driver.
    #[error(
        "binding {address} to {driver}: after drivers_probe it is bound to {}. Cause: {cause}. Fix: {fix}",
        .now.as_deref().unwrap_or("no driver")
    )]
    BindFailed {
        /// The device.
        address: String,
        /// The driver wanted.
        driver: String,
        /// The driver it is on now.
        now: Option<String>,
        /// The likely cause.
        cause: String,
        /// What to do.
        fix: String,
    },

    /// The device is not an SR-IOV physical function.
    #[error("{address} is not an SR-IOV PF (no sriov_numvfs / VF token feature)")]
    NotSriovPf {
        /// The device.
        address: String,
    },

    /// The device is not an SR-IOV virtual function.
    #[error("{address} is not an SR-IOV VF (no physfn link)")]
    NotVf {
        /// The device.
        address: String,
    },

    /// More VFs asked for than the PF supports.
    #[error("{address}: {requested} VFs asked for, the PF supports at most {total} (sriov_totalvfs)")]
    TooManyVfs {
        /// The PF.
        address: String,
        /// Asked for.
        requested: u16,
        /// `sriov_totalvfs`.
        total: u16,
    },

    /// The kernel lacks something we need.
    #[error("{subject}: {what}. Fix: {fix}")]
    Unsupported {
        /// The device or container.
        subject: String,
        /// What is missing.
        what: String,
        /// What to do.
        fix: String,
    },

    /// A DMA mapping request was refused before reaching the kernel.
    #[error("DMA mapping iova {iova:#x} size {size:#x}: {reason}")]
    DmaRequest {
        /// IOVA.
        iova: u64,
        /// Size.
        size: u64,
        /// Why.
        reason: String,
    },

    /// A BAR access was refused.
    #[error("{}{source}", .device.as_ref().map(|d| format!("{d}: ")).unwrap_or_default())]
    Bar {
        /// The device, when known.
        device: Option<String>,
        /// The refused access.
        #[source]
        source: BarError,
    },

    /// A region cannot be mapped or accessed as asked.
    #[error("{device} region {index}: {reason}")]
    Region {
        /// The device.
        device: String,
        /// The region index.
        index: u32,
        /// Why.
        reason: String,
    },

    /// A VF token string or file is malformed.
    #[error("VF token {source_name}: not a UUID (expected 8-4-4-4-12 hex digits)")]
    BadToken {
        /// Where it came from (a file path or "argument").
        source_name: String,
    },

    /// A token file others may read.
    #[error(
        "VF token file {} has mode {mode:04o}: group or others can read it. Refused. Fix: `chmod 600 {}`",
        .path.display(), .path.display()
    )]
    TokenFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// A token file owned by another user (it could have been planted to make us use a token
    /// that user knows).
    #[error(
        "VF token file {} is owned by uid {owner}, not by this process's effective uid {euid}: \
         another user could have written it. Refused. Fix: check its content, then \
         `chown {euid} {}` and `chmod 600 {}`, or write a fresh one as uid {euid}",
        .path.display(), .path.display(), .path.display()
    )]
    TokenFileOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },

    /// A token path that is not a regular file (a symbolic link, a directory, a FIFO...).
    #[error(
        "VF token file {} is {kind}, not a regular file. Refused (symbolic links are not \
         followed). Fix: give the path of the real file (mode 0600, owned by you) written by \
         VfToken::save",
        .path.display()
    )]
    TokenFileType {
        /// The path.
        path: PathBuf,
        /// What it is, e.g. "a symbolic link".
        kind: &'static str,
    },

    /// A pagemap entry does not give a physical address.
    #[error("physical address of {vaddr:#x}: {reason}")]
    Pagemap {
        /// The virtual address.
        vaddr: usize,
        /// Why there is none.
        reason: &'static str,
    },
}

impl From<BarError> for Error {
    fn from(source: BarError) -> Self {
        Error::Bar { device: None, source }
    }
}

impl Error {
    /// The errno of an OS failure.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Os { errno, .. } => errno.raw_os_error(),
            _ => None,
        }
    }
}

mod explain;

pub(crate) use explain::{errno_error, map_dma_error, open_device_error};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_viable_group_lists_every_member_and_driver() {
        let members = vec![
            GroupMember {
                address: "0000:00:1f.0".into(),
                driver: Some("lpc_ich".into()),
            },
            GroupMember {
                address: "0000:00:1f.2".into(),
                driver: Some("vfio-pci".into()),
            },
            GroupMember {
                address: "0000:00:1f.3".into(),
                driver: None,
            },
        ];
        let m = Error::GroupNotViable { group: 9, members }.to_string();
        assert!(m.contains("IOMMU group 9 is not viable"), "{m}");
        assert!(m.contains("0000:00:1f.0 (driver lpc_ich)"), "{m}");
        assert!(m.contains("0000:00:1f.2 (driver vfio-pci)"), "{m}");
        assert!(m.contains("0000:00:1f.3 (no driver)"), "{m}");
        assert!(m.contains("Fix: bind 0000:00:1f.0 to vfio-pci"), "{m}");
    }
}
