//! A VFIO device: info, regions, BARs, config space, reset, interrupts, VF token.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::bar::Bar;
use crate::container::Group;
use crate::error::{Error, Op, Result, errno_error};
use crate::pci::PciAddress;
use crate::sys::{self, ArgBuf};
use crate::token::VfToken;
use crate::uapi;

/// PCI config space: the COMMAND register and its bits.
pub mod pci_config {
    /// COMMAND register offset (16 bits).
    pub const COMMAND: u64 = 0x04;
    /// COMMAND: respond to memory space accesses.
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    /// COMMAND: bus master (the device may DMA).
    pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
    /// COMMAND: INTx disable.
    pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
}

/// What `VFIO_DEVICE_GET_INFO` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Raw flags.
    pub flags: u32,
    /// Number of regions (BARs, ROM, config, ...).
    pub num_regions: u32,
    /// Number of interrupt indices.
    pub num_irqs: u32,
}

impl DeviceInfo {
    /// VFIO_DEVICE_RESET is supported.
    pub fn supports_reset(&self) -> bool {
        self.flags & uapi::DEVICE_FLAGS_RESET != 0
    }
    /// A PCI device.
    pub fn is_pci(&self) -> bool {
        self.flags & uapi::DEVICE_FLAGS_PCI != 0
    }
}

/// One mmap-able area of a region, relative to the region's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseArea {
    /// Offset in the region.
    pub offset: u64,
    /// Length.
    pub size: u64,
}

/// What `VFIO_DEVICE_GET_REGION_INFO` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    /// Region index (BAR n = n, ROM = 6, config = 7).
    pub index: u32,
    /// Raw flags.
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the region in the device fd (for pread/pwrite/mmap).
    pub offset: u64,
    /// The areas that may be mmapped, when the kernel restricts them (capability SPARSE_MMAP).
    pub sparse_areas: Option<Vec<SparseArea>>,
    /// The MSI-X table in this BAR may be mmapped (capability MSIX_MAPPABLE).
    pub msix_mappable: bool,
}

impl RegionInfo {
    /// Readable.
    pub fn readable(&self) -> bool {
        self.flags & uapi::REGION_INFO_FLAG_READ != 0
    }
    /// Writable.
    pub fn writable(&self) -> bool {
        self.flags & uapi::REGION_INFO_FLAG_WRITE != 0
    }
    /// May be mmapped (possibly only in `sparse_areas`).
    pub fn mmappable(&self) -> bool {
        self.flags & uapi::REGION_INFO_FLAG_MMAP != 0
    }

    /// The areas to map: the sparse areas when given, else the whole region. Checks they fit.
    pub fn mmap_areas(&self) -> std::result::Result<Vec<SparseArea>, String> {
        let areas = match &self.sparse_areas {
            Some(a) => a.iter().copied().filter(|a| a.size > 0).collect(),
            None => vec![SparseArea {
                offset: 0,
                size: self.size,
            }],
        };
        for a in &areas {
            if a.offset.checked_add(a.size).is_none_or(|end| end > self.size) {
                return Err(format!(
                    "sparse area {:#x}+{:#x} exceeds the region size {:#x}",
                    a.offset, a.size, self.size
                ));
            }
        }
        Ok(areas)
    }

    pub(crate) fn parse(buf: &[u8]) -> std::result::Result<Self, &'static str> {
        let head_flags = uapi::read_u32(buf, 4).ok_or("short region info")?;
        let index = uapi::read_u32(buf, 8).ok_or("short region info")?;
        let cap_offset = uapi::read_u32(buf, 12).ok_or("short region info")?;
        let size = uapi::read_u64(buf, 16).ok_or("short region info")?;
        let offset = uapi::read_u64(buf, 24).ok_or("short region info")?;
        let mut r = RegionInfo {
            index,
            flags: head_flags,
            size,
            offset,
            sparse_areas: None,
            msix_mappable: false,
        };
        if head_flags & uapi::REGION_INFO_FLAG_CAPS == 0 {
            return Ok(r);
        }
        for cap in uapi::cap_chain(buf, cap_offset)? {
            match cap.id {
                uapi::REGION_INFO_CAP_SPARSE_MMAP => {
                    let n = uapi::read_u32(buf, cap.offset + 8).ok_or("short sparse mmap capability")?;
                    let mut areas = Vec::new();
                    for i in 0..n as usize {
                        let at = cap.offset + 16 + i * 16;
                        let offset = uapi::read_u64(buf, at).ok_or("sparse area outside the buffer")?;
                        let size = uapi::read_u64(buf, at + 8).ok_or("sparse area outside the buffer")?;
                        areas.push(SparseArea { offset, size });
                    }
                    r.sparse_areas = Some(areas);
                }
                uapi::REGION_INFO_CAP_MSIX_MAPPABLE => r.msix_mappable = true,
                _ => {}
            }
        }
        Ok(r)
    }
}

