//! vm-topology: pair
//!
//! Link-state events of the igb driver in the test VM: QEMU's `set_link` (through the harness's
//! QMP relay) takes the 82576's link down and up; the LSC interrupt on MSI-X vector 0 must deliver
//! each change as exactly one event. Run with `cargo xtask vm test vm_link`.

mod vm_link_common;

use vm_link_common::{down_then_up_once_each, open_started, port_of_model};

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn igb_link_down_and_up_are_one_event_each() {
    let n = port_of_model("igb");
    let (mut port, _pool) = open_started(n);
    let events = port
        .link_events()
        .unwrap_or_else(|e| panic!("port {n}: link events: {e}"));
    // One handle per port: a second would steal the first one's interrupts.
    let second = port.link_events().expect_err("a second handle is refused");
    println!("second handle refused: {second}");
    down_then_up_once_each(events, n);
    // The handle is gone: a new one can be taken again.
    drop(port.link_events().expect("a handle after the first was dropped"));
}
