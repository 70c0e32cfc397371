//! `DmaMap` over a VFIO container (the IOMMU path), so that vfio and dma stay independent.
//!
//! - [`VfioDmaMap`]: type1 IOMMU. IOVAs come from an [`IovaAllocator`] over the container's usable
//!   IOVA ranges (capability IOVA_RANGE), and each mapping is a `VFIO_IOMMU_MAP_DMA`.
//! - [`PhysicalDmaMap`]: no-IOMMU mode. The "IOVA" is the physical address from
//!   `/proc/self/pagemap`; a mapping must be physically contiguous (a hugepage), which is checked
//!   page by page. Only available with the explicit [`NoIommu`] opt-in.

use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use oxpmd_dma::{DmaMap, DmaMapError, DmaRegion, IovaAllocator, Mempool, Packet};

use crate::adv_ring::RingMemory;
use crate::burst::Burst;
use crate::error::{BoxError, PortError};
use crate::stats::QueueCounters;
use oxpmd_vfio::noiommu::{self, NoIommu};
use oxpmd_vfio::{Container, Device, IommuInfo, PciAddress, Sysfs, VfToken};

/// IOVAs below this are never handed out, so that a zero or tiny address in a descriptor is always
/// a bug the IOMMU catches.
const LOWEST_IOVA: u64 = 1 << 20;

fn locked(m: &Mutex<IovaAllocator>) -> MutexGuard<'_, IovaAllocator> {
    // The allocator is updated in one step under the lock; a panic elsewhere cannot leave it torn.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The IOVA ranges an allocator may use: the IOMMU's ranges, without the first [`LOWEST_IOVA`] bytes.
fn usable_ranges(info: &IommuInfo) -> Vec<(u64, u64)> {
    let ranges: Vec<(u64, u64)> = if info.iova_ranges.is_empty() {
        // No capability: the kernel checks on map; assume a 39-bit (3-level VT-d) space.
        vec![(0, (1u64 << 39) - 1)]
    } else {
        info.iova_ranges.iter().map(|r| (r.start, r.end)).collect()
    };
    ranges
        .into_iter()
        .filter(|&(_, e)| e >= LOWEST_IOVA)
        .map(|(s, e)| (s.max(LOWEST_IOVA), e))
        .collect()
}

/// DMA mappings through a VFIO type1 container.
pub struct VfioDmaMap {
    container: Container,
    iova: Mutex<IovaAllocator>,
}

impl std::fmt::Debug for VfioDmaMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VfioDmaMap")
            .field("container", &self.container)
            .finish()
    }
}

impl VfioDmaMap {
    /// Wraps a container that has at least one group attached (its IOMMU is set up).
    pub fn new(container: Container) -> Result<Self, DmaMapError> {
        let info = container
            .iommu_info()
            .map_err(|e| DmaMapError::new("reading the IOMMU's IOVA ranges", "VFIO container", e))?;
        let alloc = IovaAllocator::new(&usable_ranges(&info), info.min_page_size())
            .map_err(|e| DmaMapError::new("building the IOVA allocator", "VFIO container", e))?;
        Ok(Self {
            container,
            iova: Mutex::new(alloc),
        })
    }

    /// The container.
    pub fn container(&self) -> &Container {
        &self.container
    }
}

// SAFETY: `map` returns the IOVA that VFIO_IOMMU_MAP_DMA mapped to exactly `len` bytes at `vaddr`
// (a fresh IOVA range from the container's allocator, never handed out twice while mapped);
// `unmap` returns Ok only after VFIO_IOMMU_UNMAP_DMA removed exactly that mapping, and frees the
// IOVA range only then.
unsafe impl DmaMap for VfioDmaMap {
    fn name(&self) -> String {
        let groups: Vec<String> = self.container.groups().iter().map(u32::to_string).collect();
        format!("VFIO container (groups {})", groups.join(", "))
    }

    unsafe fn map(&self, vaddr: *mut u8, len: usize, align: usize) -> Result<u64, DmaMapError> {
        let op = || format!("DMA map of {len:#x} bytes at {:#x}", vaddr as usize);
        let iova = locked(&self.iova)
            .alloc(len as u64, align as u64)
            .map_err(|e| DmaMapError::new(op(), self.name(), e))?;
        // SAFETY: the caller's contract (memory stays allocated and is not Rust data while mapped) is
        // exactly the one Container::map_dma asks for.
        if let Err(e) = unsafe { self.container.map_dma(vaddr, iova, len as u64) } {
            if let Err(f) = locked(&self.iova).free(iova, len as u64) {
                log::error!(
                    "{}: releasing IOVA {iova:#x} after a failed map: {f}",
                    self.name()
                );
            }
            return Err(DmaMapError::new(op(), self.name(), e));
        }
        Ok(iova)
    }

