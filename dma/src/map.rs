//! Mapping memory for a device: the [`DmaMap`] trait, an [`IovaAllocator`] and the
//! [`IdentityMap`] used by virtual ports.
//!
//! `DmaMap` is implemented outside this crate (over a VFIO container in `oxpmd-pmd`); it is
//! object safe (`Arc<dyn DmaMap>`), and its errors carry the failing operation, the device and
//! a boxed source error so any backend fits.

use std::error::Error as StdError;

/// A failed DMA map or unmap, naming the operation and the device, with the underlying cause.
#[derive(Debug, thiserror::Error)]
#[error("{op} on {device} failed: {source}")]
pub struct DmaMapError {
    /// The operation, e.g. `"DMA map of 0x200000 bytes"`.
    pub op: String,
    /// The device or container, e.g. `"vfio container (group 12)"`.
    pub device: String,
    /// The cause: an OS error, an [`IovaError`], or a message.
    #[source]
    pub source: Box<dyn StdError + Send + Sync + 'static>,
}

impl DmaMapError {
    /// An error with a source error.
    pub fn new(
        op: impl Into<String>,
        device: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        DmaMapError {
            op: op.into(),
            device: device.into(),
            source: source.into(),
        }
    }
}

/// Something that can make host memory reachable by a device at an IOVA.
///
/// Implementations: [`IdentityMap`] (IOVA = virtual address; virtual ports, tests) and, in
/// `oxpmd-pmd`, a VFIO container (type1 IOMMU `VFIO_IOMMU_MAP_DMA`), which typically keeps an
/// [`IovaAllocator`] built from the container's IOVA ranges behind a `Mutex`.
///
/// Callers normally use [`DmaRegion::map`](crate::DmaRegion::map), which keeps the memory alive
/// for as long as the mapping exists and unmaps before freeing.
///
/// # Safety
/// For implementors:
/// The IOVA [`map`](DmaMap::map) returns must make the device reach exactly `len` bytes at
/// `vaddr` (and no other memory) until [`unmap`](DmaMap::unmap) succeeds for it, and `unmap`
/// must return `Ok` only once the device can no longer reach them: drivers give devices these
/// IOVAs for buffers and rings, so a wrong one lets a device write memory the program uses for
/// something else.
pub unsafe trait DmaMap: Send + Sync {
    /// A name for error messages and logs (e.g. the container or device).
    fn name(&self) -> String;

    /// Maps `len` bytes at `vaddr` for the device; `align` (a power of two, at least the page
    /// size of the memory) is the alignment the IOVA must have. Returns the IOVA.
    ///
    /// # Safety
    /// The memory must stay allocated (and not be remapped) until [`DmaMap::unmap`] is called
    /// for this IOVA, and nothing that Rust code treats as `&`/`&mut` data may be written by
    /// the device through it while the device could access it (design invariants 1 and 3).
    ///
    /// Programming a device with the IOVA (descriptor rings, base-address registers) is done
    /// through safe register writes: that device programming is trusted driver code, which
    /// must only hand a device addresses inside mappings that outlive its use of them.
    unsafe fn map(&self, vaddr: *mut u8, len: usize, align: usize) -> Result<u64, DmaMapError>;

    /// Removes a mapping made by [`DmaMap::map`] and releases its IOVA.
    ///
    /// # Safety
    /// The device must no longer access the range (queues disabled, bus mastering off, or every
    /// descriptor that named it retired); afterwards its IOVA may be given to other memory.
    unsafe fn unmap(&self, iova: u64, vaddr: *mut u8, len: usize) -> Result<(), DmaMapError>;
}

/// IOVA = virtual address: for virtual ports and devices without translation in tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdentityMap;

// SAFETY: for devices that use CPU virtual addresses (in-process fakes, virtual ports): the IOVA
// is the address itself, so it reaches exactly the memory mapped, and there is nothing to unmap.
unsafe impl DmaMap for IdentityMap {
    fn name(&self) -> String {
        "identity map".into()
    }

    unsafe fn map(&self, vaddr: *mut u8, len: usize, align: usize) -> Result<u64, DmaMapError> {
        let addr = vaddr as usize;
        if !align.is_power_of_two() || addr % align != 0 {
            return Err(DmaMapError::new(
                format!("DMA map of {len:#x} bytes at {addr:#x}"),
                self.name(),
                format!("address is not aligned to {align:#x}"),
            ));
        }
        Ok(addr as u64)
    }

    unsafe fn unmap(&self, _iova: u64, _vaddr: *mut u8, _len: usize) -> Result<(), DmaMapError> {
        Ok(())
    }
}

