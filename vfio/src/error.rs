//! Errors: each names the operation and the device, and turns the errno into a cause and a fix.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

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

/// Builds an [`Error::Os`] with the cause and fix known for `op` and this errno.
pub(crate) fn errno_error(
    op: Op,
    subject: String,
    errno: io::Error,
    path: Option<&Path>,
    detail: Option<String>,
) -> Error {
    let (cause, fix) = match errno.raw_os_error() {
        Some(e) => explain(op, e),
        None => (None, None),
    };
    let cause = match (cause, detail) {
        (Some(c), Some(d)) => Some(format!("{c} ({d})")),
        (Some(c), None) => Some(c.to_owned()),
        (None, Some(d)) => Some(d),
        (None, None) => None,
    };
    Error::Os {
        op,
        subject,
        path: path.map(Path::to_owned),
        errno,
        cause,
        fix: fix.map(str::to_owned),
    }
}

/// An [`Error::Os`] with an explicit cause and fix.
pub(crate) fn os_error(
    op: Op,
    subject: String,
    errno: io::Error,
    cause: String,
    fix: Option<String>,
) -> Error {
    Error::Os {
        op,
        subject,
        path: None,
        errno,
        cause: Some(cause),
        fix,
    }
}

const ROOT_FIX: &str = "run as root, or give this user access to /dev/vfio/* and the sysfs files (udev rule)";

