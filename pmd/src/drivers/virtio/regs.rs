//! The virtio 1.x PCI register map used by the driver, from the virtio specification (sections
//! "Virtio Over PCI Bus", "Virtqueues" and "Network Device"). Only what the driver uses.
#![forbid(unsafe_code)]

/// PCI identity of a modern (non-transitional) virtio-net function.
pub mod pci {
    /// Red Hat / virtio vendor id.
    pub const VENDOR_VIRTIO: u16 = 0x1AF4;
    /// virtio-net, modern id (0x1040 + device type 1).
    pub const DEVICE_NET_MODERN: u16 = 0x1041;
    /// virtio-net, transitional (legacy-capable) id.
    pub const DEVICE_NET_TRANSITIONAL: u16 = 0x1000;
    /// PCI capability id of vendor-specific capabilities (virtio uses them).
    pub const CAP_ID_VENDOR: u8 = 0x09;
    /// Status register (16 bits) and its "capability list present" bit.
    pub const STATUS: usize = 0x06;
    /// STATUS: the capability list pointer is valid.
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
    /// Capability list pointer (8 bits).
    pub const CAP_PTR: usize = 0x34;
}

/// `struct virtio_pci_cap` (and `virtio_pci_notify_cap`) field offsets and `cfg_type` values.
pub mod cap {
    /// cfg_type (u8).
    pub const CFG_TYPE: usize = 3;
    /// bar (u8).
    pub const BAR: usize = 4;
    /// offset (le32).
    pub const OFFSET: usize = 8;
    /// length (le32).
    pub const LENGTH: usize = 12;
    /// notify_off_multiplier (le32, notify capability only).
    pub const NOTIFY_OFF_MULTIPLIER: usize = 16;
    /// Shortest valid capability (`virtio_pci_cap`).
    pub const MIN_LEN: usize = 16;
    /// Shortest valid notify capability.
    pub const NOTIFY_MIN_LEN: usize = 20;

    /// Common configuration.
    pub const TYPE_COMMON: u8 = 1;
    /// Notifications.
    pub const TYPE_NOTIFY: u8 = 2;
    /// ISR status.
    pub const TYPE_ISR: u8 = 3;
    /// Device-specific configuration.
    pub const TYPE_DEVICE: u8 = 4;
    /// PCI configuration access window (not used).
    pub const TYPE_PCI_CFG: u8 = 5;
}

/// `struct virtio_pci_common_cfg`: offsets and widths (every field must be accessed with its own
/// width).
pub mod common {
    /// le32.
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    /// le32.
    pub const DEVICE_FEATURE: usize = 0x04;
    /// le32.
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    /// le32.
    pub const DRIVER_FEATURE: usize = 0x0C;
    /// le16.
    pub const CONFIG_MSIX_VECTOR: usize = 0x10;
    /// le16.
    pub const NUM_QUEUES: usize = 0x12;
    /// u8.
    pub const DEVICE_STATUS: usize = 0x14;
    /// u8.
    pub const CONFIG_GENERATION: usize = 0x15;
    /// le16.
    pub const QUEUE_SELECT: usize = 0x16;
    /// le16.
    pub const QUEUE_SIZE: usize = 0x18;
    /// le16.
    pub const QUEUE_MSIX_VECTOR: usize = 0x1A;
    /// le16.
    pub const QUEUE_ENABLE: usize = 0x1C;
    /// le16.
    pub const QUEUE_NOTIFY_OFF: usize = 0x1E;
    /// le64 (written as two le32, low half first).
    pub const QUEUE_DESC: usize = 0x20;
    /// le64: the driver (available) area.
    pub const QUEUE_DRIVER: usize = 0x28;
    /// le64: the device (used) area.
    pub const QUEUE_DEVICE: usize = 0x30;
    /// Length of the fields above (what the capability must cover).
    pub const LEN: usize = 0x38;
    /// "No MSI-X vector": the driver polls.
    pub const NO_VECTOR: u16 = 0xFFFF;
}

/// `device_status` bits.
pub mod status {
    /// The guest found the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error and needs a reset.
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    /// The driver gave up.
    pub const FAILED: u8 = 128;
}

/// Feature bits (device-independent transport bits and virtio-net bits).
pub mod feature {
    /// Device handles packets with partial checksum (TX checksum offload).
    pub const NET_CSUM: u64 = 1 << 0;
    /// Driver handles packets with partial checksum (RX: DATA_VALID reported).
    pub const NET_GUEST_CSUM: u64 = 1 << 1;
    /// Device config has a MAC address.
    pub const NET_MAC: u64 = 1 << 5;
    /// VIRTIO_NET_F_HOST_TSO4: the device takes TCP over IPv4 packets to segment (GSO in the
    /// header); only with NET_CSUM.
    pub const NET_HOST_TSO4: u64 = 1 << 11;
    /// VIRTIO_NET_F_HOST_TSO6: the same for TCP over IPv6.
    pub const NET_HOST_TSO6: u64 = 1 << 12;
    /// VIRTIO_NET_F_MTU: the device advises its largest MTU (`mtu` in the config).
    pub const NET_MTU: u64 = 1 << 3;
    /// Driver can merge receive buffers (`num_buffers` in the header).
    pub const NET_MRG_RXBUF: u64 = 1 << 15;
    /// Device config has a link status.
    pub const NET_STATUS: u64 = 1 << 16;
    /// Control virtqueue.
    pub const NET_CTRL_VQ: u64 = 1 << 17;
    /// Control of RX mode (promiscuous, all-multicast) and of the MAC filter table through the
    /// control queue.
    pub const NET_CTRL_RX: u64 = 1 << 18;
    /// The VLAN filter table, through the control queue.
    pub const NET_CTRL_VLAN: u64 = 1 << 19;
    /// Multi-queue (needs the control queue to pick the number of pairs).
    pub const NET_MQ: u64 = 1 << 22;
    /// MAC address set through the control queue.
    pub const NET_CTRL_MAC_ADDR: u64 = 1 << 23;
    /// Descriptors may point to indirect tables (not used).
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// used_event / avail_event (not used: the driver polls and uses the flags).
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// virtio 1.0 or later (modern interface, little-endian rings).
    pub const VERSION_1: u64 = 1 << 32;
    /// The device's DMA goes through the platform's IOMMU (VIRTIO_F_ACCESS_PLATFORM, formerly
    /// IOMMU_PLATFORM).
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    /// Packed virtqueue layout (not used: split rings only).
    pub const RING_PACKED: u64 = 1 << 34;

