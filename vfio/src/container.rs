//! The VFIO container (one IOMMU context, type1v2) and the groups attached to it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::device::Device;
use crate::error::{Error, Op, Result, errno_error, map_dma_error};
use crate::noiommu::NoIommu;
use crate::pci::{PciAddress, Sysfs};
use crate::sys::{self, ArgBuf};
use crate::token::VfToken;
use crate::uapi;

mod handover;
pub use handover::adopt_device;

/// One usable IOVA range of the IOMMU, inclusive of `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IovaRange {
    /// First usable IOVA.
    pub start: u64,
    /// Last usable IOVA (inclusive).
    pub end: u64,
}

impl IovaRange {
    /// True when `[iova, iova + size)` lies inside this range.
    pub fn contains(&self, iova: u64, size: u64) -> bool {
        size > 0 && iova >= self.start && iova.checked_add(size - 1).is_some_and(|last| last <= self.end)
    }
}

/// What `VFIO_IOMMU_GET_INFO` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuInfo {
    /// Bitmap of supported IOMMU page sizes (bit n set: 2^n bytes).
    pub iova_pgsizes: u64,
    /// Usable IOVA ranges (capability IOVA_RANGE); empty when the kernel does not report them.
    pub iova_ranges: Vec<IovaRange>,
    /// How many more DMA mappings the container may create (capability DMA_AVAIL), if reported.
    pub dma_avail: Option<u32>,
}

impl IommuInfo {
    /// The smallest IOMMU page size.
    pub fn min_page_size(&self) -> u64 {
        if self.iova_pgsizes == 0 {
            4096
        } else {
            1u64 << self.iova_pgsizes.trailing_zeros()
        }
    }

    /// True when `[iova, iova + size)` is inside one reported range (or no ranges are reported).
    pub fn iova_usable(&self, iova: u64, size: u64) -> bool {
        self.iova_ranges.is_empty() || self.iova_ranges.iter().any(|r| r.contains(iova, size))
    }

    /// Parses the info buffer (fixed part and capability chain).
    pub(crate) fn parse(buf: &[u8]) -> std::result::Result<Self, &'static str> {
        let flags = uapi::read_u32(buf, 4).ok_or("short info")?;
        let iova_pgsizes = uapi::read_u64(buf, 8).ok_or("short info")?;
        let cap_offset = uapi::read_u32(buf, 16).ok_or("short info")?;
        let mut info = IommuInfo {
            iova_pgsizes,
            iova_ranges: Vec::new(),
            dma_avail: None,
        };
        if flags & uapi::IOMMU_INFO_CAPS == 0 {
            return Ok(info);
        }
        for cap in uapi::cap_chain(buf, cap_offset)? {
            match cap.id {
                uapi::IOMMU_TYPE1_INFO_CAP_IOVA_RANGE => {
                    let n = uapi::read_u32(buf, cap.offset + 8).ok_or("short IOVA range capability")?;
                    for i in 0..n as usize {
                        let at = cap.offset + 16 + i * 16;
                        let start = uapi::read_u64(buf, at).ok_or("IOVA range outside the buffer")?;
                        let end = uapi::read_u64(buf, at + 8).ok_or("IOVA range outside the buffer")?;
                        info.iova_ranges.push(IovaRange { start, end });
                    }
                }
                uapi::IOMMU_TYPE1_INFO_DMA_AVAIL => {
                    info.dma_avail =
                        Some(uapi::read_u32(buf, cap.offset + 8).ok_or("short DMA_AVAIL capability")?);
                }
                _ => {}
            }
        }
        Ok(info)
    }
}

/// One DMA mapping made through a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaMapping {
    /// Process virtual address.
    pub vaddr: usize,
    /// Device-visible address.
    pub iova: u64,
    /// Length in bytes.
    pub size: u64,
}

/// The status flags of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStatus {
    /// Every device of the group is bound to vfio-pci or to no driver.
    pub viable: bool,
    /// The group is attached to a container.
    pub container_set: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Type1v2,
    NoIommu,
}

struct GroupInner {
    number: u32,
    file: File,
}

