//! [`IgbError`]: why the igb driver failed (inside `PortError::Driver`).

use std::time::Duration;

use super::rss;
use crate::error::PortError;

/// Failures of the igb driver itself (wrapped in [`PortError::Driver`] with the device and the
/// operation).
#[derive(Debug, thiserror::Error)]
pub enum IgbError {
    /// A VFIO operation failed.
    #[error(transparent)]
    Vfio(#[from] oxpmd_vfio::Error),
    /// An RSS key of the wrong length.
    #[error("RSS key of {len} bytes: the 82576 takes {}", rss::KEY_LEN)]
    RssKeyLength {
        /// Bytes given.
        len: usize,
    },
    /// The device did not leave reset.
    #[error("CTRL.RST still set {0:?} after the reset; the device does not respond")]
    ResetTimeout(Duration),
    /// A PHY register access did not complete.
    #[error("MDIC {op} of PHY register {reg} did not complete within {timeout:?}")]
    MdicTimeout {
        /// "read" or "write".
        op: &'static str,
        /// PHY register.
        reg: u32,
        /// Wait.
        timeout: Duration,
    },
    /// A PHY register access failed.
    #[error("MDIC {op} of PHY register {reg} failed (MDIC.ERROR set, MDIC = {mdic:#010x})")]
    MdicError {
        /// "read" or "write".
        op: &'static str,
        /// PHY register.
        reg: u32,
        /// MDIC value read back.
        mdic: u32,
    },
}

pub(super) fn drv_err(device: &str, op: &'static str, e: impl Into<IgbError>) -> PortError {
    PortError::Driver {
        device: device.to_string(),
        op,
        source: Box::new(e.into()),
    }
}
