//! The `xdp:` port: any kernel-driven NIC through AF_XDP sockets, one per queue, without
//! unbinding it from its kernel driver.
//!
//! - The UMEM is the DMA region of the port's mempool, which must be chunk-aligned
//!   ([`oxpmd_dma::MempoolConfig::chunk_aligned`], 2048- or 4096-byte buffers): received frames
//!   are that pool's [`Packet`](oxpmd_dma::Packet)s, no copy, and its packets are sent from their
//!   own buffers; packets of other pools are copied into a UMEM buffer.
//! - The first socket registers the UMEM, the others share it, each with its own fill and
//!   completion rings. Bound in zero copy where the kernel driver supports it, else copy mode
//!   (`mode=` of the spec forces one); the mode is in the port's driver name (`af_xdp(zc)` /
//!   `af_xdp(copy)`) and logged at start. need_wakeup is used: a system call only when the
//!   kernel asks for one.
//! - An XDP program of five instructions (`bpf`) redirects each queue's frames to its socket,
//!   attached through a bpf_link (gone when the process is), native XDP where the driver has it.
//! - The NIC's RSS spreads flows over its queues as the kernel configured it (`ethtool -X`);
//!   link state and counters come from sysfs.

mod bpf;
mod error;
mod frames;
mod iface;
pub mod probe;
mod ring;
mod rx;
mod socket;
mod spec;
mod sys;
mod tx;

use std::collections::HashMap;
use std::sync::Arc;

pub use error::XdpError;
pub use iface::Interface;
pub use socket::XdpMode;
pub use spec::XdpSpec;
pub use sys::XdpStatistics;

use oxpmd_dma::Mempool;

use crate::burst::MAX_BURST;
use crate::driver::{DeviceInfo, Driver, LinkStatus, RxQueueOps, RxQueueSetup, TxQueueOps, TxQueueSetup};
use crate::error::{PortError, Result};
use crate::mac::MacAddr;
use crate::port::PortConfig;
use crate::stats::DeviceCounters;
use crate::xstats::XStat;
use bpf::XdpProgram;
use frames::FrameTable;
use ring::XskRing;
use socket::{XskRings, XskSocket};
use sys::{XDP_PACKET_HEADROOM, XDP_UMEM_MAX_CHUNK_SIZE, XDP_UMEM_MIN_CHUNK_SIZE, XdpDesc};

/// Ring sizes an AF_XDP socket takes here (powers of two).
const MIN_RING: usize = 64;
const MAX_RING: usize = 4096;

/// The half of a socket not yet claimed by its RX or TX queue.
struct Halves {
    sock: Arc<XskSocket>,
    rx: Option<(XskRing<u64>, XskRing<XdpDesc>)>,
    tx: Option<(XskRing<XdpDesc>, XskRing<u64>)>,
}

/// Driver of an `xdp:` port.
pub struct XdpDriver {
    name: String,
    iface: Interface,
    /// Interface queue of port queue 0; port queue `q` is interface queue `first + q`.
    first: u32,
    count: u32,
    mode: XdpMode,
    ring_size: usize,
    pool: Option<Mempool>,
    /// Sockets by port queue, until both their queues are set up.
    halves: HashMap<u16, Halves>,
    /// Every socket (for statistics), port queue order.
    sockets: Vec<Arc<XskSocket>>,
    /// Flag state before this port changed it (restored on drop).
    saved_flags: Vec<(libc::c_int, bool)>,
    /// Declared last among what the queues do not own: the program goes with the driver.
    program: Option<XdpProgram>,
}

impl std::fmt::Debug for XdpDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpDriver")
            .field("name", &self.name)
            .field("queues", &(self.first..self.first + self.count))
            .field("mode", &self.mode)
            .finish()
    }
}