#[derive(Default)]
struct State {
    groups: BTreeMap<u32, Arc<GroupInner>>,
    iommu_set: bool,
    ranges: Option<Vec<IovaRange>>,
    mappings: BTreeMap<u64, DmaMapping>,
}

struct ContainerInner {
    file: File,
    mode: Mode,
    vfio_dir: PathBuf,
    sysfs: Sysfs,
    state: Mutex<State>,
}

/// A VFIO container: one IOMMU address space shared by the groups (and their devices) attached to it.
///
/// Cloning shares it. Groups and devices keep it alive; when the last handle goes, every DMA mapping
/// made through it is unmapped (while its groups are still attached), then the groups are closed.
#[derive(Clone)]
pub struct Container {
    inner: Arc<ContainerInner>,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state();
        f.debug_struct("Container")
            .field("mode", &self.inner.mode)
            .field("groups", &st.groups.keys().collect::<Vec<_>>())
            .field("mappings", &st.mappings.len())
            .finish()
    }
}

const CONTAINER_SUBJECT: &str = "the VFIO container";

impl Container {
    /// Opens `/dev/vfio/vfio` for the type1v2 IOMMU: checks the API version and the extension.
    pub fn open() -> Result<Self> {
        Self::open_at(Path::new("/dev/vfio"), Sysfs::new())
    }

    /// Like [`Container::open`] with another `/dev/vfio` directory and sysfs root.
    pub fn open_at(vfio_dir: &Path, sysfs: Sysfs) -> Result<Self> {
        Self::open_mode(vfio_dir, sysfs, Mode::Type1v2)
    }

    /// Opens a no-IOMMU container (groups `noiommu-N`, type 8). No DMA isolation: the device may write
    /// anywhere in memory and needs physical addresses ([`crate::noiommu::virt_to_phys`]).
    pub fn open_noiommu(opt_in: NoIommu) -> Result<Self> {
        let _ = opt_in;
        log::warn!(
            "no-IOMMU VFIO container: devices get unrestricted DMA to all memory and the kernel is tainted"
        );
        Self::open_mode(Path::new("/dev/vfio"), Sysfs::new(), Mode::NoIommu)
    }

