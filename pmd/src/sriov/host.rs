//! The igb (82576) PF host: VMDq pools, the VF mailbox service loop, and the administrator's
//! run-time changes of a VF.
//!
//! Pools: VF `i` owns pool `i` (hardware queues `i` and `i + 8`); the PF owns pool `N` (N = the
//! number of VFs, at most 7 so that the PF keeps a pool). Receive-address entry 0 holds the PF's
//! MAC with the PF's pool bit, entry `1 + i` holds VF `i`'s MAC with pool bit `i`. MRQC selects
//! VMDq, VT_CTL makes the PF pool the default for unmatched unicast, DTXSWC enables local
//! switching between pools (and MAC anti-spoofing per spoof-checked VF), VFRE / VFTE gate each
//! pool, VMOLR holds each pool's receive options (broadcast, untagged, multicast hash, max frame).
//!
//! The service loop ([`PfHost::poll`]) never blocks on a VF: a VF that holds its mailbox lock is
//! retried at the next poll; a VF's message touches that VF's registers only, except the shared
//! multicast table, which always holds the union of the VFs' (policy-bounded) hash lists.
#![forbid(unsafe_code)]

use oxpmd_vfio::{Bar, BarError};

use super::admin::{AdminChange, AdminError, AdminOutcome, VfSignal};
pub use super::error::PfHostError;
use super::mailbox::{MBX_WORDS, Reply};
use super::policy::{
    HwAction, LinkState, MAX_FRAME_HW, MAX_VFS, Outcome, Refusal, VfCounters, VfPhase, VfState, VfTable,
};
pub use super::pool_stats::PoolCounters;
use super::regs;
use super::vlan::VlanFilters;
use crate::drivers::igb::regs::{filter, general, rx, tx};
use crate::mac::MacAddr;

/// Register access of the PF (BAR0 in the real thing, a model in tests).
pub trait PfRegs: Send {
    /// 32-bit read.
    fn read(&self, off: usize) -> Result<u32, BarError>;
    /// 32-bit write.
    fn write(&self, off: usize, v: u32) -> Result<(), BarError>;
}

impl PfRegs for Bar {
    fn read(&self, off: usize) -> Result<u32, BarError> {
        self.read32(off)
    }
    fn write(&self, off: usize, v: u32) -> Result<(), BarError> {
        self.write32(off, v)
    }
}

/// Something a VF did, reported by [`PfHost::poll`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VfEvent {
    /// The VF completed its reset handshake and got `mac`.
    Ready {
        /// VF.
        vf: usize,
        /// Its MAC.
        mac: MacAddr,
    },
    /// A request was done.
    Done {
        /// VF.
        vf: usize,
        /// Message id.
        id: u16,
    },
    /// A request was refused (and NACKed).
    Refused {
        /// VF.
        vf: usize,
        /// Message id.
        id: u16,
        /// Why.
        reason: Refusal,
    },
    /// A function-level reset of the VF (VFLRE).
    Flr {
        /// VF.
        vf: usize,
    },
}

impl std::fmt::Display for VfEvent {
    /// `VF 0: ready, MAC ...`, `VF 0: message 0x0005 done`, `VF 0: message 0x0002 refused: ...`,
    /// `VF 0: function reset`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VfEvent::Ready { vf, mac } => write!(f, "VF {vf}: ready, MAC {mac}"),
            VfEvent::Done { vf, id } => write!(f, "VF {vf}: message {id:#06x} done"),
            VfEvent::Refused { vf, id, reason } => write!(f, "VF {vf}: message {id:#06x} refused: {reason}"),
            VfEvent::Flr { vf } => write!(f, "VF {vf}: function reset"),
        }
    }
}

/// Rate-limit refusals are logged once per this window per VF, with the count.
const RATE_LOG_WINDOW_MS: u64 = 1000;

/// The PF host over registers `R`.
pub struct PfHost<R: PfRegs> {
    regs: R,
    name: String,
    table: VfTable,
    /// Per VF: (window start, refusals suppressed in it).
    rate_log: [(u64, u64); MAX_VFS],
    /// Per VF: a CONTROL message waiting for the VF's mailbox to be free.
    signals: [Option<VfSignal>; MAX_VFS],
    /// Per VF: its pool's counters (64-bit, from the rolling 32-bit registers).
    pool_counters: [PoolCounters; MAX_VFS],
}

