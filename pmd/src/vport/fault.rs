//! The `fault:` port: wraps any other port and injects faults into its traffic, seeded and
//! reproducible, counting what it injected, as a network stack's fault-injecting device wraps its
//! inner device. Applications use it to exercise their loss handling; the project's tests use it
//! to show that pktgen's checks find exactly what was injected.
//!
//! ```text
//! fault:drop=0.1%,corrupt=0.01%,dup=0.05%,reorder=0.05%,rate=100000,seed=7,dir=both:INNER
//! ```
//!
//! - Each packet gets at most one fault, chosen by one pseudo-random draw per packet from a stream
//!   seeded by `seed`, the direction and the queue index: the same seed and the same packets in the
//!   same order give the same faults (`rate` drops depend on timing and are counted apart).
//! - drop: the packet is freed. corrupt: one bit is flipped, at a random byte after the Ethernet
//!   header (a flipped MAC would be filtered by the receiving NIC, a loss rather than a corruption).
//!   dup: a copy in a new buffer of the queue's mempool follows the packet. reorder: the packet is
//!   held back and delivered right after the next intact (not corrupted) packet of the queue; with
//!   no such packet within [`REORDER_HOLD_MAX`] it is delivered in order and not counted as
//!   reordered (RX: at a poll that finds the inner queue empty; TX: at a `tx_burst` that brings no
//!   packet, at a `reclaim` (not in the queue's packet counters then) or when the queue is
//!   dropped). A TX burst with packets never releases by time: its first intact packet releases
//!   the held one, so on TX the same seed and packets give the same reorderings however long the
//!   sender paused (a full ring on a loaded machine).
//! - rate: packets beyond `rate` per second and queue are dropped (a token bucket of 10 ms).
//! - dir: `rx`, `tx` or `both` (default): which direction of the inner port is faulted.
//! - The counts are read with [`injected`] by the port's name ([`Port::name`](crate::Port::name)):
//!   `fault:INNER-NAME` (`#2`, `#3`, ... appended while a port of that name is open).
//! - The inner port's statistics count what reached or left the inner device (TX: after the
//!   faults; RX: before them).
#![forbid(unsafe_code)]

mod inject;
mod spec;

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use oxpmd_dma::Mempool;

pub use inject::{CORRUPT_SKIP, FaultCounts};
use inject::{Injector, SharedCounts};
pub use spec::{
    FAULT_OPTIONS_MAX, FaultDirection, FaultSpec, FaultSpecError, PROBABILITY_SCALE, Probability,
};

use crate::burst::{Burst, MAX_BURST};
use crate::driver::{DeviceInfo, Driver, LinkStatus, RxQueueOps, RxQueueSetup, TxQueueOps, TxQueueSetup};
use crate::error::Result;
use crate::mac::MacAddr;
use crate::port::PortConfig;
use crate::stats::{DeviceCounters, QueueCounters};

/// How long a queue holds a packet drawn for reordering while no later intact packet comes: then
/// it goes out in order, not counted as reordered. Long enough that a pause of the traffic (a
/// full ring, a slow VM) does not change which packets are reordered.
pub const REORDER_HOLD_MAX: Duration = Duration::from_millis(100);

/// What a `fault:` port injected, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InjectedCounts {
    /// Into what the application received.
    pub rx: FaultCounts,
    /// Into what the application sent.
    pub tx: FaultCounts,
}

/// The counters of one fault port.
#[derive(Debug, Default)]
struct Shared {
    rx: Arc<SharedCounts>,
    tx: Arc<SharedCounts>,
}

/// Open fault ports: name and counters.
type Registry = Mutex<Vec<(String, Weak<Shared>)>>;

/// Open fault ports by name.
fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

/// Registers `shared` under `base`, or `base#N` when that name is taken by an open port.
fn register(base: &str, shared: &Arc<Shared>) -> String {
    let mut reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    reg.retain(|(_, w)| w.strong_count() > 0);
    let mut name = base.to_string();
    let mut n = 2;
    while reg.iter().any(|(taken, _)| *taken == name) {
        name = format!("{base}#{n}");
        n += 1;
    }
    reg.push((name.clone(), Arc::downgrade(shared)));
    name
}

/// What the open fault port `device` (its [`Port::name`](crate::Port::name)) has injected so
/// far; `None` if no such port is open (its driver and queues all dropped).
pub fn injected(device: &str) -> Option<InjectedCounts> {
    let reg = registry().lock().unwrap_or_else(|p| p.into_inner());
    let shared = reg
        .iter()
        .find(|(name, _)| name == device)
        .and_then(|(_, w)| w.upgrade())?;
    Some(InjectedCounts {
        rx: shared.rx.get(),
        tx: shared.tx.get(),
    })
}