    unsafe fn unmap(&self, iova: u64, vaddr: *mut u8, len: usize) -> Result<(), DmaMapError> {
        let op = || {
            format!(
                "DMA unmap of {len:#x} bytes at {:#x} (iova {iova:#x})",
                vaddr as usize
            )
        };
        // SAFETY: the caller's contract (no device access to the range any more) is the one
        // Container::unmap_dma asks for.
        unsafe { self.container.unmap_dma(iova, len as u64) }
            .map_err(|e| DmaMapError::new(op(), self.name(), e))?;
        locked(&self.iova)
            .free(iova, len as u64)
            .map_err(|e| DmaMapError::new(op(), self.name(), e))
    }
}

/// The process-wide VFIO container (one IOMMU domain) of every PCI port, whatever its driver: weak,
/// so that it goes away with the last port and the last pool mapped through it.
fn shared_dma_map() -> &'static Mutex<Weak<VfioDmaMap>> {
    static MAP: OnceLock<Mutex<Weak<VfioDmaMap>>> = OnceLock::new();
    MAP.get_or_init(|| Mutex::new(Weak::new()))
}

/// Why [`open_pci_function`] (or [`open_in_shared_container`]) failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SharedOpenError {
    /// Reading the function's bound driver, or binding it to vfio-pci, failed (`op` says which).
    #[error("{source}")]
    Sysfs {
        /// The sysfs operation.
        op: &'static str,
        /// The sysfs error (names the file).
        source: Box<oxpmd_vfio::Error>,
    },
    /// The function is bound to a kernel driver; it is not taken from it.
    #[error(
        "bound to the kernel driver `{driver}`; unbind it first (echo {addr} > \
         /sys/bus/pci/drivers/{driver}/unbind) or run `oxpmd bind {addr}` to put it on vfio-pci"
    )]
    KernelDriver {
        /// PCI address.
        addr: String,
        /// The kernel driver.
        driver: String,
    },
    /// Opening `/dev/vfio/vfio` failed.
    #[error(transparent)]
    Container(oxpmd_vfio::Error),
    /// Opening the device (its group, or the device fd) failed.
    #[error(transparent)]
    Device(oxpmd_vfio::Error),
    /// Setting up the IOVA allocator of a new container failed.
    #[error(transparent)]
    Dma(DmaMapError),
}

impl SharedOpenError {
    /// The operation that failed, for an error message.
    pub(crate) fn op(&self) -> &'static str {
        match self {
            Self::Sysfs { op, .. } => op,
            Self::KernelDriver { .. } => "open",
            Self::Container(_) => "open the VFIO container",
            Self::Device(_) => "open the VFIO device",
            Self::Dma(_) => "set up DMA mapping",
        }
    }

    /// This failure as the port layer's error for `device`, naming the operation. `hint` (empty for
    /// none) is appended to a VFIO container or device failure: igbvf says where the VF token
    /// comes from.
    pub(crate) fn into_port_error(self, device: &str, hint: &'static str) -> PortError {
        let op = self.op();
        let source: BoxError = match self {
            Self::Container(source) | Self::Device(source) if !hint.is_empty() => {
                Box::new(HintedVfioError { source, hint })
            }
            other => Box::new(other),
        };
        PortError::Driver {
            device: device.to_string(),
            op,
            source,
        }
    }
}

/// A VFIO error with advice appended.
#[derive(Debug, thiserror::Error)]
#[error("{source}{hint}")]
struct HintedVfioError {
    source: oxpmd_vfio::Error,
    hint: &'static str,
}

