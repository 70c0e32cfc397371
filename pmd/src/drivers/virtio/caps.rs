//! Finding the virtio structures (common, notify, ISR, device configuration) in PCI config space.
//!
//! The capability list is walked over a copy of the first 256 bytes of config space (read once
//! through VFIO), so the walk is a pure function that unit tests drive with crafted bytes.
//! Everything in it is device input (design invariant 5): pointers are bounds-checked, loops are
//! cut after 48 capabilities, and each structure must lie inside its BAR.
#![forbid(unsafe_code)]

use super::regs::{cap, common, pci};

/// Where one virtio structure lives: BAR index, offset and length inside that BAR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapLocation {
    /// BAR index (0..=5).
    pub bar: u8,
    /// Offset of the structure in the BAR.
    pub offset: u32,
    /// Length of the structure.
    pub length: u32,
}

/// The virtio structures of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioCaps {
    /// Common configuration.
    pub common: CapLocation,
    /// Notification area.
    pub notify: CapLocation,
    /// Queue notify address = notify.offset + queue_notify_off * this.
    pub notify_off_multiplier: u32,
    /// ISR status (not used by a polling driver, but required by the specification).
    pub isr: Option<CapLocation>,
    /// Device-specific configuration (virtio_net_config).
    pub device: Option<CapLocation>,
}

