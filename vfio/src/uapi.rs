//! Our own bindings to the VFIO user API (`linux/vfio.h`, type1 IOMMU, group path).
//!
//! Every struct has the kernel's exact layout (checked by the tests below against the sizes and
//! offsets the uapi header yields on x86-64). Every ioctl is `_IO(';', 100 + n)`: no size is
//! encoded, each argument starts with `argsz`. Constants are named after the kernel's without the
//! `VFIO_` prefix; struct fields carry the kernel's field names and meanings.
#![forbid(unsafe_code)]

/// `_IO(type, nr)`: direction none, size zero.
const fn io(ty: u8, nr: u8) -> u64 {
    ((ty as u64) << 8) | nr as u64
}

const VFIO_TYPE: u8 = b';';
const VFIO_BASE: u8 = 100;

/// The API version `VFIO_GET_API_VERSION` returns.
pub const API_VERSION: i32 = 0;

// Container ioctls.
/// `VFIO_GET_API_VERSION`.
pub const GET_API_VERSION: u64 = io(VFIO_TYPE, VFIO_BASE);
/// `VFIO_CHECK_EXTENSION`.
pub const CHECK_EXTENSION: u64 = io(VFIO_TYPE, VFIO_BASE + 1);
/// `VFIO_SET_IOMMU`.
pub const SET_IOMMU: u64 = io(VFIO_TYPE, VFIO_BASE + 2);
// Group ioctls.
/// `VFIO_GROUP_GET_STATUS`.
pub const GROUP_GET_STATUS: u64 = io(VFIO_TYPE, VFIO_BASE + 3);
/// `VFIO_GROUP_SET_CONTAINER`.
pub const GROUP_SET_CONTAINER: u64 = io(VFIO_TYPE, VFIO_BASE + 4);
/// `VFIO_GROUP_GET_DEVICE_FD`.
pub const GROUP_GET_DEVICE_FD: u64 = io(VFIO_TYPE, VFIO_BASE + 6);
// Device ioctls.
/// `VFIO_DEVICE_GET_INFO`.
pub const DEVICE_GET_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 7);
/// `VFIO_DEVICE_GET_REGION_INFO`.
pub const DEVICE_GET_REGION_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 8);
/// `VFIO_DEVICE_GET_IRQ_INFO`.
pub const DEVICE_GET_IRQ_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 9);
/// `VFIO_DEVICE_SET_IRQS`.
pub const DEVICE_SET_IRQS: u64 = io(VFIO_TYPE, VFIO_BASE + 10);
/// `VFIO_DEVICE_RESET`.
pub const DEVICE_RESET: u64 = io(VFIO_TYPE, VFIO_BASE + 11);
/// `VFIO_DEVICE_FEATURE`.
pub const DEVICE_FEATURE: u64 = io(VFIO_TYPE, VFIO_BASE + 17);
// Type1 IOMMU ioctls (on the container).
/// `VFIO_IOMMU_GET_INFO`.
pub const IOMMU_GET_INFO: u64 = io(VFIO_TYPE, VFIO_BASE + 12);
/// `VFIO_IOMMU_MAP_DMA`.
pub const IOMMU_MAP_DMA: u64 = io(VFIO_TYPE, VFIO_BASE + 13);
/// `VFIO_IOMMU_UNMAP_DMA`.
pub const IOMMU_UNMAP_DMA: u64 = io(VFIO_TYPE, VFIO_BASE + 14);

/// IOMMU types / extensions for `CHECK_EXTENSION` and `SET_IOMMU`.
pub const TYPE1V2_IOMMU: u32 = 3;
/// `VFIO_NOIOMMU_IOMMU`.
pub const NOIOMMU_IOMMU: u32 = 8;
/// `VFIO_UNMAP_ALL`.
pub const UNMAP_ALL: u32 = 9;

/// `VFIO_GROUP_FLAGS_VIABLE`.
pub const GROUP_FLAGS_VIABLE: u32 = 1;
/// `VFIO_GROUP_FLAGS_CONTAINER_SET`.
pub const GROUP_FLAGS_CONTAINER_SET: u32 = 2;

/// `VFIO_DEVICE_FLAGS_RESET`.
pub const DEVICE_FLAGS_RESET: u32 = 1 << 0;
/// `VFIO_DEVICE_FLAGS_PCI`.
pub const DEVICE_FLAGS_PCI: u32 = 1 << 1;

