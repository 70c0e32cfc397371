//! The queues of one port on an 82576 function (PF or VF): the DMA region of its descriptor
//! rings, the RX and TX rings set up on it, and the queues to disable again at teardown.
#![forbid(unsafe_code)]

use std::sync::Arc;

use oxpmd_dma::{DmaMap, DmaRegion, Mempool, RegionOptions};

use super::queue_ctl::{disable_queue, start_queue};
use super::queue_regs::{SRRCTL_DESCTYPE_ADV_ONEBUF, SRRCTL_DROP_EN, srrctl_bsizepkt};
use super::ring_regs::RingRegs;
use super::tx_queue::AdvTxQueue;
use super::{Dir, FamilyError, QueueDevice, port_err};
use crate::adv_ring::{AdvRxRing, AdvTxRing, desc};
use crate::driver::{DeviceInfo, RxQueueSetup, TxQueueSetup};
use crate::error::{PortError, Result};
use crate::iommu::{MappedPools, RingSlice, VfioDmaMap, pool_is_mapped};
use crate::port::PortConfig;

/// One region holds every ring of the port: RX rings first, then TX rings.
struct RingLayout {
    region: Arc<DmaRegion>,
    rx_ring_size: usize,
    tx_ring_size: usize,
    rx_queues: u16,
}

/// The queues of a port on function `D`.
pub(crate) struct PortQueues<D: QueueDevice> {
    dev: Arc<D>,
    dma: Arc<VfioDmaMap>,
    rings: Option<RingLayout>,
    /// Queues set up (disabled again at teardown).
    set_up: Vec<(Dir, u16)>,
}

impl<D: QueueDevice> PortQueues<D> {
    /// No rings yet: [`configure`](Self::configure) makes them.
    pub(crate) fn new(dev: Arc<D>, dma: Arc<VfioDmaMap>) -> Self {
        PortQueues {
            dev,
            dma,
            rings: None,
            set_up: Vec::new(),
        }
    }

    /// The DMA mapping the port's memory goes through.
    pub(crate) fn dma(&self) -> &Arc<VfioDmaMap> {
        &self.dma
    }

    /// Refuses `pool` for `op` unless it is mapped in the port's IOMMU container.
    pub(crate) fn check_pool(&self, pool: &Mempool, op: &'static str) -> Result<()> {
        if pool_is_mapped(self.dma.container(), pool) {
            return Ok(());
        }
        Err(port_err(
            self.dev.name(),
            op,
            FamilyError::PoolNotMapped {
                pool: pool.name().to_string(),
            },
        ))
    }

    /// Allocates the rings of `config`'s queues in one region mapped for the device (once).
    pub(crate) fn configure(&mut self, config: &PortConfig) -> Result<()> {
        let name = self.dev.name();
        if self.rings.is_some() {
            return Err(port_err(
                name,
                "configure",
                FamilyError::Ring("already configured".into()),
            ));
        }
        self.check_pool(&config.mempool, "configure")?;
        let bytes = (usize::from(config.rx_queues) * config.rx_ring_size
            + usize::from(config.tx_queues) * config.tx_ring_size)
            * desc::DESC_SIZE;
        let mut region = DmaRegion::new(bytes, &RegionOptions::default())
            .map_err(|e| port_err(name, "allocate descriptor rings", e))?;
        let map: Arc<dyn DmaMap> = self.dma.clone();
        region
            .map(map)
            .map_err(|e| port_err(name, "map descriptor rings", e))?;
        self.rings = Some(RingLayout {
            region: Arc::new(region),
            rx_ring_size: config.rx_ring_size,
            tx_ring_size: config.tx_ring_size,
            rx_queues: config.rx_queues,
        });
        Ok(())
    }

    /// The slice of the ring region for queue `q` of `dir`.
    pub(crate) fn ring_slice(&self, dir: Dir, q: u16, descs: usize, op: &'static str) -> Result<RingSlice> {
        let name = self.dev.name();
        let l = self
            .rings
            .as_ref()
            .ok_or_else(|| port_err(name, op, FamilyError::Ring("configure was not called".into())))?;
        let rx_bytes = usize::from(l.rx_queues) * l.rx_ring_size * desc::DESC_SIZE;
        let offset = match dir {
            Dir::Rx => usize::from(q) * l.rx_ring_size * desc::DESC_SIZE,
            Dir::Tx => rx_bytes + usize::from(q) * l.tx_ring_size * desc::DESC_SIZE,
        };
        RingSlice::new(l.region.clone(), offset, descs * desc::DESC_SIZE).ok_or_else(|| {
            port_err(
                name,
                op,
                FamilyError::Ring(format!("{} queue {q} does not fit the ring region", dir.name())),
            )
        })
    }

