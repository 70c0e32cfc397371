//! UNIX-socket primitives the PF service needs beyond std: the peer's credentials
//! (SO_PEERCRED, set by the kernel at connect time, so a client cannot forge them) and file
//! descriptors passed with a message (SCM_RIGHTS).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Most descriptors one message carries (container, group, device).
pub const MAX_FDS: usize = 4;

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// The credentials the kernel recorded for the peer of `s` when it connected.
pub fn peer_cred(s: &UnixStream) -> io::Result<PeerCred> {
    let mut c = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: c is a writable ucred and len its size; the kernel writes at most len bytes and
    // updates len. The fd is open for the duration of the call (borrowed from s).
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut c as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != std::mem::size_of::<libc::ucred>() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "short SO_PEERCRED"));
    }
    Ok(PeerCred {
        pid: c.pid,
        uid: c.uid,
        gid: c.gid,
    })
}

/// Space for a control message with `MAX_FDS` descriptors (u64-aligned, as cmsghdr needs).
fn cmsg_space() -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Sends `data` with `fds` attached (SCM_RIGHTS). The receiver gets its own copies.
pub fn send_with_fds(s: &UnixStream, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.is_empty() || fds.len() > MAX_FDS || data.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "1..=4 descriptors and a non-empty message",
        ));
    }
    let mut buf = vec![0u64; cmsg_space().div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below points into live locals (iov,
    // buf) that outlive sendmsg; the control length is what CMSG_LEN computes for fds.len()
    // descriptors, within buf (sized for MAX_FDS); CMSG_FIRSTHDR of a buffer that large is
    // non-null and CMSG_DATA points inside it.
    let rc = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = buf.as_mut_ptr().cast();
        let payload = fds.len() * std::mem::size_of::<RawFd>();
        msg.msg_controllen = libc::CMSG_SPACE(payload as u32) as _;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
        let dst = libc::CMSG_DATA(c).cast::<RawFd>();
        for (i, fd) in fds.iter().enumerate() {
            dst.add(i).write_unaligned(fd.as_raw_fd());
        }
        libc::sendmsg(s.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if rc as usize != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "message sent in part"));
    }
    Ok(())
}

/// Receives up to `buf.len()` bytes and the descriptors attached to them (at most
/// [`MAX_FDS`]; a message with more, or with its control data cut, is refused and every
/// descriptor received is closed). Returns the byte count and the descriptors, owned.
pub fn recv_with_fds(s: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut cbuf = vec![0u64; cmsg_space().div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut fds = Vec::new();
    // SAFETY: a zeroed msghdr is valid; iov and cbuf are live, writable and as long as stated;
    // MSG_CMSG_CLOEXEC makes received descriptors close-on-exec. The control messages are then
    // walked with CMSG_FIRSTHDR / CMSG_NXTHDR, which stay within msg_controllen as the kernel
    // set it, and each SCM_RIGHTS payload is read within its cmsg_len.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = (cbuf.len() * 8) as _;
        let n = libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let header = libc::CMSG_LEN(0) as usize;
                let bytes = ((*c).cmsg_len as usize).saturating_sub(header);
                let count = bytes / std::mem::size_of::<RawFd>();
                let src = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..count {
                    let fd = src.add(i).read_unaligned();
                    if fd >= 0 {
                        fds.push(OwnedFd::from_raw_fd(fd));
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 {
            // Dropping `fds` closes what did arrive.
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more descriptors than expected (control data truncated)",
            ));
        }
        n as usize
    };
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too many descriptors"));
    }
    Ok((n, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsFd;

    #[test]
    fn credentials_and_descriptors_cross_a_socket_pair() {
        let (a, b) = UnixStream::pair().unwrap();
        let me = peer_cred(&a).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        // SAFETY: getuid has no preconditions.
        assert_eq!(me.uid, unsafe { libc::getuid() });
        let mut f = tempfile();
        f.write_all(b"handed over").unwrap();
        send_with_fds(&a, b"{\"ok\":true}\n", &[f.as_fd(), f.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let (n, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"{\"ok\":true}\n");
        assert_eq!(fds.len(), 2);
        let mut g = std::fs::File::from(fds.into_iter().next().unwrap());
        g.rewind().unwrap();
        let mut s = String::new();
        g.read_to_string(&mut s).unwrap();
        assert_eq!(s, "handed over");
        // No descriptors: fine, none returned.
        (&a).write_all(b"x").unwrap();
        let (n, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!((n, fds.len()), (1, 0));
        assert!(send_with_fds(&a, b"x", &[]).is_err());
    }

    fn tempfile() -> std::fs::File {
        let p = std::env::temp_dir().join(format!("oxpmd-fdpass-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        std::fs::remove_file(&p).unwrap();
        f
    }
}
