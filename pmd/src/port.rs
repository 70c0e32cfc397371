//! [`Port`]: open, configure, start / stop, link, MAC, filters, stats; and the per-thread queue
//! handles [`RxQueue`] / [`TxQueue`].
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use oxpmd_dma::Mempool;

use crate::burst::{Burst, DEFAULT_BURST};
use crate::driver::{
    Capabilities, DeviceInfo, DeviceSpec, Driver, LINK_POLL_INTERVAL, LinkStatus, OpenOptions, RxQueueOps,
    RxQueueSetup, TxQueueOps, TxQueueSetup,
};
use crate::error::{PortError, Result};
use crate::mac::MacAddr;
use crate::stats::{PortStats, QueueCounters, SharedQueueStats};

/// Default ring size (DPDK l2fwd: 1024 RX and TX descriptors).
pub const DEFAULT_RING_SIZE: usize = 1024;

/// Configuration of a port: queue counts, ring sizes and the mempool RX buffers come from.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// RX queues (`1..=max_rx_queues`).
    pub rx_queues: u16,
    /// TX queues (`1..=max_tx_queues`).
    pub tx_queues: u16,
    /// Descriptors per RX ring (power of two in the driver's range).
    pub rx_ring_size: usize,
    /// Descriptors per TX ring (power of two in the driver's range).
    pub tx_ring_size: usize,
    /// Pool for RX buffers (all RX queues share it; each queue keeps its own cache).
    pub mempool: Mempool,
    /// Strip the outer 802.1Q tag of received frames into the packet's `vlan_tci()` (needs
    /// [`Capabilities::VLAN_STRIP`]).
    pub vlan_strip: bool,
    /// Drop tagged frames whose VLAN id is not in the filter table ([`Port::vlan_filter_add`];
    /// needs [`Capabilities::VLAN_FILTER`]). The table starts empty.
    pub vlan_filter: bool,
    /// The RSS hash key (`rss_key_len` bytes); `None`: the driver picks a random one (see
    /// [`Port::rss_key`]).
    pub rss_key: Option<Vec<u8>>,
    /// The header fields to hash; `None`: every type the device offers.
    pub rss_hash: Option<crate::rss::RssHash>,
}

/// Why `pool` cannot serve the RX queues of a device described by `info` (`None`: it can): the
/// device uses the data room rounded down to whole [`DeviceInfo::rx_buffer_unit`]s, which must
/// hold [`DeviceInfo::min_rx_buffer`] bytes.
pub(crate) fn rx_buffer_refusal(pool: &Mempool, info: &DeviceInfo) -> Option<String> {
    let room = pool.data_room();
    let unit = info.rx_buffer_unit.max(1);
    let used = room - room % unit;
    if used >= info.min_rx_buffer {
        return None;
    }
    let min = info.min_rx_buffer.next_multiple_of(unit);
    Some(if used == room {
        format!(
            "mempool `{}` has {room} bytes of data room per buffer; {} needs at least {min}",
            pool.name(),
            info.driver,
        )
    } else {
        format!(
            "mempool `{}` has a data room of {room} bytes; {} receives into buffers of whole {unit} \
             bytes and would use {used}, less than a full frame of {} bytes; use a data room of at \
             least {min} bytes",
            pool.name(),
            info.driver,
            info.min_rx_buffer
        )
    })
}

impl PortConfig {
    /// One RX and one TX queue of [`DEFAULT_RING_SIZE`] descriptors, buffers from `mempool`.
    pub fn new(mempool: Mempool) -> Self {
        PortConfig {
            rx_queues: 1,
            tx_queues: 1,
            rx_ring_size: DEFAULT_RING_SIZE,
            tx_ring_size: DEFAULT_RING_SIZE,
            mempool,
            vlan_strip: false,
            vlan_filter: false,
            rss_key: None,
            rss_hash: None,
        }
    }

    /// Sets the queue counts.
    pub fn queues(mut self, rx: u16, tx: u16) -> Self {
        self.rx_queues = rx;
        self.tx_queues = tx;
        self
    }

    /// RX VLAN stripping on or off.
    pub fn vlan_strip(mut self, on: bool) -> Self {
        self.vlan_strip = on;
        self
    }

    /// RX VLAN filtering on or off.
    pub fn vlan_filter(mut self, on: bool) -> Self {
        self.vlan_filter = on;
        self
    }

