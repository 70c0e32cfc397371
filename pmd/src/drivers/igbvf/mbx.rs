//! The VF side of the mailbox: lock, post, wait for the PF's ACK and reply, acknowledge.
#![forbid(unsafe_code)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use oxpmd_vfio::BarView;

use super::regs::{self, VfReg, mbx};
use crate::sriov::mailbox::{self, MBX_WORDS, MSG_ACK, MSG_CTS, MSG_NACK};

/// Register access of the VF's mailbox (BAR0, or a model in tests).
pub trait VfMbxAccess {
    /// Reads V2PMAILBOX (PFSTS, PFACK and RSTD clear on read).
    fn read_ctl(&self) -> u32;
    /// Writes V2PMAILBOX.
    fn write_ctl(&self, v: u32);
    /// Reads word `i` (modulo 16) of the mailbox memory.
    fn read_mem(&self, i: usize) -> u32;
    /// Writes word `i` (modulo 16) of the mailbox memory.
    fn write_mem(&self, i: usize, v: u32);
}

impl VfMbxAccess for BarView<VfReg> {
    fn read_ctl(&self) -> u32 {
        self.read(regs::V2PMAILBOX)
    }
    fn write_ctl(&self, v: u32) {
        self.write(regs::V2PMAILBOX, v);
    }
    fn read_mem(&self, i: usize) -> u32 {
        self.read(VfReg::vmbmem(i))
    }
    fn write_mem(&self, i: usize, v: u32) {
        self.write(VfReg::vmbmem(i), v);
    }
}

/// The mailbox of a VF's BAR0.
pub(crate) type BarMailbox = VfMailbox<BarView<VfReg>>;

/// Mailbox failures.
#[derive(Debug, thiserror::Error)]
pub enum MbxError {
    /// The PF never released the buffer.
    #[error("could not lock the mailbox within {waited:?} (V2PMAILBOX = {last:#x}: the PF holds it)")]
    Lock {
        /// Wait.
        waited: Duration,
        /// The last V2PMAILBOX value read.
        last: u32,
    },
    /// No answer in time.
    #[error(
        "no {what} from the PF within {waited:?}: is the PF's driver running and serving this VF \
         (`oxpmd sriov serve`, or the kernel's igb with its interface up)?"
    )]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// Wait.
        waited: Duration,
    },
    /// The PF reset while we talked.
    #[error("the PF signalled a reset (RSTI, or the VF's registers read all ones) during the exchange")]
    PfReset,
}

/// The VF's mailbox.
#[derive(Debug)]
pub struct VfMailbox<A: VfMbxAccess> {
    access: A,
    timeout: Duration,
    /// The PF's last word on the link: CTS in its last message (a reply or a CONTROL message).
    pf_link_up: Cell<bool>,
    /// The PF sent a CONTROL message with NACK: it changed this VF's settings, reset to learn them.
    reset_asked: Cell<bool>,
    /// RSTI / RSTD seen in any read of V2PMAILBOX since the last [`take_reset_bits`]: RSTD clears
    /// on read, so whichever read sees it keeps it for the reset watchdog.
    ///
    /// [`take_reset_bits`]: VfMailbox::take_reset_bits
    reset_bits: Cell<u32>,
}

impl<A: VfMbxAccess> VfMailbox<A> {
    /// A mailbox over `access`, each wait bounded by `timeout`.
    pub fn new(access: A, timeout: Duration) -> Self {
        VfMailbox {
            access,
            timeout,
            pf_link_up: Cell::new(true),
            reset_asked: Cell::new(false),
            reset_bits: Cell::new(0),
        }
    }

    /// Reads V2PMAILBOX, keeping any RSTI / RSTD it shows (see [`take_reset_bits`]).
    ///
    /// [`take_reset_bits`]: VfMailbox::take_reset_bits
    fn read_ctl(&self) -> u32 {
        let v = self.access.read_ctl();
        // All ones: the function does not answer (it is being reset, or gone): not a bit pattern.
        if v != u32::MAX {
            self.reset_bits
                .set(self.reset_bits.get() | (v & (mbx::RSTI | mbx::RSTD)));
        }
        v
    }

