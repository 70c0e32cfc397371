//! Intel 82576 (igb) physical function driver, over VFIO.
//!
//! Bring-up (the order of the datasheet and of QEMU's own tests; see `docs/igb.md`):
//! PCI COMMAND memory + bus master → mask interrupts → `CTRL.RST`, wait, mask again →
//! `CTRL_EXT.DRV_LOAD` → `CTRL.SLU` and PHY autonegotiation restarted through MDIC (the link comes
//! up asynchronously: [`Port::wait_link_up`](crate::Port::wait_link_up)) → MAC read from RAL0/RAH0
//! and written back valid → multicast table cleared. `configure` programs RSS (MRQC, a redirection
//! table spreading the RX queues, a random key; the hash goes into each packet's metadata) and RX
//! checksum status (RXCSUM); queues are built on the shared [`adv_ring`](crate::adv_ring) and
//! enabled; `start` sets RCTL.EN / TCTL.EN.
//!
//! DMA memory: every igb port of the process shares one VFIO container (one IOMMU address space),
//! so a mempool made with one port's [`dma_map`](crate::Driver::dma_map) is valid for all of them.
//! Descriptor rings live in one hugepage region per port mapped through that container; the RX
//! pool given to `configure` is checked to be mapped there, and a TX queue checks once per pool
//! that what it sends is mapped (design invariant 3).
//!
//! Teardown: a queue's `Drop` clears its RXDCTL/TXDCTL enable and polls it off before its buffers
//! and ring go back; the driver's `Drop` clears RCTL.EN / TCTL.EN, disables every queue it set up,
//! then turns bus mastering off. Memory is freed afterwards by its owners (queues, pools).

mod error;
pub(crate) mod intr;
pub(crate) mod multicast;
pub mod regs;
mod rss;
mod stats;
mod vlan;

pub use self::error::IgbError;
pub use self::stats::{IgbHwStats, IgbStatsReader};

use self::error::drv_err;

mod queue;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxpmd_dma::DmaMap;
use oxpmd_vfio::{BarView, Device, PciAddress};

use self::queue::IgbRxQueue;
use self::regs::{IgbReg, filter, general, interrupt, mdic, rx, tx};
use crate::adv_ring::{MAX_RING_SIZE, MIN_RING_SIZE};
use crate::driver::{
    Capabilities, DeviceInfo, Driver, LinkStatus, OpenOptions, RxQueueOps, RxQueueSetup, TxQueueOps,
    TxQueueSetup,
};
use crate::drivers::igb_family::open::{disable_bus_master, enable_bus_master, map_bar0};
use crate::drivers::igb_family::port_queues::PortQueues;
use crate::drivers::igb_family::queue_regs as qregs;
use crate::error::Result;
use crate::mac::MacAddr;
use crate::port::PortConfig;
use crate::stats::DeviceCounters;

/// Driver name.
pub const DRIVER_NAME: &str = "igb";
/// Most RX / TX queues this driver uses (RSS over up to 8 queues, as Linux igb on the 82576).
pub const MAX_QUEUES: u16 = 8;
/// The largest frame an RX buffer must hold while LPE is off: 1518 bytes and a VLAN tag (the
/// buffer also holds the FCS should it not be stripped). The buffer size the device uses is the
/// data room rounded down to whole KiB (SRRCTL.BSIZEPKT), so the smallest data room is 2048.
pub const MIN_RX_BUFFER: usize = 1522;
/// The largest MTU: Linux igb's largest frame on the 82576, 9216 bytes, less the Ethernet
/// header, the FCS and two VLAN tags.
pub const MAX_MTU: u16 = 9216 - 26;
/// How long the device may take to come out of `CTRL.RST`.
const RESET_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one MDIC (PHY register) operation may take.
const MDIC_TIMEOUT: Duration = Duration::from_millis(200);

