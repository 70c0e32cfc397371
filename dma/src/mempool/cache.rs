//! Caches of free buffers: [`LocalCache`] (the one implementation) and [`MempoolCache`] (the
//! explicit cache a queue or thread owns).

use core::marker::PhantomData;
use core::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

use super::shared::PoolShared;
use super::{Exhausted, ForeignBuffer, clear_slots, reset_packet, reset_slots};
use crate::packet::{BufMeta, Packet, RawBuffer};
use crate::ring::QueueBehavior;
use crate::sync::copy_elems;

/// A per-thread / per-queue cache of free buffers of one pool; holds one pool reference.
pub(crate) struct LocalCache {
    pub(super) shared: NonNull<PoolShared>,
    pub(super) base: usize,
    pub(super) shift: u32,
    pub(super) len: usize,
    size: usize,
    flush: usize,
    objs: Box<[RawBuffer]>,
    published: Arc<CachePadded<AtomicUsize>>,
}

impl LocalCache {
    /// # Safety
    /// `shared` is alive and the caller holds a reference or an outstanding buffer of it.
    pub(super) unsafe fn new(shared: NonNull<PoolShared>) -> LocalCache {
        // SAFETY: alive (caller contract).
        let s = unsafe { PoolShared::get(shared) };
        s.refs.fetch_add(1, Ordering::Relaxed);
        let published = Arc::new(CachePadded::new(AtomicUsize::new(0)));
        s.caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(published.clone());
        LocalCache {
            shared,
            base: s.meta_base,
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
    pub(super) fn owns(&self, meta: *const BufMeta) -> bool {
        PoolShared::owns(self.base, self.shift, meta)
    }

    /// Takes `n` buffers into `dst`, all or nothing.
    ///
    /// # Safety
    /// `dst` has room for `n` values.
    #[inline(always)]
    pub(super) unsafe fn get(&mut self, dst: *mut RawBuffer, n: usize) -> bool {
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
    pub(super) unsafe fn put(&mut self, src: *const RawBuffer, n: usize) {
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
    pub(super) fn flush_all(&mut self) {
        let len = self.len;
        self.set_len(0);
        // SAFETY: the cached buffers are ours; we still hold the cache's own reference.
        unsafe { PoolShared::ring_put(self.shared, self.objs.as_ptr(), len) };
    }

    pub(super) fn pool(&self) -> &PoolShared {
        // SAFETY: the cache holds a reference.
        unsafe { PoolShared::get(self.shared) }
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

/// An explicit cache of one pool, owned by one queue or thread (`Send`, `&mut self`); the
/// fastest way to take and give back buffers. Dropping it flushes it to the pool.
pub struct MempoolCache {
    pub(super) cache: LocalCache,
    pub(super) _not_sync: PhantomData<core::cell::Cell<()>>,
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
        if !self.cache.owns(pkt.meta_ptr().as_ptr()) {
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
        let bits = |s: &Option<Packet>| s.as_ref().map_or(0, |p| p.meta_ptr().as_ptr() as usize);
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
            if s.as_ref().is_some_and(|p| self.cache.owns(p.meta_ptr().as_ptr())) {
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
    /// not owned by a [`Packet`]), is a single segment (it heads no chain, as every buffer a pool
    /// hands out and every segment [`Packet::split_first_segment`] returns) and no device
    /// accesses it any more.
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
