//! oxpmd-pmd: ports, queues and poll-mode drivers.
//!
//! - [`Port`]: open a device by PCI address or virtual-port name ([`DeviceSpec`]), configure it
//!   ([`PortConfig`]), start it, then take its [`RxQueue`] / [`TxQueue`] values (each `Send`, owned
//!   by one thread, no lock per burst) and move packets in [`Burst`]s.
//! - [`Driver`]: what a device driver implements (igb, igbvf, virtio-net); [`drivers::REGISTRY`]
//!   maps PCI ids to drivers.
//! - [`adv_ring`]: the 16-byte advanced descriptor ring shared by igb / igbvf / ixgbe, testable
//!   against a fake device (`adv_ring::fake`, with the `test-support` feature).
//! - [`vport`]: virtual ports `null` and `ring`.
//! - [`link_events`]: link-state changes as events, from the device's link-change interrupt.
//! - [`rx_interrupt`]: sleeping on RX queues' interrupts until frames arrive.
//! - [`forward`]: the l2fwd forwarding engine used by `examples/l2fwd/` and its tests.

pub mod adv_ring;
pub mod burst;
pub mod capture;
pub mod checksum;
pub mod driver;
pub mod drivers;
pub mod error;
mod flag_set;
pub mod forward;
pub mod headers;
pub mod iommu;
pub mod link_events;
pub mod mac;
pub mod port;
pub mod rss;
pub mod rx_interrupt;
pub mod signal;
pub mod sriov;
pub mod stats;
#[cfg(test)]
mod test_rng;
pub mod vlan;
pub mod vport;
pub mod xstats;

pub use burst::{Burst, BurstCapacityError, DEFAULT_BURST, MAX_BURST};
pub use driver::{
    Capabilities, DEFAULT_MTU, DeviceInfo, DeviceSpec, Driver, LinkStatus, MIN_MTU, OpenOptions, RxQueueOps,
    RxQueueSetup, TxQueueOps, TxQueueSetup, max_frame_len,
};
pub use error::{PortError, Result};
pub use link_events::{LinkEvent, LinkEvents};
pub use mac::MacAddr;
pub use port::{Port, PortConfig, RxQueue, TxQueue};
pub use rx_interrupt::wait_for_rx;
pub use stats::{DeviceCounters, PortStats, QueueCounters};
pub use xstats::XStat;
