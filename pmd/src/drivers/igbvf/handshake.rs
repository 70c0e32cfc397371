//! The VF's reset handshake with its PF (at open, on `reset`, and by the reset watchdog after the
//! PF or the VF was reset behind the application's back), the mailbox requests whose reply is a
//! bare ACK / NACK, and the replay of the settings the application had asked for.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::mbx::BarMailbox;
use super::{IgbvfError, MAX_FRAME, VfShared, drv_err, regs};
use crate::error::Result;
use crate::mac::MacAddr;
use crate::sriov::mailbox::{self, ReplyStatus, VfRequest, id};

/// How long the PF may take to release the VF from reset.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the application asked the PF for, replayed after a reset (the PF forgets a VF's
/// settings when the VF resets; a PF that restarted knows only its saved state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VfSettings {
    /// A MAC set with SET_MAC_ADDR (None: the one the PF gives in its RESET reply).
    pub(crate) mac: Option<MacAddr>,
    /// Unicast promiscuous (SET_PROMISC).
    pub(crate) promiscuous: bool,
    /// All multicast (SET_PROMISC).
    pub(crate) all_multicast: bool,
    /// The multicast list (SET_MULTICAST), empty when none was set.
    pub(crate) multicast: Vec<MacAddr>,
    /// VLAN ids added with SET_VLAN.
    pub(crate) vlans: BTreeSet<u16>,
    /// The max frame asked with SET_LPE for the MTU (None: [`MAX_FRAME`], the standard MTU's).
    pub(crate) max_frame: Option<u32>,
}

pub(crate) fn lock(mbx: &Mutex<BarMailbox>) -> MutexGuard<'_, BarMailbox> {
    mbx.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends a request whose reply is a bare ACK / NACK.
pub(crate) fn simple_request(
    name: &str,
    mbx: &Mutex<BarMailbox>,
    req: VfRequest,
    what: &'static str,
) -> Result<()> {
    let words = req.encode();
    let r = lock(mbx)
        .request(&words)
        .map_err(|e| drv_err(name, "mailbox request", e))?;
    match mailbox::reply_status(r[0], req.id()) {
        ReplyStatus::Ack => Ok(()),
        ReplyStatus::Nack => Err(drv_err(name, "mailbox request", IgbvfError::Refused { what })),
        ReplyStatus::Unexpected => Err(drv_err(
            name,
            "mailbox request",
            IgbvfError::Protocol { what, word0: r[0] },
        )),
    }
}

/// The multicast request for `addrs` (at most [`mailbox::MAX_MC_HASHES`]: checked by the caller).
pub(crate) fn multicast_request(addrs: &[MacAddr]) -> VfRequest {
    let mut hashes = [0u16; mailbox::MAX_MC_HASHES];
    for (h, m) in hashes.iter_mut().zip(addrs) {
        *h = mailbox::multicast_hash(*m);
    }
    VfRequest::SetMulticast {
        count: addrs.len().min(mailbox::MAX_MC_HASHES) as u8,
        hashes,
    }
}