/// What the driver and its queues share: the device, its BAR0 and the counters.
pub(crate) struct IgbShared {
    pub(crate) name: String,
    /// BAR0, checked at open to hold every register of [`IgbReg`].
    pub(crate) regs: BarView<IgbReg>,
    device: Device,
    stats: Mutex<stats::HwTotals>,
    /// MSI-X, enabled on first use (link events), and the claim on the link vector.
    msix: crate::link_events::MsixVectors,
}

impl IgbShared {
    #[inline]
    pub(crate) fn read(&self, r: IgbReg) -> u32 {
        self.regs.read(r)
    }

    #[inline]
    pub(crate) fn write(&self, r: IgbReg, v: u32) {
        self.regs.write(r, v);
    }

    fn modify(&self, r: IgbReg, set: u32, clear: u32) -> u32 {
        self.regs.modify(r, set, clear)
    }

    /// Reads every statistics register once into the running totals and returns them.
    fn read_stats(&self) -> stats::HwTotals {
        let mut t = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        t.accumulate(|r| self.read(r));
        t.clone()
    }
}

/// An igb PF opened through VFIO.
pub struct IgbDriver {
    shared: Arc<IgbShared>,
    /// The ring region and the queues set up on it.
    queues: PortQueues<IgbShared>,
    mac: MacAddr,
    /// UPE / MPE bits kept across start / stop.
    filter_bits: u32,
    port_id: u16,
    link_restarted: Instant,
    /// The VLAN filter table as written.
    vlan: vlan::VlanFilter,
    /// The RSS key programmed at configure.
    rss_key: Option<[u8; rss::KEY_LEN]>,
}

impl std::fmt::Debug for IgbDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IgbDriver")
            .field("device", &self.shared.name)
            .field("mac", &self.mac)
            .finish()
    }
}

/// The registry's constructor ([`crate::drivers::OpenFn`]).
pub fn open(addr: PciAddress, opts: &OpenOptions) -> Result<Box<dyn Driver>> {
    Ok(Box::new(IgbDriver::open(addr, opts)?))
}

impl IgbDriver {
    /// Opens the 82576 PF at `addr`: binds it to vfio-pci if it has no driver (a device on a kernel
    /// driver is refused), attaches it to the process's igb container, resets it and starts link
    /// autonegotiation. Does not wait for the link.
    pub fn open(addr: PciAddress, opts: &OpenOptions) -> Result<IgbDriver> {
        let name = addr.to_string();
        let (device, dma) =
            crate::iommu::open_pci_function(addr, None).map_err(|e| e.into_port_error(&name, ""))?;
        let regs = map_bar0(&name, &device)?;
        let shared = Arc::new(IgbShared {
            name: name.clone(),
            regs,
            device,
            stats: Mutex::new(stats::HwTotals::default()),
            msix: crate::link_events::MsixVectors::new(1 + u32::from(MAX_QUEUES)),
        });
        let mut drv = IgbDriver {
            queues: PortQueues::new(shared.clone(), dma),
            shared,
            mac: MacAddr::ZERO,
            filter_bits: 0,
            port_id: opts.port_id,
            link_restarted: Instant::now(),
            vlan: vlan::VlanFilter::default(),
            rss_key: None,
        };
        drv.bring_up()?;
        Ok(drv)
    }

    /// A reader of the hardware counters that stays usable after the driver is boxed into a port.
    pub fn stats_reader(&self) -> IgbStatsReader {
        IgbStatsReader {
            shared: self.shared.clone(),
        }
    }

    /// When the PHY autonegotiation was last restarted (link-up time is measured from here).
    pub fn link_restarted_at(&self) -> Instant {
        self.link_restarted
    }

    fn name(&self) -> &str {
        &self.shared.name
    }

    fn write_reta(&self, reta: &[u16]) {
        for (i, v) in rss::reta_registers(reta).iter().enumerate() {
            self.shared.write(regs::rss::reta(i), *v);
        }
    }

    fn mask_interrupts(&self) {
        self.shared.write(interrupt::IMC, interrupt::ALL);
        self.shared.write(interrupt::EIMC, interrupt::ALL);
        self.shared.read(interrupt::ICR);
    }

