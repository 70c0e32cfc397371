//! oxpmd-pmd: ports, queues and poll-mode drivers.

pub mod iommu;
