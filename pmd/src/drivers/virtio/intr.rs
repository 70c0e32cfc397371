//! virtio-net link-state events: the configuration-change interrupt on MSI-X vector 0.
//!
//! With VIRTIO_NET_F_STATUS the device keeps the link in the `status` field of its configuration
//! and signals every change of the configuration on the vector written to the common
//! configuration's `msix_config` (read back: a device that cannot use it answers NO_VECTOR). A
//! device sends configuration-change notifications only after DRIVER_OK, so a handle made before
//! the port is started could miss a change; it is refused until then. Without F_STATUS the
//! specification says the link is always up: nothing could ever be reported, so it is refused too.
#![forbid(unsafe_code)]

use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::time::Duration;

use oxpmd_vfio::BarError;

use super::regs::{common, feature, netcfg};
use super::{DRIVER_NAME, VirtioError, VirtioShared, drv_err};
use crate::driver::LinkStatus;
use crate::error::{PortError, Result};
use crate::link_events::{LinkEventSource, MsixWakeup};

/// The MSI-X vector of configuration changes.
pub(crate) const CONFIG_VECTOR: u16 = 0;

/// The link as the device configuration tells it (always up without F_STATUS).
pub(crate) fn read_link(shared: &VirtioShared, features: u64) -> std::result::Result<LinkStatus, BarError> {
    if features & feature::NET_STATUS == 0 {
        return Ok(LinkStatus {
            up: true,
            speed_mbps: 0,
            full_duplex: true,
        });
    }
    let st = shared
        .read_device_cfg::<2>(netcfg::STATUS)?
        .map(u16::from_le_bytes)
        .unwrap_or(0);
    let up = st & netcfg::STATUS_LINK_UP != 0;
    Ok(LinkStatus {
        up,
        speed_mbps: 0,
        full_duplex: up,
    })
}

/// The virtio-net [`LinkEventSource`]; dropping it detaches the configuration vector.
pub(crate) struct VirtioLinkSource {
    shared: Arc<VirtioShared>,
    features: u64,
    wake: MsixWakeup,
}

impl VirtioLinkSource {
    /// Enables MSI-X (once per device) and points `msix_config` at [`CONFIG_VECTOR`].
    pub(crate) fn arm(shared: Arc<VirtioShared>, features: u64, driver_ok: bool) -> Result<VirtioLinkSource> {
        let name = shared.name.clone();
        if features & feature::NET_STATUS == 0 {
            return Err(PortError::Unsupported {
                device: name,
                op: "link-state events (the device does not offer VIRTIO_NET_F_STATUS: its link is always up)",
                driver: DRIVER_NAME,
            });
        }
        if !driver_ok {
            return Err(PortError::WrongState {
                device: name,
                op: "link events",
                state: "not started",
                hint: "start the port first: the device signals configuration changes only after DRIVER_OK",
            });
        }
        let wake = shared
            .msix
            .claim_link(&shared.device, &name, usize::from(CONFIG_VECTOR))?;
        let src = VirtioLinkSource {
            shared,
            features,
            wake,
        };
        let got = src
            .shared
            .w16(common::CONFIG_MSIX_VECTOR, CONFIG_VECTOR)
            .and_then(|_| src.shared.r16(common::CONFIG_MSIX_VECTOR))
            .map_err(|e| drv_err(&name, "set the configuration-change vector", e))?;
        if got != CONFIG_VECTOR {
            return Err(drv_err(
                &name,
                "set the configuration-change vector",
                VirtioError::State("the device answered NO_VECTOR for msix_config = 0"),
            ));
        }
        Ok(src)
    }
}

impl LinkEventSource for VirtioLinkSource {
    fn read_link(&mut self) -> Result<LinkStatus> {
        read_link(&self.shared, self.features).map_err(|e| drv_err(&self.shared.name, "read link status", e))
    }

    fn take_wakeup(&mut self) -> Result<bool> {
        self.wake.take()
    }

    fn wait_wakeup(&mut self, timeout: Duration) -> Result<bool> {
        self.wake.wait(timeout)
    }

    fn wakeup_fd(&self) -> Option<BorrowedFd<'_>> {
        self.wake.fd()
    }

    fn describe(&self) -> String {
        format!("MSI-X vector {CONFIG_VECTOR} (configuration change)")
    }
}

impl Drop for VirtioLinkSource {
    fn drop(&mut self) {
        if let Err(e) = self.shared.w16(common::CONFIG_MSIX_VECTOR, common::NO_VECTOR) {
            log::warn!("{}: link events off: {e}", self.shared.name);
        }
        self.shared.msix.release_link();
    }
}