    /// The RSTI / RSTD bits seen since the last call (and clears that record): the PF reset, or
    /// is resetting, behind this VF's back when no handshake of ours explains them.
    pub fn take_reset_bits(&self) -> u32 {
        self.reset_bits.replace(0)
    }

    /// One read of V2PMAILBOX for the reset watchdog: a message the PF posted meanwhile is taken
    /// as [`poll_pf_message`](Self::poll_pf_message) does (PFSTS clears on read). Returns the
    /// value read.
    pub fn poll_ctl(&self) -> Result<u32, MbxError> {
        let v = self.read_ctl();
        if v != u32::MAX && v & mbx::PFSTS != 0 {
            self.take_message()?;
        }
        Ok(v)
    }

    /// False after the PF said the link is down (a CONTROL message or a reply without CTS),
    /// until it sends CTS again.
    pub fn pf_link_up(&self) -> bool {
        self.pf_link_up.get()
    }

    /// True after the PF asked the VF to reset (CONTROL with NACK), until the next handshake.
    pub fn reset_asked(&self) -> bool {
        self.reset_asked.get()
    }

    /// Notes what word 0 of a PF message says about the link (the RESET reply never has CTS
    /// and says nothing about it).
    fn note(&self, w0: u32) {
        let id = (w0 & mailbox::MSG_ID_MASK) as u16;
        if id == mailbox::id::RESET {
            if w0 & MSG_ACK != 0 {
                self.reset_asked.set(false);
                self.pf_link_up.set(true);
            }
            return;
        }
        self.pf_link_up.set(w0 & MSG_CTS != 0);
        if id == mailbox::id::PF_CONTROL && w0 & MSG_NACK != 0 {
            self.reset_asked.set(true);
        }
    }

    /// Reads a message the PF posted by itself (PFSTS), acknowledges it and notes what it says
    /// about the link. Returns its word 0. A message not read because the PF holds the lock is
    /// lost to us (PFSTS clears on read); the PF repeats CTS in its next reply.
    pub fn poll_pf_message(&self) -> Result<Option<u32>, MbxError> {
        let v = self.read_ctl();
        if v == u32::MAX || v & mbx::PFSTS == 0 {
            return Ok(None);
        }
        self.take_message().map(Some)
    }

    /// Locks, reads and acknowledges the message the PF posted (PFSTS was seen).
    fn take_message(&self) -> Result<u32, MbxError> {
        self.lock()?;
        let w0 = self.access.read_mem(0);
        self.access.write_ctl(mbx::ACK);
        self.note(w0);
        if w0 & MSG_NACK != 0 && (w0 & mailbox::MSG_ID_MASK) as u16 == mailbox::id::PF_CONTROL {
            log::warn!(
                "igbvf: the PF changed this VF's settings (CONTROL message {w0:#010x}): reset the \
                 port to learn them (MAC, frame size, multicast)"
            );
        }
        Ok(w0)
    }

    /// The register access.
    pub fn access(&self) -> &A {
        &self.access
    }

