//! The `null` port: RX hands out fresh packets of a fixed length from the mempool, TX frees what it
//! is given. Like DPDK's `net_null` with `copy=0`: packet metadata is written (length, port,
//! offsets: a reset), packet data is never touched.

use oxpmd_dma::{FillTemplate, Mempool};

use crate::burst::Burst;
use crate::driver::{DeviceInfo, Driver, LinkStatus, RxQueueOps, RxQueueSetup, TxQueueOps, TxQueueSetup};
use crate::error::Result;
use crate::mac::MacAddr;
use crate::port::PortConfig;
use crate::stats::QueueCounters;

/// Most queues a null port offers.
pub const NULL_MAX_QUEUES: u16 = 16;

/// Driver of a `null` port.
#[derive(Debug)]
pub struct NullDriver {
    name: String,
    size: usize,
    mac: MacAddr,
}

impl NullDriver {
    /// A null port `null<index>` producing frames of `size` bytes.
    pub fn new(index: u32, size: usize) -> NullDriver {
        NullDriver {
            name: format!("null{index}"),
            size,
            mac: MacAddr::local(0x0100 | (index as u16 & 0xFF)),
        }
    }
}

impl Driver for NullDriver {
    fn device_name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            max_rx_queues: NULL_MAX_QUEUES,
            max_tx_queues: NULL_MAX_QUEUES,
            min_rx_buffer: self.size,
            // TX frees whatever it is given, chains included.
            capabilities: crate::driver::Capabilities::TX_MULTI_SEG,
            max_mtu: u16::MAX - 18,
            ..DeviceInfo::basic("null")
        }
    }

    fn configure(&mut self, _config: &PortConfig) -> Result<()> {
        Ok(())
    }

    fn setup_rx_queue(&mut self, setup: &RxQueueSetup<'_>) -> Result<Box<dyn RxQueueOps>> {
        Ok(Box::new(NullRxQueue {
            pool: setup.pool.clone(),
            fill: FillTemplate {
                // A size past u16 exceeds every data room, which configure has refused
                // (`min_rx_buffer`); the pool checks the length again per burst.
                data_len: u16::try_from(self.size).unwrap_or(u16::MAX),
                port: setup.port_id,
                queue: setup.queue,
            },
        }))
    }

    fn setup_tx_queue(&mut self, _setup: &TxQueueSetup<'_>) -> Result<Box<dyn TxQueueOps>> {
        Ok(Box::new(NullTxQueue))
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

/// RX queue of a null port.
struct NullRxQueue {
    pool: Mempool,
    /// Each packet's length, port and queue, written by the pool as it hands the packet out.
    fill: FillTemplate,
}

impl RxQueueOps for NullRxQueue {
    #[inline]
    fn rx_burst(&mut self, out: &mut Burst, c: &mut QueueCounters) -> usize {
        let n = out.room();
        if n == 0 {
            return 0;
        }
        // The burst's vector has room for `n` (`room`); the data room was checked against the
        // size at configure time, so only an empty pool makes this fail.
        if let Err(e) = self.pool.alloc_bulk_filled(out.vec_mut(), n, self.fill) {
            debug_assert!(matches!(e, oxpmd_dma::FillError::Exhausted(_)), "{e}");
            c.rx_nombuf += n as u64;
            return 0;
        }
        c.packets += n as u64;
        c.bytes += (n * usize::from(self.fill.data_len)) as u64;
        n
    }
}

/// TX queue of a null port: frees every packet (through this thread's cache of its pool).
struct NullTxQueue;

impl TxQueueOps for NullTxQueue {
    #[inline]
    fn tx_burst(&mut self, pkts: &mut Burst, c: &mut QueueCounters) -> usize {
        let n = pkts.len();
        let bytes: usize = pkts.iter().map(|p| p.len()).sum();
        pkts.clear();
        c.bytes += bytes as u64;
        c.packets += n as u64;
        n
    }
}