/// Driver of a `fault:` port: the inner driver, with its queues wrapped.
pub struct FaultDriver {
    name: String,
    spec: FaultSpec,
    inner: Box<dyn Driver>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for FaultDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultDriver")
            .field("name", &self.name)
            .field("spec", &self.spec)
            .finish()
    }
}

impl FaultDriver {
    /// Wraps an opened driver.
    pub fn new(spec: FaultSpec, inner: Box<dyn Driver>) -> FaultDriver {
        let shared = Arc::new(Shared::default());
        let name = register(&format!("fault:{}", inner.device_name()), &shared);
        if spec.injects() {
            log::info!("{name}: injecting faults ({spec})");
        }
        FaultDriver {
            name,
            spec,
            inner,
            shared,
        }
    }

    /// The faults this port injects.
    pub fn spec(&self) -> &FaultSpec {
        &self.spec
    }
}

impl Driver for FaultDriver {
    fn device_name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }

    fn configure(&mut self, config: &PortConfig) -> Result<()> {
        self.inner.configure(config)
    }

    fn setup_rx_queue(&mut self, setup: &RxQueueSetup<'_>) -> Result<Box<dyn RxQueueOps>> {
        let inner = self.inner.setup_rx_queue(setup)?;
        if !self.spec.dir.rx() {
            return Ok(inner);
        }
        Ok(Box::new(FaultRxQueue {
            inner,
            injector: Injector::new(&self.spec, 0, setup.queue, self.shared.rx.clone()),
            pool: setup.pool.clone(),
            scratch: Burst::with_capacity(RX_INNER_BURST).unwrap_or_default(),
            ready: Burst::with_capacity(MAX_BURST).unwrap_or_default(),
        }))
    }

    fn setup_tx_queue(&mut self, setup: &TxQueueSetup<'_>) -> Result<Box<dyn TxQueueOps>> {
        let inner = self.inner.setup_tx_queue(setup)?;
        if !self.spec.dir.tx() {
            return Ok(inner);
        }
        Ok(Box::new(FaultTxQueue {
            inner,
            injector: Injector::new(&self.spec, 1, setup.queue, self.shared.tx.clone()),
            pool: setup.pool.clone(),
            out: Burst::with_capacity(MAX_BURST).unwrap_or_default(),
        }))
    }

    fn start(&mut self) -> Result<()> {
        self.inner.start()
    }

    fn stop(&mut self) -> Result<()> {
        self.inner.stop()
    }

    fn link(&mut self) -> Result<LinkStatus> {
        self.inner.link()
    }

    fn link_events(&mut self) -> Result<Box<dyn crate::link_events::LinkEventSource>> {
        self.inner.link_events()
    }

    fn mac_addr(&self) -> MacAddr {
        self.inner.mac_addr()
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<()> {
        self.inner.set_mac_addr(mac)
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        self.inner.set_promiscuous(on)
    }

    fn set_all_multicast(&mut self, on: bool) -> Result<()> {
        self.inner.set_all_multicast(on)
    }

    fn dma_map(&self) -> Option<Arc<dyn oxpmd_dma::DmaMap>> {
        self.inner.dma_map()
    }

    fn device_counters(&mut self) -> Result<DeviceCounters> {
        self.inner.device_counters()
    }

    fn xstats(&mut self, out: &mut Vec<crate::xstats::XStat>) -> Result<()> {
        self.inner.xstats(out)
    }

    // The wrapper reports the inner device's capabilities, so it forwards every call they
    // promise: a capability listed but refused would mislead the application.
    fn set_mtu(&mut self, mtu: u16) -> Result<()> {
        self.inner.set_mtu(mtu)
    }

    fn set_vlan_filter(&mut self, vid: u16, on: bool) -> Result<()> {
        self.inner.set_vlan_filter(vid, on)
    }

    fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<()> {
        self.inner.set_mc_addr_list(addrs)
    }

    fn set_rss_reta(&mut self, reta: &[u16]) -> Result<()> {
        self.inner.set_rss_reta(reta)
    }

    fn rss_key(&self) -> Option<Vec<u8>> {
        self.inner.rss_key()
    }
}

/// Most packets an RX queue takes from its inner queue per burst: with a copy per packet and one
/// released held packet, what it delivers (at most 2 x 255 + 1) fits a [`MAX_BURST`] burst.
const RX_INNER_BURST: usize = (MAX_BURST - 1) / 2;

/// A faulted RX queue.
struct FaultRxQueue {
    inner: Box<dyn RxQueueOps>,
    injector: Injector,
    pool: Mempool,
    /// What the inner queue returned.
    scratch: Burst,
    /// Delivered by the injector, not yet handed to the application.
    ready: Burst,
}

