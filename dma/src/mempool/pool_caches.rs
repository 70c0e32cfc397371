//! [`PoolCaches`]: the caches a TX queue frees its completed buffers into, one per pool whose
//! buffers it sends.

use core::marker::PhantomData;

use super::cache::LocalCache;
use super::shared::PoolShared;
use super::thread_cache::POOLS_CLOSED;
use super::{Mempool, MempoolCache};
use crate::packet::RawBuffer;
use crate::sync::{Ordering, fence};

/// Most pools a [`PoolCaches`] keeps a cache for; buffers of further pools go straight to their
/// pool's ring (correct, one ring operation per run of such buffers).
pub const MAX_POOL_CACHES: usize = 4;

/// Explicit caches of up to [`MAX_POOL_CACHES`] pools, owned by one queue (`Send`, `&mut self`):
/// a TX queue's completion gives back the buffers it sent, which may come from any pool (l2fwd
/// sends what the other port received), in bulk into the cache of each buffer's own pool.
///
/// Each buffer's pool comes from its metadata, which lies in CPU-only memory; the buffer is then
/// checked against that cache's pool identity (one XOR and OR, see the [pool docs](super)). The
/// first buffer of a pool not seen before creates that pool's cache here (one allocation, once per
/// pool and queue). A pool whose handles are all dropped loses its cache here at the next put, so
/// a queue does not keep a closed pool's memory alive.
pub struct PoolCaches {
    caches: Vec<LocalCache>,
    /// The value of the close generation when closed pools were last looked for.
    seen_closed: u64,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: owned by one thread at a time (`&mut self` operations); the pool state the caches point
// to is thread-safe (as for MempoolCache).
unsafe impl Send for PoolCaches {}

impl core::fmt::Debug for PoolCaches {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list()
            .entries(self.caches.iter().map(|c| (&c.pool().name, c.len)))
            .finish()
    }
}

impl Default for PoolCaches {
    fn default() -> Self {
        Self::new()
    }
}

impl PoolCaches {
    /// No cache yet (room for [`MAX_POOL_CACHES`] is reserved now, not on the datapath).
    pub fn new() -> Self {
        PoolCaches {
            caches: Vec::with_capacity(MAX_POOL_CACHES),
            seen_closed: POOLS_CLOSED.load(Ordering::Relaxed),
            _not_sync: PhantomData,
        }
    }

    /// With a cache of `pool` made now (the queue's own pool, usually).
    pub fn with_pool(pool: &Mempool) -> Self {
        let mut c = Self::new();
        let MempoolCache { cache, .. } = pool.cache();
        c.caches.push(cache);
        c
    }

    /// Buffers held, over all caches.
    pub fn len(&self) -> usize {
        self.caches.iter().map(|c| c.len).sum()
    }

    /// Whether no cache holds a buffer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pools with a cache here.
    pub fn pools(&self) -> usize {
        self.caches.len()
    }

    /// Returns every cached buffer to its pool's ring.
    pub fn flush(&mut self) {
        for c in &mut self.caches {
            c.flush_all();
        }
    }

    /// Gives back `bufs`, each into its own pool's cache (runs of one pool in one copy). NULL
    /// entries are skipped.
    ///
    /// # Safety
    /// Each non-NULL buffer is a live buffer taken from its pool and owned by the caller (not
    /// given back already, not owned by a [`Packet`](crate::Packet)), a single segment (it heads
    /// no chain: see [`Packet::split_first_segment`](crate::Packet::split_first_segment)), and no
    /// device accesses it any more (its completion was observed, or the queue is off).
    #[inline]
    pub unsafe fn put_bulk(&mut self, bufs: &[RawBuffer]) {
        if POOLS_CLOSED.load(Ordering::Relaxed) != self.seen_closed {
            self.drop_closed();
        }
        // The common case: every buffer of the pool seen last (one XOR/OR each,
        // branch-free; a NULL entry is never a pool's).
        if let Some(c) = self.caches.first_mut() {
            let (base, shift) = (c.base, c.shift);
            if bufs.iter().fold(0, |acc, b| acc | (b.0 as usize ^ base)) >> shift == 0 {
                // SAFETY: all of this cache's pool (checked), given up (caller contract).
                unsafe { c.put(bufs.as_ptr(), bufs.len()) };
                return;
            }
        }
        // SAFETY: forwarded.
        unsafe { self.put_mixed(bufs) }
    }

    /// Buffers of several pools (or NULLs): run by run.
    #[cold]
    #[inline(never)]
    unsafe fn put_mixed(&mut self, bufs: &[RawBuffer]) {
        let mut i = 0;
        while i < bufs.len() {
            let b = bufs[i];
            if b.is_null() {
                i += 1;
                continue;
            }
            // SAFETY: a live buffer (caller contract).
            let pool = unsafe { PoolShared::of(b) };
            let at = match self.caches.iter().position(|c| c.shared == pool) {
                Some(at) => Some(at),
                None if self.caches.len() < MAX_POOL_CACHES => {
                    // SAFETY: the pool is alive: `b` is one of its outstanding buffers.
                    self.caches.push(unsafe { LocalCache::new(pool) });
                    Some(self.caches.len() - 1)
                }
                None => None,
            };
            let mut j = i + 1;
            match at {
                Some(at) => {
                    let c = &mut self.caches[at];
                    while j < bufs.len() && c.owns(bufs[j].0) {
                        j += 1;
                    }
                    // SAFETY: bufs[i..j] are this cache's pool's (b by its metadata, the rest
                    // checked), given up by the caller.
                    unsafe { c.put(bufs.as_ptr().add(i), j - i) };
                    // The pool seen last goes first: the fast path checks it.
                    if at != 0 {
                        self.caches.swap(0, at);
                    }
                }
                None => {
                    // SAFETY: as above.
                    let (base, shift) =
                        unsafe { (PoolShared::get(pool).meta_base, PoolShared::get(pool).shift) };
                    while j < bufs.len() && PoolShared::owns(base, shift, bufs[j].0) {
                        j += 1;
                    }
                    // SAFETY: bufs[i..j] belong to `pool` and are given up by the caller.
                    unsafe { PoolShared::ring_put(pool, bufs.as_ptr().add(i), j - i) };
                }
            }
            i = j;
        }
    }

    /// Drops the caches of pools whose handles are all gone.
    #[cold]
    fn drop_closed(&mut self) {
        self.seen_closed = POOLS_CLOSED.load(Ordering::Relaxed);
        // Pairs with the Release bump of the close generation.
        fence(Ordering::Acquire);
        self.caches
            .retain(|c| c.pool().handles.load(Ordering::Acquire) != 0);
    }
}
