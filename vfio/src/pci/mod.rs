//! PCI devices through sysfs: listing, IOMMU groups, driver binding, SR-IOV.
//!
//! Every path is taken relative to a configurable root (`/sys` by default), so tests run against a
//! fake tree in a temporary directory.
#![forbid(unsafe_code)]

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Op, Result, errno_error};

mod address;

pub use address::PciAddress;

/// The driver VFIO devices are bound to.
pub const VFIO_PCI_DRIVER: &str = "vfio-pci";

/// What sysfs says about one PCI function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    /// Its address.
    pub address: PciAddress,
    /// Vendor id (`vendor`).
    pub vendor: u16,
    /// Device id (`device`).
    pub device: u16,
    /// Class code, 24 bits (`class`).
    pub class: u32,
    /// The driver bound now, if any.
    pub driver: Option<String>,
    /// The `driver_override`, if set.
    pub driver_override: Option<String>,
    /// The IOMMU group number, if the device has one (none when the IOMMU is off).
    pub iommu_group: Option<u32>,
    /// NUMA node, if the platform reports one.
    pub numa_node: Option<u32>,
    /// SR-IOV: how many VFs the PF supports (`sriov_totalvfs`); `None` on a non-PF.
    pub sriov_total_vfs: Option<u16>,
    /// SR-IOV: how many VFs are enabled now (`sriov_numvfs`).
    pub sriov_num_vfs: Option<u16>,
    /// The PF of this VF (`physfn`).
    pub physfn: Option<PciAddress>,
    /// The VFs of this PF, by VF index (`virtfnN`).
    pub virtfns: Vec<PciAddress>,
}

impl PciDevice {
    /// True for an SR-IOV physical function.
    pub fn is_sriov_pf(&self) -> bool {
        self.sriov_total_vfs.is_some_and(|n| n > 0)
    }
    /// True for an SR-IOV virtual function.
    pub fn is_vf(&self) -> bool {
        self.physfn.is_some()
    }
}

/// A member of an IOMMU group and its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The device's address (as sysfs names it).
    pub address: String,
    /// Its driver now, if any.
    pub driver: Option<String>,
}

impl fmt::Display for GroupMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.driver {
            Some(d) => write!(f, "{} (driver {d})", self.address),
            None => write!(f, "{} (no driver)", self.address),
        }
    }
}

/// What `Sysfs::bind_vfio_pci` changed, so that `Sysfs::restore` can undo it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousBinding {
    /// The device.
    pub address: PciAddress,
    /// The driver it was bound to before, if any.
    pub driver: Option<String>,
    /// Its `driver_override` before, if any.
    pub driver_override: Option<String>,
}

