//! Fixed-size packet buffers carved out of one DMA region: [`Mempool`], with a shared MP/MC
//! [`Ring`] of free buffers and per-thread caches.
//!
//! # Caches
//! Two kinds, same code (`LocalCache`):
//! - [`MempoolCache`]: an explicit handle owned by one queue / thread (DPDK's per-lcore cache):
//!   `&mut self` operations, no lookup, the fastest path; drivers use it for RX refill and TX
//!   completion ([`MempoolCache::get_bulk`] / [`MempoolCache::put_bulk`]).
//! - A per-thread cache in a `thread_local!` list keyed by pool, used by [`Mempool::alloc`] and
//!   by `Drop for Packet`. It is only reachable from its own thread, so it needs no lock (and
//!   no other thread can flush it).
//!
//! A per-thread cache holds a reference to its pool, so it keeps the pool's memory (and its
//! device mapping) alive. Guarantee, once the pool's last [`Mempool`] handle is dropped:
//! - the dropping thread's own cache of it is flushed at once;
//! - every other thread's cache of it is flushed and released at that thread's next per-thread
//!   cache operation on *any* pool that starts after the drop ([`Mempool::alloc`],
//!   [`Mempool::alloc_bulk`], dropping a [`Packet`]), or when it calls
//!   [`release_closed_pool_caches`] or [`flush_thread_caches`], or when it exits, whichever
//!   comes first (a global close generation, one relaxed load per operation, tells it to look);
//! - a thread that does none of these keeps its cache, and with it the pool, until it does:
//!   call [`release_closed_pool_caches`] from long-lived threads that go idle;
//! - packets still out, and explicit [`MempoolCache`]s, keep the pool alive until they are
//!   dropped (a packet of a closed pool goes straight back to the ring, not into a cache).
//!
//! The pool is freed (unmapped from the device, then from the process) when all of those are
//! gone.
//!
//! A cache keeps up to `cache_size * 3 / 2` buffers; when a put would exceed that it flushes
//! its content to the ring in one bulk enqueue; a get it cannot serve refills it with
//! `cache_size + n - len` buffers in one burst dequeue. Requests larger than the cache go to
//! the ring directly. An empty pool answers at once ([`Exhausted`]); nothing blocks.
//!
//! # Lifetime
//! The shared state counts its references: one per [`Mempool`] handle, one per cache, and one
//! per buffer outside the ring. Buffers are counted per ring operation (bulk, amortised by the
//! caches), never per packet. The state, and with it the region (unmapped from the device,
//! then from the process), is freed when the count reaches zero: when the last handle is gone
//! and the last buffer is back. Dropping a pool while packets are out is therefore sound.
//!
//! # Pool identity
//! A pool's region starts at a multiple of `2^k` (the smallest power of two >= its size) and
//! the address space up to `2^k` is reserved for it (`PROT_NONE`), so a buffer belongs to the
//! pool iff `(addr ^ base) >> k == 0`: every cache checks each buffer given back this way (an
//! XOR and an OR, no memory access) and refuses foreign ones ([`MempoolCache::free`],
//! [`MempoolCache::free_bulk`], [`MempoolCache::put_bulk`]); only the `unsafe`
//! [`MempoolCache::put_bulk_unchecked`] skips it. A packet dropped normally goes to the pool
//! named in its header.

use core::marker::PhantomData;
use core::ptr::NonNull;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;

use crate::map::{DmaMap, DmaMapError};
use crate::packet::{BUF_HEADER_SIZE, BufHeader, OffloadFlags, Packet, RawBuffer};
use crate::region::{DmaRegion, RegionError, RegionOptions};
use crate::ring::{QueueBehavior, RING_MAX_SIZE, Ring};
use crate::sync::copy_elems;

/// Default per-thread cache size (buffers), as in DPDK's l2fwd.
pub const DEFAULT_CACHE_SIZE: usize = 256;
/// Largest per-thread cache size accepted (DPDK's `RTE_MEMPOOL_CACHE_MAX_SIZE`).
pub const MAX_CACHE_SIZE: usize = 512;
/// Default headroom in front of the data.
pub const DEFAULT_HEADROOM: usize = 128;
/// Default data room.
pub const DEFAULT_DATA_ROOM: usize = 2048;
/// Smallest data room accepted (a minimum Ethernet frame with its FCS).
pub const MIN_DATA_ROOM: usize = 64;
/// Largest headroom + data room (lengths are 16-bit in the buffer header).
pub const MAX_BUFFER_LEN: usize = u16::MAX as usize;

/// Parameters of a [`Mempool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Name, for errors and logs.
    pub name: String,
    /// Number of buffers (`1..=2^31`).
    pub capacity: usize,
    /// Per-thread / per-handle cache size (`0..=MAX_CACHE_SIZE`, and at most capacity / 1.5).
    pub cache_size: usize,
    /// Headroom in front of the data (default 128).
    pub headroom: usize,
    /// Data room (default 2048).
    pub data_room: usize,
    /// Backing memory (2 MiB hugepages by default; 4 KiB only by explicit opt-in).
    pub region: RegionOptions,
}

impl MempoolConfig {
    /// A configuration with the defaults and `capacity` buffers.
    pub fn new(name: impl Into<String>, capacity: usize) -> Self {
        MempoolConfig {
            name: name.into(),
            capacity,
            cache_size: DEFAULT_CACHE_SIZE,
            headroom: DEFAULT_HEADROOM,
            data_room: DEFAULT_DATA_ROOM,
            region: RegionOptions::default(),
        }
    }
}

/// Errors creating a mempool.
#[derive(Debug, thiserror::Error)]
pub enum MempoolError {
    /// Zero buffers asked for.
    #[error("mempool {name}: capacity must not be zero")]
    ZeroCapacity {
        /// Pool name.
        name: String,
    },
    /// Too many buffers.
    #[error("mempool {name}: capacity {capacity} exceeds the maximum of {max} buffers")]
    CapacityTooLarge {
        /// Pool name.
        name: String,
        /// Requested capacity.
        capacity: usize,
        /// Maximum.
        max: usize,
    },
    /// Cache larger than allowed.
    #[error(
        "mempool {name}: cache size {cache_size} is too large (at most {max}: {MAX_CACHE_SIZE} and \
         capacity / 1.5, so caches cannot hold every buffer)"
    )]
    CacheTooLarge {
        /// Pool name.
        name: String,
        /// Requested cache size.
        cache_size: usize,
        /// Largest allowed for this pool.
        max: usize,
    },
    /// Data room too small.
    #[error("mempool {name}: data room {data_room} is smaller than the minimum of {min} bytes")]
    DataRoomTooSmall {
        /// Pool name.
        name: String,
        /// Requested data room.
        data_room: usize,
        /// Minimum.
        min: usize,
    },
    /// Headroom + data room too large.
    #[error("mempool {name}: headroom {headroom} + data room {data_room} exceeds {max} bytes")]
    BufferTooLarge {
        /// Pool name.
        name: String,
        /// Requested headroom.
        headroom: usize,
        /// Requested data room.
        data_room: usize,
        /// Maximum of the sum.
        max: usize,
    },
    /// The memory could not be allocated.
    #[error("mempool {name}: {source}")]
    Region {
        /// Pool name.
        name: String,
        /// Cause.
        #[source]
        source: RegionError,
    },
    /// The memory could not be mapped for the device.
    #[error("mempool {name}: {source}")]
    Map {
        /// Pool name.
        name: String,
        /// Cause.
        #[source]
        source: DmaMapError,
    },
}

