//! The igb (82576) PF host: opens the PF through VFIO, sets the VF token, enables VFs through
//! sysfs, sets up VMDq pools, releases the VFs from reset and serves their mailboxes.
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

use std::path::Path;
use std::time::{Duration, Instant};

use oxpmd_vfio::{Bar, BarError, Container, Device, Interrupts, IrqKind, PciAddress, Sysfs, VfToken};

use super::mailbox::{MBX_WORDS, Reply};
use super::policy::{HwAction, MAX_VFS, Outcome, Refusal, VfCounters, VfPhase, VfState, VfTable};
use super::state::{PfIdentity, SavedState, StateError};
use crate::drivers::igb::regs::{filter, general, interrupt, mdic, rx, tx};
use crate::mac::MacAddr;

/// PF-side register map of the VF mailboxes and the VMDq pools (offsets in the PF's BAR0).
pub mod regs {
    /// P2VMAILBOX(vf): the PF's view of VF `vf`'s mailbox control.
    pub const fn p2vmailbox(vf: usize) -> usize {
        0x0C00 + 4 * vf
    }
    /// P2VMAILBOX: the PF sent a message (the VF sees PFSTS).
    pub const P2V_STS: u32 = 0x01;
    /// P2VMAILBOX: the PF acknowledges the VF's message (the VF sees PFACK).
    pub const P2V_ACK: u32 = 0x02;
    /// P2VMAILBOX: the VF holds the buffer (read only).
    pub const P2V_VFU: u32 = 0x04;
    /// P2VMAILBOX: the PF holds the buffer.
    pub const P2V_PFU: u32 = 0x08;
    /// P2VMAILBOX: force the VF's lock off.
    pub const P2V_RVFU: u32 = 0x10;
    /// VMBMEM(vf): VF `vf`'s 16-word mailbox memory.
    pub const fn vmbmem(vf: usize) -> usize {
        0x0800 + 0x40 * vf
    }
    /// Mailbox VF interrupt causes: VFREQ bits 7:0, VFACK bits 23:16 (write 1 to clear).
    pub const MBVFICR: usize = 0x0C80;
    /// MBVFICR: VF `vf` sent a request.
    pub const fn mbvficr_req(vf: usize) -> u32 {
        1 << vf
    }
    /// MBVFICR: VF `vf` acknowledged the PF's message.
    pub const fn mbvficr_ack(vf: usize) -> u32 {
        1 << (16 + vf)
    }
    /// Mailbox interrupt mask.
    pub const MBVFIMR: usize = 0x0C84;
    /// VF function-level reset events (write 1 to clear).
    pub const VFLRE: usize = 0x0C88;
    /// Receive enable per pool.
    pub const VFRE: usize = 0x0C8C;
    /// Transmit enable per pool.
    pub const VFTE: usize = 0x0C90;
    /// Multiple receive queues command.
    pub const MRQC: usize = 0x5818;
    /// MRQC: VMDq pools, no RSS.
    pub const MRQC_VMDQ: u32 = 0x3;
    /// Virtualization control.
    pub const VT_CTL: usize = 0x581C;
    /// VT_CTL: default pool shift (bits 9:7).
    pub const VT_CTL_DEF_POOL_SHIFT: u32 = 7;
    /// VT_CTL: drop unmatched unicast instead of delivering it to the default pool.
    pub const VT_CTL_DISABLE_DEF_POOL: u32 = 1 << 29;
    /// VMOLR(pool): receive options of a pool.
    pub const fn vmolr(pool: usize) -> usize {
        0x5AD0 + 4 * pool
    }
    /// VMOLR: largest frame (bits 13:0) when LPE is set.
    pub const VMOLR_RLPML_MASK: u32 = 0x3FFF;
    /// VMOLR: long packets up to RLPML.
    pub const VMOLR_LPE: u32 = 1 << 16;
    /// VMOLR: accept untagged frames.
    pub const VMOLR_AUPE: u32 = 1 << 24;
    /// VMOLR: accept multicast matching the MTA hash.
    pub const VMOLR_ROMPE: u32 = 1 << 25;
    /// VMOLR: accept broadcast.
    pub const VMOLR_BAM: u32 = 1 << 27;
    /// VMOLR: multicast promiscuous.
    pub const VMOLR_MPME: u32 = 1 << 28;
    /// VMOLR: strip the CRC.
    pub const VMOLR_STRCRC: u32 = 1 << 31;
    /// TX switch control.
    pub const DTXSWC: usize = 0x3500;
    /// DTXSWC: MAC anti-spoof enable for pool `p` (bits 7:0).
    pub const fn dtxswc_mac_spoof(pool: usize) -> u32 {
        1 << pool
    }
    /// DTXSWC: switch frames between pools locally (VMDq loopback).
    pub const DTXSWC_LOOPBACK: u32 = 1 << 31;
    /// Receive address low / high of entry `n` (0..16).
    pub const fn ral(n: usize) -> usize {
        0x5400 + 8 * n
    }
    /// Receive address high of entry `n`.
    pub const fn rah(n: usize) -> usize {
        0x5404 + 8 * n
    }
    /// RAH: the pool select bit of pool `p` (bits 25:18).
    pub const fn rah_pool(pool: usize) -> u32 {
        1 << (18 + pool)
    }
    /// RXDCTL of hardware queue `q`.
    pub const fn rxdctl(q: usize) -> usize {
        0xC028 + 0x40 * q
    }
    /// TXDCTL of hardware queue `q`.
    pub const fn txdctl(q: usize) -> usize {
        0xE028 + 0x40 * q
    }
    /// Queue enable bit of RXDCTL / TXDCTL.
    pub const DCTL_ENABLE: u32 = 1 << 25;
    /// General purpose interrupt enable.
    pub const GPIE: usize = 0x1514;
    /// GPIE: non-selective interrupt clear on read.
    pub const GPIE_NSICR: u32 = 1 << 0;
    /// GPIE: MSI-X mode (per-vector causes; needed for VF interrupts).
    pub const GPIE_MSIX_MODE: u32 = 1 << 4;
    /// GPIE: extended interrupt auto-mask enable.
    pub const GPIE_EIAME: u32 = 1 << 30;
    /// GPIE: PBA support.
    pub const GPIE_PBA: u32 = 1 << 31;
}

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

