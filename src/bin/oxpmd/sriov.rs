//! `oxpmd sriov`: the VF count of a PF, with chosen VFs kept on their kernel driver.

use oxpmd::vfio::PciAddress;
use oxpmd::vfio::pci::VFIO_PCI_DRIVER;

use crate::error::CliError;
use crate::host::{Host, is_safe_name};
use crate::names;

/// Parses a VF index list: `1`, `0,2`, `1-3`, `0,2-3`.
pub fn parse_vf_list(s: &str) -> Result<Vec<u16>, String> {
    let mut out = Vec::new();
    for part in s.split(',') {
        let num = |t: &str| {
            t.trim()
                .parse::<u16>()
                .map_err(|_| format!("{t:?} is not a VF index (expected e.g. 1 or 0,2-3)"))
        };
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi) = (num(lo)?, num(hi)?);
                if lo > hi {
                    return Err(format!("range {part:?} goes backwards"));
                }
                out.extend(lo..=hi);
            }
            None => out.push(num(part)?),
        }
        if out.len() > 4096 {
            return Err("too many VF indices".to_owned());
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Options of `sriov`.
#[derive(Debug, Default)]
pub struct SriovOptions {
    /// VF count wanted.
    pub vfs: u16,
    /// VF indices to keep on their kernel driver.
    pub kernel_vfs: Vec<u16>,
    /// The kernel VF driver, when the VF id is not a known one.
    pub vf_driver: Option<String>,
}

/// Sets the VF count of `pf` and keeps the chosen VFs on their kernel driver.
pub fn sriov(host: &Host, pf: PciAddress, opts: &SriovOptions) -> Result<(), CliError> {
    let sys = host.sysfs();
    let dev = sys.device(pf)?;
    let total = match dev.sriov_total_vfs {
        Some(t) if t > 0 => t,
        _ => {
            return Err(oxpmd::vfio::Error::NotSriovPf {
                address: pf.to_string(),
            }
            .into());
        }
    };
    if opts.vfs > total {
        return Err(CliError::Usage(format!(
            "--vfs {}: {pf} supports at most {total} VFs (sriov_totalvfs)",
            opts.vfs
        )));
    }
    if let Some(&bad) = opts.kernel_vfs.iter().find(|&&i| i >= opts.vfs) {
        return Err(CliError::Usage(format!(
            "--kernel-vfs: VF index {bad} does not exist with --vfs {} (indices 0..{})",
            opts.vfs, opts.vfs
        )));
    }
    let current = dev.sriov_num_vfs.unwrap_or(0);
    if opts.vfs > 0 && current != opts.vfs {
        match dev.driver.as_deref() {
            None => {
                return Err(CliError::PfUnbound {
                    address: pf.to_string(),
                });
            }
            Some(VFIO_PCI_DRIVER)
                if host
                    .module_param("vfio_pci", "enable_sriov")
                    .is_some_and(|v| v == "N" || v == "0") =>
            {
                return Err(CliError::SriovDisabled {
                    address: pf.to_string(),
                });
            }
            _ => {}
        }
    }
    // The kernel driver of the VFs, checked before anything changes.
    let vf_driver = if opts.kernel_vfs.is_empty() {
        None
    } else {
        let vf_id = host
            .read_sys(&format!("bus/pci/devices/{pf}/sriov_vf_device"))
            .and_then(|s| u16::from_str_radix(s.trim_start_matches("0x"), 16).ok());
        let known = vf_id.and_then(|id| names::vf_kernel_driver(dev.vendor, id));
        let d = match (&opts.vf_driver, known) {
            (Some(d), _) => d.clone(),
            (None, Some(k)) => k.to_owned(),
            (None, None) => {
                return Err(CliError::Usage(format!(
                    "--kernel-vfs: no known kernel driver for the VFs of {pf} ({:04x}:{}): name it with --vf-driver",
                    dev.vendor,
                    vf_id.map_or("?".to_owned(), |i| format!("{i:04x}"))
                )));
            }
        };
        if !is_safe_name(&d) {
            return Err(CliError::Usage(format!("--vf-driver {d:?} is not a driver name")));
        }
        if !host.pci_driver_present(&d) {
            return Err(CliError::DriverNotLoaded {
                what: format!("keeping VFs of {pf} on their kernel driver"),
                driver: d,
            });
        }
        Some(d)
    };
    sys.set_num_vfs(pf, opts.vfs)?;
    let pf_driver = dev.driver.as_deref().unwrap_or("no driver");
    if current == opts.vfs {
        println!("{pf}: {} VFs already enabled (PF driver {pf_driver})", opts.vfs);
    } else {
        println!(
            "{pf}: {} VFs enabled (was {current}; PF driver {pf_driver})",
            opts.vfs
        );
    }
    let dev = sys.device(pf)?;
    if let Some(d) = &vf_driver {
        for &i in &opts.kernel_vfs {
            let Some(&vf) = dev.virtfns.get(usize::from(i)) else {
                return Err(CliError::Usage(format!("VF {i} of {pf} does not exist in sysfs")));
            };
            sys.keep_vf_on_kernel_driver(vf, d)?;
            println!(
                "{pf}: VF {i} ({vf}) kept on the kernel driver {d}: its driver_override was rewritten to {d}; \
                 it is not isolated from the host kernel"
            );
        }
    }
    for (i, vf) in dev.virtfns.iter().enumerate() {
        let drv = sys.driver(*vf)?;
        let group = sys.iommu_group(*vf)?.map_or("-".to_owned(), |g| g.to_string());
        println!(
            "  VF {i}  {vf}  driver {}  IOMMU group {group}",
            drv.as_deref().unwrap_or("-")
        );
    }
    if opts.vfs > 0 && dev.driver.as_deref() == Some(VFIO_PCI_DRIVER) {
        println!(
            "VFs left on vfio-pci are opened with the VF token the PF's owner sets (VFIO_DEVICE_FEATURE); \
             until then the kernel refuses them (\"VF token required to access device\")"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vf_lists() {
        assert_eq!(parse_vf_list("1").unwrap(), [1]);
        assert_eq!(parse_vf_list("3,0,2-3").unwrap(), [0, 2, 3]);
        assert!(parse_vf_list("").is_err());
        assert!(parse_vf_list("a").is_err());
        assert!(parse_vf_list("3-1").is_err());
        assert!(parse_vf_list("0-65535").is_err());
    }
}
