//! Intel 82576 VF (igbvf) driver over VFIO, for a VF whose PF is served by our PF host
//! (`examples/sriov-pf`) or by any igb-compatible PF.
//!
//! Open: the VF token comes from [`OpenOptions::vf_token`], else the environment
//! (`OXPMD_VF_TOKEN`, or `OXPMD_VF_TOKEN_FILE` naming the PF manager's 0600 token file); without
//! it vfio-pci refuses the VF and the error says so. Bring-up: memory + bus mastering, interrupts
//! masked, `CTRL.RST`, wait until the PF released the VF (V2PMAILBOX.RSTI clear), then the reset
//! handshake over the mailbox: RESET, the PF's ACK with our MAC (a NACK means the PF has no MAC
//! for us: refused), then SET_LPE. Queues: one RX and one TX queue (the VF's queue 0) on the
//! shared advanced ring; they are enabled at setup (a VF has no RCTL/TCTL: the PF gates the
//! pool). Statistics: the VF's rolling counters (VFGPRC, VFGPTC, VFGORC, VFGOTC, VFMPRC).
//!
//! Resets the application did not ask for (the PF service killed and restarted, a function
//! reset of the VF): a watchdog thread of the port notices them, redoes the handshake once the PF
//! answers and asks again for the application's settings; the queues rebuild their rings on
//! their own threads (see `recovery`). Frames lost meanwhile are counted (xstats `reset_*`).
//!
//! Teardown: the watchdog stops; queues disable themselves before their memory goes; the
//! driver's `Drop` disables its queues, then bus mastering.

mod error;
mod handshake;
mod intr;
mod link;
pub mod mbx;
mod port_regs;
mod recovery;
pub mod regs;
mod stats;

pub(crate) mod queue;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oxpmd_dma::DmaMap;
use oxpmd_vfio::{Bar, BarView, Container, Device, PciAddress, VfToken};

use self::handshake::VfSettings;
use self::mbx::VfMailbox;
use self::port_regs::PortRegs;
use self::queue::{VfRxQueue, VfTxQueue};
use self::recovery::Recovery;
use self::regs::VfReg;
use crate::adv_ring::{MAX_RING_SIZE, MIN_RING_SIZE};
use crate::driver::{
    Capabilities, DeviceInfo, Driver, LinkStatus, OpenOptions, RxQueueOps, RxQueueSetup, TxQueueOps,
    TxQueueSetup,
};
use crate::drivers::igb::regs::IgbReg;
use crate::drivers::igb_family::Dir;
use crate::drivers::igb_family::open::{disable_bus_master, map_bar0, view_bar0};
use crate::drivers::igb_family::port_queues::PortQueues;
use crate::drivers::igb_family::queue_regs as qregs;
use crate::error::{PortError, Result};
use crate::iommu::VfioDmaMap;
use crate::mac::MacAddr;
use crate::port::PortConfig;
use crate::sriov::mailbox::{self, VfRequest};
use crate::stats::DeviceCounters;

/// Driver name.
pub const DRIVER_NAME: &str = "igbvf";
/// Environment variable holding the VF token (a UUID).
pub const ENV_TOKEN: &str = "OXPMD_VF_TOKEN";
/// Environment variable naming the PF manager's token file.
pub const ENV_TOKEN_FILE: &str = "OXPMD_VF_TOKEN_FILE";
/// The largest frame an RX buffer must hold (as for the PF: see `igb::MIN_RX_BUFFER`).
pub const MIN_RX_BUFFER: usize = crate::drivers::igb::MIN_RX_BUFFER;
/// Max frame asked from the PF at bring-up: the standard MTU's frame and its FCS, as Linux's
/// igbvf asks (1522).
pub const MAX_FRAME: u32 = crate::driver::max_frame_len(crate::driver::DEFAULT_MTU) as u32 + 4;
/// The largest MTU a VF asks for: the PF grants or refuses it (SET_LPE); oxpmd's PF service
/// grants frames up to its policy's `max_frame` (9022 by default).
pub const MAX_MTU: u16 = 9000;
/// How long one mailbox exchange may take (the PF manager polls every few milliseconds).
const MBX_TIMEOUT: Duration = Duration::from_secs(3);

pub use error::IgbvfError;

const TOKEN_HINT: &str = "; give the VF token: set OXPMD_VF_TOKEN_FILE to the token file the PF manager \
                          printed (or OXPMD_VF_TOKEN to the token)";