/// The sysfs tree (`/sys` or a test root).
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Sysfs {
    /// The real `/sys`.
    pub fn new() -> Self {
        Self {
            root: PathBuf::from("/sys"),
        }
    }

    /// A tree rooted elsewhere (tests).
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn devices_dir(&self) -> PathBuf {
        self.root.join("bus/pci/devices")
    }

    /// The sysfs directory of a device.
    pub fn device_dir(&self, addr: PciAddress) -> PathBuf {
        self.devices_dir().join(addr.to_string())
    }

    fn existing_device_dir(&self, addr: PciAddress) -> Result<PathBuf> {
        let dir = self.device_dir(addr);
        if dir.exists() {
            Ok(dir)
        } else {
            Err(Error::NoSuchDevice {
                address: addr.to_string(),
                path: dir,
            })
        }
    }

    /// Every PCI function, sorted by address.
    pub fn devices(&self) -> Result<Vec<PciDevice>> {
        let dir = self.devices_dir();
        let rd = fs::read_dir(&dir).map_err(|e| sysfs_err(Op::ListPciDevices, "the PCI bus", &dir, e))?;
        let mut addrs = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| sysfs_err(Op::ListPciDevices, "the PCI bus", &dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                // Entries that are not addresses are skipped, not fatal.
                if let Ok(a) = PciAddress::parse(name) {
                    addrs.push(a);
                }
            }
        }
        addrs.sort();
        addrs.into_iter().map(|a| self.device(a)).collect()
    }

    /// What sysfs says about one device.
    pub fn device(&self, addr: PciAddress) -> Result<PciDevice> {
        let dir = self.existing_device_dir(addr)?;
        let subject = addr.to_string();
        let vendor = read_hex(&dir.join("vendor"), &subject)? as u16;
        let device = read_hex(&dir.join("device"), &subject)? as u16;
        let class = read_hex(&dir.join("class"), &subject)? as u32;
        let numa_node = read_opt(&dir.join("numa_node"), &subject)?
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|n| u32::try_from(n).ok());
        let sriov_total_vfs = read_opt(&dir.join("sriov_totalvfs"), &subject)?.and_then(|s| s.parse().ok());
        let sriov_num_vfs = read_opt(&dir.join("sriov_numvfs"), &subject)?.and_then(|s| s.parse().ok());
        let physfn = link_name(&dir.join("physfn")).and_then(|n| PciAddress::parse(&n).ok());
        let mut virtfns: Vec<(u32, PciAddress)> = Vec::new();
        if let Ok(rd) = fs::read_dir(&dir) {
            for entry in rd.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let Some(idx) = name.strip_prefix("virtfn").and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                if let Some(a) = link_name(&entry.path()).and_then(|n| PciAddress::parse(&n).ok()) {
                    virtfns.push((idx, a));
                }
            }
        }
        virtfns.sort();
        Ok(PciDevice {
            address: addr,
            vendor,
            device,
            class,
            driver: self.driver(addr)?,
            driver_override: self.driver_override(addr)?,
            iommu_group: self.iommu_group(addr)?,
            numa_node,
            sriov_total_vfs,
            sriov_num_vfs,
            physfn,
            virtfns: virtfns.into_iter().map(|(_, a)| a).collect(),
        })
    }

    /// The driver bound to the device now.
    pub fn driver(&self, addr: PciAddress) -> Result<Option<String>> {
        let dir = self.existing_device_dir(addr)?;
        Ok(link_name(&dir.join("driver")))
    }

    /// The device's `driver_override`, `None` when unset.
    pub fn driver_override(&self, addr: PciAddress) -> Result<Option<String>> {
        let dir = self.existing_device_dir(addr)?;
        Ok(read_opt(&dir.join("driver_override"), &addr.to_string())?
            .filter(|s| !s.is_empty() && s != "(null)"))
    }

    /// The IOMMU group number (`iommu_group` link), `None` when the device has none.
    pub fn iommu_group(&self, addr: PciAddress) -> Result<Option<u32>> {
        let dir = self.existing_device_dir(addr)?;
        Ok(link_name(&dir.join("iommu_group")).and_then(|n| n.parse().ok()))
    }

    /// The members of IOMMU group `group` and their drivers.
    pub fn group_members(&self, group: u32) -> Result<Vec<GroupMember>> {
        let dir = self.root.join(format!("kernel/iommu_groups/{group}/devices"));
        let subject = format!("IOMMU group {group}");
        let rd = fs::read_dir(&dir).map_err(|e| sysfs_err(Op::ListGroupMembers, &subject, &dir, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| sysfs_err(Op::ListGroupMembers, &subject, &dir, e))?;
            let address = entry.file_name().to_string_lossy().into_owned();
            let driver = link_name(&entry.path().join("driver"));
            out.push(GroupMember { address, driver });
        }
        out.sort_by(|a, b| a.address.cmp(&b.address));
        Ok(out)
    }

    /// The PF of a VF.
    pub fn physfn(&self, vf: PciAddress) -> Result<Option<PciAddress>> {
        let dir = self.existing_device_dir(vf)?;
        Ok(link_name(&dir.join("physfn")).and_then(|n| PciAddress::parse(&n).ok()))
    }

    fn write_attr(&self, op: Op, addr: PciAddress, path: &Path, value: &str) -> Result<()> {
        fs::write(path, value).map_err(|e| errno_error(op, addr.to_string(), e, Some(path), None))
    }

    /// Unbinds the device from its driver (nothing to do when it has none).
    pub fn unbind(&self, addr: PciAddress) -> Result<()> {
        let dir = self.existing_device_dir(addr)?;
        if self.driver(addr)?.is_some() {
            self.write_attr(Op::Unbind, addr, &dir.join("driver/unbind"), &addr.to_string())?;
        }
        Ok(())
    }

    /// Sets `driver_override` (`None` clears it).
    pub fn set_driver_override(&self, addr: PciAddress, driver: Option<&str>) -> Result<()> {
        let dir = self.existing_device_dir(addr)?;
        self.write_attr(
            Op::DriverOverride,
            addr,
            &dir.join("driver_override"),
            driver.unwrap_or("\n"),
        )
    }

    /// Binds the device to `driver` through `driver_override` and `drivers_probe`, unbinding it from
    /// its current driver first; checks that the kernel did bind it.
    pub fn bind_to(&self, addr: PciAddress, driver: &str) -> Result<()> {
        if self.driver(addr)?.as_deref() == Some(driver) {
            return self.set_driver_override(addr, Some(driver));
        }
        self.set_driver_override(addr, Some(driver))?;
        self.unbind(addr)?;
        self.probe(addr)?;
        let now = self.driver(addr)?;
        if now.as_deref() != Some(driver) {
            let vfs = self.device(addr).ok().and_then(|d| d.sriov_num_vfs).unwrap_or(0);
            let (cause, fix) = if vfs > 0 && driver == VFIO_PCI_DRIVER {
                (
                    format!("vfio-pci refuses a PF with SR-IOV enabled ({vfs} VFs)"),
                    "write 0 to sriov_numvfs (Sysfs::set_num_vfs(pf, 0)), bind, then enable the VFs"
                        .to_owned(),
                )
            } else {
                (
                    "the driver is not loaded, or its probe failed (vfio-pci fails with -22 when the IOMMU is off)"
                        .to_owned(),
                    format!("`modprobe {driver}`, boot with intel_iommu=on / amd_iommu=on for vfio-pci, check `dmesg`"),
                )
            };
            return Err(Error::BindFailed {
                address: addr.to_string(),
                driver: driver.to_owned(),
                now,
                cause,
                fix,
            });
        }
        Ok(())
    }

    fn probe(&self, addr: PciAddress) -> Result<()> {
        let path = self.root.join("bus/pci/drivers_probe");
        self.write_attr(Op::DriversProbe, addr, &path, &addr.to_string())
    }

    /// Binds the device to vfio-pci; returns what was there before, for [`Sysfs::restore`].
    pub fn bind_vfio_pci(&self, addr: PciAddress) -> Result<PreviousBinding> {
        let previous = PreviousBinding {
            address: addr,
            driver: self.driver(addr)?,
            driver_override: self.driver_override(addr)?,
        };
        self.bind_to(addr, VFIO_PCI_DRIVER)?;
        if previous.driver.as_deref() != Some(VFIO_PCI_DRIVER) {
            log::info!(
                "{addr}: bound to vfio-pci (was {})",
                previous.driver.as_deref().unwrap_or("unbound")
            );
        }
        Ok(previous)
    }

    /// Restores the driver (and `driver_override`) a device had before [`Sysfs::bind_vfio_pci`].
    pub fn restore(&self, previous: &PreviousBinding) -> Result<()> {
        let addr = previous.address;
        match &previous.driver {
            Some(d) => self.bind_to(addr, d)?,
            None => self.unbind(addr)?,
        }
        self.set_driver_override(addr, previous.driver_override.as_deref())
    }

    /// Sets the number of VFs of a PF, following the kernel's rules: a non-zero count goes back to 0
    /// before it changes. With the PF on vfio-pci, removing VFs waits until every VF held open through
    /// VFIO is closed (the kernel asks their users to release them): close them first.
    pub fn set_num_vfs(&self, pf: PciAddress, count: u16) -> Result<()> {
        let dir = self.existing_device_dir(pf)?;
        let subject = pf.to_string();
        let path = dir.join("sriov_numvfs");
        let current: u16 = read_opt(&path, &subject)?
            .ok_or_else(|| Error::NotSriovPf {
                address: subject.clone(),
            })?
            .parse()
            .map_err(|_| Error::NotSriovPf {
                address: subject.clone(),
            })?;
        if let Some(total) =
            read_opt(&dir.join("sriov_totalvfs"), &subject)?.and_then(|s| s.parse::<u16>().ok())
            && count > total
        {
            return Err(Error::TooManyVfs {
                address: subject,
                requested: count,
                total,
            });
        }
        for n in num_vfs_writes(current, count) {
            fs::write(&path, n.to_string()).map_err(|e| {
                let ctx = format!("writing {n} while {current} VFs were enabled");
                errno_error(Op::SetNumVfs, subject.clone(), e, Some(&path), Some(ctx))
            })?;
        }
        Ok(())
    }

    /// Keeps a VF on a kernel driver (e.g. `igbvf`) although its PF belongs to vfio-pci: rewrites the
    /// VF's `driver_override` (vfio-pci set it when it captured the VF), binds it, and logs that.
    pub fn keep_vf_on_kernel_driver(&self, vf: PciAddress, driver: &str) -> Result<()> {
        let pf = self.physfn(vf)?.ok_or_else(|| Error::NotVf {
            address: vf.to_string(),
        })?;
        let old_override = self.driver_override(vf)?;
        let pf_driver = self.driver(pf)?;
        self.bind_to(vf, driver)?;
        log::warn!(
            "VF {vf} of PF {pf} (PF driver {}): driver_override rewritten from {} to {driver} and the VF bound to \
             {driver}; it is no longer isolated from the host kernel",
            pf_driver.as_deref().unwrap_or("none"),
            old_override.as_deref().unwrap_or("unset"),
        );
        Ok(())
    }
}

