//! The driver interface ([`Driver`], [`RxQueueOps`], [`TxQueueOps`]) and device naming
//! ([`DeviceSpec`]).
//!
//! Dynamic dispatch stays out of the per-packet path: a queue is a `Box<dyn RxQueueOps>` called
//! once per burst; everything per packet happens inside the driver's own (monomorphic) code.
#![forbid(unsafe_code)]

use std::fmt;
use std::time::Duration;

use oxpmd_dma::Mempool;
use oxpmd_vfio::PciAddress;

use crate::burst::Burst;
use crate::error::{PortError, Result};
use crate::mac::MacAddr;
use crate::port::PortConfig;
use crate::stats::{DeviceCounters, QueueCounters};

crate::flag_set::flag_set! {
    /// Features a device offers beyond sending and receiving frames (a set of bits).
    Capabilities {
        /// RX VLAN stripping ([`PortConfig::vlan_strip`]): the outer 802.1Q tag is removed and
        /// its TCI reported in the packet (`RX_VLAN_STRIPPED`).
        VLAN_STRIP = 0, "vlan-strip";
        /// An RX VLAN filter table ([`PortConfig::vlan_filter`],
        /// [`Port::vlan_filter_add`](crate::Port::vlan_filter_add)): tagged frames of a VLAN id
        /// not in the table are dropped by the device.
        VLAN_FILTER = 1, "vlan-filter";
        /// TX VLAN insertion: packets flagged `TX_VLAN_INSERT` leave with an 802.1Q tag of their
        /// `vlan_tci()`.
        VLAN_INSERT = 2, "vlan-insert";
        /// A multicast address list ([`Port::set_mc_addr_list`](crate::Port::set_mc_addr_list)):
        /// frames to those groups are received without all-multicast mode.
        MULTICAST_LIST = 3, "multicast-list";
        /// RX scatter: a frame larger than one RX buffer arrives as a chained packet (one segment
        /// per buffer), so the MTU is not bounded by the pool's data room.
        RX_SCATTER = 4, "rx-scatter";
        /// TX of chained packets: one descriptor per segment.
        TX_MULTI_SEG = 5, "tx-multi-seg";
        /// TCP segmentation offload over IPv4 and IPv6: a packet flagged `TX_TCP_SEG` (its
        /// headers in the first segment, the MSS in `tso_segsz()`, the TCP checksum field
        /// holding the pseudo-header sum without the length) leaves as MSS-sized segments with
        /// their IP lengths, IPv4 checksums, sequence numbers and TCP checksums filled in. A
        /// device without it counts such packets as TX errors and sends nothing of them.
        TCP_TSO = 6, "tcp-tso";
    }
}

/// The MTU of a port until it is set: a standard Ethernet payload.
pub const DEFAULT_MTU: u16 = 1500;
/// The smallest MTU a port accepts (IPv4's minimum datagram).
pub const MIN_MTU: u16 = 68;

/// The longest frame a port with MTU `mtu` receives: the payload, the Ethernet header and one
/// VLAN tag (the FCS is stripped).
pub const fn max_frame_len(mtu: u16) -> usize {
    mtu as usize + 14 + 4
}

/// What a driver supports; the port validates a [`PortConfig`] against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Driver name ("igb", "null", ...).
    pub driver: &'static str,
    /// Most RX queues.
    pub max_rx_queues: u16,
    /// Most TX queues.
    pub max_tx_queues: u16,
    /// Smallest ring (descriptors).
    pub min_ring_size: usize,
    /// Largest ring (descriptors).
    pub max_ring_size: usize,
    /// Largest frame one RX buffer must hold: the smallest data room an RX queue accepts, once
    /// rounded down to [`rx_buffer_unit`](Self::rx_buffer_unit) (bytes).
    pub min_rx_buffer: usize,
    /// The device uses RX buffers in whole multiples of this many bytes (igb's SRRCTL.BSIZEPKT
    /// counts KiB); 1 when it uses any size.
    pub rx_buffer_unit: usize,
    /// Offloads and filters beyond plain frames.
    pub capabilities: Capabilities,
    /// Entries of the RSS redirection table (0: no RSS).
    pub reta_size: usize,
    /// Bytes of the RSS hash key (0: no RSS).
    pub rss_key_len: usize,
    /// The header fields the device can hash.
    pub rss_hash: crate::rss::RssHash,
    /// The largest MTU ([`Port::set_mtu`](crate::Port::set_mtu)).
    pub max_mtu: u16,
    /// The port takes only a chunk-aligned pool of 2048- or 4096-byte buffers
    /// ([`MempoolConfig::chunk_aligned`](oxpmd_dma::MempoolConfig::chunk_aligned)): an AF_XDP
    /// port, whose pool is its UMEM. An application with one pool for all its ports makes it so
    /// when any port asks (a chunk-aligned pool suits every other port too).
    pub needs_chunk_aligned_pool: bool,
}