    /// The RSS hash key.
    pub fn rss_key(mut self, key: &[u8]) -> Self {
        self.rss_key = Some(key.to_vec());
        self
    }

    /// The header fields RSS hashes.
    pub fn rss_hash(mut self, hash: crate::rss::RssHash) -> Self {
        self.rss_hash = Some(hash);
        self
    }

    /// Sets the ring sizes.
    pub fn ring_sizes(mut self, rx: usize, tx: usize) -> Self {
        self.rx_ring_size = rx;
        self.tx_ring_size = tx;
        self
    }

    /// Checks the configuration against what the device supports (invariant 5: bad input is an
    /// error naming the accepted range, never a panic).
    pub fn validate(&self, device: &str, info: &DeviceInfo) -> Result<()> {
        let bad = |reason: String| PortError::InvalidConfig {
            device: device.to_string(),
            op: "configure",
            reason,
        };
        if self.rx_queues == 0 || self.rx_queues > info.max_rx_queues {
            return Err(bad(format!(
                "{} RX queues requested: {} supports 1..={}",
                self.rx_queues, info.driver, info.max_rx_queues
            )));
        }
        if self.tx_queues == 0 || self.tx_queues > info.max_tx_queues {
            return Err(bad(format!(
                "{} TX queues requested: {} supports 1..={}",
                self.tx_queues, info.driver, info.max_tx_queues
            )));
        }
        for (what, n) in [("RX", self.rx_ring_size), ("TX", self.tx_ring_size)] {
            if !n.is_power_of_two() || n < info.min_ring_size || n > info.max_ring_size {
                return Err(bad(format!(
                    "{what} ring size {n}: expected a power of two in {}..={}",
                    info.min_ring_size, info.max_ring_size
                )));
            }
        }
        if let Some(reason) = rx_buffer_refusal(&self.mempool, info) {
            return Err(bad(reason));
        }
        if (self.rss_key.is_some() || self.rss_hash.is_some()) && info.reta_size == 0 {
            return Err(bad(format!(
                "an RSS key or hash types asked for: {} does not hash received frames over queues",
                info.driver
            )));
        }
        if let Some(k) = &self.rss_key
            && k.len() != info.rss_key_len
        {
            return Err(bad(format!(
                "RSS key of {} bytes: {} takes {}",
                k.len(),
                info.driver,
                info.rss_key_len
            )));
        }
        if let Some(h) = self.rss_hash
            && (h.is_empty() || !info.rss_hash.contains(h))
        {
            return Err(bad(format!(
                "RSS hash types `{h}`: {} hashes `{}` (one or more of them)",
                info.driver, info.rss_hash
            )));
        }
        for (asked, cap, what) in [
            (self.vlan_strip, Capabilities::VLAN_STRIP, "VLAN stripping"),
            (self.vlan_filter, Capabilities::VLAN_FILTER, "VLAN filtering"),
        ] {
            if asked && !info.capabilities.contains(cap) {
                return Err(bad(format!(
                    "{what} asked for: {} has no {cap} (it offers: {}); configure without it",
                    info.driver, info.capabilities
                )));
            }
        }
        let needed = usize::from(self.rx_queues) * (self.rx_ring_size + DEFAULT_BURST);
        if self.mempool.capacity() < needed {
            return Err(PortError::PoolTooSmall {
                device: device.to_string(),
                op: "configure",
                available: self.mempool.capacity(),
                needed,
            });
        }
        Ok(())
    }
}

/// Where a port is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    /// Opened, not configured.
    Opened,
    /// Configured: queues built.
    Configured,
    /// Started: moving packets.
    Started,
    /// Stopped after a start.
    Stopped,
}

impl PortState {
    fn name(self) -> &'static str {
        match self {
            PortState::Opened => "not configured",
            PortState::Configured => "configured",
            PortState::Started => "started",
            PortState::Stopped => "stopped",
        }
    }
}

