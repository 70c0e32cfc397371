//! virtio-net (virtio 1.0 "modern" PCI) poll-mode driver, over VFIO and the IOMMU.
//!
//! Bring-up (virtio specification, "Device Initialization"; see `docs/virtio.md`):
//! the device is bound to vfio-pci and opened in the process's container → the vendor
//! capabilities (common, notify, ISR, device configuration) are found in config space and their
//! BARs mapped → memory space and bus mastering on → reset (status 0, polled) → ACKNOWLEDGE →
//! DRIVER → feature negotiation: `VERSION_1` and `ACCESS_PLATFORM` are **required** (a device
//! without them is refused with [`VirtioError::MissingFeature`], naming the fix), `MAC`,
//! `STATUS`, `MRG_RXBUF`, `MTU`, `CSUM` and the control queue with `CTRL_RX`, `CTRL_MAC_ADDR`
//! and `MQ` are taken when offered → FEATURES_OK, read back → MAC from the device configuration;
//! the control virtqueue (when offered) is set up at index 2 x max_virtqueue_pairs.
//!
//! `configure` first negotiates again when the configuration needs other features: `CTRL_VLAN`
//! (the VLAN filter table) is taken only for a port configured with `PortConfig::vlan_filter`,
//! because a device with it negotiated drops the tagged frames of every VLAN id not added, and
//! without it lets every VLAN through (as DPDK's virtio PMD decides in dev_configure); the same
//! bring-up then runs again from the reset. Then it allocates one DMA region for every ring of
//! the port (mapped through the container); each queue is programmed (size, the three ring
//! addresses, no MSI-X vector: the driver polls, notify offset) and enabled; `start` sets
//! DRIVER_OK, sends the control commands (queue pairs with MQ, MAC, then the RX filters of
//! [`filters`]: the whole VLAN table, the multicast list, all-multicast and promiscuous mode,
//! not promiscuous by default like the other drivers) and kicks the RX queues. While the port
//! runs, each filter change is one control command.
//!
//! Queues: receiveq N is virtqueue 2N, transmitq N is 2N+1; with VIRTIO_NET_F_MQ (and the control
//! queue) up to max_virtqueue_pairs pairs, told to the device with VQ_PAIRS_SET at start.
//!
//! DMA memory: every virtio port of the process shares one VFIO container, so one mempool serves
//! them all. (The igb driver keeps its own process-wide container: a pool made for an igb port is
//! not mapped for a virtio port and vice versa; see `docs/virtio.md`.)
//!
//! Teardown: virtio 1.0 has no per-queue disable, so the device is reset (status 0, polled until
//! it reads back 0: the device no longer touches any ring or buffer) by whichever comes first:
//! a queue's `Drop`, or the driver's `Drop`; then bus mastering goes off. Memory is freed
//! afterwards by its owners.
#![allow(unsafe_code)]

mod bringup;
pub mod caps;
pub mod ctrl;
mod error;
mod features;
pub mod filters;
mod intr;
pub mod packed;
pub mod queue;
pub mod regs;
mod rx_intr;
mod shared;
pub mod split;

use std::sync::Arc;
use std::time::Duration;

use oxpmd_dma::{DmaMap, DmaRegion, Packet, RegionOptions};
use oxpmd_vfio::{BarError, PciAddress};

use self::caps::VirtioCaps;
use self::ctrl::CtrlCommand;
use self::filters::{FilterCommand, Refusal, RxFilters};
use self::packed::{PackedRing, packed_bytes};
use self::queue::{Doorbell, TxAddressCheck, VirtioRxQueue, VirtioTxQueue, tx_header_table_bytes};
use self::regs::{ctrl as ctrlcmd, feature, status};
use self::rx_intr::RxQueueBox;
use self::split::{SplitLayout, SplitRing, Virtqueue};
use crate::burst::Burst;
use crate::driver::{
    Capabilities, DeviceInfo, Driver, LinkStatus, OpenOptions, RxQueueOps, RxQueueSetup, TxQueueOps,
    TxQueueSetup,
};
use crate::error::{PortError, Result};
use crate::iommu::{MappedPools, RingSlice, VfioDmaMap, pool_is_mapped};
use crate::mac::MacAddr;
use crate::port::PortConfig;
use crate::stats::QueueCounters;

