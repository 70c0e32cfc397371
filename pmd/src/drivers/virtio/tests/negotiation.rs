//! Feature negotiation: what is taken, what is refused.

use crate::drivers::virtio::regs::feature;
use crate::drivers::virtio::{REQUIRED_FEATURES, VirtioError, Wanted, negotiate};

const DEV: &str = "0000:00:08.0";
/// What a port configured without a VLAN filter, on split rings, asks for.
const PLAIN: Wanted = Wanted {
    packed: false,
    vlan_filter: false,
};
/// What QEMU's virtio-net-pci offers the test VM's driver (`disable-legacy=on,iommu_platform=on`,
/// hub backend: no offloads).
const QEMU: u64 = feature::VERSION_1
    | feature::ACCESS_PLATFORM
    | feature::NET_MAC
    | feature::NET_STATUS
    | feature::NET_MRG_RXBUF
    | feature::NET_CTRL_VQ
    | feature::NET_CTRL_RX
    | feature::NET_CTRL_VLAN
    | feature::NET_CTRL_MAC_ADDR
    | feature::NET_MQ
    | feature::RING_PACKED;

#[test]
fn negotiation_takes_required_and_offered_optional_features() {
    let offered = feature::VERSION_1
        | feature::ACCESS_PLATFORM
        | feature::NET_MAC
        | feature::NET_STATUS
        | feature::NET_MRG_RXBUF
        | feature::RING_PACKED
        | feature::RING_EVENT_IDX
        | feature::NET_CTRL_VQ;
    let f = negotiate(DEV, offered, PLAIN).unwrap();
    assert_eq!(f & REQUIRED_FEATURES, REQUIRED_FEATURES);
    assert_ne!(f & feature::NET_MAC, 0);
    assert_ne!(f & feature::NET_STATUS, 0);
    assert_ne!(f & feature::NET_MRG_RXBUF, 0);
    // Never more than offered, and nothing the driver does not implement.
    assert_eq!(f & !offered, 0);
    assert_eq!(f & (feature::RING_PACKED | feature::RING_EVENT_IDX), 0);
    assert_ne!(
        f & feature::NET_CTRL_VQ,
        0,
        "the control queue is used when offered"
    );
    assert_eq!(f & feature::NET_CSUM, 0, "CSUM not offered, not taken");
}

#[test]
fn control_queue_features_need_the_control_queue() {
    let base = feature::VERSION_1 | feature::ACCESS_PLATFORM;
    let extra = feature::NET_CTRL_RX | feature::NET_MQ | feature::NET_CTRL_MAC_ADDR;
    let vlan = Wanted {
        vlan_filter: true,
        ..PLAIN
    };
    assert_eq!(
        negotiate(DEV, base | extra | feature::NET_CTRL_VLAN, vlan).unwrap()
            & (extra | feature::NET_CTRL_VLAN),
        0,
        "no CTRL_VQ: none of them"
    );
    let f = negotiate(DEV, base | extra | feature::NET_CTRL_VQ, PLAIN).unwrap();
    assert_eq!(f & (extra | feature::NET_CTRL_VQ), extra | feature::NET_CTRL_VQ);
}

#[test]
fn device_without_version_1_is_refused_with_the_fix() {
    let e = negotiate(DEV, feature::ACCESS_PLATFORM | feature::NET_MAC, PLAIN).unwrap_err();
    assert!(matches!(e, VirtioError::MissingFeature { .. }));
    let msg = e.to_string();
    assert!(msg.contains(DEV), "{msg}");
    assert!(msg.contains("VIRTIO_F_VERSION_1"), "{msg}");
    assert!(
        !msg.contains("ACCESS_PLATFORM (bit"),
        "only the missing bit is named: {msg}"
    );
    assert!(
        msg.contains("-device virtio-net-pci,disable-legacy=on,iommu_platform=on"),
        "{msg}"
    );
    assert!(msg.contains("legacy"), "{msg}");
}

#[test]
fn device_without_access_platform_is_refused_with_the_fix() {
    let e = negotiate(
        DEV,
        feature::VERSION_1 | feature::NET_MAC | feature::NET_MRG_RXBUF,
        PLAIN,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(DEV), "{msg}");
    assert!(msg.contains("VIRTIO_F_ACCESS_PLATFORM (bit 33)"), "{msg}");
    assert!(msg.contains("IOMMU"), "{msg}");
    assert!(msg.contains("iommu_platform=on"), "{msg}");
    // Both missing: both named.
    let msg = negotiate(DEV, 0, PLAIN).unwrap_err().to_string();
    assert!(
        msg.contains("VIRTIO_F_VERSION_1") && msg.contains("VIRTIO_F_ACCESS_PLATFORM"),
        "{msg}"
    );
}

/// CTRL_VLAN only for a port that filters VLANs: once negotiated the device drops every tagged
/// frame of a VLAN id not added. So a port configured with `vlan_filter` wants other features
/// than the ones negotiated at open (configure then resets and negotiates again), and one without
/// wants the same (no reset).
#[test]
fn vlan_filter_table_is_negotiated_only_when_the_port_filters() {
    let at_open = negotiate(DEV, QEMU, PLAIN).unwrap();
    assert_eq!(at_open & feature::NET_CTRL_VLAN, 0, "not at open");
    assert_ne!(at_open & feature::NET_CTRL_RX, 0, "CTRL_RX whenever offered");
    let filtering = Wanted {
        vlan_filter: true,
        ..PLAIN
    };
    let f = negotiate(DEV, QEMU, filtering).unwrap();
    assert_eq!(
        f,
        at_open | feature::NET_CTRL_VLAN,
        "CTRL_VLAN and nothing else changes"
    );
    assert_ne!(f, at_open, "configure with vlan_filter renegotiates");
    assert_eq!(
        negotiate(DEV, QEMU, PLAIN).unwrap(),
        at_open,
        "without it, the same features"
    );
    // Packed rings and the filter together.
    let both = Wanted {
        packed: true,
        vlan_filter: true,
    };
    let f = negotiate(DEV, QEMU, both).unwrap();
    assert_eq!(
        f & (feature::RING_PACKED | feature::NET_CTRL_VLAN),
        feature::RING_PACKED | feature::NET_CTRL_VLAN
    );
    // Asked for but not offered: not taken (configure refuses the filter before, see filters).
    let f = negotiate(DEV, QEMU & !feature::NET_CTRL_VLAN, filtering).unwrap();
    assert_eq!(f & feature::NET_CTRL_VLAN, 0);
    assert_eq!(f, at_open);
}

#[test]
fn segmentation_is_taken_only_with_checksum_offload() {
    let tso = feature::NET_HOST_TSO4 | feature::NET_HOST_TSO6;
    let f = negotiate(DEV, QEMU | feature::NET_CSUM | tso, PLAIN).unwrap();
    assert_eq!(
        f & tso,
        tso,
        "a vnet-header backend's device: both families taken"
    );
    let f = negotiate(DEV, QEMU | tso, PLAIN).unwrap();
    assert_eq!(f & tso, 0, "HOST_TSO4/6 need NET_CSUM (virtio 1.2, 5.1.3.1)");
    assert_eq!(
        negotiate(DEV, QEMU, PLAIN).unwrap() & tso,
        0,
        "the test VM's devices offer none"
    );
}
