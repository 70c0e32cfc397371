//! Link-state events: [`LinkEvents`], a handle that reports each change of a port's link (down,
//! up with its speed) as a [`LinkEvent`], to poll or to wait on.
//!
//! A driver backs it with a [`LinkEventSource`]: the link-change interrupt where the device has
//! one (igb: LSC on the "other causes" MSI-X vector; virtio-net: the configuration-change vector,
//! with VIRTIO_NET_F_STATUS), so that waiting costs no CPU and polling costs one non-blocking
//! eventfd read while nothing happens. Events are derived from the link state read after each
//! wake-up, compared with the last state reported: an interrupt that carries no change (a second
//! LSC for the same state, a configuration change of another field) reports nothing, and a change
//! is reported once however many interrupts announced it.
//!
//! The handle is `Send` and independent of the [`Port`](crate::Port)'s `&mut` borrow: a control
//! thread can wait on it while worker threads own the queues.
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxpmd_vfio::{Device, Interrupts, IrqKind};

use crate::driver::LinkStatus;
use crate::error::{PortError, Result};

/// One change of the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkEvent {
    /// The link after the change.
    pub status: LinkStatus,
    /// When the change was seen (the state was read after the wake-up).
    pub at: Instant,
}

impl LinkEvent {
    /// The link went up.
    pub fn is_up(&self) -> bool {
        self.status.up
    }
}

/// What a driver provides behind [`LinkEvents`].
pub trait LinkEventSource: Send {
    /// The link as the device reports it now.
    fn read_link(&mut self) -> Result<LinkStatus>;

    /// Consumes a pending wake-up (reads the interrupt's eventfd, clears the device's cause so
    /// the next change interrupts again); returns whether there was one.
    fn take_wakeup(&mut self) -> Result<bool>;

    /// Blocks until a wake-up is pending or `timeout` has passed; returns whether one is.
    fn wait_wakeup(&mut self, timeout: Duration) -> Result<bool>;

    /// The eventfd that becomes readable on a wake-up, for an application's own epoll.
    fn wakeup_fd(&self) -> Option<BorrowedFd<'_>>;

    /// How events are delivered, for messages ("MSI-X vector 0 (LSC)").
    fn describe(&self) -> String;
}

/// Link-state events of one port: see the [module documentation](self).
pub struct LinkEvents {
    device: String,
    source: Box<dyn LinkEventSource>,
    last: LinkStatus,
    wakeups: u64,
}

impl std::fmt::Debug for LinkEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkEvents")
            .field("device", &self.device)
            .field("source", &self.source.describe())
            .field("last", &self.last)
            .finish()
    }
}

impl LinkEvents {
    /// Starts reporting changes from the state the device shows now. A wake-up already pending
    /// is consumed first, so it cannot be mistaken for a change after this state.
    pub fn new(device: &str, mut source: Box<dyn LinkEventSource>) -> Result<LinkEvents> {
        source.take_wakeup()?;
        let last = source.read_link()?;
        Ok(LinkEvents {
            device: device.to_string(),
            source,
            last,
            wakeups: 0,
        })
    }

    /// The device name.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The link state last reported (or read at creation).
    pub fn current(&self) -> LinkStatus {
        self.last
    }

    /// How the events are delivered (the interrupt vector used).
    pub fn describe(&self) -> String {
        self.source.describe()
    }

    /// Wake-ups (interrupts) seen so far, including those that carried no change.
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// The eventfd to add to an application's own epoll; after it turns readable, call
    /// [`poll`](Self::poll).
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        self.source.wakeup_fd()
    }

    /// Never blocks: the change since the last report, if an interrupt announced one.
    pub fn poll(&mut self) -> Result<Option<LinkEvent>> {
        if !self.source.take_wakeup()? {
            return Ok(None);
        }
        self.wakeups += 1;
        let now = self.source.read_link()?;
        if now == self.last {
            return Ok(None);
        }
        self.last = now;
        Ok(Some(LinkEvent {
            status: now,
            at: Instant::now(),
        }))
    }

    /// Waits for the next change, at most `timeout`; `None` when there was none by then.
    pub fn wait(&mut self, timeout: Duration) -> Result<Option<LinkEvent>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ev) = self.poll()? {
                return Ok(Some(ev));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.source.wait_wakeup(left)?;
        }
    }
}

/// A device's MSI-X vectors, enabled once on first use (every vector the device offers, up to
/// `max`) and then shared by whatever uses one of them; and the claim on the link-event vector.
pub(crate) struct MsixVectors {
    max: u32,
    enabled: Mutex<Option<Arc<Interrupts>>>,
    link_claimed: AtomicBool,
}

impl MsixVectors {
    /// Nothing enabled yet; at most `max` vectors will be.
    pub(crate) fn new(max: u32) -> MsixVectors {
        MsixVectors {
            max,
            enabled: Mutex::new(None),
            link_claimed: AtomicBool::new(false),
        }
    }