impl DeviceInfo {
    /// A device with one queue each way, rings of the usual sizes, any RX buffer, no offload,
    /// no RSS and the standard MTU: the base that drivers change where they differ.
    pub const fn basic(driver: &'static str) -> DeviceInfo {
        DeviceInfo {
            driver,
            max_rx_queues: 1,
            max_tx_queues: 1,
            min_ring_size: crate::adv_ring::MIN_RING_SIZE,
            max_ring_size: crate::adv_ring::MAX_RING_SIZE,
            min_rx_buffer: 0,
            rx_buffer_unit: 1,
            capabilities: Capabilities::NONE,
            reta_size: 0,
            rss_key_len: 0,
            rss_hash: crate::rss::RssHash::NONE,
            max_mtu: DEFAULT_MTU,
            needs_chunk_aligned_pool: false,
        }
    }
}

/// Link state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStatus {
    /// Link up.
    pub up: bool,
    /// Speed in Mbit/s (0 if unknown or down).
    pub speed_mbps: u32,
    /// Full duplex.
    pub full_duplex: bool,
}

impl fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.up {
            let d = if self.full_duplex { "full" } else { "half" };
            write!(f, "up {} Mbit/s {d}-duplex", self.speed_mbps)
        } else {
            write!(f, "down")
        }
    }
}

/// Everything a driver needs to build one RX queue.
#[derive(Debug)]
pub struct RxQueueSetup<'a> {
    /// Queue index.
    pub queue: u16,
    /// Descriptors (validated: power of two within the driver's range).
    pub ring_size: usize,
    /// Pool the queue takes buffers from.
    pub pool: &'a Mempool,
    /// Port id written into received packets.
    pub port_id: u16,
    /// Strip the outer VLAN tag ([`PortConfig::vlan_strip`]; only asked of a device with
    /// [`Capabilities::VLAN_STRIP`]).
    pub vlan_strip: bool,
    /// The longest frame the queue hands out, whatever the device delivers: the frame of the
    /// device's largest MTU ([`max_frame_len`] of [`DeviceInfo::max_mtu`]), so that a later
    /// [`Port::set_mtu`](crate::Port::set_mtu) needs no new queue; the device's own filter
    /// holds frames to the port's current MTU.
    pub max_frame: usize,
}

/// Everything a driver needs to build one TX queue.
#[derive(Debug, Clone, Copy)]
pub struct TxQueueSetup<'a> {
    /// Queue index.
    pub queue: u16,
    /// Descriptors (validated).
    pub ring_size: usize,
    /// Port id.
    pub port_id: u16,
    /// The port's mempool: a queue may keep a cache of it to free sent packets in bulk (packets
    /// of other pools must still be accepted).
    pub pool: &'a Mempool,
}

/// One RX queue of a driver, owned by one thread.
pub trait RxQueueOps: Send {
    /// Appends up to `out.room()` received packets to `out`, returns how many. Counts packets,
    /// bytes, rx_nombuf, errors into `c` (the queue's owner publishes them).
    fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize;

    /// Routes this queue's "frame written" to an MSI-X vector of its own, masked until
    /// [`arm_interrupt`](Self::arm_interrupt). A queue without an interrupt refuses.
    fn enable_interrupt(&mut self, device: &str, queue: u16) -> Result<()> {
        Err(PortError::NoRxInterrupt {
            device: device.to_string(),
            queue,
        })
    }

    /// The eventfd of the queue's vector (after `enable_interrupt`).
    fn interrupt_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }

    /// Unmasks the vector, then looks at the ring once more: true when a frame is already there
    /// (it may have landed before the unmask and raised nothing), so the caller must not sleep.
    fn arm_interrupt(&mut self) -> Result<bool> {
        Ok(true)
    }

    /// Masks the vector again and consumes its eventfd count.
    fn disarm_interrupt(&mut self) -> Result<()> {
        Ok(())
    }
}

