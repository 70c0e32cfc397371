//! vm-topology: virtio
//!
//! RX interrupts of the virtio-net driver in the test VM (QEMU's virtio-net-pci, split rings: the
//! harness does not offer packed ones), against its igb peer: both ports' RX queues in one
//! `wait_for_rx`, the same bursts and idle gaps as the igb test (`vm_rx_interrupt_common`). The
//! virtio queue signals on its own MSI-X vector (`queue_msix_vector`), and between waits its ring
//! tells the device not to interrupt (`avail.flags` NO_INTERRUPT). Run with
//! `cargo xtask vm test vm_rx_interrupt_virtio`.

mod vm_link_common;

mod vm_rx_interrupt_common;

use vm_link_common::{env, open_started, port_of_model};
use vm_rx_interrupt_common::{Side, bursts_and_idle_gaps};

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn virtio_bursts_and_idle_gaps_strand_no_frame() {
    let v = port_of_model("virtio-net");
    let peer: usize = env(&format!("OXPMD_PORT{v}_PEER")).parse().unwrap();
    let (mut pi, pool_i) = open_started(peer);
    let (mut pv, pool_v) = open_started(v);
    let (mac_i, mac_v) = (pi.mac_addr(), pv.mac_addr());
    let igb = Side::first_pair(&mut pi, &pool_i, mac_i);
    let vio = Side::first_pair(&mut pv, &pool_v, mac_v);
    bursts_and_idle_gaps(igb, vio, [&format!("igb {peer}"), &format!("virtio-net {v}")]);
}
