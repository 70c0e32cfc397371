//! Feature negotiation: what is taken, what is refused.

use crate::drivers::virtio::regs::feature;
use crate::drivers::virtio::{REQUIRED_FEATURES, VirtioError, negotiate};

const DEV: &str = "0000:00:08.0";

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
    let f = negotiate(DEV, offered, false).unwrap();
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
    assert_eq!(
        negotiate(DEV, base | extra, false).unwrap() & extra,
        0,
        "no CTRL_VQ: none of them"
    );
    let f = negotiate(DEV, base | extra | feature::NET_CTRL_VQ, false).unwrap();
    assert_eq!(f & (extra | feature::NET_CTRL_VQ), extra | feature::NET_CTRL_VQ);
}

#[test]
fn device_without_version_1_is_refused_with_the_fix() {
    let e = negotiate(DEV, feature::ACCESS_PLATFORM | feature::NET_MAC, false).unwrap_err();
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
        false,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(DEV), "{msg}");
    assert!(msg.contains("VIRTIO_F_ACCESS_PLATFORM (bit 33)"), "{msg}");
    assert!(msg.contains("IOMMU"), "{msg}");
    assert!(msg.contains("iommu_platform=on"), "{msg}");
    // Both missing: both named.
    let msg = negotiate(DEV, 0, false).unwrap_err().to_string();
    assert!(
        msg.contains("VIRTIO_F_VERSION_1") && msg.contains("VIRTIO_F_ACCESS_PLATFORM"),
        "{msg}"
    );
}
