//! The administrator's run-time changes of one VF (`oxpmd vf set`, like `ip link set DEV vf N`):
//! each is validated against the device and the other VFs before anything changes, and returns
//! the hardware changes for that VF and what the VF must be told.
//!
//! What a VF learns and how (as the kernel's PF drivers do it): a new MAC, a lowered frame or
//! multicast cap, or trust taken away from a VF that used it, is signalled with a CONTROL message
//! carrying NACK and no CTS, which makes the VF driver reset and redo its handshake (the kernel
//! igbvf schedules its reset task; the hardware filter already holds the new MAC, so the VF
//! receives on it at once). A link disabled is a CONTROL message without CTS (the VF driver
//! reports link down), a link enabled again a CONTROL message with CTS. A port VLAN and the
//! spoof check are transparent to the VF: nothing is sent.
#![forbid(unsafe_code)]

use super::mailbox::{MAX_MC_HASHES, MSG_CTS, MSG_NACK, id};
use super::policy::{HwAction, LinkState, MAX_FRAME_HW, MAX_PORT_VLAN, MIN_FRAME, VfPhase, VfTable};
use super::regs::VLVF_ENTRIES;
use super::vlan::vlan_entries;
use crate::mac::MacAddr;

/// One administrative change of a VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminChange {
    /// The VF's MAC (also its administrator MAC: an untrusted VF cannot change it).
    Mac(MacAddr),
    /// The port VLAN (None: none).
    PortVlan(Option<u16>),
    /// Trust.
    Trust(bool),
    /// Transmit MAC anti-spoofing.
    SpoofCheck(bool),
    /// The link state the VF sees.
    Link(LinkState),
    /// The largest frame the VF may ask for.
    MaxFrame(u32),
    /// The most multicast hashes the VF may set.
    MaxMulticast(u8),
    /// A transmit rate limit in Mbit/s (always refused: see [`AdminError::Unsupported`]).
    MaxTxRate(u32),
}

impl AdminChange {
    /// The setting's name, as `oxpmd vf set` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            AdminChange::Mac(_) => "mac",
            AdminChange::PortVlan(_) => "vlan",
            AdminChange::Trust(_) => "trust",
            AdminChange::SpoofCheck(_) => "spoofchk",
            AdminChange::Link(_) => "state",
            AdminChange::MaxFrame(_) => "max_frame",
            AdminChange::MaxMulticast(_) => "max_multicast",
            AdminChange::MaxTxRate(_) => "max_tx_rate",
        }
    }
}

impl std::fmt::Display for AdminChange {
    /// `mac 02:00:00:00:10:00`, `vlan 100` (`vlan 0`: none), `trust on`, `state disable`, ...
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |b: bool| if b { "on" } else { "off" };
        match self {
            AdminChange::Mac(m) => write!(f, "mac {m}"),
            AdminChange::PortVlan(v) => write!(f, "vlan {}", v.unwrap_or(0)),
            AdminChange::Trust(b) => write!(f, "trust {}", on(*b)),
            AdminChange::SpoofCheck(b) => write!(f, "spoofchk {}", on(*b)),
            AdminChange::Link(l) => write!(f, "state {}", l.as_str()),
            AdminChange::MaxFrame(n) => write!(f, "max_frame {n}"),
            AdminChange::MaxMulticast(n) => write!(f, "max_multicast {n}"),
            AdminChange::MaxTxRate(n) => write!(f, "max_tx_rate {n}"),
        }
    }
}

/// What the VF must be told after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VfSignal {
    /// CONTROL with NACK, no CTS: reset and redo the handshake.
    Reset,
    /// CONTROL without CTS: link down.
    LinkDown,
    /// CONTROL with CTS: link up.
    LinkUp,
}

impl VfSignal {
    /// Word 0 of the CONTROL message.
    pub fn word0(self) -> u32 {
        let ctl = u32::from(id::PF_CONTROL);
        match self {
            VfSignal::Reset => ctl | MSG_NACK,
            VfSignal::LinkDown => ctl,
            VfSignal::LinkUp => ctl | MSG_CTS,
        }
    }
}

/// The decision on one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminOutcome {
    /// Hardware changes for this VF, in order.
    pub actions: Vec<HwAction>,
    /// What the VF must learn (only sent to a VF that completed its handshake).
    pub signal: Option<VfSignal>,
    /// Something the administrator should know (the change was applied).
    pub note: Option<String>,
}