/// `VFIO_REGION_INFO_FLAG_READ`.
pub const REGION_INFO_FLAG_READ: u32 = 1 << 0;
/// `VFIO_REGION_INFO_FLAG_WRITE`.
pub const REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
/// `VFIO_REGION_INFO_FLAG_MMAP`.
pub const REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
/// `VFIO_REGION_INFO_FLAG_CAPS`.
pub const REGION_INFO_FLAG_CAPS: u32 = 1 << 3;
/// `VFIO_REGION_INFO_CAP_SPARSE_MMAP`.
pub const REGION_INFO_CAP_SPARSE_MMAP: u16 = 1;
/// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`.
pub const REGION_INFO_CAP_MSIX_MAPPABLE: u16 = 3;

/// PCI region indices.
pub const PCI_BAR0_REGION_INDEX: u32 = 0;
/// `VFIO_PCI_ROM_REGION_INDEX`.
pub const PCI_ROM_REGION_INDEX: u32 = 6;
/// `VFIO_PCI_CONFIG_REGION_INDEX`.
pub const PCI_CONFIG_REGION_INDEX: u32 = 7;

/// PCI IRQ indices.
pub const PCI_INTX_IRQ_INDEX: u32 = 0;
/// `VFIO_PCI_MSI_IRQ_INDEX`.
pub const PCI_MSI_IRQ_INDEX: u32 = 1;
/// `VFIO_PCI_MSIX_IRQ_INDEX`.
pub const PCI_MSIX_IRQ_INDEX: u32 = 2;

/// `VFIO_IRQ_INFO_EVENTFD`.
pub const IRQ_INFO_EVENTFD: u32 = 1 << 0;
/// `VFIO_IRQ_INFO_MASKABLE`.
pub const IRQ_INFO_MASKABLE: u32 = 1 << 1;
/// `VFIO_IRQ_INFO_AUTOMASKED`.
pub const IRQ_INFO_AUTOMASKED: u32 = 1 << 2;
/// `VFIO_IRQ_INFO_NORESIZE`.
pub const IRQ_INFO_NORESIZE: u32 = 1 << 3;

/// `VFIO_IRQ_SET_DATA_NONE`.
pub const IRQ_SET_DATA_NONE: u32 = 1 << 0;
/// `VFIO_IRQ_SET_DATA_EVENTFD`.
pub const IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
/// `VFIO_IRQ_SET_ACTION_TRIGGER`.
pub const IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;

/// `VFIO_DEVICE_FEATURE_SET`.
pub const DEVICE_FEATURE_SET: u32 = 1 << 17;
/// `VFIO_DEVICE_FEATURE_PROBE`.
pub const DEVICE_FEATURE_PROBE: u32 = 1 << 18;
/// `VFIO_DEVICE_FEATURE_PCI_VF_TOKEN`.
pub const DEVICE_FEATURE_PCI_VF_TOKEN: u32 = 0;

/// `VFIO_IOMMU_INFO_CAPS`.
pub const IOMMU_INFO_CAPS: u32 = 1 << 1;
/// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`.
pub const IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = 1;
/// `VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL`.
pub const IOMMU_TYPE1_INFO_DMA_AVAIL: u16 = 3;

/// `VFIO_DMA_MAP_FLAG_READ`.
pub const DMA_MAP_FLAG_READ: u32 = 1 << 0;
/// `VFIO_DMA_MAP_FLAG_WRITE`.
pub const DMA_MAP_FLAG_WRITE: u32 = 1 << 1;

/// `struct vfio_group_status`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct GroupStatus {
    pub argsz: u32,
    pub flags: u32,
}

/// `struct vfio_device_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceInfo {
    pub argsz: u32,
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
    pub cap_offset: u32,
}

/// `struct vfio_region_info` (fixed part; capabilities follow within `argsz`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RegionInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    pub offset: u64,
}

/// `struct vfio_info_cap_header`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct InfoCapHeader {
    pub id: u16,
    pub version: u16,
    pub next: u32,
}

/// `struct vfio_region_sparse_mmap_area`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct SparseMmapArea {
    pub offset: u64,
    pub size: u64,
}

/// `struct vfio_region_info_cap_sparse_mmap` (fixed part; `nr_areas` areas follow).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct RegionInfoCapSparseMmap {
    pub header: InfoCapHeader,
    pub nr_areas: u32,
    pub reserved: u32,
    pub areas: [SparseMmapArea; 0],
}

/// `struct vfio_irq_info`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IrqInfo {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub count: u32,
}

/// `struct vfio_irq_set` (fixed part; `data` follows).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IrqSet {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
    pub data: [u8; 0],
}

/// `struct vfio_device_feature` (fixed part; `data` follows).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceFeature {
    pub argsz: u32,
    pub flags: u32,
    pub data: [u8; 0],
}

/// `struct vfio_device_feature` followed by a 16-byte UUID: the PCI_VF_TOKEN argument.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct DeviceFeatureVfToken {
    pub argsz: u32,
    pub flags: u32,
    pub uuid: [u8; 16],
}