/// What is wrong with the capability list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// No capability list at all.
    #[error(
        "PCI config space has no capability list: not a virtio 1.0 (modern) device; use a modern \
         device (QEMU: -device virtio-net-pci,disable-legacy=on,iommu_platform=on)"
    )]
    NoCapabilityList,
    /// A required virtio structure is missing.
    #[error(
        "no virtio {0} capability in PCI config space: the device is legacy-only; use a modern \
         device (QEMU: -device virtio-net-pci,disable-legacy=on,iommu_platform=on)"
    )]
    Missing(&'static str),
    /// A capability is malformed.
    #[error("malformed virtio capability at config offset {at:#x}: {reason}")]
    Malformed {
        /// Config-space offset of the capability.
        at: usize,
        /// What is wrong.
        reason: String,
    },
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Iterates the standard PCI capability list of a config-space copy: yields (offset, id).
/// Stops at the end of the list, at a pointer outside `cfg` or below 0x40, or after 48 entries
/// (a looping list).
pub fn capability_list(cfg: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let status = cfg
        .get(pci::STATUS..pci::STATUS + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .unwrap_or(0);
    let mut next = if status & pci::STATUS_CAP_LIST != 0 {
        cfg.get(pci::CAP_PTR).map(|&p| usize::from(p & !3)).unwrap_or(0)
    } else {
        0
    };
    let mut seen = 0;
    std::iter::from_fn(move || {
        if next < 0x40 || next + 2 > cfg.len() || seen >= 48 {
            return None;
        }
        seen += 1;
        let at = next;
        let id = cfg[at];
        next = usize::from(cfg[at + 1] & !3);
        Some((at, id))
    })
}

/// Finds the virtio structures. The first capability of each type wins (the specification lets
/// a device offer alternatives in preference order). `bar_sizes[i]` is the size of BAR i (0 when
/// absent): every structure must lie inside its BAR.
pub fn find_virtio_caps(cfg: &[u8], bar_sizes: &[u64; 6]) -> Result<VirtioCaps, CapError> {
    if cfg.len() < 0x40 {
        return Err(CapError::NoCapabilityList);
    }
    let mut any = false;
    let mut common_loc = None;
    let mut notify = None;
    let mut isr = None;
    let mut device = None;
    for (at, id) in capability_list(cfg) {
        any = true;
        if id != pci::CAP_ID_VENDOR {
            continue;
        }
        let malformed = |reason: String| CapError::Malformed { at, reason };
        let len = usize::from(*cfg.get(at + 2).unwrap_or(&0));
        let Some(body) = cfg.get(at..at + len.max(cap::MIN_LEN)) else {
            return Err(malformed("runs past the end of config space".into()));
        };
        if len < cap::MIN_LEN {
            return Err(malformed(format!("cap_len {len} < {}", cap::MIN_LEN)));
        }
        let cfg_type = body[cap::CFG_TYPE];
        let bar = body[cap::BAR];
        let (Some(offset), Some(length)) = (le32(body, cap::OFFSET), le32(body, cap::LENGTH)) else {
            return Err(malformed("short capability".into()));
        };
        let known = matches!(
            cfg_type,
            cap::TYPE_COMMON | cap::TYPE_NOTIFY | cap::TYPE_ISR | cap::TYPE_DEVICE
        );
        if !known {
            continue;
        }
        // Structures in a BAR this driver cannot use (reserved index, absent BAR) are skipped as
        // the specification asks; a structure that does not fit its BAR is an error.
        if bar > 5 || bar_sizes[usize::from(bar)] == 0 {
            continue;
        }
        let end = u64::from(offset) + u64::from(length);
        if end > bar_sizes[usize::from(bar)] {
            return Err(malformed(format!(
                "structure {offset:#x}+{length:#x} exceeds BAR{bar} ({:#x} bytes)",
                bar_sizes[usize::from(bar)]
            )));
        }
        let loc = CapLocation { bar, offset, length };
        match cfg_type {
            cap::TYPE_COMMON if common_loc.is_none() => {
                if (length as usize) < common::LEN {
                    return Err(malformed(format!(
                        "common configuration of {length:#x} bytes, at least {:#x} needed",
                        common::LEN
                    )));
                }
                common_loc = Some(loc);
            }
            cap::TYPE_NOTIFY if notify.is_none() => {
                if len < cap::NOTIFY_MIN_LEN {
                    return Err(malformed(format!(
                        "notify cap_len {len} < {}",
                        cap::NOTIFY_MIN_LEN
                    )));
                }
                let mult = le32(body, cap::NOTIFY_OFF_MULTIPLIER)
                    .ok_or_else(|| malformed("short notify capability".into()))?;
                notify = Some((loc, mult));
            }
            cap::TYPE_ISR if isr.is_none() => isr = Some(loc),
            cap::TYPE_DEVICE if device.is_none() => device = Some(loc),
            _ => {}
        }
    }
    if !any {
        return Err(CapError::NoCapabilityList);
    }
    let common = common_loc.ok_or(CapError::Missing("common configuration"))?;
    let (notify, notify_off_multiplier) = notify.ok_or(CapError::Missing("notification"))?;
    Ok(VirtioCaps {
        common,
        notify,
        notify_off_multiplier,
        isr,
        device,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Config space of QEMU's modern virtio-net-pci: MSI-X at 0x98, then the virtio
    /// capabilities in BAR4 (common 0x0, ISR 0x1000, device 0x2000, notify 0x3000, multiplier 4).
    pub(crate) fn qemu_like_config() -> Vec<u8> {
        let mut c = vec![0u8; 256];
        c[0..2].copy_from_slice(&0x1AF4u16.to_le_bytes());
        c[2..4].copy_from_slice(&0x1041u16.to_le_bytes());
        c[pci::STATUS..pci::STATUS + 2].copy_from_slice(&pci::STATUS_CAP_LIST.to_le_bytes());
        c[pci::CAP_PTR] = 0x98;
        // MSI-X (id 0x11) -> 0x84
        c[0x98] = 0x11;
        c[0x99] = 0x84;
        let mut put = |at: usize, next: u8, len: u8, ty: u8, bar: u8, off: u32, size: u32| {
            c[at] = pci::CAP_ID_VENDOR;
            c[at + 1] = next;
            c[at + 2] = len;
            c[at + 3] = ty;
            c[at + 4] = bar;
            c[at + 8..at + 12].copy_from_slice(&off.to_le_bytes());
            c[at + 12..at + 16].copy_from_slice(&size.to_le_bytes());
        };
        put(0x84, 0x70, 16, cap::TYPE_PCI_CFG, 0, 0, 0);
        put(0x70, 0x60, 20, cap::TYPE_NOTIFY, 4, 0x3000, 0x1000);
        put(0x60, 0x50, 16, cap::TYPE_DEVICE, 4, 0x2000, 0x1000);
        put(0x50, 0x40, 16, cap::TYPE_ISR, 4, 0x1000, 0x1000);
        put(0x40, 0x00, 16, cap::TYPE_COMMON, 4, 0x0, 0x1000);
        c[0x70 + 16..0x70 + 20].copy_from_slice(&4u32.to_le_bytes());
        c
    }

    pub(crate) const BARS: [u64; 6] = [0, 0x1000, 0, 0, 0x4000, 0];

    #[test]
    fn finds_every_structure_of_a_qemu_device() {
        let caps = find_virtio_caps(&qemu_like_config(), &BARS).unwrap();
        assert_eq!(
            caps.common,
            CapLocation {
                bar: 4,
                offset: 0,
                length: 0x1000
            }
        );
        assert_eq!(caps.notify.offset, 0x3000);
        assert_eq!(caps.notify_off_multiplier, 4);
        assert_eq!(caps.isr.unwrap().offset, 0x1000);
        assert_eq!(caps.device.unwrap().offset, 0x2000);
        let ids: Vec<u8> = capability_list(&qemu_like_config()).map(|(_, id)| id).collect();
        assert_eq!(ids, [0x11, 9, 9, 9, 9, 9]);
    }

    #[test]
    fn legacy_device_is_refused_with_the_fix() {
        let mut c = qemu_like_config();
        c[pci::STATUS] = 0;
        let e = find_virtio_caps(&c, &BARS).unwrap_err();
        assert_eq!(e, CapError::NoCapabilityList);
        assert!(e.to_string().contains("disable-legacy=on"), "{e}");
        // A list with MSI-X only (a legacy virtio device has no vendor capabilities).
        let mut c = qemu_like_config();
        c[0x99] = 0;
        let e = find_virtio_caps(&c, &BARS).unwrap_err();
        assert_eq!(e, CapError::Missing("common configuration"));
        assert!(e.to_string().contains("legacy-only"), "{e}");
    }

    #[test]
    fn hostile_lists_end_or_are_refused() {
        // A loop: 0x40 -> 0x40.
        let mut c = qemu_like_config();
        c[pci::CAP_PTR] = 0x40;
        c[0x41] = 0x40;
        assert!(capability_list(&c).count() <= 48);
        assert!(matches!(find_virtio_caps(&c, &BARS), Err(CapError::Missing(_))));
        // A structure past the end of its BAR.
        let mut c = qemu_like_config();
        c[0x70 + 8..0x70 + 12].copy_from_slice(&0x3800u32.to_le_bytes());
        assert!(matches!(
            find_virtio_caps(&c, &BARS),
            Err(CapError::Malformed { at: 0x70, .. })
        ));
        // A short common structure.
        let mut c = qemu_like_config();
        c[0x40 + 12..0x40 + 16].copy_from_slice(&0x10u32.to_le_bytes());
        assert!(matches!(
            find_virtio_caps(&c, &BARS),
            Err(CapError::Malformed { at: 0x40, .. })
        ));
        // A capability running off config space.
        let mut c = qemu_like_config();
        c[pci::CAP_PTR] = 0xFC;
        c[0xFC] = pci::CAP_ID_VENDOR;
        c[0xFD] = 0;
        c[0xFE] = 16;
        assert!(matches!(
            find_virtio_caps(&c, &BARS),
            Err(CapError::Malformed { at: 0xFC, .. })
        ));
        // A BAR that does not exist: the structure is skipped, then reported missing.
        let no_bar4 = [0, 0x1000, 0, 0, 0, 0];
        assert!(matches!(
            find_virtio_caps(&qemu_like_config(), &no_bar4),
            Err(CapError::Missing(_))
        ));
        // Truncated config space.
        assert_eq!(
            find_virtio_caps(&[0u8; 8], &BARS),
            Err(CapError::NoCapabilityList)
        );
    }
}