/// Driver name.
pub const DRIVER_NAME: &str = "virtio-net";
/// Smallest ring accepted from the configuration.
pub const MIN_RING_SIZE: usize = 16;
/// Largest ring accepted from the configuration; a ring larger than the device's queue is
/// clamped to the device's size (as DPDK's virtio PMD does), and the queue is logged.
pub const MAX_RING_SIZE: usize = 4096;
/// Smallest RX buffer data room (a full 1518-byte frame in one buffer).
pub const MIN_RX_BUFFER: usize = 1518;
/// The largest MTU when the device does not advise one (VIRTIO_NET_F_MTU): frames of up to
/// 9728 bytes (DPDK's virtio limit) less the Ethernet header, a VLAN tag and the net header.
pub const MAX_MTU: u16 = 9728 - 14 - 4 - 12;
/// Entries of the control virtqueue (at most; clamped to the device's).
const CTRL_QUEUE_SIZE: usize = 16;
/// Most MSI-X vectors enabled (the configuration vector, then one per virtqueue).
const MAX_MSIX_VECTORS: u32 = 64;
/// How long a reset may take.
const RESET_TIMEOUT: Duration = Duration::from_secs(1);

pub use error::VirtioError;
pub(crate) use error::drv_err;
pub use features::{
    CTRL_VQ_FEATURES, MODERN_DEVICE_FIX, OPTIONAL_FEATURES, REQUIRED_FEATURES, Wanted, negotiate,
};

/// Options of the virtio-net driver beyond [`OpenOptions`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioOptions {
    /// Use packed virtqueues when the device offers VIRTIO_F_RING_PACKED (split otherwise).
    /// [`open`] (the registry's constructor) sets it from `OXPMD_VIRTIO_PACKED=1`.
    pub packed: bool,
}

pub(crate) use shared::{StopOnce, VirtioShared};

/// Rings one virtqueue's doorbell; stops the device at queue teardown.
struct VirtioDoorbell {
    shared: Arc<VirtioShared>,
    off: usize,
    index: u16,
}

// SAFETY: `stop_device` returns true only after a device reset (virtio 1.0: the device stops all
// DMA before the status reads back 0) or with bus mastering off; both stop every access to the
// queues' rings and buffers. StopOnce makes concurrent callers wait for the one that stops it.
unsafe impl Doorbell for VirtioDoorbell {
    #[inline]
    fn notify(&mut self) {
        // The offset was checked when the queue was set up; an error here cannot happen.
        let _ = self.shared.notify.write16(self.off, self.index);
    }

    fn stop_device(&mut self) -> bool {
        self.shared.stop()
    }
}

impl TxAddressCheck for MappedPools {
    #[inline(always)]
    fn knows(&self, pool_id: u64) -> bool {
        MappedPools::knows(self, pool_id)
    }

    fn check(&mut self, pkt: &Packet) -> bool {
        MappedPools::check(self, pkt)
    }

    fn device(&self) -> &str {
        MappedPools::device(self)
    }
}

struct TxQueueBox<Q: Virtqueue>(VirtioTxQueue<VirtioDoorbell, Q, RingSlice>);

impl<Q: Virtqueue> TxQueueOps for TxQueueBox<Q> {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        self.0.tx_burst(pkts, c)
    }

    fn reclaim(&mut self, _c: &mut QueueCounters) -> usize {
        self.0.cleanup()
    }
}