/// A network port. Control operations take `&mut self`; the datapath runs on the queues taken
/// with [`Port::take_queues`], each owned by one thread.
///
/// Drop order (invariant 3): the device is stopped, the queues still held here are dropped (each
/// disables its hardware queue before freeing its ring and buffers), then the driver (device off).
pub struct Port {
    port_id: u16,
    name: String,
    state: PortState,
    promiscuous: bool,
    all_multicast: bool,
    rx_queues: Vec<RxQueue>,
    tx_queues: Vec<TxQueue>,
    rx_stats: Vec<Arc<SharedQueueStats>>,
    tx_stats: Vec<Arc<SharedQueueStats>>,
    queues_taken: bool,
    /// Configured with VLAN filtering ([`PortConfig::vlan_filter`]).
    vlan_filter: bool,
    /// The RSS redirection table as programmed (empty: no RSS, or not configured).
    reta: Vec<u16>,
    rx_queue_count: u16,
    /// Declared last: dropped after the queues.
    driver: Box<dyn Driver>,
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("port_id", &self.port_id)
            .field("name", &self.name)
            .field("state", &self.state)
            .finish()
    }
}

impl Port {
    /// Opens the device named by `spec` (see [`DeviceSpec`]) as port `port_id`.
    pub fn open(spec: &str, port_id: u16) -> Result<Port> {
        Self::open_spec(
            &DeviceSpec::parse(spec)?,
            &OpenOptions {
                port_id,
                ..OpenOptions::default()
            },
        )
    }

    /// Opens a parsed device spec with options.
    pub fn open_spec(spec: &DeviceSpec, opts: &OpenOptions) -> Result<Port> {
        Ok(Self::with_driver(Self::open_driver(spec, opts)?, opts.port_id))
    }

    /// The driver of a device spec (a `fault:` spec wraps the driver of its inner device).
    fn open_driver(spec: &DeviceSpec, opts: &OpenOptions) -> Result<Box<dyn Driver>> {
        Ok(match spec {
            DeviceSpec::Pci(addr) => crate::drivers::open_pci(*addr, opts)?,
            DeviceSpec::Null { index, size } => Box::new(crate::vport::null::NullDriver::new(*index, *size)),
            DeviceSpec::Ring { name } => Box::new(crate::vport::ring::RingDriver::open(name)?),
            DeviceSpec::Fault { faults, inner } => Box::new(crate::vport::fault::FaultDriver::new(
                faults.clone(),
                Self::open_driver(inner, opts)?,
            )),
            DeviceSpec::VfService { socket, vf } => Box::new(
                crate::drivers::igbvf::IgbvfDriver::open_from_service(socket, *vf)?,
            ),
        })
    }

    /// Wraps an already opened driver (tests, out-of-tree drivers).
    pub fn with_driver(driver: Box<dyn Driver>, port_id: u16) -> Port {
        Port {
            port_id,
            name: driver.device_name().to_string(),
            state: PortState::Opened,
            promiscuous: false,
            all_multicast: false,
            rx_queues: Vec::new(),
            tx_queues: Vec::new(),
            rx_stats: Vec::new(),
            tx_stats: Vec::new(),
            queues_taken: false,
            vlan_filter: false,
            reta: Vec::new(),
            rx_queue_count: 0,
            driver,
        }
    }

    /// Port id (written into received packets).
    pub fn id(&self) -> u16 {
        self.port_id
    }

    /// Device name (PCI address or virtual-port name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Driver capabilities.
    pub fn info(&self) -> DeviceInfo {
        self.driver.info()
    }

    /// The device's DMA mapper (see [`Driver::dma_map`]): create the RX mempool with it.
    pub fn dma_map(&self) -> Option<Arc<dyn oxpmd_dma::DmaMap>> {
        self.driver.dma_map()
    }

    /// Life-cycle state.
    pub fn state(&self) -> PortState {
        self.state
    }

    fn wrong_state(&self, op: &'static str, hint: &'static str) -> PortError {
        PortError::WrongState {
            device: self.name.clone(),
            op,
            state: self.state.name(),
            hint,
        }
    }

