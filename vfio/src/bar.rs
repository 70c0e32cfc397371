//! A mapped BAR: volatile register access through raw pointers, bounds-checked: 32-bit on the hot
//! path, 8- and 16-bit for devices whose registers must be accessed with their natural width.
//!
//! No reference into device memory is ever created: every access is a `read_volatile` /
//! `write_volatile` on a pointer computed from a checked offset.

use std::fs::File;
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};

use crate::device::RegionInfo;
use crate::error::{BarError, BarErrorKind, Error, Op, Result, errno_error};

struct Area {
    offset: usize,
    len: usize,
    map: MmapRaw,
}

struct BarInner {
    index: u32,
    size: u64,
    /// The first area, cached for the fast path.
    base: *mut u8,
    base_off: usize,
    base_len: usize,
    areas: Vec<Area>,
}

// SAFETY: BarInner only holds MMIO mappings (MmapRaw is Send + Sync) and a pointer into the first of
// them; all accesses are volatile 8-, 16- or 32-bit loads/stores, which the device serializes, so sharing the
// mapping between threads creates no Rust-level aliasing.
unsafe impl Send for BarInner {}
// SAFETY: see Send; no method hands out references into the mapping.
unsafe impl Sync for BarInner {}

/// A mapped BAR. Cloning shares the mapping; it stays mapped while any clone or [`Register`] lives.
#[derive(Clone)]
pub struct Bar {
    inner: Arc<BarInner>,
}

impl std::fmt::Debug for Bar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let areas: Vec<(usize, usize)> = self.inner.areas.iter().map(|a| (a.offset, a.len)).collect();
        f.debug_struct("Bar")
            .field("index", &self.inner.index)
            .field("size", &self.inner.size)
            .field("areas", &areas)
            .finish()
    }
}

impl Bar {
    pub(crate) fn map(file: &File, device: &str, ri: &RegionInfo) -> Result<Self> {
        let region_err = |reason: String| Error::Region {
            device: device.to_owned(),
            index: ri.index,
            reason,
        };
        if !ri.mmappable() {
            return Err(region_err(
                "the kernel does not allow mmap of this region (an I/O BAR, or an unimplemented one)".into(),
            ));
        }
        let mut areas = Vec::new();
        for a in ri.mmap_areas().map_err(region_err)? {
            let offset = usize::try_from(a.offset).map_err(|_| region_err("area offset too large".into()))?;
            let len = usize::try_from(a.size).map_err(|_| region_err("area too large".into()))?;
            let file_off = ri
                .offset
                .checked_add(a.offset)
                .ok_or_else(|| region_err("offset overflows".into()))?;
            let map = MmapOptions::new()
                .offset(file_off)
                .len(len)
                .map_raw(file)
                .map_err(|e| {
                    errno_error(
                        Op::MapBar,
                        format!("{device} BAR{} area {:#x}+{:#x}", ri.index, a.offset, a.size),
                        e,
                        None,
                        None,
                    )
                })?;
            areas.push(Area { offset, len, map });
        }
        if areas.is_empty() {
            return Err(region_err("no mmap-able area".into()));
        }
        areas.sort_by_key(|a| a.offset);
        let (base, base_off, base_len) = (areas[0].map.as_mut_ptr(), areas[0].offset, areas[0].len);
        Ok(Self {
            inner: Arc::new(BarInner {
                index: ri.index,
                size: ri.size,
                base,
                base_off,
                base_len,
                areas,
            }),
        })
    }

    /// The BAR index.
    pub fn index(&self) -> u32 {
        self.inner.index
    }

    /// The BAR size (including parts that may not be mapped).
    pub fn size(&self) -> u64 {
        self.inner.size
    }

    /// The mapped areas as (offset, length).
    pub fn mapped_areas(&self) -> Vec<(usize, usize)> {
        self.inner.areas.iter().map(|a| (a.offset, a.len)).collect()
    }