impl<R: PfRegs> std::fmt::Debug for PfHost<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PfHost")
            .field("device", &self.name)
            .field("vfs", &self.table.len())
            .finish()
    }
}

impl<R: PfRegs> PfHost<R> {
    /// A host for `table.len()` VFs (at most 7) over `regs`.
    pub fn new(regs: R, name: &str, table: VfTable) -> Result<Self, PfHostError> {
        if table.len() > MAX_VFS - 1 {
            return Err(PfHostError::TooManyVfs {
                device: name.into(),
                requested: table.len(),
                max: MAX_VFS - 1,
            });
        }
        Ok(PfHost {
            regs,
            name: name.to_string(),
            table,
            rate_log: [(0, 0); MAX_VFS],
            signals: [None; MAX_VFS],
            pool_counters: [PoolCounters::default(); MAX_VFS],
        })
    }

    /// The VF states.
    pub fn table(&self) -> &VfTable {
        &self.table
    }

    /// The register access.
    pub fn regs(&self) -> &R {
        &self.regs
    }

    /// The PF's pool.
    pub fn pf_pool(&self) -> usize {
        self.table.len()
    }

    fn rd(&self, off: usize, op: &'static str) -> Result<u32, PfHostError> {
        self.regs.read(off).map_err(|source| PfHostError::Bar {
            device: self.name.clone(),
            op,
            source,
        })
    }

    fn wr(&self, off: usize, v: u32, op: &'static str) -> Result<(), PfHostError> {
        self.regs.write(off, v).map_err(|source| PfHostError::Bar {
            device: self.name.clone(),
            op,
            source,
        })
    }

    fn modify(&self, off: usize, set: u32, clear: u32, op: &'static str) -> Result<(), PfHostError> {
        let v = self.rd(off, op)?;
        self.wr(off, (v & !clear) | set, op)
    }

    /// Programs VMDq for the PF and every VF (all VF pools off until their reset handshake, or
    /// as restored), enables receive / transmit, and releases the VFs from reset (PFRSTD).
    pub fn setup_vmdq(&mut self) -> Result<(), PfHostError> {
        let pf = self.pf_pool();
        let n = self.table.len();
        // Stale events from before us.
        self.wr(regs::VFLRE, 0xFF, "clear VFLRE")?;
        self.wr(regs::MBVFICR, 0x00FF_00FF, "clear MBVFICR")?;
        self.wr(regs::VFRE, 1 << pf, "write VFRE")?;
        self.wr(regs::VFTE, 1 << pf, "write VFTE")?;
        self.wr(regs::MRQC, regs::MRQC_VMDQ, "write MRQC")?;
        self.wr(
            regs::VT_CTL,
            (pf as u32) << regs::VT_CTL_DEF_POOL_SHIFT,
            "write VT_CTL",
        )?;
        let pf_mac = self.table.pf_mac();
        self.write_rar(0, Some(pf_mac), pf)?;
        self.wr(
            regs::vmolr(pf),
            regs::VMOLR_BAM | regs::VMOLR_AUPE | regs::VMOLR_ROMPE | regs::VMOLR_STRCRC,
            "write the PF's VMOLR",
        )?;
        for vf in 0..n {
            self.write_rar(1 + vf, None, vf)?;
            self.wr(regs::vmolr(vf), 0, "clear a VF's VMOLR")?;
            self.write_vmvir(vf)?;
        }
        self.write_dtxswc()?;
        self.write_vlan_filters()?;
        // Long frames are bounded per pool (VMOLR.RLPML); the port-wide bound is the device's.
        self.wr(regs::RLPML, MAX_FRAME_HW, "write RLPML")?;
        for vf in 0..n {
            self.pool_counters[vf].baseline(self.pool_raw(vf)?);
        }
        // VFs restored from a saved state get their pool back (their queues are the VF's: they
        // are reported, not touched).
        for vf in 0..n {
            if self.table.vf(vf).is_some_and(|s| s.phase == VfPhase::Ready) {
                let rx = self.rd(regs::rxdctl(vf), "read RXDCTL")? & regs::DCTL_ENABLE != 0;
                let tx = self.rd(regs::txdctl(vf), "read TXDCTL")? & regs::DCTL_ENABLE != 0;
                log::info!(
                    "{}: VF {vf}: restored; its queues are {} (RX) / {} (TX)",
                    self.name,
                    if rx { "on" } else { "off" },
                    if tx { "on" } else { "off" }
                );
            }
        }
        for vf in 0..n {
            if self.table.vf(vf).is_some_and(|s| s.phase == VfPhase::Ready) {
                let mac = self.table.vf(vf).and_then(|s| s.mac);
                if let Some(mac) = mac {
                    self.apply(vf, &HwAction::SetMac(mac))?;
                }
                self.apply(vf, &HwAction::EnablePool)?;
            }
        }
        self.write_mta()?;
        self.modify(
            rx::RCTL.off(),
            rx::RCTL_EN | rx::RCTL_BAM | rx::RCTL_SECRC | rx::RCTL_LPE,
            0,
            "enable receive",
        )?;
        self.wr(tx::TCTL.off(), tx::TCTL_ON, "enable transmit")?;
        self.modify(
            general::CTRL_EXT.off(),
            general::CTRL_EXT_PFRSTD | general::CTRL_EXT_DRV_LOAD,
            0,
            "release the VFs (CTRL_EXT.PFRSTD)",
        )?;
        log::info!(
            "{}: VMDq on: {n} VF pool(s), PF pool {pf} (MAC {pf_mac}), local switching on, VFs released",
            self.name
        );
        Ok(())
    }