/// Errors of the [`IovaAllocator`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IovaError {
    /// No allowed range was given.
    #[error("IOVA allocator: no usable IOVA range given")]
    NoRanges,
    /// A range has start > end.
    #[error("IOVA allocator: range [{start:#x}, {end:#x}] is empty (start > end)")]
    BadRange {
        /// Start (inclusive).
        start: u64,
        /// End (inclusive).
        end: u64,
    },
    /// The page size is not a power of two.
    #[error("IOVA allocator: page size {0:#x} is not a power of two")]
    BadPageSize(u64),
    /// Zero length or alignment not a power of two.
    #[error("IOVA allocate: invalid request of {len:#x} bytes aligned to {align:#x}")]
    BadRequest {
        /// Requested length.
        len: u64,
        /// Requested alignment.
        align: u64,
    },
    /// No free range can hold the request.
    #[error(
        "IOVA allocate: no room for {len:#x} bytes aligned to {align:#x} in the allowed ranges \
         ({free:#x} bytes free in total); unmap unused memory or use fewer, larger regions"
    )]
    Exhausted {
        /// Requested length (rounded to the page size).
        len: u64,
        /// Alignment.
        align: u64,
        /// Free bytes left.
        free: u64,
    },
    /// A free of a range that is not (entirely) allocated, or outside the allowed ranges.
    #[error("IOVA free: [{iova:#x}, +{len:#x}) was not allocated")]
    NotAllocated {
        /// Start.
        iova: u64,
        /// Length.
        len: u64,
    },
}

/// First-fit allocator of IOVA space inside a list of allowed inclusive ranges (e.g. from
/// VFIO's `IOVA_RANGE` capability). Lengths round up to the page size; allocations are aligned
/// to at least the page size; freed space merges with its neighbours and is reused.
#[derive(Debug, Clone)]
pub struct IovaAllocator {
    /// Sorted, disjoint, non-adjacent free ranges, `[start, end]` inclusive.
    free: Vec<(u64, u64)>,
    /// The allowed ranges, merged (for checking frees).
    allowed: Vec<(u64, u64)>,
    page_size: u64,
}

impl IovaAllocator {
    /// Creates an allocator over `ranges` (inclusive `[start, end]` pairs, any order, may
    /// overlap), handing out multiples of `page_size`.
    pub fn new(ranges: &[(u64, u64)], page_size: u64) -> Result<Self, IovaError> {
        if !page_size.is_power_of_two() {
            return Err(IovaError::BadPageSize(page_size));
        }
        let mut v = Vec::with_capacity(ranges.len());
        for &(start, end) in ranges {
            if start > end {
                return Err(IovaError::BadRange { start, end });
            }
            // Keep whole pages only.
            let s = start.checked_add(page_size - 1).map(|x| x & !(page_size - 1));
            let e = end
                .checked_add(1)
                .map(|x| x & !(page_size - 1))
                .unwrap_or(!(page_size - 1));
            if let Some(s) = s {
                if e > s {
                    v.push((s, e - 1));
                }
            }
        }
        v.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match merged.last_mut() {
                Some(last) if s <= last.1.saturating_add(1) => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        if merged.is_empty() {
            return Err(IovaError::NoRanges);
        }
        Ok(IovaAllocator {
            free: merged.clone(),
            allowed: merged,
            page_size,
        })
    }

    /// The page size.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Total free bytes.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|&(s, e)| e - s + 1).sum()
    }

    /// Allocates `len` bytes (rounded up to the page size) aligned to `max(align, page_size)`.
    pub fn alloc(&mut self, len: u64, align: u64) -> Result<u64, IovaError> {
        if len == 0 || !align.is_power_of_two() {
            return Err(IovaError::BadRequest { len, align });
        }
        let align = align.max(self.page_size);
        let len = len
            .checked_add(self.page_size - 1)
            .map(|l| l & !(self.page_size - 1))
            .ok_or(IovaError::BadRequest { len, align })?;
        for i in 0..self.free.len() {
            let (s, e) = self.free[i];
            let Some(a) = s.checked_add(align - 1).map(|x| x & !(align - 1)) else {
                continue;
            };
            let Some(last) = a.checked_add(len - 1) else {
                continue;
            };
            if a < s || last > e {
                continue;
            }
            // Split [s, e] into [s, a-1], [a, last] (taken), [last+1, e].
            let mut repl = Vec::with_capacity(2);
            if a > s {
                repl.push((s, a - 1));
            }
            if last < e {
                repl.push((last + 1, e));
            }
            self.free.splice(i..=i, repl);
            return Ok(a);
        }
        Err(IovaError::Exhausted {
            len,
            align,
            free: self.free_bytes(),
        })
    }