    /// The start of the mapped area at offset 0 and its length (null and 0 when the BAR's start
    /// is not mapped), for [`BarView`](crate::BarView)'s one check.
    pub(crate) fn mapped_from_start(&self) -> (*mut u8, usize) {
        let i = &*self.inner;
        if i.base_off == 0 {
            (i.base, i.base_len)
        } else {
            (std::ptr::null_mut(), 0)
        }
    }

    /// A BAR over `size` bytes of anonymous memory (zeroed), standing in for a device's in
    /// tests of the code above it: reads return what was written.
    #[cfg(any(test, feature = "test-support"))]
    pub fn anonymous(index: u32, size: usize) -> Bar {
        let map = MmapOptions::new()
            .len(size)
            .map_anon()
            .expect("anonymous mapping for a test BAR");
        let map = MmapRaw::from(map);
        let base = map.as_mut_ptr();
        Bar {
            inner: Arc::new(BarInner {
                index,
                size: size as u64,
                base,
                base_off: 0,
                base_len: size,
                areas: vec![Area {
                    offset: 0,
                    len: size,
                    map,
                }],
            }),
        }
    }

    /// The pointer for a 4-byte access at `off`, after the bounds, alignment and area checks.
    #[inline(always)]
    fn ptr32(&self, off: usize) -> Result<*mut u32, BarError> {
        let i = &*self.inner;
        let rel = off.wrapping_sub(i.base_off);
        // Fast path: inside the first area (for most BARs: the whole BAR) and aligned.
        if rel < i.base_len && i.base_len - rel >= 4 && off & 3 == 0 {
            // SAFETY: rel + 4 <= base_len, so the pointer stays inside the first mapping.
            return Ok(unsafe { i.base.add(rel) }.cast());
        }
        self.ptr32_slow(off)
    }

    #[cold]
    fn ptr32_slow(&self, off: usize) -> Result<*mut u32, BarError> {
        let i = &*self.inner;
        let err = |kind| BarError {
            bar: i.index,
            offset: off,
            kind,
        };
        if off & 3 != 0 {
            return Err(err(BarErrorKind::Misaligned));
        }
        if off.checked_add(4).is_none_or(|end| end as u64 > i.size) {
            return Err(err(BarErrorKind::OutOfBounds));
        }
        for a in &i.areas {
            let rel = off.wrapping_sub(a.offset);
            if rel < a.len && a.len - rel >= 4 {
                // SAFETY: rel + 4 <= a.len: inside this mapping.
                return Ok(unsafe { a.map.as_mut_ptr().add(rel) }.cast());
            }
        }
        Err(err(BarErrorKind::NotMapped))
    }

    /// Volatile 32-bit read at byte offset `off`.
    #[inline]
    pub fn read32(&self, off: usize) -> Result<u32, BarError> {
        let p = self.ptr32(off)?;
        // SAFETY: p is 4-aligned and inside a live MMIO mapping (checked by ptr32).
        Ok(unsafe { p.read_volatile() })
    }

