//! Shared helpers of the VM tests that put the guest kernel's igb driver on the other end of the
//! link from our port: the environment, sysfs, commands, the kernel port's interface, checksums.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Hang guard only (never a speed assertion).
pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run in the test VM"))
}

/// Ports `ours` (of `model`) and `peer` (igb) of the topology, linked to each other: their PCI
/// addresses and the peer's MAC.
pub fn linked_ports(ours: usize, model: &str, peer: usize) -> (String, String, oxpmd_pmd::MacAddr) {
    assert_eq!(env(&format!("OXPMD_PORT{ours}_MODEL")), model);
    assert_eq!(env(&format!("OXPMD_PORT{peer}_MODEL")), "igb");
    assert_eq!(
        env(&format!("OXPMD_PORT{ours}_PEER")),
        peer.to_string(),
        "port {ours} is linked to port {peer}"
    );
    let mac = env(&format!("OXPMD_PORT{peer}_MAC")).parse().unwrap();
    (
        env(&format!("OXPMD_PORT{ours}")),
        env(&format!("OXPMD_PORT{peer}")),
        mac,
    )
}

/// The sysfs directory of PCI device `addr`.
pub fn dev(addr: &str) -> PathBuf {
    Path::new("/sys/bus/pci/devices").join(addr)
}

pub fn driver_of(addr: &str) -> Option<String> {
    std::fs::read_link(dev(addr).join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Polls `cond` until it holds; fails the test after [`DEADLINE`].
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < DEADLINE, "{what}: not within {DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command; fails the test unless it succeeds.
pub fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{cmd} {args:?}: {e}"));
    assert!(st.success(), "{cmd} {args:?}: {st}");
}

/// Loads the kernel igb driver (after our port took its device for vfio-pci, so igb binds the
/// peer only) and returns the peer's network interface, up, with its carrier.
pub fn kernel_igb(peer: &str, modules: &[&str]) -> String {
    for m in std::iter::once("igb").chain(modules.iter().copied()) {
        // Loaded once per VM: a later test of the same binary finds it there.
        if !Path::new("/sys/module").join(m).exists() {
            run(&env("OXPMD_VM_MODPROBE"), &[m]);
        }
    }
    if driver_of(peer).is_none() {
        // igb binds the ports it finds unbound when it loads; one given back since then is
        // bound again by hand.
        std::fs::write("/sys/bus/pci/drivers/igb/bind", peer).unwrap();
    }
    wait_for("the kernel igb binds the peer", || {
        driver_of(peer).as_deref() == Some("igb")
    });
    let mut iface = String::new();
    wait_for("the peer's network interface", || {
        match std::fs::read_dir(dev(peer).join("net")).map(|d| d.flatten().next()) {
            Ok(Some(e)) => {
                iface = e.file_name().to_string_lossy().into_owned();
                true
            }
            _ => false,
        }
    });
    iface
}

/// Waits until the kernel can send on `iface`: its carrier is up (the link to our port) and the
/// kernel has acted on it. The carrier bit is set at once, but the transmit queues are activated
/// later by the kernel's link-watch work, which sets the operstate and then replaces the `noop`
/// qdisc that drops every frame (net/core/link_watch.c); frames sent in between are lost without
/// an error (a UDP send still succeeds), so the qdisc is what is waited for.
pub fn wait_carrier(iface: &str) {
    wait_for("the kernel sees its carrier and can send", || {
        let carrier =
            std::fs::read_to_string(format!("/sys/class/net/{iface}/carrier")).is_ok_and(|c| c.trim() == "1");
        let up = std::fs::read_to_string(format!("/sys/class/net/{iface}/operstate"))
            .is_ok_and(|s| s.trim() == "up");
        carrier && up && root_qdisc(iface).is_none_or(|q| q != "noop")
    });
}

/// The kind of `iface`'s root qdisc (`tc qdisc show dev IFACE`: `qdisc KIND HANDLE root ...`).
fn root_qdisc(iface: &str) -> Option<String> {
    let out = std::process::Command::new("tc")
        .args(["qdisc", "show", "dev", iface])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(" root "))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
}

/// Gives the peer's device back (unbound), as later tests of the binary expect.
pub fn release(peer: &str) {
    std::fs::write(dev(peer).join("driver/unbind"), peer).unwrap();
}

