//! vm-topology: virtio
//!
//! Link-state events of the virtio-net driver in the test VM: QEMU's `set_link` (through the
//! harness's QMP relay) changes the device's `status` field; the configuration-change interrupt on
//! MSI-X vector 0 must deliver each change as exactly one event. Run with
//! `cargo xtask vm test vm_link`.

mod vm_link_common;

use std::sync::Arc;

use oxpmd_dma::{DmaMap, Mempool, MempoolConfig};
use oxpmd_pmd::{Port, PortError};
use vm_link_common::{down_then_up_once_each, env, port_of_model, start};

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn virtio_link_down_and_up_are_one_event_each() {
    let n = port_of_model("virtio-net");
    let mut port = Port::open(&env(&format!("OXPMD_PORT{n}")), n as u16)
        .unwrap_or_else(|e| panic!("open port {n}: {e}"));
    // Before DRIVER_OK the device sends no configuration interrupt: refused, not silently deaf.
    match port.link_events() {
        Err(e @ PortError::WrongState { .. }) => println!("before start, refused: {e}"),
        other => panic!("link events before start: {other:?}"),
    }
    let map: Arc<dyn DmaMap> = port.dma_map().expect("a PCI port has a DMA map");
    let pool = Mempool::new(&MempoolConfig::new("link-virtio", 1024), map).expect("mempool");
    start(&mut port, &pool, n);
    let events = port
        .link_events()
        .unwrap_or_else(|e| panic!("port {n}: link events: {e}"));
    down_then_up_once_each(events, n);
}
