//! vm-topology: virtio-tap
//!
//! TCP segmentation offload of our virtio-net port through the device's own segmentation
//! (VIRTIO_NET_F_HOST_TSO4/6): in the `virtio-tap` topology the link between the kernel's igb
//! (OXPMD_PORT2) and our virtio-net port (OXPMD_PORT3) runs through two host taps in a bridge,
//! the virtio end's with vnet headers, so QEMU's virtio-net offers CSUM and HOST_TSO4/6. Our port
//! sends one 20 000-byte TCP payload per address family as one chained GSO packet; QEMU hands it
//! to the host kernel whole, the host kernel cuts it for the igb end's tap (which takes no
//! offloads), and a live tshark on the kernel's igb port must see valid segments of the MSS.
//! Run with `cargo xtask vm test vm_tso_virtio` (root on the host: taps and a bridge).

mod vm_kernel_peer;
use vm_kernel_peer::*;
mod vm_tso_common;
use vm_tso_common::tso_to_the_kernel;

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn virtio_net_tso_segments_reach_the_kernel_valid_over_ipv4_and_ipv6() {
    let (ours, peer_addr, peer_mac) = linked_ports(3, "virtio-net", 2);
    let port = open_started(&ours, "vm_tso_virtio", |c| c);
    println!("{}: capabilities {}", ours, port.0.info().capabilities);
    tso_to_the_kernel(port, &peer_addr, peer_mac);
}