/// One TX queue of a driver, owned by one thread.
pub trait TxQueueOps: Send {
    /// Takes packets from the front of `pkts` for transmission; what it did not take stays in
    /// `pkts`, in order. Returns how many it took. Counts packets and bytes into `c`.
    fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize;

    /// Frees the buffers of packets the device has finished sending; returns how many
    /// descriptors were reclaimed. Optional: `tx_burst` reclaims by itself when it needs room.
    /// A queue that buffers ([`held`](Self::held)) may pass packets on here too, and counts
    /// them into `c` as `tx_burst` does.
    fn reclaim(&mut self, _c: &mut QueueCounters) -> usize {
        0
    }

    /// Packets this queue took from the application but has not handed on yet: a queue that
    /// buffers (the fault port's, holding a packet to reorder or packets its inner queue had no
    /// room for) passes them on in later `tx_burst` or `reclaim` calls. 0 for a device queue,
    /// whose descriptors are the device's as soon as `tx_burst` returns.
    fn held(&self) -> usize {
        0
    }
}

/// A device driver (igb, igbvf, virtio-net, the virtual ports).
///
/// Life cycle, driven by [`Port`](crate::Port): `configure` (device-wide settings) → one
/// `setup_rx_queue` / `setup_tx_queue` per queue → `start` → ... → `stop` → drop.
///
/// Teardown contract (design invariant 3): a queue returned by `setup_*_queue` owns its
/// descriptor memory and buffers and may outlive the port (it lives in a worker thread). Its
/// `Drop` must first disable the hardware queue (e.g. RXDCTL.ENABLE = 0, polled) and only then
/// free memory, so it must hold what it needs for that (e.g. an `Arc` of the BAR mapping).
/// The driver's own `Drop` turns the device off (stop, then bus mastering off) before its
/// register mapping goes away.
pub trait Driver: Send {
    /// Device name for messages: the PCI address or the virtual-port name.
    fn device_name(&self) -> &str;

    /// Capabilities used to validate the configuration.
    fn info(&self) -> DeviceInfo;

    /// Applies device-wide settings of `config` (queue counts for RSS / VMDq, max frame, ...),
    /// before the queues are set up. `config` is already validated against [`Driver::info`].
    fn configure(&mut self, config: &PortConfig) -> Result<()>;