    /// Validates `config`, applies it and builds every queue. Only once, before `start`.
    pub fn configure(&mut self, config: &PortConfig) -> Result<()> {
        if self.state != PortState::Opened {
            return Err(self.wrong_state("configure", "configure a port once, right after opening it"));
        }
        let info = self.driver.info();
        config.validate(&self.name, &info)?;
        self.driver.configure(config)?;
        let device: Arc<str> = Arc::from(self.name.as_str());
        let mut rxq = Vec::with_capacity(usize::from(config.rx_queues));
        for q in 0..config.rx_queues {
            let setup = RxQueueSetup {
                queue: q,
                ring_size: config.rx_ring_size,
                pool: &config.mempool,
                port_id: self.port_id,
                vlan_strip: config.vlan_strip,
            };
            let ops = self.driver.setup_rx_queue(&setup)?;
            rxq.push(RxQueue::new(ops, self.port_id, q, device.clone()));
        }
        let mut txq = Vec::with_capacity(usize::from(config.tx_queues));
        for q in 0..config.tx_queues {
            let setup = TxQueueSetup {
                queue: q,
                ring_size: config.tx_ring_size,
                port_id: self.port_id,
                pool: &config.mempool,
            };
            let ops = self.driver.setup_tx_queue(&setup)?;
            txq.push(TxQueue::new(ops, self.port_id, q, device.clone()));
        }
        self.rx_stats = rxq.iter().map(|q| q.shared.clone()).collect();
        self.tx_stats = txq.iter().map(|q| q.shared.clone()).collect();
        self.rx_queues = rxq;
        self.tx_queues = txq;
        self.vlan_filter = config.vlan_filter;
        self.reta = crate::rss::round_robin_reta(info.reta_size, config.rx_queues);
        self.rx_queue_count = config.rx_queues;
        self.state = PortState::Configured;
        Ok(())
    }

    /// Starts the port (after `configure`, or again after `stop`).
    pub fn start(&mut self) -> Result<()> {
        match self.state {
            PortState::Configured | PortState::Stopped => {
                self.driver.start()?;
                self.state = PortState::Started;
                Ok(())
            }
            PortState::Started => Ok(()),
            PortState::Opened => Err(self.wrong_state("start", "call configure first")),
        }
    }

    /// Stops reception and transmission. Queues keep their buffers until they are dropped.
    pub fn stop(&mut self) -> Result<()> {
        if self.state == PortState::Started {
            self.driver.stop()?;
            self.state = PortState::Stopped;
        }
        Ok(())
    }

    /// Hands out every queue (once): send each to the thread that polls it.
    pub fn take_queues(&mut self) -> Result<(Vec<RxQueue>, Vec<TxQueue>)> {
        if self.state == PortState::Opened {
            return Err(self.wrong_state("take queues", "call configure first"));
        }
        if self.queues_taken {
            return Err(self.wrong_state("take queues", "the queues were already taken"));
        }
        self.queues_taken = true;
        Ok((
            std::mem::take(&mut self.rx_queues),
            std::mem::take(&mut self.tx_queues),
        ))
    }

    /// Current link state.
    pub fn link_status(&mut self) -> Result<LinkStatus> {
        self.driver.link()
    }

    /// Link-state events of this port ([`LinkEvents`](crate::link_events::LinkEvents)), backed
    /// by the device's link-change interrupt; refused ([`PortError::Unsupported`], or the driver's
    /// reason) by a device that has none. One handle at a time per port.
    pub fn link_events(&mut self) -> Result<crate::link_events::LinkEvents> {
        let source = self.driver.link_events()?;
        crate::link_events::LinkEvents::new(&self.name, source)
    }

    /// Polls the link until it is up or `timeout` has passed ([`PortError::LinkTimeout`]).
    pub fn wait_link_up(&mut self, timeout: Duration) -> Result<LinkStatus> {
        let start = Instant::now();
        loop {
            let l = self.driver.link()?;
            if l.up {
                return Ok(l);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(PortError::LinkTimeout {
                    device: self.name.clone(),
                    waited,
                });
            }
            std::thread::sleep(LINK_POLL_INTERVAL.min(timeout - waited));
        }
    }

    /// The port's MAC address.
    pub fn mac_addr(&self) -> MacAddr {
        self.driver.mac_addr()
    }

    /// Sets the MAC address; multicast and zero addresses are refused.
    pub fn set_mac_addr(&mut self, mac: MacAddr) -> Result<()> {
        if !mac.is_valid_unicast() {
            return Err(PortError::InvalidConfig {
                device: self.name.clone(),
                op: "set MAC address",
                reason: format!("{mac} is not a unicast address (zero or multicast bit set)"),
            });
        }
        self.driver.set_mac_addr(mac)
    }