/// Opens the PCI function at `addr` for a PCI driver: a function on vfio-pci is used as is, one
/// with no driver is bound to vfio-pci (logged), and one on a kernel driver is refused. Then it is
/// opened in the process's one VFIO container ([`open_in_shared_container`]).
pub(crate) fn open_pci_function(
    addr: PciAddress,
    token: Option<&VfToken>,
) -> Result<(Device, Arc<VfioDmaMap>), SharedOpenError> {
    let sys = Sysfs::new();
    match sys.driver(addr).map_err(|source| SharedOpenError::Sysfs {
        op: "read the bound driver",
        source: Box::new(source),
    })? {
        Some(d) if d == oxpmd_vfio::pci::VFIO_PCI_DRIVER => {}
        Some(driver) => {
            return Err(SharedOpenError::KernelDriver {
                addr: addr.to_string(),
                driver,
            });
        }
        None => {
            sys.bind_vfio_pci(addr).map_err(|source| SharedOpenError::Sysfs {
                op: "bind to vfio-pci",
                source: Box::new(source),
            })?;
            log::info!("{addr}: had no driver, bound to vfio-pci");
        }
    }
    open_in_shared_container(addr, token)
}

/// Opens the PCI device at `addr` in the process's one VFIO container, creating the container for
/// the first device. Every PCI port of the process (igb, igbvf, virtio) opens through here, so a
/// mempool mapped for one port is mapped for all of them.
fn open_in_shared_container(
    addr: PciAddress,
    token: Option<&VfToken>,
) -> Result<(Device, Arc<VfioDmaMap>), SharedOpenError> {
    let mut slot = shared_dma_map().lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dma) = slot.upgrade() {
        let dev = dma
            .container()
            .open_device(addr, token)
            .map_err(SharedOpenError::Device)?;
        return Ok((dev, dma));
    }
    let container = Container::open().map_err(SharedOpenError::Container)?;
    let dev = container
        .open_device(addr, token)
        .map_err(SharedOpenError::Device)?;
    let dma = Arc::new(VfioDmaMap::new(container).map_err(SharedOpenError::Dma)?);
    *slot = Arc::downgrade(&dma);
    Ok((dev, dma))
}

/// Turns bus mastering off for `device` because its `dir` queue `queue` would not stop (the last
/// resort of a queue's `stop_device_dma`), logging the outcome; `unit` names what needs a reopen
/// ("port", "VF"). Whether DMA is now off.
pub(crate) fn stop_bus_master(device: &Device, name: &str, dir: &str, queue: u16, unit: &str) -> bool {
    match device.disable_bus_master() {
        Ok(()) => {
            log::error!("{name}: {dir} queue {queue}: bus mastering turned off, the {unit} needs a reopen");
            true
        }
        Err(e) => {
            log::error!("{name}: {dir} queue {queue}: turning bus mastering off failed: {e}");
            false
        }
    }
}

/// Whether every byte of `pool`'s region is mapped in `container` at the region's IOVA.
pub(crate) fn pool_is_mapped(container: &Container, pool: &Mempool) -> bool {
    let region = pool.region();
    let Some(iova) = region.iova() else {
        return false;
    };
    let vaddr = region.as_ptr() as usize;
    container
        .mappings()
        .iter()
        .any(|m| m.iova == iova && m.vaddr == vaddr && m.size >= region.len() as u64)
}

/// A pool id no pool has (ids count up from 1).
const NO_POOL: u64 = u64::MAX;

/// Pools known to be mapped in a device's container, and the check for new ones (the TX side of
/// design invariant 3). Shared by every PCI TX queue.
pub(crate) struct MappedPools {
    device: String,
    container: Container,
    known: [u64; 8],
    next: usize,
}

impl MappedPools {
    /// The check for a TX queue of `device`; `pool` (the queue's own pool) is trusted without a
    /// per-packet check only if it is found mapped now, and a warning is logged if it is not.
    pub(crate) fn new(device: &str, container: Container, pool: &Mempool, what: &str) -> Self {
        let mapped = pool_is_mapped(&container, pool);
        if !mapped {
            log::warn!(
                "{device}: {what}: the mempool `{}` is not mapped in this device's container; only \
                 packets of mapped pools will be sent",
                pool.name()
            );
        }
        MappedPools {
            device: device.to_string(),
            container,
            known: [if mapped { pool.id() } else { NO_POOL }; 8],
            next: 0,
        }
    }

    /// The device's name, for messages.
    pub(crate) fn device(&self) -> &str {
        &self.device
    }

    /// Whether packets of `pool_id` are known to be mapped.
    #[inline(always)]
    pub(crate) fn knows(&self, pool_id: u64) -> bool {
        self.known.contains(&pool_id)
    }