    /// Returns `[iova, iova + len)` (len rounded up to the page size) for reuse.
    pub fn free(&mut self, iova: u64, len: u64) -> Result<(), IovaError> {
        let err = IovaError::NotAllocated { iova, len };
        if len == 0 || iova % self.page_size != 0 {
            return Err(err);
        }
        let len = len.checked_add(self.page_size - 1).ok_or(err.clone())? & !(self.page_size - 1);
        let last = iova.checked_add(len - 1).ok_or(err.clone())?;
        if !self.allowed.iter().any(|&(s, e)| s <= iova && last <= e) {
            return Err(err);
        }
        let pos = self.free.partition_point(|&(s, _)| s <= iova);
        // Must not overlap the free ranges around it.
        if pos > 0 && self.free[pos - 1].1 >= iova {
            return Err(err);
        }
        if pos < self.free.len() && self.free[pos].0 <= last {
            return Err(err);
        }
        let merge_prev = pos > 0 && self.free[pos - 1].1.checked_add(1) == Some(iova);
        let merge_next = pos < self.free.len() && last.checked_add(1) == Some(self.free[pos].0);
        match (merge_prev, merge_next) {
            (true, true) => {
                self.free[pos - 1].1 = self.free[pos].1;
                self.free.remove(pos);
            }
            (true, false) => self.free[pos - 1].1 = last,
            (false, true) => self.free[pos].0 = iova,
            (false, false) => self.free.insert(pos, (iova, last)),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 0x1000;

    #[test]
    fn bad_configuration_is_an_error() {
        assert_eq!(IovaAllocator::new(&[], P).unwrap_err(), IovaError::NoRanges);
        assert_eq!(
            IovaAllocator::new(&[(10, 5)], P).unwrap_err(),
            IovaError::BadRange { start: 10, end: 5 }
        );
        assert_eq!(
            IovaAllocator::new(&[(0, 0xfff)], 3).unwrap_err(),
            IovaError::BadPageSize(3)
        );
        // Less than one whole page.
        assert_eq!(
            IovaAllocator::new(&[(1, 0xfff)], P).unwrap_err(),
            IovaError::NoRanges
        );
    }

    #[test]
    fn stays_in_ranges_aligns_and_reuses() {
        // Two windows like x86's: below the MSI hole and above it.
        let mut a = IovaAllocator::new(&[(0x10_0000, 0xfedf_ffff), (0xfef0_0000, u64::MAX)], P).unwrap();
        let x = a.alloc(0x20_0000, 0x20_0000).unwrap();
        assert_eq!(x, 0x20_0000, "first 2 MiB-aligned address in the first window");
        let y = a.alloc(0x1000, 1).unwrap();
        assert_eq!(y, 0x10_0000);
        let z = a.alloc(1, 1).unwrap();
        assert_eq!(z, 0x10_1000, "lengths round up to the page size");
        // A request too large for the low window lands in the high one.
        let big = a.alloc(0x1_0000_0000, 0x4000_0000).unwrap();
        assert!(big >= 0xfef0_0000 && big % 0x4000_0000 == 0);
        a.free(x, 0x20_0000).unwrap();
        assert_eq!(a.alloc(0x20_0000, 0x20_0000).unwrap(), x, "freed space is reused");
    }

    #[test]
    fn double_free_and_foreign_free_are_refused() {
        let mut a = IovaAllocator::new(&[(0x1000, 0x8fff)], P).unwrap();
        let x = a.alloc(0x2000, 1).unwrap();
        a.free(x, 0x2000).unwrap();
        assert_eq!(
            a.free(x, 0x2000),
            Err(IovaError::NotAllocated { iova: x, len: 0x2000 })
        );
        assert!(a.free(0x10_0000, P).is_err(), "outside the ranges");
        assert_eq!(a.free_bytes(), 0x8000);
    }

    #[test]
    fn exhaustion_is_reported_and_merging_restores_space() {
        let mut a = IovaAllocator::new(&[(0, 0x3fff)], P).unwrap();
        let v: Vec<u64> = (0..4).map(|_| a.alloc(P, P).unwrap()).collect();
        assert!(matches!(a.alloc(P, P), Err(IovaError::Exhausted { free: 0, .. })));
        for &i in &[v[1], v[3], v[0], v[2]] {
            a.free(i, P).unwrap();
        }
        assert_eq!(
            a.alloc(0x4000, P).unwrap(),
            0,
            "all four pages merged back into one range"
        );
    }

    #[test]
    fn identity_map_returns_the_address() {
        let m = IdentityMap;
        let mut buf = vec![0u64; 512];
        let p = buf.as_mut_ptr() as *mut u8;
        // SAFETY: not actually used by any device.
        assert_eq!(unsafe { m.map(p, 4096, 8) }.unwrap(), p as u64);
        // SAFETY: as above.
        assert!(unsafe { m.map(p.wrapping_add(1), 4096, 8) }.is_err());
    }
}