    /// The vectors, enabling them on the first call.
    pub(crate) fn get(&self, device: &Device) -> std::result::Result<Arc<Interrupts>, oxpmd_vfio::Error> {
        let mut g = self.enabled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(irqs) = g.as_ref() {
            return Ok(irqs.clone());
        }
        let offered = device.irq_info(IrqKind::Msix.index())?.count;
        let irqs = Arc::new(device.enable_irqs(IrqKind::Msix, offered.min(self.max))?);
        *g = Some(irqs.clone());
        Ok(irqs)
    }

    /// Claims `vector` for link events of the device named `name`: one source at a time, since
    /// two would each consume the other's wake-ups (and clear the device's cause under it).
    /// [`release_link`](Self::release_link) gives it back.
    pub(crate) fn claim_link(&self, device: &Device, name: &str, vector: usize) -> Result<MsixWakeup> {
        if self.link_claimed.swap(true, Ordering::AcqRel) {
            return Err(PortError::WrongState {
                device: name.to_string(),
                op: "link events",
                state: "already handing out link events",
                hint: "drop the other LinkEvents handle of this port first",
            });
        }
        match self.get(device) {
            Ok(irqs) => Ok(MsixWakeup {
                irqs,
                vector,
                device: name.to_string(),
            }),
            Err(e) => {
                self.release_link();
                Err(PortError::Driver {
                    device: name.to_string(),
                    op: "enable MSI-X for link events",
                    source: Box::new(e),
                })
            }
        }
    }

    /// Ends the claim of [`claim_link`](Self::claim_link) (the source's drop).
    pub(crate) fn release_link(&self) {
        self.link_claimed.store(false, Ordering::Release);
    }
}

/// A wake-up source over one MSI-X vector: the part every interrupt-backed
/// [`LinkEventSource`] shares.
pub(crate) struct MsixWakeup {
    irqs: Arc<Interrupts>,
    vector: usize,
    device: String,
}

impl MsixWakeup {
    fn fail(&self, op: &'static str, e: oxpmd_vfio::Error) -> PortError {
        PortError::Driver {
            device: self.device.clone(),
            op,
            source: Box::new(e),
        }
    }

    /// Reads (and so resets) the vector's eventfd count; whether it had fired.
    pub(crate) fn take(&self) -> Result<bool> {
        match self.irqs.take_count(self.vector) {
            Ok(n) => Ok(n > 0),
            Err(e) => Err(self.fail("read the link interrupt", e)),
        }
    }

    /// Blocks until the vector fires or `timeout` passes.
    pub(crate) fn wait(&self, timeout: Duration) -> Result<bool> {
        self.irqs
            .wait(self.vector, timeout)
            .map_err(|e| self.fail("wait for the link interrupt", e))
    }

    /// The vector's eventfd.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.irqs.eventfd(self.vector).map(|f| f.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A scripted source: each wake-up delivers the next state.
    struct Scripted {
        pending: VecDeque<LinkStatus>,
        now: LinkStatus,
        woken: bool,
    }

    impl LinkEventSource for Scripted {
        fn read_link(&mut self) -> Result<LinkStatus> {
            Ok(self.now)
        }
        fn take_wakeup(&mut self) -> Result<bool> {
            if std::mem::take(&mut self.woken) {
                return Ok(true);
            }
            match self.pending.pop_front() {
                Some(s) => {
                    self.now = s;
                    Ok(true)
                }
                None => Ok(false),
            }
        }
        fn wait_wakeup(&mut self, timeout: Duration) -> Result<bool> {
            std::thread::sleep(timeout.min(Duration::from_millis(1)));
            Ok(!self.pending.is_empty())
        }
        fn wakeup_fd(&self) -> Option<BorrowedFd<'_>> {
            None
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    const DOWN: LinkStatus = LinkStatus {
        up: false,
        speed_mbps: 0,
        full_duplex: false,
    };
    const UP: LinkStatus = LinkStatus {
        up: true,
        speed_mbps: 1000,
        full_duplex: true,
    };

    #[test]
    fn a_wakeup_without_a_change_reports_nothing_and_each_change_once() {
        let src = Scripted {
            pending: [UP, DOWN, DOWN, UP, UP].into(),
            now: UP,
            // Pending before the handle existed: consumed, not reported.
            woken: true,
        };
        let mut ev = LinkEvents::new("t", Box::new(src)).unwrap();
        assert_eq!(ev.current(), UP);
        let mut seen = Vec::new();
        while let Some(e) = ev.wait(Duration::from_millis(20)).unwrap() {
            seen.push(e.status);
        }
        assert_eq!(seen, vec![DOWN, UP]);
        assert_eq!(ev.wakeups(), 5);
        assert_eq!(ev.poll().unwrap(), None);
    }

    #[test]
    fn wait_returns_none_at_the_timeout() {
        let src = Scripted {
            pending: VecDeque::new(),
            now: DOWN,
            woken: false,
        };
        let mut ev = LinkEvents::new("t", Box::new(src)).unwrap();
        let t = Instant::now();
        assert_eq!(ev.wait(Duration::from_millis(10)).unwrap(), None);
        assert!(t.elapsed() >= Duration::from_millis(10));
    }
}
