//! `oxpmd devices`: the network PCI functions, their drivers, IOMMU groups, NUMA nodes and VFs.

use oxpmd::pmd::drivers;
use oxpmd::vfio::{GroupMember, PciDevice};
use serde_json::{Value, json};

use crate::error::CliError;
use crate::host::Host;
use crate::names;

/// PCI class of network controllers (the top byte of the 24-bit class code).
pub const NETWORK_CLASS: u32 = 0x02;

/// What the table and the JSON show for one device.
#[derive(Debug)]
pub struct DeviceView {
    /// sysfs facts.
    pub dev: PciDevice,
    /// Members of its IOMMU group (itself included).
    pub group_members: Vec<GroupMember>,
    /// Its network interfaces.
    pub netdevs: Vec<String>,
    /// The VFs' drivers, in VF order.
    pub vf_drivers: Vec<Option<String>>,
}

/// Lists the devices (network ones unless `all`).
pub fn collect(host: &Host, all: bool) -> Result<Vec<DeviceView>, CliError> {
    let sys = host.sysfs();
    let mut out = Vec::new();
    for dev in sys.devices()? {
        if !all && dev.class >> 16 != NETWORK_CLASS {
            continue;
        }
        let group_members = match dev.iommu_group {
            Some(g) => sys.group_members(g).unwrap_or_default(),
            None => Vec::new(),
        };
        let vf_drivers = dev
            .virtfns
            .iter()
            .map(|vf| sys.driver(*vf).ok().flatten())
            .collect();
        out.push(DeviceView {
            netdevs: host.netdevs(dev.address),
            dev,
            group_members,
            vf_drivers,
        });
    }
    Ok(out)
}

fn oxpmd_driver(d: &PciDevice) -> (Option<&'static str>, bool) {
    match drivers::lookup(d.vendor, d.device) {
        Some(e) => (Some(e.name), e.open.is_some()),
        None => (None, false),
    }
}

fn name(d: &PciDevice) -> String {
    match names::device_name(d.vendor, d.device) {
        Some(n) => n.to_owned(),
        None => match names::vendor_name(d.vendor) {
            Some(v) => format!("{v} device (class {:06x})", d.class),
            None => format!("unknown (class {:06x})", d.class),
        },
    }
}

/// The JSON document: `{"devices": [...]}`.
pub fn to_json(views: &[DeviceView]) -> Value {
    let devs: Vec<Value> = views
        .iter()
        .map(|v| {
            let d = &v.dev;
            let (ox, built) = oxpmd_driver(d);
            json!({
                "address": d.address.to_string(),
                "vendor_id": format!("{:04x}", d.vendor),
                "device_id": format!("{:04x}", d.device),
                "class": format!("{:06x}", d.class),
                "name": names::device_name(d.vendor, d.device),
                "driver": d.driver,
                "driver_override": d.driver_override,
                "netdevs": v.netdevs,
                "numa_node": d.numa_node,
                "iommu_group": d.iommu_group,
                "iommu_group_members": v.group_members.iter().map(|m| json!({
                    "address": m.address,
                    "driver": m.driver,
                })).collect::<Vec<_>>(),
                "sriov": d.sriov_total_vfs.map(|total| json!({
                    "total_vfs": total,
                    "num_vfs": d.sriov_num_vfs.unwrap_or(0),
                    "vfs": d.virtfns.iter().zip(&v.vf_drivers).map(|(a, drv)| json!({
                        "address": a.to_string(),
                        "driver": drv,
                    })).collect::<Vec<_>>(),
                })),
                "physfn": d.physfn.map(|p| p.to_string()),
                "oxpmd_driver": ox.map(|n| json!({ "name": n, "built": built })),
            })
        })
        .collect();
    json!({ "devices": devs })
}

fn group_cell(v: &DeviceView) -> String {
    let Some(g) = v.dev.iommu_group else {
        return "none (IOMMU off?)".to_owned();
    };
    let me = v.dev.address.to_string();
    let others: Vec<String> = v
        .group_members
        .iter()
        .filter(|m| m.address != me)
        .map(|m| format!("{} {}", m.address, m.driver.as_deref().unwrap_or("-")))
        .collect();
    if others.is_empty() {
        g.to_string()
    } else {
        format!("{g} with {}", others.join(", "))
    }
}

fn sriov_cell(v: &DeviceView) -> String {
    let d = &v.dev;
    if let Some(pf) = d.physfn {
        return format!("VF of {pf}");
    }
    match d.sriov_total_vfs {
        Some(total) if total > 0 => {
            let mut s = format!("{}/{total} VFs", d.sriov_num_vfs.unwrap_or(0));
            if !d.virtfns.is_empty() {
                let vfs: Vec<String> = d
                    .virtfns
                    .iter()
                    .zip(&v.vf_drivers)
                    .map(|(a, drv)| format!("{a} {}", drv.as_deref().unwrap_or("-")))
                    .collect();
                s.push_str(&format!(": {}", vfs.join(", ")));
            }
            s
        }
        _ => "-".to_owned(),
    }
}

/// The human-readable table.
pub fn to_table(views: &[DeviceView]) -> String {
    let header = [
        "ADDRESS",
        "ID",
        "NAME",
        "DRIVER",
        "IFACE",
        "NUMA",
        "IOMMU GROUP",
        "OXPMD",
        "SR-IOV",
    ];
    let rows: Vec<[String; 9]> = views
        .iter()
        .map(|v| {
            let d = &v.dev;
            let (ox, built) = oxpmd_driver(d);
            [
                d.address.to_string(),
                format!("{:04x}:{:04x}", d.vendor, d.device),
                name(d),
                d.driver.clone().unwrap_or_else(|| "-".into()),
                if v.netdevs.is_empty() {
                    "-".into()
                } else {
                    v.netdevs.join(",")
                },
                d.numa_node.map_or("-".into(), |n| n.to_string()),
                group_cell(v),
                match ox {
                    Some(n) if built => n.to_owned(),
                    Some(n) => format!("{n} (not built yet)"),
                    None => "-".into(),
                },
                sriov_cell(v),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(&header);
    for r in &rows {
        out.push_str(&line(&r.each_ref().map(String::as_str)));
    }
    if rows.is_empty() {
        out.push_str("(no network PCI devices; `oxpmd devices --all` lists every PCI function)\n");
    }
    out
}