    /// Enables or disables promiscuous mode.
    pub fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        self.driver.set_promiscuous(on)?;
        self.promiscuous = on;
        Ok(())
    }

    /// Whether promiscuous mode is on.
    pub fn promiscuous(&self) -> bool {
        self.promiscuous
    }

    /// Enables or disables all-multicast mode.
    pub fn set_all_multicast(&mut self, on: bool) -> Result<()> {
        self.driver.set_all_multicast(on)?;
        self.all_multicast = on;
        Ok(())
    }

    /// Whether all-multicast mode is on.
    pub fn all_multicast(&self) -> bool {
        self.all_multicast
    }

    /// Port statistics: queue counters (published by the queues' threads) plus device counters.
    /// Reading never disturbs the datapath beyond sharing the counters' cache lines.
    pub fn stats(&mut self) -> Result<PortStats> {
        let dev = self.driver.device_counters()?;
        let rx: Vec<QueueCounters> = self.rx_stats.iter().map(|s| s.snapshot()).collect();
        let tx: Vec<QueueCounters> = self.tx_stats.iter().map(|s| s.snapshot()).collect();
        let mut st = PortStats {
            imissed: dev.imissed,
            ierrors: dev.ierrors,
            oerrors: dev.oerrors,
            ..Default::default()
        };
        for q in &rx {
            st.ipackets += q.packets;
            st.ibytes += q.bytes;
            st.rx_nombuf += q.rx_nombuf;
            st.ierrors += q.ierrors;
            st.rx_multiseg_dropped += q.rx_multiseg_dropped;
        }
        for q in &tx {
            st.opackets += q.packets;
            st.obytes += q.bytes;
            st.oerrors += q.ierrors;
        }
        st.rx_queues = rx;
        st.tx_queues = tx;
        Ok(st)
    }

    /// Accepts tagged frames of VLAN `vid` (0..=4095) on a port configured with
    /// [`PortConfig::vlan_filter`] (like `rte_eth_dev_vlan_filter(port, vid, 1)`).
    pub fn vlan_filter_add(&mut self, vid: u16) -> Result<()> {
        self.vlan_filter_set(vid, true)
    }

    /// Drops tagged frames of VLAN `vid` again.
    pub fn vlan_filter_remove(&mut self, vid: u16) -> Result<()> {
        self.vlan_filter_set(vid, false)
    }

    fn vlan_filter_set(&mut self, vid: u16, on: bool) -> Result<()> {
        let op = if on {
            "add a VLAN filter"
        } else {
            "remove a VLAN filter"
        };
        let bad = |reason: String| PortError::InvalidConfig {
            device: self.name.clone(),
            op,
            reason,
        };
        if vid > crate::vlan::MAX_VID {
            return Err(bad(format!(
                "VLAN id {vid} out of range 0..={}",
                crate::vlan::MAX_VID
            )));
        }
        if !self.vlan_filter {
            return Err(bad(
                "VLAN filtering is off on this port: configure it with PortConfig::vlan_filter(true)".into(),
            ));
        }
        self.driver.set_vlan_filter(vid, on)
    }

    /// Receives the multicast groups of `addrs` (replacing the previous list; empty: none),
    /// like `rte_eth_dev_set_mc_addr_list`. Every address must be a multicast one; a device
    /// without a multicast filter (see [`Capabilities::MULTICAST_LIST`]) refuses.
    pub fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<()> {
        if let Some(bad) = addrs.iter().find(|m| !m.is_multicast() || m.0 == [0xff; 6]) {
            return Err(PortError::InvalidConfig {
                device: self.name.clone(),
                op: "set the multicast address list",
                reason: format!(
                    "{bad} is not a multicast group address (the first byte's low bit set, not broadcast)"
                ),
            });
        }
        self.driver.set_mc_addr_list(addrs)
    }

    /// The RSS redirection table (entry `i`: the RX queue of frames whose hash's low bits are
    /// `i`); round-robin over the RX queues after configure, empty for a device without RSS.
    pub fn rss_reta(&self) -> &[u16] {
        &self.reta
    }

    /// Writes the RSS redirection table (like `rte_eth_dev_rss_reta_update`): `reta` has
    /// `DeviceInfo::reta_size` entries, each an RX queue of this port. On an error nothing changed.
    pub fn rss_reta_update(&mut self, reta: &[u16]) -> Result<()> {
        let bad = |reason: String| PortError::InvalidConfig {
            device: self.name.clone(),
            op: "update the RSS redirection table",
            reason,
        };
        if self.state == PortState::Opened {
            return Err(self.wrong_state("update the RSS redirection table", "call configure first"));
        }
        if self.reta.is_empty() {
            return Err(bad(format!(
                "{} has no RSS redirection table",
                self.info().driver
            )));
        }
        if reta.len() != self.reta.len() {
            return Err(bad(format!(
                "{} entries given, the table has {}",
                reta.len(),
                self.reta.len()
            )));
        }
        if let Some((i, q)) = reta.iter().enumerate().find(|(_, q)| **q >= self.rx_queue_count) {
            return Err(bad(format!(
                "entry {i} names RX queue {q}: the port has {} (0..={})",
                self.rx_queue_count,
                self.rx_queue_count - 1
            )));
        }
        self.driver.set_rss_reta(reta)?;
        self.reta = reta.to_vec();
        Ok(())
    }

    /// The RSS hash key in use (the configured one or the driver's random one), if the device
    /// hashes.
    pub fn rss_key(&self) -> Option<Vec<u8>> {
        self.driver.rss_key()
    }

    /// Every counter of the port by name (like `rte_eth_xstats_get`): the port-level and
    /// per-queue counters under DPDK's basic names, then the device's own (for igb every
    /// statistics register, named as DPDK's e1000 driver names them). 64-bit totals since the
    /// port was opened; see [`crate::xstats`].
    pub fn xstats(&mut self) -> Result<Vec<crate::xstats::XStat>> {
        let st = self.stats()?;
        let mut out = Vec::with_capacity(96);
        crate::xstats::basic(&st, &mut out);
        self.driver.xstats(&mut out)?;
        Ok(out)
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if self.state == PortState::Started {
            if let Err(e) = self.driver.stop() {
                log::warn!("{}: stop at drop: {e}", self.name);
            }
        }
        // Queues still held here are dropped before the driver (field order is not relied upon).
        self.rx_queues.clear();
        self.tx_queues.clear();
    }
}