/// Failures of the PF host.
#[derive(Debug, thiserror::Error)]
pub enum PfHostError {
    /// A VFIO or sysfs operation failed (the message names the device and the fix).
    #[error(transparent)]
    Vfio(#[from] oxpmd_vfio::Error),
    /// A register access failed.
    #[error("{device}: {op}: {source}")]
    Bar {
        /// PF.
        device: String,
        /// Operation.
        op: &'static str,
        /// Cause.
        source: BarError,
    },
    /// The PF is on a kernel driver.
    #[error(
        "{device}: bound to the kernel driver `{driver}`; unbind it (echo {device} > \
         /sys/bus/pci/drivers/{driver}/unbind) so the PF manager can bind it to vfio-pci"
    )]
    KernelDriver {
        /// PF.
        device: String,
        /// Driver.
        driver: String,
    },
    /// Not an 82576 PF.
    #[error("{device}: {vendor:04x}:{device_id:04x} is not an Intel 82576 PF (8086:10c9)")]
    NotIgbPf {
        /// PF.
        device: String,
        /// Vendor id.
        vendor: u16,
        /// Device id.
        device_id: u16,
    },
    /// Too many VFs for the PF to keep a pool.
    #[error("{device}: {requested} VFs asked; at most {max} so that the PF keeps a pool of its own")]
    TooManyVfs {
        /// PF.
        device: String,
        /// Asked.
        requested: usize,
        /// Limit.
        max: usize,
    },
    /// The device did not leave reset.
    #[error("{device}: CTRL.RST still set {waited:?} after the reset")]
    ResetTimeout {
        /// PF.
        device: String,
        /// Wait.
        waited: Duration,
    },
    /// A PHY access failed.
    #[error("{device}: MDIC write of the PHY control register failed (MDIC = {mdic:#010x})")]
    Phy {
        /// PF.
        device: String,
        /// MDIC value.
        mdic: u32,
    },
    /// The saved state was refused.
    #[error("{device}: saved state refused: {source}")]
    State {
        /// PF.
        device: String,
        /// Why.
        source: StateError,
    },
    /// The policy table does not fit the device.
    #[error("{device}: {what}")]
    Config {
        /// PF.
        device: String,
        /// What.
        what: String,
    },
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

/// Rate-limit refusals are logged once per this window per VF, with the count.
const RATE_LOG_WINDOW_MS: u64 = 1000;

