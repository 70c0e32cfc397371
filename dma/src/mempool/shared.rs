//! [`PoolShared`]: the state shared by a pool's handles, caches and buffers, its reference count
//! and the operations on its shared ring.

use core::ptr::NonNull;
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;

use crate::arena::MetaArena;
use crate::packet::{BufMeta, RawBuffer};
use crate::region::DmaRegion;
use crate::ring::{QueueBehavior, Ring};
use crate::sync::{AtomicUsize, Liveness, Ordering, fence};

/// State shared by the handles, caches and buffers of one pool.
pub(crate) struct PoolShared {
    pub(crate) id: u64,
    /// [`Mempool`](super::Mempool) handles alive; never rises again from 0.
    pub(super) handles: AtomicUsize,
    /// Start of the metadata arena: a multiple of `1 << shift`, owning the address space up to
    /// `meta_base + (1 << shift)`, so a metadata address `a` is this pool's iff
    /// `(a ^ meta_base) >> shift == 0`.
    pub(super) meta_base: usize,
    pub(super) shift: u32,
    pub(super) capacity: usize,
    pub(super) cache_size: usize,
    pub(super) headroom: usize,
    pub(super) data_room: usize,
    pub(super) stride: usize,
    pub(super) chunk_aligned: bool,
    pub(super) name: String,
    /// Lengths published by every live cache, for [`Mempool::available`](super::Mempool::available).
    /// A snapshot figure that orders nothing, so std atomics even under loom (and the std `Mutex`
    /// around them holds no loom operation, so loom never switches threads inside it).
    pub(super) caches: Mutex<Vec<Arc<CachePadded<std::sync::atomic::AtomicUsize>>>>,
    /// The buffers' bytes: mapped for the device.
    pub(super) region: DmaRegion,
    /// The buffers' metadata: CPU only. Held for its `Drop` (the buffers' metadata pointers
    /// point into it); no device ever had it, so its order against `region`'s unmap is free.
    #[allow(dead_code)]
    pub(super) meta: MetaArena,
    pub(super) refs: CachePadded<AtomicUsize>,
    pub(super) ring: Ring<RawBuffer>,
    /// Checked on every use through [`PoolShared::get`], ended when the state is freed: lets the
    /// loom model report a use after (or racing with) the free.
    pub(super) live: Liveness,
}

impl PoolShared {
    /// The state behind `this`.
    ///
    /// # Safety
    /// `this` is alive and stays so for `'a`: the caller holds a reference (handle, cache or
    /// outstanding buffer) for that long.
    #[inline(always)]
    pub(super) unsafe fn get<'a>(this: NonNull<PoolShared>) -> &'a PoolShared {
        // SAFETY: alive for 'a (caller contract).
        let s = unsafe { this.as_ref() };
        s.live.check();
        s
    }

    /// Dequeues up to `n` buffers from the ring (counted as outside the ring).
    ///
    /// # Safety
    /// `this` is alive and the caller holds a reference (handle or cache); `dst` has room for n.
    #[inline]
    pub(super) unsafe fn ring_get(
        this: NonNull<PoolShared>,
        dst: *mut RawBuffer,
        n: usize,
        b: QueueBehavior,
    ) -> usize {
        // SAFETY: alive (caller contract).
        let s = unsafe { Self::get(this) };
        // SAFETY: room for n (caller contract); RawBuffer is Copy.
        let k = unsafe { s.ring.dequeue_raw(dst, n, b) };
        if k != 0 {
            // The caller's own reference keeps the count above zero: Relaxed, as Arc::clone.
            s.refs.fetch_add(k, Ordering::Relaxed);
        }
        k
    }

    /// Returns `n` buffers to the ring and drops their references (may free the pool).
    ///
    /// # Safety
    /// The buffers belong to this pool and are owned by the caller, who gives them up.
    #[inline]
    pub(super) unsafe fn ring_put(this: NonNull<PoolShared>, src: *const RawBuffer, n: usize) {
        if n == 0 {
            return;
        }
        // SAFETY: alive: the n buffers are outside the ring and counted.
        let s = unsafe { Self::get(this) };
        // SAFETY: src holds n values (caller contract).
        if unsafe { s.ring.enqueue_raw(src, n, QueueBehavior::Fixed) } != n {
            // Cannot happen unless a buffer was given back twice (a broken unsafe contract):
            // the ring holds exactly `capacity` slots' worth. Leak rather than corrupt.
            log::error!(
                "mempool {}: ring full on put of {n} buffers: double free? leaking them",
                s.name
            );
            return;
        }
        // SAFETY: the references of the n buffers are dropped.
        unsafe { Self::release(this, n) };
    }

    /// Drops `n` references; frees the pool when they were the last.
    ///
    /// # Safety
    /// The caller owns `n` references and does not touch the pool afterwards (unless it holds
    /// another reference).
    #[inline]
    pub(super) unsafe fn release(this: NonNull<PoolShared>, n: usize) {
        // SAFETY: alive until the count reaches zero.
        if unsafe { Self::get(this) }.refs.fetch_sub(n, Ordering::Release) == n {
            fence(Ordering::Acquire);
            // SAFETY: last reference: nobody else can reach the state.
            unsafe { Self::free(this) };
        }
    }

    /// Frees the state (its region is unmapped from the device, then from the process).
    ///
    /// # Safety
    /// The last reference is gone: nobody else can reach the state; it came from `Box::leak`.
    unsafe fn free(this: NonNull<PoolShared>) {
        // SAFETY: alive until here (caller contract).
        unsafe { this.as_ref() }.live.end();
        #[cfg(not(loom))]
        // SAFETY: caller contract: the only pointer left, from a Box.
        drop(unsafe { Box::from_raw(this.as_ptr()) });
        // Under loom the fields are dropped (so the region is unmapped, which a model counts)
        // but the memory is kept, so a later use's `live.check()` reads valid memory and fails
        // its assertion instead of reading freed memory. A model run leaks one state per
        // execution.
        #[cfg(loom)]
        // SAFETY: as above; the memory itself is never freed nor dropped again.
        unsafe {
            core::ptr::drop_in_place(this.as_ptr())
        };
    }

    /// Whether `meta` is the metadata of a buffer of the pool whose arena starts at `base`
    /// (an XOR and a shift: no memory access).
    #[inline(always)]
    pub(super) fn owns(base: usize, shift: u32, meta: *const BufMeta) -> bool {
        ((meta as usize) ^ base) >> shift == 0
    }

    /// The pool a live buffer belongs to.
    ///
    /// # Safety
    /// `b` is a live buffer (taken from its pool and not given back).
    #[inline(always)]
    pub(super) unsafe fn of(b: RawBuffer) -> NonNull<PoolShared> {
        // SAFETY: the metadata of a live buffer is valid and names its live pool; it lives in
        // CPU-only memory, so no device can have changed it.
        unsafe { NonNull::new_unchecked((*b.0).pool as *mut PoolShared) }
    }

    pub(super) fn available(&self) -> usize {
        let cached: usize = self
            .caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum();
        (self.ring.len() + cached).min(self.capacity)
    }
}

impl Drop for PoolShared {
    fn drop(&mut self) {
        log::debug!(
            "mempool {}: last buffer returned, freeing {} bytes",
            self.name,
            self.region.len()
        );
        // The region's own Drop unmaps it from the device, then from the process.
    }
}