impl XdpDriver {
    /// Opens interface `spec.iface` (checking it and its queues; nothing is attached yet).
    pub fn open(spec: &XdpSpec) -> Result<XdpDriver> {
        let name = format!("xdp:{}", spec.iface);
        let err = |e: XdpError| PortError::Driver {
            device: name.clone(),
            op: "open",
            source: Box::new(e),
        };
        let iface = Interface::lookup(&spec.iface).map_err(err)?;
        let usable = iface.rx_queues.min(iface.tx_queues).max(1);
        let (first, last) = spec.queues.unwrap_or((0, usable - 1));
        if last >= usable {
            return Err(err(XdpError::QueueOutOfRange {
                iface: iface.name.clone(),
                queue: last,
                rx: iface.rx_queues,
                tx: iface.tx_queues,
                last: usable - 1,
            }));
        }
        Ok(XdpDriver {
            name,
            iface,
            first,
            count: last - first + 1,
            mode: spec.mode,
            ring_size: 0,
            pool: None,
            halves: HashMap::new(),
            sockets: Vec::new(),
            saved_flags: Vec::new(),
            program: None,
        })
    }

    /// Whether the sockets are bound in zero-copy mode (`None` before the first queue is set up).
    pub fn zero_copy(&self) -> Option<bool> {
        self.sockets.first().map(|s| s.zero_copy)
    }

    fn err(&self, op: &'static str, e: XdpError) -> PortError {
        PortError::Driver {
            device: self.name.clone(),
            op,
            source: Box::new(e),
        }
    }

    /// Checks that `pool` can be the UMEM.
    fn check_pool(&self, pool: &Mempool) -> std::result::Result<(), XdpError> {
        let chunk = pool.element_size();
        if !pool.chunk_aligned() || !(XDP_UMEM_MIN_CHUNK_SIZE..=XDP_UMEM_MAX_CHUNK_SIZE).contains(&chunk) {
            return Err(XdpError::BadPool {
                reason: format!(
                    "mempool `{}` cannot be the UMEM: an AF_XDP port needs a chunk-aligned pool of \
                     2048- or 4096-byte buffers (MempoolConfig {{ chunk_aligned: true, headroom + \
                     data_room <= 4096 }}; this one has {chunk}-byte buffers{})",
                    pool.name(),
                    if pool.chunk_aligned() {
                        ""
                    } else {
                        ", not chunk-aligned"
                    }
                ),
            });
        }
        if let Some(mtu) = self.iface.mtu() {
            let frame = mtu + 14 + 4;
            if frame + XDP_PACKET_HEADROOM > chunk {
                return Err(XdpError::BadPool {
                    reason: format!(
                        "`{}` has MTU {mtu}: a frame of up to {frame} bytes does not fit in a UMEM \
                         frame of {chunk} bytes after the kernel's {XDP_PACKET_HEADROOM}-byte \
                         headroom; use 4096-byte buffers or lower the MTU (`ip link set dev {} mtu \
                         1500`)",
                        self.iface.name, self.iface.name
                    ),
                });
            }
        }
        Ok(())
    }

    /// The socket of port queue `q`, opened on first use.
    fn halves(&mut self, q: u16, pool: &Mempool) -> Result<&mut Halves> {
        if !self.halves.contains_key(&q) && self.sockets.len() <= q as usize {
            if let Some(p) = &self.pool {
                if p.id() != pool.id() {
                    return Err(PortError::InvalidConfig {
                        device: self.name.clone(),
                        op: "set up a queue",
                        reason: "every queue of an xdp: port uses the port's mempool (one UMEM)".into(),
                    });
                }
            }
            let program = self.program.as_ref().ok_or_else(|| PortError::InvalidConfig {
                device: self.name.clone(),
                op: "set up a queue",
                reason: "configure the port first".into(),
            })?;
            let queue = self.first + u32::from(q);
            let shared = self.sockets.first().map(|s| &**s);
            let (sock, rings) = XskSocket::open(
                self.iface.ifindex,
                queue,
                self.ring_size as u32,
                pool,
                shared,
                self.mode,
            )
            .map_err(|e| PortError::Driver {
                device: self.name.clone(),
                op: "open the AF_XDP socket",
                source: Box::new(e),
            })?;
            program
                .insert(queue, sock.raw_fd())
                .map_err(|e| self.err("set up a queue", e))?;
            let sock = Arc::new(sock);
            let XskRings { fill, rx, tx, comp } = rings;
            self.sockets.push(sock.clone());
            self.halves.insert(
                q,
                Halves {
                    sock,
                    rx: Some((fill, rx)),
                    tx: Some((tx, comp)),
                },
            );
        }
        self.halves.get_mut(&q).ok_or_else(|| PortError::InvalidConfig {
            device: self.name.clone(),
            op: "set up a queue",
            reason: format!("queue {q} is already set up"),
        })
    }