    /// Writes receive-address entry `n` (`None`: invalid) with pool `pool`.
    fn write_rar(&self, n: usize, mac: Option<MacAddr>, pool: usize) -> Result<(), PfHostError> {
        self.wr(regs::rah(n), 0, "invalidate a receive address")?;
        if let Some(m) = mac {
            let m = m.0;
            self.wr(
                regs::ral(n),
                u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
                "write RAL",
            )?;
            self.wr(
                regs::rah(n),
                u32::from(u16::from_le_bytes([m[4], m[5]])) | filter::RAH_AV | regs::rah_pool(pool),
                "write RAH",
            )?;
        } else {
            self.wr(regs::ral(n), 0, "clear RAL")?;
        }
        Ok(())
    }

    /// The VMOLR value of VF `vf`'s pool, from its state.
    pub fn vmolr_for(s: &VfState) -> u32 {
        let mut v = regs::VMOLR_BAM | regs::VMOLR_STRCRC;
        // A port VLAN: only that VLAN's frames, its tag stripped; else untagged frames too.
        if s.policy.port_vlan.is_some() {
            v |= regs::VMOLR_STRVLAN;
        } else {
            v |= regs::VMOLR_AUPE;
        }
        if s.mc_count > 0 {
            v |= regs::VMOLR_ROMPE;
        }
        if s.mc_promisc {
            v |= regs::VMOLR_MPME;
        }
        v | regs::VMOLR_LPE | (s.max_frame & regs::VMOLR_RLPML_MASK)
    }

    /// Writes the shared multicast table: the union of every ready VF's hashes.
    fn write_mta(&self) -> Result<(), PfHostError> {
        let mta = crate::drivers::igb::multicast::mta_words(self.table.multicast_union());
        for (i, v) in mta.iter().enumerate() {
            self.wr(filter::MTA.off() + 4 * i, *v, "write MTA")?;
        }
        Ok(())
    }