/// The cause and fix of `errno` for `op`, where known.
pub(crate) fn explain(op: Op, errno: i32) -> (Option<&'static str>, Option<&'static str>) {
    use libc::*;
    let r = |c: &'static str, f: &'static str| (Some(c), Some(f));
    match (op, errno) {
        (Op::OpenContainer, ENOENT | ENODEV) => r(
            "/dev/vfio/vfio does not exist: the vfio modules are not loaded",
            "`modprobe vfio-pci` (and boot with intel_iommu=on or amd_iommu=on)",
        ),
        (Op::OpenGroup, ENOENT) => r(
            "no /dev/vfio/<group>: the IOMMU is off, or the device is not bound to vfio-pci",
            "boot with intel_iommu=on / amd_iommu=on, `modprobe vfio-pci`, and bind the device to vfio-pci",
        ),
        (Op::OpenGroup, EBUSY) => r(
            "the group is already open (another process, or another container of this one)",
            "stop the other user of the group (`fuser /dev/vfio/*`), or share one Container in this process",
        ),
        (Op::OpenContainer | Op::OpenGroup, EACCES | EPERM) => r("permission denied", ROOT_FIX),
        (Op::SetIommu, EPERM) => r(
            "no interrupt remapping: the IOMMU cannot isolate this device's MSIs",
            "enable interrupt remapping (intremap=on on the kernel command line, x2APIC in the firmware), or \
             at your own risk `modprobe vfio_iommu_type1 allow_unsafe_interrupts=1`",
        ),
        (Op::SetIommu, ENODEV | EINVAL) => r(
            "the type1 IOMMU driver is not available",
            "`modprobe vfio_iommu_type1` and boot with intel_iommu=on / amd_iommu=on",
        ),
        (Op::GroupSetContainer, EINVAL | EBUSY) => r(
            "the group is already in another container, or cannot share this one's IOMMU domain",
            "use one container per incompatible IOMMU domain, and close other users of the group",
        ),
        (Op::MapDma, ENOMEM) => r(
            "the pinned memory would exceed RLIMIT_MEMLOCK",
            "raise the limit: `ulimit -l unlimited`, `prlimit --memlock=unlimited --pid <pid>`, or LimitMEMLOCK= \
             in the systemd unit",
        ),
        (Op::MapDma, ENOSPC) => r(
            "the type1 mapping limit (dma_entry_limit, 65535 by default) is reached",
            "use fewer, larger mappings (hugepages), or `modprobe vfio_iommu_type1 dma_entry_limit=<n>`",
        ),
        (Op::MapDma, EEXIST) => r(
            "the IOVA range overlaps an existing mapping",
            "pick an IOVA range that is not mapped yet",
        ),
        (Op::MapDma, EINVAL) => r(
            "the IOVA lies outside the IOMMU's usable ranges, or the address or size is not page-aligned",
            "use IOVAs inside Container::iommu_info().iova_ranges and page-aligned sizes",
        ),
        (Op::MapDma, EFAULT) => r(
            "the virtual range is not mapped in this process",
            "map memory that is allocated and stays allocated while it is mapped",
        ),
        (Op::UnmapDma, EINVAL) => r(
            "the range splits an existing mapping (type1v2 only unmaps whole mappings)",
            "unmap exactly what was mapped",
        ),
        (Op::Reset, ENOTTY | EINVAL) => r(
            "the device offers no reset method VFIO can use (no FLR, PM reset or bus reset)",
            "reset it through its own registers",
        ),
        (Op::Reset, EBUSY) => r(
            "a bus reset would affect other devices in use",
            "close the other functions on that bus, or reset the device through its registers",
        ),
        (Op::SetVfToken | Op::ProbeVfToken, ENOTTY) => r(
            "not an SR-IOV PF bound to vfio-pci: only a PF has a VF token",
            "set the token on the PF (its VFs are listed as virtfnN in sysfs)",
        ),
        (Op::SetIrqs, EINVAL) => r(
            "the interrupt index or count is not supported by the device",
            "check Device::irq_info for the index and its count",
        ),
        (Op::SetIrqs, ENOSPC | ENOMEM) => r("the host ran out of interrupt vectors", "ask for fewer vectors"),
        (Op::OpenDevice, EBUSY) => r(
            "the device is already open, or is being reset",
            "close the other user of the device",
        ),
        (Op::OpenDevice, ENODEV) => r(
            "the device is not in this group or not bound to vfio-pci",
            "check `ls /sys/kernel/iommu_groups/<group>/devices` and bind the device to vfio-pci",
        ),
        (Op::SetNumVfs, ENOENT) => r(
            "vfio-pci does not allow SR-IOV on this PF: vfio-pci was loaded without enable_sriov",
            "`modprobe -r vfio-pci; modprobe vfio-pci enable_sriov=1`, or \
             `echo 1 > /sys/module/vfio_pci/parameters/enable_sriov`",
        ),
        (Op::SetNumVfs, EBUSY) => r(
            "VFs are enabled or in use: a non-zero count must go back to 0 before it changes, and VFs held \
             open by a process cannot be removed",
            "write 0 first (Sysfs::set_num_vfs does), and close the processes using the VFs",
        ),
        (Op::SetNumVfs, ERANGE | EINVAL) => r(
            "more VFs than sriov_totalvfs, or the PF refuses this count",
            "ask for at most sriov_totalvfs VFs",
        ),
        (Op::SetNumVfs, ENOSYS | EOPNOTSUPP) => r(
            "the PF's driver does not support SR-IOV",
            "bind the PF to vfio-pci (with enable_sriov=1) or to its kernel driver",
        ),
        (Op::DriversProbe | Op::DriverOverride, EBUSY) => r(
            "a PF with SR-IOV enabled cannot be bound to vfio-pci",
            "write 0 to sriov_numvfs first, bind, then enable the VFs",
        ),
        (Op::DriversProbe, EINVAL | ENODEV) => r(
            "no driver accepted the device: the driver in driver_override is not loaded, or its probe failed \
             (vfio-pci fails with -22 when the IOMMU is off)",
            "`modprobe vfio-pci` (or the wanted driver), boot with intel_iommu=on / amd_iommu=on, check `dmesg`",
        ),
        (Op::ReadPagemap, EACCES | EPERM) => {
            r("reading physical addresses needs CAP_SYS_ADMIN", "run as root")
        }
        (_, EACCES | EPERM) => r("permission denied", ROOT_FIX),
        _ => (None, None),
    }
}

