//! The 82576 PF opened through VFIO for SR-IOV: bind, open, reset, VF token, link, MSI-X for
//! the VFs' interrupts, VF enable through sysfs, the saved state's identity check.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use oxpmd_vfio::{Bar, BarError, Container, Device, Interrupts, IrqKind, PciAddress, Sysfs, VfToken};

use super::error::PfHostError;
use super::regs;
use super::state::{PfIdentity, SavedState};
use crate::drivers::igb::regs::{filter, general, interrupt, mdic, rx, tx};
use crate::mac::MacAddr;

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