fn drv_err(device: &str, op: &'static str, e: impl Into<IgbvfError>) -> PortError {
    PortError::Driver {
        device: device.to_string(),
        op,
        source: Box::new(e.into()),
    }
}

/// The VF token to open with: the options', else `OXPMD_VF_TOKEN`, else the file named by
/// `OXPMD_VF_TOKEN_FILE`; `None` when none is given.
pub fn token_from(opts: &OpenOptions) -> std::result::Result<Option<VfToken>, IgbvfError> {
    if let Some(t) = &opts.vf_token {
        return VfToken::parse(t).map(Some).map_err(|source| IgbvfError::Token {
            var: "the open options",
            source: Box::new(source),
        });
    }
    if let Ok(t) = std::env::var(ENV_TOKEN) {
        return VfToken::parse(t.trim())
            .map(Some)
            .map_err(|source| IgbvfError::Token {
                var: ENV_TOKEN,
                source: Box::new(source),
            });
    }
    if let Ok(p) = std::env::var(ENV_TOKEN_FILE) {
        return VfToken::load(std::path::Path::new(&p))
            .map(Some)
            .map_err(|source| IgbvfError::Token {
                var: ENV_TOKEN_FILE,
                source: Box::new(source),
            });
    }
    Ok(None)
}

/// The VF's good-frame counters as 64-bit totals since the port was opened (the registers are
/// 32-bit and wrap; the totals are the xstats' own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgbvfHwStats {
    /// Good packets received.
    pub gprc: u64,
    /// Good packets transmitted.
    pub gptc: u64,
    /// Good octets received.
    pub gorc: u64,
    /// Good octets transmitted.
    pub gotc: u64,
    /// Multicast packets received.
    pub mprc: u64,
}

/// What the driver and its queues share.
pub(crate) struct VfShared {
    pub(crate) name: String,
    /// Its registers (checked at open to hold every register read through them).
    pub(crate) regs: PortRegs,
    /// The VF's VFIO device (None for a PF pool port: the PF host owns the device).
    device: Option<Device>,
    /// Running totals of the VF's rolling counters (xstats).
    totals: std::sync::Mutex<stats::VfTotals>,
    /// The reset watchdog's state, shared with the queues.
    pub(crate) recovery: Recovery,
    /// What the application asked the PF for (replayed after a reset).
    settings: Mutex<VfSettings>,
    /// The MAC in use (the PF's, or the application's).
    mac: Mutex<MacAddr>,
}

impl VfShared {
    /// Advances the running totals and returns them (a PF pool port has none: its counters
    /// are not in this BAR).
    fn totals(&self) -> stats::VfTotals {
        let mut t = self.totals.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = self.regs.vf() {
            t.accumulate(|r| v.read(r));
        }
        t.clone()
    }

    /// The counters as 64-bit totals since the port's open, from the same running totals as
    /// the xstats (the registers are 32 bits and wrap; a PF pool port has none: all zero).
    fn hw_stats(&self) -> IgbvfHwStats {
        let t = self.totals();
        IgbvfHwStats {
            gprc: t.total_of(stats::GPRC),
            gptc: t.total_of(stats::GPTC),
            gorc: t.total_of(stats::GORC),
            gotc: t.total_of(stats::GOTC),
            mprc: t.total_of(stats::MPRC),
        }
    }
}

/// Reads a VF's counters while the port is in use.
#[derive(Clone)]
pub struct IgbvfStatsReader {
    shared: Arc<VfShared>,
}

impl std::fmt::Debug for IgbvfStatsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IgbvfStatsReader")
            .field("device", &self.shared.name)
            .finish()
    }
}

impl IgbvfStatsReader {
    /// The VF's counters now.
    pub fn read(&self) -> Result<IgbvfHwStats> {
        Ok(self.shared.hw_stats())
    }
}

/// An 82576 VF opened through VFIO.
pub struct IgbvfDriver {
    shared: Arc<VfShared>,
    /// The ring region and the queues set up on it.
    queues: PortQueues<VfShared>,
    /// The mailbox (None for a PF pool port).
    /// Shared with the link-event poller ([`Driver::link_events`]): PF messages say whether the
    /// PF holds the VF's link down.
    mbx: Option<Arc<Mutex<mbx::BarMailbox>>>,
    /// The connection to the PF service that handed this VF over (kept open while we use it).
    _service: Option<std::os::unix::net::UnixStream>,
    /// The reset watchdog (None for a PF pool port): its stop flag and thread.
    watchdog: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl std::fmt::Debug for IgbvfDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IgbvfDriver")
            .field("device", &self.shared.name)
            .field("mac", &self.mac_addr())
            .finish()
    }
}

