//! The bring-up of a virtio-net device: its virtio structures found and mapped, then reset,
//! ACKNOWLEDGE, DRIVER, feature negotiation, FEATURES_OK and the device configuration (at open,
//! and again at configure when the configuration needs other features), and the programming of
//! a virtqueue (the control queue here, the RX and TX queues at their setup).
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};

use oxpmd_dma::{DmaMap, DmaRegion, RegionOptions};
use oxpmd_vfio::{Bar, BarError, Device};

use super::caps::find_virtio_caps;
use super::ctrl::{self, CtrlCommand, CtrlQueue};
use super::packed::PackedRing;
use super::regs::{common, feature, netcfg, status};
use super::split::{SplitRing, Virtqueue};
use super::{
    CTRL_QUEUE_SIZE, MAX_MSIX_VECTORS, MAX_MTU, StopOnce, VirtioDoorbell, VirtioDriver, VirtioError,
    VirtioShared, Wanted, drv_err, negotiate, queue,
};
use crate::error::Result;
use crate::iommu::RingSlice;
use crate::mac::MacAddr;

impl VirtioDriver {
    /// Reads config space, finds the virtio structures and maps their BARs.
    pub(super) fn map_structures(name: &str, device: Device) -> Result<VirtioShared> {
        let mut cfg = [0u8; 256];
        device
            .read_config(0, &mut cfg)
            .map_err(|e| drv_err(name, "read PCI config space", e))?;
        let mut bar_sizes = [0u64; 6];
        for (i, s) in bar_sizes.iter_mut().enumerate() {
            *s = device.region_info(i as u32).map(|r| r.size).unwrap_or(0);
        }
        let caps = find_virtio_caps(&cfg, &bar_sizes)
            .map_err(|e| drv_err(name, "find the virtio capabilities", e))?;
        let mut bars: Vec<(u8, Bar)> = Vec::new();
        let mut bar = |idx: u8| -> Result<Bar> {
            if let Some((_, b)) = bars.iter().find(|(i, _)| *i == idx) {
                return Ok(b.clone());
            }
            let b = device
                .map_bar(u32::from(idx))
                .map_err(|e| drv_err(name, "map a virtio BAR", e))?;
            bars.push((idx, b.clone()));
            Ok(b)
        };
        let common = bar(caps.common.bar)?;
        let notify = bar(caps.notify.bar)?;
        let device_cfg = match caps.device {
            Some(d) => Some((bar(d.bar)?, d.offset as usize, d.length as usize)),
            None => None,
        };
        Ok(VirtioShared {
            name: name.to_string(),
            device,
            common,
            common_off: caps.common.offset as usize,
            notify,
            device_cfg,
            caps,
            stopped: StopOnce::new(),
            reset_lock: Mutex::new(()),
            msix: crate::link_events::MsixVectors::new(MAX_MSIX_VECTORS),
            queue_select: Mutex::new(()),
        })
    }

