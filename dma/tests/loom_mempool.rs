//! Model check of the mempool's lifetime protocol with loom: the reference count (one reference
//! per buffer outside the ring, per cache and per handle) and the close generation that tells
//! per-thread caches and `PoolCaches` to let go of a pool whose handles are all dropped. In every
//! interleaving (up to the preemption bound) the pool's state must be freed exactly once, once
//! everything is gone, and never used afterwards.
//!
//! How it is seen: the pool's region is mapped through `CountingMap`, whose `unmap` runs when the
//! state is freed (the region's `Drop`), so its count is "freed how many times". Under `cfg(loom)`
//! the state carries a loom-tracked liveness cell that every use reads and the free writes: a use
//! racing with the free is a loom causality violation, a use after it fails an assertion (see
//! `Liveness` in src/sync.rs), and a state never freed is reported by loom as a leaked allocation
//! when the execution ends. That end, not `join`, is where a thread's exit has run its
//! thread-local destructors (and so released its per-thread caches): loom's `join` returns before
//! them, so after `join` the tests check `freed() <= 1`, and `freed() == 1` only where no
//! per-thread cache is involved. The protocol's atomics (`refs`, `handles`, the close generation)
//! and the per-thread caches' thread-locals are loom's under `cfg(loom)`, as are the ring's.
//!
//! Run with:
//!     RUSTFLAGS="--cfg loom" cargo test -p oxpmd-dma --release --test loom_mempool
//! No preemption bound: the models are small enough to explore every interleaving (well under a
//! second for the four in a release build); LOOM_MAX_PREEMPTIONS sets one if they grow.
#![cfg(loom)]

use loom::thread;
use oxpmd_dma::{
    DmaMap, DmaMapError, Mempool, MempoolConfig, PageSize, PoolCaches, RawBuffer, RegionOptions,
    release_closed_pool_caches,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// IOVA = address; counts the unmaps, i.e. how many times a pool's state was freed.
#[derive(Default)]
struct CountingMap {
    unmaps: AtomicUsize,
}

// SAFETY: no device ever uses these IOVAs (nothing is programmed with them in this test).
unsafe impl DmaMap for CountingMap {
    fn name(&self) -> String {
        "counting map".into()
    }
    unsafe fn map(&self, vaddr: *mut u8, _len: usize, _align: usize) -> Result<u64, DmaMapError> {
        Ok(vaddr as u64)
    }
    unsafe fn unmap(&self, _iova: u64, _vaddr: *mut u8, _len: usize) -> Result<(), DmaMapError> {
        self.unmaps.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl CountingMap {
    fn freed(&self) -> usize {
        self.unmaps.load(Ordering::Relaxed)
    }
}

/// A pool of 4 buffers with caches of 2 (the largest allowed for 4): small enough for the model,
/// large enough that a cache refills and flushes in bulk.
fn pool() -> (Mempool, Arc<CountingMap>) {
    let map = Arc::new(CountingMap::default());
    let config = MempoolConfig {
        cache_size: 2,
        region: RegionOptions {
            page_size: PageSize::Base4K,
            allow_4k_fallback: true,
        },
        ..MempoolConfig::new("loom", 4)
    };
    let pool = Mempool::new(&config, map.clone()).unwrap();
    (pool, map)
}

/// One buffer taken through an explicit cache that is gone again (so the main thread keeps no
/// per-thread cache, and the buffer is the only reference besides the handles).
fn take_raw(pool: &Mempool) -> RawBuffer {
    let mut raw = [RawBuffer::NULL];
    pool.cache().get_bulk(&mut raw).unwrap();
    raw[0]
}

/// Under loom, for every interleaving: a pool is made, `prepare` takes what the second thread
/// needs from it (packets, caches, handles) and returns that thread's work; then one thread drops
/// the pool's handle while the other does that work. After both, the state was freed at most once,
/// and exactly once if `freed_by_join` (no per-thread cache involved, see the module docs).
fn close_while<W: FnOnce() + Send + 'static>(
    freed_by_join: bool,
    prepare: impl Fn(&Mempool) -> W + Send + Sync + 'static,
) {
    loom::model::Builder::new().check(move || {
        let (pool, map) = pool();
        let work = thread::spawn(prepare(&pool));
        let close = thread::spawn(move || drop(pool));
        close.join().unwrap();
        work.join().unwrap();
        if freed_by_join {
            assert_eq!(map.freed(), 1);
        } else {
            assert!(map.freed() <= 1);
        }
    });
}

#[test]
fn last_handle_and_last_packet_dropped_concurrently() {
    close_while(false, |pool| {
        // SAFETY: a buffer just taken, owned by nobody else; the Packet now owns it.
        let pkt = unsafe { oxpmd_dma::Packet::from_raw(take_raw(pool)) };
        // The packet's drop sees the pool open (and goes through this thread's cache, released
        // at the next cache operation after the close or at thread exit) or closed (straight to
        // the ring): either way its reference goes exactly once.
        move || drop(pkt)
    });
}

#[test]
fn last_handle_dropped_while_a_cache_flushes() {
    close_while(true, |pool| {
        let mut cache = pool.cache();
        let pkt = cache.alloc().unwrap(); // refills the cache from the ring: it holds buffers
        move || {
            cache.free(pkt).unwrap();
            cache.flush();
            drop(cache);
        }
    });
}

#[test]
fn buffer_freed_into_pool_caches_while_the_pool_closes() {
    close_while(true, |pool| {
        let mut caches = PoolCaches::with_pool(pool);
        let raw = take_raw(pool);
        move || {
            // SAFETY: a live buffer of the pool, given up here; no device has it.
            unsafe { caches.put_bulk(&[raw]) };
            // NULL entries are skipped: this put only looks for a close (racing with it, or
            // after it: then it lets go of the cache, whose buffers go back to the ring).
            // SAFETY: no buffer is given.
            unsafe { caches.put_bulk(&[RawBuffer::NULL]) };
            drop(caches);
        }
    });
}

#[test]
fn handles_race_to_be_last_with_a_per_thread_cache() {
    close_while(false, |pool| {
        let other = pool.clone();
        move || {
            // A per-thread cache of the pool on this thread, then this handle goes too: whichever
            // handle is last, the cache is released (here, or at thread exit) and frees the pool.
            let pkt = other.alloc().unwrap();
            drop(other);
            drop(pkt);
            release_closed_pool_caches();
        }
    });
}
