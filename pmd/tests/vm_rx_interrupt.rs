//! vm-topology: pair
//!
//! RX interrupts of the igb driver in the test VM: both ports' RX queues in one
//! `wait_for_rx`, bursts of 1 to 100 frames alternating direction with idle gaps between them,
//! sent either before the wait starts (the frames are already in the ring when it arms: the look
//! after the unmask must find them) or while it sleeps (the MSI-X vector must wake it). Every
//! frame must arrive, none may be stranded, and an idle gap must not wake the wait (the shared
//! body: `vm_rx_interrupt_common`). Run with
//! `cargo xtask vm test vm_rx_interrupt`.

mod vm_link_common;

mod vm_rx_interrupt_common;

use oxpmd_pmd::MacAddr;
use vm_link_common::{env, open_started};
use vm_rx_interrupt_common::{Side, bursts_and_idle_gaps};

fn mac(n: usize) -> MacAddr {
    env(&format!("OXPMD_PORT{n}_MAC")).parse().unwrap()
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn bursts_and_idle_gaps_strand_no_frame() {
    let (mut p0, pool0) = open_started(0);
    let (mut p1, pool1) = open_started(1);
    let s0 = Side::first_pair(&mut p0, &pool0, mac(0));
    let s1 = Side::first_pair(&mut p1, &pool1, mac(1));
    bursts_and_idle_gaps(s0, s1, ["igb 0", "igb 1"]);
}
