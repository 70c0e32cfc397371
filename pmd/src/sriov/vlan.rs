//! The VLAN filters of the PF's VMDq pools, computed from the VF table: one VLVF entry per VLAN
//! id in use with the pool bits of the VFs that may receive it, the matching VFTA bits, and
//! whether filtering (RCTL.VFE) is on at all.
//!
//! Port VLANs (set by the administrator) come first; then the VLANs VFs asked for, in VF order.
//! The table has 32 entries for every function together: the policy refuses a VF's request (and
//! the administrator's port VLAN) that would not fit, so every accepted VLAN has its entry.
#![forbid(unsafe_code)]

use super::policy::{VfPhase, VfTable};
use super::regs;

/// The register values of the VLAN filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanFilters {
    /// VLVF entries (0 = unused).
    pub vlvf: [u32; regs::VLVF_ENTRIES],
    /// VFTA words.
    pub vfta: [u32; regs::VFTA_WORDS],
    /// RCTL.VFE: on when any VLAN is filtered.
    pub enabled: bool,
}

/// The VLAN ids that hold a filter entry and the pools of each, port VLANs first. A VF's own
/// VLANs count only while it is ready (a reset clears them).
pub fn vlan_entries(table: &VfTable) -> Vec<(u16, u8)> {
    let mut out: Vec<(u16, u8)> = Vec::new();
    let mut add = |vid: u16, pool: usize| {
        let bit = 1u8 << (pool & 7);
        match out.iter_mut().find(|(v, _)| *v == vid) {
            Some((_, pools)) => *pools |= bit,
            None => out.push((vid, bit)),
        }
    };
    for (i, s) in table.iter().enumerate() {
        if let Some(v) = s.policy.port_vlan {
            add(v, i);
        }
    }
    for (i, s) in table.iter().enumerate() {
        if s.policy.port_vlan.is_none() && s.phase == VfPhase::Ready {
            for &v in &s.vlans {
                add(v, i);
            }
        }
    }
    out
}

impl VlanFilters {
    /// The filters for `table` (entries past the 32nd are not programmed; the policy keeps the
    /// count within the table).
    pub fn from_table(table: &VfTable) -> VlanFilters {
        let mut f = VlanFilters {
            vlvf: [0; regs::VLVF_ENTRIES],
            vfta: [0; regs::VFTA_WORDS],
            enabled: false,
        };
        for (slot, (vid, pools)) in f.vlvf.iter_mut().zip(vlan_entries(table)) {
            let mut v = regs::VLVF_VI_EN | (u32::from(vid) & regs::VLVF_VLANID_MASK);
            for p in 0..8 {
                if pools & (1 << p) != 0 {
                    v |= regs::vlvf_pool(p);
                }
            }
            *slot = v;
            let vid = usize::from(vid);
            f.vfta[(vid >> 5) & 0x7F] |= 1 << (vid & 31);
            f.enabled = true;
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::MacAddr;
    use crate::sriov::admin::AdminChange;
    use crate::sriov::{VfPolicy, VfRequest};

    #[test]
    fn port_vlans_first_then_ready_vfs_vlans_merged_by_id() {
        let p = |n: u8| VfPolicy {
            mac: Some(MacAddr([2, 0, 0, 0, 0, n])),
            ..VfPolicy::default()
        };
        let mut t = VfTable::new(vec![p(1), p(2), p(3)], MacAddr([2, 0, 0, 0, 1, 0]), 0).unwrap();
        assert!(!VlanFilters::from_table(&t).enabled);
        for vf in 0..2 {
            t.handle(vf, &VfRequest::Reset.encode(), 0);
            t.handle(vf, &VfRequest::SetVlan { vid: 10, add: true }.encode(), 0);
        }
        // VF 2 is not ready: its port VLAN still gets an entry, nothing else of it.
        t.admin(2, AdminChange::PortVlan(Some(100))).unwrap();
        let e = vlan_entries(&t);
        assert_eq!(e, vec![(100, 0b100), (10, 0b011)]);
        let f = VlanFilters::from_table(&t);
        assert!(f.enabled);
        assert_eq!(f.vlvf[0], regs::VLVF_VI_EN | 100 | regs::vlvf_pool(2));
        assert_eq!(
            f.vlvf[1],
            regs::VLVF_VI_EN | 10 | regs::vlvf_pool(0) | regs::vlvf_pool(1)
        );
        assert_eq!(f.vlvf[2], 0);
        assert_eq!(f.vfta[100 >> 5], 1 << (100 & 31));
        assert_eq!(f.vfta[0], 1 << 10);
    }
}