/// Resets the VF (`CTRL.RST`: its queues stop), waits until the PF released it, and does the
/// handshake: RESET (the PF's ACK carries our MAC), then SET_LPE. Returns the PF's MAC for us.
pub(crate) fn handshake(shared: &VfShared, mbx: &Mutex<BarMailbox>) -> Result<MacAddr> {
    let s = shared;
    let (Some(device), Some(b)) = (s.device.as_ref(), s.regs.vf()) else {
        return Err(drv_err(&s.name, "reset", IgbvfError::PfPool));
    };
    // A function reset (ours, the PF's or the VF's) clears bus mastering in its command register.
    crate::drivers::igb_family::open::enable_bus_master(&s.name, device)?;
    log::debug!(
        "{}: before reset: STATUS {:#x} CTRL {:#x} V2PMAILBOX {:#x}",
        s.name,
        b.read(regs::STATUS),
        b.read(regs::CTRL),
        b.read(regs::V2PMAILBOX)
    );
    // STATUS mirrors the PF's (never 0 on an 82576: full duplex, speed, IOV mode bits).
    if b.read(regs::STATUS) == 0 && b.read(regs::V2PMAILBOX) == 0 {
        return Err(drv_err(&s.name, "reset", IgbvfError::NotDecoded));
    }
    // The reset stops every queue: none is live until it was set up again.
    s.recovery.clear_live();
    b.write(regs::VTEIMC, 0x7);
    b.modify(regs::CTRL, regs::CTRL_RST, 0);
    std::thread::sleep(Duration::from_millis(2));
    let m = lock(mbx);
    // Wait until the PF released the VF (RSTI clear; RSTD clears on read).
    let t = Instant::now();
    loop {
        let v = m.poll_ctl().map_err(|e| drv_err(&s.name, "read V2PMAILBOX", e))?;
        if v != u32::MAX && v & regs::mbx::RSTI == 0 {
            break;
        }
        if t.elapsed() > RELEASE_TIMEOUT {
            return Err(drv_err(
                &s.name,
                "reset",
                IgbvfError::NotReleased(RELEASE_TIMEOUT),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let r = m
        .request(&VfRequest::Reset.encode()[..1])
        .map_err(|e| drv_err(&s.name, "reset handshake", e))?;
    drop(m);
    match mailbox::reply_status(r[0], id::RESET) {
        ReplyStatus::Ack => {}
        ReplyStatus::Nack => {
            return Err(drv_err(
                &s.name,
                "reset handshake",
                IgbvfError::Refused {
                    what: "the reset (the PF has no MAC for this VF)",
                },
            ));
        }
        ReplyStatus::Unexpected => {
            return Err(drv_err(
                &s.name,
                "reset handshake",
                IgbvfError::Protocol {
                    what: "RESET",
                    word0: r[0],
                },
            ));
        }
    }
    let mac = mailbox::mac_from_words(r[1], r[2]);
    if !mac.is_valid_unicast() {
        return Err(drv_err(
            &s.name,
            "reset handshake",
            IgbvfError::Protocol {
                what: "RESET (the MAC is not unicast)",
                word0: r[0],
            },
        ));
    }
    let max_frame = s.settings.lock().unwrap_or_else(|p| p.into_inner()).max_frame;
    simple_request(
        &s.name,
        mbx,
        VfRequest::SetLpe {
            max_frame: max_frame.unwrap_or(MAX_FRAME),
        },
        "SET_LPE",
    )?;
    // The RSTI / RSTD this handshake saw are its own: none is a new reset.
    lock(mbx).take_reset_bits();
    log::info!("{}: igbvf reset handshake done, MAC {mac}", s.name);
    Ok(mac)
}

/// The handshake, then the replay of the application's settings; keeps and returns the MAC in
/// use.
pub(crate) fn reset_and_replay(shared: &VfShared, mbx: &Mutex<BarMailbox>) -> Result<MacAddr> {
    let pf_mac = handshake(shared, mbx)?;
    let settings = shared.settings.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mac = replay(shared, mbx, &settings, pf_mac)?;
    *shared.mac.lock().unwrap_or_else(|p| p.into_inner()) = mac;
    Ok(mac)
}

/// Asks the PF again for what the application had set (after a handshake). Returns the MAC in
/// use: the application's, else `pf_mac` (the RESET reply's).
fn replay(
    shared: &VfShared,
    mbx: &Mutex<BarMailbox>,
    settings: &VfSettings,
    pf_mac: MacAddr,
) -> Result<MacAddr> {
    let name = &shared.name;
    let mut mac = pf_mac;
    if let Some(m) = settings.mac.filter(|m| *m != pf_mac) {
        simple_request(name, mbx, VfRequest::SetMac(m), "SET_MAC_ADDR")?;
        mac = m;
    }
    if settings.promiscuous {
        simple_request(
            name,
            mbx,
            VfRequest::SetPromisc {
                unicast: true,
                multicast: false,
            },
            "SET_PROMISC (unicast)",
        )?;
    }
    if settings.all_multicast {
        simple_request(
            name,
            mbx,
            VfRequest::SetPromisc {
                unicast: false,
                multicast: true,
            },
            "SET_PROMISC (multicast)",
        )?;
    }
    if !settings.multicast.is_empty() {
        simple_request(name, mbx, multicast_request(&settings.multicast), "SET_MULTICAST")?;
    }
    for &vid in &settings.vlans {
        simple_request(name, mbx, VfRequest::SetVlan { vid, add: true }, "SET_VLAN")?;
    }
    Ok(mac)
}
