//! Hugepage-backed memory regions for DMA.
//!
//! A [`DmaRegion`] is an anonymous `memfd` (with `MFD_HUGETLB | MFD_HUGE_2MB/1GB`), mapped
//! `MAP_SHARED | MAP_POPULATE` and `mlock`ed. A memfd has no name on disk, so nothing is left
//! behind even if the process crashes; the fd is closed right after mapping. 4 KiB pages are
//! used only when the caller opts in ([`RegionOptions::allow_4k_fallback`]), with a warning.
//!
//! The bytes of a region are never handed out as `&[u8]` / `&mut [u8]`: a device may write
//! them at any time while they are mapped for it, so access goes through raw pointers
//! ([`DmaRegion::as_ptr`]); typed, safe access exists only for packet buffers the CPU owns.

use std::ffi::CStr;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::map::{DmaMap, DmaMapError};

/// Page size backing a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageSize {
    /// 2 MiB hugepages (the default).
    #[default]
    Huge2M,
    /// 1 GiB hugepages (must be reserved, usually on the kernel command line).
    Huge1G,
    /// Ordinary 4 KiB pages: only for tests and virtual ports.
    Base4K,
}

impl PageSize {
    /// Size in bytes.
    pub const fn bytes(self) -> usize {
        match self {
            PageSize::Huge2M => 2 << 20,
            PageSize::Huge1G => 1 << 30,
            PageSize::Base4K => 4 << 10,
        }
    }

    fn kb(self) -> usize {
        self.bytes() >> 10
    }

    fn sysfs_dir(self) -> String {
        format!("/sys/kernel/mm/hugepages/hugepages-{}kB", self.kb())
    }

    fn label(self) -> &'static str {
        match self {
            PageSize::Huge2M => "2 MiB",
            PageSize::Huge1G => "1 GiB",
            PageSize::Base4K => "4 KiB",
        }
    }
}

/// How to allocate a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegionOptions {
    /// Page size wanted.
    pub page_size: PageSize,
    /// If the hugepages cannot be had, use 4 KiB pages instead (with a `log::warn!`). Only for
    /// tests and virtual ports: 4 KiB pages cost IOTLB entries and IOMMU mappings.
    pub allow_4k_fallback: bool,
}

/// Errors allocating a region; each says what is missing and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    /// Zero or overflowing length.
    #[error("DMA region: invalid length {0} bytes")]
    BadLength(usize),
    /// The kernel has no pool for this hugepage size.
    #[error(
        "DMA region: {page} hugepages are not supported by this kernel or CPU ({dir} missing); \
         use 2 MiB pages"
    )]
    PageSizeUnsupported {
        /// Page size asked for.
        page: &'static str,
        /// The sysfs directory looked at.
        dir: String,
    },
    /// No hugepage of this size is reserved.
    #[error(
        "DMA region: no {page} hugepages are reserved, {need} needed: run \
         `echo {need} > {nr_path}` as root (or boot with hugepages=...)"
    )]
    NoHugepagesReserved {
        /// Page size.
        page: &'static str,
        /// Pages needed.
        need: usize,
        /// The file to write.
        nr_path: String,
    },
    /// Hugepages are reserved but too few are free.
    #[error(
        "DMA region: too few free {page} hugepages: have {have} free, need {need} \
         ({total} reserved); run `echo {suggest} > {nr_path}` as root or free some"
    )]
    TooFewFree {
        /// Page size.
        page: &'static str,
        /// Free (and not reserved by others) pages.
        have: usize,
        /// Pages needed.
        need: usize,
        /// Pages reserved in total.
        total: usize,
        /// Suggested new total.
        suggest: usize,
        /// The file to write.
        nr_path: String,
    },
    /// RLIMIT_MEMLOCK does not allow locking the region (checked for hugepage regions too:
    /// VFIO pins and accounts every page it maps against the same limit).
    #[error(
        "DMA region: RLIMIT_MEMLOCK is too low: {current_kib} KiB allowed, {locked_kib} KiB already \
         locked, {need_kib} KiB more needed; raise it with `ulimit -l {suggest_kib}` (or `ulimit -l \
         unlimited`, or LimitMEMLOCK= in the service unit), or grant CAP_IPC_LOCK"
    )]
    MemlockLimit {
        /// Current soft limit in KiB.
        current_kib: u64,
        /// Already locked by this process, KiB.
        locked_kib: u64,
        /// Needed for this region, KiB.
        need_kib: u64,
        /// Suggested limit, KiB.
        suggest_kib: u64,
    },
    /// A system call failed.
    #[error("DMA region: {op} failed: {source}")]
    Os {
        /// The call, e.g. `"memfd_create(MFD_HUGETLB | MFD_HUGE_2MB)"`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

struct Mapping {
    dma: Arc<dyn DmaMap>,
    iova: u64,
}

/// A locked, populated, shared memory region for DMA; unmapped (from the device, then from the
/// process) on drop. See the [module documentation](self).
pub struct DmaRegion {
    ptr: NonNull<u8>,
    len: usize,
    page_size: PageSize,
    mapping: Option<Mapping>,
}

// SAFETY: the region is plain memory owned by this value; it hands out raw pointers only.
unsafe impl Send for DmaRegion {}
// SAFETY: &DmaRegion only exposes addresses and metadata.
unsafe impl Sync for DmaRegion {}

impl std::fmt::Debug for DmaRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaRegion")
            .field("vaddr", &self.ptr)
            .field("len", &self.len)
            .field("page_size", &self.page_size)
            .field("iova", &self.iova())
            .finish()
    }
}

