//! Recovery from a reset the application did not ask for: the PF was reset (its service killed
//! and restarted: vfio-pci resets the PF when its last user closes it and when it is opened
//! again), or the VF itself was reset (a function reset through sysfs, or the PF service
//! resetting it). Like Linux's igbvf (its watchdog and `reset_task`), a watchdog thread of the
//! port notices it, waits until the PF answers again, redoes the reset handshake and asks again
//! for what the application had set (MAC, VLAN and multicast filters, promiscuous modes); the
//! queues then rebuild their rings in place, each on the thread that owns it.
//!
//! How the watchdog and the queues meet (no lock on the datapath): [`Recovery::epoch`] counts
//! completed handshakes. Each queue remembers the epoch it was built in and compares it with one
//! atomic load per burst; when it differs, the queue disables itself (read back: the device no
//! longer touches its ring, invariant 3), takes the frames written back before the loss, posts
//! its own buffers again (RX: every slot keeps its buffer) or returns the packets still in the
//! ring to their pools (TX: counted as lost, their fate unknown), programs its ring and enables
//! it. No buffer changes owner between threads, none is freed while the device may use it, none
//! is leaked (invariants 3 and 4). While the VF is down ([`Recovery::is_down`]) TX drops what it
//! is offered and counts it, so that an application is not stalled on a ring the device no
//! longer empties.
//!
//! What shows a reset (hw/net/igb_core.c, and the 82576 datasheet): a PF reset sets RSTI in every
//! VF's V2PMAILBOX until the PF driver sets CTRL_EXT.PFRSTD, which clears RSTI and sets RSTD
//! (clear on read); Linux's igbvf checks the same two bits (`e1000_check_for_rst_vf`). While the
//! PF's SR-IOV is being restored the VF's registers do not answer (all ones, or 0 like a BAR
//! that is not decoded). A VF function reset (QEMU's `igb_core_vf_reset`) clears the VF's queue
//! enable bits, VFRE / VFTE (the PF's) and sets the PF's VFLRE, but no mailbox bit: the watchdog
//! sees it as a queue it had enabled that reads disabled.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::handshake::{self, VfSettings};
use super::mbx::BarMailbox;
use super::{VfShared, regs};
use crate::drivers::igb_family::Dir;
use crate::drivers::igb_family::QueueDevice;
use crate::drivers::igb_family::queue_regs::{DCTL_ENABLE, QueueReg};
use crate::mac::MacAddr;
use crate::xstats::XStat;

/// How often the watchdog looks (three register reads; Linux's igbvf watchdog runs every 2 s).
pub(crate) const WATCHDOG_PERIOD: Duration = Duration::from_millis(10);
/// How long after a failed handshake the next is tried (the PF may still be starting).
pub(crate) const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Why the VF was found reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// RSTI or RSTD in V2PMAILBOX: the PF was reset.
    PfReset,
    /// The VF's registers read all ones (or 0, not decoded): it is being reset.
    NoAnswer,
    /// A queue it had enabled reads disabled: the VF was reset (function reset).
    QueueDisabled,
}

impl Cause {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Cause::PfReset => "the PF was reset (RSTI/RSTD in V2PMAILBOX)",
            Cause::NoAnswer => "the VF's registers do not answer (it is being reset)",
            Cause::QueueDisabled => "a queue it had enabled reads disabled (the VF was reset)",
        }
    }
}

/// One look at the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observation {
    /// V2PMAILBOX (None: the read failed).
    pub(crate) v2p: Option<u32>,
    /// RSTI / RSTD seen by any mailbox read since the last look.
    pub(crate) reset_bits: u32,
    /// STATUS.
    pub(crate) status: u32,
    /// A queue that should be enabled reads disabled.
    pub(crate) queue_lost: bool,
}

impl Observation {
    pub(crate) fn no_answer(&self) -> bool {
        matches!(
            (self.v2p, self.status),
            (None, _) | (Some(u32::MAX), _) | (Some(0), 0)
        )
    }
}

/// What the watchdog does after a look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to do.
    Nothing,
    /// A reset was just noticed: mark the VF down.
    Down(Cause),
    /// Down, the PF has not released the VF yet (or the next try is not due).
    Wait,
    /// Down and the PF released the VF: do the handshake now.
    Handshake,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Down { since: Instant, next_try: Instant },
}

/// The watchdog's state machine: logic only, fed with observations (unit-tested).
#[derive(Debug)]
pub(crate) struct Detector {
    phase: Phase,
    failures: u32,
}

