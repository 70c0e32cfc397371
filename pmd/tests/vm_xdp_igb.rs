//! vm-topology: pair
//!
//! The `xdp:` port on the guest kernel's igb driver: our igb port (OXPMD_PORT0, VFIO) and an
//! `xdp:` port on the kernel interface of the igb port at the other end of the link
//! (OXPMD_PORT1) forward frames between them (`vm_xdp_common::l2fwd`). Run with
//! `cargo xtask vm test vm_xdp_igb`.

mod vm_kernel_peer;
mod vm_xdp_common;

use vm_kernel_peer::*;

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn l2fwd_between_our_igb_and_xdp_on_the_kernels_igb() {
    let (ours, peer) = (env("OXPMD_PORT0"), env("OXPMD_PORT1"));
    assert_eq!(env("OXPMD_PORT0_MODEL"), "igb");
    vm_xdp_common::l2fwd(
        &ours,
        || {
            let iface = kernel_igb(&peer, &[]);
            println!("kernel igb {peer} is {iface}");
            iface
        },
        4096,
    );
    release(&peer);
}
