//! The driver registry: which driver serves which PCI vendor:device id.
//!
//! A driver lands by setting `open` of its entry to its constructor (and adding its module here,
//! e.g. `pub mod igb;` for `pmd/src/drivers/igb/`). Until then, opening such a device fails with
//! [`PortError::DriverNotBuilt`].
//!
//! Unsafe code is denied here; a driver module that needs it (to implement an `unsafe` trait such
//! as `RingMemory`) allows it for itself and documents each block.
#![deny(unsafe_code)]

pub mod igb;
pub(crate) mod igb_family;
pub mod igbvf;
pub mod virtio;

use oxpmd_vfio::{PciAddress, Sysfs};

use crate::driver::{Driver, OpenOptions};
use crate::error::{PortError, Result};

/// Constructor of a PCI driver: opens the device (through VFIO) and resets it.
pub type OpenFn = fn(addr: PciAddress, opts: &OpenOptions) -> Result<Box<dyn Driver>>;

/// One registered driver.
#[derive(Debug, Clone, Copy)]
pub struct DriverEntry {
    /// Driver name.
    pub name: &'static str,
    /// PCI (vendor, device) ids it serves.
    pub ids: &'static [(u16, u16)],
    /// Constructor; `None` while the driver is not built yet.
    pub open: Option<OpenFn>,
}

/// Every known PCI driver.
pub static REGISTRY: &[DriverEntry] = &[
    // Intel 82576 PF.
    DriverEntry {
        name: "igb",
        ids: &[(0x8086, 0x10C9)],
        open: Some(igb::open),
    },
    // Intel 82576 VF.
    DriverEntry {
        name: "igbvf",
        ids: &[(0x8086, 0x10CA)],
        open: Some(igbvf::open),
    },
    // virtio-net, modern (virtio 1.0) PCI id.
    DriverEntry {
        name: "virtio-net",
        ids: &[(0x1AF4, 0x1041)],
        open: Some(virtio::open),
    },
];

/// The entry serving `vendor:device`, if any.
pub fn lookup(vendor: u16, device: u16) -> Option<&'static DriverEntry> {
    REGISTRY.iter().find(|e| e.ids.contains(&(vendor, device)))
}

/// Every registered id as `vvvv:dddd (name)`, for error messages.
pub fn known_ids() -> String {
    let mut v = Vec::new();
    for e in REGISTRY {
        for (ven, dev) in e.ids {
            v.push(format!("{ven:04x}:{dev:04x} ({})", e.name));
        }
    }
    v.join(", ")
}

/// Opens the PCI device at `addr` with the driver its sysfs id selects.
pub fn open_pci(addr: PciAddress, opts: &OpenOptions) -> Result<Box<dyn Driver>> {
    let info = Sysfs::new().device(addr).map_err(|e| PortError::Driver {
        device: addr.to_string(),
        op: "read PCI id from sysfs",
        source: Box::new(e),
    })?;
    open_with_id(addr, info.vendor, info.device, opts)
}

/// Opens `addr` as a `vendor:device` device (the registry decision, testable without sysfs).
pub fn open_with_id(
    addr: PciAddress,
    vendor: u16,
    device_id: u16,
    opts: &OpenOptions,
) -> Result<Box<dyn Driver>> {
    let device = addr.to_string();
    let entry = lookup(vendor, device_id).ok_or_else(|| PortError::NoDriver {
        device: device.clone(),
        vendor,
        device_id,
        known: known_ids(),
    })?;
    match entry.open {
        Some(open) => open(addr, opts),
        None => Err(PortError::DriverNotBuilt {
            device,
            driver: entry.name,
            vendor,
            device_id,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_ids() {
        assert_eq!(lookup(0x8086, 0x10C9).unwrap().name, "igb");
        assert_eq!(lookup(0x8086, 0x10CA).unwrap().name, "igbvf");
        assert_eq!(lookup(0x1AF4, 0x1041).unwrap().name, "virtio-net");
        assert!(lookup(0x8086, 0x1533).is_none());
    }

    #[test]
    fn unknown_and_unbuilt_drivers_are_clear_errors() {
        let addr = PciAddress::parse("0000:00:02.0").unwrap();
        let e = open_with_id(addr, 0x8086, 0x1533, &OpenOptions::default())
            .err()
            .unwrap();
        assert!(matches!(e, PortError::NoDriver { .. }), "{e}");
        assert!(e.to_string().contains("8086:1533"));
        for (v, d, name) in [
            (0x8086, 0x10C9, "igb"),
            (0x8086, 0x10CA, "igbvf"),
            (0x1AF4, 0x1041, "virtio-net"),
        ] {
            let entry = lookup(v, d).unwrap();
            if entry.open.is_none() {
                let e = open_with_id(addr, v, d, &OpenOptions::default()).err().unwrap();
                assert!(
                    matches!(e, PortError::DriverNotBuilt { driver, .. } if driver == name),
                    "{e}"
                );
                assert!(e.to_string().contains("not built yet"));
            }
        }
    }
}