/// What `VFIO_DEVICE_GET_IRQ_INFO` tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqInfo {
    /// IRQ index (INTx 0, MSI 1, MSI-X 2, ...).
    pub index: u32,
    /// Raw flags.
    pub flags: u32,
    /// Number of vectors.
    pub count: u32,
}

impl IrqInfo {
    /// Eventfds can be bound.
    pub fn eventfd(&self) -> bool {
        self.flags & uapi::IRQ_INFO_EVENTFD != 0
    }
    /// The kernel masks the line after each interrupt (INTx): unmask after handling.
    pub fn automasked(&self) -> bool {
        self.flags & uapi::IRQ_INFO_AUTOMASKED != 0
    }
}

/// A PCI interrupt kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqKind {
    /// Legacy INTx (one line, auto-masked).
    Intx,
    /// MSI.
    Msi,
    /// MSI-X.
    Msix,
}

impl IrqKind {
    /// The VFIO IRQ index.
    pub fn index(self) -> u32 {
        match self {
            IrqKind::Intx => uapi::PCI_INTX_IRQ_INDEX,
            IrqKind::Msi => uapi::PCI_MSI_IRQ_INDEX,
            IrqKind::Msix => uapi::PCI_MSIX_IRQ_INDEX,
        }
    }
}

pub(crate) struct DeviceInner {
    pub(crate) file: File,
    pub(crate) address: PciAddress,
    pub(crate) info: DeviceInfo,
    config: Option<RegionInfo>,
    group: Group,
}

/// An open VFIO device. It keeps its group and container alive.
pub struct Device {
    inner: Arc<DeviceInner>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("address", &self.inner.address)
            .field("group", &self.inner.group.number())
            .field("info", &self.inner.info)
            .finish()
    }
}

impl Device {
    pub(crate) fn new(file: File, address: PciAddress, group: Group) -> Result<Self> {
        let mut di = uapi::DeviceInfo {
            argsz: uapi::argsz::<uapi::DeviceInfo>(),
            ..Default::default()
        };
        // SAFETY: di is a complete vfio_device_info with its argsz.
        unsafe { sys::ioctl_ptr(&file, uapi::DEVICE_GET_INFO, &mut di) }
            .map_err(|e| errno_error(Op::DeviceGetInfo, address.to_string(), e, None, None))?;
        let info = DeviceInfo {
            flags: di.flags,
            num_regions: di.num_regions,
            num_irqs: di.num_irqs,
        };
        let config = if info.is_pci() && info.num_regions > uapi::PCI_CONFIG_REGION_INDEX {
            Some(region_info(&file, address, uapi::PCI_CONFIG_REGION_INDEX)?)
        } else {
            None
        };
        Ok(Self {
            inner: Arc::new(DeviceInner {
                file,
                address,
                info,
                config,
                group,
            }),
        })
    }

