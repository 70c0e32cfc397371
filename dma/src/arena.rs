//! [`MetaArena`]: CPU-only memory for buffer metadata, in an address range that no device mapping
//! ever covers.
//!
//! A mempool keeps the metadata of its buffers (`BufMeta`: pool, buffer
//! address and IOVA, lengths, offsets, flags) here and nothing of it in the DMA region, so a device
//! that writes anywhere it is allowed to (every byte of every buffer, headroom included) cannot
//! change what the CPU trusts (design invariant 6). The memory is an anonymous private mapping:
//! it is never given to a [`DmaMap`](crate::DmaMap), so no IOMMU entry points at it.
//!
//! The arena starts at a multiple of `2^k`, the smallest power of two >= its length, and the
//! address space up to `start + 2^k` is reserved for it (`PROT_NONE`), so `(addr ^ start) >> k == 0`
//! tells exactly whether an address is one of this arena's: a mempool checks every buffer given
//! back this way (an XOR and an OR, no memory access) and refuses other pools' buffers.

use core::ptr::NonNull;

use crate::region::{RegionError, os_err};

const PAGE: usize = 4096;

/// Zeroed, 2^k-aligned CPU-only memory (see the [module documentation](self)).
pub(crate) struct MetaArena {
    ptr: NonNull<u8>,
    len: usize,
    /// Address space owned from `ptr`: a power of two >= `len`; the rest is `PROT_NONE`.
    reserved: usize,
}

// SAFETY: plain memory owned by this value; it hands out raw pointers only.
unsafe impl Send for MetaArena {}
// SAFETY: &MetaArena only exposes the address and sizes.
unsafe impl Sync for MetaArena {}

impl MetaArena {
    /// Reserves and commits at least `len` bytes (rounded up to 4 KiB), zeroed.
    pub(crate) fn new(len: usize) -> Result<MetaArena, RegionError> {
        let len = len
            .max(1)
            .checked_next_multiple_of(PAGE)
            .filter(|&l| l <= isize::MAX as usize / 4)
            .ok_or(RegionError::BadLength(len))?;
        let reserved = len.next_power_of_two();
        // SAFETY: an anonymous PROT_NONE reservation at an address the kernel chooses.
        let r = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                2 * reserved,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(os_err("mmap(PROT_NONE metadata reservation)"));
        }
        let start = (r as usize).next_multiple_of(reserved);
        let end = start + reserved;
        // SAFETY: both trimmed pieces lie in the reservation just made and hold nothing.
        unsafe {
            if start > r as usize {
                libc::munmap(r, start - r as usize);
            }
            if r as usize + 2 * reserved > end {
                libc::munmap(end as *mut libc::c_void, r as usize + 2 * reserved - end);
            }
        }
        let p = start as *mut libc::c_void;
        // SAFETY: the first `len` bytes of our own reservation become ordinary private memory.
        if unsafe { libc::mprotect(p, len, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
            let e = os_err("mprotect(metadata arena)");
            // SAFETY: our reservation, holding nothing.
            unsafe { libc::munmap(p, reserved) };
            return Err(e);
        }
        // Metadata is touched on every packet: transparent hugepages, where the kernel has them,
        // keep it in few TLB entries. Advice only; an error changes nothing.
        // SAFETY: advice on our own mapping.
        unsafe { libc::madvise(p, len, libc::MADV_HUGEPAGE) };
        Ok(MetaArena {
            ptr: NonNull::new(start as *mut u8).expect("mmap never returns NULL on success"),
            len,
            reserved,
        })
    }

    /// First byte.
    #[inline(always)]
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Committed length in bytes.
    #[allow(dead_code)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// log2 of the reservation: an address `a` is this arena's iff
    /// `(a ^ as_ptr()) >> shift() == 0`.
    #[inline(always)]
    pub(crate) fn shift(&self) -> u32 {
        self.reserved.trailing_zeros()
    }
}

impl Drop for MetaArena {
    fn drop(&mut self) {
        // SAFETY: our mapping and reservation; no device ever had it, and its owner (the pool's
        // shared state) is going away with every buffer back.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.reserved) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_owns_its_power_of_two_reservation() {
        // The check reads /proc/self/maps before and after the drop: another test thread mapping
        // something at the same (just freed) address would make it flaky, so the check runs in a
        // child process that runs this test alone.
        const CHILD: &str = "OXPMD_DMA_ISOLATED_MAPS_TEST";
        if std::env::var_os(CHILD).is_none() {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args([
                    "arena::tests::arena_owns_its_power_of_two_reservation",
                    "--exact",
                    "--test-threads=1",
                    "--nocapture",
                ])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text =
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "isolated run failed:\n{text}");
            assert!(
                text.contains("1 passed"),
                "the isolated run did not run the test:\n{text}"
            );
            return;
        }
        let a = MetaArena::new(3 * 4096 - 5).unwrap();
        assert_eq!((a.len(), a.shift()), (3 * 4096, 14));
        let start = a.as_ptr() as usize;
        assert_eq!(start % (1 << 14), 0);
        // SAFETY: inside the committed part.
        unsafe {
            assert_eq!(*a.as_ptr().add(3 * 4096 - 1), 0, "zeroed");
            *a.as_ptr() = 1;
        }
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let guard = format!("{:x}-{:x} ---p", start + 3 * 4096, start + (1 << 14));
        assert!(
            maps.lines().any(|l| l.starts_with(&guard)),
            "guard {guard} missing:\n{maps}"
        );
        drop(a);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(
            !maps.lines().any(|l| l.starts_with(&guard)),
            "reservation released on drop"
        );
    }

    #[test]
    fn absurd_lengths_are_errors() {
        assert!(matches!(
            MetaArena::new(usize::MAX),
            Err(RegionError::BadLength(_))
        ));
    }
}
