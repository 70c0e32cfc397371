//! `DmaMap` over a VFIO container (the IOMMU path), so that vfio and dma stay independent.