/// A virtio-net device opened through VFIO.
pub struct VirtioDriver {
    shared: Arc<VirtioShared>,
    dma: Arc<VfioDmaMap>,
    /// The port id (for the fallback MAC) and the options the device was opened with, kept for
    /// a renegotiation at configure.
    port_id: u16,
    vopts: VirtioOptions,
    /// What the device offers.
    offered: u64,
    features: u64,
    mac: MacAddr,
    num_queues: u16,
    rings: Option<Arc<DmaRegion>>,
    slot_bytes: usize,
    rx_ring_size: usize,
    tx_ring_size: usize,
    rx_queues: u16,
    /// (virtqueue index, notify offset) of the RX queues set up, kicked at start.
    rx_notify: Vec<(u16, usize)>,
    driver_ok: bool,
    /// Queue pairs the device has (max_virtqueue_pairs with MQ, else 1).
    max_pairs: u16,
    /// The largest MTU: the device's advice (VIRTIO_NET_F_MTU) or [`MAX_MTU`].
    max_mtu: u16,
    /// Queue pairs configured (told to the device at start with MQ).
    pairs: u16,
    /// The control virtqueue (with VIRTIO_NET_F_CTRL_VQ), and its memory.
    ctrl: Option<Box<dyn CtrlCommand>>,
    /// RX modes, multicast list and VLAN table wanted (applied at start, or at once after it).
    filters: RxFilters,
    /// The MAC was set by the application (applied at start, or at once after it; kept across a
    /// renegotiation).
    mac_changed: bool,
}

impl std::fmt::Debug for VirtioDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VirtioDriver")
            .field("device", &self.shared.name)
            .field("offered", &format_args!("{:#x}", self.offered))
            .field("features", &format_args!("{:#x}", self.features))
            .field("mac", &self.mac)
            .finish()
    }
}

/// The registry's constructor ([`crate::drivers::OpenFn`]): split virtqueues, or packed ones
/// when the environment has `OXPMD_VIRTIO_PACKED=1` and the device offers them.
pub fn open(addr: PciAddress, opts: &OpenOptions) -> Result<Box<dyn Driver>> {
    let packed = std::env::var("OXPMD_VIRTIO_PACKED").is_ok_and(|v| v == "1");
    Ok(Box::new(VirtioDriver::open_with(
        addr,
        opts,
        VirtioOptions { packed },
    )?))
}

impl VirtioDriver {
    /// Opens the virtio-net function at `addr`: binds it to vfio-pci if it has no driver (a device
    /// on a kernel driver is refused), attaches it to the process's virtio container, finds and
    /// maps its virtio structures, resets it and negotiates features (refusing a device without
    /// VERSION_1 or ACCESS_PLATFORM). Split virtqueues.
    pub fn open(addr: PciAddress, opts: &OpenOptions) -> Result<VirtioDriver> {
        Self::open_with(addr, opts, VirtioOptions::default())
    }

    /// [`VirtioDriver::open`] with driver options (packed virtqueues).
    pub fn open_with(addr: PciAddress, opts: &OpenOptions, vopts: VirtioOptions) -> Result<VirtioDriver> {
        let name = addr.to_string();
        let (device, dma) =
            crate::iommu::open_pci_function(addr, None).map_err(|e| e.into_port_error(&name, ""))?;
        let shared = Arc::new(Self::map_structures(&name, device)?);
        let mut drv = VirtioDriver {
            shared,
            dma,
            port_id: opts.port_id,
            vopts,
            offered: 0,
            features: 0,
            mac: MacAddr::ZERO,
            num_queues: 0,
            rings: None,
            slot_bytes: 0,
            rx_ring_size: 0,
            tx_ring_size: 0,
            rx_queues: 0,
            rx_notify: Vec::new(),
            driver_ok: false,
            max_pairs: 1,
            max_mtu: MAX_MTU,
            pairs: 1,
            ctrl: None,
            filters: RxFilters::default(),
            mac_changed: false,
        };
        drv.initialize(Wanted {
            packed: vopts.packed,
            vlan_filter: false,
        })?;
        Ok(drv)
    }