/// The registry's constructor.
pub fn open(addr: PciAddress, opts: &OpenOptions) -> Result<Box<dyn Driver>> {
    Ok(Box::new(IgbvfDriver::open(addr, opts)?))
}

impl IgbvfDriver {
    /// Opens the VF at `addr` with the VF token (see the module documentation), resets it and
    /// completes the reset handshake with the PF.
    pub fn open(addr: PciAddress, opts: &OpenOptions) -> Result<IgbvfDriver> {
        let name = addr.to_string();
        let token = token_from(opts).map_err(|e| drv_err(&name, "get the VF token", e))?;
        let hint = if token.is_none() { TOKEN_HINT } else { "" };
        // One VFIO container for every PCI port of the process: a pool serves PF and VF ports.
        let (device, dma) = crate::iommu::open_pci_function(addr, token.as_ref())
            .map_err(|e| e.into_port_error(&name, hint))?;
        Self::from_device(name, device, dma, None)
    }

    /// Opens VF `vf` as handed over by the PF service on `socket` (see
    /// [`crate::sriov::handover`]): no VF token, no `/dev/vfio` access. The VF has its own
    /// container (pools for it come from this port's `dma_map`); the connection stays open
    /// while the port lives, and closing it makes the service reset the VF.
    pub fn open_from_service(socket: &std::path::Path, vf: usize) -> Result<IgbvfDriver> {
        let label = format!("vf-service:{}:{vf}", socket.display());
        let h = crate::sriov::handover::open_from_service(socket, vf)
            .map_err(|e| drv_err(&label, "open through the PF service", e))?;
        let name = h.addr.to_string();
        let dma = Arc::new(
            VfioDmaMap::new(h.device.group().container().clone())
                .map_err(|e| drv_err(&name, "set up DMA mapping", e))?,
        );
        Self::from_device(name, h.device, dma, Some(h.connection))
    }

    fn from_device(
        name: String,
        device: Device,
        dma: Arc<VfioDmaMap>,
        service: Option<std::os::unix::net::UnixStream>,
    ) -> Result<IgbvfDriver> {
        let regs: BarView<VfReg> = map_bar0(&name, &device)?;
        let shared = Arc::new(VfShared {
            name: name.clone(),
            regs: PortRegs::Vf(regs.clone()),
            device: Some(device),
            totals: Default::default(),
            recovery: Recovery::default(),
            settings: Mutex::default(),
            mac: Mutex::new(MacAddr::ZERO),
        });
        let mut drv = IgbvfDriver {
            queues: PortQueues::new(shared.clone(), dma),
            shared,
            mbx: Some(Arc::new(Mutex::new(VfMailbox::new(regs, MBX_TIMEOUT)))),
            _service: service,
            watchdog: None,
        };
        drv.reset()?;
        // The totals count from here (whatever the counters held before the open).
        if let Some(v) = drv.shared.regs.vf() {
            let mut t = drv.shared.totals.lock().unwrap_or_else(|p| p.into_inner());
            t.start_from(|r| v.read(r));
        }
        drv.start_watchdog()?;
        Ok(drv)
    }

    fn start_watchdog(&mut self) -> Result<()> {
        let Some(mbx) = self.mbx.clone() else {
            return Ok(());
        };
        let stop = Arc::new(AtomicBool::new(false));
        let w = recovery::Watched {
            shared: self.shared.clone(),
            mbx,
        };
        let s2 = stop.clone();
        let t = std::thread::Builder::new()
            .name(format!("igbvf-watch-{}", self.name()))
            .spawn(move || recovery::run(w, s2))
            .map_err(|e| {
                drv_err(
                    self.name(),
                    "start the reset watchdog",
                    IgbvfError::Ring(format!("thread: {e}")),
                )
            })?;
        self.watchdog = Some((stop, t));
        Ok(())
    }

    /// A port on the PF's own VMDq pool: hardware queue `hwq` of the PF whose BAR0 is `bar`,
    /// DMA through `container` (the PF's). Used by the PF host so that the PF keeps forwarding
    /// its own traffic while VFs are on; it has no mailbox (MAC and filters are the PF host's).
    pub fn pf_pool(
        name: &str,
        bar: Bar,
        container: Container,
        hwq: u16,
        mac: MacAddr,
    ) -> Result<IgbvfDriver> {
        let pf = view_bar0::<IgbReg>(name, &bar)?;
        let dma = Arc::new(VfioDmaMap::new(container).map_err(|e| drv_err(name, "set up DMA mapping", e))?);
        let shared = Arc::new(VfShared {
            name: name.to_string(),
            regs: PortRegs::PfPool { pf, hwq },
            device: None,
            totals: Default::default(),
            recovery: Recovery::default(),
            settings: Mutex::default(),
            mac: Mutex::new(mac),
        });
        Ok(IgbvfDriver {
            queues: PortQueues::new(shared.clone(), dma),
            shared,
            mbx: None,
            _service: None,
            watchdog: None,
        })
    }