/// Not enough free buffers (nothing was taken). Answered at once, never waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mempool exhausted: not enough free buffers (raise the capacity or return packets sooner)")]
pub struct Exhausted;

/// A buffer given back to a pool it does not belong to (nothing was taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mempool put: buffer at index {index} does not belong to this pool (refused)")]
pub struct ForeignBuffer {
    /// Position of the first foreign buffer in the slice given.
    pub index: usize,
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// State shared by the handles, caches and buffers of one pool.
pub(crate) struct PoolShared {
    pub(crate) id: u64,
    handles: AtomicUsize,
    base: usize,
    /// The region starts at `base`, a multiple of `1 << shift`, and owns the address space up
    /// to `base + (1 << shift)` (see `DmaRegion::new_aligned`): an address `a` is this pool's
    /// iff `(a ^ base) >> shift == 0`.
    shift: u32,
    elt_size: usize,
    capacity: usize,
    cache_size: usize,
    headroom: usize,
    data_room: usize,
    name: String,
    /// Lengths published by every live cache, for [`Mempool::available`].
    caches: Mutex<Vec<Arc<CachePadded<AtomicUsize>>>>,
    region: DmaRegion,
    refs: CachePadded<AtomicUsize>,
    ring: Ring<RawBuffer>,
}

impl PoolShared {
    /// Dequeues up to `n` buffers from the ring (counted as outside the ring).
    ///
    /// # Safety
    /// `this` is alive and the caller holds a reference (handle or cache); `dst` has room for n.
    #[inline]
    unsafe fn ring_get(this: NonNull<PoolShared>, dst: *mut RawBuffer, n: usize, b: QueueBehavior) -> usize {
        // SAFETY: alive (caller contract).
        let s = unsafe { this.as_ref() };
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
    unsafe fn ring_put(this: NonNull<PoolShared>, src: *const RawBuffer, n: usize) {
        if n == 0 {
            return;
        }
        // SAFETY: alive: the n buffers are outside the ring and counted.
        let s = unsafe { this.as_ref() };
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
    unsafe fn release(this: NonNull<PoolShared>, n: usize) {
        // SAFETY: alive until the count reaches zero.
        if unsafe { this.as_ref() }.refs.fetch_sub(n, Ordering::Release) == n {
            fence(Ordering::Acquire);
            // SAFETY: last reference: nobody else can reach the state; it came from Box::into_raw.
            drop(unsafe { Box::from_raw(this.as_ptr()) });
        }
    }

    #[inline(always)]
    fn owns(base: usize, shift: u32, hdr: *const BufHeader) -> bool {
        ((hdr as usize) ^ base) >> shift == 0
    }

    fn available(&self) -> usize {
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

/// A per-thread / per-queue cache of free buffers of one pool; holds one pool reference.
pub(crate) struct LocalCache {
    shared: NonNull<PoolShared>,
    base: usize,
    shift: u32,
    len: usize,
    size: usize,
    flush: usize,
    objs: Box<[RawBuffer]>,
    published: Arc<CachePadded<AtomicUsize>>,
}

impl LocalCache {
    /// # Safety
    /// `shared` is alive and the caller holds a reference or an outstanding buffer of it.
    unsafe fn new(shared: NonNull<PoolShared>) -> LocalCache {
        // SAFETY: alive (caller contract).
        let s = unsafe { shared.as_ref() };
        s.refs.fetch_add(1, Ordering::Relaxed);
        let published = Arc::new(CachePadded::new(AtomicUsize::new(0)));
        s.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(published.clone());
        LocalCache {
            shared,
            base: s.base,
            shift: s.shift,
            len: 0,
            size: s.cache_size,
            flush: s.cache_size * 3 / 2,
            objs: vec![RawBuffer::NULL; s.cache_size * 2].into_boxed_slice(),
            published,
        }
    }

    #[inline(always)]
    fn set_len(&mut self, len: usize) {
        self.len = len;
        self.published.store(len, Ordering::Relaxed);
    }

    #[inline(always)]
    fn owns(&self, hdr: *const BufHeader) -> bool {
        PoolShared::owns(self.base, self.shift, hdr)
    }

    /// Takes `n` buffers into `dst`, all or nothing.
    ///
    /// # Safety
    /// `dst` has room for `n` values.
    #[inline(always)]
    unsafe fn get(&mut self, dst: *mut RawBuffer, n: usize) -> bool {
        let len = self.len;
        if n <= len {
            let start = len - n;
            // SAFETY: objs[start..len] are cached buffers; dst has room for n.
            unsafe { copy_elems(self.objs.as_ptr().add(start), dst, n) };
            self.set_len(start);
            return true;
        }
        // SAFETY: forwarded.
        unsafe { self.get_slow(dst, n) }
    }

    #[cold]
    #[inline(never)]
    unsafe fn get_slow(&mut self, dst: *mut RawBuffer, n: usize) -> bool {
        if n > self.size {
            // SAFETY: we hold a reference; dst has room for n.
            return unsafe { PoolShared::ring_get(self.shared, dst, n, QueueBehavior::Fixed) } == n;
        }
        let len = self.len;
        let want = self.size + n - len; // <= 2 * size = objs.len()
        // SAFETY: objs[len..len + want] is in bounds; we hold a reference.
        let got = unsafe {
            PoolShared::ring_get(
                self.shared,
                self.objs.as_mut_ptr().add(len),
                want,
                QueueBehavior::Variable,
            )
        };
        let len = len + got;
        if len < n {
            self.set_len(len);
            return false;
        }
        // SAFETY: as in get().
        unsafe { copy_elems(self.objs.as_ptr().add(len - n), dst, n) };
        self.set_len(len - n);
        true
    }

    /// Gives `n` buffers back.
    ///
    /// # Safety
    /// The buffers belong to this pool (checked by callers) and the caller gives them up.
    #[inline(always)]
    unsafe fn put(&mut self, src: *const RawBuffer, n: usize) {
        let len = self.len;
        if len + n <= self.flush {
            // SAFETY: len + n <= flush <= objs.len().
            unsafe { copy_elems(src, self.objs.as_mut_ptr().add(len), n) };
            self.set_len(len + n);
            return;
        }
        // SAFETY: forwarded.
        unsafe { self.put_slow(src, n) }
    }

    #[cold]
    #[inline(never)]
    unsafe fn put_slow(&mut self, src: *const RawBuffer, n: usize) {
        self.flush_all();
        if n > self.flush {
            // SAFETY: caller gives them up; we hold a reference.
            unsafe { PoolShared::ring_put(self.shared, src, n) };
        } else {
            // SAFETY: n <= flush <= objs.len().
            unsafe { copy_elems(src, self.objs.as_mut_ptr(), n) };
            self.set_len(n);
        }
    }

    /// Returns every cached buffer to the ring.
    fn flush_all(&mut self) {
        let len = self.len;
        self.set_len(0);
        // SAFETY: the cached buffers are ours; we still hold the cache's own reference.
        unsafe { PoolShared::ring_put(self.shared, self.objs.as_ptr(), len) };
    }

    fn pool(&self) -> &PoolShared {
        // SAFETY: the cache holds a reference.
        unsafe { self.shared.as_ref() }
    }
}

impl Drop for LocalCache {
    fn drop(&mut self) {
        self.flush_all();
        let p = self.published.clone();
        self.pool()
            .caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| !Arc::ptr_eq(c, &p));
        // SAFETY: drops the cache's reference; not touched afterwards.
        unsafe { PoolShared::release(self.shared, 1) };
    }
}

/// Per-thread caches, one per pool used on this thread.
struct ThreadCaches {
    entries: Vec<(NonNull<PoolShared>, LocalCache)>,
    /// The value of [`POOLS_CLOSED`] when this thread last released the caches of closed pools.
    seen_closed: u64,
}

thread_local! {
    static THREAD_CACHES: RefCell<ThreadCaches> =
        const { RefCell::new(ThreadCaches { entries: Vec::new(), seen_closed: 0 }) };
}

/// Close generation: bumped (Release) each time a pool's last handle is dropped, after its
/// `handles` count reached zero. Each thread compares it with its own copy at the end of every
/// per-thread cache operation (one relaxed load of a line that is almost never written) and,
/// when it changed, drops its caches of pools without handles.
static POOLS_CLOSED: AtomicU64 = AtomicU64::new(0);

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
            if unsafe { self.entries[i].0.as_ref() }
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
unsafe fn with_thread_cache<R>(
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
fn remove_thread_cache(shared: NonNull<PoolShared>) {
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
/// live pools stay warm). Every per-thread cache operation ([`Mempool::alloc`],
/// [`Mempool::alloc_bulk`], dropping a [`Packet`]) already does this; call it from a thread that
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
pub(crate) fn return_one(hdr: NonNull<BufHeader>) {
    // SAFETY: the header of a live buffer names its (live) pool.
    let shared = unsafe { NonNull::new_unchecked((*hdr.as_ptr()).pool as *mut PoolShared) };
    let raw = RawBuffer(hdr.as_ptr());
    // SAFETY: the pool is alive while this buffer is out.
    if unsafe { shared.as_ref() }.handles.load(Ordering::Relaxed) == 0 {
        // The pool was dropped: no caching, so its memory goes as soon as the last buffer is
        // back. Flush this thread's cache of it first, if any.
        remove_thread_cache(shared);
        // SAFETY: we give the buffer up.
        unsafe { PoolShared::ring_put(shared, &raw, 1) };
        return;
    }
    // SAFETY: the pool is alive while this buffer is out; a buffer's header always names its
    // own pool, so the identity check holds.
    if unsafe { with_thread_cache(shared, |c| c.put(&raw, 1)) }.is_none() {
        // SAFETY: we give the buffer up.
        unsafe { PoolShared::ring_put(shared, &raw, 1) };
    }
}

/// A pool of fixed-size packet buffers in one DMA region; see the [module documentation](self).
/// Cloning gives another handle to the same pool.
pub struct Mempool {
    shared: NonNull<PoolShared>,
}

// SAFETY: the shared state is only mutated through atomics, the ring and a Mutex.
unsafe impl Send for Mempool {}
// SAFETY: as above; &Mempool operations use the thread's own cache.
unsafe impl Sync for Mempool {}

impl core::fmt::Debug for Mempool {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Mempool")
            .field("name", &self.name())
            .field("id", &self.id())
            .field("capacity", &self.capacity())
            .field("available", &self.available())
            .finish()
    }
}

impl Mempool {
    /// Creates a pool: validates `config`, allocates its region, maps it through `dma` (use
    /// [`IdentityMap`](crate::IdentityMap) for virtual ports) and carves the buffers.
    pub fn new(config: &MempoolConfig, dma: Arc<dyn DmaMap>) -> Result<Mempool, MempoolError> {
        let name = config.name.clone();
        if config.capacity == 0 {
            return Err(MempoolError::ZeroCapacity { name });
        }
        if config.capacity > RING_MAX_SIZE {
            return Err(MempoolError::CapacityTooLarge {
                name,
                capacity: config.capacity,
                max: RING_MAX_SIZE,
            });
        }
        let max_cache = MAX_CACHE_SIZE.min(config.capacity * 2 / 3);
        if config.cache_size > max_cache {
            return Err(MempoolError::CacheTooLarge {
                name,
                cache_size: config.cache_size,
                max: max_cache,
            });
        }
        if config.data_room < MIN_DATA_ROOM {
            return Err(MempoolError::DataRoomTooSmall {
                name,
                data_room: config.data_room,
                min: MIN_DATA_ROOM,
            });
        }
        let buf_len = config
            .headroom
            .checked_add(config.data_room)
            .filter(|&l| l <= MAX_BUFFER_LEN);
        let Some(buf_len) = buf_len else {
            return Err(MempoolError::BufferTooLarge {
                name,
                headroom: config.headroom,
                data_room: config.data_room,
                max: MAX_BUFFER_LEN,
            });
        };
        let elt_size = BUF_HEADER_SIZE + buf_len.next_multiple_of(64);
        let total = config
            .capacity
            .checked_mul(elt_size)
            .ok_or_else(|| MempoolError::CapacityTooLarge {
                name: name.clone(),
                capacity: config.capacity,
                max: usize::MAX / elt_size,
            })?;
        let mut region =
            DmaRegion::new_aligned(total, &config.region).map_err(|source| MempoolError::Region {
                name: name.clone(),
                source,
            })?;
        let iova = region.map(dma).map_err(|source| MempoolError::Map {
            name: name.clone(),
            source,
        })?;
        let ring = Ring::new(config.capacity.next_power_of_two())
            .expect("capacity <= RING_MAX_SIZE was checked, so the ring size is valid");
        let base = region.as_ptr() as usize;
        let shared = Box::new(PoolShared {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            handles: AtomicUsize::new(1),
            base,
            shift: region.reservation_shift(),
            elt_size,
            capacity: config.capacity,
            cache_size: config.cache_size,
            headroom: config.headroom,
            data_room: config.data_room,
            name,
            caches: Mutex::new(Vec::new()),
            region,
            refs: CachePadded::new(AtomicUsize::new(1)),
            ring,
        });
        let shared = NonNull::from(Box::leak(shared));
        // SAFETY: just created; we hold its only reference.
        let s = unsafe { shared.as_ref() };
        let mut batch = [RawBuffer::NULL; 64];
        let mut i = 0;
        while i < config.capacity {
            let k = (config.capacity - i).min(batch.len());
            for (j, slot) in batch[..k].iter_mut().enumerate() {
                let off = (i + j) * elt_size;
                let hdr = (base + off) as *mut BufHeader;
                let mut h = BufHeader {
                    pool: shared.as_ptr(),
                    buf_iova: iova + (off + BUF_HEADER_SIZE) as u64,
                    data_off: 0,
                    data_len: 0,
                    buf_len: buf_len as u16,
                    headroom: config.headroom as u16,
                    port: 0,
                    queue: 0,
                    rss_hash: 0,
                    flags: OffloadFlags::EMPTY,
                    vlan_tci: 0,
                    _pad: [0; 3],
                    user: 0,
                    _reserved: 0,
                };
                h.reset();
                // SAFETY: inside the region, 64-byte aligned (page-aligned base, elt_size a
                // multiple of 64); no device has been given any address in it yet.
                unsafe { hdr.write(h) };
                *slot = RawBuffer(hdr);
            }
            // SAFETY: k initialised values; capacity <= ring size so they fit.
            let put = unsafe { s.ring.enqueue_raw(batch.as_ptr(), k, QueueBehavior::Fixed) };
            debug_assert_eq!(put, k);
            i += k;
        }
        Ok(Mempool { shared })
    }

    #[inline(always)]
    fn shared(&self) -> &PoolShared {
        // SAFETY: a handle holds a reference.
        unsafe { self.shared.as_ref() }
    }

    /// Unique id of this pool (also in every buffer: [`Packet::pool_id`]).
    pub fn id(&self) -> u64 {
        self.shared().id
    }
    /// Name given at creation.
    pub fn name(&self) -> &str {
        &self.shared().name
    }
    /// Number of buffers.
    pub fn capacity(&self) -> usize {
        self.shared().capacity
    }
    /// Free buffers: in the ring plus in every cache (a snapshot under concurrency).
    pub fn available(&self) -> usize {
        self.shared().available()
    }
    /// Buffers taken and not given back: `capacity - available` (a snapshot).
    pub fn in_use(&self) -> usize {
        self.capacity() - self.available()
    }
    /// Cache size of this pool's caches.
    pub fn cache_size(&self) -> usize {
        self.shared().cache_size
    }
    /// Default headroom of a buffer.
    pub fn headroom(&self) -> usize {
        self.shared().headroom
    }
    /// Data room of a buffer.
    pub fn data_room(&self) -> usize {
        self.shared().data_room
    }
    /// Bytes per element (header + headroom + data room, rounded to 64).
    pub fn element_size(&self) -> usize {
        self.shared().elt_size
    }
    /// The backing region (address, length, page size, IOVA).
    pub fn region(&self) -> &DmaRegion {
        &self.shared().region
    }

    /// Whether `pkt` is a buffer of this pool.
    #[inline]
    pub fn owns(&self, pkt: &Packet) -> bool {
        let s = self.shared();
        PoolShared::owns(s.base, s.shift, pkt.header_ptr().as_ptr())
    }

    /// An explicit cache for one queue / thread (see the [module documentation](self)).
    pub fn cache(&self) -> MempoolCache {
        // SAFETY: we hold a reference.
        let cache = unsafe { LocalCache::new(self.shared) };
        MempoolCache {
            cache,
            _not_sync: PhantomData,
        }
    }

    /// Takes one packet (metadata reset) through this thread's cache.
    #[inline]
    pub fn alloc(&self) -> Option<Packet> {
        let mut raw = RawBuffer::NULL;
        // SAFETY: we hold a reference; room for one.
        let ok = unsafe { with_thread_cache(self.shared, |c| c.get(&mut raw, 1)) }.unwrap_or_else(|| {
            // SAFETY: as above, directly from the ring.
            unsafe { PoolShared::ring_get(self.shared, &mut raw, 1, QueueBehavior::Fixed) == 1 }
        });
        // SAFETY: a buffer we just took.
        ok.then(|| unsafe { reset_packet(raw) })
    }

    /// Fills every slot of `out` with a packet (metadata reset) through this thread's cache, or
    /// none ([`Exhausted`]). Packets already in `out` are dropped first. Never allocates.
    #[inline]
    pub fn alloc_bulk(&self, out: &mut [Option<Packet>]) -> Result<(), Exhausted> {
        clear_slots(out);
        let (dst, n) = (out.as_mut_ptr().cast::<RawBuffer>(), out.len());
        // SAFETY: Option<Packet> has the layout of a nullable pointer (Packet is a
        // repr(transparent) NonNull), so `out` is room for n RawBuffers.
        let ok = unsafe { with_thread_cache(self.shared, |c| c.get(dst, n)) }.unwrap_or_else(|| {
            // SAFETY: as above.
            unsafe { PoolShared::ring_get(self.shared, dst, n, QueueBehavior::Fixed) == n }
        });
        if !ok {
            return Err(Exhausted);
        }
        reset_slots(out);
        Ok(())
    }
}

impl Clone for Mempool {
    fn clone(&self) -> Self {
        let s = self.shared();
        s.refs.fetch_add(1, Ordering::Relaxed);
        s.handles.fetch_add(1, Ordering::Relaxed);
        Mempool { shared: self.shared }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        if self.shared().handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            remove_thread_cache(self.shared);
            // Tell the other threads to release their caches of it (see `POOLS_CLOSED`).
            POOLS_CLOSED.fetch_add(1, Ordering::Release);
        }
        // SAFETY: drops this handle's reference; not touched afterwards.
        unsafe { PoolShared::release(self.shared, 1) };
    }
}

/// Drops the packets in `out` (rarely any) so the slots can be overwritten.
#[inline(always)]
fn clear_slots(out: &mut [Option<Packet>]) {
    for s in out.iter_mut() {
        if s.is_some() {
            *s = None;
        }
    }
}

/// Resets the metadata of freshly taken packets.
#[inline(always)]
fn reset_slots(out: &mut [Option<Packet>]) {
    for p in out.iter_mut().flatten() {
        p.reset();
    }
}

/// # Safety
/// `raw` is a buffer just taken from a pool.
#[inline(always)]
unsafe fn reset_packet(raw: RawBuffer) -> Packet {
    // SAFETY: non-null buffer we own; no device owns it.
    let mut p = unsafe { Packet::from_header(NonNull::new_unchecked(raw.0)) };
    p.reset();
    p
}

/// An explicit cache of one pool, owned by one queue or thread (`Send`, `&mut self`); the
/// fastest way to take and give back buffers. Dropping it flushes it to the pool.
pub struct MempoolCache {
    cache: LocalCache,
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: the cache is owned by one thread at a time (`&mut self` operations); the pool state it
// points to is thread-safe.
unsafe impl Send for MempoolCache {}

impl core::fmt::Debug for MempoolCache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MempoolCache")
            .field("pool", &self.cache.pool().name)
            .field("len", &self.cache.len)
            .finish()
    }
}

impl MempoolCache {
    /// Id of the pool.
    pub fn pool_id(&self) -> u64 {
        self.cache.pool().id
    }

    /// Buffers held by this cache.
    pub fn len(&self) -> usize {
        self.cache.len
    }

    /// Whether the cache holds no buffer.
    pub fn is_empty(&self) -> bool {
        self.cache.len == 0
    }

    /// Returns every cached buffer to the pool's ring.
    pub fn flush(&mut self) {
        self.cache.flush_all();
    }

    /// Takes one packet (metadata reset).
    #[inline]
    pub fn alloc(&mut self) -> Option<Packet> {
        let mut raw = RawBuffer::NULL;
        // SAFETY: room for one.
        let ok = unsafe { self.cache.get(&mut raw, 1) };
        // SAFETY: a buffer we just took.
        ok.then(|| unsafe { reset_packet(raw) })
    }

    /// Fills every slot of `out` with a packet (metadata reset), or none. Never allocates.
    #[inline]
    pub fn alloc_bulk(&mut self, out: &mut [Option<Packet>]) -> Result<(), Exhausted> {
        clear_slots(out);
        // SAFETY: see Mempool::alloc_bulk for the layout argument.
        if !unsafe { self.cache.get(out.as_mut_ptr().cast::<RawBuffer>(), out.len()) } {
            return Err(Exhausted);
        }
        reset_slots(out);
        Ok(())
    }

    /// Gives a packet back; a packet of another pool is refused and handed back.
    #[inline]
    pub fn free(&mut self, pkt: Packet) -> Result<(), Packet> {
        if !self.cache.owns(pkt.header_ptr().as_ptr()) {
            return Err(pkt);
        }
        let raw = pkt.into_raw();
        // SAFETY: ours (checked), given up.
        unsafe { self.cache.put(&raw, 1) };
        Ok(())
    }

    /// Gives back every packet of `pkts` that belongs to this pool (their slots become `None`);
    /// packets of other pools stay in their slots. Returns the number given back.
    #[inline]
    pub fn free_bulk(&mut self, pkts: &mut [Option<Packet>]) -> usize {
        let n = pkts.len();
        let (base, shift) = (self.cache.base, self.cache.shift);
        // All Some and ours, branch-free: a None reads as address 0, which is never ours.
        let bits = |s: &Option<Packet>| s.as_ref().map_or(0, |p| p.header_ptr().as_ptr() as usize);
        if pkts.iter().fold(0, |acc, s| acc | (bits(s) ^ base)) >> shift == 0 {
            // SAFETY: all Some and ours; Option<Packet> has the layout of RawBuffer (see
            // alloc_bulk). Ownership passes to the cache, then the slots are overwritten with
            // None without running Drop.
            unsafe {
                self.cache.put(pkts.as_ptr().cast::<RawBuffer>(), n);
                for s in pkts.iter_mut() {
                    core::ptr::write(s, None);
                }
            }
            return n;
        }
        let mut freed = 0;
        for s in pkts.iter_mut() {
            if s.as_ref()
                .is_some_and(|p| self.cache.owns(p.header_ptr().as_ptr()))
            {
                let raw = s.take().map(Packet::into_raw).unwrap_or(RawBuffer::NULL);
                // SAFETY: ours (checked), given up.
                unsafe { self.cache.put(&raw, 1) };
                freed += 1;
            }
        }
        freed
    }

    /// Takes `out.len()` raw buffers, or none. Headers are not touched (metadata is whatever
    /// the previous user left: reset it, e.g. with [`Packet::reset`], before use).
    #[inline]
    pub fn get_bulk(&mut self, out: &mut [RawBuffer]) -> Result<(), Exhausted> {
        // SAFETY: room for out.len().
        if unsafe { self.cache.get(out.as_mut_ptr(), out.len()) } {
            Ok(())
        } else {
            Err(Exhausted)
        }
    }

    /// Gives raw buffers back. Every buffer is checked to lie in this pool (all or nothing:
    /// [`ForeignBuffer`] names the first that does not).
    ///
    /// # Safety
    /// Each buffer was taken from this pool, is owned by the caller (not given back already,
    /// not owned by a [`Packet`]) and no device accesses it any more.
    #[inline]
    pub unsafe fn put_bulk(&mut self, bufs: &[RawBuffer]) -> Result<(), ForeignBuffer> {
        let (base, shift) = (self.cache.base, self.cache.shift);
        // One XOR and OR per buffer, no branch (vectorises); the position only on error.
        // Short bulks: a predictable branch per buffer. Long ones: one XOR and OR per buffer,
        // branch-free (vectorises). The position of a foreign buffer is found on error only.
        let foreign = if bufs.len() < 8 {
            bufs.iter().any(|b| !PoolShared::owns(base, shift, b.0))
        } else {
            bufs.iter().fold(0, |acc, b| acc | (b.0 as usize ^ base)) >> shift != 0
        };
        if foreign {
            let index = bufs
                .iter()
                .position(|b| !PoolShared::owns(base, shift, b.0))
                .unwrap_or(0);
            return Err(ForeignBuffer { index });
        }
        // SAFETY: ours (checked); the caller gives them up (contract).
        unsafe { self.cache.put(bufs.as_ptr(), bufs.len()) };
        Ok(())
    }

    /// [`MempoolCache::put_bulk`] without the pool check (about half a cycle per buffer),
    /// for drivers that give back buffers they took from this same cache (an RX ring's own
    /// buffers, a benchmark). Checked in debug builds only.
    ///
    /// # Safety
    /// As [`MempoolCache::put_bulk`], and every buffer belongs to this pool: a foreign buffer
    /// would be handed out by this pool while its own pool may free its memory.
    #[inline]
    pub unsafe fn put_bulk_unchecked(&mut self, bufs: &[RawBuffer]) {
        debug_assert!(
            bufs.iter().all(|b| self.cache.owns(b.0)),
            "foreign buffer given to put_bulk_unchecked"
        );
        // SAFETY: ours and given up (caller contract).
        unsafe { self.cache.put(bufs.as_ptr(), bufs.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::IdentityMap;
    use crate::region::PageSize;
    use std::sync::atomic::AtomicBool;

    fn small(name: &str, capacity: usize, cache: usize) -> MempoolConfig {
        MempoolConfig {
            cache_size: cache,
            region: RegionOptions {
                page_size: PageSize::Base4K,
                allow_4k_fallback: true,
            },
            ..MempoolConfig::new(name, capacity)
        }
    }

    fn pool(name: &str, capacity: usize, cache: usize) -> Mempool {
        Mempool::new(&small(name, capacity, cache), Arc::new(IdentityMap)).unwrap()
    }

    #[test]
    fn packet_and_option_are_one_pointer() {
        assert_eq!(core::mem::size_of::<Packet>(), 8);
        assert_eq!(core::mem::size_of::<Option<Packet>>(), 8);
        assert_eq!(core::mem::size_of::<RawBuffer>(), 8);
    }

    #[test]
    fn bad_configs_are_errors() {
        let map: Arc<dyn DmaMap> = Arc::new(IdentityMap);
        let e = |c: MempoolConfig| Mempool::new(&c, map.clone()).unwrap_err();
        assert!(matches!(e(small("z", 0, 0)), MempoolError::ZeroCapacity { .. }));
        assert!(matches!(
            e(small("c", 1024, 513)),
            MempoolError::CacheTooLarge { max: 512, .. }
        ));
        assert!(matches!(
            e(small("c2", 100, 67)),
            MempoolError::CacheTooLarge { max: 66, .. }
        ));
        assert!(matches!(
            e(MempoolConfig {
                data_room: 10,
                ..small("d", 8, 0)
            }),
            MempoolError::DataRoomTooSmall { .. }
        ));
        assert!(matches!(
            e(MempoolConfig {
                data_room: 65535,
                ..small("b", 8, 0)
            }),
            MempoolError::BufferTooLarge { .. }
        ));
        assert!(matches!(
            e(small("o", usize::MAX / 2, 0)),
            MempoolError::CapacityTooLarge { .. }
        ));
        let msg = e(small("named", 1024, 600)).to_string();
        assert!(msg.contains("named") && msg.contains("600"), "{msg}");
    }

    #[test]
    fn alloc_until_exhausted_then_everything_comes_back() {
        let p = pool("exh", 100, 16);
        let mut c = p.cache();
        let mut pkts = Vec::new();
        while let Some(pkt) = c.alloc() {
            pkts.push(pkt);
        }
        assert_eq!(pkts.len(), 100);
        assert_eq!(p.in_use(), 100);
        let mut slots: [Option<Packet>; 4] = Default::default();
        assert_eq!(c.alloc_bulk(&mut slots), Err(Exhausted));
        assert!(slots.iter().all(Option::is_none));
        assert!(p.alloc().is_none());
        drop(pkts.pop());
        assert_eq!(p.available(), 1);
        let mut slots2: [Option<Packet>; 2] = Default::default();
        assert_eq!(
            c.alloc_bulk(&mut slots2),
            Err(Exhausted),
            "bulk is all or nothing"
        );
        assert_eq!(p.available(), 1);
        drop(pkts);
        assert_eq!(p.available(), 100);
        assert!(c.alloc_bulk(&mut slots).is_ok());
        assert_eq!(c.free_bulk(&mut slots), 4);
        assert_eq!(p.available(), 100);
    }

    #[test]
    fn packet_operations_never_panic_and_keep_bounds() {
        let p = pool("ops", 8, 0);
        let mut pkt = p.alloc().unwrap();
        assert_eq!((pkt.len(), pkt.headroom(), pkt.tailroom()), (0, 128, 2048));
        assert!(pkt.append(2049).is_none());
        pkt.append(60).unwrap().fill(0xaa);
        assert!(pkt.prepend(129).is_none());
        let h = pkt.prepend(14).unwrap();
        h[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        h[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(pkt.len(), 74);
        let eth = pkt.eth().unwrap();
        assert_eq!(eth.dst, [2, 0, 0, 0, 0, 1]);
        assert_eq!(eth.ethertype.get(), 0x0800);
        pkt.eth_mut().unwrap().src = [2, 0, 0, 0, 0, 9];
        assert_eq!(&pkt.data()[6..12], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(pkt.data_iova(), pkt.buf_iova() + 114);
        assert!(pkt.adjust(75).is_none());
        pkt.adjust(14).unwrap();
        assert!(pkt.trim(61).is_none());
        pkt.trim(10).unwrap();
        assert_eq!(pkt.len(), 50);
        assert!(pkt.eth().is_some());
        pkt.trim(40).unwrap();
        assert!(pkt.eth().is_none(), "10 bytes is shorter than an Ethernet header");
        assert_eq!(
            pkt.set_len(2048 + 128 - 128 + 1),
            Err(crate::PacketError::TooLong {
                len: 2049,
                room: 2048
            })
        );
        pkt.set_len(2048).unwrap();
        assert_eq!(pkt.tailroom(), 0);
        assert!(pkt.extend_from_slice(&[1]).is_err());
        pkt.set_rss_hash(7);
        pkt.set_flags(OffloadFlags::RX_RSS_HASH | OffloadFlags::RX_IP_CKSUM_GOOD);
        assert!(pkt.flags().contains(OffloadFlags::RX_RSS_HASH));
        assert_eq!(pkt.pool_id(), p.id());
        drop(pkt);
        let pkt = p.alloc().unwrap();
        assert_eq!(
            (pkt.len(), pkt.headroom(), pkt.rss_hash(), pkt.flags()),
            (0, 128, 0, OffloadFlags::EMPTY)
        );
    }

    #[test]
    fn iova_follows_the_mapping() {
        struct Offset;
        impl DmaMap for Offset {
            fn name(&self) -> String {
                "offset map".into()
            }
            unsafe fn map(&self, _v: *mut u8, _l: usize, _a: usize) -> Result<u64, DmaMapError> {
                Ok(0x1_0000_0000)
            }
            unsafe fn unmap(&self, _i: u64, _v: *mut u8, _l: usize) -> Result<(), DmaMapError> {
                Ok(())
            }
        }
        let p = Mempool::new(&small("iova", 4, 0), Arc::new(Offset)).unwrap();
        assert_eq!(p.region().iova(), Some(0x1_0000_0000));
        let mut seen = Vec::new();
        let mut c = p.cache();
        let mut raws = [RawBuffer::NULL; 4];
        c.get_bulk(&mut raws).unwrap();
        for r in raws {
            // SAFETY: taken from the live pool above.
            let (iova, rx) = unsafe { (r.buf_iova(), r.rx_data_iova()) };
            assert_eq!((iova - 0x1_0000_0000 - 64) % p.element_size() as u64, 0);
            assert_eq!(rx, iova + 128);
            seen.push(iova);
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 4);
        // SAFETY: taken from this pool, given back once.
        unsafe { c.put_bulk(&raws) }.unwrap();
    }

    #[test]
    fn cross_pool_return_is_refused() {
        let a = pool("a", 16, 4);
        let b = pool("b", 16, 4);
        let mut ca = a.cache();
        let mut cb = b.cache();
        let pa = ca.alloc().unwrap();
        let pa = cb.free(pa).expect_err("a's packet refused by b");
        let mut slots = [Some(pa), cb.alloc(), None];
        assert_eq!(cb.free_bulk(&mut slots), 1, "only b's packet taken");
        assert!(slots[0].is_some() && slots[1].is_none());
        let raw = slots[0].take().unwrap().into_raw();
        let mut braw = [RawBuffer::NULL];
        cb.get_bulk(&mut braw).unwrap();
        // SAFETY: the put is refused before any buffer is taken.
        let refused = unsafe { cb.put_bulk(&[braw[0], raw]) };
        assert_eq!(refused, Err(ForeignBuffer { index: 1 }));
        assert_eq!(b.in_use(), 1);
        // SAFETY: each given back to its own pool, once.
        unsafe {
            cb.put_bulk_unchecked(&braw);
            ca.put_bulk(&[raw]).unwrap();
        }
        assert_eq!((a.in_use(), b.in_use()), (0, 0));
    }

    #[test]
    fn multithreaded_churn_returns_every_buffer() {
        const CAP: usize = 2048;
        let p = pool("churn", CAP, 64);
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Packet>>(64);
        let rx = Arc::new(Mutex::new(rx));
        let mut hs = Vec::new();
        for t in 0..4 {
            let p = p.clone();
            let tx = tx.clone();
            let rx = rx.clone();
            hs.push(std::thread::spawn(move || {
                let mut c = p.cache();
                let mut slots: [Option<Packet>; 8] = Default::default();
                for i in 0..3000 {
                    if t % 2 == 0 {
                        // Producers: explicit cache, send packets to other threads.
                        if c.alloc_bulk(&mut slots).is_ok() {
                            let v: Vec<Packet> = slots.iter_mut().filter_map(Option::take).collect();
                            // Never block: consumers may have finished.
                            drop(tx.try_send(v));
                        }
                        if i % 3 == 0 {
                            if let Some(mut x) = p.alloc() {
                                x.append(10).unwrap();
                            }
                        }
                    } else {
                        // Consumers: drop what they get (per-thread cache), or return in bulk.
                        let got = rx.lock().unwrap().try_recv();
                        if let Ok(v) = got {
                            if i % 2 == 0 {
                                drop(v);
                            } else {
                                let mut s: Vec<Option<Packet>> = v.into_iter().map(Some).collect();
                                let n = s.len();
                                assert_eq!(c.free_bulk(&mut s), n);
                            }
                        }
                        let _ = p.alloc_bulk(&mut slots);
                    }
                }
            }));
        }
        drop(tx);
        for h in hs {
            h.join().unwrap();
        }
        // Leftovers in the channel.
        while let Ok(v) = rx.lock().unwrap().try_recv() {
            drop(v);
        }
        assert_eq!(p.available(), CAP);
        assert_eq!(p.in_use(), 0);
        // The main thread's cache is counted too; after a flush the ring holds all.
        flush_thread_caches();
        assert_eq!(p.shared().ring.len(), CAP);
    }

    #[test]
    fn pool_on_hugepages_or_clear_error() {
        use crate::region::tests::{HUGEPAGE_LOCK, Reservation};
        let _g = HUGEPAGE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let _r = Reservation::try_add(1);
        // 900 buffers of 2240 bytes: 2016000 bytes, one 2 MiB page.
        let config = MempoolConfig::new("huge", 900);
        match Mempool::new(&config, Arc::new(IdentityMap)) {
            Ok(p) => {
                assert_eq!(p.region().page_size(), PageSize::Huge2M);
                assert_eq!(p.region().len(), 2 << 20);
                let mut c = p.cache();
                let mut v = Vec::new();
                while let Some(pkt) = c.alloc() {
                    v.push(pkt);
                }
                assert_eq!(v.len(), 900);
                drop(v);
                drop(c);
                assert_eq!(p.available(), 900);
            }
            Err(MempoolError::Region { source, .. }) => {
                assert!(
                    matches!(
                        source,
                        RegionError::NoHugepagesReserved { .. } | RegionError::TooFewFree { .. }
                    ),
                    "{source:?}"
                );
                oxpmd_test_skip::skip(format_args!(
                    "hugepage mempool: no 2 MiB page could be had: {source}"
                ));
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    #[test]
    fn racing_last_handle_and_last_packets_free_exactly_once() {
        struct Count(Arc<AtomicUsize>);
        impl DmaMap for Count {
            fn name(&self) -> String {
                "count".into()
            }
            unsafe fn map(&self, v: *mut u8, _l: usize, _a: usize) -> Result<u64, DmaMapError> {
                Ok(v as u64)
            }
            unsafe fn unmap(&self, _i: u64, _v: *mut u8, _l: usize) -> Result<(), DmaMapError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
        for round in 0..20 {
            let unmaps = Arc::new(AtomicUsize::new(0));
            let p = Mempool::new(&small("race", 256, 16), Arc::new(Count(unmaps.clone()))).unwrap();
            let barrier = Arc::new(std::sync::Barrier::new(4));
            let hs: Vec<_> = (0..3)
                .map(|t| {
                    let mut c = p.cache();
                    let mut slots: Vec<Option<Packet>> = (0..40).map(|_| None).collect();
                    c.alloc_bulk(&mut slots).unwrap();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        // Mix the three ways back: explicit cache, Drop, and a dropped cache.
                        if (t + round) % 3 == 0 {
                            assert_eq!(c.free_bulk(&mut slots), 40);
                        }
                        drop(slots);
                        drop(c);
                    })
                })
                .collect();
            barrier.wait();
            drop(p);
            for h in hs {
                h.join().unwrap();
            }
            assert_eq!(
                unmaps.load(Ordering::SeqCst),
                1,
                "round {round}: freed exactly once, after the last"
            );
        }
    }

    struct Watch(Arc<AtomicBool>);
    impl DmaMap for Watch {
        fn name(&self) -> String {
            "watch".into()
        }
        unsafe fn map(&self, v: *mut u8, _l: usize, _a: usize) -> Result<u64, DmaMapError> {
            Ok(v as u64)
        }
        unsafe fn unmap(&self, _i: u64, _v: *mut u8, _l: usize) -> Result<(), DmaMapError> {
            self.0.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn dropping_the_pool_with_packets_out_is_sound() {
        let unmapped = Arc::new(AtomicBool::new(false));
        let p = Mempool::new(&small("late", 64, 8), Arc::new(Watch(unmapped.clone()))).unwrap();
        let mut c = p.cache();
        let mut slots: [Option<Packet>; 16] = Default::default();
        c.alloc_bulk(&mut slots).unwrap();
        let mut one = p.alloc().unwrap();
        drop(c);
        drop(p);
        assert!(
            !unmapped.load(Ordering::SeqCst),
            "packets are out: region still mapped"
        );
        one.extend_from_slice(b"still usable").unwrap();
        let h = std::thread::spawn(move || drop(slots));
        h.join().unwrap();
        assert!(!unmapped.load(Ordering::SeqCst), "one packet still out");
        assert_eq!(one.data(), b"still usable");
        drop(one);
        assert!(
            unmapped.load(Ordering::SeqCst),
            "last packet back: pool freed and unmapped"
        );
    }

    struct CountUnmaps(Arc<AtomicUsize>);
    impl DmaMap for CountUnmaps {
        fn name(&self) -> String {
            "count unmaps".into()
        }
        unsafe fn map(&self, v: *mut u8, _l: usize, _a: usize) -> Result<u64, DmaMapError> {
            Ok(v as u64)
        }
        unsafe fn unmap(&self, _i: u64, _v: *mut u8, _l: usize) -> Result<(), DmaMapError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn a_running_thread_releases_its_cache_of_a_dropped_pool() {
        // Regression (review M2): a worker's per-thread cache used to keep a dropped pool (its
        // memory and device mapping) alive until the worker exited or made a new cache.
        use std::sync::mpsc::channel;
        let unmaps = Arc::new(AtomicUsize::new(0));
        let a = Mempool::new(&small("closed-a", 64, 8), Arc::new(CountUnmaps(unmaps.clone()))).unwrap();
        let c_unmaps = Arc::new(AtomicUsize::new(0));
        let c = Mempool::new(&small("closed-c", 64, 8), Arc::new(CountUnmaps(c_unmaps.clone()))).unwrap();
        let b = pool("live-b", 64, 8);
        let (to_worker, from_main) = channel::<u32>();
        let (to_main, from_worker) = channel::<()>();
        let (wa, wb, wc) = (a.clone(), b.clone(), c.clone());
        let worker = std::thread::spawn(move || {
            // Per-thread caches of A, B and C, each holding buffers.
            for p in [&wa, &wb, &wc] {
                let v: Vec<Packet> = (0..4).map(|_| p.alloc().unwrap()).collect();
                drop(v);
            }
            drop((wa, wc));
            let b_pkt = wb.alloc().unwrap();
            to_main.send(()).unwrap();
            // 1: one operation on pool B (its cache exists: the fast path).
            assert_eq!(from_main.recv().unwrap(), 1);
            drop(wb.alloc().unwrap());
            to_main.send(()).unwrap();
            // 2: the documented hook, no pool operation.
            assert_eq!(from_main.recv().unwrap(), 2);
            release_closed_pool_caches();
            to_main.send(()).unwrap();
            // Keep running (and holding B's cache and a packet) until told to end.
            assert_eq!(from_main.recv().unwrap(), 3);
            drop(b_pkt);
        });
        from_worker.recv().unwrap();
        drop(a);
        assert_eq!(
            unmaps.load(Ordering::SeqCst),
            0,
            "the worker's cache still holds A"
        );
        to_worker.send(1).unwrap();
        from_worker.recv().unwrap();
        assert_eq!(
            unmaps.load(Ordering::SeqCst),
            1,
            "A released after the worker's next operation on B"
        );
        drop(c);
        assert_eq!(
            c_unmaps.load(Ordering::SeqCst),
            0,
            "the worker's cache still holds C"
        );
        to_worker.send(2).unwrap();
        from_worker.recv().unwrap();
        assert_eq!(c_unmaps.load(Ordering::SeqCst), 1, "C released by the hook");
        assert_eq!(
            b.in_use(),
            1,
            "B untouched: its packet is out, its cache counted free"
        );
        to_worker.send(3).unwrap();
        worker.join().unwrap();
        assert_eq!(b.in_use(), 0);
        assert_eq!(
            (unmaps.load(Ordering::SeqCst), c_unmaps.load(Ordering::SeqCst)),
            (1, 1)
        );
    }

    #[test]
    fn raw_round_trip_through_a_driver_ring() {
        let p = pool("raw", 32, 8);
        let mut c = p.cache();
        let mut pkt = c.alloc().unwrap();
        pkt.extend_from_slice(&[1, 2, 3]).unwrap();
        let raw = pkt.into_raw();
        assert_eq!(p.in_use(), 1);
        // SAFETY: the buffer is ours and no device has it.
        let back = unsafe { Packet::from_raw(raw) };
        assert_eq!(back.data(), &[1, 2, 3]);
        drop(back);
        assert_eq!(p.in_use(), 0);
    }
}
