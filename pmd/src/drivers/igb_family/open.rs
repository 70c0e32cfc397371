//! The steps of opening an 82576 function that the PF and the VF share: BAR0 mapped and checked
//! to hold every register the driver uses, memory decoding and bus mastering on, and bus
//! mastering off again at teardown.
#![forbid(unsafe_code)]

use oxpmd_vfio::{Bar, BarView, Device, RegisterMap};

use super::port_err;
use crate::error::Result;

/// Maps the function's BAR0 and checks it holds every register of `R` ([`view_bar0`]).
pub(crate) fn map_bar0<R: RegisterMap>(name: &str, device: &Device) -> Result<BarView<R>> {
    let bar = device.map_bar(0).map_err(|e| port_err(name, "map BAR0", e))?;
    view_bar0(name, &bar)
}

/// `bar` (a BAR0) seen through the registers of `R`: refused, naming the device, when it does not
/// map them all. The one bounds check of every register access to it.
pub(crate) fn view_bar0<R: RegisterMap>(name: &str, bar: &Bar) -> Result<BarView<R>> {
    BarView::new(bar).map_err(|e| port_err(name, "map BAR0", e))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::igb::regs::IgbReg;
    use crate::drivers::igbvf::regs::VfReg;

    #[test]
    fn a_bar_too_small_for_the_registers_is_refused_at_map_time_naming_the_device() {
        // A VF's 16 KiB BAR0 taken for a PF's.
        let e = view_bar0::<IgbReg>("0000:01:00.0", &Bar::anonymous(0, 0x4000))
            .unwrap_err()
            .to_string();
        for part in [
            "0000:01:00.0",
            "map BAR0",
            "registers of the 82576 PF",
            "0xe400",
            "0x4000",
        ] {
            assert!(e.contains(part), "{part} not in: {e}");
        }
        let e = view_bar0::<VfReg>("0000:01:10.0", &Bar::anonymous(0, 0x1000))
            .unwrap_err()
            .to_string();
        for part in ["0000:01:10.0", "registers of the 82576 VF", "0x3a00"] {
            assert!(e.contains(part), "{part} not in: {e}");
        }
        // The real sizes (128 KiB and 16 KiB) hold every register.
        let pf = view_bar0::<IgbReg>("pf", &Bar::anonymous(0, 0x2_0000)).unwrap();
        let vf = view_bar0::<VfReg>("vf", &Bar::anonymous(0, 0x4000)).unwrap();
        pf.write(crate::drivers::igb::regs::general::STATUS, 3);
        assert_eq!(pf.bar().read32(0x8).unwrap(), 3);
        vf.write(crate::drivers::igbvf::regs::V2PMAILBOX, 1);
        assert_eq!(vf.bar().read32(0x0C40).unwrap(), 1);
    }
}