    /// Whether `pkt`'s data lies in a container mapping at the address the device will be given.
    /// A pool found mapped is remembered: while one of its packets exists the pool (and so its
    /// mapping) stays alive, and pool ids are never reused.
    pub(crate) fn check(&mut self, pkt: &Packet) -> bool {
        if self.knows(pkt.pool_id()) {
            return true;
        }
        let iova = pkt.data_iova();
        let vaddr = pkt.data().as_ptr() as usize;
        let len = pkt.len().max(1) as u64;
        let ok = self.container.mappings().iter().any(|m| {
            iova >= m.iova
                && iova
                    .checked_add(len)
                    .is_some_and(|end| end <= m.iova.saturating_add(m.size))
                && m.vaddr.checked_add((iova - m.iova) as usize) == Some(vaddr)
        });
        if ok {
            self.known[self.next % self.known.len()] = pkt.pool_id();
            self.next += 1;
        }
        ok
    }

    /// The TX burst's check: keeps (in order) only the packets whose memory is mapped for the
    /// device, drops the others (their buffers go back to their pools), logs and counts them in
    /// `ierrors`. Returns how many were refused. One pass over known pool ids when all are known.
    #[inline]
    pub(crate) fn retain_mapped(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        if pkts.iter().all(|p| self.knows(p.pool_id())) {
            return 0;
        }
        let mut refused = 0usize;
        pkts.retain(|p| {
            let ok = self.check(p);
            if !ok {
                refused += 1;
            }
            ok
        });
        if refused > 0 {
            log::warn!(
                "{}: TX: {refused} packet(s) refused: their memory is not mapped for this device \
                 (create the mempool with Port::dma_map())",
                self.device
            );
            c.ierrors += refused as u64;
        }
        refused
    }
}

/// A piece of a mapped DMA region that holds one descriptor ring (or a virtqueue, or a table the
/// device reads). The region stays alive (and mapped for the device) for as long as any ring of the
/// port holds a slice of it. Shared by the PCI drivers.
pub(crate) struct RingSlice {
    region: Arc<DmaRegion>,
    offset: usize,
    len: usize,
    iova: u64,
}

impl RingSlice {
    /// `len` bytes at `offset` of a mapped `region`; `None` if the region is not mapped or the
    /// slice does not fit or is not 128-byte aligned.
    pub(crate) fn new(region: Arc<DmaRegion>, offset: usize, len: usize) -> Option<RingSlice> {
        let base = region.iova()?;
        let end = offset.checked_add(len)?;
        if end > region.len() || offset % crate::adv_ring::desc::RING_ALIGN != 0 || len == 0 {
            return None;
        }
        Some(RingSlice {
            iova: base + offset as u64,
            region,
            offset,
            len,
        })
    }
}

// SAFETY: the slice lies inside the region (checked in `new`), the region is page-aligned so the
// slice is 128-byte aligned, the device sees it at `iova` (the region is mapped through the
// device's container and stays mapped until the last `Arc` is dropped), and the region's memory
// lives as long as the `Arc` this value holds.
unsafe impl RingMemory for RingSlice {
    fn as_ptr(&self) -> *mut u8 {
        // Inside the region: checked in `new`.
        self.region.as_ptr().wrapping_add(self.offset)
    }
    fn iova(&self) -> u64 {
        self.iova
    }
    fn len(&self) -> usize {
        self.len
    }
}

/// No-IOMMU mode: the device gets physical addresses. No isolation: see [`NoIommu`].
#[derive(Debug)]
pub struct PhysicalDmaMap {
    opt_in: NoIommu,
    page_size: usize,
}

impl PhysicalDmaMap {
    /// Needs the explicit opt-in. Contiguity is checked for every 4 KiB page of a mapping.
    pub fn new(opt_in: NoIommu) -> Self {
        Self {
            opt_in,
            page_size: 4096,
        }
    }
}

// SAFETY: with no IOMMU the device uses physical addresses: `map` returns the physical address of
// `vaddr` after checking that every page of the range is present and physically contiguous, so
// the device reaches exactly that memory (which the caller keeps pinned until unmap); there is no
// translation to remove on unmap. The opt-in (`NoIommu`, an unsafe fn) carries the rest.
unsafe impl DmaMap for PhysicalDmaMap {
    fn name(&self) -> String {
        "no-IOMMU physical addresses".into()
    }