    /// Builds RX queue `setup.queue`: ring memory, buffers posted, hardware queue programmed and
    /// enabled (or enabled at `start`).
    fn setup_rx_queue(&mut self, setup: &RxQueueSetup<'_>) -> Result<Box<dyn RxQueueOps>>;

    /// Builds TX queue `setup.queue`.
    fn setup_tx_queue(&mut self, setup: &TxQueueSetup<'_>) -> Result<Box<dyn TxQueueOps>>;

    /// Starts reception and transmission (RCTL.EN / TCTL.EN, ...).
    fn start(&mut self) -> Result<()>;

    /// Stops reception and transmission device-wide. Queue memory stays owned by the queues.
    fn stop(&mut self) -> Result<()>;

    /// Current link state (non-blocking).
    fn link(&mut self) -> Result<LinkStatus>;

    /// The port's MAC address.
    fn mac_addr(&self) -> MacAddr;

    /// Sets the port's MAC address (the caller has checked it is a valid unicast address).
    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<()>;

    /// Receives every unicast frame (RCTL.UPE) or not.
    fn set_promiscuous(&mut self, on: bool) -> Result<()>;

    /// Receives every multicast frame (RCTL.MPE) or not.
    fn set_all_multicast(&mut self, on: bool) -> Result<()>;

    /// Sets the MTU: frames up to [`max_frame_len`]`(mtu)` are received, longer ones dropped by
    /// the device. Called by the port with `mtu` in [`MIN_MTU`]`..=`[`DeviceInfo::max_mtu`], at
    /// configure time (with [`PortConfig::mtu`]) and whenever the application changes it. The
    /// default suits a device without a length filter (a virtual port): nothing to program.
    fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        let _ = mtu;
        Ok(())
    }

    /// The DMA mapper of the device (its VFIO container / IOMMU domain, or physical addresses in
    /// no-IOMMU mode), for creating mempools the device can reach. `None` for virtual ports: any
    /// pool works (e.g. [`virtual_pool`](crate::vport::virtual_pool)).
    fn dma_map(&self) -> Option<std::sync::Arc<dyn oxpmd_dma::DmaMap>> {
        None
    }

    /// Counters the device keeps (missed frames, errors); drivers without any return zeros.
    fn device_counters(&mut self) -> Result<DeviceCounters> {
        Ok(DeviceCounters::default())
    }

    /// Adds (`on`) or removes VLAN id `vid` (0..=4095, checked by the port) in the device's RX
    /// filter table. Only called on a device with [`Capabilities::VLAN_FILTER`] configured with
    /// [`PortConfig::vlan_filter`].
    fn set_vlan_filter(&mut self, vid: u16, on: bool) -> Result<()> {
        let _ = (vid, on);
        Err(PortError::Unsupported {
            device: self.device_name().to_string(),
            op: "set a VLAN filter",
            driver: self.info().driver,
        })
    }

    /// Receives the multicast groups of `addrs` (every one a multicast address, checked by the
    /// port), and no other group outside all-multicast mode; replaces the previous list. Only
    /// called on a device with [`Capabilities::MULTICAST_LIST`].
    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<()> {
        let _ = addrs;
        Err(PortError::Unsupported {
            device: self.device_name().to_string(),
            op: "set the multicast address list",
            driver: self.info().driver,
        })
    }

    /// A source of link-state events ([`crate::link_events`]): the device's link-change
    /// interrupt. Drivers whose device has none refuse (never a handle that would stay silent).
    fn link_events(&mut self) -> Result<Box<dyn crate::link_events::LinkEventSource>> {
        Err(PortError::Unsupported {
            device: self.device_name().to_string(),
            op: "link-state events (the device has no link-change interrupt)",
            driver: self.info().driver,
        })
    }

    /// Writes the RSS redirection table: entry `i` sends the frames whose hash's low bits are
    /// `i` to RX queue `reta[i]` (length `reta_size`, entries below the RX queue count: checked
    /// by the port). Only called on a device with `reta_size > 0`.
    fn set_rss_reta(&mut self, reta: &[u16]) -> Result<()> {
        let _ = reta;
        Err(PortError::Unsupported {
            device: self.device_name().to_string(),
            op: "write the RSS redirection table",
            driver: self.info().driver,
        })
    }

    /// The RSS hash key in use (the configured one, or the one the driver chose), if the device
    /// hashes.
    fn rss_key(&self) -> Option<Vec<u8>> {
        None
    }

    /// Appends the device's own extended statistics (every counter it keeps, by name, as
    /// totals since it was opened; see [`crate::xstats`]). Drivers with none append nothing.
    fn xstats(&mut self, out: &mut Vec<crate::xstats::XStat>) -> Result<()> {
        let _ = out;
        Ok(())
    }
}

/// Options for opening a device. `Debug` never prints the VF token (it is a shared secret between
/// the PF's and the VF's owners): it shows `Some(<redacted>)` or `None`.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// Port id written into received packets (l2fwd's port index).
    pub port_id: u16,
    /// VF token (UUID) for opening an SR-IOV VF whose PF is driven from userspace.
    pub vf_token: Option<String>,
}

impl std::fmt::Debug for OpenOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Redacted;
        impl std::fmt::Debug for Redacted {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("<redacted>")
            }
        }
        f.debug_struct("OpenOptions")
            .field("port_id", &self.port_id)
            .field("vf_token", &self.vf_token.as_ref().map(|_| Redacted))
            .finish()
    }
}

/// Smallest frame a `null` port may produce.
pub const NULL_MIN_SIZE: usize = 60;
/// Default frame size of a `null` port (like DPDK's net_null).
pub const NULL_DEFAULT_SIZE: usize = 64;
/// Longest ring-port name.
pub const RING_NAME_MAX: usize = 32;

