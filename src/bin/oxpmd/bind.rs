//! `oxpmd bind` / `oxpmd unbind`: to vfio-pci and back to the previous driver.

use std::collections::BTreeSet;

use oxpmd::vfio::pci::VFIO_PCI_DRIVER;
use oxpmd::vfio::{PciAddress, PreviousBinding};

use crate::error::CliError;
use crate::group;
use crate::host::{Host, is_safe_name};
use crate::state::{Bindings, Entry};

/// Class code (without the programming interface) of a PCI-to-PCI bridge.
const PCI_BRIDGE_CLASS: u32 = 0x0604;

/// Options of `bind`.
#[derive(Debug, Default)]
pub struct BindOptions {
    /// Bind every member of each device's IOMMU group.
    pub group: bool,
    /// Bind even a device that carries the host's network.
    pub force: bool,
}

/// The devices to act on: `addrs`, plus every member of their groups with `--group`.
fn targets(host: &Host, addrs: &[PciAddress], whole_group: bool) -> Result<Vec<PciAddress>, CliError> {
    let sys = host.sysfs();
    let mut set = BTreeSet::new();
    for &a in addrs {
        sys.device(a)?;
        set.insert(a);
        if whole_group {
            let g = sys.iommu_group(a)?.ok_or_else(|| CliError::NoIommuGroup {
                address: a.to_string(),
            })?;
            for m in sys.group_members(g)? {
                let Ok(ma) = PciAddress::parse(&m.address) else {
                    continue;
                };
                // Bridges and members on a driver that keeps the group viable (pcieport, pci-stub)
                // stay where they are.
                let bridge = sys.device(ma).is_ok_and(|d| d.class >> 8 == PCI_BRIDGE_CLASS);
                let harmless = m
                    .driver
                    .as_deref()
                    .is_some_and(|d| d != VFIO_PCI_DRIVER && !group::blocks(Some(d)));
                if ma == a || !(bridge || harmless) {
                    set.insert(ma);
                }
            }
        }
    }
    // Keep the order given, group members after.
    let mut out: Vec<PciAddress> = addrs.to_vec();
    out.dedup();
    for a in set {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// Binds `addrs` to vfio-pci, remembering each previous driver in the state file.
pub fn bind(host: &Host, addrs: &[PciAddress], opts: &BindOptions) -> Result<(), CliError> {
    let sys = host.sysfs();
    let list = targets(host, addrs, opts.group)?;
    let names: Vec<String> = list.iter().map(ToString::to_string).collect();
    // Refuse before changing anything.
    for &a in &list {
        let dev = sys.device(a)?;
        let g = dev.iommu_group.ok_or_else(|| CliError::NoIommuGroup {
            address: a.to_string(),
        })?;
        let members = sys.group_members(g)?;
        let blockers = group::blockers(&members, &names);
        if !blockers.is_empty() {
            return Err(CliError::GroupNotViable {
                address: a.to_string(),
                group: g,
                others: blockers.into_iter().map(group::describe).collect(),
            });
        }
        if dev.driver.as_deref() != Some(VFIO_PCI_DRIVER) {
            if let Some(n) = dev.sriov_num_vfs.filter(|&n| n > 0) {
                return Err(CliError::VfsEnabled {
                    address: a.to_string(),
                    vfs: n,
                });
            }
            for ifname in host.netdevs(a) {
                if !host.netdev_up(&ifname) {
                    continue;
                }
                let routes = host.host_routes(&ifname);
                if routes.is_empty() {
                    continue;
                }
                if opts.force {
                    eprintln!(
                        "oxpmd: warning: {a}: {ifname} is up with {}; binding anyway (--force)",
                        routes.join(", ")
                    );
                } else {
                    return Err(CliError::HostRoute {
                        address: a.to_string(),
                        ifname,
                        routes,
                    });
                }
            }
        }
    }
    if !host.pci_driver_present(VFIO_PCI_DRIVER) {
        return Err(CliError::DriverNotLoaded {
            what: format!("binding {}", names.join(" ")),
            driver: VFIO_PCI_DRIVER.to_owned(),
        });
    }
    let mut state = Bindings::load(&host.state_dir)?;
    for &a in &list {
        let dev = sys.device(a)?;
        if dev.driver.as_deref() == Some(VFIO_PCI_DRIVER) {
            println!("{a}: already bound to vfio-pci");
            continue;
        }
        let prev = sys.bind_vfio_pci(a)?;
        state.entries.insert(
            a,
            Entry {
                id: (dev.vendor, dev.device),
                driver: prev.driver.clone(),
                driver_override: prev.driver_override.clone(),
            },
        );
        state.save()?;
        let group = dev
            .iommu_group
            .map(|g| format!(" (IOMMU group {g}, /dev/vfio/{g})"))
            .unwrap_or_default();
        println!(
            "{a}: bound to vfio-pci{group}, was {}; `oxpmd unbind {a}` gives it back",
            prev.driver.as_deref().unwrap_or("on no driver")
        );
    }
    Ok(())
}

/// Options of `unbind`.
#[derive(Debug, Default)]
pub struct UnbindOptions {
    /// Also give back every other member of the groups that `bind --group` took.
    pub group: bool,
    /// Bind to this driver instead of the remembered one (`none`: leave unbound).
    pub driver: Option<String>,
}

/// Gives each device back to the driver it had before `oxpmd bind`.
pub fn unbind(host: &Host, addrs: &[PciAddress], opts: &UnbindOptions) -> Result<(), CliError> {
    if let Some(d) = &opts.driver
        && d != "none"
        && !is_safe_name(d)
    {
        return Err(CliError::Usage(format!("--driver {d:?} is not a driver name")));
    }
    let mut state = Bindings::load(&host.state_dir)?;
    let mut list = targets(host, addrs, false)?;
    if opts.group {
        // Only the members this tool bound: others (on vfio-pci for someone else, or on their
        // kernel driver) stay where they are.
        for a in targets(host, addrs, true)? {
            if !list.contains(&a) && state.entries.contains_key(&a) {
                list.push(a);
            }
        }
    }
    let mut failed = 0;
    for &a in &list {
        match unbind_one(host, &mut state, a, opts.driver.as_deref()) {
            Ok(msg) => println!("{a}: {msg}"),
            Err(e) => {
                eprintln!("oxpmd: error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        return Err(CliError::Partial {
            failed,
            total: list.len(),
        });
    }
    Ok(())
}

fn unbind_one(
    host: &Host,
    state: &mut Bindings,
    a: PciAddress,
    driver: Option<&str>,
) -> Result<String, CliError> {
    let sys = host.sysfs();
    let dev = sys.device(a)?;
    let record = state.entries.get(&a).cloned();
    let prev = match (driver, &record) {
        (Some("none"), _) => PreviousBinding {
            address: a,
            driver: None,
            driver_override: None,
        },
        (Some(d), _) => PreviousBinding {
            address: a,
            driver: Some(d.to_owned()),
            driver_override: None,
        },
        (None, Some(e)) => {
            if e.id != (dev.vendor, dev.device) {
                return Err(CliError::BadState {
                    path: state.path().to_owned(),
                    line: 0,
                    why: format!(
                        "the entry for {a} was made for a {:04x}:{:04x} device, but {a} is now {:04x}:{:04x}",
                        e.id.0, e.id.1, dev.vendor, dev.device
                    ),
                });
            }
            e.previous(a)
        }
        (None, None) => {
            if dev.driver.as_deref() != Some(VFIO_PCI_DRIVER) {
                return Ok(format!(
                    "not bound to vfio-pci (driver {}), and oxpmd did not bind it: nothing to do",
                    dev.driver.as_deref().unwrap_or("none")
                ));
            }
            PreviousBinding {
                address: a,
                driver: None,
                driver_override: None,
            }
        }
    };
    if let Some(d) = prev.driver.as_deref()
        && !host.pci_driver_present(d)
    {
        return Err(CliError::DriverNotLoaded {
            what: format!("giving {a} back to {d}"),
            driver: d.to_owned(),
        });
    }
    sys.restore(&prev)?;
    if state.entries.remove(&a).is_some() {
        state.save()?;
    }
    let now = sys.driver(a)?;
    Ok(match (now, record.is_some() || driver.is_some()) {
        (Some(d), _) => format!("bound to {d} again (from vfio-pci)"),
        (None, true) => "unbound from vfio-pci (it had no driver before)".to_owned(),
        (None, false) => "unbound from vfio-pci; oxpmd has no record of a previous driver: bind one with \
                          `oxpmd unbind --driver DRIVER ADDR`"
            .to_owned(),
    })
}
