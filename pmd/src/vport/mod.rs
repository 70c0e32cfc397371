//! Virtual ports: [`null`] (a source and a sink, for measuring the framework) and [`ring`] (an
//! in-process pair, for tests).

pub mod null;
pub mod ring;

use oxpmd_dma::{MempoolCache, Packet, RawBuffer};

use crate::burst::{Burst, MAX_BURST};

/// Frees every packet of `pkts` in bulk into `cache` when they all belong to its pool; packets of
/// other pools go back through their own pool. Returns the bytes freed.
#[inline]
pub(crate) fn free_burst(
    cache: &mut MempoolCache,
    scratch: &mut [RawBuffer; MAX_BURST],
    pkts: &mut Burst,
) -> u64 {
    let mut bytes = 0u64;
    let mut n = 0usize;
    for p in pkts.drain() {
        bytes += p.len() as u64;
        scratch[n] = p.into_raw();
        n += 1;
    }
    // SAFETY: each buffer came from a Packet we owned and gave up (into_raw); no device has it.
    if let Err(e) = unsafe { cache.put_bulk(&scratch[..n]) } {
        log::trace!(
            "free_burst: buffer {} is from another pool; freeing one by one",
            e.index
        );
        for &b in &scratch[..n] {
            // SAFETY: put_bulk is all or nothing: nothing was taken, we still own every buffer.
            drop(unsafe { Packet::from_raw(b) });
        }
    }
    bytes
}

/// A mempool for virtual ports (and tests): IOVA = virtual address ([`oxpmd_dma::IdentityMap`]),
/// 2 MiB hugepages when reserved, else 4 KiB pages. Not for real devices (they need the IOMMU
/// or physical addresses).
pub fn virtual_pool(
    name: &str,
    capacity: usize,
    cache_size: usize,
) -> Result<oxpmd_dma::Mempool, oxpmd_dma::MempoolError> {
    let cfg = oxpmd_dma::MempoolConfig {
        cache_size,
        region: oxpmd_dma::RegionOptions {
            page_size: oxpmd_dma::PageSize::Huge2M,
            allow_4k_fallback: true,
        },
        ..oxpmd_dma::MempoolConfig::new(name, capacity)
    };
    oxpmd_dma::Mempool::new(&cfg, std::sync::Arc::new(oxpmd_dma::IdentityMap))
}
