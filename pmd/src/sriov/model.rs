//! An in-memory model of the PF's mailbox registers with QEMU's semantics (lock bits, request /
//! ack causes, write-1-to-clear), for tests of the service loop and of a VF driver's side.
//! Built for this crate's tests and, with the `test-support` feature, for other crates' tests;
//! it is not part of the public API otherwise.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Mutex;

use oxpmd_vfio::BarError;

use super::host::PfRegs;
use super::mailbox::v2p;
use super::regs;

/// The model: a register file plus per-VF V2PMAILBOX state.
#[derive(Debug, Default)]
pub struct MailboxModel {
    inner: Mutex<Inner>,
    hooks: Mutex<ReadHooks>,
}

/// Device-side events that happen right after the PF read a register: how a test puts a VF's
/// action between two reads of one service pass.
#[derive(Default)]
struct ReadHooks(Vec<ReadHook>);

struct ReadHook {
    /// The registers whose reads count.
    offs: Vec<usize>,
    /// Reads still to pass before it runs (it runs after the read that brings this to 0).
    reads_left: usize,
    run: Box<dyn FnOnce(&MailboxModel) + Send>,
}

impl std::fmt::Debug for ReadHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} read hook(s)", self.0.len())
    }
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

    /// Runs `f` once, right after the `n`-th (1-based) PF read of any register in `offs` from
    /// now on: a VF that acts between two reads of the service loop.
    pub fn after_reads(&self, offs: &[usize], n: usize, f: impl FnOnce(&MailboxModel) + Send + 'static) {
        let mut h = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
        h.0.push(ReadHook {
            offs: offs.to_vec(),
            reads_left: n.max(1),
            run: Box::new(f),
        });
    }

    /// A PF read of `off`: the value, then any hook it triggers (outside the register lock, so
    /// the hook can act as the VF).
    fn pf_read(&self, off: usize) -> u32 {
        let v = self.get(off);
        let due: Vec<ReadHook> = {
            let mut h = self.hooks.lock().unwrap_or_else(|p| p.into_inner());
            let mut due = Vec::new();
            let mut i = 0;
            while i < h.0.len() {
                if h.0[i].offs.contains(&off) {
                    h.0[i].reads_left -= 1;
                    if h.0[i].reads_left == 0 {
                        due.push(h.0.remove(i));
                        continue;
                    }
                }
                i += 1;
            }
            due
        };
        for hook in due {
            (hook.run)(self);
        }
        v
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

    /// Device side, as QEMU's igb shows a PF reset to VF `vf`: while the PF is in reset RSTI is
    /// set (`released` false); the PF driver's CTRL_EXT.PFRSTD clears it and sets RSTD
    /// (`released` true).
    pub fn vf_pf_reset(&self, vf: usize, released: bool) {
        self.with(|i| {
            let v = &mut i.v2p[vf & 7];
            if released {
                *v = (*v & !v2p::RSTI) | v2p::RSTD;
            } else {
                *v |= v2p::RSTI;
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
        Ok(self.pf_read(off))
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
