//! vm-topology: pair
//!
//! Smoke test of the test VM itself (run it with `cargo xtask vm test vm_harness`): the environment the
//! harness exports, the emulated NICs, VFIO with SR-IOV enabled, the IOMMU, hugepages, the memlock limit,
//! and the on-demand kernel drivers. Uses only std so it does not depend on the crates it helps test.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

#[path = "../pmd/tests/child_guard/mod.rs"]
mod child_guard;

const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// One port as the harness describes it in the environment.
#[derive(Debug)]
struct Port {
    index: usize,
    addr: String,
    model: String,
    peer: usize,
}

fn var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: this test runs in the test VM only (`cargo xtask vm test`)")
    })
}

fn ports() -> Vec<Port> {
    assert_eq!(var("OXPMD_VM"), "1", "OXPMD_VM");
    let n: usize = var("OXPMD_NUM_PORTS")
        .parse()
        .expect("OXPMD_NUM_PORTS is a number");
    let listed: Vec<String> = var("OXPMD_PORTS")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(listed.len(), n, "OXPMD_PORTS has OXPMD_NUM_PORTS entries");
    (0..n)
        .map(|i| {
            let addr = var(&format!("OXPMD_PORT{i}"));
            assert_eq!(addr, listed[i], "OXPMD_PORT{i} is entry {i} of OXPMD_PORTS");
            Port {
                index: i,
                addr,
                model: var(&format!("OXPMD_PORT{i}_MODEL")),
                peer: var(&format!("OXPMD_PORT{i}_PEER"))
                    .parse()
                    .expect("OXPMD_PORTn_PEER is a number"),
            }
        })
        .collect()
}

