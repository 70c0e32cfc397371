//! [`Port`]: open, configure, start / stop, link, MAC, filters, stats; and the per-thread queue
//! handles [`RxQueue`] / [`TxQueue`].
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::driver::{
    DeviceInfo, DeviceSpec, Driver, LINK_POLL_INTERVAL, LinkStatus, OpenOptions, RxQueueSetup, TxQueueSetup,
};
use crate::error::{PortError, Result};
use crate::mac::MacAddr;
use crate::stats::{PortStats, QueueCounters, SharedQueueStats};

mod config;
mod queue;

pub(crate) use config::rx_buffer_refusal;
pub use config::{DEFAULT_RING_SIZE, PortConfig};
pub use queue::{RxQueue, TxQueue};

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
    /// The MTU as set ([`PortConfig::mtu`], [`Port::set_mtu`]).
    mtu: u16,
    /// The pool the RX queues receive into (once configured): what a new MTU is checked against.
    rx_pool: Option<oxpmd_dma::Mempool>,
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
            DeviceSpec::Xdp(x) => Box::new(crate::vport::xdp::XdpDriver::open(x)?),
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
            mtu: crate::driver::DEFAULT_MTU,
            rx_pool: None,
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
        self.driver.set_mtu(config.mtu)?;
        let device: Arc<str> = Arc::from(self.name.as_str());
        let mut rxq = Vec::with_capacity(usize::from(config.rx_queues));
        for q in 0..config.rx_queues {
            let setup = RxQueueSetup {
                queue: q,
                ring_size: config.rx_ring_size,
                pool: &config.mempool,
                port_id: self.port_id,
                vlan_strip: config.vlan_strip,
                max_frame: crate::driver::max_frame_len(info.max_mtu),
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
        self.mtu = config.mtu;
        self.rx_pool = Some(config.mempool.clone());
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

    /// The MTU.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// Sets the MTU ([`MIN_MTU`](crate::driver::MIN_MTU)`..=`[`DeviceInfo::max_mtu`]): frames up
    /// to [`max_frame_len`](crate::driver::max_frame_len)`(mtu)` are received, in several
    /// segments when larger than one RX buffer. Allowed in any state once configured; before,
    /// set [`PortConfig::mtu`] instead.
    pub fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        let Some(pool) = &self.rx_pool else {
            return Err(self.wrong_state("set the MTU", "set PortConfig::mtu, or configure first"));
        };
        crate::port::config::mtu_refusal(mtu, pool, &self.driver.info()).map_err(|reason| {
            PortError::InvalidConfig {
                device: self.name.clone(),
                op: "set the MTU",
                reason,
            }
        })?;
        self.driver.set_mtu(mtu)?;
        self.mtu = mtu;
        Ok(())
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
    /// without a multicast filter (see [`Capabilities::MULTICAST_LIST`](crate::Capabilities::MULTICAST_LIST)) refuses.
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

#[cfg(test)]
mod tests {
    use super::*;
    use oxpmd_dma::{IdentityMap, Mempool, MempoolConfig, PageSize, RegionOptions};

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
            max_rx_queues: 8,
            max_tx_queues: 8,
            min_rx_buffer: 1522,
            rx_buffer_unit: 1024,
            ..DeviceInfo::basic("igb")
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