impl RxQueueOps for FaultRxQueue {
    fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        if self.ready.is_empty() {
            let n = self.inner.rx_burst(&mut self.scratch, c);
            let now = if n > 0 || self.injector.needs_clock() {
                Some(Instant::now())
            } else {
                None
            };
            if n == 0 {
                if let Some(now) = now {
                    if self.injector.held_for(now).is_some_and(|d| d >= REORDER_HOLD_MAX) {
                        self.injector.release_in_order(&mut self.ready);
                    }
                }
            } else if let Some(now) = now {
                for p in self.scratch.drain() {
                    self.injector.apply(p, &mut self.ready, &self.pool, now);
                }
                self.injector.publish();
            }
        }
        let k = self.ready.len().min(out.room());
        for p in self.ready.drain_front(k) {
            if out.push(p).is_err() {
                debug_assert!(false, "fault port: room was checked");
            }
        }
        k
    }
}

/// A faulted TX queue.
struct FaultTxQueue {
    inner: Box<dyn TxQueueOps>,
    injector: Injector,
    pool: Mempool,
    /// Delivered by the injector, not yet taken by the inner queue (sent first next time).
    out: Burst,
}

impl TxQueueOps for FaultTxQueue {
    fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        if !self.out.is_empty() {
            self.inner.tx_burst(&mut self.out, c);
            if !self.out.is_empty() {
                // The inner queue is full: take nothing (the caller keeps its packets).
                return 0;
            }
        }
        let now = Instant::now();
        if pkts.is_empty() {
            self.release_stale(now);
        }
        // Each packet may put out itself, its copy and a released held packet: 2 per packet + 1.
        let n = pkts.len().min((self.out.room().saturating_sub(1)) / 2);
        if n > 0 {
            for p in pkts.drain_front(n) {
                self.injector.apply(p, &mut self.out, &self.pool, now);
            }
            self.injector.publish();
        }
        if !self.out.is_empty() {
            self.inner.tx_burst(&mut self.out, c);
        }
        n
    }

    fn reclaim(&mut self, c: &mut QueueCounters) -> usize {
        // An application that stopped sending gets a stale held packet out here, and what the
        // inner queue had no room for, counted as tx_burst counts them.
        self.release_stale(Instant::now());
        let n = self.inner.reclaim(c);
        if !self.out.is_empty() {
            self.inner.tx_burst(&mut self.out, c);
        }
        n
    }

    fn held(&self) -> usize {
        self.out.len() + usize::from(self.injector.is_holding()) + self.inner.held()
    }
}

impl FaultTxQueue {
    /// A packet held for reordering longer than [`REORDER_HOLD_MAX`] goes out in order.
    fn release_stale(&mut self, now: Instant) {
        if self.injector.held_for(now).is_some_and(|d| d >= REORDER_HOLD_MAX) {
            self.injector.release_in_order(&mut self.out);
        }
    }
}

