//! Fixed-size packet buffers of one DMA region: [`Mempool`], with a shared MP/MC [`Ring`] of free
//! buffers, per-thread caches, explicit per-queue caches ([`MempoolCache`], [`PoolCaches`]).
//!
//! # Memory
//! A pool owns two pieces of memory:
//! - its **DMA region** ([`Mempool::region`]), mapped for the device, holding only the buffers'
//!   bytes (headroom + data room), carved so that no buffer crosses a page of the region
//!   (`layout`);
//! - its **metadata arena**, CPU-only memory that no device mapping covers, holding one 64-byte
//!   [`BufMeta`](crate::packet) per buffer: where the buffer is (address, IOVA, length), which
//!   pool it returns to, and the per-use fields (data offset and length, flags, RSS hash, VLAN).
//!
//! A [`Packet`] and a [`RawBuffer`] point at the metadata. So a device, whatever it writes into
//! the region, never changes what the CPU trusts (design invariant 6; `docs/memory-model.md`).
//!
//! # Caches
//! Three kinds, one implementation (`LocalCache`):
//! - [`MempoolCache`]: an explicit cache owned by one queue or thread (DPDK's per-lcore cache):
//!   `&mut self` operations, no lookup. Drivers' RX rings own one and refill from it in bulk
//!   ([`MempoolCache::get_bulk`]).
//! - [`PoolCaches`]: the caches of the few pools whose buffers a TX queue sends; its completion
//!   frees in bulk into the cache of each buffer's own pool ([`PoolCaches::put_bulk`]).
//! - A per-thread cache in a `thread_local!` list keyed by pool, used by [`Mempool::alloc`],
//!   [`Mempool::alloc_bulk`] and by `Drop for Packet`. It is only reachable from its own thread,
//!   so it needs no lock (and no other thread can flush it).
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
//! - packets still out, explicit [`MempoolCache`]s and [`PoolCaches`] keep the pool alive until
//!   they are dropped ([`PoolCaches`] lets go of a closed pool at its next put); a packet of a
//!   closed pool goes straight back to the ring, not into a cache.
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
//! A pool's metadata arena starts at a multiple of `2^k` (the smallest power of two >= its size)
//! and the address space up to `2^k` is reserved for it (`PROT_NONE`), so a buffer belongs to the
//! pool iff `(meta ^ base) >> k == 0`: every cache checks each buffer given back this way (an
//! XOR and an OR, no memory access) and refuses foreign ones ([`MempoolCache::free`],
//! [`MempoolCache::free_bulk`], [`MempoolCache::put_bulk`], [`PoolCaches::put_bulk`]); only the
//! `unsafe` [`MempoolCache::put_bulk_unchecked`] skips it. A packet dropped normally goes to the
//! pool named in its metadata, which no device can write.

mod cache;
mod layout;
mod pool_caches;
mod shared;
mod thread_cache;

use core::marker::PhantomData;
use core::ptr::NonNull;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;

use cache::LocalCache;
pub use cache::MempoolCache;
use layout::{BufferLayout, LayoutError};
pub use pool_caches::{MAX_POOL_CACHES, PoolCaches};
pub(crate) use shared::PoolShared;
use thread_cache::{POOLS_CLOSED, remove_thread_cache, with_thread_cache};
pub use thread_cache::{flush_thread_caches, release_closed_pool_caches};
pub(crate) use thread_cache::{pool_of, return_one, return_run};

use crate::arena::MetaArena;
use crate::map::{DmaMap, DmaMapError};
use crate::packet::{BufMeta, META_SIZE, Packet, RawBuffer};
use crate::region::{DmaRegion, PageSize, RegionError, RegionOptions};
use crate::ring::{QueueBehavior, RING_MAX_SIZE, Ring};
use crate::sync::{AtomicUsize, Liveness, Ordering};

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
    /// Put buffer `i` at offset `i * stride` of the region with a power-of-two stride (headroom +
    /// data room rounded up to a power of two; the data room grows to fill it), as an AF_XDP
    /// UMEM in aligned-chunk mode needs. Off by default: buffers are packed at 64-byte steps.
    pub chunk_aligned: bool,
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
            chunk_aligned: false,
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
    /// One buffer does not fit in a page of the region (a buffer must not cross a page).
    #[error(
        "mempool {name}: a buffer of {buffer} bytes (headroom + data room, rounded up to 64) does not \
         fit in one {page}-byte page of its region, and a buffer must not cross a page (the device \
         may translate it in one piece): use 2 MiB hugepages or a smaller data room"
    )]
    BufferLargerThanPage {
        /// Pool name.
        name: String,
        /// Bytes per buffer.
        buffer: usize,
        /// Page size of the region.
        page: usize,
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

/// What [`Mempool::alloc_bulk_filled`] writes into each packet it hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillTemplate {
    /// Bytes of data (the packet's length), from the default data offset on.
    pub data_len: u16,
    /// Port the packet is marked as received on.
    pub port: u16,
    /// Queue the packet is marked as received on.
    pub queue: u16,
}

