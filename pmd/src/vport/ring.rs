//! The `ring` port: two ports opened with the same name form a pair; what one transmits the other
//! receives, through two single-producer / single-consumer [`Ring`]s of packets. One RX and one TX
//! queue per port. A name is free again once both ends have been opened.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use oxpmd_dma::{Consumer, Packet, Producer, Ring, SyncMode};

use crate::burst::Burst;
use crate::driver::{DeviceInfo, Driver, LinkStatus, RxQueueOps, RxQueueSetup, TxQueueOps, TxQueueSetup};
use crate::error::{PortError, Result};
use crate::mac::MacAddr;
use crate::port::PortConfig;
use crate::stats::QueueCounters;

/// Packets each direction of a pair can hold.
pub const RING_PORT_CAPACITY: usize = 4096;

/// The second end of a pair, waiting for its peer: (pair id, TX producer, RX consumer).
type End = (u64, Producer<Packet>, Consumer<Packet>);

/// Second ends waiting for their peer, by name.
fn pending() -> &'static Mutex<HashMap<String, End>> {
    static PENDING: OnceLock<Mutex<HashMap<String, End>>> = OnceLock::new();
    PENDING.get_or_init(|| Mutex::new(HashMap::new()))
}

fn next_pair_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Driver of one end of a ring pair.
pub struct RingDriver {
    name: String,
    /// The pair name and id while end 1 waits for its opener (end 0 only).
    waiting: Option<(String, u64)>,
    end: u8,
    mac: MacAddr,
    tx: Option<Producer<Packet>>,
    rx: Option<Consumer<Packet>>,
}

impl std::fmt::Debug for RingDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingDriver")
            .field("name", &self.name)
            .field("end", &self.end)
            .finish()
    }
}

impl RingDriver {
    /// Opens end 0 of pair `name` (creating it) or, if end 0 exists, end 1.
    pub fn open(name: &str) -> Result<RingDriver> {
        let device = format!("ring:{name}");
        let mut map = pending().lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, tx, rx)) = map.remove(name) {
            return Ok(RingDriver {
                name: device,
                waiting: None,
                end: 1,
                mac: mac_of(name, 1),
                tx: Some(tx),
                rx: Some(rx),
            });
        }
        let err = |e: oxpmd_dma::RingError| PortError::Driver {
            device: device.clone(),
            op: "open",
            source: Box::new(e),
        };
        let (p01, c01) = Ring::new(RING_PORT_CAPACITY)
            .map_err(err)?
            .split(SyncMode::Single, SyncMode::Single);
        let (p10, c10) = Ring::new(RING_PORT_CAPACITY)
            .map_err(err)?
            .split(SyncMode::Single, SyncMode::Single);
        let id = next_pair_id();
        map.insert(name.to_string(), (id, p10, c01));
        Ok(RingDriver {
            name: device,
            waiting: Some((name.to_string(), id)),
            end: 0,
            mac: mac_of(name, 0),
            tx: Some(p01),
            rx: Some(c10),
        })
    }
}

impl Drop for RingDriver {
    fn drop(&mut self) {
        // End 0 going away before anyone opened end 1: withdraw end 1 so the name is free again
        // (a later open must not pair with a port that no longer exists).
        if let Some((name, id)) = self.waiting.take() {
            let mut map = pending().lock().unwrap_or_else(|p| p.into_inner());
            if map.get(&name).is_some_and(|e| e.0 == id) {
                map.remove(&name);
            }
        }
    }
}

fn mac_of(name: &str, end: u8) -> MacAddr {
    let h = name
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let [a, b, c, _] = h.to_be_bytes();
    MacAddr([0x02, 0x52, a, b, c, end])
}

impl Driver for RingDriver {
    fn device_name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            // Packets pass through as they are: a chain sent is a chain received.
            capabilities: crate::driver::Capabilities::RX_SCATTER | crate::driver::Capabilities::TX_MULTI_SEG,
            max_mtu: u16::MAX - 18,
            ..DeviceInfo::basic("ring")
        }
    }

    fn configure(&mut self, _config: &PortConfig) -> Result<()> {
        Ok(())
    }

    fn setup_rx_queue(&mut self, setup: &RxQueueSetup<'_>) -> Result<Box<dyn RxQueueOps>> {
        let rx = self.rx.take().ok_or_else(|| PortError::InvalidConfig {
            device: self.name.clone(),
            op: "set up RX queue",
            reason: "a ring port has one RX queue, already set up".into(),
        })?;
        Ok(Box::new(RingRxQueue {
            rx,
            port_id: setup.port_id,
        }))
    }

    fn setup_tx_queue(&mut self, _setup: &TxQueueSetup<'_>) -> Result<Box<dyn TxQueueOps>> {
        let tx = self.tx.take().ok_or_else(|| PortError::InvalidConfig {
            device: self.name.clone(),
            op: "set up TX queue",
            reason: "a ring port has one TX queue, already set up".into(),
        })?;
        Ok(Box::new(RingTxQueue { tx }))
    }

    fn start(&mut self) -> Result<()> {
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        Ok(())
    }

    fn link(&mut self) -> Result<LinkStatus> {
        Ok(LinkStatus {
            up: true,
            speed_mbps: 10_000,
            full_duplex: true,
        })
    }

    fn mac_addr(&self) -> MacAddr {
        self.mac
    }

    fn set_mac_addr(&mut self, mac: MacAddr) -> Result<()> {
        self.mac = mac;
        Ok(())
    }

    fn set_promiscuous(&mut self, _on: bool) -> Result<()> {
        Ok(())
    }

    fn set_all_multicast(&mut self, _on: bool) -> Result<()> {
        Ok(())
    }
}

struct RingRxQueue {
    rx: Consumer<Packet>,
    port_id: u16,
}

impl RxQueueOps for RingRxQueue {
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        let room = out.room();
        let start = out.len();
        let n = self.rx.dequeue_burst_into_vec(out.vec_mut(), room);
        let mut bytes = 0u64;
        for p in &mut out.as_mut_slice()[start..] {
            p.set_port(self.port_id);
            p.set_queue(0);
            bytes += p.len() as u64;
        }
        c.packets += n as u64;
        c.bytes += bytes;
        n
    }
}

struct RingTxQueue {
    tx: Producer<Packet>,
}

impl TxQueueOps for RingTxQueue {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        let total: u64 = pkts.iter().map(|p| p.len() as u64).sum();
        let n = self.tx.enqueue_burst_from_vec(pkts.vec_mut());
        let left: u64 = pkts.iter().map(|p| p.len() as u64).sum();
        c.packets += n as u64;
        c.bytes += total - left;
        n
    }
}