/// An RX queue: owned by one thread, `Send`, no lock per burst.
pub struct RxQueue {
    ops: Box<dyn RxQueueOps>,
    rx_interrupt: bool,
    counters: QueueCounters,
    shared: Arc<SharedQueueStats>,
    port_id: u16,
    queue: u16,
    device: Arc<str>,
}

impl std::fmt::Debug for RxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxQueue")
            .field("device", &self.device)
            .field("queue", &self.queue)
            .finish()
    }
}

impl RxQueue {
    /// Wraps a driver queue (done by [`Port::configure`]).
    pub fn new(ops: Box<dyn RxQueueOps>, port_id: u16, queue: u16, device: Arc<str>) -> RxQueue {
        RxQueue {
            ops,
            rx_interrupt: false,
            counters: QueueCounters::default(),
            shared: Arc::default(),
            port_id,
            queue,
            device,
        }
    }

    /// Appends up to `out.room()` received packets to `out`; returns how many.
    #[inline]
    pub fn rx_burst(&mut self, out: &mut Burst) -> usize {
        let n = self.ops.rx_burst(out, &mut self.counters);
        self.shared.publish(&self.counters);
        n
    }

    /// Gives this queue an RX interrupt of its own (an MSI-X vector, masked until a wait arms
    /// it): then [`wait_for_rx`](crate::rx_interrupt::wait_for_rx) can sleep on it. Refused
    /// ([`PortError::NoRxInterrupt`]) by a driver that has none.
    pub fn enable_rx_interrupt(&mut self) -> Result<()> {
        self.ops.enable_interrupt(&self.device, self.queue)?;
        self.rx_interrupt = true;
        Ok(())
    }

    /// Whether [`enable_rx_interrupt`](Self::enable_rx_interrupt) succeeded.
    pub fn rx_interrupt_enabled(&self) -> bool {
        self.rx_interrupt
    }

