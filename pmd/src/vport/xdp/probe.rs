//! What `oxpmd doctor` asks about AF_XDP: whether the kernel has it (and lets this process use
//! it), and whether an interface's driver binds in zero-copy mode.
#![forbid(unsafe_code)]

use std::sync::Arc;

use oxpmd_dma::{IdentityMap, Mempool, MempoolConfig, PageSize, RegionOptions};

use super::bpf::XdpProgram;
use super::error::XdpError;
use super::iface::Interface;
use super::socket::{XdpMode, XskSocket};

/// Opens (and closes) an AF_XDP socket and an XSKMAP: the kernel support and the capabilities
/// the port needs. Attaches nothing.
pub fn kernel_support() -> Result<(), XdpError> {
    drop(XdpProgram::create_map(1)?);
    super::socket::probe_socket()
}

/// Binds a socket to queue `queue` of `iface` in zero-copy mode (and closes it): `Ok(true)`
/// when the driver supports it, `Ok(false)` when only copy mode is possible. A driver with
/// zero copy restarts the queue for the bind, a brief interruption of its traffic.
pub fn zero_copy_support(iface: &Interface, queue: u32) -> Result<bool, XdpError> {
    let cfg = MempoolConfig {
        cache_size: 0,
        headroom: 0,
        data_room: 2048,
        chunk_aligned: true,
        region: RegionOptions {
            page_size: PageSize::Base4K,
            allow_4k_fallback: true,
        },
        ..MempoolConfig::new("xdp-probe", 64)
    };
    let pool = Mempool::new(&cfg, Arc::new(IdentityMap)).map_err(|e| XdpError::BadPool {
        reason: format!("probe pool: {e}"),
    })?;
    match XskSocket::open(iface.ifindex, queue, 64, &pool, None, XdpMode::ZeroCopy) {
        Ok(_) => Ok(true),
        Err(XdpError::Os { source, .. }) if source.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(e),
    }
}