    fn bring_up(&mut self) -> Result<()> {
        let s = self.shared.clone();
        enable_bus_master(&s.name, &s.device)?;
        self.mask_interrupts();
        // Reset, wait at least 1 ms, poll until the bit clears.
        s.modify(general::CTRL, general::CTRL_RST, 0);
        std::thread::sleep(Duration::from_millis(2));
        let t = Instant::now();
        while s.read(general::CTRL) & general::CTRL_RST != 0 {
            if t.elapsed() > RESET_TIMEOUT {
                return Err(drv_err(&s.name, "reset", IgbError::ResetTimeout(RESET_TIMEOUT)));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        self.mask_interrupts();
        s.modify(general::CTRL_EXT, general::CTRL_EXT_DRV_LOAD, 0);
        // Receive and transmit stay off until start.
        s.write(rx::RCTL, 0);
        s.write(tx::TCTL, 0);
        // MAC address from entry 0 of the receive address table, written back valid.
        let lo = s.read(filter::RAL0);
        let hi = s.read(filter::RAH0);
        let l = lo.to_le_bytes();
        let h = hi.to_le_bytes();
        let mut mac = MacAddr([l[0], l[1], l[2], l[3], h[0], h[1]]);
        if !mac.is_valid_unicast() {
            let fallback = MacAddr::local(self.port_id);
            log::warn!(
                "{}: RAL0/RAH0 hold no valid MAC ({mac}); using {fallback}",
                s.name
            );
            mac = fallback;
        }
        self.write_mac(mac);
        for i in 0..filter::MTA_LEN {
            s.write(filter::mta(i), 0);
        }
        // Link: let the MAC follow the PHY, restart autonegotiation.
        s.modify(general::CTRL, general::CTRL_SLU, 0);
        self.phy_write(
            mdic::PHY_BMCR,
            mdic::BMCR_AN_ENABLE | mdic::BMCR_RESTART_AN | mdic::BMCR_FULL_DUPLEX | mdic::BMCR_SPEED_1000,
        )?;
        self.link_restarted = Instant::now();
        // Clear the counters the reset may have left.
        s.read_stats();
        *s.stats.lock().unwrap_or_else(|p| p.into_inner()) = stats::HwTotals::default();
        log::info!("{}: igb reset, MAC {mac}, autonegotiation restarted", s.name);
        Ok(())
    }

    /// Writes PHY register `reg` through MDIC and waits for completion.
    fn phy_write(&self, reg: u32, data: u32) -> Result<()> {
        let s = &self.shared;
        let cmd = (data & mdic::DATA_MASK)
            | (reg << mdic::REG_SHIFT)
            | (mdic::PHY_ADDR << mdic::PHY_SHIFT)
            | mdic::OP_WRITE;
        s.write(mdic::MDIC, cmd);
        let t = Instant::now();
        loop {
            let v = s.read(mdic::MDIC);
            if v & mdic::ERROR != 0 {
                return Err(drv_err(
                    &s.name,
                    "PHY write",
                    IgbError::MdicError {
                        op: "write",
                        reg,
                        mdic: v,
                    },
                ));
            }
            if v & mdic::READY != 0 {
                return Ok(());
            }
            if t.elapsed() > MDIC_TIMEOUT {
                return Err(drv_err(
                    &s.name,
                    "PHY write",
                    IgbError::MdicTimeout {
                        op: "write",
                        reg,
                        timeout: MDIC_TIMEOUT,
                    },
                ));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    fn write_mac(&mut self, mac: MacAddr) {
        let m = mac.0;
        let lo = u32::from_le_bytes([m[0], m[1], m[2], m[3]]);
        let hi = u32::from(u16::from_le_bytes([m[4], m[5]])) | filter::RAH_AV;
        let s = &self.shared;
        // Invalidate first so the filter never holds half an address.
        s.write(filter::RAH0, 0);
        s.write(filter::RAL0, lo);
        s.write(filter::RAH0, hi);
        self.mac = mac;
    }
}

/// The link as the STATUS register tells it.
fn link_from_status(st: u32) -> LinkStatus {
    let up = st & general::STATUS_LU != 0;
    let speed_mbps = match (up, st & general::STATUS_SPEED_MASK) {
        (false, _) => 0,
        (true, 0) => 10,
        (true, general::STATUS_SPEED_100) => 100,
        (true, _) => 1000,
    };
    LinkStatus {
        up,
        speed_mbps,
        full_duplex: up && st & general::STATUS_FD != 0,
    }
}

impl Driver for IgbDriver {
    fn device_name(&self) -> &str {
        self.name()
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            driver: DRIVER_NAME,
            max_rx_queues: MAX_QUEUES,
            max_tx_queues: MAX_QUEUES,
            min_ring_size: MIN_RING_SIZE,
            max_ring_size: MAX_RING_SIZE,
            min_rx_buffer: MIN_RX_BUFFER,
            rx_buffer_unit: qregs::SRRCTL_BSIZEPKT_UNIT,
            capabilities: Capabilities::VLAN_STRIP
                | Capabilities::VLAN_FILTER
                | Capabilities::VLAN_INSERT
                | Capabilities::MULTICAST_LIST
                | Capabilities::RX_SCATTER
                | Capabilities::TX_MULTI_SEG
                | Capabilities::TCP_TSO,
            reta_size: regs::rss::RETA_ENTRIES,
            rss_key_len: rss::KEY_LEN,
            rss_hash: rss::supported(),
            max_mtu: MAX_MTU,
            needs_chunk_aligned_pool: false,
        }
    }

    fn configure(&mut self, config: &PortConfig) -> Result<()> {
        let s = self.shared.clone();
        self.queues.configure(config)?;
        // RSS on every RX queue (the hash is reported even with one queue).
        self.write_reta(&crate::rss::round_robin_reta(
            regs::rss::RETA_ENTRIES,
            config.rx_queues,
        ));
        let key = match &config.rss_key {
            // Length checked against the device's by the port.
            Some(k) => <[u8; rss::KEY_LEN]>::try_from(k.as_slice())
                .map_err(|_| drv_err(&s.name, "configure", IgbError::RssKeyLength { len: k.len() }))?,
            None => rss::random_key(),
        };
        for (i, v) in rss::key_registers(&key).iter().enumerate() {
            s.write(regs::rss::rssrk(i), *v);
        }
        self.rss_key = Some(key);
        let fields = rss::mrqc_fields(config.rss_hash.unwrap_or_else(rss::supported));
        s.write(regs::rss::MRQC, regs::rss::MRQC_ENABLE_RSS | fields);
        // Checksum status in the write-back; PCSD: the write-back carries the RSS hash.
        s.write(
            rx::RXCSUM,
            rx::RXCSUM_IPOFLD | rx::RXCSUM_TUOFLD | rx::RXCSUM_PCSD,
        );
        s.write(rx::RCTL, rx::RCTL_BAM | rx::RCTL_SECRC | self.filter_bits);
        self.vlan.configure(&s, config.vlan_strip, config.vlan_filter);
        Ok(())
    }

    fn setup_rx_queue(&mut self, setup: &RxQueueSetup<'_>) -> Result<Box<dyn RxQueueOps>> {
        let info = self.info();
        let (ring, _) = self.queues.set_up_rx(setup, &info, true)?;
        Ok(Box::new(IgbRxQueue {
            ring,
            shared: self.shared.clone(),
            intr: None,
        }))
    }

    fn setup_tx_queue(&mut self, setup: &TxQueueSetup<'_>) -> Result<Box<dyn TxQueueOps>> {
        Ok(Box::new(self.queues.set_up_tx(setup)?))
    }

    fn start(&mut self) -> Result<()> {
        let s = &self.shared;
        s.write(tx::TCTL, tx::TCTL_ON);
        s.modify(rx::RCTL, rx::RCTL_EN, 0);
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        let s = &self.shared;
        s.modify(rx::RCTL, 0, rx::RCTL_EN);
        s.modify(tx::TCTL, 0, tx::TCTL_EN);
        Ok(())
    }

    fn link(&mut self) -> Result<LinkStatus> {
        let st = self.shared.read(general::STATUS);
        Ok(link_from_status(st))
    }

    fn link_events(&mut self) -> Result<Box<dyn crate::link_events::LinkEventSource>> {
        Ok(Box::new(intr::IgbLinkSource::arm(self.shared.clone())?))
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<()> {
        self.write_mac(mac);
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        let (set, clear) = if on { (rx::RCTL_UPE, 0) } else { (0, rx::RCTL_UPE) };
        self.filter_bits = (self.filter_bits & !clear) | set;
        self.shared.modify(rx::RCTL, set, clear);
        Ok(())
    }

    fn set_all_multicast(&mut self, on: bool) -> Result<()> {
        let (set, clear) = if on { (rx::RCTL_MPE, 0) } else { (0, rx::RCTL_MPE) };
        self.filter_bits = (self.filter_bits & !clear) | set;
        self.shared.modify(rx::RCTL, set, clear);
        Ok(())
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        // Beyond the standard MTU the device needs LPE, and then drops frames longer than
        // RLPML, which counts the FCS (as QEMU's hw/net/igb_core.c igb_rx_is_oversized does).
        let rlpml = crate::driver::max_frame_len(mtu) as u32 + 4;
        self.shared.write(rx::RLPML, rlpml);
        let (set, clear) = if mtu > crate::driver::DEFAULT_MTU {
            (rx::RCTL_LPE, 0)
        } else {
            (0, rx::RCTL_LPE)
        };
        self.filter_bits = (self.filter_bits & !clear) | set;
        self.shared.modify(rx::RCTL, set, clear);
        Ok(())
    }

    fn dma_map(&self) -> Option<Arc<dyn DmaMap>> {
        Some(self.queues.dma().clone())
    }

    fn device_counters(&mut self) -> Result<DeviceCounters> {
        let st = self.shared.read_stats();
        let st = IgbHwStats::from(&st);
        Ok(DeviceCounters {
            imissed: st.mpc,
            ierrors: st.crcerrs + st.algnerrc + st.rxerrc + st.rlec,
            oerrors: 0,
        })
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<()> {
        for (i, v) in multicast::mta_for(addrs).iter().enumerate() {
            self.shared.write(filter::mta(i), *v);
        }
        Ok(())
    }

    fn set_rss_reta(&mut self, reta: &[u16]) -> Result<()> {
        self.write_reta(reta);
        Ok(())
    }

    fn rss_key(&self) -> Option<Vec<u8>> {
        self.rss_key.map(|k| k.to_vec())
    }

    fn set_vlan_filter(&mut self, vid: u16, on: bool) -> Result<()> {
        self.vlan.set(&self.shared, vid, on);
        Ok(())
    }

    fn xstats(&mut self, out: &mut Vec<crate::xstats::XStat>) -> Result<()> {
        self.shared.read_stats().append(out);
        Ok(())
    }
}

impl Drop for IgbDriver {
    fn drop(&mut self) {
        let s = &self.shared;
        // Device off before any memory can go: receive and transmit off, every queue disabled
        // (queues still alive elsewhere disable again at their own drop), then bus mastering off.
        s.modify(rx::RCTL, 0, rx::RCTL_EN);
        s.modify(tx::TCTL, 0, tx::TCTL_EN);
        self.queues.disable_all();
        s.modify(general::CTRL_EXT, 0, general::CTRL_EXT_DRV_LOAD);
        disable_bus_master(&s.name, &s.device);
        log::info!("{}: stopped, queues disabled, bus mastering off", s.name);
    }
}
