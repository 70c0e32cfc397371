//! The feature bits the driver requires and takes, and their negotiation with the device.

use super::VirtioError;
use super::regs::feature;

/// Features the driver requires.
pub const REQUIRED_FEATURES: u64 = feature::VERSION_1 | feature::ACCESS_PLATFORM;
/// Features the driver takes when the device offers them (CTRL_VLAN only when [`Wanted`]).
pub const OPTIONAL_FEATURES: u64 = feature::NET_MAC
    | feature::NET_STATUS
    | feature::NET_MRG_RXBUF
    | feature::NET_MTU
    | feature::NET_CSUM
    | feature::NET_HOST_TSO4
    | feature::NET_HOST_TSO6
    | feature::NET_CTRL_VQ
    | (CTRL_VQ_FEATURES & !feature::NET_CTRL_VLAN);
/// Features that need the control virtqueue (dropped when it is not offered).
pub const CTRL_VQ_FEATURES: u64 =
    feature::NET_CTRL_RX | feature::NET_CTRL_MAC_ADDR | feature::NET_MQ | feature::NET_CTRL_VLAN;
/// The fix printed with a refused device.
pub const MODERN_DEVICE_FIX: &str = "give the guest a modern virtio-net device behind the IOMMU: in QEMU \
     `-device virtio-net-pci,disable-legacy=on,iommu_platform=on`; in a cloud VM, a virtio 1.0 device \
     with ACCESS_PLATFORM (or use the kernel virtio-net driver)";

/// What the driver takes beyond the optional features, when the device offers it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Packed virtqueues (VIRTIO_F_RING_PACKED).
    pub packed: bool,
    /// The VLAN filter table (VIRTIO_NET_F_CTRL_VLAN). Taken only when the port is configured
    /// with a VLAN filter: once it is negotiated the device drops tagged frames of every VLAN id
    /// not added to the table (the driver programs every id at start), and without it the device lets
    /// every VLAN through.
    pub vlan_filter: bool,
}

/// Chooses the driver features from what the device offers: the required ones must all be there
/// (else [`VirtioError::MissingFeature`] naming each missing bit, the device and the fix), plus
/// the optional ones offered, plus RING_PACKED and CTRL_VLAN when offered and `wanted`; the
/// control-queue features only with the control queue.
pub fn negotiate(device: &str, offered: u64, wanted: Wanted) -> std::result::Result<u64, VirtioError> {
    let missing = REQUIRED_FEATURES & !offered;
    if missing != 0 {
        let names: Vec<&str> = [feature::VERSION_1, feature::ACCESS_PLATFORM]
            .into_iter()
            .filter(|b| missing & b != 0)
            .map(feature::name)
            .collect();
        let why = if missing & feature::VERSION_1 != 0 {
            " (a legacy device cannot be driven through VFIO)"
        } else {
            " (without it the device bypasses the IOMMU and cannot reach memory mapped through VFIO)"
        };
        return Err(VirtioError::MissingFeature {
            device: device.to_string(),
            missing: names.join(" and "),
            why,
        });
    }
    let mut f = REQUIRED_FEATURES | (offered & OPTIONAL_FEATURES);
    if wanted.packed {
        f |= offered & feature::RING_PACKED;
    }
    if wanted.vlan_filter {
        f |= offered & feature::NET_CTRL_VLAN;
    }
    if f & feature::NET_CTRL_VQ == 0 {
        f &= !CTRL_VQ_FEATURES;
    }
    // The device's segmentation needs its checksum offload (virtio 1.2, 5.1.3.1).
    if f & feature::NET_CSUM == 0 {
        f &= !(feature::NET_HOST_TSO4 | feature::NET_HOST_TSO6);
    }
    Ok(f)
}