    /// The eventfd of the queue's RX interrupt, for an application's own epoll: arm with
    /// [`arm_rx_interrupt`](Self::arm_rx_interrupt) before sleeping on it.
    pub fn rx_interrupt_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.ops.interrupt_fd()
    }

    /// Unmasks the RX interrupt, then checks the ring once more: `true` when a frame is already
    /// there (do not sleep: poll). Never strands a frame that landed while the interrupt was masked.
    pub fn arm_rx_interrupt(&mut self) -> Result<bool> {
        if !self.rx_interrupt {
            return Err(PortError::RxInterruptNotEnabled {
                device: self.device.to_string(),
                queue: self.queue,
            });
        }
        self.ops.arm_interrupt()
    }

    /// Masks the RX interrupt again (after a wake-up, before polling) and consumes its count.
    pub fn disarm_rx_interrupt(&mut self) -> Result<()> {
        if !self.rx_interrupt {
            return Ok(());
        }
        self.ops.disarm_interrupt()
    }

    /// Port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// Queue index.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// Device name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// This queue's counters (as the owner sees them).
    pub fn counters(&self) -> QueueCounters {
        self.counters
    }
}

/// A TX queue: owned by one thread, `Send`, no lock per burst.
pub struct TxQueue {
    ops: Box<dyn TxQueueOps>,
    counters: QueueCounters,
    shared: Arc<SharedQueueStats>,
    port_id: u16,
    queue: u16,
    device: Arc<str>,
}

impl std::fmt::Debug for TxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxQueue")
            .field("device", &self.device)
            .field("queue", &self.queue)
            .finish()
    }
}

impl TxQueue {
    /// Wraps a driver queue (done by [`Port::configure`]).
    pub fn new(ops: Box<dyn TxQueueOps>, port_id: u16, queue: u16, device: Arc<str>) -> TxQueue {
        TxQueue {
            ops,
            counters: QueueCounters::default(),
            shared: Arc::default(),
            port_id,
            queue,
            device,
        }
    }

    /// Sends packets from the front of `pkts`; what was not taken stays in `pkts`, in order.
    /// Returns how many were taken.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut Burst) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        let n = self.ops.tx_burst(pkts, &mut self.counters);
        self.shared.publish(&self.counters);
        n
    }

    /// Frees buffers of packets the device has finished sending.
    pub fn reclaim(&mut self) -> usize {
        self.ops.reclaim()
    }

    /// Port id.
    pub fn port_id(&self) -> u16 {
        self.port_id
    }

    /// Queue index.
    pub fn queue_id(&self) -> u16 {
        self.queue
    }

    /// Device name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// This queue's counters (as the owner sees them).
    pub fn counters(&self) -> QueueCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxpmd_dma::{IdentityMap, MempoolConfig, PageSize, RegionOptions};

    fn pool(data_room: usize) -> Mempool {
        let c = MempoolConfig {
            data_room,
            cache_size: 0,
            region: RegionOptions {
                page_size: PageSize::Base4K,
                allow_4k_fallback: true,
            },
            ..MempoolConfig::new(format!("room-{data_room}"), 8)
        };
        Mempool::new(&c, Arc::new(IdentityMap)).unwrap()
    }

    #[test]
    fn an_rx_buffer_the_device_would_use_in_part_is_refused_with_the_sizes() {
        let igb = DeviceInfo {
            driver: "igb",
            max_rx_queues: 8,
            max_tx_queues: 8,
            min_ring_size: 64,
            max_ring_size: 4096,
            min_rx_buffer: 1522,
            rx_buffer_unit: 1024,
            capabilities: crate::driver::Capabilities::NONE,
            reta_size: 0,
            rss_key_len: 0,
            rss_hash: crate::rss::RssHash::NONE,
        };
        for room in [1518, 1600] {
            let msg = rx_buffer_refusal(&pool(room), &igb).expect("refused");
            assert!(
                msg.contains(&format!("data room of {room} bytes"))
                    && msg.contains("would use 1024")
                    && msg.contains("full frame of 1522")
                    && msg.contains("at least 2048"),
                "{msg}"
            );
        }
        for room in [2048, 3000] {
            assert_eq!(rx_buffer_refusal(&pool(room), &igb), None, "{room}");
        }
        let any = DeviceInfo {
            rx_buffer_unit: 1,
            min_rx_buffer: 1518,
            ..igb
        };
        assert_eq!(rx_buffer_refusal(&pool(1518), &any), None);
        let msg = rx_buffer_refusal(&pool(1000), &any).unwrap();
        assert!(
            msg.contains("1000 bytes of data room") && msg.contains("at least 1518"),
            "{msg}"
        );
    }
}