/// Hugepage counters of one size, from sysfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HugepageCounts {
    pub total: usize,
    pub free: usize,
    pub resv: usize,
}

fn read_usize(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn hugepage_counts(page: PageSize) -> Option<HugepageCounts> {
    let d = page.sysfs_dir();
    Some(HugepageCounts {
        total: read_usize(&format!("{d}/nr_hugepages"))?,
        free: read_usize(&format!("{d}/free_hugepages"))?,
        resv: read_usize(&format!("{d}/resv_hugepages")).unwrap_or(0),
    })
}

fn nr_path(page: PageSize) -> String {
    if page == PageSize::Huge2M && PageSize::Huge2M.kb() == default_hugepage_kb().unwrap_or(2048) {
        "/proc/sys/vm/nr_hugepages".into()
    } else {
        format!("{}/nr_hugepages", page.sysfs_dir())
    }
}

fn default_hugepage_kb() -> Option<usize> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let l = s.lines().find(|l| l.starts_with("Hugepagesize:"))?;
    l.split_whitespace().nth(1)?.parse().ok()
}

/// Decides whether `need` pages can be had from `c` (pure, for tests).
pub(crate) fn check_hugepages(page: PageSize, c: HugepageCounts, need: usize) -> Result<(), RegionError> {
    if c.total == 0 {
        return Err(RegionError::NoHugepagesReserved {
            page: page.label(),
            need,
            nr_path: nr_path(page),
        });
    }
    let have = c.free.saturating_sub(c.resv);
    if have < need {
        return Err(RegionError::TooFewFree {
            page: page.label(),
            have,
            need,
            total: c.total,
            suggest: c.total + (need - have),
            nr_path: nr_path(page),
        });
    }
    Ok(())
}

/// Decides whether `need` more bytes may be locked (pure, for tests). `limit` is the soft
/// RLIMIT_MEMLOCK in bytes (`None` = unlimited), `locked` what is already locked.
pub(crate) fn check_memlock(
    limit: Option<u64>,
    locked: u64,
    need: u64,
    cap_ipc_lock: bool,
) -> Result<(), RegionError> {
    match limit {
        Some(lim) if !cap_ipc_lock && locked.saturating_add(need) > lim => {
            Err(memlock_error(lim, locked, need))
        }
        _ => Ok(()),
    }
}

fn memlock_error(lim: u64, locked: u64, need: u64) -> RegionError {
    let kib = |b: u64| b.div_ceil(1024);
    RegionError::MemlockLimit {
        current_kib: kib(lim),
        locked_kib: kib(locked),
        need_kib: kib(need),
        suggest_kib: kib(locked.saturating_add(need)),
    }
}

fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } != 0 || r.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(r.rlim_cur)
}

/// (VmLck bytes, has CAP_IPC_LOCK) from /proc/self/status.
fn proc_status_lock_info() -> (u64, bool) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut locked = 0;
    let mut cap = false;
    for l in s.lines() {
        if let Some(v) = l.strip_prefix("VmLck:") {
            locked = v
                .split_whitespace()
                .next()
                .and_then(|x| x.parse::<u64>().ok())
                .unwrap_or(0)
                * 1024;
        } else if let Some(v) = l.strip_prefix("CapEff:") {
            cap = u64::from_str_radix(v.trim(), 16)
                .map(|c| c & (1 << CAP_IPC_LOCK) != 0)
                .unwrap_or(false);
        }
    }
    (locked, cap)
}