    /// Reset, ACKNOWLEDGE, DRIVER, features (the optional ones offered and what is `wanted`),
    /// FEATURES_OK, MAC (unless the application set one), queue pairs, control queue. Run at open,
    /// and again by `configure` when the configuration needs other features: the reset ends
    /// everything the device held (the old control queue is dropped only after it).
    pub(super) fn initialize(&mut self, wanted: Wanted) -> Result<()> {
        let s = self.shared.clone();
        s.device
            .enable_memory_and_bus_master()
            .map_err(|e| drv_err(&s.name, "enable memory space and bus mastering", e))?;
        s.reset().map_err(|e| drv_err(&s.name, "reset", e))?;
        s.add_status(status::ACKNOWLEDGE)
            .map_err(self.reg_err("set ACKNOWLEDGE"))?;
        s.add_status(status::DRIVER).map_err(self.reg_err("set DRIVER"))?;
        let mut offered = 0u64;
        for sel in 0..2u32 {
            s.w32(common::DEVICE_FEATURE_SELECT, sel)
                .map_err(self.reg_err("read device features"))?;
            let v = s
                .r32(common::DEVICE_FEATURE)
                .map_err(self.reg_err("read device features"))?;
            offered |= u64::from(v) << (32 * sel);
        }
        self.offered = offered;
        let features = match negotiate(&s.name, offered, wanted) {
            Ok(f) => f,
            Err(e) => {
                let _ = s.add_status(status::FAILED);
                return Err(drv_err(&s.name, "negotiate features", e));
            }
        };
        for sel in 0..2u32 {
            s.w32(common::DRIVER_FEATURE_SELECT, sel)
                .map_err(self.reg_err("write driver features"))?;
            s.w32(common::DRIVER_FEATURE, (features >> (32 * sel)) as u32)
                .map_err(self.reg_err("write driver features"))?;
        }
        let st = s
            .add_status(status::FEATURES_OK)
            .map_err(self.reg_err("set FEATURES_OK"))?;
        let back = s.status().map_err(self.reg_err("read status"))?;
        if back & status::FEATURES_OK == 0 {
            let _ = s.add_status(status::FAILED);
            return Err(drv_err(
                &s.name,
                "negotiate features",
                VirtioError::FeaturesRefused {
                    device: s.name.clone(),
                    features,
                },
            ));
        }
        debug_assert_eq!(st & status::FEATURES_OK, status::FEATURES_OK);
        self.features = features;
        self.num_queues = s
            .r16(common::NUM_QUEUES)
            .map_err(self.reg_err("read num_queues"))?;
        let mut mac = if features & feature::NET_MAC != 0 {
            s.read_device_cfg::<6>(netcfg::MAC)
                .map_err(self.reg_err("read MAC"))?
                .map(MacAddr)
                .unwrap_or(MacAddr::ZERO)
        } else {
            MacAddr::ZERO
        };
        if !mac.is_valid_unicast() {
            let fallback = MacAddr::local(self.port_id);
            log::warn!("{}: device offers no valid MAC ({mac}); using {fallback}", s.name);
            mac = fallback;
        }
        if !self.mac_changed {
            self.mac = mac;
        }
        self.max_mtu = if features & feature::NET_MTU != 0 {
            s.read_device_cfg::<2>(netcfg::MTU)
                .map_err(self.reg_err("read the device's MTU"))?
                .map(u16::from_le_bytes)
                .unwrap_or(crate::driver::DEFAULT_MTU)
                .clamp(crate::driver::MIN_MTU, MAX_MTU)
        } else {
            MAX_MTU
        };
        if features & feature::NET_MQ != 0 {
            let pairs = s
                .read_device_cfg::<2>(netcfg::MAX_VIRTQUEUE_PAIRS)
                .map_err(self.reg_err("read max_virtqueue_pairs"))?
                .map(u16::from_le_bytes)
                .unwrap_or(1);
            // The specification's range is 1..=0x8000; the queues must exist too.
            self.max_pairs = pairs.clamp(1, (self.num_queues.saturating_sub(1) / 2).max(1));
        }
        if features & feature::NET_CTRL_VQ != 0 {
            self.setup_ctrl_queue()?;
        }
        log::info!(
            "{}: virtio-net reset, features {features:#x} (offered {offered:#x}), {} virtqueues, MAC {}",
            s.name,
            self.num_queues,
            self.mac
        );
        Ok(())
    }