/// How a device is named on a command line.
///
/// - a PCI address: `0000:00:02.0` or `00:02.0` (domain 0); the driver is chosen from the
///   vendor:device id in sysfs ([`drivers::REGISTRY`](crate::drivers::REGISTRY));
/// - `nullN` or `net_nullN` (DPDK's name), optionally `,size=BYTES` (60..=9000, default 64): RX
///   produces fresh packets of that length from the mempool, TX frees what it is given;
/// - `ring:NAME` or `net_ring:NAME` (NAME: 1..=32 of `[A-Za-z0-9_-]`): the first port opened with
///   a name and the second one form a pair; what one transmits the other receives.
/// - `xdp:IFACE[:QUEUES][,mode=auto|zc|copy]`: a kernel-driven interface through AF_XDP sockets
///   (queues `3` or `0-3`, all when left out; see [`crate::vport::xdp`]);
/// - `fault:OPTIONS:DEVICE`: DEVICE (any of these forms) with faults injected into its traffic,
///   OPTIONS like `drop=0.1%,corrupt=0.01%,dup=0.1%,reorder=0.1%,rate=PPS,seed=N,dir=rx|tx|both`
///   (see [`crate::vport::fault`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceSpec {
    /// A PCI function.
    Pci(PciAddress),
    /// A null port.
    Null {
        /// The N of `nullN`.
        index: u32,
        /// Frame length RX produces.
        size: usize,
    },
    /// One end of an in-process ring pair.
    Ring {
        /// Pair name.
        name: String,
    },
    /// Another device, with faults injected into its traffic ([`crate::vport::fault`]).
    Fault {
        /// What to inject.
        faults: crate::vport::fault::FaultSpec,
        /// The wrapped device.
        inner: Box<DeviceSpec>,
    },
    /// A kernel-driven interface through AF_XDP: `xdp:IFACE[:Q|:FIRST-LAST][,mode=auto|zc|copy]`
    /// ([`crate::vport::xdp`]).
    Xdp(crate::vport::xdp::XdpSpec),
    /// A VF handed over by the PF service: `vf-service:SOCKET:VF` (an 82576 VF, igbvf).
    VfService {
        /// The service's control socket.
        socket: std::path::PathBuf,
        /// VF index.
        vf: usize,
    },
}

impl DeviceSpec {
    /// Parses a device string (see the type documentation); bad input is an error, never a panic.
    pub fn parse(spec: &str) -> Result<DeviceSpec> {
        let bad = || PortError::BadDeviceSpec {
            spec: spec.to_string(),
        };
        let s = spec.trim();
        if let Some(rest) = s.strip_prefix("fault:") {
            return Self::parse_fault(spec, rest);
        }
        if s.is_empty() || s.len() > 128 {
            return Err(bad());
        }
        if let Some(rest) = s.strip_prefix("xdp:").or_else(|| s.strip_prefix("net_af_xdp:")) {
            return crate::vport::xdp::XdpSpec::parse(rest)
                .map(DeviceSpec::Xdp)
                .map_err(|reason| PortError::InvalidConfig {
                    device: spec.to_string(),
                    op: "parse the device name (xdp:IFACE[:QUEUES][,mode=auto|zc|copy])",
                    reason,
                });
        }
        if s.starts_with("vf-service:") {
            return crate::sriov::handover::parse_spec(s)
                .map(|(socket, vf)| DeviceSpec::VfService { socket, vf })
                .map_err(|_| bad());
        }
        let (head, opts) = match s.split_once(',') {
            Some((h, o)) => (h, Some(o)),
            None => (s, None),
        };
        if let Some(n) = head
            .strip_prefix("net_null")
            .or_else(|| head.strip_prefix("null"))
        {
            if n.is_empty() || n.len() > 4 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let index: u32 = n.parse().map_err(|_| bad())?;
            let mut size = NULL_DEFAULT_SIZE;
            if let Some(opts) = opts {
                for kv in opts.split(',') {
                    match kv.split_once('=') {
                        Some(("size", v)) => {
                            size = v.parse().map_err(|_| bad())?;
                            if !(NULL_MIN_SIZE..=9000).contains(&size) {
                                return Err(bad());
                            }
                        }
                        // DPDK's net_null option; our null port never copies (copy=0).
                        Some(("copy", "0")) => {}
                        _ => return Err(bad()),
                    }
                }
            }
            return Ok(DeviceSpec::Null { index, size });
        }
        if opts.is_some() {
            return Err(bad());
        }
        if let Some(name) = head
            .strip_prefix("net_ring:")
            .or_else(|| head.strip_prefix("ring:"))
        {
            let ok = !name.is_empty()
                && name.len() <= RING_NAME_MAX
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            return if ok {
                Ok(DeviceSpec::Ring {
                    name: name.to_string(),
                })
            } else {
                Err(bad())
            };
        }
        PciAddress::parse(head).map(DeviceSpec::Pci).map_err(|_| bad())
    }
}

