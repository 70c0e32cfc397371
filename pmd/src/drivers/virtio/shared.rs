//! [`VirtioShared`]: the device, its register windows and the state its driver, queues and
//! doorbells share; [`StopOnce`]: the device stop run once for all of them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use oxpmd_vfio::{Bar, BarError, Device};

use super::caps::VirtioCaps;
use super::regs::common;
use super::{RESET_TIMEOUT, VirtioError};

/// What the driver, its queues and their doorbells share.
pub(crate) struct VirtioShared {
    pub(super) name: String,
    pub(super) device: Device,
    pub(super) common: Bar,
    pub(super) common_off: usize,
    pub(super) notify: Bar,
    pub(super) device_cfg: Option<(Bar, usize, usize)>,
    pub(super) caps: VirtioCaps,
    /// The teardown stop (reset, or bus mastering off), done once; every caller waits for it.
    pub(super) stopped: StopOnce,
    /// Serializes resets between queues dropped on different threads.
    pub(super) reset_lock: Mutex<()>,
    /// MSI-X, enabled on first use (link events, RX interrupts), and the claim on the link vector.
    pub(super) msix: crate::link_events::MsixVectors,
    /// Serializes `queue_select` and the queue field written after it, once queues are handed
    /// out (RX interrupts turned on from several threads).
    pub(super) queue_select: Mutex<()>,
}

impl VirtioShared {
    pub(super) fn r8(&self, f: usize) -> std::result::Result<u8, BarError> {
        self.common.read8(self.common_off + f)
    }
    pub(super) fn w8(&self, f: usize, v: u8) -> std::result::Result<(), BarError> {
        self.common.write8(self.common_off + f, v)
    }
    pub(super) fn r16(&self, f: usize) -> std::result::Result<u16, BarError> {
        self.common.read16(self.common_off + f)
    }
    pub(super) fn w16(&self, f: usize, v: u16) -> std::result::Result<(), BarError> {
        self.common.write16(self.common_off + f, v)
    }
    pub(super) fn r32(&self, f: usize) -> std::result::Result<u32, BarError> {
        self.common.read32(self.common_off + f)
    }
    pub(super) fn w32(&self, f: usize, v: u32) -> std::result::Result<(), BarError> {
        self.common.write32(self.common_off + f, v)
    }
    pub(super) fn w64(&self, f: usize, v: u64) -> std::result::Result<(), BarError> {
        self.w32(f, v as u32)?;
        self.w32(f + 4, (v >> 32) as u32)
    }

    pub(super) fn status(&self) -> std::result::Result<u8, BarError> {
        self.r8(common::DEVICE_STATUS)
    }

    pub(super) fn add_status(&self, bits: u8) -> std::result::Result<u8, BarError> {
        let v = self.status()? | bits;
        self.w8(common::DEVICE_STATUS, v)?;
        Ok(v)
    }

    /// Writes status 0 and waits until the device reads back 0: from then on it does not access
    /// any ring or buffer.
    pub(super) fn reset(&self) -> std::result::Result<(), VirtioError> {
        let _g = self.reset_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.w8(common::DEVICE_STATUS, 0)?;
        let t = Instant::now();
        loop {
            let s = self.status()?;
            if s == 0 {
                return Ok(());
            }
            if t.elapsed() > RESET_TIMEOUT {
                return Err(VirtioError::ResetTimeout(s));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// Stops the device's DMA once (queues and driver call it at drop, maybe on several threads
    /// at the same time): every caller returns only after the stop has finished. Returns whether
    /// the device is known stopped (reset done, or at least bus mastering off).
    pub(super) fn stop(&self) -> bool {
        self.stopped.stop(|| match self.reset() {
            Ok(()) => true,
            Err(e) => {
                log::error!("{}: teardown: device reset: {e}", self.name);
                // Last resort: without bus mastering the device cannot DMA at all.
                match self.device.disable_bus_master() {
                    Ok(()) => true,
                    Err(e) => {
                        log::error!("{}: teardown: bus master off: {e}", self.name);
                        false
                    }
                }
            }
        })
    }

    /// Reads `N` bytes of the device configuration at `off`, consistently (config_generation
    /// unchanged across the read).
    pub(super) fn read_device_cfg<const N: usize>(
        &self,
        off: usize,
    ) -> std::result::Result<Option<[u8; N]>, BarError> {
        let Some((bar, base, len)) = &self.device_cfg else {
            return Ok(None);
        };
        if off + N > *len {
            return Ok(None);
        }
        for _ in 0..16 {
            let before = self.r8(common::CONFIG_GENERATION)?;
            let mut out = [0u8; N];
            for (i, b) in out.iter_mut().enumerate() {
                *b = bar.read8(base + off + i)?;
            }
            if self.r8(common::CONFIG_GENERATION)? == before {
                return Ok(Some(out));
            }
        }
        Ok(None)
    }
}

/// A device stop that runs once, however many threads ask for it at the same time: the first
/// caller runs it while holding the lock, the others wait for it to finish and get its outcome
/// (invariant 3: no queue frees a buffer before the device is stopped).
pub(crate) struct StopOnce {
    /// `None` until the stop has run; then whether it succeeded.
    pub(super) outcome: Mutex<Option<bool>>,
}

impl StopOnce {
    /// Not stopped yet.
    pub(crate) fn new() -> StopOnce {
        StopOnce {
            outcome: Mutex::new(None),
        }
    }

    /// Runs `stop` if no caller has yet (the lock is held across it), else waits for the caller
    /// that runs it; returns its outcome. A `stop` that panicked is run again by the next caller.
    pub(crate) fn stop(&self, stop: impl FnOnce() -> bool) -> bool {
        let mut g = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ok) = *g {
            return ok;
        }
        let ok = stop();
        *g = Some(ok);
        ok
    }

    /// Whether the stop has run (successfully or not).
    pub(crate) fn is_done(&self) -> bool {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }
}