    fn reg_err(&self, op: &'static str) -> impl Fn(BarError) -> PortError + '_ {
        move |e| drv_err(&self.shared.name, op, e)
    }

    fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the virtqueues are packed.
    pub fn packed(&self) -> bool {
        self.features & feature::RING_PACKED != 0
    }

    /// Bytes of one ring of `size` entries (split or packed, as negotiated).
    fn ring_bytes(&self, size: usize) -> usize {
        if self.packed() {
            packed_bytes(size).unwrap_or(0)
        } else {
            SplitLayout::new(size).map(|l| l.bytes).unwrap_or(0)
        }
    }

    /// Sends a control command now (after DRIVER_OK).
    fn command(&mut self, op: &'static str, class: u8, cmd: u8, data: &[u8]) -> Result<()> {
        let name = self.shared.name.clone();
        let q = self
            .ctrl
            .as_mut()
            .ok_or_else(|| drv_err(&name, op, VirtioError::State("no control virtqueue")))?;
        q.command(class, cmd, data).map_err(|e| drv_err(&name, op, e))
    }

    /// Sends a filter command now (after DRIVER_OK).
    fn send(&mut self, c: &FilterCommand) -> Result<()> {
        self.command(c.op, c.class, c.cmd, &c.data)
    }

    /// Applies the wanted queue pairs, MAC and RX filters (modes, multicast list, VLAN table)
    /// through the control queue, after DRIVER_OK: all of them, since the reset before emptied
    /// the device's. Without the features, nothing is sent: the device stays promiscuous.
    fn apply_ctrl(&mut self) -> Result<()> {
        if self.ctrl.is_none() {
            return Ok(());
        }
        if self.features & feature::NET_MQ != 0 && self.pairs > 1 {
            let p = self.pairs.to_le_bytes();
            self.command("set queue pairs", ctrlcmd::CLASS_MQ, ctrlcmd::MQ_VQ_PAIRS_SET, &p)?;
        }
        if self.features & feature::NET_CTRL_MAC_ADDR != 0 && self.mac_changed {
            let m = self.mac.0;
            self.command("set MAC address", ctrlcmd::CLASS_MAC, ctrlcmd::MAC_ADDR_SET, &m)?;
        }
        if let Some(q) = self.ctrl.as_mut() {
            let name = &self.shared.name;
            self.filters
                .replay(self.features, q.as_mut())
                .map_err(|(op, e)| drv_err(name, op, e))?;
        }
        Ok(())
    }

    /// The refusal of a filter the device cannot have, as a port error of `op`.
    fn refused(&self, op: &'static str, r: Refusal) -> PortError {
        match r {
            Refusal::Unsupported(op) => PortError::Unsupported {
                device: self.name().to_string(),
                op,
                driver: DRIVER_NAME,
            },
            Refusal::Invalid(reason) => PortError::InvalidConfig {
                device: self.name().to_string(),
                op,
                reason: reason.to_string(),
            },
        }
    }

    /// The negotiated feature bits.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// The virtio structures found in config space.
    pub fn capabilities(&self) -> VirtioCaps {
        self.shared.caps
    }

    /// Device status register (for diagnostics).
    pub fn device_status(&self) -> Result<u8> {
        self.shared.status().map_err(self.reg_err("read status"))
    }

    /// Bytes of ring memory one queue of `size` entries takes: the ring (rounded to 128), then
    /// the TX header table; rounded to 4 KiB.
    fn queue_bytes(&self, size: usize) -> usize {
        (self.ring_bytes(size).next_multiple_of(128) + tx_header_table_bytes(size)).next_multiple_of(4096)
    }

    /// The memory of queue slot `slot` for a ring of `size` entries: the ring, and the TX header
    /// table after it.
    fn ring_slices(&self, slot: usize, size: usize) -> Result<(RingSlice, RingSlice)> {
        let fail = |what| drv_err(self.name(), "set up queue", VirtioError::State(what));
        let region = self
            .rings
            .clone()
            .ok_or_else(|| fail("configure was not called"))?;
        let ring_part = self.ring_bytes(size).next_multiple_of(128);
        let base = slot * self.slot_bytes;
        let ring = RingSlice::new(region.clone(), base, ring_part)
            .ok_or_else(|| fail("queue does not fit the ring region"))?;
        let hdr = RingSlice::new(region, base + ring_part, tx_header_table_bytes(size))
            .ok_or_else(|| fail("queue does not fit the ring region"))?;
        Ok((ring, hdr))
    }

    fn check_state(&self) -> Result<()> {
        let st = self.device_status()?;
        if st & status::DEVICE_NEEDS_RESET != 0 {
            return Err(drv_err(self.name(), "check device", VirtioError::NeedsReset(st)));
        }
        Ok(())
    }
}

impl Driver for VirtioDriver {
    fn device_name(&self) -> &str {
        self.name()
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            driver: DRIVER_NAME,
            max_rx_queues: self.max_pairs,
            max_tx_queues: self.max_pairs,
            min_ring_size: MIN_RING_SIZE,
            max_ring_size: MAX_RING_SIZE,
            min_rx_buffer: MIN_RX_BUFFER,
            rx_buffer_unit: 1,
            // Stripping and insertion in software (crate::vlan): virtio-net has no VLAN offload.
            // The filters through the control queue (filters.rs). Merged RX buffers are chained
            // packets.
            capabilities: Capabilities::VLAN_STRIP
                | Capabilities::VLAN_INSERT
                | Capabilities::TX_MULTI_SEG
                | filters::capabilities(self.offered, self.features)
                | if self.features & feature::NET_MRG_RXBUF != 0 {
                    Capabilities::RX_SCATTER
                } else {
                    Capabilities::NONE
                }
                // The device's segmentation, for the families it negotiated (a TSO packet of the
                // other is refused and counted).
                | if self.features & (feature::NET_HOST_TSO4 | feature::NET_HOST_TSO6) != 0 {
                    Capabilities::TCP_TSO
                } else {
                    Capabilities::NONE
                },
            reta_size: 0,
            rss_key_len: 0,
            rss_hash: crate::rss::RssHash::NONE,
            max_mtu: self.max_mtu,
            needs_chunk_aligned_pool: false,
        }
    }