/// The PF host over registers `R`.
pub struct PfHost<R: PfRegs> {
    regs: R,
    name: String,
    table: VfTable,
    /// Per VF: (window start, refusals suppressed in it).
    rate_log: [(u64, u64); MAX_VFS],
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
        let mut dtxswc = regs::DTXSWC_LOOPBACK;
        for vf in 0..n {
            self.write_rar(1 + vf, None, vf)?;
            self.wr(regs::vmolr(vf), 0, "clear a VF's VMOLR")?;
            if self.table.vf(vf).is_some_and(|s| s.policy.spoof_check) {
                dtxswc |= regs::dtxswc_mac_spoof(vf);
            }
        }
        self.wr(regs::DTXSWC, dtxswc, "write DTXSWC")?;
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
            rx::RCTL_EN | rx::RCTL_BAM | rx::RCTL_SECRC,
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
        let mut v = regs::VMOLR_BAM | regs::VMOLR_AUPE | regs::VMOLR_STRCRC;
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
        let mut mta = [0u32; filter::MTA_LEN];
        for h in self.table.multicast_union() {
            let h = usize::from(h) & 0xFFF;
            mta[h >> 5] |= 1 << (h & 31);
        }
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
                    "{}: VF {vf}: VLANs now {:?} (accounted; VLAN filtering is off)",
                    self.name,
                    s.vlans
                );
                Ok(())
            }
        }
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

    /// One service pass at time `now_ms`: VF resets first, then every pending message. Returns
    /// what happened; refusals are logged here (rate-limit refusals once a second per VF).
    pub fn poll(&mut self, now_ms: u64) -> Result<Vec<VfEvent>, PfHostError> {
        let mut events = Vec::new();
        let n = self.table.len();
        let vflre = self.rd(regs::VFLRE, "read VFLRE")?;
        if vflre != 0 {
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
                log::info!(
                    "{}: VF {vf}: function reset; its pool is off until it resets",
                    self.name
                );
                events.push(VfEvent::Flr { vf });
            }
        }
        let icr = self.rd(regs::MBVFICR, "read MBVFICR")?;
        if icr == 0 {
            return Ok(events);
        }
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
            // Cleared here, once: the final write below must not clear a request the VF may
            // post right after reading our reply.
            self.wr(regs::MBVFICR, req, "clear a VF request")?;
            // ACK (without PFU: releases the lock).
            self.wr(regs::p2vmailbox(vf), regs::P2V_ACK, "acknowledge a VF message")?;
            let out = self.table.handle(vf, &words, now_ms);
            self.serve(vf, &out, now_ms, &mut events)?;
        }
        let clear = clear | stray;
        if clear != 0 {
            self.wr(regs::MBVFICR, clear, "clear MBVFICR")?;
        }
        Ok(events)
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

/// A PF opened through VFIO for SR-IOV.
pub struct PfDevice {
    /// PCI address.
    pub addr: PciAddress,
    /// Identity (for the saved state).
    pub identity: PfIdentity,
    /// The VFIO device.
    pub device: Device,
    /// BAR0.
    pub bar: Bar,
    /// The PF's MAC.
    pub mac: MacAddr,
    container: Container,
    /// MSI-X enabled on the PF (never read: the PF host polls). VF interrupts are delivered
    /// through the PF's MSI-X machinery, so without it a kernel VF driver gets none.
    _msix: Option<Interrupts>,
}

impl std::fmt::Debug for PfDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PfDevice").field("addr", &self.addr).finish()
    }
}

/// How long the PF may take to leave reset.
const RESET_TIMEOUT: Duration = Duration::from_secs(1);

