//! Names for the PCI ids users meet most, and the kernel driver of each known VF.

/// (vendor, device, name, kernel VF driver when the id is an SR-IOV VF).
const KNOWN: &[(u16, u16, &str, Option<&str>)] = &[
    (0x8086, 0x10c9, "Intel 82576 Gigabit (PF)", None),
    (0x8086, 0x10ca, "Intel 82576 Virtual Function", Some("igbvf")),
    (0x8086, 0x1521, "Intel I350 Gigabit", None),
    (0x8086, 0x1520, "Intel I350 Virtual Function", Some("igbvf")),
    (0x8086, 0x1533, "Intel I210 Gigabit", None),
    (0x8086, 0x10d3, "Intel 82574L Gigabit", None),
    (0x8086, 0x100e, "Intel 82540EM Gigabit (e1000)", None),
    (0x8086, 0x10fb, "Intel 82599ES 10-Gigabit SFP+", None),
    (0x8086, 0x10ed, "Intel 82599 Virtual Function", Some("ixgbevf")),
    (0x8086, 0x1572, "Intel X710 10GbE SFP+", None),
    (0x8086, 0x1583, "Intel XL710 40GbE QSFP+", None),
    (0x8086, 0x154c, "Intel X710/XL710 Virtual Function", Some("iavf")),
    (0x8086, 0x159b, "Intel E810-XXV 25GbE SFP", None),
    (0x8086, 0x1592, "Intel E810-C 100GbE QSFP", None),
    (0x8086, 0x1889, "Intel Adaptive Virtual Function", Some("iavf")),
    (0x1af4, 0x1041, "virtio-net (modern)", None),
    (0x1af4, 0x1000, "virtio-net (transitional)", None),
    (0x15b3, 0x1013, "Mellanox ConnectX-4", None),
    (0x15b3, 0x1015, "Mellanox ConnectX-4 Lx", None),
    (
        0x15b3,
        0x1016,
        "Mellanox ConnectX-4 Lx Virtual Function",
        Some("mlx5_core"),
    ),
    (0x15b3, 0x1017, "Mellanox ConnectX-5", None),
    (
        0x15b3,
        0x1018,
        "Mellanox ConnectX-5 Virtual Function",
        Some("mlx5_core"),
    ),
    (0x15b3, 0x1019, "Mellanox ConnectX-5 Ex", None),
    (0x15b3, 0x101b, "Mellanox ConnectX-6", None),
    (0x15b3, 0x101d, "Mellanox ConnectX-6 Dx", None),
    (
        0x15b3,
        0x101e,
        "Mellanox ConnectX Family Virtual Function",
        Some("mlx5_core"),
    ),
];

/// The name of a known PCI id.
pub fn device_name(vendor: u16, device: u16) -> Option<&'static str> {
    KNOWN.iter().find(|k| k.0 == vendor && k.1 == device).map(|k| k.2)
}

/// The kernel driver of a known VF id.
pub fn vf_kernel_driver(vendor: u16, device: u16) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|k| k.0 == vendor && k.1 == device)
        .and_then(|k| k.3)
}

/// A vendor's name.
pub fn vendor_name(vendor: u16) -> Option<&'static str> {
    match vendor {
        0x8086 => Some("Intel"),
        0x1af4 => Some("Red Hat (virtio)"),
        0x15b3 => Some("Mellanox"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ids() {
        assert_eq!(device_name(0x8086, 0x10c9), Some("Intel 82576 Gigabit (PF)"));
        assert_eq!(vf_kernel_driver(0x8086, 0x10ca), Some("igbvf"));
        assert_eq!(vf_kernel_driver(0x8086, 0x10c9), None);
        assert_eq!(device_name(0x1234, 0x5678), None);
        assert_eq!(vendor_name(0x15b3), Some("Mellanox"));
    }
}
