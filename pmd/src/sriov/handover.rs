//! VF hand-over without the token: the PF service opens the VF itself (a fresh container, the
//! VF's group, the device with the VF token) and passes the three descriptors to a client whose
//! credentials are on the VF's allow list; the client adopts them and runs the VF driver. The
//! token never leaves the service, and the client needs neither the token file nor access to
//! `/dev/vfio` (only RLIMIT_MEMLOCK for its DMA memory).
//!
//! The service keeps its own copies while the client holds the VF. When the client's
//! connection closes (it exited, or dropped its port), the service resets the VF (VFIO device
//! reset: an FLR, so the VF's DMA stops and the PF turns its pool off until the next
//! handshake) and closes its copies, which frees the container and its mappings.
#![forbid(unsafe_code)]

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oxpmd_vfio::{Container, Device, PciAddress, VfToken, adopt_device};
use serde_json::Value;

use super::control::{Request, encode_request};
use super::unix_fd::{recv_with_fds, send_with_fds};

/// Failures on the service side.
#[derive(Debug, thiserror::Error)]
pub enum HandOverError {
    /// Opening the VF failed.
    #[error("VF {vf} ({addr}): opening it for hand-over: {source}")]
    Vfio {
        /// VF.
        vf: usize,
        /// Its address.
        addr: PciAddress,
        /// Cause.
        source: Box<oxpmd_vfio::Error>,
    },
}

/// A VF the service opened for a client.
#[derive(Debug)]
pub struct HandOver {
    vf: usize,
    device: Device,
}

impl HandOver {
    /// Opens VF `vf` at `addr` in a container of its own, with the service's VF token.
    pub fn open(vf: usize, addr: PciAddress, token: &VfToken) -> Result<HandOver, HandOverError> {
        let err = |source| HandOverError::Vfio {
            vf,
            addr,
            source: Box::new(source),
        };
        let container = Container::open().map_err(err)?;
        let device = container.open_device(addr, Some(token)).map_err(err)?;
        Ok(HandOver { vf, device })
    }

    /// The VF index.
    pub fn vf(&self) -> usize {
        self.vf
    }

    /// The IOMMU group number (the client needs it to adopt the group).
    pub fn group(&self) -> u32 {
        self.device.group().number()
    }

    /// Sends `reply` with the container, group and device descriptors, in that order.
    pub fn send(&self, s: &UnixStream, reply: &[u8]) -> std::io::Result<()> {
        let g = self.device.group();
        send_with_fds(
            s,
            reply,
            &[
                g.container().handover_fd(),
                g.handover_fd(),
                self.device.handover_fd(),
            ],
        )
    }

    /// The client is gone: reset the VF, then close the service's descriptors.
    pub fn release(self) {
        if let Err(e) = self.device.reset() {
            log::warn!(
                "VF {} ({}): reset after hand-over: {e}",
                self.vf,
                self.device.address()
            );
        }
    }
}

