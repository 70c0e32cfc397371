//! vm-topology: pair
//!
//! The `xdp:` port on a veth pair of the guest kernel (driver-independent: no NIC involved):
//! the checks of `xdp_common` (peer → port byte-exact and none lost, port → peer from the UMEM
//! and from another pool, bad input), which must run here rather than skip. Run with
//! `cargo xtask vm test vm_xdp_veth`.

mod xdp_common;

use std::path::Path;

fn load_veth() {
    if !Path::new("/sys/module/veth").exists() {
        let m = std::env::var("OXPMD_VM_MODPROBE").expect("OXPMD_VM_MODPROBE: run in the test VM");
        let st = std::process::Command::new(m).arg("veth").status().unwrap();
        assert!(st.success(), "load veth: {st}");
    }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn veth_round_trip_in_the_guest() {
    load_veth();
    println!(
        "guest kernel {}",
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    );
    assert!(
        xdp_common::veth_round_trip(",mode=copy"),
        "a veth pair must be possible in the VM"
    );
    assert!(
        xdp_common::veth_round_trip(""),
        "a veth pair must be possible in the VM"
    );
}
