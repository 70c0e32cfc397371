//! The per-thread caches behind [`Mempool::alloc`](super::Mempool::alloc),
//! [`Mempool::alloc_bulk`](super::Mempool::alloc_bulk)(super::Mempool::alloc_bulk) and `Drop for Packet`, and how a thread
//! lets go of the caches of pools that were closed (see the [pool docs](super)).

use core::ptr::NonNull;
use std::cell::RefCell;

use super::cache::LocalCache;
use super::shared::PoolShared;
use crate::packet::{BufMeta, RawBuffer};
use crate::sync::{AtomicU64, Ordering, fence};

/// Per-thread caches, one per pool used on this thread.
struct ThreadCaches {
    entries: Vec<(NonNull<PoolShared>, LocalCache)>,
    /// The value of [`POOLS_CLOSED`] when this thread last released the caches of closed pools.
    seen_closed: u64,
}

#[cfg(not(loom))]
thread_local! {
    static THREAD_CACHES: RefCell<ThreadCaches> =
        const { RefCell::new(ThreadCaches { entries: Vec::new(), seen_closed: 0 }) };
}

// Loom runs its modelled threads on one OS thread: its own thread-locals keep them apart.
#[cfg(loom)]
loom::thread_local! {
    static THREAD_CACHES: RefCell<ThreadCaches> =
        RefCell::new(ThreadCaches { entries: Vec::new(), seen_closed: 0 });
}

/// Close generation: bumped (Release) each time a pool's last handle is dropped, after its
/// `handles` count reached zero. Each thread compares it with its own copy at the end of every
/// per-thread cache operation (one relaxed load of a line that is almost never written) and,
/// when it changed, drops its caches of pools without handles.
#[cfg(not(loom))]
pub(super) static POOLS_CLOSED: AtomicU64 = AtomicU64::new(0);

// A loom atomic cannot be built in a const; loom's lazy static is also fresh in each execution.
#[cfg(loom)]
loom::lazy_static! {
    pub(super) static ref POOLS_CLOSED: AtomicU64 = AtomicU64::new(0);
}

impl ThreadCaches {
    /// Takes out the caches of pools whose handles are all gone, if a pool was closed since the
    /// last look. The caller drops them after releasing the `RefCell` borrow (dropping a cache
    /// may free its pool).
    #[inline(always)]
    fn take_closed(&mut self) -> Option<Vec<(NonNull<PoolShared>, LocalCache)>> {
        let closed = POOLS_CLOSED.load(Ordering::Relaxed);
        if closed == self.seen_closed {
            return None;
        }
        Some(self.take_closed_slow(closed))
    }

    #[cold]
    #[inline(never)]
    fn take_closed_slow(&mut self, closed: u64) -> Vec<(NonNull<PoolShared>, LocalCache)> {
        // Pairs with the Release bump: every pool closed up to `closed` shows handles == 0.
        fence(Ordering::Acquire);
        self.seen_closed = closed;
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.entries.len() {
            // SAFETY: each entry holds a reference to its pool. `handles` never rises from 0
            // (only a handle can make another).
            if unsafe { PoolShared::get(self.entries[i].0) }
                .handles
                .load(Ordering::Acquire)
                == 0
            {
                out.push(self.entries.swap_remove(i));
            } else {
                i += 1;
            }
        }
        out
    }
}

/// Runs `f` on this thread's cache for `shared`, creating it if needed, then releases this
/// thread's caches of pools closed since its last look (see [`POOLS_CLOSED`]). `None` when the
/// thread-local storage is unavailable (thread exiting) or busy (re-entered from a destructor).
///
/// # Safety
/// `shared` is alive and the caller holds a reference or an outstanding buffer of it.
#[inline(always)]
pub(super) unsafe fn with_thread_cache<R>(
    shared: NonNull<PoolShared>,
    f: impl FnOnce(&mut LocalCache) -> R,
) -> Option<R> {
    THREAD_CACHES
        .try_with(|t| {
            let mut t = t.try_borrow_mut().ok()?;
            let r = if let Some((_, c)) = t.entries.iter_mut().find(|(p, _)| *p == shared) {
                f(c)
            } else {
                // SAFETY: forwarded caller contract.
                let c = unsafe { LocalCache::new(shared) };
                t.entries.push((shared, c));
                let last = t.entries.len() - 1;
                f(&mut t.entries[last].1)
            };
            // Checked after `f`: a cache created for a pool closed meanwhile is caught here or
            // at the next operation (the bump that closed it is then visible).
            if let Some(closed) = t.take_closed() {
                drop(t);
                drop(closed); // outside the borrow: may free pools
            }
            Some(r)
        })
        .ok()
        .flatten()
}