    /// Builds RX queue `setup.queue`'s ring and starts the queue (the ring armed). Returns the
    /// ring and the SRRCTL value written (a VF writes it again after a reset). `batch_tail`: see
    /// [`RingRegs::new`].
    pub(crate) fn set_up_rx(
        &mut self,
        setup: &RxQueueSetup<'_>,
        info: &DeviceInfo,
        batch_tail: bool,
    ) -> Result<(AdvRxRing<RingRegs<D>, RingSlice>, u32)> {
        const OP: &str = "set up RX queue";
        let q = setup.queue;
        let name = self.dev.name();
        self.check_pool(setup.pool, OP)?;
        disable_queue(&*self.dev, Dir::Rx, q);
        let mem = self.ring_slice(Dir::Rx, q, setup.ring_size, OP)?;
        let regs = RingRegs::new(self.dev.clone(), Dir::Rx, q, setup.ring_size, batch_tail);
        let mut ring = AdvRxRing::new(mem, regs, setup.pool, setup.ring_size, setup.port_id, q)
            .map_err(|e| port_err(name, OP, e))?;
        ring.set_vlan_stripped(setup.vlan_strip);
        // A frame longer than one buffer goes on over the next descriptors (EOP on the last).
        ring.set_max_frame(setup.max_frame);
        let srrctl = rx_buffer_size(name, info, setup.pool)? | SRRCTL_DESCTYPE_ADV_ONEBUF | SRRCTL_DROP_EN;
        self.set_up.push((Dir::Rx, q));
        start_queue(
            &*self.dev,
            Dir::Rx,
            q,
            ring.iova(),
            ring.len_bytes(),
            Some(srrctl),
        )
        .map_err(|e| port_err(name, "start the RX queue", e))?;
        ring.arm();
        Ok((ring, srrctl))
    }

    /// Builds TX queue `setup.queue`'s ring and starts the queue.
    pub(crate) fn set_up_tx(&mut self, setup: &TxQueueSetup<'_>) -> Result<AdvTxQueue<RingRegs<D>>> {
        const OP: &str = "set up TX queue";
        let q = setup.queue;
        let name = self.dev.name();
        disable_queue(&*self.dev, Dir::Tx, q);
        let mem = self.ring_slice(Dir::Tx, q, setup.ring_size, OP)?;
        let regs = RingRegs::new(self.dev.clone(), Dir::Tx, q, setup.ring_size, false);
        let ring = AdvTxRing::new(mem, regs, setup.ring_size).map_err(|e| port_err(name, OP, e))?;
        self.set_up.push((Dir::Tx, q));
        start_queue(&*self.dev, Dir::Tx, q, ring.iova(), ring.len_bytes(), None)
            .map_err(|e| port_err(name, "start the TX queue", e))?;
        let pools = MappedPools::new(
            name,
            self.dma.container().clone(),
            setup.pool,
            &format!("TX queue {q}"),
        );
        Ok(AdvTxQueue { ring, pools })
    }

    /// Disables every queue set up (queues still alive elsewhere disable again at their own
    /// drop).
    pub(crate) fn disable_all(&self) {
        for &(dir, q) in &self.set_up {
            disable_queue(&*self.dev, dir, q);
        }
    }
}

/// SRRCTL.BSIZEPKT for an RX queue of `pool`: the data room rounded down to whole KiB, so never
/// more than the buffer holds; refused (as `Port::configure` does first) when that cannot hold
/// a full frame.
fn rx_buffer_size(device: &str, info: &DeviceInfo, pool: &Mempool) -> Result<u32> {
    match (
        crate::port::rx_buffer_refusal(pool, info),
        srrctl_bsizepkt(pool.data_room()),
    ) {
        (None, Some(kib)) => Ok(kib),
        (reason, _) => Err(PortError::InvalidConfig {
            device: device.to_string(),
            op: "set up RX queue",
            reason: reason.unwrap_or_else(|| format!("mempool `{}`: no whole KiB of data room", pool.name())),
        }),
    }
}