/// The error of `VFIO_GROUP_GET_DEVICE_FD`, which depends on whether a VF token was given.
pub(crate) fn open_device_error(device: String, errno: io::Error, token_given: bool) -> Error {
    match (errno.raw_os_error(), token_given) {
        (Some(libc::EACCES), false) => os_error(
            Op::OpenDevice,
            device,
            errno,
            "no VF token given: the PF's owner must share it (the PF is bound to vfio-pci, so its VFs, and the \
             PF itself while VFs are open, need the VF token the PF's owner set)"
                .to_owned(),
            Some("open the device with the VF token (VfToken::load from the PF owner's 0600 token file)".to_owned()),
        ),
        (Some(libc::EACCES), true) => os_error(
            Op::OpenDevice,
            device,
            errno,
            "the VF token given does not match the one the PF's owner set".to_owned(),
            Some("get the current token from the PF's owner; a restarted PF owner must present the token it set"
                .to_owned()),
        ),
        (Some(libc::EINVAL), true) => os_error(
            Op::OpenDevice,
            device,
            errno,
            "a VF token was given for a device that takes none: it is neither an SR-IOV PF nor a VF, or it is a \
             VF whose PF is bound to a kernel driver"
                .to_owned(),
            Some("open it without a token".to_owned()),
        ),
        _ => errno_error(Op::OpenDevice, device, errno, None, None),
    }
}