    /// Volatile 32-bit write at byte offset `off`.
    #[inline]
    pub fn write32(&self, off: usize, value: u32) -> Result<(), BarError> {
        let p = self.ptr32(off)?;
        // SAFETY: p is 4-aligned and inside a live MMIO mapping (checked by ptr32).
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    /// The pointer for a narrow (1- or 2-byte) access at `off`: bounds, natural alignment and
    /// area checks. Off the hot path: used for device registers that must be accessed with their
    /// own width (e.g. the 8- and 16-bit fields of virtio's common configuration, where a 32-bit
    /// access would touch the neighbouring field too).
    fn ptr_narrow(&self, off: usize, width: usize) -> Result<*mut u8, BarError> {
        let i = &*self.inner;
        let err = |kind| BarError {
            bar: i.index,
            offset: off,
            kind,
        };
        if off % width != 0 {
            return Err(err(BarErrorKind::Misaligned));
        }
        if off.checked_add(width).is_none_or(|end| end as u64 > i.size) {
            return Err(err(BarErrorKind::OutOfBounds));
        }
        for a in &i.areas {
            let rel = off.wrapping_sub(a.offset);
            if rel < a.len && a.len - rel >= width {
                // SAFETY: rel + width <= a.len: inside this mapping.
                return Ok(unsafe { a.map.as_mut_ptr().add(rel) });
            }
        }
        Err(err(BarErrorKind::NotMapped))
    }

    /// Volatile 8-bit read at byte offset `off`.
    pub fn read8(&self, off: usize) -> Result<u8, BarError> {
        let p = self.ptr_narrow(off, 1)?;
        // SAFETY: p is inside a live MMIO mapping (checked by ptr_narrow); a byte needs no alignment.
        Ok(unsafe { p.read_volatile() })
    }

    /// Volatile 8-bit write at byte offset `off`.
    pub fn write8(&self, off: usize, value: u8) -> Result<(), BarError> {
        let p = self.ptr_narrow(off, 1)?;
        // SAFETY: p is inside a live MMIO mapping (checked by ptr_narrow).
        unsafe { p.write_volatile(value) };
        Ok(())
    }

    /// Volatile 16-bit read at byte offset `off` (2-byte aligned; a misaligned offset is refused
    /// with [`BarErrorKind::Misaligned`]).
    pub fn read16(&self, off: usize) -> Result<u16, BarError> {
        let p = self.ptr_narrow(off, 2)?;
        // SAFETY: p is 2-aligned (the mapping is page-aligned and off is even) and inside a live
        // MMIO mapping (checked by ptr_narrow).
        Ok(unsafe { p.cast::<u16>().read_volatile() })
    }

    /// Volatile 16-bit write at byte offset `off` (2-byte aligned).
    pub fn write16(&self, off: usize, value: u16) -> Result<(), BarError> {
        let p = self.ptr_narrow(off, 2)?;
        // SAFETY: as in read16.
        unsafe { p.cast::<u16>().write_volatile(value) };
        Ok(())
    }

    /// A pre-checked handle to the register at `off`, for the hot path (e.g. a tail register):
    /// its reads and writes need no further check. It keeps the mapping alive.
    pub fn register(&self, off: usize) -> Result<Register, BarError> {
        let ptr = self.ptr32(off)?;
        Ok(Register {
            ptr,
            _bar: self.clone(),
        })
    }
}

/// One 32-bit register of a mapped BAR, checked once at creation.
pub struct Register {
    ptr: *mut u32,
    _bar: Bar,
}

// SAFETY: the pointer targets MMIO inside a mapping the held Bar keeps alive; volatile 32-bit
// accesses from any thread are fine for device registers.
unsafe impl Send for Register {}
// SAFETY: see Send; no reference into the mapping is ever handed out.
unsafe impl Sync for Register {}

impl std::fmt::Debug for Register {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Register")
            .field("bar", &self._bar.index())
            .field("ptr", &self.ptr)
            .finish()
    }
}

impl Register {
    /// A register at `ptr` inside `bar`'s mapping.
    ///
    /// # Safety
    /// `ptr` is 4-aligned and `ptr .. ptr + 4` lies inside a mapped area of `bar`.
    pub(crate) unsafe fn from_raw(ptr: *mut u32, bar: Bar) -> Register {
        Register { ptr, _bar: bar }
    }

    /// Volatile read.
    #[inline(always)]
    pub fn read(&self) -> u32 {
        // SAFETY: checked aligned and in bounds when the Register was made; the mapping is alive.
        unsafe { self.ptr.read_volatile() }
    }

