//! What the administrator allows one VF ([`VfPolicy`]: its MAC, trust, spoof check, VLAN and
//! multicast caps, frame size, mailbox message rate, port VLAN, link state), the limits of those
//! settings and how a bad setting is refused.

use crate::mac::MacAddr;
use crate::sriov::mailbox::MAX_MC_HASHES;

/// Most VFs an 82576 has.
pub const MAX_VFS: usize = 8;
/// Most VLAN filters a VF may ever hold (the hardware's VLVF has 32 entries for everyone).
pub const MAX_VLANS_CAP: usize = 32;
/// Smallest max-frame value a VF may ask for (a minimum Ethernet frame with FCS).
pub const MIN_FRAME: u32 = 64;
/// Largest max-frame value the 82576 supports (RLPML is 14 bits, jumbo up to 9018 + VLAN).
pub const MAX_FRAME_HW: u32 = 9_022;
/// Largest port VLAN id (4095 is reserved by 802.1Q).
pub const MAX_PORT_VLAN: u16 = 4094;

/// The administrator's settings for one VF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfPolicy {
    /// The MAC the administrator gave the VF (None: the VF has none until it sets one, which an
    /// untrusted VF may do only when no MAC was given).
    pub mac: Option<MacAddr>,
    /// A trusted VF may change its MAC, add secondary filters and use multicast promiscuous mode.
    pub trusted: bool,
    /// Transmit anti-spoofing: the VF may only send from its MAC (DTXSWC MAC anti-spoof bit).
    pub spoof_check: bool,
    /// Most VLAN filters the VF may add (0..=32).
    pub max_vlans: u8,
    /// Most multicast hashes the VF may set (0..=30).
    pub max_multicast: u8,
    /// Largest max frame the VF may ask for (bytes, `MIN_FRAME..=MAX_FRAME_HW`).
    pub max_frame: u32,
    /// Messages the VF may send in a burst (token bucket size, >= 1).
    pub msg_burst: u32,
    /// Messages per second the bucket refills.
    pub msg_per_sec: u32,
    /// Keep this VF on the kernel igbvf driver (the manager rewrites its driver_override).
    pub kernel_driver: bool,
    /// The port VLAN (1..=4094): the PF inserts it on everything the VF sends, strips it from
    /// what the VF receives, lets only that VLAN reach the VF, and refuses the VF's own VLAN
    /// requests. None: the VF manages its VLANs within `max_vlans`.
    pub port_vlan: Option<u16>,
    /// The link state the administrator set for the VF.
    pub link: LinkState,
}

/// The link a VF sees, as `ip link set DEV vf N state auto|enable|disable` sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkState {
    /// The VF follows the port's link.
    #[default]
    Auto,
    /// Not disabled by the administrator. The 82576 has no per-VF link override: the VF's
    /// STATUS register mirrors the port, so a VF still sees the port's physical link go down.
    Enable,
    /// Down: the VF's pool neither receives nor transmits, and the PF's messages to it carry no
    /// CTS (a VF driver reports its link down).
    Disable,
}

impl LinkState {
    /// `auto`, `enable` or `disable`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Auto => "auto",
            LinkState::Enable => "enable",
            LinkState::Disable => "disable",
        }
    }

    /// Parses `auto`, `enable` or `disable`.
    pub fn parse(s: &str) -> Option<LinkState> {
        match s {
            "auto" => Some(LinkState::Auto),
            "enable" => Some(LinkState::Enable),
            "disable" => Some(LinkState::Disable),
            _ => None,
        }
    }
}

impl Default for VfPolicy {
    /// Deny by default: untrusted, spoof-checked, no admin MAC (the manager assigns one),
    /// 8 VLANs, 30 multicast hashes, frames up to the device's maximum (as the kernel's igb PF
    /// allows; DPDK's igbvf asks 1526 for the default MTU), 64 messages burst refilled at 32 per
    /// second, no port VLAN, link auto.
    fn default() -> Self {
        VfPolicy {
            mac: None,
            trusted: false,
            spoof_check: true,
            max_vlans: 8,
            max_multicast: MAX_MC_HASHES as u8,
            max_frame: MAX_FRAME_HW,
            msg_burst: 64,
            msg_per_sec: 32,
            kernel_driver: false,
            port_vlan: None,
            link: LinkState::Auto,
        }
    }
}

/// A policy setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A value outside its bounds.
    #[error("VF {vf}: {field} = {value} is out of range {range}")]
    OutOfRange {
        /// VF.
        vf: usize,
        /// Setting.
        field: &'static str,
        /// Value.
        value: u64,
        /// Allowed range.
        range: &'static str,
    },
    /// The administrator MAC is not unicast.
    #[error("VF {vf}: MAC {mac} is not a valid unicast address")]
    BadMac {
        /// VF.
        vf: usize,
        /// Address.
        mac: MacAddr,
    },
    /// Two VFs would share a MAC.
    #[error("VFs {a} and {b} both have MAC {mac}; each VF needs its own")]
    DuplicateMac {
        /// First VF.
        a: usize,
        /// Second VF.
        b: usize,
        /// Address.
        mac: MacAddr,
    },
    /// More VFs than the device has.
    #[error("{count} VFs configured; the 82576 has at most {MAX_VFS}")]
    TooManyVfs {
        /// Count.
        count: usize,
    },
}

impl VfPolicy {
    /// Checks every field's bounds.
    pub fn validate(&self, vf: usize) -> Result<(), PolicyError> {
        let range = |field, value: u64, ok: bool, range| {
            if ok {
                Ok(())
            } else {
                Err(PolicyError::OutOfRange {
                    vf,
                    field,
                    value,
                    range,
                })
            }
        };
        if let Some(mac) = self.mac {
            if !mac.is_valid_unicast() {
                return Err(PolicyError::BadMac { vf, mac });
            }
        }
        range(
            "max_vlans",
            self.max_vlans.into(),
            usize::from(self.max_vlans) <= MAX_VLANS_CAP,
            "0..=32",
        )?;
        range(
            "max_multicast",
            self.max_multicast.into(),
            usize::from(self.max_multicast) <= MAX_MC_HASHES,
            "0..=30",
        )?;
        range(
            "max_frame",
            self.max_frame.into(),
            (MIN_FRAME..=MAX_FRAME_HW).contains(&self.max_frame),
            "64..=9022",
        )?;
        range(
            "msg_burst",
            self.msg_burst.into(),
            (1..=100_000).contains(&self.msg_burst),
            "1..=100000",
        )?;
        range(
            "msg_per_sec",
            self.msg_per_sec.into(),
            self.msg_per_sec <= 100_000,
            "0..=100000",
        )?;
        if let Some(v) = self.port_vlan {
            range(
                "port_vlan",
                v.into(),
                (1..=MAX_PORT_VLAN).contains(&v),
                "1..=4094",
            )?;
        }
        Ok(())
    }
}
