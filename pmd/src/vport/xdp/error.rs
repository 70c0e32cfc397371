//! Why an `xdp:` port could not be opened or set up; each names the interface, what failed and
//! the fix.
#![forbid(unsafe_code)]

use std::io;

/// Errors of the AF_XDP port.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    /// No such network interface.
    #[error("no network interface `{iface}` (see `ip -br link` or `oxpmd devices`)")]
    NoSuchInterface {
        /// The name given.
        iface: String,
    },
    /// A queue beyond the interface's RX/TX queues.
    #[error(
        "queue {queue} is out of range: `{iface}` has {rx} RX and {tx} TX queues (raise them with \
         `ethtool -L {iface} combined N`, or name queues 0-{last})"
    )]
    QueueOutOfRange {
        /// Interface.
        iface: String,
        /// The queue asked for.
        queue: u32,
        /// RX queues of the interface.
        rx: u32,
        /// TX queues of the interface.
        tx: u32,
        /// Highest usable queue.
        last: u32,
    },
    /// A permission the kernel asked for is missing.
    #[error(
        "{op}: {source}: AF_XDP needs CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW (run as root, or \
         `setcap cap_net_admin,cap_bpf,cap_net_raw,cap_ipc_lock+ep BINARY`)"
    )]
    Permission {
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel lacks AF_XDP or XSKMAP.
    #[error(
        "{op}: {source}: the kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS=y is needed, Linux 5.4 or later)"
    )]
    NoKernelSupport {
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Another XDP program is already attached to the interface.
    #[error(
        "attach the XDP program to `{iface}`: another XDP program is already attached ({source}); \
         detach it (`ip link set dev {iface} xdp off`) or stop the process that owns it"
    )]
    ProgramAttached {
        /// Interface.
        iface: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The pool cannot be a UMEM.
    #[error("{reason}")]
    BadPool {
        /// What is wrong and the fix.
        reason: String,
    },
    /// A system call failed.
    #[error("{op}: {source}")]
    Os {
        /// The call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl XdpError {
    /// The error of system call `op`, sorted by what the user can do about it.
    pub(crate) fn os(op: &'static str, source: io::Error) -> XdpError {
        match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => XdpError::Permission { op, source },
            Some(libc::EAFNOSUPPORT) => XdpError::NoKernelSupport { op, source },
            _ => XdpError::Os { op, source },
        }
    }

    /// The last OS error of `op`.
    pub(crate) fn last(op: &'static str) -> XdpError {
        Self::os(op, io::Error::last_os_error())
    }
}