/// The Internet checksum of `data`.
pub fn csum(data: &[u8]) -> u16 {
    let mut s: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// An Ethernet + IPv4 (DF, TTL 64) + UDP frame from `src` to `dst` carrying `payload`, with the
/// IP header checksum and a UDP checksum of 0 (none: allowed for IPv4); padded to 60 bytes.
#[allow(clippy::too_many_arguments)]
pub fn udp_ipv4_frame(
    dst: [u8; 6],
    src: [u8; 6],
    src_ip: [u8; 4],
    dst_ip: [u8; 4],
    sport: u16,
    dport: u16,
    id: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&id.to_be_bytes());
    ip.extend_from_slice(&src_ip);
    ip.extend_from_slice(&dst_ip);
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f.resize(f.len().max(60), 0);
    f
}

/// A port of ours with its pool and its one RX and one TX queue.
pub type OpenedPort = (
    oxpmd_pmd::Port,
    oxpmd_dma::Mempool,
    oxpmd_pmd::RxQueue,
    oxpmd_pmd::TxQueue,
);

/// Our port on `addr`, configured by `config` (from one RX and one TX queue of 256 descriptors
/// over a 2048-buffer pool of the device's DMA map), not started, its queues taken.
pub fn open_configured(
    addr: &str,
    pool_name: &str,
    config: impl FnOnce(oxpmd_pmd::PortConfig) -> oxpmd_pmd::PortConfig,
) -> OpenedPort {
    use oxpmd_dma::{Mempool, MempoolConfig};
    let mut port = oxpmd_pmd::Port::open(addr, 0).unwrap_or_else(|e| panic!("open {addr}: {e}"));
    let map = port.dma_map().expect("a PCI port has a DMA map");
    let pool = Mempool::new(
        &MempoolConfig {
            cache_size: 32,
            ..MempoolConfig::new(pool_name, 2048)
        },
        map,
    )
    .unwrap();
    let cfg = config(oxpmd_pmd::PortConfig::new(pool.clone()).ring_sizes(256, 256));
    port.configure(&cfg)
        .unwrap_or_else(|e| panic!("configure {addr}: {e}"));
    let (mut rxs, mut txs) = port.take_queues().unwrap();
    (port, pool, rxs.remove(0), txs.remove(0))
}

/// [`open_configured`], then started with its link up.
pub fn open_started(
    addr: &str,
    pool_name: &str,
    config: impl FnOnce(oxpmd_pmd::PortConfig) -> oxpmd_pmd::PortConfig,
) -> OpenedPort {
    let (mut port, pool, rx, tx) = open_configured(addr, pool_name, config);
    port.start().unwrap();
    port.wait_link_up(Duration::from_secs(30)).unwrap();
    (port, pool, rx, tx)
}

/// What `pick` makes of the packets `rx` receives within `wait` (until `want` of them, if
/// given); packets it returns `None` for are dropped.
pub fn receive_matching<T>(
    rx: &mut oxpmd_pmd::RxQueue,
    want: Option<usize>,
    wait: Duration,
    mut pick: impl FnMut(&oxpmd_dma::Packet) -> Option<T>,
) -> Vec<T> {
    let mut got = Vec::new();
    let mut b = oxpmd_pmd::Burst::new();
    let t = Instant::now();
    while t.elapsed() < wait && want.is_none_or(|w| got.len() < w) {
        if rx.rx_burst(&mut b) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        got.extend(b.drain().filter_map(|p| pick(&p)));
    }
    got
}

/// Gives `addr` back to no driver, its `driver_override` cleared (what an earlier test's
/// `Port::open` set to vfio-pci): the kernel's igb can bind it then, and a later `Port::open`
/// binds it to vfio-pci again.
pub fn unbind_any(addr: &str) {
    let sys = oxpmd_vfio::pci::Sysfs::new();
    let a = oxpmd_vfio::PciAddress::parse(addr).unwrap();
    sys.unbind(a).unwrap_or_else(|e| panic!("unbind {addr}: {e}"));
    sys.set_driver_override(a, None)
        .unwrap_or_else(|e| panic!("clear the driver_override of {addr}: {e}"));
}

/// The kernel's igb on a device of the topology (the link peer, or a VF's PF), given back unbound
/// when dropped: on a failing test's path too, so the next test of the binary finds the device as
/// it expects.
pub struct KernelPort {
    pub addr: String,
    pub iface: String,
}