/// Why a change was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No such VF.
    #[error("VF {vf} does not exist: the PF has {count} VF(s) (0..={max})", max = count.saturating_sub(1))]
    UnknownVf {
        /// Asked.
        vf: usize,
        /// VFs enabled.
        count: usize,
    },
    /// The MAC is not a unicast address.
    #[error("VF {vf}: {mac} is not a valid unicast MAC (multicast bit set, or all zeros)")]
    BadMac {
        /// VF.
        vf: usize,
        /// Address.
        mac: MacAddr,
    },
    /// Another function has the MAC.
    #[error("VF {vf}: MAC {mac} is already used by {owner}; each function needs its own")]
    MacInUse {
        /// VF.
        vf: usize,
        /// Address.
        mac: MacAddr,
        /// `the PF` or `VF n`.
        owner: String,
    },
    /// A value outside its range.
    #[error("VF {vf}: {setting} {value} is out of range {range}")]
    OutOfRange {
        /// VF.
        vf: usize,
        /// Setting.
        setting: &'static str,
        /// Value.
        value: u64,
        /// Allowed.
        range: &'static str,
    },
    /// No VLAN filter entry is left for a new port VLAN.
    #[error(
        "VF {vf}: port VLAN {vlan} refused: the {VLVF_ENTRIES} VLAN filter entries of the port are \
         all in use (port VLANs and the VFs' own VLANs)"
    )]
    VlanTableFull {
        /// VF.
        vf: usize,
        /// Asked.
        vlan: u16,
    },
    /// The device (or its emulation) lacks the feature.
    #[error("VF {vf}: {setting} refused: {why}")]
    Unsupported {
        /// VF.
        vf: usize,
        /// Setting.
        setting: &'static str,
        /// Why.
        why: &'static str,
    },
}

/// Why `max_tx_rate` is refused.
pub const TX_RATE_UNSUPPORTED: &str = "the 82576's per-VF transmit rate limiter (RTTDQSEL / \
    RTTBCNRC) is not driven by oxpmd: QEMU's igb model (hw/net/igb_core.c) has no write handler \
    for those registers, so the limit could not be applied or tested there";

