//! The steps of opening an 82576 function that the PF and the VF share: BAR0 mapped, memory
//! decoding and bus mastering on, and bus mastering off again at teardown.
#![forbid(unsafe_code)]

use oxpmd_vfio::{Bar, Device};

use super::port_err;
use crate::error::Result;

/// Maps the function's BAR0 (its registers).
pub(crate) fn map_bar0(name: &str, device: &Device) -> Result<Bar> {
    device.map_bar(0).map_err(|e| port_err(name, "map BAR0", e))
}

/// Memory decoding and bus mastering on in the function's command register (a function reset,
/// ours or another's, clears them).
pub(crate) fn enable_bus_master(name: &str, device: &Device) -> Result<()> {
    device
        .enable_memory_and_bus_master()
        .map_err(|e| port_err(name, "enable memory space and bus mastering", e))
}

/// Bus mastering off at teardown (after every queue was disabled): the function can no longer
/// reach memory. A failure is logged: teardown goes on.
pub(crate) fn disable_bus_master(name: &str, device: &Device) {
    if let Err(e) = device.disable_bus_master() {
        log::error!("{name}: teardown: bus master off: {e}");
    }
}