    fn mailbox(&self) -> Result<&Mutex<mbx::BarMailbox>> {
        self.mbx
            .as_deref()
            .ok_or_else(|| drv_err(self.name(), "mailbox request", IgbvfError::PfPool))
    }

    /// A reader of the VF's counters.
    pub fn stats_reader(&self) -> IgbvfStatsReader {
        IgbvfStatsReader {
            shared: self.shared.clone(),
        }
    }

    /// The VF's counters now.
    pub fn hw_stats(&self) -> Result<IgbvfHwStats> {
        self.stats_reader().read()
    }

    fn name(&self) -> &str {
        &self.shared.name
    }

    /// Resets the VF and redoes the handshake with the PF, then asks again for the settings
    /// the application had made; the queues rebuild their rings at their next burst.
    pub fn reset(&mut self) -> Result<()> {
        handshake::reset_and_replay(&self.shared, self.mailbox()?)?;
        self.shared.recovery.bump();
        Ok(())
    }

    /// Sends a request whose reply is a bare ACK / NACK.
    fn simple_request(&self, req: VfRequest, what: &'static str) -> Result<()> {
        handshake::simple_request(self.name(), self.mailbox()?, req, what)
    }

    /// Sends raw mailbox words and returns the PF's reply (for tests of the PF's defences).
    pub fn raw_request(&self, words: &[u32]) -> Result<[u32; mailbox::MBX_WORDS]> {
        handshake::lock(self.mailbox()?)
            .request(words)
            .map_err(|e| drv_err(self.name(), "mailbox request", e))
    }
}

