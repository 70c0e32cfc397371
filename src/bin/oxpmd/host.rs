//! Where the tool looks: sysfs, procfs, /dev and its state directory, each relocatable for tests
//! (`OXPMD_SYSFS_ROOT`, `OXPMD_PROC_ROOT`, `OXPMD_DEV_ROOT`, `OXPMD_STATE_DIR`), and the small
//! readers of /proc files the commands share.

use std::fs;
use std::path::PathBuf;

use oxpmd::vfio::{PciAddress, Sysfs};

/// The roots of the host's interfaces.
#[derive(Debug, Clone)]
pub struct Host {
    /// sysfs (`/sys`).
    pub sys: PathBuf,
    /// procfs (`/proc`).
    pub proc: PathBuf,
    /// devtmpfs (`/dev`).
    pub dev: PathBuf,
    /// The tool's state directory (`/run/oxpmd`).
    pub state_dir: PathBuf,
}

impl Host {
    /// The real host, unless the `OXPMD_*_ROOT` / `OXPMD_STATE_DIR` variables relocate a part.
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Host {
            sys: var("OXPMD_SYSFS_ROOT", "/sys"),
            proc: var("OXPMD_PROC_ROOT", "/proc"),
            dev: var("OXPMD_DEV_ROOT", "/dev"),
            state_dir: var("OXPMD_STATE_DIR", "/run/oxpmd"),
        }
    }

    /// True when sysfs or procfs is not the real one (a test tree): nothing is tried for real then.
    pub fn relocated(&self) -> bool {
        self.sys != std::path::Path::new("/sys") || self.proc != std::path::Path::new("/proc")
    }

    /// The vfio crate's view of sysfs.
    pub fn sysfs(&self) -> Sysfs {
        Sysfs::with_root(&self.sys)
    }

    /// A file under /proc, `None` when it cannot be read.
    pub fn read_proc(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.proc.join(rel)).ok()
    }

    /// A sysfs attribute, trimmed; `None` when missing.
    pub fn read_sys(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.sys.join(rel))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> String {
        self.read_proc("cmdline").unwrap_or_default().trim().to_owned()
    }

    /// The network interfaces of a PCI device (`.../devices/ADDR/net/*`).
    pub fn netdevs(&self, addr: PciAddress) -> Vec<String> {
        let dir = self.sysfs().device_dir(addr).join("net");
        let mut v: Vec<String> = fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// True when the interface is administratively up (IFF_UP in `/sys/class/net/IF/flags`).
    pub fn netdev_up(&self, ifname: &str) -> bool {
        if !is_safe_name(ifname) {
            return false;
        }
        self.read_sys(&format!("class/net/{ifname}/flags"))
            .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
            .is_some_and(|f| f & 1 != 0)
    }

    /// What ties the host's own networking to an interface: IPv4 routes through it
    /// (`/proc/net/route`), IPv6 addresses on it (`/proc/net/if_inet6`, link-local ones excepted) and
    /// IPv6 routes through it (`/proc/net/ipv6_route`, link-local and multicast ones excepted).
    pub fn host_routes(&self, ifname: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(t) = self.read_proc("net/route") {
            out.extend(ipv4_routes(&t, ifname));
        }
        if let Some(t) = self.read_proc("net/if_inet6") {
            out.extend(ipv6_addresses(&t, ifname));
        }
        if let Some(t) = self.read_proc("net/ipv6_route") {
            out.extend(ipv6_routes(&t, ifname));
        }
        out
    }

    /// The `pagesize=` / mount point of each hugetlbfs mount in /proc/mounts.
    pub fn hugetlbfs_mounts(&self) -> Vec<String> {
        self.read_proc("mounts")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 4 && f[2] == "hugetlbfs").then(|| {
                    let size = f[3]
                        .split(',')
                        .find_map(|o| o.strip_prefix("pagesize="))
                        .unwrap_or("default");
                    format!("{} (pagesize {size})", f[1])
                })
            })
            .collect()
    }

    /// `Hugepagesize` from /proc/meminfo in KiB.
    pub fn default_hugepage_kib(&self) -> Option<u64> {
        let m = self.read_proc("meminfo")?;
        let l = m.lines().find(|l| l.starts_with("Hugepagesize:"))?;
        l.split_whitespace().nth(1)?.parse().ok()
    }

    /// The soft RLIMIT_MEMLOCK of this process in bytes (`None`: unlimited), from /proc/self/limits.
    pub fn memlock_limit(&self) -> Result<Option<u64>, String> {
        let t = self
            .read_proc("self/limits")
            .ok_or("cannot read /proc/self/limits")?;
        let line = t
            .lines()
            .find(|l| l.starts_with("Max locked memory"))
            .ok_or("no \"Max locked memory\" line in /proc/self/limits")?;
        let soft = line
            .trim_start_matches("Max locked memory")
            .split_whitespace()
            .next()
            .ok_or("malformed \"Max locked memory\" line")?;
        if soft == "unlimited" {
            Ok(None)
        } else {
            soft.parse()
                .map(Some)
                .map_err(|_| format!("malformed memlock limit {soft:?}"))
        }
    }

    /// Whether this process holds CAP_IPC_LOCK (VFIO then does not count pinned pages).
    pub fn has_cap_ipc_lock(&self) -> bool {
        const CAP_IPC_LOCK: u32 = 14;
        self.read_proc("self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .is_some_and(|c| c & (1 << CAP_IPC_LOCK) != 0)
    }

    /// A `/sys/module/MOD/parameters/P` value.
    pub fn module_param(&self, module: &str, param: &str) -> Option<String> {
        self.read_sys(&format!("module/{module}/parameters/{param}"))
    }

    /// Whether a module is loaded or built in (`/sys/module/MOD`).
    pub fn module_present(&self, module: &str) -> bool {
        self.sys.join("module").join(module).is_dir()
    }

    /// Whether a PCI driver is registered (`/sys/bus/pci/drivers/NAME`).
    pub fn pci_driver_present(&self, driver: &str) -> bool {
        is_safe_name(driver) && self.sys.join("bus/pci/drivers").join(driver).is_dir()
    }

    /// The path of a /dev node.
    pub fn dev_path(&self, rel: &str) -> PathBuf {
        self.dev.join(rel)
    }
}