    /// One half of port queue `q`'s socket (`take` picks it), with the socket; the socket's
    /// entry goes once both halves are taken.
    fn take_half<T>(
        &mut self,
        q: u16,
        pool: &Mempool,
        what: &str,
        take: impl FnOnce(&mut Halves) -> Option<T>,
    ) -> Result<(T, Arc<XskSocket>)> {
        let name = self.name.clone();
        let h = self.halves(q, pool)?;
        let half = take(h).ok_or_else(|| PortError::InvalidConfig {
            device: name,
            op: "set up a queue",
            reason: format!("{what} queue {q} is already set up"),
        })?;
        let sock = h.sock.clone();
        if h.rx.is_none() && h.tx.is_none() {
            self.halves.remove(&q);
        }
        Ok((half, sock))
    }

    fn mode_name(&self) -> &'static str {
        match self.zero_copy() {
            Some(true) => "af_xdp(zc)",
            Some(false) => "af_xdp(copy)",
            None => "af_xdp",
        }
    }
}

impl Driver for XdpDriver {
    fn device_name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            max_rx_queues: self.count as u16,
            max_tx_queues: self.count as u16,
            min_ring_size: MIN_RING,
            max_ring_size: MAX_RING,
            // A chain is sent as one UMEM frame (copied); the kernel interface's MTU is the
            // largest, and the port does not change it (`ip link set dev IFACE mtu N` does).
            capabilities: crate::driver::Capabilities::TX_MULTI_SEG,
            max_mtu: self
                .iface
                .mtu()
                .and_then(|m| u16::try_from(m).ok())
                .unwrap_or(crate::driver::DEFAULT_MTU),
            // The pool is the UMEM (check_pool).
            needs_chunk_aligned_pool: true,
            ..DeviceInfo::basic(self.mode_name())
        }
    }

    fn configure(&mut self, config: &PortConfig) -> Result<()> {
        self.check_pool(&config.mempool)
            .map_err(|e| self.err("configure", e))?;
        if self.program.is_some() {
            return Err(PortError::InvalidConfig {
                device: self.name.clone(),
                op: "configure",
                reason: "an xdp: port is configured once (open it again to change it)".into(),
            });
        }
        self.ring_size = config.rx_ring_size.max(config.tx_ring_size);
        self.pool = Some(config.mempool.clone());
        let entries = self.first + self.count;
        self.program = Some(
            XdpProgram::attach(&self.iface.name, self.iface.ifindex, entries)
                .map_err(|e| self.err("configure", e))?,
        );
        Ok(())
    }

    fn setup_rx_queue(&mut self, setup: &RxQueueSetup<'_>) -> Result<Box<dyn RxQueueOps>> {
        let pool = setup.pool.clone();
        let ((fill, rx), sock) = self.take_half(setup.queue, &pool, "RX", |h| h.rx.take())?;
        let mut q = rx::XdpRxQueue {
            frames: FrameTable::new(&pool),
            fill,
            rx,
            sock,
            pool,
            fresh: (0..MAX_BURST).map(|_| None).collect(),
            port_id: setup.port_id,
            queue: setup.queue,
        };
        q.prime();
        Ok(Box::new(q))
    }

    fn setup_tx_queue(&mut self, setup: &TxQueueSetup<'_>) -> Result<Box<dyn TxQueueOps>> {
        let pool = setup.pool.clone();
        let device = self.name.clone();
        let ((tx, comp), sock) = self.take_half(setup.queue, &pool, "TX", |h| h.tx.take())?;
        Ok(Box::new(tx::XdpTxQueue {
            frames: FrameTable::new(&pool),
            tx,
            comp,
            sock,
            base_iova: frames::base_iova(&pool),
            pool,
            copies: Vec::with_capacity(MAX_BURST),
            refused_logged: false,
            device,
        }))
    }

    fn start(&mut self) -> Result<()> {
        // RX halves never claimed (more TX than RX queues) keep their sockets open.
        self.halves.retain(|_, h| h.rx.is_some() || h.tx.is_some());
        log::info!(
            "{}: AF_XDP on {} (driver {}), queues {}..={}, {} mode, {} XDP",
            self.name,
            self.iface.name,
            self.iface.driver.as_deref().unwrap_or("?"),
            self.first,
            self.first + self.count - 1,
            if self.zero_copy() == Some(true) {
                "zero-copy"
            } else {
                "copy"
            },
            if self.program.as_ref().is_some_and(|p| p.native) {
                "native"
            } else {
                "generic"
            }
        );
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        Ok(())
    }

    fn link(&mut self) -> Result<LinkStatus> {
        Ok(self.iface.link())
    }

    fn mac_addr(&self) -> MacAddr {
        self.iface.mac()
    }

    fn set_mac_addr(&mut self, _mac: MacAddr) -> Result<()> {
        Err(PortError::Unsupported {
            device: self.name.clone(),
            op: "set the MAC address (the kernel owns the interface: `ip link set dev IFACE address MAC`)",
            driver: "af_xdp",
        })
    }

    fn set_promiscuous(&mut self, on: bool) -> Result<()> {
        self.set_flag(libc::IFF_PROMISC, on)
    }

    fn set_all_multicast(&mut self, on: bool) -> Result<()> {
        self.set_flag(libc::IFF_ALLMULTI, on)
    }

    fn device_counters(&mut self) -> Result<DeviceCounters> {
        let mut c = DeviceCounters {
            imissed: self.iface.counter("rx_missed_errors"),
            ierrors: self.iface.counter("rx_errors"),
            oerrors: self.iface.counter("tx_errors"),
        };
        for s in self.sockets.iter().filter_map(|s| s.statistics()) {
            c.imissed += s.rx_dropped + s.rx_ring_full;
            c.oerrors += s.tx_invalid_descs;
        }
        Ok(c)
    }

    fn xstats(&mut self, out: &mut Vec<XStat>) -> Result<()> {
        for (q, s) in self.sockets.iter().enumerate() {
            let Some(s) = s.statistics() else { continue };
            for (name, v) in [
                ("rx_dropped", s.rx_dropped),
                ("rx_invalid_descs", s.rx_invalid_descs),
                ("rx_ring_full", s.rx_ring_full),
                ("rx_fill_ring_empty_descs", s.rx_fill_ring_empty_descs),
                ("tx_invalid_descs", s.tx_invalid_descs),
                ("tx_ring_empty_descs", s.tx_ring_empty_descs),
            ] {
                out.push(XStat::new(format!("xsk_q{q}_{name}"), v));
            }
        }
        Ok(())
    }
}

impl XdpDriver {
    fn set_flag(&mut self, flag: libc::c_int, on: bool) -> Result<()> {
        let was = self.iface.set_flag(flag, on).map_err(|e| {
            self.err(
                "set an interface flag (promiscuous / all-multicast)",
                XdpError::os("ioctl(SIOCSIFFLAGS)", e),
            )
        })?;
        if !self.saved_flags.iter().any(|(f, _)| *f == flag) {
            self.saved_flags.push((flag, was));
        }
        Ok(())
    }
}

impl Drop for XdpDriver {
    fn drop(&mut self) {
        for (flag, was) in self.saved_flags.drain(..) {
            let _ = self.iface.set_flag(flag, was);
        }
        // Detach the program before the unclaimed sockets go.
        drop(self.program.take());
        self.halves.clear();
    }
}