    /// Names of the bits the driver reports in messages.
    pub fn name(bit: u64) -> &'static str {
        match bit {
            VERSION_1 => "VIRTIO_F_VERSION_1 (bit 32)",
            ACCESS_PLATFORM => "VIRTIO_F_ACCESS_PLATFORM (bit 33)",
            NET_CTRL_RX => "VIRTIO_NET_F_CTRL_RX (bit 18)",
            NET_CTRL_VLAN => "VIRTIO_NET_F_CTRL_VLAN (bit 19)",
            NET_HOST_TSO4 => "VIRTIO_NET_F_HOST_TSO4 (bit 11)",
            NET_HOST_TSO6 => "VIRTIO_NET_F_HOST_TSO6 (bit 12)",
            _ => "feature",
        }
    }
}

/// `struct virtio_net_config` (device-specific configuration).
pub mod netcfg {
    /// mac\[6\] (valid with VIRTIO_NET_F_MAC).
    pub const MAC: usize = 0;
    /// status le16 (valid with VIRTIO_NET_F_STATUS).
    pub const STATUS: usize = 6;
    /// max_virtqueue_pairs le16 (valid with VIRTIO_NET_F_MQ).
    pub const MAX_VIRTQUEUE_PAIRS: usize = 8;
    /// mtu le16 (valid with VIRTIO_NET_F_MTU).
    pub const MTU: usize = 10;
    /// status: link up.
    pub const STATUS_LINK_UP: u16 = 1;
}

/// `struct virtio_net_hdr` as used with VIRTIO_F_VERSION_1: 12 bytes, `num_buffers` included.
pub mod nethdr {
    /// Header length with VERSION_1 (always has num_buffers).
    pub const LEN: usize = 12;
    /// flags (u8).
    pub const FLAGS: usize = 0;
    /// gso_type (u8).
    pub const GSO_TYPE: usize = 1;
    /// hdr_len (le16): bytes of the headers of a GSO packet.
    pub const HDR_LEN: usize = 2;
    /// gso_size (le16): payload bytes of each segment (the MSS).
    pub const GSO_SIZE: usize = 4;
    /// csum_start (le16).
    pub const CSUM_START: usize = 6;
    /// csum_offset (le16).
    pub const CSUM_OFFSET: usize = 8;
    /// num_buffers (le16).
    pub const NUM_BUFFERS: usize = 10;
    /// flags: the driver asks the device to complete the checksum.
    pub const F_NEEDS_CSUM: u8 = 1;
    /// flags: the device validated the checksum.
    pub const F_DATA_VALID: u8 = 2;
    /// gso_type: none.
    pub const GSO_NONE: u8 = 0;
    /// gso_type: TCP over IPv4.
    pub const GSO_TCPV4: u8 = 1;
    /// gso_type: TCP over IPv6.
    pub const GSO_TCPV6: u8 = 4;
}

/// Control virtqueue commands.
pub mod ctrl {
    /// Class RX mode.
    pub const CLASS_RX: u8 = 0;
    /// RX: promiscuous on / off (u8 data).
    pub const RX_PROMISC: u8 = 0;
    /// RX: all-multicast on / off (u8 data).
    pub const RX_ALLMULTI: u8 = 1;
    /// Class MAC.
    pub const CLASS_MAC: u8 = 1;
    /// MAC: set the filter table: two `virtio_net_ctrl_mac` (le32 `entries`, then that many
    /// 6-byte addresses), the unicast table first, then the multicast one.
    pub const MAC_TABLE_SET: u8 = 0;
    /// MAC: set the address (6 bytes of data).
    pub const MAC_ADDR_SET: u8 = 1;
    /// Class VLAN filter (with VIRTIO_NET_F_CTRL_VLAN).
    pub const CLASS_VLAN: u8 = 2;
    /// VLAN: let tagged frames of a VLAN id through (le16 data).
    pub const VLAN_ADD: u8 = 0;
    /// VLAN: drop tagged frames of a VLAN id again (le16 data).
    pub const VLAN_DEL: u8 = 1;
    /// Class multi-queue.
    pub const CLASS_MQ: u8 = 4;
    /// MQ: number of queue pairs (le16 data).
    pub const MQ_VQ_PAIRS_SET: u8 = 0;
    /// Ack: success.
    pub const OK: u8 = 0;
}