impl VfTable {
    /// Validates `change` for VF `vf` and applies it to the VF's policy and state; returns the
    /// hardware changes and the signal. On an error nothing changed.
    pub fn admin(&mut self, vf: usize, change: AdminChange) -> Result<AdminOutcome, AdminError> {
        let count = self.len();
        let pf_mac = self.pf_mac();
        let owner_of = |t: &VfTable, mac: MacAddr| -> Option<String> {
            if mac == pf_mac {
                return Some("the PF".into());
            }
            t.iter()
                .enumerate()
                .find(|(i, s)| *i != vf && (s.mac == Some(mac) || s.policy.mac == Some(mac)))
                .map(|(i, _)| format!("VF {i}"))
        };
        if vf >= count {
            return Err(AdminError::UnknownVf { vf, count });
        }
        let range = |setting, value: u64, ok: bool, range| {
            if ok {
                Ok(())
            } else {
                Err(AdminError::OutOfRange {
                    vf,
                    setting,
                    value,
                    range,
                })
            }
        };
        // Validation, with nothing changed yet.
        match change {
            AdminChange::Mac(mac) => {
                if !mac.is_valid_unicast() {
                    return Err(AdminError::BadMac { vf, mac });
                }
                if let Some(owner) = owner_of(self, mac) {
                    return Err(AdminError::MacInUse { vf, mac, owner });
                }
            }
            AdminChange::PortVlan(Some(v)) => {
                range(
                    "vlan",
                    v.into(),
                    (1..=MAX_PORT_VLAN).contains(&v),
                    "1..=4094 (0: none)",
                )?;
                let used = vlan_entries(self);
                if !used.iter().any(|(u, _)| *u == v) && used.len() >= VLVF_ENTRIES {
                    return Err(AdminError::VlanTableFull { vf, vlan: v });
                }
            }
            AdminChange::MaxFrame(f) => range(
                "max_frame",
                f.into(),
                (MIN_FRAME..=MAX_FRAME_HW).contains(&f),
                "64..=9022",
            )?,
            AdminChange::MaxMulticast(n) => range(
                "max_multicast",
                n.into(),
                usize::from(n) <= MAX_MC_HASHES,
                "0..=30",
            )?,
            AdminChange::MaxTxRate(_) => {
                return Err(AdminError::Unsupported {
                    vf,
                    setting: "max_tx_rate",
                    why: TX_RATE_UNSUPPORTED,
                });
            }
            AdminChange::PortVlan(None)
            | AdminChange::Trust(_)
            | AdminChange::SpoofCheck(_)
            | AdminChange::Link(_) => {}
        }
        let Some(s) = self.vf_mut(vf) else {
            return Err(AdminError::UnknownVf { vf, count });
        };
        let ready = s.phase == VfPhase::Ready;
        let mut out = AdminOutcome {
            actions: Vec::new(),
            signal: None,
            note: None,
        };
        match change {
            AdminChange::Mac(mac) => {
                let changed = s.mac != Some(mac);
                s.policy.mac = Some(mac);
                s.mac = Some(mac);
                if ready {
                    out.actions.push(HwAction::SetMac(mac));
                    if changed {
                        out.signal = Some(VfSignal::Reset);
                    }
                }
            }
            AdminChange::PortVlan(v) => {
                s.policy.port_vlan = v;
                if v.is_some() {
                    s.vlans.clear();
                }
                out.actions.push(HwAction::UpdateVlans);
            }
            AdminChange::Trust(on) => {
                s.policy.trusted = on;
                if !on {
                    if s.mc_promisc {
                        s.mc_promisc = false;
                        out.actions.push(HwAction::SetMulticastPromisc(false));
                    }
                    if let (Some(admin), Some(cur)) = (s.policy.mac, s.mac) {
                        if admin != cur {
                            s.mac = Some(admin);
                            if ready {
                                out.actions.push(HwAction::SetMac(admin));
                                out.signal = Some(VfSignal::Reset);
                            }
                        }
                    }
                }
            }
            AdminChange::SpoofCheck(on) => {
                s.policy.spoof_check = on;
                out.actions.push(HwAction::UpdateSpoofCheck);
            }
            AdminChange::Link(l) => {
                let was_down = s.policy.link == LinkState::Disable;
                s.policy.link = l;
                out.actions.push(HwAction::UpdateLink);
                if ready {
                    out.signal = match (was_down, l == LinkState::Disable) {
                        (false, true) => Some(VfSignal::LinkDown),
                        (true, false) => Some(VfSignal::LinkUp),
                        _ => None,
                    };
                }
                if l == LinkState::Enable {
                    out.note = Some(
                        "state enable: the 82576 has no per-VF link override; the VF's STATUS \
                         mirrors the port's physical link"
                            .into(),
                    );
                }
            }
            AdminChange::MaxFrame(f) => {
                s.policy.max_frame = f;
                if s.max_frame > f {
                    s.max_frame = f;
                    out.actions.push(HwAction::SetMaxFrame(f));
                    if ready {
                        out.signal = Some(VfSignal::Reset);
                    }
                }
            }
            AdminChange::MaxMulticast(n) => {
                s.policy.max_multicast = n;
                if s.mc_count > n {
                    s.mc_count = 0;
                    s.mc_hashes = [0; MAX_MC_HASHES];
                    out.actions.push(HwAction::UpdateMulticast);
                    if ready {
                        out.signal = Some(VfSignal::Reset);
                    }
                }
            }
            // Refused during validation.
            AdminChange::MaxTxRate(_) => {}
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sriov::policy::VfPolicy;

    const PF: MacAddr = MacAddr([0x52, 0x54, 0, 0, 1, 0]);

    fn mac(n: u8) -> MacAddr {
        MacAddr([0x02, 0, 0, 0, 0, n])
    }

    fn table() -> VfTable {
        let p = |i| VfPolicy {
            mac: Some(mac(i)),
            ..VfPolicy::default()
        };
        let mut t = VfTable::new(vec![p(1), p(2)], PF, 0).unwrap();
        let o = t.handle(0, &crate::sriov::VfRequest::Reset.encode(), 0);
        assert!(o.refusal.is_none());
        t
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let mut t = table();
        let before = t.clone();
        let cases = [
            (5, AdminChange::Trust(true)),
            (0, AdminChange::Mac(mac(2))),
            (0, AdminChange::Mac(PF)),
            (0, AdminChange::Mac(MacAddr([1, 0, 0, 0, 0, 1]))),
            (0, AdminChange::Mac(MacAddr::ZERO)),
            (0, AdminChange::PortVlan(Some(0))),
            (0, AdminChange::PortVlan(Some(4095))),
            (0, AdminChange::MaxFrame(63)),
            (0, AdminChange::MaxFrame(9023)),
            (0, AdminChange::MaxMulticast(31)),
            (0, AdminChange::MaxTxRate(100)),
        ];
        for (vf, c) in cases {
            let e = t.admin(vf, c).expect_err(&format!("{c:?} accepted"));
            assert!(!e.to_string().is_empty());
            assert_eq!(t, before, "{c:?} changed the table");
        }
        assert!(matches!(
            t.admin(0, AdminChange::Mac(mac(2))),
            Err(AdminError::MacInUse { owner, .. }) if owner == "VF 1"
        ));
        assert!(matches!(
            t.admin(9, AdminChange::Trust(true)),
            Err(AdminError::UnknownVf { vf: 9, count: 2 })
        ));
    }

    #[test]
    fn mac_change_programs_the_filter_and_asks_the_vf_to_reset() {
        let mut t = table();
        let o = t.admin(0, AdminChange::Mac(mac(9))).unwrap();
        assert_eq!(o.actions, vec![HwAction::SetMac(mac(9))]);
        assert_eq!(o.signal, Some(VfSignal::Reset));
        assert_eq!(t.vf(0).unwrap().mac, Some(mac(9)));
        assert_eq!(t.vf(0).unwrap().policy.mac, Some(mac(9)));
        // A VF that has not reset yet gets it at its handshake; nothing is signalled.
        let o = t.admin(1, AdminChange::Mac(mac(8))).unwrap();
        assert!(o.actions.is_empty() && o.signal.is_none());
        assert_eq!(t.vf(1).unwrap().mac, Some(mac(8)));
        // The VF's own later request for the old MAC is refused (not trusted).
        let w = crate::sriov::VfRequest::SetMac(mac(1)).encode();
        assert!(t.handle(0, &w, 0).refusal.is_some());
    }

    #[test]
    fn link_disable_strips_cts_and_keeps_the_pool_off() {
        let mut t = table();
        let o = t.admin(0, AdminChange::Link(LinkState::Disable)).unwrap();
        assert_eq!(o.signal, Some(VfSignal::LinkDown));
        assert_eq!(o.actions, vec![HwAction::UpdateLink]);
        let w = crate::sriov::VfRequest::SetLpe { max_frame: 1526 }.encode();
        let r = t.handle(0, &w, 0);
        assert!(r.refusal.is_none());
        assert_eq!(r.reply.words[0] & MSG_CTS, 0);
        let r = t.handle(0, &crate::sriov::VfRequest::Reset.encode(), 0);
        assert!(!r.actions.contains(&HwAction::EnablePool));
        let o = t.admin(0, AdminChange::Link(LinkState::Auto)).unwrap();
        assert_eq!(o.signal, Some(VfSignal::LinkUp));
        assert_ne!(t.handle(0, &w, 0).reply.words[0] & MSG_CTS, 0);
        // VF 1 untouched throughout.
        assert_eq!(t.vf(1).unwrap().policy.link, LinkState::Auto);
    }

    #[test]
    fn port_vlan_refuses_the_vfs_own_vlans_and_lowered_caps_reset_the_vf() {
        let mut t = table();
        let add = crate::sriov::VfRequest::SetVlan { vid: 7, add: true }.encode();
        assert!(t.handle(0, &add, 0).refusal.is_none());
        let o = t.admin(0, AdminChange::PortVlan(Some(100))).unwrap();
        assert_eq!(o.actions, vec![HwAction::UpdateVlans]);
        assert!(o.signal.is_none());
        assert!(t.vf(0).unwrap().vlans.is_empty());
        assert!(matches!(
            t.handle(0, &add, 0).refusal,
            Some(crate::sriov::Refusal::PortVlanSet { vlan: 100 })
        ));
        let lpe = crate::sriov::VfRequest::SetLpe { max_frame: 9000 }.encode();
        assert!(t.handle(0, &lpe, 0).refusal.is_none());
        let o = t.admin(0, AdminChange::MaxFrame(1526)).unwrap();
        assert_eq!(o.actions, vec![HwAction::SetMaxFrame(1526)]);
        assert_eq!(o.signal, Some(VfSignal::Reset));
        assert_eq!(t.vf(0).unwrap().max_frame, 1526);
    }
}
