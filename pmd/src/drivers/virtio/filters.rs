//! The RX filters of a virtio-net port: promiscuous and all-multicast mode and the multicast
//! address list (VIRTIO_NET_F_CTRL_RX: the RX mode commands and `VIRTIO_NET_CTRL_MAC_TABLE_SET`),
//! the VLAN filter table (VIRTIO_NET_F_CTRL_VLAN: `VIRTIO_NET_CTRL_VLAN_ADD` / `_DEL`); which of
//! them a device can have, and the control commands that program them (virtio 1.2, 5.1.6.5.1 to
//! 5.1.6.5.3).
//!
//! A reset ends every one of the device's filters (it is promiscuous again, its MAC table empty,
//! its VLAN table empty by the specification, full on QEMU 10.0: see [`RxFilters::commands`]),
//! so the driver keeps what was asked
//! ([`RxFilters`]) and sends all of it after every DRIVER_OK ([`RxFilters::commands`]); while the
//! device runs, each change is one command.
//!
//! How the three RX settings combine is the device's: promiscuous mode receives every frame (QEMU's
//! `receive_filter` in hw/net/virtio-net.c returns before its VLAN and MAC checks), all-multicast
//! mode every multicast frame of a VLAN the filter lets through, the list only its groups.
#![forbid(unsafe_code)]

use super::ctrl::{CtrlCommand, CtrlError, MAX_TABLE_ENTRIES};
use super::regs::{ctrl, feature};
use crate::driver::Capabilities;
use crate::mac::MacAddr;
use crate::vlan::MAX_VID;

/// Most groups of the multicast list: what QEMU's MAC table holds (`MAC_TABLE_ENTRIES`, 64, in
/// hw/net/virtio-net.c). The specification sets no bound, but QEMU given a longer list receives
/// every multicast frame instead (it sets `multi_overflow`), which is not the list asked for: a
/// longer list is refused, all-multicast mode is the way to more groups.
pub const MAX_MULTICAST: usize = MAX_TABLE_ENTRIES;

/// Words of the VLAN table (one bit per VLAN id 0..=4095).
const VLAN_WORDS: usize = (MAX_VID as usize + 1) / 64;

/// One control command: what it does (for messages), its class, command and data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterCommand {
    /// The operation, as error messages name it.
    pub op: &'static str,
    /// `class` of the command header.
    pub class: u8,
    /// `command` of the command header.
    pub cmd: u8,
    /// The command-specific data.
    pub data: Vec<u8>,
}

impl FilterCommand {
    /// Sends the command through the control queue and waits for the device's answer.
    pub fn send(&self, q: &mut dyn CtrlCommand) -> Result<(), CtrlError> {
        q.command(self.class, self.cmd, &self.data)
    }

    /// `VIRTIO_NET_CTRL_RX_PROMISC`.
    pub fn promiscuous(on: bool) -> FilterCommand {
        FilterCommand {
            op: "set promiscuous mode",
            class: ctrl::CLASS_RX,
            cmd: ctrl::RX_PROMISC,
            data: vec![u8::from(on)],
        }
    }

    /// `VIRTIO_NET_CTRL_RX_ALLMULTI`.
    pub fn all_multicast(on: bool) -> FilterCommand {
        FilterCommand {
            op: "set all-multicast mode",
            class: ctrl::CLASS_RX,
            cmd: ctrl::RX_ALLMULTI,
            data: vec![u8::from(on)],
        }
    }

    /// `VIRTIO_NET_CTRL_VLAN_ADD` (`on`) or `_DEL` of VLAN id `vid` (le16).
    pub fn vlan(vid: u16, on: bool) -> FilterCommand {
        FilterCommand {
            op: if on {
                "add a VLAN filter"
            } else {
                "remove a VLAN filter"
            },
            class: ctrl::CLASS_VLAN,
            cmd: if on { ctrl::VLAN_ADD } else { ctrl::VLAN_DEL },
            data: vid.to_le_bytes().to_vec(),
        }
    }

    /// `VIRTIO_NET_CTRL_MAC_TABLE_SET` with no unicast entry (the device matches its own MAC
    /// address by itself) and the groups of `multicast`: `le32 0`, then `le32 n` and the `n`
    /// addresses. `multicast` holds at most [`MAX_MULTICAST`] addresses (checked by the caller).
    pub fn mac_table(multicast: &[MacAddr]) -> FilterCommand {
        let mut data = Vec::with_capacity(8 + 6 * multicast.len());
        data.extend_from_slice(&0u32.to_le_bytes());
        data.extend_from_slice(&(multicast.len() as u32).to_le_bytes());
        for m in multicast {
            data.extend_from_slice(&m.0);
        }
        FilterCommand {
            op: "set the multicast address list",
            class: ctrl::CLASS_MAC,
            cmd: ctrl::MAC_TABLE_SET,
            data,
        }
    }
}