    unsafe fn map(&self, vaddr: *mut u8, len: usize, align: usize) -> Result<u64, DmaMapError> {
        let op = || format!("physical address of {len:#x} bytes at {:#x}", vaddr as usize);
        let err = |msg: String| DmaMapError::new(op(), self.name(), msg);
        let start = vaddr as usize;
        if len == 0 || start % self.page_size != 0 {
            return Err(err(format!(
                "the range must be non-empty and page-aligned ({:#x})",
                self.page_size
            )));
        }
        let phys =
            noiommu::virt_to_phys(&self.opt_in, start).map_err(|e| DmaMapError::new(op(), self.name(), e))?;
        if !align.is_power_of_two() || phys % align as u64 != 0 {
            return Err(err(format!(
                "physical address {phys:#x} is not aligned to {align:#x}"
            )));
        }
        // Every page must follow the previous one physically.
        let mut off = self.page_size;
        while off < len {
            let p = noiommu::virt_to_phys(&self.opt_in, start + off)
                .map_err(|e| DmaMapError::new(op(), self.name(), e))?;
            if p != phys + off as u64 {
                return Err(err(format!(
                    "not physically contiguous at offset {off:#x}: use hugepage-backed memory of at least the \
                     mapping's size"
                )));
            }
            off += self.page_size;
        }
        Ok(phys)
    }

    unsafe fn unmap(&self, _iova: u64, _vaddr: *mut u8, _len: usize) -> Result<(), DmaMapError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxpmd_vfio::IovaRange;

    #[test]
    fn usable_ranges_skip_low_iovas_and_keep_the_rest() {
        let info = IommuInfo {
            iova_pgsizes: 0x4020_1000,
            iova_ranges: vec![
                IovaRange {
                    start: 0,
                    end: 0xfedf_ffff,
                },
                IovaRange {
                    start: 0xfef0_0000,
                    end: 0xffff_ffff_ffff,
                },
            ],
            dma_avail: Some(65535),
        };
        assert_eq!(
            usable_ranges(&info),
            vec![(LOWEST_IOVA, 0xfedf_ffff), (0xfef0_0000, 0xffff_ffff_ffff)]
        );
        let low_only = IommuInfo {
            iova_ranges: vec![IovaRange {
                start: 0,
                end: 0xfffff,
            }],
            ..info.clone()
        };
        assert!(usable_ranges(&low_only).is_empty());
        let none = IommuInfo {
            iova_ranges: vec![],
            ..info
        };
        assert_eq!(usable_ranges(&none), vec![(LOWEST_IOVA, (1 << 39) - 1)]);
        // The allocator built from them never hands out the MSI window.
        let mut a = IovaAllocator::new(
            &usable_ranges(&IommuInfo {
                iova_pgsizes: 4096,
                iova_ranges: vec![
                    IovaRange {
                        start: 0xfec0_0000,
                        end: 0xfedf_ffff,
                    },
                    IovaRange {
                        start: 0xfef0_0000,
                        end: 0xffff_ffff,
                    },
                ],
                dma_avail: None,
            }),
            4096,
        )
        .unwrap();
        let first = a.alloc(2 << 20, 2 << 20).unwrap();
        assert_eq!(first, 0xfec0_0000);
        let second = a.alloc(2 << 20, 2 << 20).unwrap();
        assert!(second >= 0xfef0_0000, "{second:#x}");
    }

    #[test]
    fn physical_map_refuses_unaligned_and_reads_pagemap() {
        // SAFETY: the map is only asked for addresses below; no device is given one.
        let m = PhysicalDmaMap::new(unsafe { NoIommu::accept_unsafe() });
        let mut buf = vec![1u8; 3 * 4096];
        let page = ((buf.as_mut_ptr() as usize + 4095) & !4095) as *mut u8;
        // SAFETY: nothing is mapped for a device; the address is only looked up.
        let e = unsafe { m.map(page.wrapping_add(1), 4096, 4096) }
            .unwrap_err()
            .to_string();
        assert!(e.contains("page-aligned"), "{e}");
        // SAFETY: as above; the page belongs to `buf`, written above so it is present.
        match unsafe { m.map(page, 4096, 4096) } {
            Ok(phys) => assert_eq!(phys % 4096, 0),
            // Without CAP_SYS_ADMIN the kernel hides the frame numbers: the refusal says so.
            Err(e) => assert!(format!("{e}").contains("CAP_SYS_ADMIN"), "{e}"),
        }
        drop(buf);
    }
}
