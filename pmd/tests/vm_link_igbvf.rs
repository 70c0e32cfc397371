//! vm-topology: pair
//!
//! Link-state events of our igbvf on a VF of our userspace PF (`examples/sriov-pf`): QEMU's
//! `set_link` takes the PF's 82576 link down and up (the VF's STATUS follows it); the VF has no
//! link interrupt of its own, so its handle polls, and each change must still arrive as exactly
//! one event. Run with `cargo xtask vm test vm_link_igbvf`.

mod vm_link_common;
mod vm_sriov_common;

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn a_vf_sees_its_pf_link_go_down_and_up_once_each() {
    vm_sriov_common::init_log();
    let pf = vm_link_common::env("OXPMD_PORT0");
    let (m, mut vf, _pool, _rx, _tx) = vm_sriov_common::started_vf(&pf);
    let events = vf
        .link_events()
        .unwrap_or_else(|e| panic!("VF 0: link events: {e}"));
    // Port 0 is the PF's NIC: its link is the VF's.
    vm_link_common::down_then_up_once_each(events, 0);
    let (ok, out) = m.stop();
    assert!(ok, "{out}");
}