impl Detector {
    pub(crate) fn new() -> Self {
        Detector {
            phase: Phase::Running,
            failures: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn is_down(&self) -> bool {
        matches!(self.phase, Phase::Down { .. })
    }

    /// Consecutive failed handshakes of the current loss.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    /// Takes one observation made at `now`.
    pub(crate) fn observe(&mut self, o: &Observation, now: Instant) -> Step {
        let rst = (o.v2p.unwrap_or(0) | o.reset_bits) & (regs::mbx::RSTI | regs::mbx::RSTD);
        match self.phase {
            Phase::Running => {
                let cause = if o.no_answer() {
                    Cause::NoAnswer
                } else if rst != 0 {
                    Cause::PfReset
                } else if o.queue_lost {
                    Cause::QueueDisabled
                } else {
                    return Step::Nothing;
                };
                self.phase = Phase::Down {
                    since: now,
                    next_try: now,
                };
                self.failures = 0;
                Step::Down(cause)
            }
            Phase::Down { next_try, .. } => {
                let held = o.no_answer() || o.v2p.is_some_and(|v| v & regs::mbx::RSTI != 0);
                if held || now < next_try {
                    Step::Wait
                } else {
                    Step::Handshake
                }
            }
        }
    }

    /// The handshake's outcome at `now`: on success the time since the loss was noticed.
    pub(crate) fn handshake_done(&mut self, ok: bool, now: Instant) -> Option<Duration> {
        let Phase::Down { since, .. } = self.phase else {
            return None;
        };
        if ok {
            self.phase = Phase::Running;
            self.failures = 0;
            Some(now.saturating_duration_since(since))
        } else {
            self.failures += 1;
            self.phase = Phase::Down {
                since,
                next_try: now + RETRY_AFTER,
            };
            None
        }
    }
}

/// What the watchdog and the queues share (all atomics: read on the datapath).
#[derive(Debug)]
pub(crate) struct Recovery {
    /// Completed handshakes: a queue built in another epoch rebuilds itself.
    epoch: AtomicU64,
    /// From the moment a reset is noticed until the handshake is done.
    down: AtomicBool,
    /// Queues that are enabled and should read so: bit q for RX queue q, bit 8 + q for TX.
    live: AtomicU32,
    recoveries: AtomicU64,
    failed_handshakes: AtomicU64,
    tx_dropped: AtomicU64,
    last_gap_us: AtomicU64,
    /// When the current loss was noticed, in µs since `base` (0: none).
    noticed_us: AtomicU64,
    base: Instant,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            epoch: AtomicU64::new(0),
            down: AtomicBool::new(false),
            live: AtomicU32::new(0),
            recoveries: AtomicU64::new(0),
            failed_handshakes: AtomicU64::new(0),
            tx_dropped: AtomicU64::new(0),
            last_gap_us: AtomicU64::new(0),
            noticed_us: AtomicU64::new(0),
            base: Instant::now(),
        }
    }
}

fn live_bit(dir: Dir, q: u16) -> u32 {
    let shift = match dir {
        Dir::Rx => 0,
        Dir::Tx => 8,
    };
    1 << (shift + u32::from(q & 7))
}

impl Recovery {
    /// The current epoch (acquire: the handshake's register writes come before it).
    #[inline(always)]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// True while the VF is known to be reset and not yet recovered.
    #[inline(always)]
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub(crate) fn set_live(&self, dir: Dir, q: u16) {
        self.live.fetch_or(live_bit(dir, q), Ordering::SeqCst);
    }

    pub(crate) fn clear_live_one(&self, dir: Dir, q: u16) {
        self.live.fetch_and(!live_bit(dir, q), Ordering::SeqCst);
    }

    pub(crate) fn clear_live(&self) {
        self.live.store(0, Ordering::SeqCst);
    }

    fn is_live(&self, dir: Dir, q: u16) -> bool {
        self.live.load(Ordering::SeqCst) & live_bit(dir, q) != 0
    }

    fn mark_down(&self) {
        let us = self.base.elapsed().as_micros().max(1) as u64;
        self.noticed_us.store(us, Ordering::Relaxed);
        self.down.store(true, Ordering::Release);
    }

    /// The handshake is done: queues rebuild (epoch first, then `down` cleared: a TX queue that
    /// sees `down` false also sees the new epoch).
    pub(crate) fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.down.store(false, Ordering::Release);
    }

    /// Frames lost to a reset (TX: dropped while down, or in the ring when it was rebuilt).
    pub(crate) fn add_tx_dropped(&self, n: usize) {
        self.tx_dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A queue is running again: the gap is the time since the loss was noticed.
    pub(crate) fn queue_back(&self) {
        let noticed = self.noticed_us.load(Ordering::Relaxed);
        if noticed != 0 {
            let now = self.base.elapsed().as_micros() as u64;
            self.last_gap_us
                .store(now.saturating_sub(noticed), Ordering::Relaxed);
        }
    }

    /// The recovery counters as xstats.
    pub(crate) fn append(&self, out: &mut Vec<XStat>) {
        let r = Ordering::Relaxed;
        out.push(XStat::new("reset_recoveries", self.recoveries.load(r)));
        out.push(XStat::new(
            "reset_failed_handshakes",
            self.failed_handshakes.load(r),
        ));
        out.push(XStat::new("reset_tx_dropped_packets", self.tx_dropped.load(r)));
        out.push(XStat::new("reset_last_gap_us", self.last_gap_us.load(r)));
    }
}