    fn lock(&self) -> Result<(), MbxError> {
        let t = Instant::now();
        loop {
            self.access.write_ctl(mbx::VFU);
            let v = self.read_ctl();
            if v & mbx::VFU != 0 {
                return Ok(());
            }
            if t.elapsed() > self.timeout {
                return Err(MbxError::Lock {
                    waited: self.timeout,
                    last: v,
                });
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// Posts `msg` and returns the PF's reply (16 words; the caller looks at what it expects).
    pub fn request(&self, msg: &[u32]) -> Result<[u32; MBX_WORDS], MbxError> {
        // A message the PF posted by itself would be taken for our reply: read it first.
        self.poll_pf_message()?;
        self.lock()?;
        for (i, w) in msg.iter().take(MBX_WORDS).enumerate() {
            self.access.write_mem(i, *w);
        }
        // REQ without VFU: posts and releases the lock.
        self.access.write_ctl(mbx::REQ);
        let mut seen = 0u32;
        let t = Instant::now();
        // PFSTS and PFACK clear on read: remember every bit seen.
        while seen & mbx::PFSTS == 0 {
            let v = self.read_ctl();
            // All ones: the function is being reset (its registers do not answer).
            if v == u32::MAX || v & mbx::RSTI != 0 {
                return Err(MbxError::PfReset);
            }
            seen |= v;
            if seen & mbx::PFSTS != 0 {
                break;
            }
            if t.elapsed() > self.timeout {
                return Err(MbxError::Timeout {
                    what: if seen & mbx::PFACK == 0 {
                        "acknowledgement"
                    } else {
                        "reply"
                    },
                    waited: self.timeout,
                });
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        self.lock()?;
        let mut out = [0u32; MBX_WORDS];
        for (i, w) in out.iter_mut().enumerate() {
            *w = self.access.read_mem(i);
        }
        // ACK without VFU: acknowledges and releases the lock.
        self.access.write_ctl(mbx::ACK);
        self.note(out[0]);
        Ok(out)
    }
}

/// VF `.1`'s side of the mailbox model, for tests.
#[cfg(test)]
pub(crate) struct ModelVf(
    pub(crate) std::sync::Arc<crate::sriov::model::MailboxModel>,
    pub(crate) usize,
);

#[cfg(test)]
impl VfMbxAccess for ModelVf {
    fn read_ctl(&self) -> u32 {
        self.0.vf_read_mailbox(self.1)
    }
    fn write_ctl(&self, v: u32) {
        self.0.vf_write_mailbox(self.1, v);
    }
    fn read_mem(&self, i: usize) -> u32 {
        self.0.vf_read_mem(self.1, i % MBX_WORDS)
    }
    fn write_mem(&self, i: usize, v: u32) {
        self.0.vf_write_mem(self.1, i % MBX_WORDS, v);
    }
}

/// Runs `host`'s service loop on a thread until the flag is set; the thread returns the host.
#[cfg(test)]
pub(crate) fn serve_model(
    mut host: crate::sriov::host::PfHost<std::sync::Arc<crate::sriov::model::MailboxModel>>,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<crate::sriov::host::PfHost<std::sync::Arc<crate::sriov::model::MailboxModel>>>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let pf = std::thread::spawn(move || {
        let t0 = Instant::now();
        while !s2.load(Ordering::Relaxed) {
            host.poll(t0.elapsed().as_millis() as u64).unwrap();
            std::thread::sleep(Duration::from_micros(200));
        }
        host
    });
    (stop, pf)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::mac::MacAddr;
    use crate::sriov::host::PfHost;
    use crate::sriov::mailbox::{self, MSG_ACK, MSG_CTS, MSG_NACK, ReplyStatus, VfRequest};
    use crate::sriov::model::MailboxModel;
    use crate::sriov::policy::{VfPolicy, VfTable};

    #[test]
    fn vf_and_pf_host_talk_through_the_model() {
        let m = Arc::new(MailboxModel::new());
        let mac = MacAddr([2, 0, 0, 0, 0x20, 1]);
        let t = VfTable::new(
            vec![
                VfPolicy::default(),
                VfPolicy {
                    mac: Some(mac),
                    ..VfPolicy::default()
                },
            ],
            MacAddr([0x52, 0x54, 0, 0, 1, 0]),
            0,
        )
        .unwrap();
        let mut host = PfHost::new(m.clone(), "model-pf", t).unwrap();
        host.setup_vmdq().unwrap();
        let (stop, pf) = serve_model(host);
        let vf = VfMailbox::new(ModelVf(m.clone(), 1), Duration::from_secs(10));
        let r = vf.request(&VfRequest::Reset.encode()[..1]).unwrap();
        assert_eq!(r[0], MSG_ACK | 1);
        assert_eq!(mailbox::mac_from_words(r[1], r[2]), mac);
        let r = vf
            .request(&VfRequest::SetLpe { max_frame: 1518 }.encode()[..2])
            .unwrap();
        assert_eq!(r[0], MSG_ACK | MSG_CTS | 5);
        let r = vf
            .request(&VfRequest::SetMac(MacAddr([2, 9, 9, 9, 9, 9])).encode()[..3])
            .unwrap();
        assert_eq!(r[0], MSG_NACK | MSG_CTS | 2);
        assert_eq!(mailbox::reply_status(r[0], 2), ReplyStatus::Nack);
        // VF 0 has no MAC: its reset is NACKed.
        let vf0 = VfMailbox::new(ModelVf(m.clone(), 0), Duration::from_secs(10));
        let r = vf0.request(&[1]).unwrap();
        assert_eq!(r[0], MSG_NACK | 1);
        stop.store(true, Ordering::Relaxed);
        let host = pf.join().unwrap();
        assert_eq!(host.counters()[1].acked, 2);
        assert_eq!(host.counters()[1].nacked, 1);
    }

    #[test]
    fn the_pf_holds_the_link_down_and_asks_for_a_reset_by_control_messages() {
        use crate::sriov::{AdminChange, LinkState};
        let m = Arc::new(MailboxModel::new());
        let mac = MacAddr([2, 0, 0, 0, 0x20, 1]);
        let t = VfTable::new(
            vec![VfPolicy {
                mac: Some(mac),
                ..VfPolicy::default()
            }],
            MacAddr([0x52, 0x54, 0, 0, 1, 0]),
            0,
        )
        .unwrap();
        let mut host = PfHost::new(m.clone(), "model-pf", t).unwrap();
        host.setup_vmdq().unwrap();
        let vf = VfMailbox::new(ModelVf(m.clone(), 0), Duration::from_secs(10));
        // Single-threaded: post, let the PF serve, read.
        let serve = |host: &mut PfHost<Arc<MailboxModel>>, words: &[u32]| {
            vf.lock().unwrap();
            for (i, w) in words.iter().enumerate() {
                vf.access.write_mem(i, *w);
            }
            vf.access.write_ctl(mbx::REQ);
            host.poll(0).unwrap();
            vf.poll_pf_message().unwrap().expect("a reply")
        };
        serve(&mut host, &VfRequest::Reset.encode()[..1]);
        assert!(vf.pf_link_up());
        host.admin(0, AdminChange::Link(LinkState::Disable)).unwrap();
        host.poll(1).unwrap();
        assert_eq!(vf.poll_pf_message().unwrap(), Some(0x0100));
        assert!(!vf.pf_link_up());
        // Replies while the link is down carry no CTS: still down.
        serve(&mut host, &VfRequest::SetLpe { max_frame: 1526 }.encode()[..2]);
        assert!(!vf.pf_link_up());
        host.admin(0, AdminChange::Link(LinkState::Auto)).unwrap();
        host.poll(2).unwrap();
        vf.poll_pf_message().unwrap();
        assert!(vf.pf_link_up());
        assert!(!vf.reset_asked());
        host.admin(0, AdminChange::Mac(MacAddr([2, 0, 0, 0, 0x20, 7])))
            .unwrap();
        host.poll(3).unwrap();
        vf.poll_pf_message().unwrap();
        assert!(vf.reset_asked());
        assert!(!vf.pf_link_up());
        let r = serve(&mut host, &VfRequest::Reset.encode()[..1]);
        assert_eq!(r, MSG_ACK | 1);
        assert!(!vf.reset_asked() && vf.pf_link_up());
    }

    #[test]
    fn no_pf_is_a_timeout_naming_the_pf_manager() {
        let m = Arc::new(MailboxModel::new());
        let vf = VfMailbox::new(ModelVf(m, 0), Duration::from_millis(20));
        let e = vf.request(&[1]).unwrap_err();
        assert!(e.to_string().contains("PF's driver"), "{e}");
    }
}
