//! A queue's life on the device: programming its ring, enabling it and waiting until the device
//! reports it on, and disabling it and waiting until the device reports it off.
#![deny(unsafe_code)]

use std::time::{Duration, Instant};

use super::queue_regs::{DCTL_ENABLE, QueueReg};
use super::{Dir, FamilyError, QueueDevice};

/// How long a queue enable may take to read back.
pub(crate) const QUEUE_ENABLE_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a queue disable may take before it is reported.
pub(crate) const QUEUE_DISABLE_TIMEOUT: Duration = Duration::from_millis(100);

/// Clears a queue's enable bit and waits until the device reports it off. Returns false (and
/// logs) when it did not turn off in time.
pub(crate) fn disable_queue(dev: &impl QueueDevice, dir: Dir, q: u16) -> bool {
    let v = dev.read_queue(dir, q, QueueReg::DCTL);
    if v & DCTL_ENABLE == 0 {
        return true;
    }
    dev.write_queue(dir, q, QueueReg::DCTL, v & !DCTL_ENABLE);
    let start = Instant::now();
    while dev.read_queue(dir, q, QueueReg::DCTL) & DCTL_ENABLE != 0 {
        if start.elapsed() >= QUEUE_DISABLE_TIMEOUT {
            log::error!(
                "{}: {} queue {q}: still enabled {QUEUE_DISABLE_TIMEOUT:?} after clearing its \
                 enable bit",
                dev.name(),
                dir.name()
            );
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// Programs queue `q`'s ring (at `iova`, `len` bytes, head = tail = 0), for RX its SRRCTL
/// (`srrctl`), then enables it and waits until the device reports it on. The caller arms an RX
/// ring next (RDT).
pub(crate) fn start_queue(
    dev: &impl QueueDevice,
    dir: Dir,
    q: u16,
    iova: u64,
    len: u32,
    srrctl: Option<u32>,
) -> Result<(), FamilyError> {
    dev.write_queue(dir, q, QueueReg::DBAL, iova as u32);
    dev.write_queue(dir, q, QueueReg::DBAH, (iova >> 32) as u32);
    dev.write_queue(dir, q, QueueReg::DLEN, len);
    dev.write_queue(dir, q, QueueReg::DH, 0);
    dev.write_queue(dir, q, QueueReg::DT, 0);
    if let Some(v) = srrctl {
        dev.write_queue(dir, q, QueueReg::SRRCTL, v);
    }
    dev.write_queue(dir, q, QueueReg::DCTL, DCTL_ENABLE);
    let t = Instant::now();
    loop {
        if dev.read_queue(dir, q, QueueReg::DCTL) & DCTL_ENABLE != 0 {
            return Ok(());
        }
        if t.elapsed() > QUEUE_ENABLE_TIMEOUT {
            return Err(FamilyError::QueueEnableTimeout {
                dir: dir.name(),
                queue: q,
                timeout: QUEUE_ENABLE_TIMEOUT,
            });
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use oxpmd_vfio::{Bar, Register};

    use super::*;

    /// Queue registers in memory; with `stuck`, the enable bit reads back as it was before any
    /// write (a device that does not follow).
    #[derive(Default)]
    struct Regs {
        values: Mutex<HashMap<(Dir, u16, usize), u32>>,
        stuck: Option<u32>,
    }

    // SAFETY: a test stand-in: no ring trusts it with memory.
    #[allow(unsafe_code)]
    unsafe impl QueueDevice for Regs {
        fn name(&self) -> &str {
            "test"
        }
        fn read_queue(&self, dir: Dir, q: u16, r: QueueReg) -> u32 {
            if let (Some(v), QueueReg::DCTL) = (self.stuck, r) {
                return v;
            }
            let m = self.values.lock().unwrap();
            m.get(&(dir, q, r.off())).copied().unwrap_or(0)
        }
        fn write_queue(&self, dir: Dir, q: u16, r: QueueReg, v: u32) {
            self.values.lock().unwrap().insert((dir, q, r.off()), v);
        }
        fn tail(&self, _: Dir, _: u16) -> Register {
            Bar::anonymous(0, 4).register(0).unwrap()
        }
        fn stop_bus_master(&self, _: Dir, _: u16) -> bool {
            false
        }
    }

    #[test]
    fn a_started_queue_is_programmed_and_enabled_then_disabled() {
        let r = Regs::default();
        start_queue(&r, Dir::Rx, 1, 0x1_2345_6000, 4096, Some(0x8200_0002)).unwrap();
        let get = |reg: QueueReg| r.read_queue(Dir::Rx, 1, reg);
        assert_eq!((get(QueueReg::DBAL), get(QueueReg::DBAH)), (0x2345_6000, 1));
        assert_eq!((get(QueueReg::DLEN), get(QueueReg::SRRCTL)), (4096, 0x8200_0002));
        assert_eq!(get(QueueReg::DCTL), DCTL_ENABLE);
        assert!(disable_queue(&r, Dir::Rx, 1));
        assert_eq!(get(QueueReg::DCTL), 0);
        // Already off: nothing to wait for.
        assert!(disable_queue(&r, Dir::Rx, 1));
        start_queue(&r, Dir::Tx, 0, 0x1000, 1024, None).unwrap();
        assert_eq!(r.read_queue(Dir::Tx, 0, QueueReg::SRRCTL), 0);
    }

    #[test]
    fn a_device_that_does_not_follow_is_reported() {
        let off = Regs {
            stuck: Some(0),
            ..Regs::default()
        };
        let e = start_queue(&off, Dir::Tx, 3, 0x1000, 1024, None).unwrap_err();
        assert!(e.to_string().contains("TX queue 3: enable bit not set"), "{e}");
        let on = Regs {
            stuck: Some(DCTL_ENABLE),
            ..Regs::default()
        };
        assert!(!disable_queue(&on, Dir::Rx, 0));
    }
}
