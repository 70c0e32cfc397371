//! Handing an opened device to another process: the three descriptors (container, group,
//! device) are borrowed for sending over a UNIX socket (SCM_RIGHTS), and the receiver adopts
//! them after checking each is what it claims to be. The receiver needs no access to
//! `/dev/vfio` and no VF token: the sender opened the device with it.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{CONTAINER_SUBJECT, Container, ContainerInner, Group, GroupInner, Mode, State, group_status};
use crate::device::Device;
use crate::error::{Error, Op, Result, errno_error};
use crate::pci::{PciAddress, Sysfs};
use crate::{sys, uapi};

impl Container {
    /// The container's descriptor, to hand over.
    pub fn handover_fd(&self) -> BorrowedFd<'_> {
        self.inner.file.as_fd()
    }
}

impl Group {
    /// The group's descriptor, to hand over.
    pub fn handover_fd(&self) -> BorrowedFd<'_> {
        self.inner.file.as_fd()
    }
}

/// Adopts a device another process opened: `container` must be a type1v2 VFIO container with
/// `group` (IOMMU group `number`) attached, and `device` a device of that group at `addr`. Each
/// descriptor is checked with the ioctl of its kind (a descriptor of another kind fails it);
/// the IOVA ranges are read again. Refused: a no-IOMMU container, a group not attached.
pub fn adopt_device(
    container: OwnedFd,
    group: OwnedFd,
    number: u32,
    device: OwnedFd,
    addr: PciAddress,
) -> Result<Device> {
    let cfile = File::from(container);
    let subject = format!("{CONTAINER_SUBJECT} (handed over)");
    let version = sys::ioctl_none(&cfile, uapi::GET_API_VERSION)
        .map_err(|e| errno_error(Op::GetApiVersion, subject.clone(), e, None, None))?;
    if version != uapi::API_VERSION {
        return Err(Error::Unsupported {
            subject,
            what: format!("VFIO API version {version} on the handed-over descriptor"),
            fix: "the service must pass a VFIO container descriptor".into(),
        });
    }
    let gfile = File::from(group);
    let gsubject = format!("IOMMU group {number} (handed over)");
    let st = group_status(&gfile, &gsubject)?;
    if !st.container_set || !st.viable {
        return Err(Error::Unsupported {
            subject: gsubject,
            what: "the handed-over group is not attached to a container".into(),
            fix: "the service must open the device before handing it over".into(),
        });
    }
    let ginner = Arc::new(GroupInner { number, file: gfile });
    let mut state = State {
        iommu_set: true,
        ..State::default()
    };
    state.groups.insert(number, ginner.clone());
    let c = Container {
        inner: Arc::new(ContainerInner {
            file: cfile,
            mode: Mode::Type1v2,
            vfio_dir: PathBuf::from("/dev/vfio"),
            sysfs: Sysfs::new(),
            state: Mutex::new(state),
        }),
    };
    // The container must be type1 with the IOMMU set: GET_INFO fails otherwise.
    let info = c.iommu_info()?;
    c.state().ranges = Some(info.iova_ranges);
    let g = Group {
        inner: ginner,
        container: c,
    };
    Device::new(File::from(device), addr, g)
}