/// The values to write to `sriov_numvfs`, in order, to go from `current` to `target` VFs.
pub fn num_vfs_writes(current: u16, target: u16) -> Vec<u16> {
    match (current, target) {
        (c, t) if c == t => vec![],
        (0, t) => vec![t],
        (_, 0) => vec![0],
        (_, t) => vec![0, t],
    }
}

fn sysfs_err(op: Op, subject: &str, path: &Path, e: io::Error) -> Error {
    errno_error(op, subject.to_owned(), e, Some(path), None)
}

/// Reads a sysfs attribute, trimmed; `None` when it does not exist.
fn read_opt(path: &Path, subject: &str) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(sysfs_err(Op::ReadSysfs, subject, path, e)),
    }
}

fn read_hex(path: &Path, subject: &str) -> Result<u64> {
    let s = fs::read_to_string(path).map_err(|e| sysfs_err(Op::ReadSysfs, subject, path, e))?;
    let t = s.trim();
    let digits = t.strip_prefix("0x").unwrap_or(t);
    u64::from_str_radix(digits, 16).map_err(|_| Error::BadSysfsValue {
        path: path.to_owned(),
        value: t.to_owned(),
    })
}

/// The file name a symlink points to (`driver` -> `.../drivers/igb` gives `igb`).
fn link_name(path: &Path) -> Option<String> {
    let target = fs::read_link(path).ok()?;
    target.file_name().map(|n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::os::unix::fs::symlink;

    #[test]
    fn num_vfs_goes_through_zero() {
        assert_eq!(num_vfs_writes(0, 2), vec![2]);
        assert_eq!(num_vfs_writes(2, 2), Vec::<u16>::new());
        assert_eq!(num_vfs_writes(2, 4), vec![0, 4]);
        assert_eq!(num_vfs_writes(4, 0), vec![0]);
        assert_eq!(num_vfs_writes(0, 0), Vec::<u16>::new());
    }

    /// A fake sysfs: PF 0000:00:02.0 (igb, group 3) with VFs 12.0 and 12.2 (groups 7, 8),
    /// and a group 9 shared by 1f.0 (lpc_ich) and 1f.3 (no driver).
    pub(crate) fn fake_sysfs() -> TempDir {
        let t = TempDir::new("sysfs");
        let r = t.path();
        let mk = |rel: &str| fs::create_dir_all(r.join(rel)).unwrap();
        let put = |rel: &str, v: &str| fs::write(r.join(rel), v).unwrap();
        for d in ["igb", "vfio-pci", "lpc_ich", "igbvf"] {
            mk(&format!("bus/pci/drivers/{d}"));
            put(&format!("bus/pci/drivers/{d}/unbind"), "");
        }
        put("bus/pci/drivers_probe", "");
        let dev = |addr: &str, vendor: &str, device: &str, class: &str, group: u32, driver: Option<&str>| {
            let d = format!("devices/pci0000:00/{addr}");
            mk(&d);
            put(&format!("{d}/vendor"), vendor);
            put(&format!("{d}/device"), device);
            put(&format!("{d}/class"), class);
            put(&format!("{d}/numa_node"), "-1\n");
            put(&format!("{d}/driver_override"), "(null)\n");
            mk(&format!("kernel/iommu_groups/{group}/devices"));
            symlink(
                r.join(&d),
                r.join(format!("kernel/iommu_groups/{group}/devices/{addr}")),
            )
            .unwrap();
            symlink(
                format!("../../../kernel/iommu_groups/{group}"),
                r.join(format!("{d}/iommu_group")),
            )
            .unwrap();
            if let Some(drv) = driver {
                symlink(
                    format!("../../../bus/pci/drivers/{drv}"),
                    r.join(format!("{d}/driver")),
                )
                .unwrap();
            }
            mk("bus/pci/devices");
            symlink(format!("../../../{d}"), r.join(format!("bus/pci/devices/{addr}"))).unwrap();
        };
        dev(
            "0000:00:02.0",
            "0x8086\n",
            "0x10c9\n",
            "0x020000\n",
            3,
            Some("igb"),
        );
        dev(
            "0000:00:12.0",
            "0x8086\n",
            "0x10ca\n",
            "0x020000\n",
            7,
            Some("vfio-pci"),
        );
        dev("0000:00:12.2", "0x8086\n", "0x10ca\n", "0x020000\n", 8, None);
        dev(
            "0000:00:1f.0",
            "0x8086\n",
            "0x2918\n",
            "0x060100\n",
            9,
            Some("lpc_ich"),
        );
        dev("0000:00:1f.3", "0x8086\n", "0x2930\n", "0x0c0500\n", 9, None);
        put("devices/pci0000:00/0000:00:02.0/sriov_totalvfs", "8\n");
        put("devices/pci0000:00/0000:00:02.0/sriov_numvfs", "2\n");
        put("devices/pci0000:00/0000:00:02.0/numa_node", "0\n");
        put("devices/pci0000:00/0000:00:12.0/driver_override", "vfio-pci\n");
        symlink(
            "../0000:00:12.0",
            r.join("devices/pci0000:00/0000:00:02.0/virtfn0"),
        )
        .unwrap();
        symlink(
            "../0000:00:12.2",
            r.join("devices/pci0000:00/0000:00:02.0/virtfn1"),
        )
        .unwrap();
        symlink(
            "../0000:00:02.0",
            r.join("devices/pci0000:00/0000:00:12.0/physfn"),
        )
        .unwrap();
        symlink(
            "../0000:00:02.0",
            r.join("devices/pci0000:00/0000:00:12.2/physfn"),
        )
        .unwrap();
        fs::write(r.join("bus/pci/devices/not-a-device"), "").unwrap();
        t
    }

    fn a(s: &str) -> PciAddress {
        PciAddress::parse(s).unwrap()
    }

    #[test]
    fn lists_a_fake_sysfs_tree() {
        let t = fake_sysfs();
        let sys = Sysfs::with_root(t.path());
        let devs = sys.devices().unwrap();
        let names: Vec<String> = devs.iter().map(|d| d.address.to_string()).collect();
        assert_eq!(
            names,
            [
                "0000:00:02.0",
                "0000:00:12.0",
                "0000:00:12.2",
                "0000:00:1f.0",
                "0000:00:1f.3"
            ]
        );
        let pf = &devs[0];
        assert_eq!((pf.vendor, pf.device, pf.class), (0x8086, 0x10c9, 0x020000));
        assert_eq!(pf.driver.as_deref(), Some("igb"));
        assert_eq!(pf.driver_override, None);
        assert_eq!(pf.iommu_group, Some(3));
        assert_eq!(pf.numa_node, Some(0));
        assert_eq!((pf.sriov_total_vfs, pf.sriov_num_vfs), (Some(8), Some(2)));
        assert!(pf.is_sriov_pf() && !pf.is_vf());
        assert_eq!(pf.virtfns, vec![a("0000:00:12.0"), a("0000:00:12.2")]);
        let vf = &devs[1];
        assert_eq!(vf.physfn, Some(a("0000:00:02.0")));
        assert_eq!(vf.driver_override.as_deref(), Some("vfio-pci"));
        assert_eq!(vf.numa_node, None);
        assert!(vf.is_vf() && !vf.is_sriov_pf());
        assert_eq!(devs[2].driver, None);
        let members = sys.group_members(9).unwrap();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].to_string(), "0000:00:1f.0 (driver lpc_ich)");
        assert_eq!(members[1].to_string(), "0000:00:1f.3 (no driver)");
    }

    #[test]
    fn missing_device_names_the_fix() {
        let t = fake_sysfs();
        let sys = Sysfs::with_root(t.path());
        let msg = sys.device(a("0000:00:03.0")).unwrap_err().to_string();
        assert!(
            msg.contains("0000:00:03.0") && msg.contains("ls /sys/bus/pci/devices"),
            "{msg}"
        );
    }

    #[test]
    fn bind_writes_override_unbind_and_probe_and_checks_the_result() {
        let t = fake_sysfs();
        let r = t.path();
        let sys = Sysfs::with_root(r);
        // The fake kernel never rebinds: the result check must catch that.
        let err = sys.bind_vfio_pci(a("0000:00:02.0")).unwrap_err().to_string();
        assert!(err.contains("0000:00:02.0") && err.contains("vfio-pci"), "{err}");
        // The fake PF has 2 VFs enabled: that is the cause named.
        assert!(
            err.contains("SR-IOV enabled (2 VFs)") && err.contains("sriov_numvfs"),
            "{err}"
        );
        let read = |p: &str| fs::read_to_string(r.join(p)).unwrap();
        assert_eq!(
            read("devices/pci0000:00/0000:00:02.0/driver_override"),
            "vfio-pci"
        );
        assert_eq!(read("bus/pci/drivers/igb/unbind"), "0000:00:02.0");
        assert_eq!(read("bus/pci/drivers_probe"), "0000:00:02.0");
    }

    #[test]
    fn bind_to_the_current_driver_only_sets_the_override() {
        let t = fake_sysfs();
        let sys = Sysfs::with_root(t.path());
        let prev = sys.bind_vfio_pci(a("0000:00:12.0")).unwrap();
        assert_eq!(prev.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(
            fs::read_to_string(t.path().join("bus/pci/drivers_probe")).unwrap(),
            ""
        );
    }

    #[test]
    fn set_num_vfs_checks_total_and_pf() {
        let t = fake_sysfs();
        let sys = Sysfs::with_root(t.path());
        let e = sys.set_num_vfs(a("0000:00:02.0"), 9).unwrap_err().to_string();
        assert!(e.contains("8"), "{e}");
        sys.set_num_vfs(a("0000:00:02.0"), 4).unwrap();
        let path = t.path().join("devices/pci0000:00/0000:00:02.0/sriov_numvfs");
        assert_eq!(fs::read_to_string(path).unwrap(), "4");
        let e = sys.set_num_vfs(a("0000:00:1f.0"), 1).unwrap_err().to_string();
        assert!(e.contains("not an SR-IOV PF"), "{e}");
    }

    #[test]
    fn keep_vf_on_kernel_driver_refuses_a_non_vf() {
        let t = fake_sysfs();
        let sys = Sysfs::with_root(t.path());
        let e = sys
            .keep_vf_on_kernel_driver(a("0000:00:02.0"), "igbvf")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an SR-IOV VF"), "{e}");
        // On a VF it writes the override, unbinds from vfio-pci and probes.
        let e = sys
            .keep_vf_on_kernel_driver(a("0000:00:12.0"), "igbvf")
            .unwrap_err();
        assert!(matches!(e, Error::BindFailed { .. }));
        let m = e.to_string();
        assert!(m.contains("not loaded") && m.contains("`modprobe igbvf`"), "{m}");
        let r = t.path();
        assert_eq!(
            fs::read_to_string(r.join("devices/pci0000:00/0000:00:12.0/driver_override")).unwrap(),
            "igbvf"
        );
        assert_eq!(
            fs::read_to_string(r.join("bus/pci/drivers/vfio-pci/unbind")).unwrap(),
            "0000:00:12.0"
        );
    }
}