    /// Volatile write.
    #[inline(always)]
    pub fn write(&self, value: u32) {
        // SAFETY: checked aligned and in bounds when the Register was made; the mapping is alive.
        unsafe { self.ptr.write_volatile(value) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::SparseArea;
    use crate::testutil::TempDir;

    /// A BAR over a plain file (stands in for the device fd), region at file offset 0x2000.
    fn file_bar(sparse: Option<Vec<SparseArea>>) -> (TempDir, Bar) {
        let d = TempDir::new("bar");
        let p = d.path().join("dev");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.set_len(0x2000 + 0x4000).unwrap();
        let ri = RegionInfo {
            index: 3,
            flags: crate::uapi::REGION_INFO_FLAG_READ
                | crate::uapi::REGION_INFO_FLAG_WRITE
                | crate::uapi::REGION_INFO_FLAG_MMAP,
            size: 0x4000,
            offset: 0x2000,
            sparse_areas: sparse,
            msix_mappable: false,
        };
        let bar = Bar::map(&f, "test", &ri).unwrap();
        (d, bar)
    }

    #[test]
    fn whole_bar_reads_and_writes_with_bounds() {
        let (d, bar) = file_bar(None);
        bar.write32(0, 0xdead_beef).unwrap();
        bar.write32(0x3ffc, 0x1234_5678).unwrap();
        assert_eq!(bar.read32(0).unwrap(), 0xdead_beef);
        assert_eq!(bar.read32(0x3ffc).unwrap(), 0x1234_5678);
        assert_eq!(bar.read32(0x4000).unwrap_err().kind, BarErrorKind::OutOfBounds);
        assert_eq!(bar.read32(0x3ffe).unwrap_err().kind, BarErrorKind::Misaligned);
        assert_eq!(
            bar.write32(usize::MAX - 3, 0).unwrap_err().kind,
            BarErrorKind::OutOfBounds
        );
        let r = bar.register(0x10).unwrap();
        r.write(7);
        assert_eq!(bar.read32(0x10).unwrap(), 7);
        drop(bar);
        // The register keeps the mapping alive.
        assert_eq!(r.read(), 7);
        drop(r);
        // The writes went to the file at the region offset.
        let bytes = std::fs::read(d.path().join("dev")).unwrap();
        assert_eq!(&bytes[0x2000..0x2004], &0xdead_beefu32.to_ne_bytes());
        assert_eq!(&bytes[0x2010..0x2014], &7u32.to_ne_bytes());
    }

    #[test]
    fn narrow_accesses_use_their_own_width() {
        let (_d, bar) = file_bar(None);
        bar.write32(0x14, 0x1122_3344).unwrap();
        bar.write16(0x16, 0xabcd).unwrap();
        bar.write8(0x14, 0x55).unwrap();
        // Little-endian: only the addressed bytes changed.
        assert_eq!(bar.read32(0x14).unwrap(), 0xabcd_3355);
        assert_eq!(bar.read16(0x14).unwrap(), 0x3355);
        assert_eq!(bar.read8(0x15).unwrap(), 0x33);
        assert_eq!(bar.read16(0x15).unwrap_err().kind, BarErrorKind::Misaligned);
        assert_eq!(bar.read16(0x3ffe).unwrap(), 0);
        assert_eq!(bar.read16(0x4000).unwrap_err().kind, BarErrorKind::OutOfBounds);
        assert_eq!(bar.write8(0x4000, 0).unwrap_err().kind, BarErrorKind::OutOfBounds);
    }

    #[test]
    fn sparse_bar_refuses_the_hole() {
        let (_d, bar) = file_bar(Some(vec![
            SparseArea {
                offset: 0x3000,
                size: 0x1000,
            },
            SparseArea {
                offset: 0,
                size: 0x1000,
            },
        ]));
        assert_eq!(bar.mapped_areas(), vec![(0, 0x1000), (0x3000, 0x1000)]);
        bar.write32(0xffc, 1).unwrap();
        bar.write32(0x3000, 2).unwrap();
        assert_eq!(bar.read32(0x3000).unwrap(), 2);
        assert_eq!(bar.read32(0x1000).unwrap_err().kind, BarErrorKind::NotMapped);
        assert_eq!(bar.read32(0x2ffc).unwrap_err().kind, BarErrorKind::NotMapped);
        assert!(bar.register(0x2000).is_err());
        let msg = Error::Bar {
            device: Some("0000:00:02.0".into()),
            source: bar.read32(0x2000).unwrap_err(),
        }
        .to_string();
        assert!(
            msg.contains("0000:00:02.0") && msg.contains("BAR3") && msg.contains("0x2000"),
            "{msg}"
        );
    }
}
