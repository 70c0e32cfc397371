//! oxpmd-dma: Memory a device may touch: hugepage regions, IOVA allocation, packets, mempools, rings.