/// A name that is safe to use as one path component: `[A-Za-z0-9_.:-]`, 1..=64 characters, no `..`.
pub fn is_safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn ipv4_routes(table: &str, ifname: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in table.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
        if f.len() < 8 || f[0] != ifname {
            continue;
        }
        let ip = |h: &str| {
            u32::from_str_radix(h, 16)
                .ok()
                .map(|v| std::net::Ipv4Addr::from(v.swap_bytes()))
        };
        let (Some(dst), Some(gw), Some(mask)) = (ip(f[1]), ip(f[2]), ip(f[7])) else {
            continue;
        };
        let prefix = u32::from(mask).count_ones();
        if u32::from(dst) == 0 && prefix == 0 {
            out.push(format!("IPv4 default route via {gw}"));
        } else if u32::from(gw) != 0 {
            out.push(format!("IPv4 route {dst}/{prefix} via {gw}"));
        } else {
            out.push(format!("IPv4 route {dst}/{prefix}"));
        }
    }
    out
}

fn hex_ipv6(h: &str) -> Option<std::net::Ipv6Addr> {
    (h.len() == 32)
        .then(|| u128::from_str_radix(h, 16).ok())
        .flatten()
        .map(std::net::Ipv6Addr::from)
}

fn ipv6_addresses(table: &str, ifname: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in table.lines() {
        // address ifindex prefixlen scope flags ifname
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[5] != ifname {
            continue;
        }
        let Some(a) = hex_ipv6(f[0]) else { continue };
        if a.segments()[0] & 0xffc0 == 0xfe80 {
            continue;
        }
        let prefix = u8::from_str_radix(f[2], 16).unwrap_or(128);
        out.push(format!("IPv6 address {a}/{prefix}"));
    }
    out
}

fn ipv6_routes(table: &str, ifname: &str) -> Vec<String> {
    let mut out = Vec::new();
    for l in table.lines() {
        // dst dst_len src src_len next_hop metric refcnt use flags ifname
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 10 || f[9] != ifname {
            continue;
        }
        let Some(dst) = hex_ipv6(f[0]) else { continue };
        let len = u8::from_str_radix(f[1], 16).unwrap_or(128);
        let seg0 = dst.segments()[0];
        if seg0 & 0xffc0 == 0xfe80 || seg0 & 0xff00 == 0xff00 {
            continue;
        }
        let hop = hex_ipv6(f[4]).filter(|h| !h.is_unspecified());
        out.push(match (len, hop) {
            (0, Some(h)) => format!("IPv6 default route via {h}"),
            (0, None) => "IPv6 default route".to_owned(),
            (_, Some(h)) => format!("IPv6 route {dst}/{len} via {h}"),
            (_, None) => format!("IPv6 route {dst}/{len}"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tables() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                     eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                     eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                     eth1\t0000000A\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n";
        assert_eq!(
            ipv4_routes(route, "eth0"),
            ["IPv4 default route via 192.168.2.1", "IPv4 route 192.168.2.0/24"]
        );
        assert_eq!(ipv4_routes(route, "eth1"), ["IPv4 route 10.0.0.0/8"]);
        assert!(ipv4_routes(route, "eth2").is_empty());
        let inet6 = "fe800000000000000000000000000001 02 40 20 80 eth0\n\
                     20010db8000000000000000000000001 02 40 00 80 eth0\n";
        assert_eq!(ipv6_addresses(inet6, "eth0"), ["IPv6 address 2001:db8::1/64"]);
        let r6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 eth0\n\
                  ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth0\n";
        assert_eq!(ipv6_routes(r6, "eth0"), ["IPv6 default route via fe80::1"]);
    }

    #[test]
    fn safe_names() {
        assert!(is_safe_name("igb") && is_safe_name("vfio-pci") && is_safe_name("mlx5_core"));
        for bad in ["", "..", ".", "a/b", "x y", "a\nb", &"a".repeat(65)] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
    }
}
