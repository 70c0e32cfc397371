//! Virtual ports: [`null`] (a source and a sink, for measuring the framework), [`ring`] (an
//! in-process pair, for tests), [`fault`] (wraps any port and injects faults into its traffic)
//! and [`xdp`] (a kernel-driven NIC through AF_XDP).

pub mod fault;
pub mod null;
pub mod ring;
pub mod xdp;

/// A mempool whose region can be the UMEM of `xdp:` ports: chunk-aligned 2048-byte buffers
/// (128 bytes of headroom, 1920 of data room: an MTU-1500 frame after the kernel's 256-byte
/// RX headroom), 2 MiB hugepages, mapped through `dma` (the IOMMU mapper of a PCI port the same
/// packets go to, or [`oxpmd_dma::IdentityMap`] when only `xdp:` and virtual ports use it).
pub fn xdp_pool(
    name: &str,
    capacity: usize,
    cache_size: usize,
    dma: std::sync::Arc<dyn oxpmd_dma::DmaMap>,
) -> Result<oxpmd_dma::Mempool, oxpmd_dma::MempoolError> {
    let cfg = oxpmd_dma::MempoolConfig {
        cache_size,
        headroom: 128,
        data_room: 1920,
        chunk_aligned: true,
        ..oxpmd_dma::MempoolConfig::new(name, capacity)
    };
    oxpmd_dma::Mempool::new(&cfg, dma)
}

/// A mempool for virtual ports (and tests): IOVA = virtual address ([`oxpmd_dma::IdentityMap`]),
/// 2 MiB hugepages when they can be had, else 4 KiB pages with a logged warning (virtual ports
/// need no IOMMU mapping). Not for real devices (they need the IOMMU or physical addresses).
pub fn virtual_pool(
    name: &str,
    capacity: usize,
    cache_size: usize,
) -> Result<oxpmd_dma::Mempool, oxpmd_dma::MempoolError> {
    virtual_pool_with(&oxpmd_dma::MempoolConfig {
        cache_size,
        ..oxpmd_dma::MempoolConfig::new(name, capacity)
    })
}

/// [`virtual_pool`] for any pool configuration (a chunk-aligned pool, another data room): its
/// region options are replaced by 2 MiB hugepages, then 4 KiB pages with a logged warning.
pub fn virtual_pool_with(
    config: &oxpmd_dma::MempoolConfig,
) -> Result<oxpmd_dma::Mempool, oxpmd_dma::MempoolError> {
    use oxpmd_dma::{IdentityMap, Mempool, MempoolConfig, PageSize, RegionOptions};
    let with = |page_size| MempoolConfig {
        region: RegionOptions {
            page_size,
            allow_4k_fallback: false,
        },
        ..config.clone()
    };
    match Mempool::new(&with(PageSize::Huge2M), std::sync::Arc::new(IdentityMap)) {
        // Only the region can be had on 4 KiB pages instead; a bad configuration is said as it is.
        Err(huge @ oxpmd_dma::MempoolError::Region { .. }) => {
            log::warn!(
                "mempool `{}` for virtual ports: {huge}; using 4 KiB pages instead",
                config.name
            );
            Mempool::new(&with(PageSize::Base4K), std::sync::Arc::new(IdentityMap))
        }
        other => other,
    }
}