    fn open_mode(vfio_dir: &Path, sysfs: Sysfs, mode: Mode) -> Result<Self> {
        let path = vfio_dir.join("vfio");
        let subject = CONTAINER_SUBJECT.to_owned();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| errno_error(Op::OpenContainer, subject.clone(), e, Some(&path), None))?;
        let version = sys::ioctl_none(&file, uapi::GET_API_VERSION)
            .map_err(|e| errno_error(Op::GetApiVersion, subject.clone(), e, Some(&path), None))?;
        if version != uapi::API_VERSION {
            return Err(Error::Unsupported {
                subject,
                what: format!("VFIO API version {version}, expected {}", uapi::API_VERSION),
                fix: "use a kernel with the standard VFIO API".into(),
            });
        }
        let (ext, what, fix) = match mode {
            Mode::Type1v2 => (
                uapi::TYPE1V2_IOMMU,
                "the type1v2 IOMMU is not supported",
                "`modprobe vfio_iommu_type1` and boot with intel_iommu=on / amd_iommu=on",
            ),
            Mode::NoIommu => (
                uapi::NOIOMMU_IOMMU,
                "no-IOMMU mode is not available (kernel built without CONFIG_VFIO_NOIOMMU, or \
                 vfio.enable_unsafe_noiommu_mode=0)",
                "`modprobe vfio enable_unsafe_noiommu_mode=1` on a kernel with CONFIG_VFIO_NOIOMMU, or use an IOMMU",
            ),
        };
        let has = sys::ioctl_val(&file, uapi::CHECK_EXTENSION, ext as usize)
            .map_err(|e| errno_error(Op::CheckExtension, subject.clone(), e, Some(&path), None))?;
        if has <= 0 {
            return Err(Error::Unsupported {
                subject,
                what: what.into(),
                fix: fix.into(),
            });
        }
        Ok(Self {
            inner: Arc::new(ContainerInner {
                file,
                mode,
                vfio_dir: vfio_dir.to_owned(),
                sysfs,
                state: Mutex::new(State::default()),
            }),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent in a way that matters more
        // than losing them; keep going.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True for a no-IOMMU container.
    pub fn is_noiommu(&self) -> bool {
        self.inner.mode == Mode::NoIommu
    }

    /// The sysfs tree this container looks devices up in.
    pub fn sysfs(&self) -> &Sysfs {
        &self.inner.sysfs
    }

    /// Opens IOMMU group `number` (once per container: later calls return the same group), checks that
    /// it is viable, attaches it, and sets the IOMMU type when it is the first group.
    pub fn group(&self, number: u32) -> Result<Group> {
        let mut st = self.state();
        if let Some(g) = st.groups.get(&number) {
            return Ok(Group {
                inner: g.clone(),
                container: self.clone(),
            });
        }
        let (path, noiommu) = resolve_group_node(&self.inner.vfio_dir, number, self.is_noiommu())?;
        let _ = noiommu;
        let subject = format!("IOMMU group {number}");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| errno_error(Op::OpenGroup, subject.clone(), e, Some(&path), None))?;
        let status = group_status(&file, &subject)?;
        if !status.viable {
            let members = self.inner.sysfs.group_members(number).unwrap_or_default();
            return Err(Error::GroupNotViable {
                group: number,
                members,
            });
        }
        let cfd: i32 = std::os::fd::AsRawFd::as_raw_fd(&self.inner.file);
        let mut cfd_arg = cfd;
        // SAFETY: SET_CONTAINER reads one int (the container fd) from the pointer.
        unsafe { sys::ioctl_ptr(&file, uapi::GROUP_SET_CONTAINER, &mut cfd_arg) }
            .map_err(|e| errno_error(Op::GroupSetContainer, subject.clone(), e, Some(&path), None))?;
        if !st.iommu_set {
            let ty = match self.inner.mode {
                Mode::Type1v2 => uapi::TYPE1V2_IOMMU,
                Mode::NoIommu => uapi::NOIOMMU_IOMMU,
            };
            // On failure the group fd closes here, which detaches it again.
            sys::ioctl_val(&self.inner.file, uapi::SET_IOMMU, ty as usize).map_err(|e| {
                errno_error(
                    Op::SetIommu,
                    format!("{CONTAINER_SUBJECT} ({subject})"),
                    e,
                    None,
                    None,
                )
            })?;
            st.iommu_set = true;
        }
        let inner = Arc::new(GroupInner { number, file });
        st.groups.insert(number, inner.clone());
        drop(st);
        if self.inner.mode == Mode::Type1v2 && self.state().ranges.is_none() {
            match self.iommu_info() {
                Ok(info) => self.state().ranges = Some(info.iova_ranges),
                Err(e) => log::warn!("IOVA ranges unknown, the kernel will check them: {e}"),
            }
        }
        log::debug!("VFIO group {number} attached to the container");
        Ok(Group {
            inner,
            container: self.clone(),
        })
    }

    /// Opens the IOMMU group of a PCI device (through its sysfs `iommu_group` link).
    pub fn group_of(&self, addr: PciAddress) -> Result<Group> {
        let number = self
            .inner
            .sysfs
            .iommu_group(addr)?
            .ok_or_else(|| Error::NoIommuGroup {
                address: addr.to_string(),
            })?;
        self.group(number)
    }

    /// Opens a device: its group (attached to this container if it is not yet), then the device,
    /// passing the VF token when one is given.
    pub fn open_device(&self, addr: PciAddress, token: Option<&VfToken>) -> Result<Device> {
        self.group_of(addr)?.open_device(addr, token)
    }

    /// The IOMMU's page sizes, usable IOVA ranges and mappings left (`VFIO_IOMMU_GET_INFO`).
    pub fn iommu_info(&self) -> Result<IommuInfo> {
        self.require_type1(Op::IommuGetInfo)?;
        let subject = CONTAINER_SUBJECT.to_owned();
        let head = uapi::IommuType1Info {
            argsz: uapi::argsz::<uapi::IommuType1Info>(),
            ..Default::default()
        };
        let mut buf = ArgBuf::new(&head, 0);
        // SAFETY: buf holds argsz bytes, 8-aligned.
        unsafe { sys::ioctl_ptr(&self.inner.file, uapi::IOMMU_GET_INFO, buf.as_mut_ptr()) }
            .map_err(|e| errno_error(Op::IommuGetInfo, subject.clone(), e, None, None))?;
        let got: uapi::IommuType1Info = buf.head();
        if got.argsz as usize > buf.len() {
            let head = uapi::IommuType1Info {
                argsz: got.argsz,
                ..Default::default()
            };
            buf = ArgBuf::new(&head, got.argsz as usize);
            // SAFETY: buf now holds the argsz bytes the kernel asked for.
            unsafe { sys::ioctl_ptr(&self.inner.file, uapi::IOMMU_GET_INFO, buf.as_mut_ptr()) }
                .map_err(|e| errno_error(Op::IommuGetInfo, subject.clone(), e, None, None))?;
        }
        IommuInfo::parse(buf.bytes()).map_err(|why| Error::Unsupported {
            subject,
            what: format!("malformed VFIO_IOMMU_GET_INFO answer: {why}"),
            fix: "report this kernel version".into(),
        })
    }

    fn require_type1(&self, op: Op) -> Result<()> {
        if self.is_noiommu() {
            return Err(Error::Unsupported {
                subject: CONTAINER_SUBJECT.into(),
                what: format!("{op} does not exist in no-IOMMU mode"),
                fix: "give the device physical addresses (noiommu::virt_to_phys) instead of IOVAs".into(),
            });
        }
        if !self.state().iommu_set {
            return Err(Error::Unsupported {
                subject: CONTAINER_SUBJECT.into(),
                what: format!("{op} needs a group attached first"),
                fix: "attach a group (Container::group / group_of / open_device) before mapping".into(),
            });
        }
        Ok(())
    }

    /// Maps `[vaddr, vaddr + size)` of this process at `iova` for the devices of this container
    /// (read and write). The mapping is tracked and unmapped when the container goes.
    ///
    /// # Safety
    /// The range must be memory of this process that stays allocated while it is mapped, and that
    /// Rust code does not hold as `&`/`&mut` data while a device may write it: after this call any
    /// device of the container can write it at any time.
    pub unsafe fn map_dma(&self, vaddr: *const u8, iova: u64, size: u64) -> Result<()> {
        self.require_type1(Op::MapDma)?;
        let bad = |reason: String| Error::DmaRequest { iova, size, reason };
        let page = sys::page_size() as u64;
        if size == 0 || size % page != 0 || iova % page != 0 || (vaddr as u64) % page != 0 {
            return Err(bad(format!(
                "vaddr, iova and size must be non-zero multiples of the page size {page}"
            )));
        }
        let mut st = self.state();
        if let Some(ranges) = &st.ranges
            && !ranges.is_empty()
            && !ranges.iter().any(|r| r.contains(iova, size))
        {
            let list: Vec<String> = ranges
                .iter()
                .map(|r| format!("{:#x}..={:#x}", r.start, r.end))
                .collect();
            return Err(bad(format!(
                "outside the IOMMU's usable IOVA ranges [{}]",
                list.join(", ")
            )));
        }
        let end = iova
            .checked_add(size)
            .ok_or_else(|| bad("iova + size overflows".into()))?;
        if let Some((_, m)) = st.mappings.range(..end).next_back()
            && m.iova + m.size > iova
        {
            return Err(bad(format!(
                "overlaps the mapping at iova {:#x} size {:#x}",
                m.iova, m.size
            )));
        }
        let mut arg = uapi::IommuType1DmaMap {
            argsz: uapi::argsz::<uapi::IommuType1DmaMap>(),
            flags: uapi::DMA_MAP_FLAG_READ | uapi::DMA_MAP_FLAG_WRITE,
            vaddr: vaddr as u64,
            iova,
            size,
        };
        // SAFETY: arg is a complete vfio_iommu_type1_dma_map; the caller vouches for the memory range.
        if let Err(e) = unsafe { sys::ioctl_ptr(&self.inner.file, uapi::IOMMU_MAP_DMA, &mut arg) } {
            let mapped: u64 = st.mappings.values().map(|m| m.size).sum();
            drop(st);
            let avail = if e.raw_os_error() == Some(libc::ENOSPC) {
                self.iommu_info().ok().and_then(|i| i.dma_avail)
            } else {
                None
            };
            let subject = format!("{CONTAINER_SUBJECT} (iova {iova:#x} size {size:#x})");
            return Err(map_dma_error(
                subject,
                e,
                sys::memlock_limit(),
                mapped,
                size,
                avail,
            ));
        }
        st.mappings.insert(
            iova,
            DmaMapping {
                vaddr: vaddr as usize,
                iova,
                size,
            },
        );
        Ok(())
    }

    /// Unmaps a mapping made with [`Container::map_dma`] (exactly its iova and size).
    ///
    /// # Safety
    /// No device of this container may access the range any more: every queue whose descriptors
    /// named an address in it is disabled (or those descriptors retired), or bus mastering is
    /// off. Once unmapped, the IOVA range can be mapped again to other memory (through this
    /// container, from any clone of it), and a device still using the old IOVAs would then
    /// write into that memory.
    pub unsafe fn unmap_dma(&self, iova: u64, size: u64) -> Result<()> {
        self.require_type1(Op::UnmapDma)?;
        let mut st = self.state();
        match st.mappings.get(&iova) {
            Some(m) if m.size == size => {}
            _ => {
                return Err(Error::DmaRequest {
                    iova,
                    size,
                    reason: "no mapping with exactly this iova and size was made through this container"
                        .into(),
                });
            }
        }
        self.unmap_raw(iova, size)?;
        st.mappings.remove(&iova);
        Ok(())
    }

    fn unmap_raw(&self, iova: u64, size: u64) -> Result<()> {
        let mut arg = uapi::IommuType1DmaUnmap {
            argsz: uapi::argsz::<uapi::IommuType1DmaUnmap>(),
            flags: 0,
            iova,
            size,
            data: [],
        };
        // SAFETY: arg is a complete vfio_iommu_type1_dma_unmap (no bitmap); the kernel writes size back.
        unsafe { sys::ioctl_ptr(&self.inner.file, uapi::IOMMU_UNMAP_DMA, &mut arg) }.map_err(|e| {
            errno_error(
                Op::UnmapDma,
                format!("{CONTAINER_SUBJECT} (iova {iova:#x} size {size:#x})"),
                e,
                None,
                None,
            )
        })?;
        if arg.size != size {
            return Err(Error::DmaRequest {
                iova,
                size,
                reason: format!("the kernel unmapped {:#x} bytes instead", arg.size),
            });
        }
        Ok(())
    }

    /// The mappings made through this container and not unmapped yet, by IOVA.
    pub fn mappings(&self) -> Vec<DmaMapping> {
        self.state().mappings.values().copied().collect()
    }

    /// The numbers of the groups attached.
    pub fn groups(&self) -> Vec<u32> {
        self.state().groups.keys().copied().collect()
    }
}

impl Drop for ContainerInner {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        for m in std::mem::take(&mut st.mappings).into_values() {
            let mut arg = uapi::IommuType1DmaUnmap {
                argsz: uapi::argsz::<uapi::IommuType1DmaUnmap>(),
                flags: 0,
                iova: m.iova,
                size: m.size,
                data: [],
            };
            // SAFETY: arg is a complete vfio_iommu_type1_dma_unmap; the groups are still attached
            // (they are dropped after this body), so the IOMMU still exists.
            if let Err(e) = unsafe { sys::ioctl_ptr(&self.file, uapi::IOMMU_UNMAP_DMA, &mut arg) } {
                log::error!(
                    "unmapping DMA iova {:#x} size {:#x} at container teardown: {e}",
                    m.iova,
                    m.size
                );
            }
        }
    }
}

