//! Failures of the PF host and of the PF device.
#![forbid(unsafe_code)]

use std::time::Duration;

use oxpmd_vfio::BarError;

use super::state::StateError;

/// Failures of the PF host.
#[derive(Debug, thiserror::Error)]
pub enum PfHostError {
    /// A VFIO or sysfs operation failed (the message names the device and the fix).
    #[error(transparent)]
    Vfio(#[from] oxpmd_vfio::Error),
    /// A register access failed.
    #[error("{device}: {op}: {source}")]
    Bar {
        /// PF.
        device: String,
        /// Operation.
        op: &'static str,
        /// Cause.
        source: BarError,
    },
    /// The PF is on a kernel driver.
    #[error(
        "{device}: bound to the kernel driver `{driver}`; unbind it (echo {device} > \
         /sys/bus/pci/drivers/{driver}/unbind) so the PF manager can bind it to vfio-pci"
    )]
    KernelDriver {
        /// PF.
        device: String,
        /// Driver.
        driver: String,
    },
    /// Not an 82576 PF.
    #[error("{device}: {vendor:04x}:{device_id:04x} is not an Intel 82576 PF (8086:10c9)")]
    NotIgbPf {
        /// PF.
        device: String,
        /// Vendor id.
        vendor: u16,
        /// Device id.
        device_id: u16,
    },
    /// Too many VFs for the PF to keep a pool.
    #[error("{device}: {requested} VFs asked; at most {max} so that the PF keeps a pool of its own")]
    TooManyVfs {
        /// PF.
        device: String,
        /// Asked.
        requested: usize,
        /// Limit.
        max: usize,
    },
    /// The device did not leave reset.
    #[error("{device}: CTRL.RST still set {waited:?} after the reset")]
    ResetTimeout {
        /// PF.
        device: String,
        /// Wait.
        waited: Duration,
    },
    /// A PHY access failed.
    #[error("{device}: MDIC write of the PHY control register failed (MDIC = {mdic:#010x})")]
    Phy {
        /// PF.
        device: String,
        /// MDIC value.
        mdic: u32,
    },
    /// The saved state was refused.
    #[error("{device}: saved state refused: {source}")]
    State {
        /// PF.
        device: String,
        /// Why.
        source: StateError,
    },
    /// The policy table does not fit the device.
    #[error("{device}: {what}")]
    Config {
        /// PF.
        device: String,
        /// What.
        what: String,
    },
}
