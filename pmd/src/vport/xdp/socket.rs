//! One AF_XDP socket, bound to one queue of an interface: creating it, registering (or sharing)
//! the UMEM, sizing and mapping its four rings, binding it in zero-copy or copy mode.
//!
//! The UMEM is the DMA region of the port's mempool. The socket holds a handle of the pool, so
//! the region (and its mapping) outlives the socket, and it keeps the buffers the kernel still
//! owned when their queue was dropped ([`XskSocket::park`]) until the socket is closed.

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use oxpmd_dma::{Mempool, Packet};

use super::error::XdpError;
use super::ring::XskRing;
use super::sys::*;

/// How to bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// Zero copy if the driver supports it, else copy.
    Auto,
    /// Zero copy or an error.
    ZeroCopy,
    /// Copy mode even where zero copy exists.
    Copy,
}

/// The four rings of a bound socket, split by the queue that uses them.
pub(crate) struct XskRings {
    pub(crate) fill: XskRing<u64>,
    pub(crate) rx: XskRing<XdpDesc>,
    pub(crate) tx: XskRing<XdpDesc>,
    pub(crate) comp: XskRing<u64>,
}

/// A bound AF_XDP socket.
#[derive(Debug)]
pub(crate) struct XskSocket {
    /// `None` once closed (in `Drop`, before the parked buffers are released).
    fd: Option<OwnedFd>,
    /// Bound in zero-copy mode (the driver writes the UMEM directly).
    pub(crate) zero_copy: bool,
    /// Buffers the kernel owned when their queue was dropped: freed after the socket is closed.
    parked: Mutex<Vec<Packet>>,
    /// The UMEM's pool: its region stays mapped as long as the socket lives.
    _pool: Mempool,
}

fn setsockopt<T>(fd: &OwnedFd, name: i32, v: &T, op: &'static str) -> Result<(), XdpError> {
    // SAFETY: `v` is a live value of the size passed, as the option `name` expects.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            name,
            (v as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 { Err(XdpError::last(op)) } else { Ok(()) }
}

fn getsockopt<T: Default>(fd: &OwnedFd, name: i32, op: &'static str) -> Result<T, XdpError> {
    let mut v = T::default();
    let mut len = size_of::<T>() as libc::socklen_t;
    // SAFETY: room for a T, its size passed; the kernel writes at most `len` bytes.
    let r = unsafe { libc::getsockopt(fd.as_raw_fd(), SOL_XDP, name, (&mut v as *mut T).cast(), &mut len) };
    if r < 0 { Err(XdpError::last(op)) } else { Ok(v) }
}

/// Opens and closes an AF_XDP socket (kernel support, CAP_NET_RAW).
pub(crate) fn probe_socket() -> Result<(), XdpError> {
    // SAFETY: plain socket(2); the descriptor is owned (and closed) at once.
    let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(XdpError::last("socket(AF_XDP)"));
    }
    // SAFETY: just created, owned by nobody else.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
    Ok(())
}

