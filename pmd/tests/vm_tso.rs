//! vm-topology: pair
//!
//! TCP segmentation offload against the guest kernel on the other end of the link: our igb port
//! (OXPMD_PORT0), or our igbvf on a VF of that port with the kernel's igb as its PF, sends one
//! 20 000-byte TCP payload per address family as a single chained packet flagged `TX_TCP_SEG`
//! (MSS 1448 over IPv4, 1428 over IPv6); the kernel's igb port (OXPMD_PORT1, GRO off) is captured
//! by a live tshark, which must see the segments the device cut:
//! each at most the MSS, consecutive sequence numbers, valid IPv4 header and TCP checksums, and
//! the payload byte-exact once put back together. Run with `cargo xtask vm test vm_tso`.

use oxpmd_pmd::MacAddr;

mod vm_kernel_peer;
use vm_kernel_peer::*;
mod vm_tso_common;
use vm_tso_common::tso_to_the_kernel;

/// The MAC the kernel's PF gives its VF (locally administered).
const VF_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0x80, 0x01]);

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn igb_tso_segments_reach_the_kernel_valid_over_ipv4_and_ipv6() {
    let (ours, peer_addr, peer_mac) = linked_ports(0, "igb", 1);
    tso_to_the_kernel(open_started(&ours, "vm_tso", |c| c), &peer_addr, peer_mac);
}

/// Our igbvf on a VF of port 0 whose PF is the kernel's igb (standard MTU), port 1 the kernel's
/// capturing peer.
#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn igbvf_on_the_kernel_pf_tso_segments_reach_the_kernel_valid_over_ipv4_and_ipv6() {
    let (pf, peer_addr, peer_mac) = linked_ports(0, "igb", 1);
    let vf = KernelPfVf::ready(&pf, VF_MAC, 1500);
    println!("kernel PF {pf} is {}, its VF {} ({VF_MAC})", vf.pf.iface, vf.vf);
    let ours = open_started(&vf.vf, "vm_tso", |c| c);
    assert_eq!(ours.0.info().driver, "igbvf");
    assert_eq!(ours.0.mac_addr(), VF_MAC, "the MAC the kernel's PF gave the VF");
    tso_to_the_kernel(ours, &peer_addr, peer_mac);
}
