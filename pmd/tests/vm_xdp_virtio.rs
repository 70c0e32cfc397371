//! vm-topology: virtio
//!
//! The `xdp:` port on the guest kernel's virtio_net driver: our igb port (OXPMD_PORT2, VFIO)
//! and an `xdp:` port on the kernel interface of the virtio-net device at the other end of its
//! link (OXPMD_PORT3) forward frames between them (`vm_xdp_common::l2fwd`). Run with
//! `cargo xtask vm test vm_xdp_virtio`.

mod vm_kernel_peer;
mod vm_xdp_common;

use std::path::Path;

use vm_kernel_peer::*;

/// Binds the virtio-net device `addr` to the kernel (virtio-pci, then virtio_net) and returns
/// its network interface.
fn kernel_virtio_net(addr: &str) -> String {
    if !Path::new("/sys/module/virtio_net").exists() {
        run(&env("OXPMD_VM_MODPROBE"), &["virtio_net"]);
    }
    if driver_of(addr).is_none() {
        std::fs::write("/sys/bus/pci/drivers/virtio-pci/bind", addr).unwrap();
    }
    let mut iface = String::new();
    wait_for("the virtio-net device's network interface", || {
        let Ok(d) = std::fs::read_dir(dev(addr)) else {
            return false;
        };
        for e in d.flatten() {
            if e.file_name().to_string_lossy().starts_with("virtio")
                && let Ok(Some(n)) = std::fs::read_dir(e.path().join("net")).map(|mut n| n.next())
                && let Ok(n) = n
            {
                iface = n.file_name().to_string_lossy().into_owned();
                return true;
            }
        }
        false
    });
    iface
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn l2fwd_between_our_igb_and_xdp_on_the_kernels_virtio_net() {
    let (ours, peer) = (env("OXPMD_PORT2"), env("OXPMD_PORT3"));
    assert_eq!(env("OXPMD_PORT2_MODEL"), "igb");
    assert_eq!(env("OXPMD_PORT3_MODEL"), "virtio-net");
    vm_xdp_common::l2fwd(
        &ours,
        || {
            let iface = kernel_virtio_net(&peer);
            println!("kernel virtio_net {peer} is {iface}");
            iface
        },
        4096,
    );
    release(&peer);
}