    fn configure(&mut self, config: &PortConfig) -> Result<()> {
        if self.rings.is_some() {
            return Err(drv_err(
                self.name(),
                "configure",
                VirtioError::State("already configured"),
            ));
        }
        if !pool_is_mapped(self.dma.container(), &config.mempool) {
            return Err(drv_err(
                self.name(),
                "configure",
                VirtioError::PoolNotMapped {
                    pool: config.mempool.name().to_string(),
                },
            ));
        }
        if config.vlan_filter && !filters::offers_vlan_filter(self.offered) {
            return Err(self.refused("configure", filters::NO_VLAN_FILTER));
        }
        // CTRL_VLAN only for a port that filters VLANs (a device with it negotiated drops every
        // tagged frame of a VLAN not in the table), as DPDK's virtio PMD does in dev_configure:
        // features other than the open's mean a reset and a new negotiation.
        let wanted = Wanted {
            packed: self.vopts.packed,
            vlan_filter: config.vlan_filter,
        };
        let features = negotiate(self.name(), self.offered, wanted)
            .map_err(|e| drv_err(self.name(), "negotiate features", e))?;
        if features != self.features {
            log::info!(
                "{}: configure: features {features:#x} wanted (negotiated {:#x}): reset and negotiate again",
                self.name(),
                self.features
            );
            self.initialize(wanted)?;
        }
        let per = self.queue_bytes(config.rx_ring_size.max(config.tx_ring_size));
        let count = usize::from(config.rx_queues) + usize::from(config.tx_queues);
        let mut region = DmaRegion::new(per * count, &RegionOptions::default())
            .map_err(|e| drv_err(self.name(), "allocate virtqueues", e))?;
        let map: Arc<dyn DmaMap> = self.dma.clone();
        region
            .map(map)
            .map_err(|e| drv_err(self.name(), "map virtqueues", e))?;
        self.rings = Some(Arc::new(region));
        self.slot_bytes = per;
        self.rx_ring_size = config.rx_ring_size;
        self.tx_ring_size = config.tx_ring_size;
        self.rx_queues = config.rx_queues;
        self.pairs = config.rx_queues.max(config.tx_queues);
        Ok(())
    }