/// Failures on the client side.
#[derive(Debug, thiserror::Error)]
pub enum VfServiceError {
    /// The spec is not `vf-service:PATH:VF`.
    #[error("`{spec}` is not vf-service:SOCKET:VF (e.g. vf-service:/run/oxpmd/sriov-0000:00:02.0.sock:0)")]
    BadSpec {
        /// What was given.
        spec: String,
    },
    /// The control socket could not be reached (no service, or not allowed in).
    #[error(transparent)]
    Connect(#[from] super::control_client::ConnectError),
    /// The exchange failed.
    #[error("{path}: {what}")]
    Protocol {
        /// Socket.
        path: String,
        /// What went wrong.
        what: String,
    },
    /// The service refused.
    #[error("{path}: the PF service refused to open VF {vf} ({kind}): {message}")]
    Refused {
        /// Socket.
        path: String,
        /// VF.
        vf: usize,
        /// Error kind.
        kind: String,
        /// Its message.
        message: String,
    },
    /// The descriptors did not check out.
    #[error("{path}: the handed-over descriptors of VF {vf}: {source}")]
    Adopt {
        /// Socket.
        path: String,
        /// VF.
        vf: usize,
        /// Cause.
        source: Box<oxpmd_vfio::Error>,
    },
}

/// `vf-service:SOCKET:VF`: the socket path (it may contain `:`) and the VF index (after the
/// last `:`).
pub fn parse_spec(spec: &str) -> Result<(PathBuf, usize), VfServiceError> {
    let bad = || VfServiceError::BadSpec { spec: spec.into() };
    let rest = spec.strip_prefix("vf-service:").ok_or_else(bad)?;
    let (path, vf) = rest.rsplit_once(':').ok_or_else(bad)?;
    let vf: usize = vf.parse().ok().filter(|v| *v < 8).ok_or_else(bad)?;
    if path.is_empty() || !path.starts_with('/') {
        return Err(bad());
    }
    Ok((PathBuf::from(path), vf))
}

/// A VF the service handed over: its device (keeping group and container alive), its address,
/// and the connection, which the client keeps open as long as it uses the VF.
#[derive(Debug)]
pub struct HandedVf {
    /// The VF's PCI address.
    pub addr: PciAddress,
    /// The adopted device.
    pub device: Device,
    /// The connection to the service (closing it releases the VF).
    pub connection: UnixStream,
}

/// Asks the service on `path` for VF `vf` and adopts the descriptors it sends.
pub fn open_from_service(path: &Path, vf: usize) -> Result<HandedVf, VfServiceError> {
    let p = path.display().to_string();
    let proto = |what: String| VfServiceError::Protocol {
        path: p.clone(),
        what,
    };
    let mut s = super::control_client::connect(path)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| proto(format!("set a time-out: {e}")))?;
    s.write_all(encode_request(&Request::Open { vf }).as_bytes())
        .map_err(|e| proto(format!("send the request: {e}")))?;
    let mut buf = vec![0u8; 64 * 1024];
    let (n, mut fds) = recv_with_fds(&s, &mut buf).map_err(|e| proto(format!("read the reply: {e}")))?;
    let line = buf.get(..n).unwrap_or_default();
    let v: Value = serde_json::from_slice(line.strip_suffix(b"\n").unwrap_or(line))
        .map_err(|e| proto(format!("reply is not JSON: {e}")))?;
    if v["ok"] != Value::Bool(true) {
        return Err(VfServiceError::Refused {
            path: p,
            vf,
            kind: v["error"]["kind"].as_str().unwrap_or("?").into(),
            message: v["error"]["message"].as_str().unwrap_or("?").into(),
        });
    }
    let addr = v["vf"]["address"]
        .as_str()
        .and_then(|a| PciAddress::parse(a).ok())
        .ok_or_else(|| proto("reply without the VF's address".into()))?;
    let group = v["group"]
        .as_u64()
        .and_then(|g| u32::try_from(g).ok())
        .ok_or_else(|| proto("reply without the IOMMU group".into()))?;
    if fds.len() != 3 {
        return Err(proto(format!(
            "{} descriptors received, 3 expected (container, group, device)",
            fds.len()
        )));
    }
    let device = fds.pop().ok_or_else(|| proto("no device descriptor".into()))?;
    let group_fd = fds.pop().ok_or_else(|| proto("no group descriptor".into()))?;
    let container = fds.pop().ok_or_else(|| proto("no container descriptor".into()))?;
    let device =
        adopt_device(container, group_fd, group, device, addr).map_err(|source| VfServiceError::Adopt {
            path: p.clone(),
            vf,
            source: Box::new(source),
        })?;
    s.set_read_timeout(None)
        .map_err(|e| proto(format!("clear the time-out: {e}")))?;
    log::info!("{addr}: VF {vf} handed over by the PF service on {p} (no VF token needed)");
    Ok(HandedVf {
        addr,
        device,
        connection: s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let (p, vf) = parse_spec("vf-service:/run/oxpmd/sriov-0000:00:02.0.sock:1").unwrap();
        assert_eq!(p, PathBuf::from("/run/oxpmd/sriov-0000:00:02.0.sock"));
        assert_eq!(vf, 1);
        for bad in [
            "vf-service:",
            "vf-service:/x",
            "vf-service:/x:9",
            "vf-service:rel:0",
            "vf-service::0",
            "0000:00:02.0",
            "vf-service:/x:-1",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }
}
