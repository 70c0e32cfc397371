//! What the kernel says about a network interface: its index, queues, driver, MAC address, link
//! and counters (sysfs `/sys/class/net/IFACE`), and its promiscuous / all-multicast flags
//! (SIOCGIFFLAGS / SIOCSIFFLAGS).

use std::ffi::CString;
use std::io;
use std::path::PathBuf;

use super::error::XdpError;
use crate::driver::LinkStatus;
use crate::mac::MacAddr;

/// A kernel network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name (`eth0`).
    pub name: String,
    /// Index.
    pub ifindex: u32,
    /// RX queues (`queues/rx-N`).
    pub rx_queues: u32,
    /// TX queues (`queues/tx-N`).
    pub tx_queues: u32,
    /// Kernel driver (`igb`, `virtio_net`, `veth`), if the interface has one.
    pub driver: Option<String>,
}

fn sysfs(name: &str) -> PathBuf {
    PathBuf::from("/sys/class/net").join(name)
}

/// The interface's driver as ethtool names it (ETHTOOL_GDRVINFO: `igb`, `virtio_net`, `veth`).
fn driver_name(name: &str) -> Option<String> {
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    const ETHTOOL_GDRVINFO: u32 = 3;
    // SAFETY: all-zero is a valid DrvInfo (plain bytes and integers).
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let fd = ctl_socket().ok()?;
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_data = (&mut info as *mut DrvInfo).cast();
    // SAFETY: SIOCETHTOOL with ifr_data pointing at a live ethtool_drvinfo of the full size,
    // which the kernel fills.
    if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::SIOCETHTOOL, &mut req) } < 0 {
        return None;
    }
    let end = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    (end > 0).then(|| String::from_utf8_lossy(&info.driver[..end]).into_owned())
}

/// A datagram socket for interface ioctls.
fn ctl_socket() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: a new socket, owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// An ifreq naming `name` (at most IFNAMSIZ - 1 bytes: checked by the caller's lookup).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain data; zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().take(libc::IFNAMSIZ - 1).zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    req
}

fn count_queues(name: &str, prefix: &str) -> u32 {
    std::fs::read_dir(sysfs(name).join("queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count() as u32
        })
        .unwrap_or(0)
}

impl Interface {
    /// Looks `name` up.
    pub fn lookup(name: &str) -> Result<Interface, XdpError> {
        let missing = || XdpError::NoSuchInterface {
            iface: name.to_string(),
        };
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('/') {
            return Err(missing());
        }
        let c = CString::new(name).map_err(|_| missing())?;
        // SAFETY: a NUL-terminated string that lives across the call.
        let ifindex = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if ifindex == 0 {
            return Err(missing());
        }
        let driver = driver_name(name);
        Ok(Interface {
            name: name.to_string(),
            ifindex,
            rx_queues: count_queues(name, "rx-"),
            tx_queues: count_queues(name, "tx-"),
            driver,
        })
    }

    /// Every interface but loopback, sorted by name.
    pub fn all() -> Vec<Interface> {
        let mut v: Vec<Interface> = std::fs::read_dir("/sys/class/net")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter_map(|e| Interface::lookup(&e.file_name().to_string_lossy()).ok())
                    .filter(|i| i.name != "lo")
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn read(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(sysfs(&self.name).join(file))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// The MAC address (zero if the interface has none).
    pub fn mac(&self) -> MacAddr {
        let mut m = [0u8; 6];
        if let Some(a) = self.read("address") {
            for (b, h) in m.iter_mut().zip(a.split(':')) {
                *b = u8::from_str_radix(h, 16).unwrap_or(0);
            }
        }
        MacAddr(m)
    }

    /// Link state: `operstate` up (or `unknown` with carrier, as virtual interfaces report),
    /// speed and duplex as ethtool reports them (0 when the driver does not say).
    pub fn link(&self) -> LinkStatus {
        let oper = self.read("operstate").unwrap_or_default();
        let carrier = self.read("carrier").as_deref() == Some("1");
        let up = oper == "up" || (oper == "unknown" && carrier);
        let speed = self
            .read("speed")
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|&s| s > 0)
            .unwrap_or(0);
        LinkStatus {
            up,
            speed_mbps: if up { speed as u32 } else { 0 },
            // Virtual NICs report `unknown`: no half-duplex link to speak of.
            full_duplex: self.read("duplex").is_none_or(|d| d != "half"),
        }
    }

    /// A counter of `statistics/` (0 if absent).
    pub fn counter(&self, name: &str) -> u64 {
        self.read(&format!("statistics/{name}"))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    /// The interface's MTU.
    pub fn mtu(&self) -> Option<usize> {
        self.read("mtu").and_then(|s| s.parse().ok())
    }

    /// Sets (`on`) or clears interface flag `flag` (IFF_PROMISC, IFF_ALLMULTI); returns whether
    /// it was set before.
    pub(crate) fn set_flag(&self, flag: libc::c_int, on: bool) -> io::Result<bool> {
        let owned = ctl_socket()?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&owned);
        let mut req = ifreq(&self.name);
        // SAFETY: SIOCGIFFLAGS fills ifr_flags of a valid ifreq naming the interface.
        if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the union member SIOCGIFFLAGS wrote.
        let flags = unsafe { req.ifr_ifru.ifru_flags } as libc::c_int;
        let was = flags & flag != 0;
        if was != on {
            let flags = if on { flags | flag } else { flags & !flag };
            req.ifr_ifru.ifru_flags = flags as libc::c_short;
            // SAFETY: as above, SIOCSIFFLAGS reads ifr_flags.
            if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(was)
    }
}
