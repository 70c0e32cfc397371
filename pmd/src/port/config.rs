//! [`PortConfig`]: what a port is configured with, and its validation against what the device
//! offers ([`DeviceInfo`]).
#![forbid(unsafe_code)]

use oxpmd_dma::Mempool;

use crate::burst::DEFAULT_BURST;
use crate::driver::{Capabilities, DEFAULT_MTU, DeviceInfo, MIN_MTU, max_frame_len};
use crate::error::{PortError, Result};

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
    /// Drop tagged frames whose VLAN id is not in the filter table ([`Port::vlan_filter_add`](crate::Port::vlan_filter_add);
    /// needs [`Capabilities::VLAN_FILTER`]). The table starts empty.
    pub vlan_filter: bool,
    /// The RSS hash key (`rss_key_len` bytes); `None`: the driver picks a random one (see
    /// [`Port::rss_key`](crate::Port::rss_key)).
    pub rss_key: Option<Vec<u8>>,
    /// The header fields to hash; `None`: every type the device offers.
    pub rss_hash: Option<crate::rss::RssHash>,
    /// The MTU ([`MIN_MTU`]`..=`[`DeviceInfo::max_mtu`]; default [`DEFAULT_MTU`]). A frame
    /// larger than one RX buffer arrives as a chained packet, which needs
    /// [`Capabilities::RX_SCATTER`]; without it the pool's data room must hold the whole frame.
    pub mtu: u16,
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

/// Why a port of a device described by `info`, receiving into `pool`, cannot have MTU `mtu`.
pub(crate) fn mtu_refusal(mtu: u16, pool: &Mempool, info: &DeviceInfo) -> std::result::Result<(), String> {
    if !(MIN_MTU..=info.max_mtu).contains(&mtu) {
        return Err(format!(
            "MTU {mtu}: {} takes {MIN_MTU}..={}",
            info.driver, info.max_mtu
        ));
    }
    let frame = max_frame_len(mtu);
    let room = pool.data_room() - pool.data_room() % info.rx_buffer_unit.max(1);
    if frame > room && !info.capabilities.contains(Capabilities::RX_SCATTER) {
        return Err(format!(
            "MTU {mtu}: frames of up to {frame} bytes do not fit the {room} bytes of an RX buffer of \
             mempool `{}`, and {} has no {} (it offers: {}); use a data room of at least {frame} bytes",
            pool.name(),
            info.driver,
            Capabilities::RX_SCATTER,
            info.capabilities
        ));
    }
    Ok(())
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
            mtu: DEFAULT_MTU,
        }
    }

    /// Sets the MTU.
    pub fn mtu(mut self, mtu: u16) -> Self {
        self.mtu = mtu;
        self
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
        mtu_refusal(self.mtu, &self.mempool, info).map_err(bad)?;
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