    /// Builds and enables the control virtqueue (index 2 * max_pairs), before DRIVER_OK.
    fn setup_ctrl_queue(&mut self) -> Result<()> {
        let index = 2 * self.max_pairs;
        let (size, notify_off) = self.select_queue(index, CTRL_QUEUE_SIZE)?;
        let ring_part = self.ring_bytes(size).next_multiple_of(128);
        let bytes = (ring_part + ctrl::BUFFER_BYTES).next_multiple_of(4096);
        let mut region = DmaRegion::new(bytes, &RegionOptions::default())
            .map_err(|e| drv_err(self.name(), "allocate the control queue", e))?;
        let map: Arc<dyn DmaMap> = self.dma.clone();
        region
            .map(map)
            .map_err(|e| drv_err(self.name(), "map the control queue", e))?;
        let region = Arc::new(region);
        let fail = |what| drv_err(self.name(), "set up the control queue", VirtioError::State(what));
        let mem = RingSlice::new(region.clone(), 0, ring_part).ok_or_else(|| fail("region not mapped"))?;
        let buf =
            RingSlice::new(region, ring_part, ctrl::BUFFER_BYTES).ok_or_else(|| fail("region not mapped"))?;
        let bell = VirtioDoorbell {
            shared: self.shared.clone(),
            off: notify_off,
            index,
        };
        let (q, addrs): (Box<dyn CtrlCommand>, _) = if self.packed() {
            let ring = PackedRing::new(mem, size).ok_or_else(|| fail("ring does not fit"))?;
            let a = (ring.desc_iova(), ring.avail_iova(), ring.used_iova());
            let q = CtrlQueue::new(ring, buf, bell).ok_or_else(|| fail("buffer does not fit"))?;
            (Box::new(q), a)
        } else {
            let ring = SplitRing::new(mem, size).map_err(|e| {
                drv_err(
                    self.name(),
                    "set up the control queue",
                    queue::QueueError::Ring(e),
                )
            })?;
            let a = (ring.desc_iova(), ring.avail_iova(), ring.used_iova());
            let q = CtrlQueue::new(ring, buf, bell).ok_or_else(|| fail("buffer does not fit"))?;
            (Box::new(q), a)
        };
        self.enable_queue(index, size, addrs.0, addrs.1, addrs.2)?;
        self.ctrl = Some(q);
        Ok(())
    }

    /// Programs virtqueue `index`: size (clamped to the device's), the ring addresses, no MSI-X
    /// vector; returns the size used and the queue's notify offset in the notify BAR.
    pub(super) fn select_queue(&self, index: u16, want: usize) -> Result<(usize, usize)> {
        let s = &self.shared;
        s.w16(common::QUEUE_SELECT, index)
            .map_err(self.reg_err("select queue"))?;
        let max = s
            .r16(common::QUEUE_SIZE)
            .map_err(self.reg_err("read queue size"))?;
        if max == 0 {
            return Err(drv_err(
                &s.name,
                "set up queue",
                VirtioError::NoQueue {
                    index,
                    num_queues: self.num_queues,
                },
            ));
        }
        let max = usize::from(max);
        // Split queue sizes are powers of two.
        let dev_max = if max.is_power_of_two() {
            max
        } else {
            max.next_power_of_two() / 2
        };
        let size = want.min(dev_max);
        if size < want {
            log::info!(
                "{}: virtqueue {index}: {want} entries asked, the device allows {max}: using {size}",
                s.name
            );
        }
        let off = s
            .r16(common::QUEUE_NOTIFY_OFF)
            .map_err(self.reg_err("read queue notify offset"))?;
        let rel = u64::from(off) * u64::from(s.caps.notify_off_multiplier);
        if rel + 2 > u64::from(s.caps.notify.length) {
            return Err(drv_err(
                &s.name,
                "set up queue",
                VirtioError::NotifyOutOfRange { index, offset: rel },
            ));
        }
        Ok((size, s.caps.notify.offset as usize + rel as usize))
    }

    pub(super) fn enable_queue(
        &self,
        index: u16,
        size: usize,
        desc: u64,
        driver: u64,
        device: u64,
    ) -> Result<()> {
        let s = &self.shared;
        let w = || -> std::result::Result<(), BarError> {
            s.w16(common::QUEUE_SELECT, index)?;
            s.w16(common::QUEUE_SIZE, size as u16)?;
            s.w16(common::QUEUE_MSIX_VECTOR, common::NO_VECTOR)?;
            s.w64(common::QUEUE_DESC, desc)?;
            s.w64(common::QUEUE_DRIVER, driver)?;
            s.w64(common::QUEUE_DEVICE, device)?;
            s.w16(common::QUEUE_ENABLE, 1)
        };
        w().map_err(self.reg_err("program queue"))
    }
}
