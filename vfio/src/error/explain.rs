//! What an errno means for each VFIO and sysfs operation: the cause and the fix an [`Error::Os`]
//! carries, and the errors whose meaning depends on more than the errno (opening a VF with or
//! without a token, a DMA mapping past the locked-memory limit).

use std::io;
use std::path::Path;

use super::{Error, Op};

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
    fn unknown_errno_still_names_op_and_subject() {
        let m = errno_error(Op::ConfigRead, "0000:00:02.0".into(), e(libc::EIO), None, None).to_string();
        assert!(
            m.contains("reading PCI config space for 0000:00:02.0 failed"),
            "{m}"
        );
        assert!(!m.contains("Cause"), "{m}");
    }
}
