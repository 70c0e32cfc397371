//! The `xdp:` port on a veth pair of this machine's kernel (skipped where interfaces cannot be
//! created: not root, no veth). The same checks run in the test VM as `vm_xdp_veth`.

mod xdp_common;

use xdp_common::*;

fn skip(what: &str) {
    eprintln!("SKIPPED {what}: cannot create a veth pair here (needs CAP_NET_ADMIN and the veth driver)");
}

#[test]
fn veth_copy_mode_round_trip() {
    if !veth_round_trip(",mode=copy") {
        skip("veth_copy_mode_round_trip");
    }
}

#[test]
fn veth_auto_mode_round_trip() {
    if !veth_round_trip("") {
        skip("veth_auto_mode_round_trip");
    }
}
