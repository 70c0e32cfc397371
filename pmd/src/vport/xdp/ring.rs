//! One of the four rings an AF_XDP socket shares with the kernel (fill, completion, RX, TX):
//! a mapping of the socket holding a producer index, a consumer index, a flags word and
//! `size` entries. Single producer / single consumer: the side this process plays is the only
//! one writing its index, with release ordering after the entries; the other index is read with
//! acquire ordering before the entries (the protocol of `tools/lib/bpf/xsk.h`).
//!
//! The entries the kernel produces (RX descriptors, completed addresses) are read as values and
//! bounded by the queue before use: the ring is memory the kernel writes.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::{XDP_RING_NEED_WAKEUP, XdpRingOffset};

/// A mapped ring of `T` entries (`u64` addresses or [`super::sys::XdpDesc`]).
#[derive(Debug)]
pub(crate) struct XskRing<T: Copy> {
    map: NonNull<u8>,
    map_len: usize,
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    flags: NonNull<AtomicU32>,
    desc: NonNull<T>,
    mask: u32,
    size: u32,
    /// Producer side: our producer index. Consumer side: the kernel's, as last read.
    cached_prod: u32,
    /// Producer side: the kernel's consumer index + size, as last read. Consumer side: ours.
    cached_cons: u32,
}

// SAFETY: the mapping belongs to this value; the indices it writes are only written by it, and
// one thread at a time uses it (`&mut self`).
unsafe impl<T: Copy> Send for XskRing<T> {}

impl<T: Copy> XskRing<T> {
    /// Maps the ring of `fd` at page offset `pgoff` with `size` entries (a power of two, as set
    /// with the ring's socket option), laid out as `off` says.
    pub(crate) fn map(
        fd: BorrowedFd<'_>,
        pgoff: i64,
        off: &XdpRingOffset,
        size: u32,
        producer_side: bool,
    ) -> io::Result<XskRing<T>> {
        debug_assert!(size.is_power_of_two());
        let bad = || io::Error::new(io::ErrorKind::InvalidData, "ring offsets out of bounds");
        let map_len = usize::try_from(off.desc)
            .ok()
            .and_then(|d| d.checked_add(size as usize * std::mem::size_of::<T>()))
            .ok_or_else(bad)?;
        for o in [off.producer, off.consumer, off.flags] {
            if o.checked_add(4).is_none_or(|end| end > off.desc) || o % 4 != 0 {
                return Err(bad());
            }
        }
        if off.desc % std::mem::align_of::<T>() as u64 != 0 {
            return Err(bad());
        }
        // SAFETY: a new shared mapping of the socket's ring; the kernel checks offset and length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = p.cast::<u8>();
        // SAFETY: every offset was checked to lie inside the mapping, 4-aligned (the mapping is
        // page-aligned), and `desc + size * size_of::<T>() == map_len`.
        let at = |o: u64| unsafe { NonNull::new_unchecked(base.add(o as usize)) };
        let mut r = XskRing {
            // SAFETY: mmap succeeded, so the pointer is not null.
            map: unsafe { NonNull::new_unchecked(base) },
            map_len,
            producer: at(off.producer).cast(),
            consumer: at(off.consumer).cast(),
            flags: at(off.flags).cast(),
            desc: at(off.desc).cast(),
            mask: size - 1,
            size,
            cached_prod: 0,
            cached_cons: 0,
        };
        r.cached_prod = r.producer().load(Ordering::Relaxed);
        r.cached_cons = r.consumer().load(Ordering::Relaxed);
        if producer_side {
            r.cached_cons = r.cached_cons.wrapping_add(size);
        }
        Ok(r)
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: inside the live mapping, 4-aligned; shared with the kernel only atomically.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as in producer().
        unsafe { self.consumer.as_ref() }
    }

    /// Entries of the ring.
    pub(crate) fn size(&self) -> u32 {
        self.size
    }

    /// Whether the kernel asked for a system call before it looks at this ring again.
    #[inline]
    pub(crate) fn needs_wakeup(&self) -> bool {
        // SAFETY: as in producer().
        let flags = unsafe { self.flags.as_ref() };
        flags.load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }

    // Producer side (fill, TX).

    /// Free entries, at most `n` (reads the kernel's consumer index only when needed).
    #[inline]
    pub(crate) fn free(&mut self, n: u32) -> u32 {
        let mut free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free < n {
            self.cached_cons = self.consumer().load(Ordering::Acquire).wrapping_add(self.size);
            free = self.cached_cons.wrapping_sub(self.cached_prod);
        }
        free.min(n).min(self.size)
    }

    /// Writes entry `i` after the last submitted one (`i` below what `free` returned).
    #[inline]
    pub(crate) fn write(&mut self, i: u32, v: T) {
        let slot = (self.cached_prod.wrapping_add(i) & self.mask) as usize;
        // SAFETY: slot <= mask < size: inside the entry array; an entry the kernel has consumed
        // (free() counted it), so the kernel does not read it until we publish it.
        unsafe { self.desc.as_ptr().add(slot).write_volatile(v) };
    }

    /// Publishes `n` written entries to the kernel.
    #[inline]
    pub(crate) fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.producer().store(self.cached_prod, Ordering::Release);
    }

    // Consumer side (RX, completion).

    /// Entries ready, at most `n`.
    #[inline]
    pub(crate) fn ready(&mut self, n: u32) -> u32 {
        let mut ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready == 0 {
            self.cached_prod = self.producer().load(Ordering::Acquire);
            ready = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        // A kernel index more than a ring ahead would be a broken kernel: never read past it.
        ready.min(n).min(self.size)
    }

    /// Reads entry `i` of the ready ones (`i` below what `ready` returned).
    #[inline]
    pub(crate) fn read(&self, i: u32) -> T {
        let slot = (self.cached_cons.wrapping_add(i) & self.mask) as usize;
        // SAFETY: slot <= mask < size: inside the entry array; the acquire load in ready()
        // ordered the kernel's write of it before this read. Read as a value: the caller
        // bounds what it says.
        unsafe { self.desc.as_ptr().add(slot).read_volatile() }
    }

    /// Gives `n` read entries back to the kernel.
    #[inline]
    pub(crate) fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.consumer().store(self.cached_cons, Ordering::Release);
    }
}

impl<T: Copy> Drop for XskRing<T> {
    fn drop(&mut self) {
        // SAFETY: our own mapping, not used after this; the kernel keeps its ring until the
        // socket is closed, independent of this mapping.
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}