/// The watchdog's view of the port: what it reads and what it replays.
pub(crate) struct Watched {
    pub(crate) shared: Arc<VfShared>,
    pub(crate) mbx: Arc<Mutex<BarMailbox>>,
}

impl Watched {
    fn look(&self) -> Observation {
        let s = &self.shared;
        let (v2p, reset_bits) = {
            let m = handshake::lock(&self.mbx);
            (m.poll_ctl().ok(), m.take_reset_bits())
        };
        let status = s.regs.status();
        let mut queue_lost = false;
        for dir in [Dir::Rx, Dir::Tx] {
            for q in 0..2u16 {
                if !s.recovery.is_live(dir, q) {
                    continue;
                }
                let ctl = s.read_queue(dir, q, QueueReg::DCTL);
                // The register first, then the flag: a queue that disabled itself cleared its
                // flag before its write, so it is not taken for a lost one.
                if ctl & DCTL_ENABLE == 0 && s.recovery.is_live(dir, q) {
                    queue_lost = true;
                }
            }
        }
        Observation {
            v2p,
            reset_bits,
            status,
            queue_lost,
        }
    }

    /// Memory decoding and bus mastering on again in the VF's command register; says what it
    /// found.
    fn restore_command(&self) -> String {
        let Some(d) = self.shared.device.as_ref() else {
            return "no device".into();
        };
        let before = d.config_read16(0x04);
        match d.enable_memory_and_bus_master() {
            Ok(()) => format!("command register {before:x?}, memory and bus master on"),
            Err(e) => format!("command register {before:x?}: {e}"),
        }
    }

    fn recover(&self) -> crate::error::Result<MacAddr> {
        handshake::reset_and_replay(&self.shared, &self.mbx)
    }
}

/// The watchdog thread's body: looks every [`WATCHDOG_PERIOD`] until `stop`.
pub(crate) fn run(w: Watched, stop: Arc<AtomicBool>) {
    let mut det = Detector::new();
    let mut waits = 0u64;
    let name = w.shared.name.clone();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(WATCHDOG_PERIOD);
        let now = Instant::now();
        let seen = w.look();
        match det.observe(&seen, now) {
            Step::Nothing => {}
            Step::Wait => {
                waits += 1;
                // A VF whose function was reset (the PF's reset takes its VFs down and up) lost
                // bus mastering, and QEMU maps its BAR again only on a write to its config
                // space: set the command register again every 100 ms while it does not answer.
                let cmd = (seen.no_answer() && waits % 10 == 0).then(|| w.restore_command());
                if waits % 100 == 0 {
                    log::info!(
                        "{name}: igbvf recovery: still waiting for the PF: V2PMAILBOX {:?}, \
                         STATUS {:#x}{}",
                        seen.v2p.map(|v| format!("{v:#x}")),
                        seen.status,
                        cmd.map(|c| format!(" ({c})")).unwrap_or_default()
                    );
                }
            }
            Step::Down(cause) => {
                waits = 0;
                w.shared.recovery.mark_down();
                log::warn!(
                    "{name}: igbvf lost its PF: {}; TX drops until it is back, then the VF \
                     resets and its queues are rebuilt",
                    cause.describe()
                );
            }
            Step::Handshake => match w.recover() {
                Ok(mac) => {
                    let gap = det.handshake_done(true, Instant::now()).unwrap_or_default();
                    let r = &w.shared.recovery;
                    r.recoveries.fetch_add(1, Ordering::Relaxed);
                    r.bump();
                    // Ports without queues: the handshake ends the gap.
                    r.queue_back();
                    log::warn!(
                        "{name}: igbvf recovered: reset handshake redone {:.1} ms after the loss \
                         was noticed (MAC {mac}, filters asked again); queues rebuild",
                        gap.as_secs_f64() * 1e3
                    );
                }
                Err(e) => {
                    det.handshake_done(false, Instant::now());
                    w.shared
                        .recovery
                        .failed_handshakes
                        .fetch_add(1, Ordering::Relaxed);
                    let n = det.failures();
                    if n == 1 || n % 25 == 0 {
                        log::warn!(
                            "{name}: igbvf recovery: handshake {n} failed ({e}); trying again \
                             every {RETRY_AFTER:?}"
                        );
                    }
                }
            },
        }
    }
}

/// Keeps `settings` as the application changes them (for the replay).
pub(crate) fn update(shared: &VfShared, f: impl FnOnce(&mut VfSettings)) {
    f(&mut shared.settings.lock().unwrap_or_else(|p| p.into_inner()));
}

#[cfg(test)]
mod tests;