/// `struct vfio_iommu_type1_info` (fixed part; capabilities follow within `argsz`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuType1Info {
    pub argsz: u32,
    pub flags: u32,
    pub iova_pgsizes: u64,
    pub cap_offset: u32,
    pub pad: u32,
}

/// `struct vfio_iova_range`: inclusive `end`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IovaRange {
    pub start: u64,
    pub end: u64,
}

/// `struct vfio_iommu_type1_info_cap_iova_range` (fixed part; `nr_iovas` ranges follow).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuType1InfoCapIovaRange {
    pub header: InfoCapHeader,
    pub nr_iovas: u32,
    pub reserved: u32,
    pub iova_ranges: [IovaRange; 0],
}

/// `struct vfio_iommu_type1_info_dma_avail`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuType1InfoDmaAvail {
    pub header: InfoCapHeader,
    pub avail: u32,
}

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuType1DmaMap {
    pub argsz: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub iova: u64,
    pub size: u64,
}

/// `struct vfio_iommu_type1_dma_unmap` (fixed part; no bitmap used).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuType1DmaUnmap {
    pub argsz: u32,
    pub flags: u32,
    pub iova: u64,
    pub size: u64,
    pub data: [u8; 0],
}

/// `size_of::<T>()` as the `argsz` the kernel expects.
pub const fn argsz<T>() -> u32 {
    size_of::<T>() as u32
}

/// One capability header found in an info buffer: its id, version and the offset of its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapAt {
    pub id: u16,
    pub version: u16,
    pub offset: usize,
}

/// Walks a capability chain in `buf` starting at `first` (0 = none). Every header must lie inside
/// the buffer and each `next` must move forward, so a malformed chain cannot loop or overrun.
pub fn cap_chain(buf: &[u8], first: u32) -> Result<Vec<CapAt>, &'static str> {
    let mut out = Vec::new();
    let mut off = first as usize;
    let hdr = size_of::<InfoCapHeader>();
    while off != 0 {
        let end = off.checked_add(hdr).ok_or("capability offset overflows")?;
        let h = buf.get(off..end).ok_or("capability header outside the buffer")?;
        let id = u16::from_ne_bytes([h[0], h[1]]);
        let version = u16::from_ne_bytes([h[2], h[3]]);
        let next = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]) as usize;
        out.push(CapAt {
            id,
            version,
            offset: off,
        });
        if next != 0 && next <= off {
            return Err("capability chain does not move forward");
        }
        off = next;
    }
    Ok(out)
}