/// The error of `VFIO_IOMMU_MAP_DMA` with the RLIMIT_MEMLOCK figures when it is ENOMEM.
pub(crate) fn map_dma_error(
    subject: String,
    errno: io::Error,
    memlock: Option<u64>,
    mapped: u64,
    size: u64,
    dma_avail: Option<u32>,
) -> Error {
    match errno.raw_os_error() {
        Some(libc::ENOMEM) => {
            let lim = match memlock {
                None | Some(u64::MAX) => "unlimited".to_owned(),
                Some(v) => format!("{v} bytes"),
            };
            let need = mapped.saturating_add(size);
            os_error(
                Op::MapDma,
                subject,
                errno,
                format!(
                    "the pinned memory would exceed RLIMIT_MEMLOCK: the limit is {lim}, the mappings need at least \
                     {need} bytes ({mapped} mapped by this container + {size} asked for; other pinned memory of the \
                     process counts too)"
                ),
                Some(format!(
                    "raise the limit to at least {need} bytes: `ulimit -l unlimited`, `prlimit --memlock=unlimited \
                     --pid <pid>`, or LimitMEMLOCK= in the systemd unit"
                )),
            )
        }
        Some(libc::ENOSPC) => {
            let avail = dma_avail
                .map(|a| format!(" ({a} mappings left before this one)"))
                .unwrap_or_default();
            let (c, f) = explain(Op::MapDma, libc::ENOSPC);
            os_error(
                Op::MapDma,
                subject,
                errno,
                format!("{}{avail}", c.unwrap_or_default()),
                f.map(str::to_owned),
            )
        }
        _ => errno_error(Op::MapDma, subject, errno, None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: i32) -> io::Error {
        io::Error::from_raw_os_error(n)
    }

    #[test]
    fn vf_open_eacces_depends_on_the_token() {
        let m = open_device_error("0000:00:12.0".into(), e(libc::EACCES), false).to_string();
        assert!(
            m.contains("0000:00:12.0") && m.contains("VFIO_GROUP_GET_DEVICE_FD"),
            "{m}"
        );
        assert!(
            m.contains("no VF token given: the PF's owner must share it"),
            "{m}"
        );
        let m = open_device_error("0000:00:12.0".into(), e(libc::EACCES), true).to_string();
        assert!(
            m.contains("the VF token given does not match the one the PF's owner set"),
            "{m}"
        );
        let m = open_device_error("0000:00:03.0".into(), e(libc::EINVAL), true).to_string();
        assert!(
            m.contains("neither an SR-IOV PF nor a VF") && m.contains("kernel driver"),
            "{m}"
        );
        assert!(m.contains("Fix: open it without a token"), "{m}");
    }

    #[test]
    fn set_iommu_eperm_names_interrupt_remapping() {
        let m = errno_error(Op::SetIommu, "container".into(), e(libc::EPERM), None, None).to_string();
        assert!(
            m.contains("VFIO_SET_IOMMU") && m.contains("no interrupt remapping"),
            "{m}"
        );
        assert!(m.contains("allow_unsafe_interrupts"), "{m}");
    }

    #[test]
    fn map_dma_enomem_gives_the_limit_and_the_need() {
        let m = map_dma_error(
            "container".into(),
            e(libc::ENOMEM),
            Some(8 << 20),
            6 << 20,
            4 << 20,
            None,
        )
        .to_string();
        assert!(m.contains("RLIMIT_MEMLOCK") && m.contains("8388608 bytes"), "{m}");
        assert!(m.contains("10485760 bytes") && m.contains("ulimit -l"), "{m}");
        let m = map_dma_error("container".into(), e(libc::ENOSPC), None, 0, 4096, Some(0)).to_string();
        assert!(
            m.contains("dma_entry_limit") && m.contains("0 mappings left"),
            "{m}"
        );
    }

    #[test]
    fn missing_vfio_names_the_iommu_and_module() {
        let m = errno_error(
            Op::OpenGroup,
            "group 5".into(),
            e(libc::ENOENT),
            Some(Path::new("/dev/vfio/5")),
            None,
        )
        .to_string();
        assert!(
            m.contains("/dev/vfio/5") && m.contains("intel_iommu=on") && m.contains("amd_iommu=on"),
            "{m}"
        );
        assert!(m.contains("vfio-pci"), "{m}");
        let m = errno_error(Op::OpenContainer, "container".into(), e(libc::ENOENT), None, None).to_string();
        assert!(m.contains("modprobe vfio-pci"), "{m}");
        let m = Error::NoGroupNode {
            subject: "0000:00:02.0".into(),
            path: "/dev/vfio/3".into(),
        }
        .to_string();
        assert!(
            m.contains("intel_iommu=on") && m.contains("bound to") && m.contains("vfio-pci"),
            "{m}"
        );
    }

    #[test]
    fn sriov_errors_name_enable_sriov_and_the_order() {
        let p = Path::new("/sys/bus/pci/devices/0000:00:02.0/sriov_numvfs");
        let m = errno_error(
            Op::SetNumVfs,
            "0000:00:02.0".into(),
            e(libc::ENOENT),
            Some(p),
            None,
        )
        .to_string();
        assert!(
            m.contains("enable_sriov") && m.contains("modprobe vfio-pci enable_sriov=1"),
            "{m}"
        );
        assert!(m.contains("/sys/module/vfio_pci/parameters/enable_sriov"), "{m}");
        let m = errno_error(
            Op::SetNumVfs,
            "0000:00:02.0".into(),
            e(libc::EBUSY),
            Some(p),
            None,
        )
        .to_string();
        assert!(m.contains("back to 0") && m.contains("write 0 first"), "{m}");
        let m = errno_error(
            Op::DriversProbe,
            "0000:00:02.0".into(),
            e(libc::EBUSY),
            None,
            None,
        )
        .to_string();
        assert!(m.contains("SR-IOV enabled") && m.contains("sriov_numvfs"), "{m}");
    }

    #[test]
    fn token_feature_enotty_means_not_a_pf() {
        let m = errno_error(Op::SetVfToken, "0000:00:06.0".into(), e(libc::ENOTTY), None, None).to_string();
        assert!(m.contains("not an SR-IOV PF"), "{m}");
    }

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

    #[test]
    fn unknown_errno_still_names_op_and_subject() {
        let m = errno_error(Op::ConfigRead, "0000:00:02.0".into(), e(libc::EIO), None, None).to_string();
        assert!(
            m.contains("reading PCI config space for 0000:00:02.0 failed"),
            "{m}"
        );
        assert!(!m.contains("Cause"), "{m}");
    }
}