/// Why a filter cannot be set on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The device does not have the feature (the operation, naming it and the fix).
    Unsupported(&'static str),
    /// The request is out of what the device takes (the reason).
    Invalid(&'static str),
}

/// The filter capabilities of a device that offers `offered` and negotiated `features`: the VLAN
/// filter when it offers CTRL_VLAN (negotiated at configure only for a port that asks for the
/// filter), the multicast list when CTRL_RX is negotiated (it is whenever offered).
pub fn capabilities(offered: u64, features: u64) -> Capabilities {
    let vlan = if offers_vlan_filter(offered) {
        Capabilities::VLAN_FILTER
    } else {
        Capabilities::NONE
    };
    let multicast = if features & feature::NET_CTRL_RX != 0 {
        Capabilities::MULTICAST_LIST
    } else {
        Capabilities::NONE
    };
    vlan | multicast
}

/// Whether a device offering `offered` can have a VLAN filter table (CTRL_VLAN, and the control
/// queue that carries its commands).
pub fn offers_vlan_filter(offered: u64) -> bool {
    let vlan = feature::NET_CTRL_VQ | feature::NET_CTRL_VLAN;
    offered & vlan == vlan
}

/// The refusal of a VLAN filter on a device that does not offer one.
pub const NO_VLAN_FILTER: Refusal = Refusal::Unsupported(
    "set a VLAN filter (the device offers no VIRTIO_NET_F_CTRL_VLAN control virtqueue command; in \
     QEMU it is `ctrl_vlan=on`, the default, with `ctrl_vq=on`)",
);

/// Whether VLAN id `vid` can be added to or removed from the table of a device offering
/// `offered` with `features` negotiated.
pub fn vlan_refusal(offered: u64, features: u64, vid: u16) -> Option<Refusal> {
    if !offers_vlan_filter(offered) {
        return Some(NO_VLAN_FILTER);
    }
    if features & feature::NET_CTRL_VLAN == 0 {
        return Some(Refusal::Unsupported(
            "set a VLAN filter (VIRTIO_NET_F_CTRL_VLAN is negotiated only for a port configured with \
             PortConfig::vlan_filter(true))",
        ));
    }
    (vid > MAX_VID).then_some(Refusal::Invalid("VLAN id out of range 0..=4095"))
}

/// Whether a multicast list of `len` groups can be set on a device with `features` negotiated.
pub fn multicast_refusal(features: u64, len: usize) -> Option<Refusal> {
    if features & feature::NET_CTRL_RX == 0 {
        return Some(Refusal::Unsupported(
            "set the multicast address list (the device offers no VIRTIO_NET_F_CTRL_RX control \
             virtqueue; in QEMU it is `ctrl_rx=on`, the default, with `ctrl_vq=on`)",
        ));
    }
    (len > MAX_MULTICAST).then_some(Refusal::Invalid(
        "virtio-net takes at most 64 multicast groups (QEMU's MAC table; a device given more \
         receives every group): use all-multicast mode for more",
    ))
}

/// The RX filters asked of the device: applied at once while it runs, and all of them again
/// after each DRIVER_OK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxFilters {
    /// Promiscuous mode (not by default, like the other drivers; the device starts promiscuous).
    pub promiscuous: bool,
    /// All-multicast mode.
    pub all_multicast: bool,
    multicast: Vec<MacAddr>,
    vlans: [u64; VLAN_WORDS],
}

impl Default for RxFilters {
    fn default() -> Self {
        RxFilters {
            promiscuous: false,
            all_multicast: false,
            multicast: Vec::new(),
            vlans: [0; VLAN_WORDS],
        }
    }
}

impl RxFilters {
    /// Replaces the multicast list (at most [`MAX_MULTICAST`] groups: checked by
    /// [`multicast_refusal`]).
    pub fn set_multicast(&mut self, addrs: &[MacAddr]) {
        self.multicast = addrs.to_vec();
    }

    /// The multicast list.
    pub fn multicast(&self) -> &[MacAddr] {
        &self.multicast
    }

    /// Adds VLAN id `vid` to the table (`on`) or removes it; ids above 4095 change nothing
    /// (refused by [`vlan_refusal`] before).
    pub fn set_vlan(&mut self, vid: u16, on: bool) {
        let Some(w) = self.vlans.get_mut(usize::from(vid) / 64) else {
            return;
        };
        let bit = 1u64 << (vid % 64);
        if on {
            *w |= bit;
        } else {
            *w &= !bit;
        }
    }

    /// Whether VLAN id `vid` is in the table.
    pub fn has_vlan(&self, vid: u16) -> bool {
        self.vlans
            .get(usize::from(vid) / 64)
            .is_some_and(|w| w & (1 << (vid % 64)) != 0)
    }

    /// The VLAN ids in the table, in order.
    pub fn vlans(&self) -> impl Iterator<Item = u16> + '_ {
        (0..=MAX_VID).filter(|v| self.has_vlan(*v))
    }

    /// Every command that brings a freshly reset device (promiscuous, its MAC table empty) to
    /// these filters, for what `features` lets the driver program: the VLAN table and a
    /// non-empty multicast list first, the modes last, so no frame the port wants is dropped
    /// while they are sent.
    pub fn commands(&self, features: u64) -> Vec<FilterCommand> {
        let mut out = Vec::new();
        if features & feature::NET_CTRL_VLAN != 0 {
            // Every VLAN id, added or removed, not only the table's: the specification's device
            // starts with an empty table, but QEMU 10.0's starts full (hw/virtio/virtio.c
            // `virtio_reset` calls `set_features(0)`, whose hw/net/virtio-net.c
            // `virtio_net_set_features` fills the table without CTRL_VLAN and no longer empties
            // it when CTRL_VLAN is negotiated afterwards), so a tagged frame of any VLAN would
            // pass. 4096 commands, at start only.
            out.extend((0..=MAX_VID).map(|v| FilterCommand::vlan(v, self.has_vlan(v))));
        }
        if features & feature::NET_CTRL_RX != 0 {
            if !self.multicast.is_empty() {
                out.push(FilterCommand::mac_table(&self.multicast));
            }
            out.push(FilterCommand::all_multicast(self.all_multicast));
            out.push(FilterCommand::promiscuous(self.promiscuous));
        }
        out
    }

    /// Sends [`commands`](Self::commands) through the control queue, in order; stops at the
    /// first that fails, returning its operation and why.
    pub fn replay(&self, features: u64, q: &mut dyn CtrlCommand) -> Result<(), (&'static str, CtrlError)> {
        for c in self.commands(features) {
            c.send(q).map_err(|e| (c.op, e))?;
        }
        Ok(())
    }
}