    fn setup_rx_queue(&mut self, setup: &RxQueueSetup<'_>) -> Result<Box<dyn RxQueueOps>> {
        let q = setup.queue;
        if !pool_is_mapped(self.dma.container(), setup.pool) {
            return Err(drv_err(
                self.name(),
                "set up RX queue",
                VirtioError::PoolNotMapped {
                    pool: setup.pool.name().to_string(),
                },
            ));
        }
        let index = 2 * q;
        let (size, notify_off) = self.select_queue(index, setup.ring_size)?;
        let (mem, _) = self.ring_slices(usize::from(q), size)?;
        let bell = VirtioDoorbell {
            shared: self.shared.clone(),
            off: notify_off,
            index,
        };
        let ops: Box<dyn RxQueueOps> = if self.packed() {
            let ring = PackedRing::new(mem, size).ok_or_else(|| {
                drv_err(
                    self.name(),
                    "set up RX queue",
                    VirtioError::State("ring does not fit"),
                )
            })?;
            let mut rxq = VirtioRxQueue::new(ring, bell, setup.pool, setup.port_id, q, false)
                .map_err(|e| drv_err(self.name(), "set up RX queue", e))?;
            rxq.set_vlan_strip(setup.vlan_strip);
            rxq.set_max_frame(setup.max_frame);
            let r = rxq.ring();
            self.enable_queue(index, size, r.desc_iova(), r.avail_iova(), r.used_iova())?;
            Box::new(RxQueueBox::new(rxq, self.shared.clone(), index))
        } else {
            let ring = SplitRing::new(mem, size)
                .map_err(|e| drv_err(self.name(), "set up RX queue", queue::QueueError::Ring(e)))?;
            let mut rxq = VirtioRxQueue::new(ring, bell, setup.pool, setup.port_id, q, false)
                .map_err(|e| drv_err(self.name(), "set up RX queue", e))?;
            rxq.set_vlan_strip(setup.vlan_strip);
            rxq.set_max_frame(setup.max_frame);
            let r = rxq.ring();
            self.enable_queue(index, size, r.desc_iova(), r.avail_iova(), r.used_iova())?;
            Box::new(RxQueueBox::new(rxq, self.shared.clone(), index))
        };
        self.rx_notify.push((index, notify_off));
        Ok(ops)
    }

    fn setup_tx_queue(&mut self, setup: &TxQueueSetup<'_>) -> Result<Box<dyn TxQueueOps>> {
        let q = setup.queue;
        let index = 2 * q + 1;
        let (size, notify_off) = self.select_queue(index, setup.ring_size)?;
        let (mem, hdr) = self.ring_slices(usize::from(self.rx_queues) + usize::from(q), size)?;
        let bell = VirtioDoorbell {
            shared: self.shared.clone(),
            off: notify_off,
            index,
        };
        let check = MappedPools::new(
            self.name(),
            self.dma.container().clone(),
            setup.pool,
            &format!("TX queue {q}"),
        );
        let csum = self.features & feature::NET_CSUM != 0;
        let tso = (
            self.features & feature::NET_HOST_TSO4 != 0,
            self.features & feature::NET_HOST_TSO6 != 0,
        );
        let check: Option<Box<dyn TxAddressCheck>> = Some(Box::new(check));
        if self.packed() {
            let ring = PackedRing::new(mem, size).ok_or_else(|| {
                drv_err(
                    self.name(),
                    "set up TX queue",
                    VirtioError::State("ring does not fit"),
                )
            })?;
            let txq = VirtioTxQueue::new(ring, hdr, bell, csum, check)
                .map_err(|e| drv_err(self.name(), "set up TX queue", e))?
                .with_tso(tso.0, tso.1);
            let r = txq.ring();
            self.enable_queue(index, size, r.desc_iova(), r.avail_iova(), r.used_iova())?;
            Ok(Box::new(TxQueueBox(txq)))
        } else {
            let ring = SplitRing::new(mem, size)
                .map_err(|e| drv_err(self.name(), "set up TX queue", queue::QueueError::Ring(e)))?;
            let txq = VirtioTxQueue::new(ring, hdr, bell, csum, check)
                .map_err(|e| drv_err(self.name(), "set up TX queue", e))?
                .with_tso(tso.0, tso.1);
            let r = txq.ring();
            self.enable_queue(index, size, r.desc_iova(), r.avail_iova(), r.used_iova())?;
            Ok(Box::new(TxQueueBox(txq)))
        }
    }