fn read_trim(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

fn dev(addr: &str) -> PathBuf {
    Path::new(PCI_DEVICES).join(addr)
}

fn driver_of(addr: &str) -> Option<String> {
    fs::read_link(dev(addr).join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

fn write(path: impl AsRef<Path>, value: &str) {
    let path = path.as_ref();
    fs::write(path, value).unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

/// Polls `cond` for up to `limit` (device state under emulation takes a while), never asserting on time.
fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn environment_describes_the_topology() {
    let ports = ports();
    assert!(!var("OXPMD_TOPOLOGY").is_empty());
    assert!(ports.len() >= 2, "every topology has at least one link");
    let mut addrs = BTreeSet::new();
    for p in &ports {
        assert!(
            addrs.insert(p.addr.clone()),
            "port {} address {} is unique",
            p.index,
            p.addr
        );
        assert!(
            p.peer < ports.len() && p.peer != p.index,
            "port {} peer {} is another port",
            p.index,
            p.peer
        );
        assert_eq!(
            ports[p.peer].peer, p.index,
            "port {}'s link is symmetric",
            p.index
        );
        assert!(
            ["igb", "virtio-net"].contains(&p.model.as_str()),
            "port {} model {}",
            p.index,
            p.model
        );
    }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn working_directory_is_preserved() {
    let cwd = env::current_dir().expect("current directory");
    assert_eq!(
        cwd,
        Path::new(env!("CARGO_MANIFEST_DIR")),
        "tests run in their package directory"
    );
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn ports_are_the_emulated_nics() {
    for p in ports() {
        let d = dev(&p.addr);
        assert!(d.is_dir(), "port {} {} is in {PCI_DEVICES}", p.index, p.addr);
        let (vendor, device) = match p.model.as_str() {
            "igb" => ("0x8086", "0x10c9"),
            "virtio-net" => ("0x1af4", "0x1041"),
            other => panic!("unknown model {other}"),
        };
        assert_eq!(read_trim(d.join("vendor")), vendor, "port {} vendor", p.index);
        assert_eq!(read_trim(d.join("device")), device, "port {} device", p.index);
        assert!(
            d.join("iommu_group").exists(),
            "port {} has an IOMMU group",
            p.index
        );
        if p.model == "igb" {
            assert_eq!(
                read_trim(d.join("sriov_totalvfs")),
                "8",
                "port {} sriov_totalvfs",
                p.index
            );
            assert_eq!(
                read_trim(d.join("sriov_numvfs")),
                "0",
                "port {} starts without VFs",
                p.index
            );
        }
    }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn vfio_and_the_iommu_are_ready() {
    assert!(Path::new("/dev/vfio/vfio").exists(), "/dev/vfio/vfio exists");
    assert_eq!(
        read_trim("/sys/module/vfio_pci/parameters/enable_sriov"),
        "Y",
        "vfio-pci enable_sriov"
    );
    assert!(
        Path::new("/sys/module/vfio_iommu_type1").is_dir(),
        "vfio_iommu_type1 is loaded"
    );
    let iommus = fs::read_dir("/sys/class/iommu")
        .expect("/sys/class/iommu")
        .count();
    assert!(iommus > 0, "an IOMMU is on (/sys/class/iommu is not empty)");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn hugepages_and_memlock_are_ready() {
    let pages: u64 = read_trim("/proc/sys/vm/nr_hugepages")
        .parse()
        .expect("nr_hugepages");
    assert!(pages >= 256, "at least 256 hugepages reserved, found {pages}");
    let mounts = read_trim("/proc/mounts");
    assert!(
        mounts.lines().any(|l| l
            .split_whitespace()
            .take(3)
            .eq(["hugetlbfs", "/dev/hugepages", "hugetlbfs"])),
        "hugetlbfs mounted at /dev/hugepages"
    );
    let limits = read_trim("/proc/self/limits");
    let memlock = limits
        .lines()
        .find(|l| l.starts_with("Max locked memory"))
        .expect("memlock line");
    assert!(
        memlock.contains("unlimited"),
        "RLIMIT_MEMLOCK is unlimited: {memlock}"
    );
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn ports_start_unbound_and_igb_loads_on_demand() {
    let ports = ports();
    for p in &ports {
        assert_eq!(
            driver_of(&p.addr),
            None,
            "port {} {} has no driver at start",
            p.index,
            p.addr
        );
    }
    let igb: Vec<&Port> = ports.iter().filter(|p| p.model == "igb").collect();
    if igb.is_empty() {
        return;
    }
    assert!(
        !Path::new("/sys/module/igb").exists(),
        "igb is not loaded at boot"
    );
    let status = Command::new(var("OXPMD_VM_MODPROBE"))
        .arg("igb")
        .status()
        .expect("run $OXPMD_VM_MODPROBE");
    assert!(status.success(), "$OXPMD_VM_MODPROBE igb: {status}");
    for p in &igb {
        assert!(
            wait_for(Duration::from_secs(60), || driver_of(&p.addr).as_deref()
                == Some("igb")),
            "port {} bound to the kernel igb driver once loaded",
            p.index
        );
        let net = fs::read_dir(dev(&p.addr).join("net")).expect("igb port has a net directory");
        assert_eq!(net.count(), 1, "port {} has one network interface", p.index);
    }
    // Give the ports back so later tests find them unbound.
    for p in &igb {
        write(dev(&p.addr).join("driver/unbind"), &p.addr);
        assert_eq!(driver_of(&p.addr), None, "port {} unbound again", p.index);
    }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn a_hung_child_leaves_its_stacks_and_is_killed() {
    // The tests' hang guard: what a hung pktgen waited for is read from these stacks.
    let mut sleep = Command::new("sleep");
    sleep.arg("600");
    let g = child_guard::ChildGuard::spawn("sleep", &mut sleep, Duration::from_secs(600));
    let stacks = child_guard::thread_stacks(g.pid());
    assert!(
        stacks.lines().any(|l| l.starts_with("#0")),
        "gdb gave no stack of a sleeping child: {stacks}"
    );
    let status = g.wait_or_kill(Duration::from_secs(1));
    assert!(!status.success() && g.timed_out(), "{status}");
}