impl Drop for FaultTxQueue {
    fn drop(&mut self) {
        // Packets taken from the application but not yet by the inner queue (it was full): give
        // them a bounded chance to go out before they are freed (their counts are not published:
        // the port's statistics are read through the queue, which is going away).
        self.injector.release_in_order(&mut self.out);
        let mut c = QueueCounters::default();
        for _ in 0..1000 {
            if self.out.is_empty() {
                return;
            }
            self.inner.tx_burst(&mut self.out, &mut c);
            self.inner.reclaim(&mut c);
            if !self.out.is_empty() {
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        log::warn!(
            "fault port: {} packets not sent when the TX queue was dropped (the inner queue stayed full)",
            self.out.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::DeviceSpec;
    use crate::error::PortError;

    #[test]
    fn device_strings_parse_print_back_and_refuse_bad_options() {
        let s = DeviceSpec::parse("fault:drop=0.1%,corrupt=0.01%,seed=9:0000:00:02.0").unwrap();
        let DeviceSpec::Fault { faults, inner } = &s else {
            panic!("{s:?}")
        };
        assert_eq!((faults.drop.parts(), faults.seed), (100_000, 9));
        assert_eq!(inner.to_string(), "0000:00:02.0");
        assert_eq!(s.to_string(), "fault:drop=0.1%,corrupt=0.01%,seed=9:0000:00:02.0");
        assert_eq!(DeviceSpec::parse(&s.to_string()).unwrap(), s);
        // Nested, and an empty option list.
        let n = DeviceSpec::parse("fault:dup=1%:fault::ring:x").unwrap();
        assert_eq!(n.to_string(), "fault:dup=1%,seed=0:fault:seed=0:ring:x");
        for (bad, says) in [
            ("fault:drop=1%", "no inner device"),
            ("fault:drop=1%:", "no inner device"),
            ("fault:drop=1:null0", "not a percentage"),
            ("fault:loss=1%:null0", "unknown option `loss`"),
        ] {
            let e = DeviceSpec::parse(bad).unwrap_err();
            assert!(matches!(e, PortError::BadFaultSpec { .. }), "{bad}: {e:?}");
            let text = e.to_string();
            assert!(text.contains(says) && text.contains(bad), "{bad}: {text}");
        }
        assert!(matches!(
            DeviceSpec::parse("fault:drop=1%:eth0"),
            Err(PortError::BadDeviceSpec { .. })
        ));
    }

    #[test]
    fn names_are_unique_while_open_and_counts_readable() {
        let a = FaultDriver::new(
            FaultSpec::default(),
            Box::new(crate::vport::null::NullDriver::new(901, 64)),
        );
        let b = FaultDriver::new(
            FaultSpec::default(),
            Box::new(crate::vport::null::NullDriver::new(901, 64)),
        );
        assert_eq!(a.device_name(), "fault:null901");
        assert_eq!(b.device_name(), "fault:null901#2");
        assert_eq!(injected("fault:null901"), Some(InjectedCounts::default()));
        drop(a);
        assert_eq!(injected("fault:null901"), None);
        assert!(injected("fault:null901#2").is_some());
    }

    /// A null device that records the filter and table calls it receives.
    struct Recording {
        null: crate::vport::null::NullDriver,
        calls: Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl Driver for Recording {
        fn device_name(&self) -> &str {
            self.null.device_name()
        }
        fn info(&self) -> DeviceInfo {
            self.null.info()
        }
        fn configure(&mut self, config: &PortConfig) -> Result<()> {
            self.null.configure(config)
        }
        fn setup_rx_queue(&mut self, setup: &RxQueueSetup<'_>) -> Result<Box<dyn RxQueueOps>> {
            self.null.setup_rx_queue(setup)
        }
        fn setup_tx_queue(&mut self, setup: &TxQueueSetup<'_>) -> Result<Box<dyn TxQueueOps>> {
            self.null.setup_tx_queue(setup)
        }
        fn start(&mut self) -> Result<()> {
            self.null.start()
        }
        fn stop(&mut self) -> Result<()> {
            self.null.stop()
        }
        fn link(&mut self) -> Result<LinkStatus> {
            self.null.link()
        }
        fn mac_addr(&self) -> MacAddr {
            self.null.mac_addr()
        }
        fn set_mac_addr(&mut self, mac: MacAddr) -> Result<()> {
            self.null.set_mac_addr(mac)
        }
        fn set_promiscuous(&mut self, on: bool) -> Result<()> {
            self.null.set_promiscuous(on)
        }
        fn set_all_multicast(&mut self, on: bool) -> Result<()> {
            self.null.set_all_multicast(on)
        }
        fn set_mtu(&mut self, mtu: u16) -> Result<()> {
            self.calls.lock().unwrap().push(format!("mtu {mtu}"));
            Ok(())
        }
        fn set_vlan_filter(&mut self, vid: u16, on: bool) -> Result<()> {
            self.calls.lock().unwrap().push(format!("vlan {vid} {on}"));
            Ok(())
        }
        fn set_mc_addr_list(&mut self, addrs: &[MacAddr]) -> Result<()> {
            self.calls.lock().unwrap().push(format!("mc {}", addrs.len()));
            Ok(())
        }
        fn set_rss_reta(&mut self, reta: &[u16]) -> Result<()> {
            self.calls.lock().unwrap().push(format!("reta {}", reta.len()));
            Ok(())
        }
        fn rss_key(&self) -> Option<Vec<u8>> {
            Some(vec![7; 40])
        }
    }

    #[test]
    fn filter_and_table_calls_reach_the_inner_device() {
        let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let inner = Recording {
            null: crate::vport::null::NullDriver::new(902, 64),
            calls: Arc::clone(&calls),
        };
        let mut f = FaultDriver::new(FaultSpec::default(), Box::new(inner));
        f.set_mtu(9000).unwrap();
        f.set_vlan_filter(100, true).unwrap();
        f.set_mc_addr_list(&[MacAddr([1, 0, 0x5e, 0, 0, 1])]).unwrap();
        f.set_rss_reta(&[0; 128]).unwrap();
        assert_eq!(f.rss_key(), Some(vec![7; 40]));
        assert_eq!(
            *calls.lock().unwrap(),
            ["mtu 9000", "vlan 100 true", "mc 1", "reta 128"]
        );
    }
}
