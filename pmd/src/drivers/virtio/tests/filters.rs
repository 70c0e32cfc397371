//! The RX filters: which a device has, what is refused, and what is sent after a reset for the
//! features negotiated.

use crate::driver::Capabilities;
use crate::drivers::virtio::filters::{
    self, FilterCommand, MAX_MULTICAST, NO_VLAN_FILTER, Refusal, RxFilters,
};
use crate::drivers::virtio::regs::{ctrl, feature};
use crate::mac::MacAddr;

const CTRL: u64 = feature::NET_CTRL_VQ;

#[test]
fn capabilities_follow_what_the_device_offers() {
    let all = CTRL | feature::NET_CTRL_RX | feature::NET_CTRL_VLAN;
    // The VLAN filter from what is offered (negotiated only at configure), the list from CTRL_RX.
    let open = CTRL | feature::NET_CTRL_RX;
    assert_eq!(
        filters::capabilities(all, open),
        Capabilities::VLAN_FILTER | Capabilities::MULTICAST_LIST
    );
    assert_eq!(
        filters::capabilities(all & !feature::NET_CTRL_VLAN, open),
        Capabilities::MULTICAST_LIST
    );
    assert_eq!(
        filters::capabilities(all & !CTRL, 0),
        Capabilities::NONE,
        "without the control queue, neither"
    );
    assert_eq!(
        filters::capabilities(all, CTRL),
        Capabilities::VLAN_FILTER,
        "CTRL_RX not negotiated: no list"
    );
}

#[test]
fn filters_the_device_lacks_are_refused_naming_the_feature_and_the_fix() {
    let offered = CTRL | feature::NET_CTRL_RX | feature::NET_CTRL_VLAN;
    let negotiated = offered;
    assert_eq!(filters::vlan_refusal(offered, negotiated, 4095), None);
    assert_eq!(
        filters::vlan_refusal(offered, negotiated, 4096),
        Some(Refusal::Invalid("VLAN id out of range 0..=4095"))
    );
    // Offered, not negotiated: the port was configured without the filter.
    let Some(Refusal::Unsupported(op)) =
        filters::vlan_refusal(offered, negotiated & !feature::NET_CTRL_VLAN, 1)
    else {
        panic!("accepted without CTRL_VLAN negotiated")
    };
    assert!(op.contains("PortConfig::vlan_filter(true)"), "{op}");
    // Not offered: the device has no table.
    let no_vlan = offered & !feature::NET_CTRL_VLAN;
    assert_eq!(filters::vlan_refusal(no_vlan, no_vlan, 1), Some(NO_VLAN_FILTER));
    let Refusal::Unsupported(op) = NO_VLAN_FILTER else {
        unreachable!()
    };
    assert!(
        op.contains("VIRTIO_NET_F_CTRL_VLAN") && op.contains("ctrl_vlan=on"),
        "{op}"
    );

    assert_eq!(filters::multicast_refusal(negotiated, MAX_MULTICAST), None);
    assert_eq!(filters::multicast_refusal(negotiated, 0), None);
    let Some(Refusal::Invalid(why)) = filters::multicast_refusal(negotiated, MAX_MULTICAST + 1) else {
        panic!("65 groups accepted")
    };
    assert!(why.contains("64") && why.contains("all-multicast"), "{why}");
    let Some(Refusal::Unsupported(op)) = filters::multicast_refusal(CTRL, 1) else {
        panic!("accepted without CTRL_RX")
    };
    assert!(
        op.contains("VIRTIO_NET_F_CTRL_RX") && op.contains("ctrl_rx=on"),
        "{op}"
    );
}

#[test]
fn the_vlan_table_holds_what_was_added_and_not_what_was_removed() {
    let mut f = RxFilters::default();
    assert_eq!(f.vlans().count(), 0, "empty, like the device's after a reset");
    for v in [4095, 0, 100, 200, 100] {
        f.set_vlan(v, true);
    }
    f.set_vlan(200, false);
    f.set_vlan(201, false);
    f.set_vlan(4096, true);
    f.set_vlan(u16::MAX, true);
    assert_eq!(f.vlans().collect::<Vec<_>>(), vec![0, 100, 4095]);
}

fn names(c: &[FilterCommand]) -> Vec<(u8, u8)> {
    c.iter().map(|c| (c.class, c.cmd)).collect()
}

/// The VLAN commands of `c`: (VLAN id, added).
fn vlan_commands(c: &[FilterCommand]) -> Vec<(u16, bool)> {
    c.iter()
        .filter(|c| c.class == ctrl::CLASS_VLAN)
        .map(|c| {
            assert_eq!(c.data.len(), 2, "{c:?}");
            (
                u16::from_le_bytes([c.data[0], c.data[1]]),
                c.cmd == ctrl::VLAN_ADD,
            )
        })
        .collect()
}

/// With CTRL_VLAN every VLAN id is programmed, added or removed (a device may start with a full
/// table), before the multicast list and the modes.
#[test]
fn a_reset_device_gets_every_filter_its_features_allow() {
    let mut f = RxFilters::default();
    let table = (ctrl::CLASS_MAC, ctrl::MAC_TABLE_SET);
    let modes = [
        (ctrl::CLASS_RX, ctrl::RX_ALLMULTI),
        (ctrl::CLASS_RX, ctrl::RX_PROMISC),
    ];
    let rx = CTRL | feature::NET_CTRL_RX;
    let all = rx | feature::NET_CTRL_VLAN;
    // Defaults without CTRL_VLAN: the modes (the device starts promiscuous), no empty table.
    assert_eq!(names(&f.commands(rx)), modes.to_vec());
    assert_eq!(f.commands(rx)[1], FilterCommand::promiscuous(false));
    // With it and an empty table: every VLAN id removed, then the modes.
    let c = f.commands(all);
    let removed: Vec<(u16, bool)> = (0..=4095).map(|v| (v, false)).collect();
    assert_eq!(vlan_commands(&c), removed);
    assert_eq!(names(&c[4096..]), modes.to_vec());

    f.set_vlan(10, true);
    f.set_vlan(20, true);
    f.set_multicast(&[MacAddr([0x33, 0x33, 0, 0, 0, 1])]);
    f.all_multicast = true;
    let c = f.commands(all);
    let want: Vec<(u16, bool)> = (0..=4095).map(|v| (v, v == 10 || v == 20)).collect();
    assert_eq!(vlan_commands(&c[..4096]), want, "the VLAN ids first, in order");
    assert_eq!(c[10], FilterCommand::vlan(10, true));
    assert_eq!(c[11], FilterCommand::vlan(11, false));
    assert_eq!(names(&c[4096..]), [vec![table], modes.to_vec()].concat());
    assert_eq!(c[4096], FilterCommand::mac_table(f.multicast()));
    assert_eq!(c[4097], FilterCommand::all_multicast(true));
    // Without CTRL_VLAN negotiated no VLAN command; without CTRL_RX only those.
    assert_eq!(names(&f.commands(rx)), [vec![table], modes.to_vec()].concat());
    assert_eq!(vlan_commands(&f.commands(CTRL | feature::NET_CTRL_VLAN)), want);
    assert_eq!(f.commands(CTRL | feature::NET_CTRL_VLAN).len(), 4096);
    assert!(f.commands(0).is_empty());
    // The list emptied: the reset table is already empty.
    f.set_multicast(&[]);
    assert_eq!(names(&f.commands(rx)), modes.to_vec());
}