    /// Applies one decision's hardware change for VF `vf` (its own pool and RAR entry; the MTA
    /// for multicast).
    fn apply(&self, vf: usize, a: &HwAction) -> Result<(), PfHostError> {
        let Some(s) = self.table.vf(vf) else {
            return Ok(());
        };
        match a {
            HwAction::SetMac(mac) => self.write_rar(1 + vf, Some(*mac), vf),
            HwAction::EnablePool => {
                self.wr(regs::vmolr(vf), Self::vmolr_for(s), "write a VF's VMOLR")?;
                if s.policy.link == LinkState::Disable {
                    // The administrator holds the link down: the pool stays off.
                    return Ok(());
                }
                self.modify(regs::VFRE, 1 << vf, 0, "enable a VF's receive")?;
                self.modify(regs::VFTE, 1 << vf, 0, "enable a VF's transmit")
            }
            HwAction::DisablePool => {
                self.modify(regs::VFRE, 0, 1 << vf, "disable a VF's receive")?;
                self.modify(regs::VFTE, 0, 1 << vf, "disable a VF's transmit")?;
                self.wr(regs::vmolr(vf), 0, "clear a VF's VMOLR")
            }
            HwAction::UpdateMulticast => {
                if s.phase == VfPhase::Ready {
                    self.wr(regs::vmolr(vf), Self::vmolr_for(s), "write a VF's VMOLR")?;
                }
                self.write_mta()
            }
            HwAction::SetMaxFrame(_) | HwAction::SetMulticastPromisc(_) => {
                self.wr(regs::vmolr(vf), Self::vmolr_for(s), "write a VF's VMOLR")
            }
            HwAction::UpdateVlans => {
                log::debug!(
                    "{}: VF {vf}: VLANs now {:?}, port VLAN {:?}",
                    self.name,
                    s.vlans,
                    s.policy.port_vlan
                );
                self.write_vmvir(vf)?;
                if s.phase == VfPhase::Ready {
                    self.wr(regs::vmolr(vf), Self::vmolr_for(s), "write a VF's VMOLR")?;
                }
                self.write_vlan_filters()
            }
            HwAction::UpdateSpoofCheck => self.write_dtxswc(),
            HwAction::UpdateLink => {
                if s.policy.link == LinkState::Disable {
                    self.modify(regs::VFRE, 0, 1 << vf, "disable a VF's receive (link down)")?;
                    self.modify(regs::VFTE, 0, 1 << vf, "disable a VF's transmit (link down)")
                } else if s.phase == VfPhase::Ready {
                    self.apply(vf, &HwAction::EnablePool)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// DTXSWC: local switching, and MAC anti-spoofing for every spoof-checked VF.
    fn write_dtxswc(&self) -> Result<(), PfHostError> {
        let mut v = regs::DTXSWC_LOOPBACK;
        for (vf, s) in self.table.iter().enumerate() {
            if s.policy.spoof_check {
                v |= regs::dtxswc_mac_spoof(vf);
            }
        }
        self.wr(regs::DTXSWC, v, "write DTXSWC")
    }

    /// VMVIR of VF `vf`: its port VLAN inserted on everything it sends, or nothing.
    fn write_vmvir(&self, vf: usize) -> Result<(), PfHostError> {
        let v = match self.table.vf(vf).and_then(|s| s.policy.port_vlan) {
            Some(vid) => regs::VMVIR_VLANA_DEFAULT | u32::from(vid),
            None => 0,
        };
        self.wr(regs::vmvir(vf), v, "write a VF's VMVIR")
    }

    /// VLVF, VFTA and RCTL.VFE from the table (see [`VlanFilters`]).
    fn write_vlan_filters(&self) -> Result<(), PfHostError> {
        let f = VlanFilters::from_table(&self.table);
        for (i, v) in f.vlvf.iter().enumerate() {
            self.wr(regs::vlvf(i), *v, "write VLVF")?;
        }
        for (i, v) in f.vfta.iter().enumerate() {
            self.wr(regs::vfta(i), *v, "write VFTA")?;
        }
        let (set, clear) = if f.enabled {
            (regs::RCTL_VFE, 0)
        } else {
            (0, regs::RCTL_VFE)
        };
        self.modify(rx::RCTL.off(), set, clear, "write RCTL.VFE")
    }

    /// The raw rolling counters of pool `vf`.
    fn pool_raw(&self, vf: usize) -> Result<[u32; 5], PfHostError> {
        use regs::pool_stats as ps;
        Ok([
            self.rd(ps::gprc(vf), "read PVFGPRC")?,
            self.rd(ps::gptc(vf), "read PVFGPTC")?,
            self.rd(ps::gorc(vf), "read PVFGORC")?,
            self.rd(ps::gotc(vf), "read PVFGOTC")?,
            self.rd(ps::mprc(vf), "read PVFMPRC")?,
        ])
    }

    /// Reads every VF pool's counters into the 64-bit totals. Call at least every few seconds
    /// (the octet registers wrap after 4 GiB: 34 s at line rate).
    pub fn refresh_pool_counters(&mut self) -> Result<(), PfHostError> {
        for vf in 0..self.table.len() {
            let raw = self.pool_raw(vf)?;
            self.pool_counters[vf].update(raw);
        }
        Ok(())
    }

    /// VF `vf`'s pool counters as of the last refresh.
    pub fn pool_counters(&self, vf: usize) -> Option<PoolCounters> {
        (vf < self.table.len()).then(|| self.pool_counters[vf])
    }

    /// Applies the administrator's `change` of VF `vf` (validated first: on an error nothing
    /// changed), logs it, and queues what the VF must be told.
    pub fn admin(&mut self, vf: usize, change: AdminChange) -> Result<AdminOutcome, AdminError> {
        let out = self.table.admin(vf, change)?;
        for a in &out.actions {
            if let Err(e) = self.apply(vf, a) {
                log::error!("{}: VF {vf}: applying {a:?}: {e}", self.name);
            }
        }
        let ready = self.table.vf(vf).is_some_and(|s| s.phase == VfPhase::Ready);
        if let (Some(sig), true) = (out.signal, ready) {
            self.signals[vf] = Some(sig);
        }
        log::info!(
            "{}: VF {vf}: administrator set {change}{}",
            self.name,
            out.signal
                .map(|s| format!("; the VF is told: {s:?}"))
                .unwrap_or_default()
        );
        if let Some(n) = &out.note {
            log::warn!("{}: VF {vf}: {n}", self.name);
        }
        Ok(out)
    }

    /// Sends the queued CONTROL messages; a VF holding its mailbox gets it at a later poll.
    fn send_signals(&mut self) -> Result<(), PfHostError> {
        for vf in 0..self.table.len() {
            let Some(sig) = self.signals[vf] else {
                continue;
            };
            let mut reply = Reply::status(super::mailbox::id::PF_CONTROL, false, false);
            reply.words[0] = sig.word0();
            if self.send(vf, &reply)? {
                self.signals[vf] = None;
            }
        }
        Ok(())
    }

    /// Takes the PF's lock on VF `vf`'s mailbox; false while the VF holds it.
    fn lock(&self, vf: usize) -> Result<bool, PfHostError> {
        self.wr(regs::p2vmailbox(vf), regs::P2V_PFU, "lock a VF mailbox")?;
        Ok(self.rd(regs::p2vmailbox(vf), "lock a VF mailbox")? & regs::P2V_PFU != 0)
    }

    /// Writes `reply` to VF `vf`'s mailbox and signals it (STS). False if the VF held the lock.
    fn send(&self, vf: usize, reply: &Reply) -> Result<bool, PfHostError> {
        if !self.lock(vf)? {
            return Ok(false);
        }
        for (i, w) in reply.as_slice().iter().enumerate() {
            self.wr(regs::vmbmem(vf) + 4 * i, *w, "write a VF mailbox")?;
        }
        // STS without PFU also releases the lock.
        self.wr(regs::p2vmailbox(vf), regs::P2V_STS, "signal a VF")?;
        Ok(true)
    }

    /// One service pass at time `now_ms`: the pending messages are noted (MBVFICR), then VF
    /// resets are handled (VFLRE), then the noted messages. Returns what happened; refusals are
    /// logged here (rate-limit refusals once a second per VF).
    ///
    /// The order of the two reads matters: a VF resets (VFLRE) and then sends RESET. Had VFLRE
    /// been read first, a VF doing both between the two reads would have its RESET served
    /// (pool on) and its reset seen only at the next pass (pool off for good: the VF has
    /// nothing more to send). Read in this order, a RESET noted in MBVFICR was sent after any
    /// reset that preceded it, so that reset is already in VFLRE when it is read and is
    /// handled first. The words of a message are read after that, so VFLRE is read once more
    /// after them: a reset that came later, and the RESET it wrote over a noted message, are
    /// handled in that order too.
    pub fn poll(&mut self, now_ms: u64) -> Result<Vec<VfEvent>, PfHostError> {
        let mut events = Vec::new();
        let icr = self.rd(regs::MBVFICR, "read MBVFICR")?;
        self.handle_resets(&mut events)?;
        if icr == 0 {
            self.send_signals()?;
            return Ok(events);
        }
        self.handle_messages(icr, now_ms, &mut events)?;
        self.send_signals()?;
        Ok(events)
    }

    /// VFLRE: each reset VF back to Resetting, its pool off.
    fn handle_resets(&mut self, events: &mut Vec<VfEvent>) -> Result<(), PfHostError> {
        let n = self.table.len();
        let vflre = self.rd(regs::VFLRE, "read VFLRE")?;
        if vflre == 0 {
            return Ok(());
        }
        self.wr(regs::VFLRE, vflre, "clear VFLRE")?;
        for vf in 0..MAX_VFS {
            if vflre & (1 << vf) == 0 {
                continue;
            }
            if vf >= n {
                log::warn!("{}: VFLRE bit {vf} set for a VF that is not enabled", self.name);
                continue;
            }
            for a in self.table.flr(vf) {
                self.apply(vf, &a)?;
            }
            // A reset VF redoes its handshake: nothing left to tell it.
            self.signals[vf] = None;
            log::info!(
                "{}: VF {vf}: function reset; its pool is off until it resets",
                self.name
            );
            events.push(VfEvent::Flr { vf });
        }
        Ok(())
    }

    /// The messages and acknowledgements noted in `icr` (an MBVFICR value).
    fn handle_messages(
        &mut self,
        icr: u32,
        now_ms: u64,
        events: &mut Vec<VfEvent>,
    ) -> Result<(), PfHostError> {
        let n = self.table.len();
        let stray = icr & !(0x00FF_00FF);
        let mut clear = 0u32;
        for vf in 0..MAX_VFS {
            let req = regs::mbvficr_req(vf);
            let ack = regs::mbvficr_ack(vf);
            if icr & ack != 0 {
                clear |= ack;
            }
            if icr & req == 0 {
                continue;
            }
            if vf >= n {
                clear |= req;
                continue;
            }
            // Read the message under the PF's lock; a VF still holding it is served next time.
            if !self.lock(vf)? {
                continue;
            }
            let mut words = [0u32; MBX_WORDS];
            for (i, w) in words.iter_mut().enumerate() {
                *w = self.rd(regs::vmbmem(vf) + 4 * i, "read a VF mailbox")?;
            }
            // A VF reset leaves the mailbox and MBVFICR as they are (QEMU's igb_vf_reset only
            // sets VFLRE), so the words read may be a RESET written after a reset that came
            // after the VFLRE read above: handle such a reset before the words.
            self.handle_resets(events)?;
            // Cleared here, once: the final write below must not clear a request the VF may
            // post right after reading our reply.
            self.wr(regs::MBVFICR, req, "clear a VF request")?;
            // ACK (without PFU: releases the lock).
            self.wr(regs::p2vmailbox(vf), regs::P2V_ACK, "acknowledge a VF message")?;
            let out = self.table.handle(vf, &words, now_ms);
            self.serve(vf, &out, now_ms, events)?;
        }
        let clear = clear | stray;
        if clear != 0 {
            self.wr(regs::MBVFICR, clear, "clear MBVFICR")?;
        }
        Ok(())
    }

    fn serve(
        &mut self,
        vf: usize,
        out: &Outcome,
        now_ms: u64,
        events: &mut Vec<VfEvent>,
    ) -> Result<(), PfHostError> {
        for a in &out.actions {
            self.apply(vf, a)?;
        }
        if !self.send(vf, &out.reply)? {
            log::warn!(
                "{}: VF {vf}: reply to message {:#06x} not delivered: the VF holds its mailbox",
                self.name,
                out.id
            );
        }
        match &out.refusal {
            None if out.id == super::mailbox::id::RESET => {
                let mac = self.table.vf(vf).and_then(|s| s.mac).unwrap_or(MacAddr::ZERO);
                log::info!("{}: VF {vf}: reset handshake done, MAC {mac}", self.name);
                events.push(VfEvent::Ready { vf, mac });
            }
            None => events.push(VfEvent::Done { vf, id: out.id }),
            Some(reason) => {
                if *reason == Refusal::RateLimited {
                    let (start, count) = &mut self.rate_log[vf];
                    if now_ms.saturating_sub(*start) >= RATE_LOG_WINDOW_MS || *count == 0 {
                        log::warn!(
                            "{}: VF {vf}: refused message {:#06x}: {reason} ({} refused before in this \
                             window; total {})",
                            self.name,
                            out.id,
                            *count,
                            self.table.vf(vf).map(|s| s.counters.rate_limited).unwrap_or(0)
                        );
                        *start = now_ms;
                        *count = 0;
                    }
                    *count += 1;
                } else {
                    log::warn!(
                        "{}: VF {vf}: refused message {:#06x}: {reason}",
                        self.name,
                        out.id
                    );
                }
                events.push(VfEvent::Refused {
                    vf,
                    id: out.id,
                    reason: reason.clone(),
                });
            }
        }
        Ok(())
    }

    /// The counters of every VF.
    pub fn counters(&self) -> Vec<VfCounters> {
        self.table.iter().map(|s| s.counters).collect()
    }

    /// Takes VF pools down (VFRE / VFTE off, local switching off): for the manager's shutdown.
    pub fn shutdown(&self) -> Result<(), PfHostError> {
        self.wr(regs::VFRE, 0, "disable pools")?;
        self.wr(regs::VFTE, 0, "disable pools")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