/// Removes this thread's cache for `shared` (flushing it), if any.
pub(super) fn remove_thread_cache(shared: NonNull<PoolShared>) {
    let _ = THREAD_CACHES.try_with(|t| {
        let removed = match t.try_borrow_mut() {
            Ok(mut t) => t
                .entries
                .iter()
                .position(|(p, _)| *p == shared)
                .map(|i| t.entries.swap_remove(i)),
            Err(_) => None,
        };
        drop(removed);
    });
}

/// Flushes this thread's per-thread caches of every pool back to their rings and forgets them
/// (they are recreated on next use). Call it before a long idle period or after dropping a
/// pool that other code on this thread used, so the pool's memory can be freed.
pub fn flush_thread_caches() {
    let _ = THREAD_CACHES.try_with(|t| {
        let entries = match t.try_borrow_mut() {
            Ok(mut t) => core::mem::take(&mut t.entries),
            Err(_) => Vec::new(),
        };
        drop(entries);
    });
}

/// Releases this thread's per-thread caches of pools whose handles are all gone (the caches of
/// live pools stay warm). Every per-thread cache operation ([`Mempool::alloc`](super::Mempool::alloc),
/// [`Mempool::alloc_bulk`](super::Mempool::alloc_bulk), dropping a [`Packet`](crate::Packet)) already does this; call it from a thread that
/// stops using pools but keeps running, e.g. in a worker's idle loop. Costs one relaxed load
/// when no pool was closed since this thread's last look.
pub fn release_closed_pool_caches() {
    let _ = THREAD_CACHES.try_with(|t| {
        let closed = match t.try_borrow_mut() {
            Ok(mut t) => t.take_closed(),
            Err(_) => None,
        };
        drop(closed);
    });
}

/// Returns one buffer to its pool (the `Drop` of [`Packet`]).
#[inline]
pub(crate) fn return_one(meta: NonNull<BufMeta>) {
    let raw = RawBuffer(meta.as_ptr());
    // SAFETY: a live buffer (the Packet being dropped owned it).
    let shared = unsafe { PoolShared::of(raw) };
    // SAFETY: the pool is alive while this buffer is out.
    if unsafe { PoolShared::get(shared) }.handles.load(Ordering::Relaxed) == 0 {
        // The pool was dropped: no caching, so its memory goes as soon as the last buffer is
        // back. Flush this thread's cache of it first, if any.
        remove_thread_cache(shared);
        // SAFETY: we give the buffer up.
        unsafe { PoolShared::ring_put(shared, &raw, 1) };
        return;
    }
    // SAFETY: the pool is alive while this buffer is out; a buffer's metadata (CPU-only) always
    // names its own pool, so the cache's identity check holds.
    if unsafe { with_thread_cache(shared, |c| c.put(&raw, 1)) }.is_none() {
        // SAFETY: we give the buffer up.
        unsafe { PoolShared::ring_put(shared, &raw, 1) };
    }
}

/// Returns `bufs`, single-segment buffers all of the pool `shared`, in one operation of this
/// thread's cache of it (the bulk form of [`return_one`]).
///
/// # Safety
/// Every buffer of `bufs` is live, of the pool `shared`, not part of a chain, and given up by the
/// caller (no `Packet` of it remains).
#[inline]
pub(crate) unsafe fn return_run(shared: NonNull<PoolShared>, bufs: &[RawBuffer]) {
    // SAFETY: the pool is alive while these buffers are out.
    if unsafe { PoolShared::get(shared) }.handles.load(Ordering::Relaxed) == 0 {
        remove_thread_cache(shared);
        // SAFETY: we give the buffers up.
        unsafe { PoolShared::ring_put(shared, bufs.as_ptr(), bufs.len()) };
        return;
    }
    // SAFETY: as in `return_one`; the caller gives the buffers up.
    if unsafe { with_thread_cache(shared, |c| c.put(bufs.as_ptr(), bufs.len())) }.is_none() {
        // SAFETY: we give the buffers up.
        unsafe { PoolShared::ring_put(shared, bufs.as_ptr(), bufs.len()) };
    }
}

/// The pool a live buffer belongs to.
///
/// # Safety
/// `meta` is the metadata of a live buffer.
#[inline(always)]
pub(crate) unsafe fn pool_of(meta: NonNull<BufMeta>) -> NonNull<PoolShared> {
    // SAFETY: forwarded.
    unsafe { PoolShared::of(RawBuffer(meta.as_ptr())) }
}