impl PfDevice {
    /// Opens the 82576 PF at `addr` for SR-IOV.
    ///
    /// - `restart == false` (fresh start): VFs go to 0 if the PF had some (none may be open), the
    ///   PF is bound to vfio-pci if unbound, opened and reset, and `token` (required) is set; the
    ///   caller then enables VFs with [`PfDevice::enable_vfs`].
    /// - `restart == true`: the PF keeps its VFs; it is opened with `token` (the kernel refuses
    ///   the PF without the current token while a VF is open: that refusal is returned as is)
    ///   and not reset.
    pub fn open(addr: PciAddress, token: Option<&VfToken>, restart: bool) -> Result<PfDevice, PfHostError> {
        let name = addr.to_string();
        let sys = Sysfs::new();
        let info = sys.device(addr)?;
        if (info.vendor, info.device) != (0x8086, 0x10C9) {
            return Err(PfHostError::NotIgbPf {
                device: name,
                vendor: info.vendor,
                device_id: info.device,
            });
        }
        match info.driver.as_deref() {
            Some(oxpmd_vfio::pci::VFIO_PCI_DRIVER) => {}
            Some(d) => {
                return Err(PfHostError::KernelDriver {
                    device: name,
                    driver: d.to_string(),
                });
            }
            None => {
                if !restart && info.sriov_num_vfs.unwrap_or(0) != 0 {
                    sys.set_num_vfs(addr, 0)?;
                }
                sys.bind_vfio_pci(addr)?;
                log::info!("{name}: had no driver, bound to vfio-pci");
            }
        }
        if !restart && sys.device(addr)?.sriov_num_vfs.unwrap_or(0) != 0 {
            // Fresh start: no VF may survive from an earlier owner (they would keep its token).
            sys.set_num_vfs(addr, 0)?;
        }
        let container = Container::open()?;
        let fresh_token = match (restart, token) {
            (false, Some(t)) => Some(t),
            (false, None) => {
                return Err(PfHostError::Config {
                    device: name,
                    what: "a fresh start needs a new VF token".into(),
                });
            }
            (true, _) => None,
        };
        let device = container.open_device(addr, if restart { token } else { None })?;
        device.enable_memory_and_bus_master()?;
        let bar = device.map_bar(0)?;
        let mut pf = PfDevice {
            addr,
            identity: PfIdentity {
                addr,
                vendor: info.vendor,
                device: info.device,
            },
            device,
            bar,
            mac: MacAddr::ZERO,
            container,
            _msix: None,
        };
        if let Some(t) = fresh_token {
            pf.device.set_vf_token(t)?;
        }
        pf.bring_up(!restart)?;
        pf.enable_vf_interrupts();
        Ok(pf)
    }