impl XskSocket {
    /// Opens a socket on queue `queue` of `ifindex` with rings of `ring_size` entries, the UMEM
    /// being `pool`'s region: registered here, or shared with `shared` (the port's first
    /// socket, whose mode this one inherits).
    pub(crate) fn open(
        ifindex: u32,
        queue: u32,
        ring_size: u32,
        pool: &Mempool,
        shared: Option<&XskSocket>,
        mode: XdpMode,
    ) -> Result<(XskSocket, XskRings), XdpError> {
        // SAFETY: plain socket(2); the descriptor is owned at once.
        let raw = unsafe { libc::socket(AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(XdpError::last("socket(AF_XDP)"));
        }
        // SAFETY: just created, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if shared.is_none() {
            let region = pool.region();
            let reg = XdpUmemReg {
                addr: region.as_ptr() as u64,
                len: region.len() as u64,
                chunk_size: pool.element_size() as u32,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            setsockopt(&fd, XDP_UMEM_REG, &reg, "setsockopt(XDP_UMEM_REG)")?;
        }
        // The kernel publishes how far it has read the fill ring only when it has used up every
        // entry it saw at its last look, so a fill ring we keep full would run dry before we
        // see room in it: the fill (and completion) rings are twice the RX / TX rings, and the
        // RX queue primes only half of it (`XdpRxQueue::prime`).
        let umem_ring = ring_size * 2;
        for (name, size, op) in [
            (XDP_UMEM_FILL_RING, umem_ring, "setsockopt(XDP_UMEM_FILL_RING)"),
            (
                XDP_UMEM_COMPLETION_RING,
                umem_ring,
                "setsockopt(XDP_UMEM_COMPLETION_RING)",
            ),
            (XDP_RX_RING, ring_size, "setsockopt(XDP_RX_RING)"),
            (XDP_TX_RING, ring_size, "setsockopt(XDP_TX_RING)"),
        ] {
            setsockopt(&fd, name, &size, op)?;
        }
        let off: XdpMmapOffsets = getsockopt(&fd, XDP_MMAP_OFFSETS, "getsockopt(XDP_MMAP_OFFSETS)")?;
        fn map<T: Copy>(
            fd: &OwnedFd,
            pgoff: i64,
            o: &XdpRingOffset,
            size: u32,
            producer: bool,
        ) -> Result<XskRing<T>, XdpError> {
            XskRing::map(fd.as_fd(), pgoff, o, size, producer)
                .map_err(|e| XdpError::os("mmap(AF_XDP ring)", e))
        }
        let rings = XskRings {
            fill: map(&fd, XDP_UMEM_PGOFF_FILL_RING, &off.fr, umem_ring, true)?,
            comp: map(&fd, XDP_UMEM_PGOFF_COMPLETION_RING, &off.cr, umem_ring, false)?,
            rx: map(&fd, XDP_PGOFF_RX_RING, &off.rx, ring_size, false)?,
            tx: map(&fd, XDP_PGOFF_TX_RING, &off.tx, ring_size, true)?,
        };
        let flags = match (shared, mode) {
            (Some(_), _) => XDP_SHARED_UMEM,
            (None, XdpMode::Auto) => XDP_USE_NEED_WAKEUP,
            (None, XdpMode::ZeroCopy) => XDP_USE_NEED_WAKEUP | XDP_ZEROCOPY,
            (None, XdpMode::Copy) => XDP_USE_NEED_WAKEUP | XDP_COPY,
        };
        let addr = SockaddrXdp {
            family: AF_XDP as u16,
            flags,
            ifindex,
            queue_id: queue,
            shared_umem_fd: shared
                .and_then(|s| s.fd.as_ref())
                .map_or(0, |f| f.as_raw_fd() as u32),
        };
        // A socket closed a moment ago (a port of this process reopened) keeps its queue until
        // the kernel's deferred release has run: EBUSY for a few milliseconds.
        let mut tries = 0;
        let r = loop {
            // SAFETY: a sockaddr_xdp that lives across the call, its size passed.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&addr as *const SockaddrXdp).cast(),
                    size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            };
            let busy = r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBUSY);
            if !busy || tries == 50 {
                break r;
            }
            tries += 1;
            std::thread::sleep(Duration::from_millis(20));
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EOPNOTSUPP) if mode == XdpMode::ZeroCopy => XdpError::Os {
                    op: "bind(AF_XDP, XDP_ZEROCOPY): the interface's driver has no AF_XDP zero copy \
                         (use mode=copy or mode=auto)",
                    source: e,
                },
                Some(libc::EBUSY) => XdpError::Os {
                    op: "bind(AF_XDP): the queue already has an AF_XDP socket (another process?)",
                    source: e,
                },
                _ => XdpError::os("bind(AF_XDP)", e),
            });
        }
        let opts: XdpOptions = getsockopt(&fd, XDP_OPTIONS, "getsockopt(XDP_OPTIONS)")?;
        Ok((
            XskSocket {
                fd: Some(fd),
                zero_copy: opts.flags & XDP_OPTIONS_ZEROCOPY != 0,
                parked: Mutex::new(Vec::new()),
                _pool: pool.clone(),
            },
            rings,
        ))
    }

    /// The socket's descriptor.
    pub(crate) fn raw_fd(&self) -> i32 {
        self.fd.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Tells the kernel to look at the fill ring (RX) or the TX ring: a zero-length
    /// non-blocking `recvfrom` / `sendto`. Its errors (EAGAIN, EBUSY, ENOBUFS: the kernel is busy)
    /// are not failures: the next burst asks again.
    pub(crate) fn wake(&self, tx: bool) {
        let fd = self.raw_fd();
        // SAFETY: zero-length calls on our socket with null buffers, which the kernel accepts.
        unsafe {
            if tx {
                libc::sendto(fd, std::ptr::null(), 0, libc::MSG_DONTWAIT, std::ptr::null(), 0);
            } else {
                libc::recvfrom(
                    fd,
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                );
            }
        }
    }

    /// The kernel's drop counters of this socket.
    pub(crate) fn statistics(&self) -> Option<XdpStatistics> {
        getsockopt(self.fd.as_ref()?, XDP_STATISTICS, "getsockopt(XDP_STATISTICS)").ok()
    }

    /// Keeps buffers the kernel may still write until the socket is closed.
    pub(crate) fn park(&self, bufs: impl Iterator<Item = Packet>) {
        self.parked.lock().unwrap_or_else(|p| p.into_inner()).extend(bufs);
    }
}

impl Drop for XskSocket {
    fn drop(&mut self) {
        // Closing unbinds the socket; only then are its buffers ours again.
        drop(self.fd.take());
        if self.zero_copy {
            // The kernel detaches the driver's queue from the UMEM in a work item scheduled by
            // the close (xp_release_deferred), so a zero-copy driver may still be done with its
            // buffers a moment after close returns; there is no event to wait for.
            std::thread::sleep(Duration::from_millis(100));
        }
        self.parked.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}