impl KernelPort {
    /// Takes `addr` from whatever driver has it, binds it to the kernel's igb (see [`kernel_igb`])
    /// and returns its interface (down, no address).
    pub fn bind(addr: &str) -> KernelPort {
        if driver_of(addr).as_deref() != Some("igb") {
            unbind_any(addr);
        }
        let iface = kernel_igb(addr, &[]);
        KernelPort {
            addr: addr.to_string(),
            iface,
        }
    }
}

impl Drop for KernelPort {
    fn drop(&mut self) {
        if driver_of(&self.addr).is_some()
            && let Err(e) = std::fs::write(dev(&self.addr).join("driver/unbind"), &self.addr)
        {
            eprintln!("{}: unbind on cleanup: {e}", self.addr);
        }
    }
}

/// The kernel's igb as the PF of one VF, for our igbvf against a PF driver we did not write.
/// Create it before the port that opens the VF, so that the port (and its VFIO device) is dropped
/// first: removing a VF vfio-pci still holds waits for its release. Dropping it (on a failing
/// test's path too) removes the VF (`sriov_numvfs` 0), then gives the PF back unbound.
pub struct KernelPfVf {
    /// The PF on the kernel's igb.
    pub pf: KernelPort,
    /// The VF's PCI address (no driver until `Port::open` binds it to vfio-pci).
    pub vf: String,
}

impl KernelPfVf {
    /// The kernel's igb on `pf` with one VF (`sriov_numvfs`), the PF's interface down and the VF
    /// without a MAC: see [`KernelPfVf::set_vf_mac`] and [`KernelPfVf::up`], or
    /// [`KernelPfVf::ready`].
    pub fn create(pf: &str) -> KernelPfVf {
        let pf = KernelPort::bind(pf);
        let sys = oxpmd_vfio::pci::Sysfs::new();
        let pf_addr = oxpmd_vfio::PciAddress::parse(&pf.addr).unwrap();
        let mut this = KernelPfVf {
            pf,
            vf: String::new(),
        };
        sys.set_num_vfs(pf_addr, 1)
            .unwrap_or_else(|e| panic!("one VF on the kernel's PF {}: {e}", this.pf.addr));
        let vfs = sys.device(pf_addr).unwrap().virtfns;
        assert_eq!(vfs.len(), 1, "{}: one VF", this.pf.addr);
        this.vf = vfs[0].to_string();
        assert_eq!(driver_of(&this.vf), None, "the VF {} has no driver", this.vf);
        this
    }

    /// The PF gives the VF `mac` (`ip link set PF vf 0 mac`): the kernel's PF answers the VF's
    /// reset with it (and refuses the VF's own SET_MAC_ADDR from then on).
    pub fn set_vf_mac(&self, mac: oxpmd_pmd::MacAddr) {
        let iface = self.pf.iface.as_str();
        run(
            "ip",
            &["link", "set", "dev", iface, "vf", "0", "mac", &mac.to_string()],
        );
    }

    /// The PF's MTU `mtu`, its interface up with its carrier: the kernel's PF releases its VFs
    /// from reset (CTRL_EXT.PFRSTD) and answers their mailbox only while its interface is open.
    pub fn up(&self, mtu: u16) {
        let iface = self.pf.iface.as_str();
        run(
            "ip",
            &["link", "set", "dev", iface, "mtu", &mtu.to_string(), "up"],
        );
        wait_carrier(iface);
    }

    /// [`KernelPfVf::create`], the VF's MAC `vf_mac`, the PF up with MTU `pf_mtu`.
    pub fn ready(pf: &str, vf_mac: oxpmd_pmd::MacAddr, pf_mtu: u16) -> KernelPfVf {
        let this = Self::create(pf);
        this.set_vf_mac(vf_mac);
        this.up(pf_mtu);
        this
    }
}

impl Drop for KernelPfVf {
    fn drop(&mut self) {
        let sys = oxpmd_vfio::pci::Sysfs::new();
        if let Ok(pf) = oxpmd_vfio::PciAddress::parse(&self.pf.addr)
            && let Err(e) = sys.set_num_vfs(pf, 0)
        {
            eprintln!("{}: sriov_numvfs 0 on cleanup: {e}", self.pf.addr);
        }
        // `self.pf` gives the PF back when it drops, after this.
    }
}