/// Why [`Mempool::alloc_bulk_filled`] took nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FillError {
    /// Not enough free buffers.
    #[error(transparent)]
    Exhausted(#[from] Exhausted),
    /// The vector has less spare capacity than the packets asked for (it is never grown).
    #[error(
        "mempool alloc_bulk_filled: {want} packets asked for, room for {spare} in the vector \
         (reserve capacity first: the datapath never allocates)"
    )]
    NoRoom {
        /// Packets asked for.
        want: usize,
        /// Spare capacity of the vector.
        spare: usize,
    },
    /// The template's data length does not fit a buffer's data room.
    #[error(
        "mempool alloc_bulk_filled: data length {len} exceeds the pool's data room of {room} \
         bytes (use a pool with a larger data room)"
    )]
    TooLong {
        /// The template's data length.
        len: usize,
        /// The pool's data room.
        room: usize,
    },
}

/// A buffer given back to a pool it does not belong to (nothing was taken).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mempool put: buffer at index {index} does not belong to this pool (refused)")]
pub struct ForeignBuffer {
    /// Position of the first foreign buffer in the slice given.
    pub index: usize,
}

/// Bytes of DMA region a pool of `capacity` buffers of `headroom + data_room` bytes takes on
/// `page` pages (the page-aware carving: no buffer crosses a page), or `None` if a buffer does
/// not fit in a page or the size overflows. The metadata (64 bytes a buffer) is extra and not in
/// the region.
pub fn region_len(capacity: usize, headroom: usize, data_room: usize, page: PageSize) -> Option<usize> {
    let buf_len = headroom.checked_add(data_room)?;
    BufferLayout::new(capacity.max(1), buf_len, page, false)
        .ok()
        .map(|l| l.region_len())
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

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
        let layout = |page: PageSize| {
            BufferLayout::new(config.capacity, buf_len, page, config.chunk_aligned).map_err(|e| match e {
                LayoutError::BufferLargerThanPage { stride, page } => MempoolError::BufferLargerThanPage {
                    name: name.clone(),
                    buffer: stride,
                    page,
                },
                LayoutError::TooLarge => MempoolError::CapacityTooLarge {
                    name: name.clone(),
                    capacity: config.capacity,
                    max: RING_MAX_SIZE,
                },
            })
        };
        // Sized for the page asked for; a 4 KiB fallback is carved again for its own pages.
        let wanted = layout(config.region.page_size)?;
        let mut region =
            DmaRegion::new(wanted.region_len(), &config.region).map_err(|source| MempoolError::Region {
                name: name.clone(),
                source,
            })?;
        let mut lay = layout(region.page_size())?;
        if lay.region_len() > region.len() {
            region =
                DmaRegion::new(lay.region_len(), &config.region).map_err(|source| MempoolError::Region {
                    name: name.clone(),
                    source,
                })?;
            lay = layout(region.page_size())?;
        }
        let meta_len =
            config
                .capacity
                .checked_mul(META_SIZE)
                .ok_or_else(|| MempoolError::CapacityTooLarge {
                    name: name.clone(),
                    capacity: config.capacity,
                    max: RING_MAX_SIZE,
                })?;
        let meta = MetaArena::new(meta_len).map_err(|source| MempoolError::Region {
            name: name.clone(),
            source,
        })?;
        let iova = region.map(dma).map_err(|source| MempoolError::Map {
            name: name.clone(),
            source,
        })?;
        let ring = Ring::new(config.capacity.next_power_of_two())
            .expect("capacity <= RING_MAX_SIZE was checked, so the ring size is valid");
        // A chunked pool's buffers fill their chunk: the data room is what the headroom leaves.
        let (buf_len, data_room) = if config.chunk_aligned {
            (lay.stride, lay.stride - config.headroom)
        } else {
            (buf_len, config.data_room)
        };
        if buf_len > MAX_BUFFER_LEN {
            return Err(MempoolError::BufferTooLarge {
                name,
                headroom: config.headroom,
                data_room,
                max: MAX_BUFFER_LEN,
            });
        }
        let base = region.as_ptr();
        let meta_base = meta.as_ptr();
        let shared = Box::new(PoolShared {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            handles: AtomicUsize::new(1),
            meta_base: meta_base as usize,
            shift: meta.shift(),
            capacity: config.capacity,
            cache_size: config.cache_size,
            headroom: config.headroom,
            data_room,
            stride: lay.stride,
            chunk_aligned: config.chunk_aligned,
            name,
            caches: Mutex::new(Vec::new()),
            region,
            meta,
            refs: CachePadded::new(AtomicUsize::new(1)),
            ring,
            live: Liveness::new(),
        });
        let shared = NonNull::from(Box::leak(shared));
        // SAFETY: just created; we hold its only reference.
        let s = unsafe { shared.as_ref() };
        let mut batch = [RawBuffer::NULL; 64];
        let mut i = 0;
        while i < config.capacity {
            let k = (config.capacity - i).min(batch.len());
            for (j, slot) in batch[..k].iter_mut().enumerate() {
                let off = lay.offset(i + j);
                // SAFETY: i + j < capacity: the entry lies in the arena (capacity * META_SIZE
                // bytes, 64-aligned); nothing else refers to it yet.
                let m = unsafe { meta_base.add((i + j) * META_SIZE) }.cast::<BufMeta>();
                let h = BufMeta::new(
                    shared.as_ptr(),
                    // SAFETY: off + buf_len <= region length (the layout's invariant).
                    unsafe { base.add(off) },
                    iova + off as u64,
                    buf_len as u16,
                    config.headroom as u16,
                );
                // SAFETY: inside the arena, aligned, CPU-only memory nobody else refers to.
                unsafe { m.write(h) };
                *slot = RawBuffer(m);
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
        unsafe { PoolShared::get(self.shared) }
    }

    /// Unique id of this pool (also in every buffer's metadata: [`Packet::pool_id`]).
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
    /// Bytes from one buffer to the next within a page of the region (headroom + data room,
    /// rounded up to 64; the metadata is elsewhere).
    pub fn element_size(&self) -> usize {
        self.shared().stride
    }
    /// Whether buffer `i` lies at `i * element_size()` of the region, a power of two
    /// ([`MempoolConfig::chunk_aligned`]).
    pub fn chunk_aligned(&self) -> bool {
        self.shared().chunk_aligned
    }
    /// The DMA region holding the buffers' bytes (address, length, page size, IOVA). It holds
    /// no metadata: everything in it may be written by a device.
    pub fn region(&self) -> &DmaRegion {
        &self.shared().region
    }

    /// Whether `pkt` is a buffer of this pool.
    #[inline]
    pub fn owns(&self, pkt: &Packet) -> bool {
        let s = self.shared();
        PoolShared::owns(s.meta_base, s.shift, pkt.meta_ptr().as_ptr())
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
        if !unsafe { self.take_raw(dst, n) } {
            return Err(Exhausted);
        }
        reset_slots(out);
        Ok(())
    }
}

impl Mempool {
    /// Takes `n` buffers into `dst` through this thread's cache (the ring when the thread has
    /// none), or none; false when the pool has fewer than `n` free.
    ///
    /// # Safety
    /// `dst` is room for `n` RawBuffers; the buffers written there are the caller's.
    #[inline(always)]
    unsafe fn take_raw(&self, dst: *mut RawBuffer, n: usize) -> bool {
        // SAFETY: forwarded.
        unsafe { with_thread_cache(self.shared, |c| c.get(dst, n)) }.unwrap_or_else(|| {
            // SAFETY: forwarded.
            unsafe { PoolShared::ring_get(self.shared, dst, n, QueueBehavior::Fixed) == n }
        })
    }

    /// Appends `n` packets to `out`, each reset as [`alloc`](Self::alloc) does but holding
    /// `fill.data_len` bytes of data and marked with `fill`'s port and queue, or none: the
    /// receive burst of a port whose frames the CPU makes (a null port), written in one pass
    /// over the metadata, straight into the vector. `out` needs `n` of spare capacity: it is
    /// never grown. The data length is checked against the data room once for the whole bulk.
    #[inline]
    pub fn alloc_bulk_filled(
        &self,
        out: &mut Vec<Packet>,
        n: usize,
        fill: FillTemplate,
    ) -> Result<(), FillError> {
        let room = self.data_room();
        if usize::from(fill.data_len) > room {
            return Err(FillError::TooLong {
                len: usize::from(fill.data_len),
                room,
            });
        }
        let (len, spare) = (out.len(), out.capacity() - out.len());
        if n > spare {
            return Err(FillError::NoRoom { want: n, spare });
        }
        // SAFETY: len + n <= capacity, so [len, len + n) is the vector's own spare room; a
        // Packet is a RawBuffer in layout (both a transparent pointer to the metadata).
        let dst = unsafe { out.as_mut_ptr().add(len) }.cast::<RawBuffer>();
        // SAFETY: `dst` is room for n RawBuffers (above).
        if !unsafe { self.take_raw(dst, n) } {
            return Err(Exhausted.into());
        }
        for i in 0..n {
            // SAFETY: slot i now holds a buffer just taken from this pool: its metadata is live
            // and ours alone; every buffer of a pool has headroom + data room = buf_len, and the
            // data length fits the data room (checked above).
            unsafe { (*(*dst.add(i)).0).reset_filled(&fill) };
        }
        // SAFETY: the n slots after the old length are initialised packets (taken and filled).
        unsafe { out.set_len(len + n) };
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
pub(super) fn clear_slots(out: &mut [Option<Packet>]) {
    for s in out.iter_mut() {
        if s.is_some() {
            *s = None;
        }
    }
}

/// Resets the metadata of freshly taken packets.
#[inline(always)]
pub(super) fn reset_slots(out: &mut [Option<Packet>]) {
    for p in out.iter_mut().flatten() {
        p.reset();
    }
}

/// # Safety
/// `raw` is a buffer just taken from a pool.
#[inline(always)]
pub(super) unsafe fn reset_packet(raw: RawBuffer) -> Packet {
    // SAFETY: non-null buffer we own; no device owns it.
    let mut p = unsafe { Packet::from_meta(NonNull::new_unchecked(raw.0)) };
    p.reset();
    p
}

#[cfg(test)]
mod tests;