fn group_status(file: &File, subject: &str) -> Result<GroupStatus> {
    let mut st = uapi::GroupStatus {
        argsz: uapi::argsz::<uapi::GroupStatus>(),
        flags: 0,
    };
    // SAFETY: st is a complete vfio_group_status.
    unsafe { sys::ioctl_ptr(file, uapi::GROUP_GET_STATUS, &mut st) }
        .map_err(|e| errno_error(Op::GroupGetStatus, subject.to_owned(), e, None, None))?;
    Ok(GroupStatus {
        viable: st.flags & uapi::GROUP_FLAGS_VIABLE != 0,
        container_set: st.flags & uapi::GROUP_FLAGS_CONTAINER_SET != 0,
    })
}

/// Finds the node of group `number` in `vfio_dir`: `N` (IOMMU) or `noiommu-N` (no-IOMMU, refused
/// unless `allow_noiommu`). Returns the path and whether it is a no-IOMMU group.
pub(crate) fn resolve_group_node(
    vfio_dir: &Path,
    number: u32,
    allow_noiommu: bool,
) -> Result<(PathBuf, bool)> {
    let normal = vfio_dir.join(number.to_string());
    let noiommu = vfio_dir.join(format!("noiommu-{number}"));
    if noiommu.exists() {
        if !allow_noiommu {
            return Err(Error::NoIommuRefused { group: number });
        }
        return Ok((noiommu, true));
    }
    if normal.exists() {
        return Ok((normal, false));
    }
    if !vfio_dir.join("vfio").exists() {
        return Err(errno_error(
            Op::OpenContainer,
            CONTAINER_SUBJECT.into(),
            io::Error::from_raw_os_error(libc::ENOENT),
            Some(&vfio_dir.join("vfio")),
            None,
        ));
    }
    Err(Error::NoGroupNode {
        subject: format!("IOMMU group {number}"),
        path: normal,
    })
}