    /// The device's descriptor, to hand over (with its group's and container's).
    pub fn handover_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.inner.file)
    }

    /// Its PCI address.
    pub fn address(&self) -> PciAddress {
        self.inner.address
    }

    /// Its group.
    pub fn group(&self) -> &Group {
        &self.inner.group
    }

    /// Device info (regions, IRQs, reset support).
    pub fn info(&self) -> DeviceInfo {
        self.inner.info
    }

    fn subject(&self) -> String {
        self.inner.address.to_string()
    }

    /// Info of region `index`, with its capabilities.
    pub fn region_info(&self, index: u32) -> Result<RegionInfo> {
        region_info(&self.inner.file, self.inner.address, index)
    }

    /// Info of IRQ index `index`.
    pub fn irq_info(&self, index: u32) -> Result<IrqInfo> {
        let mut ii = uapi::IrqInfo {
            argsz: uapi::argsz::<uapi::IrqInfo>(),
            index,
            ..Default::default()
        };
        // SAFETY: ii is a complete vfio_irq_info with its argsz.
        unsafe { sys::ioctl_ptr(&self.inner.file, uapi::DEVICE_GET_IRQ_INFO, &mut ii) }.map_err(|e| {
            errno_error(
                Op::IrqInfo,
                format!("{} irq index {index}", self.subject()),
                e,
                None,
                None,
            )
        })?;
        Ok(IrqInfo {
            index,
            flags: ii.flags,
            count: ii.count,
        })
    }

    /// Maps BAR `index` (its sparse areas when the kernel restricts mmap).
    pub fn map_bar(&self, index: u32) -> Result<Bar> {
        if index > 5 {
            return Err(Error::Region {
                device: self.subject(),
                index,
                reason: "not a BAR (0..=5)".into(),
            });
        }
        let ri = self.region_info(index)?;
        Bar::map(&self.inner.file, &self.subject(), &ri)
    }

    fn config(&self) -> Result<&RegionInfo> {
        self.inner.config.as_ref().ok_or_else(|| Error::Region {
            device: self.subject(),
            index: uapi::PCI_CONFIG_REGION_INDEX,
            reason: "the device has no PCI config region".into(),
        })
    }

    fn config_range(&self, off: u64, len: usize) -> Result<u64> {
        let cfg = self.config()?;
        if off.checked_add(len as u64).is_none_or(|end| end > cfg.size) {
            return Err(Error::Region {
                device: self.subject(),
                index: uapi::PCI_CONFIG_REGION_INDEX,
                reason: format!("config access {off:#x}+{len} past its size {:#x}", cfg.size),
            });
        }
        Ok(cfg.offset + off)
    }

    /// Reads config space at `off` into `buf` (pread on the config region).
    pub fn read_config(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.config_range(off, buf.len())?;
        self.inner.file.read_exact_at(buf, at).map_err(|e| {
            errno_error(
                Op::ConfigRead,
                format!("{} offset {off:#x}", self.subject()),
                e,
                None,
                None,
            )
        })
    }

    /// Writes `buf` to config space at `off` (pwrite on the config region).
    pub fn write_config(&self, off: u64, buf: &[u8]) -> Result<()> {
        let at = self.config_range(off, buf.len())?;
        self.inner.file.write_all_at(buf, at).map_err(|e| {
            errno_error(
                Op::ConfigWrite,
                format!("{} offset {off:#x}", self.subject()),
                e,
                None,
                None,
            )
        })
    }

    /// Reads a 16-bit config register (little-endian).
    pub fn config_read16(&self, off: u64) -> Result<u16> {
        let mut b = [0u8; 2];
        self.read_config(off, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a 32-bit config register (little-endian).
    pub fn config_read32(&self, off: u64) -> Result<u32> {
        let mut b = [0u8; 4];
        self.read_config(off, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes a 16-bit config register.
    pub fn config_write16(&self, off: u64, v: u16) -> Result<()> {
        self.write_config(off, &v.to_le_bytes())
    }

    /// Writes a 32-bit config register.
    pub fn config_write32(&self, off: u64, v: u32) -> Result<()> {
        self.write_config(off, &v.to_le_bytes())
    }

    /// Sets or clears bits of the PCI COMMAND register; returns the new value.
    pub fn update_command(&self, set: u16, clear: u16) -> Result<u16> {
        let cmd = self.config_read16(pci_config::COMMAND)?;
        let new = (cmd & !clear) | set;
        if new != cmd {
            self.config_write16(pci_config::COMMAND, new)?;
        }
        Ok(new)
    }

    /// Enables memory space decoding and bus mastering (needed before the device can DMA).
    pub fn enable_memory_and_bus_master(&self) -> Result<()> {
        self.update_command(pci_config::COMMAND_MEMORY | pci_config::COMMAND_BUS_MASTER, 0)
            .map(|_| ())
    }

    /// Clears bus mastering: the device can no longer DMA (do this before unmapping its memory).
    pub fn disable_bus_master(&self) -> Result<()> {
        self.update_command(0, pci_config::COMMAND_BUS_MASTER).map(|_| ())
    }

    /// Resets the device (`VFIO_DEVICE_RESET`: FLR, PM or bus reset, whatever the kernel can do).
    pub fn reset(&self) -> Result<()> {
        sys::ioctl_none(&self.inner.file, uapi::DEVICE_RESET)
            .map(|_| ())
            .map_err(|e| errno_error(Op::Reset, self.subject(), e, None, None))
    }

    /// True when the device is an SR-IOV PF whose VF token can be set (feature probe).
    pub fn supports_vf_token(&self) -> Result<bool> {
        let mut f = uapi::DeviceFeature {
            argsz: uapi::argsz::<uapi::DeviceFeature>(),
            flags: uapi::DEVICE_FEATURE_PROBE | uapi::DEVICE_FEATURE_SET | uapi::DEVICE_FEATURE_PCI_VF_TOKEN,
            data: [],
        };
        // SAFETY: f is a complete vfio_device_feature header; PROBE reads no data.
        match unsafe { sys::ioctl_ptr(&self.inner.file, uapi::DEVICE_FEATURE, &mut f) } {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Ok(false),
            Err(e) => Err(errno_error(Op::ProbeVfToken, self.subject(), e, None, None)),
        }
    }

    /// Sets the VF token of this PF (probing the feature first): from now on its VFs open only with it.
    pub fn set_vf_token(&self, token: &VfToken) -> Result<()> {
        if !self.supports_vf_token()? {
            return Err(errno_error(
                Op::SetVfToken,
                self.subject(),
                io::Error::from_raw_os_error(libc::ENOTTY),
                None,
                None,
            ));
        }
        let mut f = uapi::DeviceFeatureVfToken {
            argsz: uapi::argsz::<uapi::DeviceFeatureVfToken>(),
            flags: uapi::DEVICE_FEATURE_SET | uapi::DEVICE_FEATURE_PCI_VF_TOKEN,
            uuid: *token.as_bytes(),
        };
        // SAFETY: f is a complete vfio_device_feature followed by its 16 data bytes (argsz = 24).
        unsafe { sys::ioctl_ptr(&self.inner.file, uapi::DEVICE_FEATURE, &mut f) }
            .map_err(|e| errno_error(Op::SetVfToken, self.subject(), e, None, None))?;
        log::info!("{}: VF token set ({token})", self.subject());
        Ok(())
    }

    /// Binds `count` eventfds to the interrupts of `kind` (DATA_EVENTFD | ACTION_TRIGGER). They are
    /// unbound (the interrupts disabled) when the returned value is dropped.
    pub fn enable_irqs(&self, kind: IrqKind, count: u32) -> Result<Interrupts> {
        let info = self.irq_info(kind.index())?;
        let subject = format!("{} {kind:?}", self.subject());
        if count == 0 || count > info.count || !info.eventfd() {
            return Err(Error::Unsupported {
                subject,
                what: format!(
                    "{count} vectors asked for, the device offers {} (eventfd: {})",
                    info.count,
                    info.eventfd()
                ),
                fix: "ask for 1..=irq_info().count vectors".into(),
            });
        }
        let mut fds = Vec::with_capacity(count as usize);
        for _ in 0..count {
            fds.push(
                sys::eventfd().map_err(|e| errno_error(Op::CreateEventfd, subject.clone(), e, None, None))?,
            );
        }
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        set_irqs(
            &self.inner.file,
            kind.index(),
            uapi::IRQ_SET_DATA_EVENTFD | uapi::IRQ_SET_ACTION_TRIGGER,
            &raw,
        )
        .map_err(|e| errno_error(Op::SetIrqs, subject, e, None, None))?;
        Ok(Interrupts {
            device: self.inner.clone(),
            kind,
            fds,
        })
    }
}

fn region_info(file: &File, address: PciAddress, index: u32) -> Result<RegionInfo> {
    let subject = || format!("{address} region {index}");
    let head = uapi::RegionInfo {
        argsz: uapi::argsz::<uapi::RegionInfo>(),
        index,
        ..Default::default()
    };
    let mut buf = ArgBuf::new(&head, 0);
    // SAFETY: buf holds argsz bytes, 8-aligned.
    unsafe { sys::ioctl_ptr(file, uapi::DEVICE_GET_REGION_INFO, buf.as_mut_ptr()) }
        .map_err(|e| errno_error(Op::RegionInfo, subject(), e, None, None))?;
    let got: uapi::RegionInfo = buf.head();
    if got.argsz as usize > buf.len() && got.argsz <= 64 * 1024 {
        let head = uapi::RegionInfo {
            argsz: got.argsz,
            index,
            ..Default::default()
        };
        buf = ArgBuf::new(&head, got.argsz as usize);
        // SAFETY: buf now holds the argsz bytes the kernel asked for.
        unsafe { sys::ioctl_ptr(file, uapi::DEVICE_GET_REGION_INFO, buf.as_mut_ptr()) }
            .map_err(|e| errno_error(Op::RegionInfo, subject(), e, None, None))?;
    }
    RegionInfo::parse(buf.bytes()).map_err(|why| Error::Region {
        device: address.to_string(),
        index,
        reason: format!("malformed region info: {why}"),
    })
}

/// VFIO_DEVICE_SET_IRQS with `fds` as data (none: count 0, which disables the index).
fn set_irqs(file: &File, index: u32, flags: u32, fds: &[i32]) -> io::Result<()> {
    let head = uapi::IrqSet {
        argsz: (size_of::<uapi::IrqSet>() + 4 * fds.len()) as u32,
        flags,
        index,
        start: 0,
        count: fds.len() as u32,
        data: [],
    };
    let mut buf = ArgBuf::new(&head, head.argsz as usize);
    for (i, fd) in fds.iter().enumerate() {
        let at = size_of::<uapi::IrqSet>() + 4 * i;
        buf.bytes_mut()[at..at + 4].copy_from_slice(&fd.to_ne_bytes());
    }
    // SAFETY: buf holds the header and `count` i32 fds, argsz bytes in all.
    unsafe { sys::ioctl_ptr(file, uapi::DEVICE_SET_IRQS, buf.as_mut_ptr()) }.map(|_| ())
}

/// Eventfds bound to a device's interrupts; dropping it disables them.
pub struct Interrupts {
    device: Arc<DeviceInner>,
    kind: IrqKind,
    fds: Vec<File>,
}

impl std::fmt::Debug for Interrupts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupts")
            .field("kind", &self.kind)
            .field("count", &self.fds.len())
            .finish()
    }
}

impl Interrupts {
    /// The interrupt kind.
    pub fn kind(&self) -> IrqKind {
        self.kind
    }

    /// How many vectors.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// True when there are none (never, once enabled).
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The eventfd of vector `i` (non-blocking; poll it with epoll).
    pub fn eventfd(&self, i: usize) -> Option<&File> {
        self.fds.get(i)
    }

    /// How many interrupts vector `i` saw since the last call (0 when none): a non-blocking read.
    pub fn take_count(&self, i: usize) -> Result<u64> {
        let subject = || format!("{} {:?} vector {i}", self.device.address, self.kind);
        let mut f = self.fds.get(i).ok_or_else(|| Error::Unsupported {
            subject: subject(),
            what: format!("only {} vectors are enabled", self.fds.len()),
            fix: "use an index below Interrupts::len()".into(),
        })?;
        let mut b = [0u8; 8];
        match f.read(&mut b) {
            Ok(8) => Ok(u64::from_ne_bytes(b)),
            Ok(_) => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(errno_error(Op::ReadEventfd, subject(), e, None, None)),
        }
    }

    /// Waits until vector `i` has fired (its eventfd is readable) or `timeout` has passed; returns
    /// whether it fired. The count stays in the eventfd: [`take_count`](Self::take_count) reads it.
    pub fn wait(&self, i: usize, timeout: std::time::Duration) -> Result<bool> {
        let subject = || format!("{} {:?} vector {i}", self.device.address, self.kind);
        let f = self.fds.get(i).ok_or_else(|| Error::Unsupported {
            subject: subject(),
            what: format!("only {} vectors are enabled", self.fds.len()),
            fix: "use an index below Interrupts::len()".into(),
        })?;
        sys::poll_readable(&[f.as_fd()], timeout)
            .map(|ready| !ready.is_empty())
            .map_err(|e| errno_error(Op::ReadEventfd, subject(), e, None, None))
    }

    /// Unmasks INTx after handling it (the kernel masks it on each interrupt).
    pub fn unmask_intx(&self) -> Result<()> {
        let unmask = 1 << 4; // VFIO_IRQ_SET_ACTION_UNMASK
        let head = uapi::IrqSet {
            argsz: uapi::argsz::<uapi::IrqSet>(),
            flags: uapi::IRQ_SET_DATA_NONE | unmask,
            index: uapi::PCI_INTX_IRQ_INDEX,
            start: 0,
            count: 1,
            data: [],
        };
        let mut buf = ArgBuf::new(&head, 0);
        // SAFETY: buf holds a complete vfio_irq_set with no data (DATA_NONE).
        unsafe { sys::ioctl_ptr(&self.device.file, uapi::DEVICE_SET_IRQS, buf.as_mut_ptr()) }
            .map(|_| ())
            .map_err(|e| errno_error(Op::SetIrqs, self.device.address.to_string(), e, None, None))
    }
}

/// Waits until at least one of `fds` (eventfds of [`Interrupts::eventfd`], of several devices or
/// vectors) is readable or `timeout` has passed; returns the indices of the readable ones (empty:
/// timed out). Nothing is read from them.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: std::time::Duration) -> io::Result<Vec<usize>> {
    sys::poll_readable(fds, timeout)
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        if let Err(e) = set_irqs(
            &self.device.file,
            self.kind.index(),
            uapi::IRQ_SET_DATA_NONE | uapi::IRQ_SET_ACTION_TRIGGER,
            &[],
        ) {
            log::error!(
                "{}: disabling {:?} interrupts: {e}",
                self.device.address,
                self.kind
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region_buf(caps: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut b = vec![0u8; 32];
        let mut flags =
            uapi::REGION_INFO_FLAG_READ | uapi::REGION_INFO_FLAG_WRITE | uapi::REGION_INFO_FLAG_MMAP;
        b[8..12].copy_from_slice(&3u32.to_ne_bytes());
        b[16..24].copy_from_slice(&0x4000u64.to_ne_bytes());
        b[24..32].copy_from_slice(&(3u64 << 40).to_ne_bytes());
        if !caps.is_empty() {
            flags |= uapi::REGION_INFO_FLAG_CAPS;
            b[12..16].copy_from_slice(&32u32.to_ne_bytes());
        }
        for (i, (id, body)) in caps.iter().enumerate() {
            let at = b.len();
            let next = if i + 1 < caps.len() {
                (at + 8 + body.len()) as u32
            } else {
                0
            };
            b.extend_from_slice(&id.to_ne_bytes());
            b.extend_from_slice(&1u16.to_ne_bytes());
            b.extend_from_slice(&next.to_ne_bytes());
            b.extend_from_slice(body);
        }
        b[4..8].copy_from_slice(&flags.to_ne_bytes());
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b
    }

    fn sparse_body(areas: &[(u64, u64)]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(areas.len() as u32).to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        for (o, s) in areas {
            v.extend_from_slice(&o.to_ne_bytes());
            v.extend_from_slice(&s.to_ne_bytes());
        }
        v
    }

    #[test]
    fn region_without_caps_maps_whole() {
        let r = RegionInfo::parse(&region_buf(&[])).unwrap();
        assert_eq!((r.index, r.size, r.offset), (3, 0x4000, 3 << 40));
        assert!(r.readable() && r.writable() && r.mmappable());
        assert!(r.sparse_areas.is_none() && !r.msix_mappable);
        assert_eq!(
            r.mmap_areas().unwrap(),
            vec![SparseArea {
                offset: 0,
                size: 0x4000
            }]
        );
    }

    #[test]
    fn region_sparse_and_msix_caps() {
        let b = region_buf(&[
            (1, sparse_body(&[(0, 0x1000), (0x2000, 0x2000), (0x3000, 0)])),
            (3, vec![]),
        ]);
        let r = RegionInfo::parse(&b).unwrap();
        assert!(r.msix_mappable);
        assert_eq!(r.sparse_areas.as_ref().unwrap().len(), 3);
        assert_eq!(
            r.mmap_areas().unwrap(),
            vec![
                SparseArea {
                    offset: 0,
                    size: 0x1000
                },
                SparseArea {
                    offset: 0x2000,
                    size: 0x2000
                }
            ]
        );
        let bad = region_buf(&[(1, sparse_body(&[(0x3000, 0x2000)]))]);
        assert!(RegionInfo::parse(&bad).unwrap().mmap_areas().is_err());
        let over = region_buf(&[(1, sparse_body(&[(u64::MAX, 2)]))]);
        assert!(RegionInfo::parse(&over).unwrap().mmap_areas().is_err());
        // nr_areas larger than the buffer.
        let mut lie = region_buf(&[(1, sparse_body(&[(0, 0x1000)]))]);
        lie[40..44].copy_from_slice(&50u32.to_ne_bytes());
        assert!(RegionInfo::parse(&lie).is_err());
    }

    #[test]
    fn irq_kinds_map_to_vfio_indices() {
        assert_eq!(IrqKind::Intx.index(), 0);
        assert_eq!(IrqKind::Msi.index(), 1);
        assert_eq!(IrqKind::Msix.index(), 2);
    }
}
