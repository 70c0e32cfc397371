//! IOMMU group viability as VFIO sees it.

use oxpmd::vfio::GroupMember;

/// Drivers that leave a group viable: vfio-pci itself, and drivers that manage no DMA of their own
/// (the kernel marks them `driver_managed_dma`): pci-stub, and pcieport on bridges.
pub const HARMLESS_DRIVERS: &[&str] = &["vfio-pci", "pci-stub", "pcieport"];

/// True when a member on `driver` keeps the group from being viable.
pub fn blocks(driver: Option<&str>) -> bool {
    driver.is_some_and(|d| !HARMLESS_DRIVERS.contains(&d))
}

/// The members (not in `except`) that keep the group from being viable.
pub fn blockers<'a>(members: &'a [GroupMember], except: &[String]) -> Vec<&'a GroupMember> {
    members
        .iter()
        .filter(|m| !except.contains(&m.address) && blocks(m.driver.as_deref()))
        .collect()
}

/// "ADDR (driver D)" for messages.
pub fn describe(m: &GroupMember) -> String {
    m.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_drivers_block() {
        let m = |a: &str, d: Option<&str>| GroupMember {
            address: a.into(),
            driver: d.map(Into::into),
        };
        let g = [
            m("0000:00:1f.0", Some("lpc_ich")),
            m("0000:00:1f.2", None),
            m("0000:00:1f.3", Some("vfio-pci")),
            m("0000:00:1c.0", Some("pcieport")),
        ];
        let b = blockers(&g, &[]);
        assert_eq!(b.len(), 1);
        assert_eq!(describe(b[0]), "0000:00:1f.0 (driver lpc_ich)");
        assert!(blockers(&g, &["0000:00:1f.0".into()]).is_empty());
    }
}
