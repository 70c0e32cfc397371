//! No-IOMMU mode: VFIO without DMA isolation (groups `noiommu-N`, IOMMU type 8).
//!
//! The kernel offers it only when built with `CONFIG_VFIO_NOIOMMU` and loaded with
//! `vfio.enable_unsafe_noiommu_mode=1`; it taints the kernel. There is no MAP_DMA: the device gets
//! physical addresses, read from `/proc/self/pagemap` (needs CAP_SYS_ADMIN), of memory that must
//! stay pinned (hugepages, mlock). Nothing here is used unless the caller opts in with
//! [`NoIommu::accept_unsafe`]; a type1 [`crate::Container`] refuses `noiommu-N` groups.
// One `unsafe fn` (the opt-in itself); no unsafe block.
#![deny(unsafe_code)]

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::{Error, Op, Result, errno_error};

/// The explicit opt-in to no-IOMMU mode. Creating it logs a warning.
#[derive(Debug)]
pub struct NoIommu(());

impl NoIommu {
    /// Accepts that devices get unrestricted DMA to all of memory (no isolation, tainted kernel).
    ///
    /// # Safety
    /// With no IOMMU, nothing confines a device: a device (or a driver bug that gives it a wrong
    /// address) can read and write any physical memory, this process's included, so Rust's
    /// guarantees hold only as long as every device driven with this value is trusted and only
    /// ever given addresses of memory mapped for it. The caller takes that on.
    #[allow(unsafe_code)]
    pub unsafe fn accept_unsafe() -> Self {
        log::warn!(
            "no-IOMMU mode accepted: a device can DMA anywhere in physical memory; use only on trusted hardware"
        );
        NoIommu(())
    }
}

const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_SWAPPED: u64 = 1 << 62;
const PAGEMAP_PFN_MASK: u64 = (1 << 55) - 1;

/// Turns one pagemap entry and the offset in its page into a physical address.
pub fn pagemap_entry_to_phys(entry: u64, page_size: usize, vaddr: usize) -> Result<u64> {
    let fail = |reason| Err(Error::Pagemap { vaddr, reason });
    if entry & PAGEMAP_PRESENT == 0 {
        return if entry & PAGEMAP_SWAPPED != 0 {
            fail("the page is swapped out (lock it: mlock or hugepages)")
        } else {
            fail("the page is not present (touch it first, and keep it locked)")
        };
    }
    let pfn = entry & PAGEMAP_PFN_MASK;
    if pfn == 0 {
        return fail("the kernel hides page frame numbers: reading them needs CAP_SYS_ADMIN (run as root)");
    }
    let ps = page_size as u64;
    pfn.checked_mul(ps)
        .and_then(|base| base.checked_add(vaddr as u64 % ps))
        .map_or_else(|| fail("page frame number out of range"), Ok)
}

/// The physical address of `vaddr` in this process (from `/proc/self/pagemap`).
pub fn virt_to_phys(opt_in: &NoIommu, vaddr: usize) -> Result<u64> {
    let _ = opt_in;
    let ps = crate::sys::page_size();
    let path = "/proc/self/pagemap";
    let f = File::open(path).map_err(|e| errno_error(Op::ReadPagemap, path.into(), e, None, None))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, (vaddr / ps) as u64 * 8).map_err(|e| {
        errno_error(
            Op::ReadPagemap,
            format!("{path} entry of {vaddr:#x}"),
            e,
            None,
            None,
        )
    })?;
    pagemap_entry_to_phys(u64::from_ne_bytes(b), ps, vaddr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pagemap_entries() {
        let e = PAGEMAP_PRESENT | 0x12345;
        assert_eq!(
            pagemap_entry_to_phys(e, 4096, 0x7f00_0000_0abc).unwrap(),
            0x12345 * 4096 + 0xabc
        );
        // Soft-dirty and exclusive bits (55, 56) are not part of the PFN.
        let e2 = PAGEMAP_PRESENT | (1 << 55) | (1 << 56) | 0x10;
        assert_eq!(pagemap_entry_to_phys(e2, 4096, 0x1008).unwrap(), 0x10 * 4096 + 8);
        let m = pagemap_entry_to_phys(PAGEMAP_PRESENT, 4096, 0x1000)
            .unwrap_err()
            .to_string();
        assert!(m.contains("CAP_SYS_ADMIN"), "{m}");
        let m = pagemap_entry_to_phys(0, 4096, 0x1000).unwrap_err().to_string();
        assert!(m.contains("not present"), "{m}");
        let m = pagemap_entry_to_phys(PAGEMAP_SWAPPED | 5, 4096, 0x1000)
            .unwrap_err()
            .to_string();
        assert!(m.contains("swapped"), "{m}");
    }

    #[test]
    fn reads_this_process_pagemap() {
        #[allow(unsafe_code)]
        // SAFETY: only used to parse pagemap entries below; no device is given an address.
        let opt = unsafe { NoIommu::accept_unsafe() };
        let v = vec![1u8; 3 * 4096];
        let addr = v.as_ptr() as usize + 4096 + 123;
        match virt_to_phys(&opt, addr) {
            Ok(p) => assert_eq!(
                p % crate::sys::page_size() as u64,
                addr as u64 % crate::sys::page_size() as u64
            ),
            // Without CAP_SYS_ADMIN the PFN is hidden: that exact refusal is expected.
            Err(Error::Pagemap { reason, .. }) => assert!(reason.contains("CAP_SYS_ADMIN"), "{reason}"),
            Err(e) => panic!("{e}"),
        }
    }
}
