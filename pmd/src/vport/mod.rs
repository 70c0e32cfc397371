//! Virtual ports: [`null`] (a source and a sink, for measuring the framework), [`ring`] (an
//! in-process pair, for tests) and [`fault`] (wraps any port and injects faults into its traffic).

pub mod fault;
pub mod null;
pub mod ring;

/// A mempool for virtual ports (and tests): IOVA = virtual address ([`oxpmd_dma::IdentityMap`]),
/// 2 MiB hugepages when they can be had, else 4 KiB pages with a logged warning (virtual ports
/// need no IOMMU mapping). Not for real devices (they need the IOMMU or physical addresses).
pub fn virtual_pool(
    name: &str,
    capacity: usize,
    cache_size: usize,
) -> Result<oxpmd_dma::Mempool, oxpmd_dma::MempoolError> {
    use oxpmd_dma::{IdentityMap, Mempool, MempoolConfig, PageSize, RegionOptions};
    let with = |page_size| MempoolConfig {
        cache_size,
        region: RegionOptions {
            page_size,
            allow_4k_fallback: false,
        },
        ..MempoolConfig::new(name, capacity)
    };
    Mempool::new(&with(PageSize::Huge2M), std::sync::Arc::new(IdentityMap)).or_else(|huge| {
        log::warn!("mempool `{name}` for virtual ports: {huge}; using 4 KiB pages instead");
        Mempool::new(&with(PageSize::Base4K), std::sync::Arc::new(IdentityMap))
    })
}
