//! `DmaMap` over a VFIO container (the IOMMU path), so that vfio and dma stay independent.
//!
//! - [`VfioDmaMap`]: type1 IOMMU. IOVAs come from an [`IovaAllocator`] over the container's usable
//!   IOVA ranges (capability IOVA_RANGE), and each mapping is a `VFIO_IOMMU_MAP_DMA`.
//! - [`PhysicalDmaMap`]: no-IOMMU mode. The "IOVA" is the physical address from
//!   `/proc/self/pagemap`; a mapping must be physically contiguous (a hugepage), which is checked
//!   page by page. Only available with the explicit [`NoIommu`] opt-in.

use std::sync::{Mutex, MutexGuard};

use oxpmd_dma::{DmaMap, DmaMapError, IovaAllocator};
use oxpmd_vfio::noiommu::{self, NoIommu};
use oxpmd_vfio::{Container, IommuInfo};

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

impl DmaMap for VfioDmaMap {
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
        self.container
            .unmap_dma(iova, len as u64)
            .map_err(|e| DmaMapError::new(op(), self.name(), e))?;
        locked(&self.iova)
            .free(iova, len as u64)
            .map_err(|e| DmaMapError::new(op(), self.name(), e))
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

impl DmaMap for PhysicalDmaMap {
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
        let m = PhysicalDmaMap::new(NoIommu::accept_unsafe());
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