/// Reads a native-endian u32 at `off` of `buf`.
pub fn read_u32(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off.checked_add(4)?)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Reads a native-endian u64 at `off` of `buf`.
pub fn read_u64(buf: &[u8], off: usize) -> Option<u64> {
    let b = buf.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Some(u64::from_ne_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn ioctl_numbers_match_the_uapi() {
        assert_eq!(GET_API_VERSION, 0x3B64);
        assert_eq!(CHECK_EXTENSION, 0x3B65);
        assert_eq!(SET_IOMMU, 0x3B66);
        assert_eq!(GROUP_GET_STATUS, 0x3B67);
        assert_eq!(GROUP_SET_CONTAINER, 0x3B68);
        assert_eq!(GROUP_GET_DEVICE_FD, 0x3B6A);
        assert_eq!(DEVICE_GET_INFO, 0x3B6B);
        assert_eq!(DEVICE_GET_REGION_INFO, 0x3B6C);
        assert_eq!(DEVICE_GET_IRQ_INFO, 0x3B6D);
        assert_eq!(DEVICE_SET_IRQS, 0x3B6E);
        assert_eq!(DEVICE_RESET, 0x3B6F);
        assert_eq!(IOMMU_GET_INFO, 0x3B70);
        assert_eq!(IOMMU_MAP_DMA, 0x3B71);
        assert_eq!(IOMMU_UNMAP_DMA, 0x3B72);
        assert_eq!(DEVICE_FEATURE, 0x3B75);
    }

    #[test]
    fn flag_values_match_the_uapi() {
        assert_eq!(DEVICE_FEATURE_SET, 0x20000);
        assert_eq!(DEVICE_FEATURE_PROBE, 0x40000);
        assert_eq!(IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER, 0x24);
        assert_eq!(IRQ_SET_DATA_NONE | IRQ_SET_ACTION_TRIGGER, 0x21);
        assert_eq!(REGION_INFO_FLAG_CAPS, 8);
        assert_eq!(IOMMU_INFO_CAPS, 2);
    }

    #[test]
    fn struct_layouts_match_the_uapi() {
        assert_eq!(size_of::<InfoCapHeader>(), 8);
        assert_eq!(offset_of!(InfoCapHeader, version), 2);
        assert_eq!(offset_of!(InfoCapHeader, next), 4);

        assert_eq!(size_of::<GroupStatus>(), 8);
        assert_eq!(offset_of!(GroupStatus, flags), 4);

        assert_eq!(size_of::<DeviceInfo>(), 20);
        assert_eq!(offset_of!(DeviceInfo, num_regions), 8);
        assert_eq!(offset_of!(DeviceInfo, num_irqs), 12);
        assert_eq!(offset_of!(DeviceInfo, cap_offset), 16);

        assert_eq!(size_of::<RegionInfo>(), 32);
        assert_eq!(offset_of!(RegionInfo, index), 8);
        assert_eq!(offset_of!(RegionInfo, cap_offset), 12);
        assert_eq!(offset_of!(RegionInfo, size), 16);
        assert_eq!(offset_of!(RegionInfo, offset), 24);

        assert_eq!(size_of::<SparseMmapArea>(), 16);
        assert_eq!(offset_of!(SparseMmapArea, size), 8);
        assert_eq!(size_of::<RegionInfoCapSparseMmap>(), 16);
        assert_eq!(offset_of!(RegionInfoCapSparseMmap, nr_areas), 8);
        assert_eq!(offset_of!(RegionInfoCapSparseMmap, reserved), 12);
        assert_eq!(offset_of!(RegionInfoCapSparseMmap, areas), 16);

        assert_eq!(size_of::<IrqInfo>(), 16);
        assert_eq!(offset_of!(IrqInfo, index), 8);
        assert_eq!(offset_of!(IrqInfo, count), 12);

        assert_eq!(size_of::<IrqSet>(), 20);
        assert_eq!(offset_of!(IrqSet, start), 12);
        assert_eq!(offset_of!(IrqSet, count), 16);
        assert_eq!(offset_of!(IrqSet, data), 20);

        assert_eq!(size_of::<DeviceFeature>(), 8);
        assert_eq!(offset_of!(DeviceFeature, data), 8);
        assert_eq!(size_of::<DeviceFeatureVfToken>(), 24);
        assert_eq!(offset_of!(DeviceFeatureVfToken, uuid), 8);

        assert_eq!(size_of::<IommuType1Info>(), 24);
        assert_eq!(offset_of!(IommuType1Info, iova_pgsizes), 8);
        assert_eq!(offset_of!(IommuType1Info, cap_offset), 16);

        assert_eq!(size_of::<IovaRange>(), 16);
        assert_eq!(offset_of!(IovaRange, end), 8);
        assert_eq!(size_of::<IommuType1InfoCapIovaRange>(), 16);
        assert_eq!(offset_of!(IommuType1InfoCapIovaRange, nr_iovas), 8);
        assert_eq!(offset_of!(IommuType1InfoCapIovaRange, iova_ranges), 16);
        assert_eq!(size_of::<IommuType1InfoDmaAvail>(), 12);
        assert_eq!(offset_of!(IommuType1InfoDmaAvail, avail), 8);

        assert_eq!(size_of::<IommuType1DmaMap>(), 32);
        assert_eq!(offset_of!(IommuType1DmaMap, vaddr), 8);
        assert_eq!(offset_of!(IommuType1DmaMap, iova), 16);
        assert_eq!(offset_of!(IommuType1DmaMap, size), 24);
        assert_eq!(size_of::<IommuType1DmaUnmap>(), 24);
        assert_eq!(offset_of!(IommuType1DmaUnmap, iova), 8);
        assert_eq!(offset_of!(IommuType1DmaUnmap, size), 16);
    }

    fn put_cap(buf: &mut [u8], at: usize, id: u16, next: u32) {
        buf[at..at + 2].copy_from_slice(&id.to_ne_bytes());
        buf[at + 2..at + 4].copy_from_slice(&1u16.to_ne_bytes());
        buf[at + 4..at + 8].copy_from_slice(&next.to_ne_bytes());
    }

    #[test]
    fn cap_chain_walks_and_rejects_bad_chains() {
        let mut buf = vec![0u8; 64];
        put_cap(&mut buf, 24, 1, 40);
        put_cap(&mut buf, 40, 3, 0);
        let caps = cap_chain(&buf, 24).unwrap();
        assert_eq!(caps.len(), 2);
        assert_eq!((caps[0].id, caps[0].offset), (1, 24));
        assert_eq!((caps[1].id, caps[1].offset), (3, 40));
        assert!(cap_chain(&buf, 0).unwrap().is_empty());
        // A loop is refused.
        put_cap(&mut buf, 40, 3, 24);
        assert!(cap_chain(&buf, 24).is_err());
        // A header past the end is refused.
        assert!(cap_chain(&buf, 60).is_err());
        assert!(cap_chain(&buf, u32::MAX).is_err());
    }
}