    fn start(&mut self) -> Result<()> {
        if self.shared.stopped.is_done() {
            return Err(drv_err(
                self.name(),
                "start",
                VirtioError::State("the device was reset by a queue teardown; reopen the port"),
            ));
        }
        if !self.driver_ok {
            self.shared
                .add_status(status::DRIVER_OK)
                .map_err(self.reg_err("set DRIVER_OK"))?;
            self.driver_ok = true;
            self.apply_ctrl()?;
        }
        self.check_state()?;
        for &(index, off) in &self.rx_notify {
            self.shared
                .notify
                .write16(off, index)
                .map_err(self.reg_err("notify RX queue"))?;
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        // virtio 1.0 cannot pause a queue without a reset (which would lose the queues): the
        // device keeps filling the posted RX buffers, and nothing is sent since nothing is posted.
        Ok(())
    }

    fn link(&mut self) -> Result<LinkStatus> {
        intr::read_link(&self.shared, self.features).map_err(self.reg_err("read link status"))
    }

    fn link_events(&mut self) -> Result<Box<dyn crate::link_events::LinkEventSource>> {
        Ok(Box::new(intr::VirtioLinkSource::arm(
            self.shared.clone(),
            self.features,
            self.driver_ok,
        )?))
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<()> {
        if self.features & feature::NET_CTRL_MAC_ADDR == 0 {
            return Err(PortError::Unsupported {
                device: self.name().to_string(),
                op: "set MAC address (the device offers no VIRTIO_NET_F_CTRL_MAC_ADDR)",
                driver: DRIVER_NAME,
            });
        }
        if self.driver_ok {
            self.command(
                "set MAC address",
                ctrlcmd::CLASS_MAC,
                ctrlcmd::MAC_ADDR_SET,
                &mac.0,
            )?;
        }
        self.mac = mac;
        self.mac_changed = true;
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        if self.features & feature::NET_CTRL_RX == 0 {
            // Without VIRTIO_NET_F_CTRL_RX the device receives every frame.
            if on {
                return Ok(());
            }
            return Err(PortError::Unsupported {
                device: self.name().to_string(),
                op: "leave promiscuous mode (the device offers no VIRTIO_NET_F_CTRL_RX control virtqueue)",
                driver: DRIVER_NAME,
            });
        }
        if self.driver_ok {
            self.send(&FilterCommand::promiscuous(on))?;
        }
        self.filters.promiscuous = on;
        Ok(())
    }

    fn set_all_multicast(&mut self, on: bool) -> Result<()> {
        if self.features & feature::NET_CTRL_RX == 0 {
            if on {
                return Ok(());
            }
            return Err(PortError::Unsupported {
                device: self.name().to_string(),
                op: "leave all-multicast mode (the device offers no VIRTIO_NET_F_CTRL_RX control virtqueue)",
                driver: DRIVER_NAME,
            });
        }
        if self.driver_ok {
            self.send(&FilterCommand::all_multicast(on))?;
        }
        self.filters.all_multicast = on;
        Ok(())
    }

    fn set_vlan_filter(&mut self, vid: u16, on: bool) -> Result<()> {
        let op = if on {
            "add a VLAN filter"
        } else {
            "remove a VLAN filter"
        };
        if let Some(r) = filters::vlan_refusal(self.offered, self.features, vid) {
            return Err(self.refused(op, r));
        }
        if self.driver_ok {
            self.send(&FilterCommand::vlan(vid, on))?;
        }
        self.filters.set_vlan(vid, on);
        Ok(())
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<()> {
        if let Some(r) = filters::multicast_refusal(self.features, addrs.len()) {
            return Err(self.refused("set the multicast address list", r));
        }
        if self.driver_ok {
            self.send(&FilterCommand::mac_table(addrs))?;
        }
        self.filters.set_multicast(addrs);
        Ok(())
    }

    fn dma_map(&self) -> Option<Arc<dyn DmaMap>> {
        Some(self.dma.clone())
    }
}

impl Drop for VirtioDriver {
    fn drop(&mut self) {
        // Device off before any memory can go: reset (no ring or buffer access afterwards), then
        // bus mastering off.
        self.shared.stop();
        if let Err(e) = self.shared.device.disable_bus_master() {
            log::error!("{}: teardown: bus master off: {e}", self.shared.name);
        }
        log::info!("{}: reset, bus mastering off", self.shared.name);
    }
}

#[cfg(test)]
mod tests;