/// Capability number of CAP_IPC_LOCK (linux/capability.h).
const CAP_IPC_LOCK: u32 = 14;

pub(crate) fn os_err(op: &'static str) -> RegionError {
    RegionError::Os {
        op,
        source: io::Error::last_os_error(),
    }
}

impl DmaRegion {
    /// Allocates a region of at least `len` bytes (rounded up to the page size).
    pub fn new(len: usize, opts: &RegionOptions) -> Result<DmaRegion, RegionError> {
        Self::new_impl(len, opts)
    }

    fn new_impl(len: usize, opts: &RegionOptions) -> Result<DmaRegion, RegionError> {
        match Self::allocate(len, opts.page_size) {
            Ok(r) => Ok(r),
            Err(
                e @ (RegionError::NoHugepagesReserved { .. }
                | RegionError::TooFewFree { .. }
                | RegionError::PageSizeUnsupported { .. }),
            ) if opts.allow_4k_fallback && opts.page_size != PageSize::Base4K => {
                log::warn!("{e}; falling back to 4 KiB pages as requested (tests / virtual ports only)");
                Self::allocate(len, PageSize::Base4K)
            }
            Err(e) => Err(e),
        }
    }

    fn allocate(len: usize, page: PageSize) -> Result<DmaRegion, RegionError> {
        let ps = page.bytes();
        if len == 0 {
            return Err(RegionError::BadLength(len));
        }
        let len = len
            .checked_next_multiple_of(ps)
            .filter(|&l| l <= isize::MAX as usize);
        let Some(len) = len else {
            return Err(RegionError::BadLength(len.unwrap_or(usize::MAX)));
        };
        let huge = page != PageSize::Base4K;
        if huge {
            let counts = hugepage_counts(page).ok_or_else(|| RegionError::PageSizeUnsupported {
                page: page.label(),
                dir: page.sysfs_dir(),
            })?;
            check_hugepages(page, counts, len / ps)?;
        }
        let (locked, cap) = proc_status_lock_info();
        check_memlock(memlock_limit(), locked, len as u64, cap)?;

        let name: &CStr = c"oxpmd-dma";
        let flags = libc::MFD_CLOEXEC
            | match page {
                PageSize::Huge2M => libc::MFD_HUGETLB | libc::MFD_HUGE_2MB,
                PageSize::Huge1G => libc::MFD_HUGETLB | libc::MFD_HUGE_1GB,
                PageSize::Base4K => 0,
            };
        // SAFETY: name is NUL-terminated; flags are valid memfd flags.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), flags) };
        if fd < 0 {
            return Err(os_err(if huge {
                "memfd_create(MFD_HUGETLB)"
            } else {
                "memfd_create"
            }));
        }
        // SAFETY: fd is a fresh descriptor we own; OwnedFd closes it when dropped (after mmap,
        // the mapping keeps the memory alive).
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
        // SAFETY: ftruncate on our memfd.
        if unsafe { libc::ftruncate(raw, len as libc::off_t) } != 0 {
            return Err(os_err("ftruncate(memfd)"));
        }
        // SAFETY: a new shared mapping of our memfd, at an address the kernel chooses.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                raw,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let source = io::Error::last_os_error();
            if huge && source.raw_os_error() == Some(libc::ENOMEM) {
                // Raced with another process taking the pages: re-read for the message.
                if let Some(c) = hugepage_counts(page) {
                    check_hugepages(page, c, len / ps)?;
                }
            }
            return Err(RegionError::Os {
                op: "mmap(MAP_SHARED | MAP_POPULATE)",
                source,
            });
        }
        drop(fd);
        let region = DmaRegion {
            ptr: NonNull::new(p as *mut u8).expect("mmap never returns NULL on success"),
            len,
            page_size: page,
            mapping: None,
        };
        // SAFETY: the range is our mapping.
        if unsafe { libc::mlock(p, len) } != 0 {
            let source = io::Error::last_os_error();
            let e = match source.raw_os_error() {
                Some(libc::ENOMEM) | Some(libc::EAGAIN) | Some(libc::EPERM) => {
                    let (locked, _) = proc_status_lock_info();
                    memlock_error(memlock_limit().unwrap_or(0), locked, len as u64)
                }
                _ => RegionError::Os { op: "mlock", source },
            };
            return Err(e); // region drops: munmap
        }
        Ok(region)
    }

    /// Start of the region in this process.
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length in bytes (a multiple of the page size).
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: regions are at least one page.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Page size backing the region.
    #[inline]
    pub fn page_size(&self) -> PageSize {
        self.page_size
    }

    /// IOVA of the start once mapped for a device ([`DmaRegion::map`]).
    #[inline]
    pub fn iova(&self) -> Option<u64> {
        self.mapping.as_ref().map(|m| m.iova)
    }

    /// IOVA of the byte at `ptr`, if `ptr` lies in the region and the region is mapped.
    #[inline]
    pub fn iova_of(&self, ptr: *const u8) -> Option<u64> {
        let off = (ptr as usize).checked_sub(self.ptr.as_ptr() as usize)?;
        (off < self.len).then_some(())?;
        Some(self.iova()? + off as u64)
    }

    /// Maps the whole region for a device through `dma` (aligned to the page size) and
    /// returns its IOVA. The region keeps `dma` and unmaps before it is freed.
    pub fn map(&mut self, dma: Arc<dyn DmaMap>) -> Result<u64, DmaMapError> {
        if let Some(m) = &self.mapping {
            return Err(DmaMapError::new(
                format!("DMA map of region {:p}", self.ptr),
                dma.name(),
                format!(
                    "region already mapped at IOVA {:#x} through {}",
                    m.iova,
                    m.dma.name()
                ),
            ));
        }
        // SAFETY: the memory stays allocated until unmap: `self` owns it and unmaps in
        // `unmap`/`drop` before munmap.
        let iova = unsafe { dma.map(self.ptr.as_ptr(), self.len, self.page_size.bytes()) }?;
        self.mapping = Some(Mapping { dma, iova });
        Ok(iova)
    }

    /// Removes the device mapping (no-op if not mapped) before the region is dropped. Dropping
    /// the region unmaps it anyway; this is for callers that want the error.
    ///
    /// # Safety
    /// No device may access the region any more (design invariant 3): every queue whose
    /// descriptors named an address in it is disabled (or those descriptors retired), or bus
    /// mastering is off. After the unmap the [`DmaMap`] may give the same IOVA range to other
    /// memory (e.g. live packet buffers of another pool), so a device still writing to the old
    /// IOVAs would corrupt that memory. `&mut self` only rules out other CPU users.
    ///
    /// Calling it without `unsafe` does not compile:
    /// ```compile_fail,E0133
    /// # use oxpmd_dma::{DmaRegion, IdentityMap, PageSize, RegionOptions};
    /// # use std::sync::Arc;
    /// let opts = RegionOptions { page_size: PageSize::Base4K, allow_4k_fallback: true };
    /// let mut r = DmaRegion::new(4096, &opts).unwrap();
    /// r.map(Arc::new(IdentityMap)).unwrap();
    /// r.unmap().unwrap();
    /// ```
    pub unsafe fn unmap(&mut self) -> Result<(), DmaMapError> {
        if let Some(m) = self.mapping.take() {
            // SAFETY: exclusive access; no device access any more (caller contract).
            if let Err(e) = unsafe { m.dma.unmap(m.iova, self.ptr.as_ptr(), self.len) } {
                self.mapping = Some(m);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        // SAFETY: the region is going away. Whoever gives a device an address in a region keeps
        // the region alive (e.g. an `Arc<DmaRegion>` in the queue, a mempool counting its
        // outstanding buffers) until the device's access has stopped (invariant 3), so no
        // device uses it now.
        if let Err(e) = unsafe { self.unmap() } {
            // Keep the memory: freeing it while the IOMMU still maps it could let a device
            // write into memory reused for something else.
            log::error!("{e}; leaking the region's memory to stay safe");
            return;
        }
        // SAFETY: our mapping, no longer mapped for any device; no references into it remain
        // (only raw pointers were handed out and their owners are gone).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::map::IdentityMap;
    use std::sync::Mutex;

    /// Serialises tests that change /proc/sys/vm/nr_hugepages.
    pub(crate) static HUGEPAGE_LOCK: Mutex<()> = Mutex::new(());

    /// Reserves `n` more 2 MiB pages for the test's duration if possible; restores on drop.
    pub(crate) struct Reservation {
        old: Option<usize>,
    }
    impl Reservation {
        pub(crate) fn try_add(n: usize) -> Reservation {
            let path = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
            let old = read_usize(path);
            if let Some(o) = old {
                let _ = std::fs::write(path, format!("{}", o + n));
            }
            Reservation { old }
        }
    }
    impl Drop for Reservation {
        fn drop(&mut self) {
            if let Some(o) = self.old {
                let _ = std::fs::write(
                    "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
                    format!("{o}"),
                );
            }
        }
    }

    fn free_2m() -> usize {
        hugepage_counts(PageSize::Huge2M)
            .map(|c| c.free.saturating_sub(c.resv))
            .unwrap_or(0)
    }

    #[test]
    fn checks_give_actionable_messages() {
        let c = HugepageCounts {
            total: 0,
            free: 0,
            resv: 0,
        };
        let e = check_hugepages(PageSize::Huge2M, c, 3).unwrap_err();
        assert!(matches!(e, RegionError::NoHugepagesReserved { need: 3, .. }));
        assert!(e.to_string().contains("echo 3 > "), "{e}");
        let c = HugepageCounts {
            total: 8,
            free: 5,
            resv: 1,
        };
        let e = check_hugepages(PageSize::Huge2M, c, 6).unwrap_err();
        assert!(
            matches!(
                e,
                RegionError::TooFewFree {
                    have: 4,
                    need: 6,
                    suggest: 10,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("have 4 free, need 6"), "{e}");
        assert!(check_hugepages(PageSize::Huge2M, c, 4).is_ok());

        let e = check_memlock(Some(64 << 10), 16 << 10, 2 << 20, false).unwrap_err();
        assert!(
            e.to_string().contains("64 KiB allowed") && e.to_string().contains("ulimit -l 2064"),
            "{e}"
        );
        assert!(
            check_memlock(Some(64 << 10), 0, 2 << 20, true).is_ok(),
            "CAP_IPC_LOCK bypasses the limit"
        );
        assert!(check_memlock(None, 0, 1 << 40, false).is_ok());
    }

    #[test]
    fn one_gib_pages_work_or_give_the_sysfs_fix() {
        let opts = RegionOptions {
            page_size: PageSize::Huge1G,
            allow_4k_fallback: false,
        };
        match hugepage_counts(PageSize::Huge1G) {
            None => {
                let e = DmaRegion::new(1, &opts).unwrap_err();
                assert!(matches!(e, RegionError::PageSizeUnsupported { .. }), "{e:?}");
                oxpmd_test_skip::skip(format_args!("1 GiB mapping: not supported here ({e})"));
            }
            Some(c) if c.free.saturating_sub(c.resv) == 0 => {
                let e = DmaRegion::new(1, &opts).unwrap_err();
                let msg = e.to_string();
                assert!(
                    matches!(
                        e,
                        RegionError::NoHugepagesReserved { need: 1, .. }
                            | RegionError::TooFewFree { need: 1, .. }
                    ),
                    "{e:?}"
                );
                assert!(
                    msg.contains("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"),
                    "{msg}"
                );
                oxpmd_test_skip::skip(format_args!("1 GiB mapping: no free 1 GiB page ({msg})"));
            }
            Some(_) => {
                let r = DmaRegion::new(1, &opts).unwrap();
                assert_eq!((r.len(), r.page_size()), (1 << 30, PageSize::Huge1G));
                assert_eq!(r.as_ptr() as usize % (1 << 30), 0);
            }
        }
    }

    #[test]
    fn zero_length_is_an_error() {
        assert!(matches!(
            DmaRegion::new(0, &RegionOptions::default()),
            Err(RegionError::BadLength(0))
        ));
    }

    /// Whether a `/proc/self/maps` (or smaps header) line describes a mapping starting at `addr`.
    /// The kernel pads addresses to at least 8 hex digits, so a low address (as valgrind hands
    /// out) has leading zeros: the parsed start is compared, not the text.
    fn maps_line_starts_at(line: &str, addr: usize) -> bool {
        line.split_once('-')
            .and_then(|(a, _)| usize::from_str_radix(a, 16).ok())
            == Some(addr)
    }

    #[test]
    fn small_page_region_is_shared_locked_and_leaves_no_file() {
        let opts = RegionOptions {
            page_size: PageSize::Base4K,
            allow_4k_fallback: false,
        };
        let mut r = DmaRegion::new(10_000, &opts).unwrap();
        assert_eq!(r.len(), 12288);
        assert_eq!(r.page_size(), PageSize::Base4K);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let start = r.as_ptr() as usize;
        let starts_here = |l: &str| maps_line_starts_at(l, start);
        let line = maps.lines().find(|l| starts_here(l)).expect("mapping listed");
        assert!(
            line.contains("memfd:oxpmd-dma") && line.contains(" rw-s "),
            "{line}"
        );
        // No descriptor of this process still refers to the memfd (closed after mmap), and it
        // has no name on disk ("(deleted)" in maps): nothing can be left behind.
        let inode: u64 = line.split_whitespace().nth(4).unwrap().parse().unwrap();
        assert!(line.ends_with("(deleted)"), "{line}");
        for fd in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            if let Ok(m) = std::fs::metadata(fd.path()) {
                let same = std::os::unix::fs::MetadataExt::ino(&m) == inode
                    && std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().contains("oxpmd-dma"));
                assert!(!same, "memfd still open as {:?}", fd.path());
            }
        }
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let block: Vec<&str> = smaps.lines().skip_while(|l| !starts_here(l)).take(30).collect();
        assert!(
            block
                .iter()
                .any(|l| l.starts_with("Locked:") && l.contains(" 12 kB")),
            "mlocked: {block:?}"
        );
        assert!(
            block
                .iter()
                .any(|l| l.starts_with("Rss:") && l.contains(" 12 kB")),
            "populated: {block:?}"
        );
        // SAFETY: in-bounds raw writes to memory we own.
        unsafe {
            r.as_ptr().write_volatile(0xab);
            r.as_ptr().add(r.len() - 1).write_volatile(0xcd);
        }
        assert_eq!(r.iova(), None);
        let iova = r.map(Arc::new(IdentityMap)).unwrap();
        assert_eq!(iova, r.as_ptr() as u64);
        assert_eq!(r.iova_of(r.as_ptr().wrapping_add(100)), Some(iova + 100));
        assert_eq!(r.iova_of(r.as_ptr().wrapping_add(r.len())), None);
        assert!(r.map(Arc::new(IdentityMap)).is_err(), "double map refused");
        // SAFETY: no device was given any address in the region.
        unsafe { r.unmap() }.unwrap();
        assert_eq!(r.iova(), None);
    }

    #[test]
    fn hugepage_region_or_clear_error() {
        let _g = HUGEPAGE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let _res = Reservation::try_add(2);
        let free = free_2m();
        let opts = RegionOptions::default();
        if free < 1 {
            let e = DmaRegion::new(2 << 20, &opts).unwrap_err();
            assert!(
                matches!(
                    e,
                    RegionError::NoHugepagesReserved { .. } | RegionError::TooFewFree { .. }
                ),
                "{e:?}"
            );
            oxpmd_test_skip::skip(format_args!(
                "hugepage mapping part: no 2 MiB hugepage could be reserved; got: {e}"
            ));
            return;
        }
        let r = DmaRegion::new(1, &opts).unwrap();
        assert_eq!(r.len(), 2 << 20);
        assert_eq!(r.page_size(), PageSize::Huge2M);
        assert_eq!(r.as_ptr() as usize % (2 << 20), 0);
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let start = r.as_ptr() as usize;
        let block: Vec<&str> = smaps
            .lines()
            .skip_while(|l| !maps_line_starts_at(l, start))
            .take(30)
            .collect();
        assert!(
            block
                .iter()
                .any(|l| l.starts_with("KernelPageSize:") && l.contains("2048 kB")),
            "{block:?}"
        );
        // Populated: the hugepage is already faulted in (hugetlb VMAs are never swapped, and the
        // kernel does not mark them VM_LOCKED).
        assert!(
            block.iter().any(|l| l.ends_with("Hugetlb:    2048 kB")),
            "populated: {block:?}"
        );
        assert!(
            block
                .iter()
                .any(|l| l.starts_with("VmFlags:") && l.contains(" sh ") && l.contains(" ht")),
            "{block:?}"
        );
        // Asking for more than is free gives the clear error (no fallback without opt-in).
        let want = free_2m() + 1;
        let e = DmaRegion::new(want * (2 << 20), &opts).unwrap_err();
        match e {
            RegionError::TooFewFree { need, have, .. } => {
                assert!(need == want && have < need, "need {need} have {have} want {want}")
            }
            other => panic!("expected TooFewFree, got {other:?}"),
        }
        drop(r);
        // With the opt-in, the same request falls back to 4 KiB pages.
        let fallback = RegionOptions {
            allow_4k_fallback: true,
            ..opts
        };
        let r = DmaRegion::new(free_2m() * (2 << 20) + 4096, &fallback).unwrap();
        assert_eq!(r.page_size(), PageSize::Base4K);
    }
}
