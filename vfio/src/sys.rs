//! The few raw system calls the crate makes (ioctl, eventfd, poll, getrlimit, sysconf), each wrapped once.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// `ioctl(fd, req, 0)` for requests without argument; returns the (non-negative) result.
pub(crate) fn ioctl_none(fd: &impl AsRawFd, req: u64) -> io::Result<i32> {
    // SAFETY: the request takes no argument (or an integer argument that we pass as 0); the fd is valid
    // for the duration of the call because we borrow its owner.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, 0usize) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `ioctl(fd, req, value)` for requests taking an integer by value.
pub(crate) fn ioctl_val(fd: &impl AsRawFd, req: u64, value: usize) -> io::Result<i32> {
    // SAFETY: the request takes an integer argument, not a pointer; the fd is valid (borrowed owner).
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, value) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `ioctl(fd, req, arg)` where the kernel reads and/or writes `*arg` within its `argsz`.
///
/// # Safety
/// `arg` must point to a writable buffer at least as large as the `argsz` it declares (or, for
/// requests without argsz, as large as the kernel reads or writes for `req`), valid for the call.
pub(crate) unsafe fn ioctl_ptr<T>(fd: &impl AsRawFd, req: u64, arg: *mut T) -> io::Result<i32> {
    // SAFETY: the caller guarantees `arg` is valid for what the kernel accesses; the fd is valid.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A buffer of `len` bytes, 8-byte aligned, for variable-size ioctl arguments (info + capabilities).
pub(crate) struct ArgBuf {
    words: Vec<u64>,
    len: usize,
}

impl ArgBuf {
    /// A zeroed buffer holding at least `len` bytes, starting with the bytes of `head`.
    pub(crate) fn new<T: Copy>(head: &T, len: usize) -> Self {
        let len = len.max(size_of::<T>());
        let mut words = vec![0u64; len.div_ceil(8)];
        // SAFETY: `words` holds at least size_of::<T>() bytes and is 8-aligned (>= align of our uapi
        // structs); `head` is a plain-old-data repr(C) struct read as bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                (head as *const T).cast::<u8>(),
                words.as_mut_ptr().cast::<u8>(),
                size_of::<T>(),
            );
        }
        Self { words, len }
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `words` owns at least `len` initialized bytes (len <= 8 * words.len()).
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    /// The mutable bytes.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, with unique access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }

    /// The fixed header `T` read back (after the kernel filled it).
    pub(crate) fn head<T: Copy + Default>(&self) -> T {
        let mut out = T::default();
        let n = size_of::<T>().min(self.len);
        // SAFETY: copies n <= len bytes from our buffer into a plain-old-data repr(C) struct of at
        // least n bytes; any bit pattern is valid for these integer-only structs.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.words.as_ptr().cast::<u8>(),
                (&mut out as *mut T).cast::<u8>(),
                n,
            );
        }
        out
    }

    /// The pointer to pass to the kernel.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast()
    }

    /// Its length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// A new eventfd (non-blocking, close-on-exec).
pub(crate) fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Waits until at least one of `fds` is readable or `timeout` has passed (poll(2), restarted on
/// EINTR with the time left); returns the indices of the readable ones (empty: timed out).
pub(crate) fn poll_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<usize>> {
    let mut set: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Rounded up, so a wait of less than 1 ms still sleeps instead of spinning.
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `set` is a valid array of `set.len()` pollfd structures that poll may write.
        let r = unsafe { libc::poll(set.as_mut_ptr(), set.len() as libc::nfds_t, ms) };
        if r >= 0 {
            return Ok(set
                .iter()
                .enumerate()
                .filter(|(_, p)| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
                .map(|(i, _)| i)
                .collect());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
        if left.is_zero() {
            return Ok(Vec::new());
        }
    }
}

/// The soft RLIMIT_MEMLOCK (`u64::MAX` = unlimited), if it can be read.
pub(crate) fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit for the kernel to fill.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) } == 0;
    ok.then_some(if r.rlim_cur == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        r.rlim_cur
    })
}

/// The system page size.
pub(crate) fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let r = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if r > 0 { r as usize } else { 4096 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uapi;

    #[test]
    fn argbuf_round_trips_a_header() {
        let h = uapi::RegionInfo {
            argsz: 64,
            index: 3,
            size: 0x1234,
            ..Default::default()
        };
        let mut b = ArgBuf::new(&h, 64);
        assert_eq!(b.len(), 64);
        assert_eq!(uapi::read_u32(b.bytes(), 0), Some(64));
        assert_eq!(uapi::read_u64(b.bytes(), 16), Some(0x1234));
        b.bytes_mut()[24] = 7;
        let back: uapi::RegionInfo = b.head();
        assert_eq!((back.index, back.size, back.offset), (3, 0x1234, 7));
        // Shorter than the header: the header size wins.
        assert_eq!(ArgBuf::new(&h, 4).len(), 32);
    }

    #[test]
    fn eventfd_and_limits() {
        let f = eventfd().unwrap();
        assert!(f.as_raw_fd() >= 0);
        assert!(memlock_limit().is_some());
        assert!(page_size().is_power_of_two());
    }

    #[test]
    fn poll_sees_a_signalled_eventfd_and_times_out_on_a_quiet_one() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let quiet = eventfd().unwrap();
        let mut loud = eventfd().unwrap();
        let t = Instant::now();
        assert!(
            poll_readable(&[quiet.as_fd()], Duration::from_millis(20))
                .unwrap()
                .is_empty()
        );
        assert!(t.elapsed() >= Duration::from_millis(20));
        loud.write_all(&1u64.to_ne_bytes()).unwrap();
        let ready = poll_readable(&[quiet.as_fd(), loud.as_fd()], Duration::from_secs(5)).unwrap();
        assert_eq!(ready, vec![1]);
    }
}