    fn err(&self, op: &'static str) -> impl Fn(BarError) -> PfHostError + '_ {
        move |source| PfHostError::Bar {
            device: self.addr.to_string(),
            op,
            source,
        }
    }

    fn bring_up(&mut self, reset: bool) -> Result<(), PfHostError> {
        let b = &self.bar;
        let name = self.addr.to_string();
        b.write32(interrupt::IMC.off(), interrupt::ALL)
            .map_err(self.err("mask interrupts"))?;
        b.write32(interrupt::EIMC.off(), interrupt::ALL)
            .map_err(self.err("mask interrupts"))?;
        if reset
            || b.read32(general::CTRL_EXT.off())
                .map_err(self.err("read CTRL_EXT"))?
                & general::CTRL_EXT_DRV_LOAD
                == 0
        {
            if reset {
                let ctrl = b.read32(general::CTRL.off()).map_err(self.err("reset"))?;
                b.write32(general::CTRL.off(), ctrl | general::CTRL_RST)
                    .map_err(self.err("reset"))?;
                std::thread::sleep(Duration::from_millis(2));
                let t = Instant::now();
                while b.read32(general::CTRL.off()).map_err(self.err("reset"))? & general::CTRL_RST != 0 {
                    if t.elapsed() > RESET_TIMEOUT {
                        return Err(PfHostError::ResetTimeout {
                            device: name,
                            waited: RESET_TIMEOUT,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                b.write32(interrupt::IMC.off(), interrupt::ALL)
                    .map_err(self.err("mask interrupts"))?;
            }
            let ext = b.read32(general::CTRL_EXT.off()).map_err(self.err("CTRL_EXT"))?;
            b.write32(general::CTRL_EXT.off(), ext | general::CTRL_EXT_DRV_LOAD)
                .map_err(self.err("CTRL_EXT"))?;
            let ctrl = b.read32(general::CTRL.off()).map_err(self.err("CTRL"))?;
            b.write32(general::CTRL.off(), ctrl | general::CTRL_SLU)
                .map_err(self.err("set link up"))?;
            let cmd = ((mdic::BMCR_AN_ENABLE
                | mdic::BMCR_RESTART_AN
                | mdic::BMCR_FULL_DUPLEX
                | mdic::BMCR_SPEED_1000)
                & mdic::DATA_MASK)
                | (mdic::PHY_BMCR << mdic::REG_SHIFT)
                | (mdic::PHY_ADDR << mdic::PHY_SHIFT)
                | mdic::OP_WRITE;
            b.write32(mdic::MDIC.off(), cmd).map_err(self.err("MDIC"))?;
            let t = Instant::now();
            loop {
                let v = b.read32(mdic::MDIC.off()).map_err(self.err("MDIC"))?;
                if v & mdic::ERROR != 0 || t.elapsed() > Duration::from_millis(200) {
                    return Err(PfHostError::Phy {
                        device: name,
                        mdic: v,
                    });
                }
                if v & mdic::READY != 0 {
                    break;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        let lo = b.read32(filter::RAL0.off()).map_err(self.err("read RAL0"))?;
        let hi = b.read32(filter::RAH0.off()).map_err(self.err("read RAH0"))?;
        let l = lo.to_le_bytes();
        let h = hi.to_le_bytes();
        let mut mac = MacAddr([l[0], l[1], l[2], l[3], h[0], h[1]]);
        if !mac.is_valid_unicast() {
            mac = MacAddr::local(0x5f00);
            log::warn!("{name}: no valid MAC in RAL0/RAH0; using {mac}");
        }
        self.mac = mac;
        log::info!(
            "{name}: PF up (MAC {mac}{})",
            if reset {
                ", reset"
            } else {
                ", not reset: VFs are open"
            }
        );
        Ok(())
    }

    /// Lets VFs raise interrupts: MSI-X on for the PF (VFIO, one vector, never waited on) and
    /// GPIE in MSI-X mode, as a kernel PF driver leaves it; the PF's own causes stay masked.
    /// A failure is logged: VFs driven by polling (our igbvf) do not need it.
    fn enable_vf_interrupts(&mut self) {
        match self.device.enable_irqs(IrqKind::Msix, 1) {
            Ok(irqs) => self._msix = Some(irqs),
            Err(e) => {
                log::warn!(
                    "{}: MSI-X not enabled ({e}): kernel VF drivers will get no interrupts",
                    self.addr
                );
                return;
            }
        }
        if let Err(e) = self.bar.write32(
            regs::GPIE,
            regs::GPIE_MSIX_MODE | regs::GPIE_EIAME | regs::GPIE_PBA | regs::GPIE_NSICR,
        ) {
            log::warn!("{}: GPIE: {e}", self.addr);
        }
    }

    /// A port on the PF's own VMDq pool (hardware queue `hwq`, which must be the PF's pool: the
    /// number of VFs): the PF keeps forwarding its own traffic while its VFs are served.
    pub fn pool_port(&self, hwq: u16) -> crate::Result<crate::drivers::igbvf::IgbvfDriver> {
        crate::drivers::igbvf::IgbvfDriver::pf_pool(
            &format!("{} (PF pool {hwq})", self.addr),
            self.bar.clone(),
            self.container.clone(),
            hwq,
            self.mac,
        )
    }

    /// Enables `n` VFs through sysfs (the token is set: vfio-pci captures them) and returns their
    /// addresses by VF index.
    pub fn enable_vfs(&self, n: u16) -> Result<Vec<PciAddress>, PfHostError> {
        let sys = Sysfs::new();
        sys.set_num_vfs(self.addr, n)?;
        let vfs = sys.device(self.addr)?.virtfns;
        if vfs.len() != usize::from(n) {
            return Err(PfHostError::Config {
                device: self.addr.to_string(),
                what: format!("{} VFs listed in sysfs after enabling {n}", vfs.len()),
            });
        }
        Ok(vfs)
    }

    /// Waits until the PF reports link up (QEMU needs the autonegotiation to finish).
    pub fn wait_link(&self, timeout: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if self
                .bar
                .read32(general::STATUS.off())
                .is_ok_and(|s| s & general::STATUS_LU != 0)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Loads a saved state and checks it belongs to this PF with `num_vfs` VFs.
    pub fn load_state(&self, path: &Path, num_vfs: usize) -> Result<SavedState, PfHostError> {
        let st = SavedState::load(path).map_err(|source| PfHostError::State {
            device: self.addr.to_string(),
            source,
        })?;
        st.check_identity(&self.identity, num_vfs)
            .map_err(|source| PfHostError::State {
                device: self.addr.to_string(),
                source,
            })?;
        Ok(st)
    }
}

impl Drop for PfDevice {
    fn drop(&mut self) {
        let _ = self.bar.write32(rx::RCTL.off(), 0);
        let _ = self.bar.write32(tx::TCTL.off(), 0);
        if let Err(e) = self.device.disable_bus_master() {
            log::warn!("{}: bus master off: {e}", self.addr);
        }
    }
}

/// An in-memory model of the PF's mailbox registers with QEMU's semantics (lock bits, request /
/// ack causes, w1c), for tests of the service loop and of a VF driver's side.
pub mod model {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::{PfRegs, regs};
    use oxpmd_vfio::BarError;

    /// VF-side mailbox bits (V2PMAILBOX).
    pub mod v2p {
        /// Request (VF sent a message).
        pub const REQ: u32 = 0x01;
        /// The VF acknowledges.
        pub const ACK: u32 = 0x02;
        /// The VF holds the buffer.
        pub const VFU: u32 = 0x04;
        /// The PF holds the buffer.
        pub const PFU: u32 = 0x08;
        /// The PF sent a message (clear on read).
        pub const PFSTS: u32 = 0x10;
        /// The PF acknowledged (clear on read).
        pub const PFACK: u32 = 0x20;
        /// Reset in progress.
        pub const RSTI: u32 = 0x40;
        /// Reset done (clear on read).
        pub const RSTD: u32 = 0x80;
    }

    /// The model: a register file plus per-VF V2PMAILBOX state.
    #[derive(Debug, Default)]
    pub struct MailboxModel {
        inner: Mutex<Inner>,
    }

    #[derive(Debug, Default)]
    struct Inner {
        regs: HashMap<usize, u32>,
        v2p: [u32; 8],
    }

    impl MailboxModel {
        /// An empty model.
        pub fn new() -> Self {
            Self::default()
        }

        fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
            let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut g)
        }

        /// A register's value (0 if never written).
        pub fn get(&self, off: usize) -> u32 {
            self.with(|i| i.regs.get(&off).copied().unwrap_or(0))
        }

        /// Sets a register directly (device-side events: VFLRE, ...).
        pub fn set(&self, off: usize, v: u32) {
            self.with(|i| {
                i.regs.insert(off, v);
            })
        }

        /// VF side: read V2PMAILBOX (PFSTS, PFACK, RSTD clear on read).
        pub fn vf_read_mailbox(&self, vf: usize) -> u32 {
            self.with(|i| {
                let v = i.v2p[vf & 7];
                i.v2p[vf & 7] &= !(v2p::PFSTS | v2p::PFACK | v2p::RSTD);
                v
            })
        }

        /// VF side: write V2PMAILBOX.
        pub fn vf_write_mailbox(&self, vf: usize, val: u32) {
            let vf = vf & 7;
            self.with(|i| {
                if val & v2p::REQ != 0 {
                    *i.regs.entry(regs::MBVFICR).or_default() |= regs::mbvficr_req(vf);
                }
                if val & v2p::ACK != 0 {
                    *i.regs.entry(regs::MBVFICR).or_default() |= regs::mbvficr_ack(vf);
                }
                let p2v = i.regs.entry(regs::p2vmailbox(vf)).or_default();
                if val & v2p::VFU != 0 {
                    if *p2v & regs::P2V_PFU == 0 {
                        i.v2p[vf] |= v2p::VFU;
                        *p2v |= regs::P2V_VFU;
                    }
                } else {
                    i.v2p[vf] &= !v2p::VFU;
                    *p2v &= !regs::P2V_VFU;
                }
            })
        }

        /// VF side: write a mailbox word.
        pub fn vf_write_mem(&self, vf: usize, i: usize, v: u32) {
            self.set(regs::vmbmem(vf & 7) + 4 * (i & 15), v)
        }

        /// VF side: read a mailbox word.
        pub fn vf_read_mem(&self, vf: usize, i: usize) -> u32 {
            self.get(regs::vmbmem(vf & 7) + 4 * (i & 15))
        }
    }

    impl PfRegs for std::sync::Arc<MailboxModel> {
        fn read(&self, off: usize) -> Result<u32, BarError> {
            Ok(self.get(off))
        }

        fn write(&self, off: usize, v: u32) -> Result<(), BarError> {
            self.with(|i| {
                if (regs::p2vmailbox(0)..=regs::p2vmailbox(7)).contains(&off) && off % 4 == 0 {
                    let vf = (off - regs::p2vmailbox(0)) / 4;
                    let cur = i.regs.get(&off).copied().unwrap_or(0);
                    if v & regs::P2V_STS != 0 {
                        i.v2p[vf] |= v2p::PFSTS;
                    }
                    if v & regs::P2V_ACK != 0 {
                        i.v2p[vf] |= v2p::PFACK;
                    }
                    let mut new = cur;
                    if v & regs::P2V_PFU != 0 {
                        if cur & regs::P2V_VFU == 0 {
                            new |= regs::P2V_PFU;
                            i.v2p[vf] |= v2p::PFU;
                        }
                    } else {
                        new &= !regs::P2V_PFU;
                        i.v2p[vf] &= !v2p::PFU;
                    }
                    if v & regs::P2V_RVFU != 0 {
                        i.v2p[vf] &= !v2p::VFU;
                        new &= !regs::P2V_VFU;
                    }
                    i.regs.insert(off, new);
                } else if off == regs::MBVFICR || off == regs::VFLRE {
                    *i.regs.entry(off).or_default() &= !v;
                } else {
                    i.regs.insert(off, v);
                }
            });
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::model::{MailboxModel, v2p};
    use super::*;
    use crate::sriov::mailbox::{self, MSG_ACK, MSG_CTS, MSG_NACK, VfRequest};
    use crate::sriov::policy::VfPolicy;

    const PF_MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0, 1, 0]);

    fn vmac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0x10, n])
    }

    fn host(n: usize) -> (Arc<MailboxModel>, PfHost<Arc<MailboxModel>>) {
        let m = Arc::new(MailboxModel::new());
        let policies = (0..n)
            .map(|i| VfPolicy {
                mac: Some(vmac(i as u8)),
                ..VfPolicy::default()
            })
            .collect();
        let t = VfTable::new(policies, PF_MAC, 0).unwrap();
        let mut h = PfHost::new(m.clone(), "test-pf", t).unwrap();
        h.setup_vmdq().unwrap();
        (m, h)
    }

    /// The VF's side: lock, write, request.
    fn vf_send(m: &MailboxModel, vf: usize, r: &[u32; MBX_WORDS]) {
        m.vf_write_mailbox(vf, v2p::VFU);
        assert!(m.vf_read_mailbox(vf) & v2p::VFU != 0);
        for (i, w) in r.iter().enumerate() {
            m.vf_write_mem(vf, i, *w);
        }
        m.vf_write_mailbox(vf, v2p::REQ);
    }

    /// The VF's side: wait for PFSTS, read, ack.
    fn vf_recv(m: &MailboxModel, vf: usize) -> [u32; 3] {
        let s = m.vf_read_mailbox(vf);
        assert!(s & v2p::PFSTS != 0, "no reply for VF {vf}: {s:#x}");
        let r = [m.vf_read_mem(vf, 0), m.vf_read_mem(vf, 1), m.vf_read_mem(vf, 2)];
        m.vf_write_mailbox(vf, v2p::ACK);
        r
    }

    #[test]
    fn vmdq_setup_registers() {
        let (m, h) = host(2);
        assert_eq!(h.pf_pool(), 2);
        assert_eq!(m.get(regs::MRQC), regs::MRQC_VMDQ);
        assert_eq!(m.get(regs::VT_CTL), 2 << 7);
        assert_eq!(m.get(regs::VFRE), 1 << 2);
        assert_eq!(m.get(regs::VFTE), 1 << 2);
        assert_eq!(m.get(regs::rah(0)) & regs::rah_pool(2), regs::rah_pool(2));
        assert_eq!(m.get(regs::rah(0)) & filter::RAH_AV, filter::RAH_AV);
        assert_eq!(m.get(regs::rah(1)), 0, "VF 0 has no filter before its reset");
        assert_eq!(
            m.get(regs::DTXSWC),
            regs::DTXSWC_LOOPBACK | regs::dtxswc_mac_spoof(0) | regs::dtxswc_mac_spoof(1)
        );
        assert_ne!(m.get(general::CTRL_EXT.off()) & general::CTRL_EXT_PFRSTD, 0);
        assert_ne!(m.get(rx::RCTL.off()) & rx::RCTL_EN, 0);
    }

    #[test]
    fn reset_handshake_through_the_mailbox() {
        let (m, mut h) = host(2);
        vf_send(&m, 1, &VfRequest::Reset.encode());
        let ev = h.poll(0).unwrap();
        assert_eq!(ev, vec![VfEvent::Ready { vf: 1, mac: vmac(1) }]);
        let r = vf_recv(&m, 1);
        assert_eq!(r[0], MSG_ACK | 1);
        assert_eq!(mailbox::mac_from_words(r[1], r[2]), vmac(1));
        assert_eq!(m.get(regs::VFRE), (1 << 2) | (1 << 1));
        assert_eq!(m.get(regs::VFTE), (1 << 2) | (1 << 1));
        let rah = m.get(regs::rah(2));
        assert_eq!(rah & regs::rah_pool(1), regs::rah_pool(1));
        assert_eq!(rah & (regs::rah_pool(0) | regs::rah_pool(2)), 0);
        assert_ne!(m.get(regs::vmolr(1)) & regs::VMOLR_BAM, 0);
        assert_eq!(m.get(regs::vmolr(0)), 0, "VF 0 untouched");
        // The VF's ACK is cleared by the next poll.
        assert_ne!(m.get(regs::MBVFICR) & regs::mbvficr_ack(1), 0);
        assert!(h.poll(1).unwrap().is_empty());
        assert_eq!(m.get(regs::MBVFICR), 0);
        // A later request gets CTS.
        vf_send(&m, 1, &VfRequest::SetLpe { max_frame: 1522 }.encode());
        h.poll(2).unwrap();
        assert_eq!(vf_recv(&m, 1)[0], MSG_ACK | MSG_CTS | 5);
        assert_eq!(m.get(regs::vmolr(1)) & regs::VMOLR_RLPML_MASK, 1522);
    }

    #[test]
    fn refusals_are_nacked_and_a_locked_mailbox_is_retried() {
        let (m, mut h) = host(2);
        // Before the reset: NACK without CTS.
        vf_send(&m, 0, &VfRequest::SetMac(vmac(9)).encode());
        let ev = h.poll(0).unwrap();
        assert!(matches!(
            ev[0],
            VfEvent::Refused {
                vf: 0,
                reason: Refusal::NotReady { .. },
                ..
            }
        ));
        assert_eq!(vf_recv(&m, 0)[0], MSG_NACK | 2);
        // A VF that keeps its lock is skipped, not waited for.
        m.vf_write_mailbox(0, v2p::VFU);
        m.vf_write_mem(0, 0, 1);
        m.set(regs::MBVFICR, regs::mbvficr_req(0));
        // Keep VFU: the model refuses the PF's lock.
        let mut p2v = m.get(regs::p2vmailbox(0));
        p2v |= regs::P2V_VFU;
        m.set(regs::p2vmailbox(0), p2v);
        assert!(h.poll(1).unwrap().is_empty());
        assert_ne!(m.get(regs::MBVFICR) & regs::mbvficr_req(0), 0, "still pending");
        m.vf_write_mailbox(0, 0);
        let ev = h.poll(2).unwrap();
        assert_eq!(ev, vec![VfEvent::Ready { vf: 0, mac: vmac(0) }]);
    }

    #[test]
    fn flr_disables_the_pool_and_requests_from_absent_vfs_are_dropped() {
        let (m, mut h) = host(2);
        vf_send(&m, 0, &VfRequest::Reset.encode());
        h.poll(0).unwrap();
        vf_recv(&m, 0);
        assert_ne!(m.get(regs::VFRE) & 1, 0);
        m.set(regs::VFLRE, 1 | (1 << 6));
        let ev = h.poll(1).unwrap();
        assert_eq!(ev, vec![VfEvent::Flr { vf: 0 }]);
        assert_eq!(m.get(regs::VFRE) & 1, 0);
        assert_eq!(m.get(regs::VFLRE), 0);
        // VF 5 does not exist: its request bit is cleared, nothing else.
        m.set(regs::MBVFICR, regs::mbvficr_req(5) | (1 << 10));
        assert!(h.poll(2).unwrap().is_empty());
        assert_eq!(m.get(regs::MBVFICR), 0);
    }

    #[test]
    fn multicast_table_is_the_union_and_a_flood_is_contained() {
        let (m, mut h) = host(2);
        for vf in 0..2 {
            vf_send(&m, vf, &VfRequest::Reset.encode());
            h.poll(0).unwrap();
            vf_recv(&m, vf);
        }
        let mut hashes = [0u16; 30];
        hashes[0] = 0x0fb0;
        vf_send(&m, 0, &VfRequest::SetMulticast { count: 1, hashes }.encode());
        h.poll(1).unwrap();
        vf_recv(&m, 0);
        assert_eq!(m.get(filter::MTA.off() + 4 * (0xfb0 >> 5)), 1 << (0xfb0 & 31));
        assert_ne!(m.get(regs::vmolr(0)) & regs::VMOLR_ROMPE, 0);
        assert_eq!(m.get(regs::vmolr(1)) & regs::VMOLR_ROMPE, 0);
        let vmolr1 = m.get(regs::vmolr(1));
        // VF 0 floods VLAN adds and garbage.
        for i in 0..500u32 {
            let w = if i % 2 == 0 {
                VfRequest::SetVlan {
                    vid: (i % 4000) as u16 + 1,
                    add: true,
                }
                .encode()
            } else {
                let mut w = [0xdead_beefu32; MBX_WORDS];
                w[0] = 0x77;
                w
            };
            vf_send(&m, 0, &w);
            h.poll(2).unwrap();
            vf_recv(&m, 0);
        }
        let c = h.counters();
        assert_eq!(c[0].messages, 502);
        assert!(c[0].nacked >= 250);
        assert_eq!(c[1].messages, 1);
        assert_eq!(m.get(regs::vmolr(1)), vmolr1, "VF 1's pool untouched");
        assert!(h.table().vf(0).unwrap().vlans.len() <= 8);
    }
}