/// An IOMMU group attached to a container. Cloning shares it.
#[derive(Clone)]
pub struct Group {
    inner: Arc<GroupInner>,
    container: Container,
}

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("number", &self.inner.number)
            .finish()
    }
}

impl Group {
    /// The group number.
    pub fn number(&self) -> u32 {
        self.inner.number
    }

    /// The container it is attached to.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// Its status (`VFIO_GROUP_GET_STATUS`).
    pub fn status(&self) -> Result<GroupStatus> {
        group_status(&self.inner.file, &format!("IOMMU group {}", self.inner.number))
    }

    /// Opens a device of this group, with the VF token when one is given (a VF of a PF bound to
    /// vfio-pci, or such a PF while it has VFs open).
    pub fn open_device(&self, addr: PciAddress, token: Option<&VfToken>) -> Result<Device> {
        let mut name = addr.to_string();
        if let Some(t) = token {
            name.push_str(" vf_token=");
            name.push_str(&t.expose());
        }
        let cname = std::ffi::CString::new(name).map_err(|_| Error::BadPciAddress {
            input: addr.to_string(),
            reason: "contains a NUL byte",
        })?;
        // SAFETY: GET_DEVICE_FD reads a NUL-terminated string from the pointer; cname outlives the call.
        let fd = unsafe {
            sys::ioctl_ptr(
                &self.inner.file,
                uapi::GROUP_GET_DEVICE_FD,
                cname.as_ptr().cast_mut(),
            )
        }
        .map_err(|e| crate::error::open_device_error(addr.to_string(), e, token.is_some()))?;
        // SAFETY: on success the ioctl returns a new file descriptor that we now own.
        let file = File::from(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
        Device::new(file, addr, self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::fs;

    fn info_buf(with_caps: bool) -> Vec<u8> {
        let mut b = vec![0u8; 80];
        b[0..4].copy_from_slice(&80u32.to_ne_bytes());
        b[4..8].copy_from_slice(&(if with_caps { uapi::IOMMU_INFO_CAPS } else { 0 }).to_ne_bytes());
        b[8..16].copy_from_slice(&0x4020_1000u64.to_ne_bytes());
        b[16..20].copy_from_slice(&24u32.to_ne_bytes());
        // IOVA_RANGE at 24: two ranges.
        b[24..26].copy_from_slice(&1u16.to_ne_bytes());
        b[28..32].copy_from_slice(&64u32.to_ne_bytes());
        b[32..36].copy_from_slice(&2u32.to_ne_bytes());
        // ranges at 40: [0, 0xfedfffff], [0xfef00000, 0x7fffffffff] -- 2 * 16 = 32 bytes; ends at 72.
        // DMA_AVAIL at 64 would overlap: put it at 72 with a wider buffer.
        b.resize(84, 0);
        b[0..4].copy_from_slice(&84u32.to_ne_bytes());
        b[28..32].copy_from_slice(&72u32.to_ne_bytes());
        b[40..48].copy_from_slice(&0u64.to_ne_bytes());
        b[48..56].copy_from_slice(&0xfedf_ffffu64.to_ne_bytes());
        b[56..64].copy_from_slice(&0xfef0_0000u64.to_ne_bytes());
        b[64..72].copy_from_slice(&0x7f_ffff_ffffu64.to_ne_bytes());
        b[72..74].copy_from_slice(&3u16.to_ne_bytes());
        b[80..84].copy_from_slice(&65000u32.to_ne_bytes());
        b
    }

    #[test]
    fn parses_iommu_info_caps() {
        let info = IommuInfo::parse(&info_buf(true)).unwrap();
        assert_eq!(info.iova_pgsizes, 0x4020_1000);
        assert_eq!(info.min_page_size(), 4096);
        assert_eq!(info.iova_ranges.len(), 2);
        assert_eq!(
            info.iova_ranges[1],
            IovaRange {
                start: 0xfef0_0000,
                end: 0x7f_ffff_ffff
            }
        );
        assert_eq!(info.dma_avail, Some(65000));
        assert!(info.iova_usable(0x1000, 0x1000));
        assert!(!info.iova_usable(0xfee0_0000, 0x1000));
        assert!(!info.iova_usable(0xfedf_f000, 0x2000));
        assert!(info.iova_usable(0xfedf_f000, 0x1000));
        let plain = IommuInfo::parse(&info_buf(false)).unwrap();
        assert!(plain.iova_ranges.is_empty() && plain.dma_avail.is_none());
        // A range count pointing past the buffer is refused.
        let mut b = info_buf(true);
        b[32..36].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(IommuInfo::parse(&b).is_err());
    }

    #[test]
    fn iova_range_contains_is_inclusive_and_overflow_safe() {
        let r = IovaRange {
            start: 0x1000,
            end: 0x1fff,
        };
        assert!(r.contains(0x1000, 0x1000));
        assert!(!r.contains(0x1000, 0x1001));
        assert!(!r.contains(0x1000, 0));
        let all = IovaRange {
            start: 0,
            end: u64::MAX,
        };
        assert!(all.contains(u64::MAX, 1));
        assert!(!all.contains(u64::MAX, 2));
    }

    #[test]
    fn group_nodes_and_noiommu_refusal() {
        let d = TempDir::new("devvfio");
        fs::write(d.path().join("vfio"), "").unwrap();
        fs::write(d.path().join("5"), "").unwrap();
        fs::write(d.path().join("noiommu-6"), "").unwrap();
        assert_eq!(
            resolve_group_node(d.path(), 5, false).unwrap(),
            (d.path().join("5"), false)
        );
        let e = resolve_group_node(d.path(), 6, false).unwrap_err();
        assert!(matches!(e, Error::NoIommuRefused { group: 6 }));
        let m = e.to_string();
        assert!(
            m.contains("noiommu-6") && m.contains("Refused") && m.contains("NoIommu::accept_unsafe"),
            "{m}"
        );
        assert_eq!(
            resolve_group_node(d.path(), 6, true).unwrap(),
            (d.path().join("noiommu-6"), true)
        );
        let m = resolve_group_node(d.path(), 7, false).unwrap_err().to_string();
        assert!(m.contains("/7") && m.contains("intel_iommu=on"), "{m}");
        fs::remove_file(d.path().join("vfio")).unwrap();
        let m = resolve_group_node(d.path(), 7, false).unwrap_err().to_string();
        assert!(m.contains("modprobe vfio-pci"), "{m}");
    }

    #[test]
    fn container_open_without_vfio_names_the_fix() {
        let d = TempDir::new("novfio");
        let m = Container::open_at(d.path(), Sysfs::new())
            .unwrap_err()
            .to_string();
        assert!(m.contains("/dev/vfio/vfio") || m.contains("vfio"), "{m}");
        assert!(m.contains("modprobe vfio-pci"), "{m}");
    }
}
