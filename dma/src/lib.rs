//! oxpmd-dma: memory a device may touch — hugepage regions, IOVA allocation, the [`DmaMap`]
//! trait, packet buffers ([`Packet`]), mempools with per-thread caches ([`Mempool`]) and bulk
//! lock-free rings ([`Ring`]). It knows nothing of VFIO: `oxpmd-pmd` implements [`DmaMap`] over
//! a VFIO container; virtual ports use [`IdentityMap`].
//!
//! # Memory model and invariants
//! - **Device-shared memory is never Rust data while a device may write it** (design invariant
//!   1). [`DmaRegion`] hands out raw pointers only. Packet bytes become `&[u8]`/`&mut [u8]` only
//!   through a [`Packet`], and a `Packet` exists only while the CPU owns its buffer: a driver
//!   gives it up with [`Packet::into_raw`] before posting the buffer's IOVA to a device and
//!   takes it back with the `unsafe` [`Packet::from_raw`] only after it observed the device's
//!   completion for it (DD).
//! - **Nothing the CPU trusts lives where a device can write** (invariant 6). A pool's DMA
//!   region holds only the buffers' bytes; their metadata (pool, address, IOVA, lengths, offsets,
//!   flags) is in a CPU-only arena that no [`DmaMap`] ever maps, and a [`Packet`] points there.
//!   Whatever a device writes into a buffer, no slice leaves the buffer and no buffer returns to
//!   another pool. `docs/memory-model.md` lists what a device can write and why each `unsafe` here
//!   is sound.
//! - **Every address given to a device lies in a mapped region; nothing is unmapped or freed
//!   while a device could still use it** (invariant 3). A region is mapped through
//!   [`DmaRegion::map`], which keeps the [`DmaMap`] and unmaps before the memory is unmapped
//!   from the process (if the unmap fails the memory is leaked, not reused). A mempool's region
//!   is freed only when the pool's last handle is gone *and* every buffer is back in it; a
//!   buffer posted to a device is not back, so the pool outlives the device's use of it as
//!   long as drivers return buffers only after teardown (queues and bus mastering off).
//! - **No buffer leaks** (invariant 4). Dropping a `Packet` returns its buffer; pools count
//!   what is out ([`Mempool::in_use`], [`Mempool::available`], caches included) so tests can
//!   check that everything came back. A buffer can only return to its own pool: caches check
//!   the address range of every buffer given back and refuse others.
//!
//! # Speed
//! The datapath (ring bulk/burst, cache get/put, packet alloc/free) allocates nothing, takes no
//! lock and does no per-element reference counting; see [`ring`] and [`mempool`] for the
//! algorithms and their orderings.
mod arena;
pub mod map;
pub mod mempool;
pub mod packet;
pub mod region;
pub mod ring;
mod sync;

pub use map::{DmaMap, DmaMapError, IdentityMap, IovaAllocator, IovaError};
pub use mempool::{
    DEFAULT_CACHE_SIZE, DEFAULT_DATA_ROOM, DEFAULT_HEADROOM, Exhausted, FillError, FillTemplate,
    ForeignBuffer, MAX_CACHE_SIZE, MAX_POOL_CACHES, Mempool, MempoolCache, MempoolConfig, MempoolError,
    PoolCaches, flush_thread_caches, region_len, release_closed_pool_caches,
};
pub use packet::{
    ChainBuilder, DmaSegments, EthernetHeader, MAX_PKT_LEN, MAX_SEGS, META_SIZE, OffloadFlags, Packet,
    PacketError, RawBuffer, Segments, SegmentsMut, drop_packets,
};
pub use region::{DmaRegion, PageSize, RegionError, RegionOptions};
pub use ring::{Consumer, Producer, QueueBehavior, RING_MAX_SIZE, Ring, RingError, SyncMode};