impl DeviceSpec {
    /// `fault:OPTIONS:DEVICE` (`rest` is what follows `fault:`).
    fn parse_fault(spec: &str, rest: &str) -> Result<DeviceSpec> {
        let bad = |reason: String| PortError::BadFaultSpec {
            spec: spec.to_string(),
            reason,
        };
        let (options, inner) = rest
            .split_once(':')
            .ok_or_else(|| bad("no inner device after the options".into()))?;
        let faults = crate::vport::fault::FaultSpec::parse(options).map_err(|e| bad(e.to_string()))?;
        if inner.trim().is_empty() {
            return Err(bad("no inner device after the options".into()));
        }
        let inner = DeviceSpec::parse(inner)?;
        Ok(DeviceSpec::Fault {
            faults,
            inner: Box::new(inner),
        })
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Pci(a) => write!(f, "{a}"),
            DeviceSpec::Null { index, .. } => write!(f, "null{index}"),
            DeviceSpec::Ring { name } => write!(f, "ring:{name}"),
            DeviceSpec::Fault { faults, inner } => write!(f, "fault:{faults}:{inner}"),
            DeviceSpec::Xdp(x) => write!(f, "{x}"),
            DeviceSpec::VfService { socket, vf } => write!(f, "vf-service:{}:{vf}", socket.display()),
        }
    }
}

/// How long [`Port::wait_link_up`](crate::Port::wait_link_up) sleeps between polls.
pub const LINK_POLL_INTERVAL: Duration = Duration::from_millis(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_options_debug_redacts_the_vf_token() {
        let token = "2e2ab2e4-8d2f-4b1a-9c3e-5f6a7b8c9d0e";
        let opts = OpenOptions {
            port_id: 3,
            vf_token: Some(token.to_string()),
        };
        for text in [format!("{opts:?}"), format!("{opts:#?}")] {
            assert!(!text.contains(token), "token printed: {text}");
            assert!(!text.contains("2e2ab2e4"), "part of the token printed: {text}");
            assert!(text.contains("<redacted>") && text.contains("port_id"), "{text}");
        }
        let none = format!("{:?}", OpenOptions::default());
        assert!(none.contains("vf_token: None"), "{none}");
    }

    #[test]
    fn parses_every_documented_form() {
        assert_eq!(
            DeviceSpec::parse("null0").unwrap(),
            DeviceSpec::Null { index: 0, size: 64 }
        );
        assert_eq!(
            DeviceSpec::parse("net_null1").unwrap(),
            DeviceSpec::Null { index: 1, size: 64 }
        );
        assert_eq!(
            DeviceSpec::parse("null2,size=128").unwrap(),
            DeviceSpec::Null { index: 2, size: 128 }
        );
        assert_eq!(
            DeviceSpec::parse("net_null0,copy=0").unwrap(),
            DeviceSpec::Null { index: 0, size: 64 }
        );
        assert_eq!(
            DeviceSpec::parse("ring:ab_1").unwrap(),
            DeviceSpec::Ring { name: "ab_1".into() }
        );
        assert_eq!(
            DeviceSpec::parse("net_ring:x").unwrap(),
            DeviceSpec::Ring { name: "x".into() }
        );
        let pci = DeviceSpec::parse("0000:00:02.0").unwrap();
        assert_eq!(pci.to_string(), "0000:00:02.0");
        assert_eq!(DeviceSpec::parse("00:02.0").unwrap(), pci);
    }

    #[test]
    fn refuses_bad_names() {
        for bad in [
            "",
            "null",
            "nullx",
            "null0,size=10",
            "null0,size=99999",
            "null0,foo=1",
            "ring:",
            "ring:a/b",
            "ring:x,size=1",
            "eth0",
            "0000:00:02",
            "0000:00:99.0",
            &format!("ring:{}", "a".repeat(33)),
        ] {
            assert!(
                matches!(DeviceSpec::parse(bad), Err(PortError::BadDeviceSpec { .. })),
                "{bad:?} was accepted"
            );
        }
    }
}