impl Driver for IgbvfDriver {
    fn device_name(&self) -> &str {
        self.name()
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            driver: DRIVER_NAME,
            max_rx_queues: 1,
            max_tx_queues: 1,
            min_ring_size: MIN_RING_SIZE,
            max_ring_size: MAX_RING_SIZE,
            min_rx_buffer: MIN_RX_BUFFER,
            rx_buffer_unit: qregs::SRRCTL_BSIZEPKT_UNIT,
            // Stripping is the PF's (its port VLAN); filtering goes through the PF's VLVF
            // (mailbox SET_VLAN).
            capabilities: Capabilities::VLAN_FILTER
                | Capabilities::VLAN_INSERT
                | Capabilities::MULTICAST_LIST
                | Capabilities::RX_SCATTER
                | Capabilities::TX_MULTI_SEG
                | Capabilities::TCP_TSO,
            reta_size: 0,
            rss_key_len: 0,
            rss_hash: crate::rss::RssHash::NONE,
            max_mtu: MAX_MTU,
            needs_chunk_aligned_pool: false,
        }
    }

    fn configure(&mut self, config: &PortConfig) -> Result<()> {
        self.queues.configure(config)
    }

    fn setup_rx_queue(&mut self, setup: &RxQueueSetup<'_>) -> Result<Box<dyn RxQueueOps>> {
        let info = self.info();
        let (ring, srrctl) = self.queues.set_up_rx(setup, &info, false)?;
        self.shared.recovery.set_live(Dir::Rx, setup.queue);
        Ok(Box::new(VfRxQueue::new(
            ring,
            self.shared.clone(),
            setup.queue,
            srrctl,
        )))
    }

    fn setup_tx_queue(&mut self, setup: &TxQueueSetup<'_>) -> Result<Box<dyn TxQueueOps>> {
        let inner = self.queues.set_up_tx(setup)?;
        self.shared.recovery.set_live(Dir::Tx, setup.queue);
        Ok(Box::new(VfTxQueue::new(inner, self.shared.clone(), setup.queue)))
    }

    fn start(&mut self) -> Result<()> {
        // Queues are enabled at setup; the PF gates the pool (VFRE / VFTE).
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        // Not a loss for the reset watchdog: these queues are meant to read disabled.
        self.shared.recovery.clear_live();
        self.queues.disable_all();
        Ok(())
    }

    fn link(&mut self) -> Result<LinkStatus> {
        link::vf_link(&self.shared, self.mbx.as_deref())
    }

    fn link_events(&mut self) -> Result<Box<dyn crate::link_events::LinkEventSource>> {
        Ok(Box::new(link::VfLinkPoll {
            shared: self.shared.clone(),
            mbx: self.mbx.clone(),
        }))
    }

    fn mac_addr(&self) -> MacAddr {
        *self.shared.mac.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<()> {
        self.simple_request(VfRequest::SetMac(mac), "SET_MAC_ADDR")?;
        *self.shared.mac.lock().unwrap_or_else(|p| p.into_inner()) = mac;
        recovery::update(&self.shared, |s| s.mac = Some(mac));
        Ok(())
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        self.simple_request(
            VfRequest::SetPromisc {
                unicast: on,
                multicast: false,
            },
            "SET_PROMISC (unicast)",
        )?;
        recovery::update(&self.shared, |s| s.promiscuous = on);
        Ok(())
    }

    fn set_all_multicast(&mut self, on: bool) -> Result<()> {
        self.simple_request(
            VfRequest::SetPromisc {
                unicast: false,
                multicast: on,
            },
            "SET_PROMISC (multicast)",
        )?;
        recovery::update(&self.shared, |s| s.all_multicast = on);
        Ok(())
    }

    fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        let max_frame = crate::driver::max_frame_len(mtu) as u32 + 4;
        let asked = self
            .shared
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .max_frame;
        if max_frame == asked.unwrap_or(MAX_FRAME) {
            return Ok(());
        }
        if self.mbx.is_none() {
            // The PF's own pool: its frame limit is the PF service's (VMOLR of the pool).
            return Err(drv_err(self.name(), "set the MTU", IgbvfError::PfPool));
        }
        self.simple_request(VfRequest::SetLpe { max_frame }, "SET_LPE (the MTU)")?;
        recovery::update(&self.shared, |st| st.max_frame = Some(max_frame));
        Ok(())
    }

    fn dma_map(&self) -> Option<Arc<dyn DmaMap>> {
        Some(self.queues.dma().clone())
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<()> {
        if addrs.len() > mailbox::MAX_MC_HASHES {
            return Err(drv_err(
                &self.shared.name,
                "set the multicast address list",
                IgbvfError::TooManyGroups {
                    asked: addrs.len(),
                    max: mailbox::MAX_MC_HASHES,
                },
            ));
        }
        self.simple_request(handshake::multicast_request(addrs), "SET_MULTICAST")?;
        recovery::update(&self.shared, |s| s.multicast = addrs.to_vec());
        Ok(())
    }

    fn set_vlan_filter(&mut self, vid: u16, on: bool) -> Result<()> {
        self.simple_request(VfRequest::SetVlan { vid, add: on }, "SET_VLAN")?;
        recovery::update(&self.shared, |s| {
            if on {
                s.vlans.insert(vid);
            } else {
                s.vlans.remove(&vid);
            }
        });
        Ok(())
    }

    fn device_counters(&mut self) -> Result<DeviceCounters> {
        Ok(DeviceCounters::default())
    }

    fn xstats(&mut self, out: &mut Vec<crate::xstats::XStat>) -> Result<()> {
        self.shared.totals().append(out);
        if self.watchdog.is_some() {
            self.shared.recovery.append(out);
        }
        Ok(())
    }
}

impl Drop for IgbvfDriver {
    fn drop(&mut self) {
        if let Some((stop, t)) = self.watchdog.take() {
            stop.store(true, Ordering::Release);
            if t.join().is_err() {
                log::error!("{}: teardown: the reset watchdog panicked", self.shared.name);
            }
        }
        self.shared.recovery.clear_live();
        self.queues.disable_all();
        if let Some(d) = &self.shared.device {
            disable_bus_master(&self.shared.name, d);
        }
        log::info!(
            "{}: igbvf stopped, queues disabled, bus mastering off",
            self.shared.name
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources_in_order() {
        let opts = OpenOptions {
            vf_token: Some("not-a-uuid".into()),
            ..OpenOptions::default()
        };
        let e = token_from(&opts).unwrap_err();
        assert!(e.to_string().contains("open options"), "{e}");
        let t = VfToken::generate();
        let opts = OpenOptions {
            vf_token: Some(t.expose()),
            ..OpenOptions::default()
        };
        assert_eq!(token_from(&opts).unwrap().unwrap().as_bytes(), t.as_bytes());
    }
}
