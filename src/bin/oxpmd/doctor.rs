//! `oxpmd doctor`: checks the host (and the given devices) for what oxpmd needs, each check passing or
//! naming the exact fix. What is checked, and from where, is listed in docs/cli.md.

use oxpmd::dma::mempool::{DEFAULT_DATA_ROOM, DEFAULT_HEADROOM};
use oxpmd::dma::{DmaRegion, PageSize, RegionError, RegionOptions};
use oxpmd::pmd::drivers;
use oxpmd::pmd::port::DEFAULT_RING_SIZE;
use oxpmd::vfio::PciAddress;
use oxpmd::vfio::pci::VFIO_PCI_DRIVER;
use serde_json::{Value, json};

use crate::group;
use crate::host::Host;
use crate::names;

/// Buffers in the default packet pool (DPDK l2fwd's minimum, which examples/l2fwd uses).
pub const DEFAULT_POOL_BUFFERS: usize = 8192;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, but worth knowing (does not fail the run).
    Warn,
    /// oxpmd will not work until it is fixed.
    Fail,
}

/// One check's result.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// The command that fixes it (warnings and failures).
    pub fix: Option<String>,
}

fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        status: Status::Pass,
        detail: detail.into(),
        fix: None,
    }
}

fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        status: Status::Warn,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        name: name.into(),
        status: Status::Fail,
        detail: detail.into(),
        fix: Some(fix.into()),
    }
}

const IOMMU_FIX: &str = "enable VT-d (Intel) / AMD-Vi (AMD) in the firmware, add intel_iommu=on (or amd_iommu=on) to \
                         GRUB_CMDLINE_LINUX in /etc/default/grub, run `update-grub` and reboot";

/// Runs every check.
pub fn run(host: &Host, addrs: &[PciAddress]) -> Vec<Check> {
    let mut out = Vec::new();
    let cmdline = host.cmdline();
    let iommu_on = check_iommu(host, &cmdline, &mut out);
    check_interrupt_remapping(host, &cmdline, iommu_on, &mut out);
    check_vfio(host, addrs, &mut out);
    for &a in addrs {
        check_device(host, a, &mut out);
    }
    let ports = addrs.len().max(1);
    check_memory(host, ports, &mut out);
    check_cpu_isolation(&cmdline, &mut out);
    out
}

fn cmdline_params<'a>(cmdline: &'a str, keys: &[&str]) -> Vec<&'a str> {
    cmdline
        .split_whitespace()
        .filter(|w| keys.iter().any(|k| w.split('=').next() == Some(*k)))
        .collect()
}

fn check_iommu(host: &Host, cmdline: &str, out: &mut Vec<Check>) -> bool {
    let units: Vec<String> = std::fs::read_dir(host.sys.join("class/iommu"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let groups = std::fs::read_dir(host.sys.join("kernel/iommu_groups"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    let params = cmdline_params(cmdline, &["intel_iommu", "amd_iommu", "iommu"]);
    let shown = if params.is_empty() {
        "no IOMMU option on the kernel command line".to_owned()
    } else {
        format!("kernel command line: {}", params.join(" "))
    };
    let off = params.iter().any(|p| p.ends_with("=off"));
    let on = !units.is_empty() && groups > 0;
    if on {
        let mut units = units;
        units.sort();
        out.push(pass(
            "IOMMU",
            format!("enabled: {} ({groups} IOMMU groups; {shown})", units.join(", ")),
        ));
    } else {
        out.push(fail(
            "IOMMU",
            format!(
                "off: /sys/class/iommu is empty and there are {groups} IOMMU groups ({shown}{})",
                if off { ", which turns it off" } else { "" }
            ),
            IOMMU_FIX,
        ));
    }
    if host.module_param("vfio", "enable_unsafe_noiommu_mode").as_deref() == Some("Y") {
        out.push(warn(
            "no-IOMMU mode",
            "vfio enable_unsafe_noiommu_mode=Y: devices without an IOMMU group get unrestricted DMA",
            "echo N > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode",
        ));
    }
    on
}

fn check_interrupt_remapping(host: &Host, cmdline: &str, iommu_on: bool, out: &mut Vec<Check>) {
    const NAME: &str = "interrupt remapping";
    let unsafe_ok = host
        .module_param("vfio_iommu_type1", "allow_unsafe_interrupts")
        .is_some_and(|v| v == "Y" || v == "1");
    // With remapping on, the x86 interrupt chips are the remapping ones: "IR-IO-APIC", "IR-PCI-MSI...".
    let interrupts = host.read_proc("interrupts").unwrap_or_default();
    let ir_chips = interrupts.split_whitespace().any(|w| w.starts_with("IR-"));
    let ir_off = cmdline_params(cmdline, &["intremap"])
        .into_iter()
        .find(|p| p.ends_with("=off"));
    if ir_chips {
        let mut detail = "active (IR- interrupt chips in /proc/interrupts)".to_owned();
        if unsafe_ok {
            detail.push_str("; vfio_iommu_type1 allow_unsafe_interrupts=Y is set but not needed");
        }
        out.push(pass(NAME, detail));
    } else if unsafe_ok {
        out.push(warn(
            NAME,
            "not seen active, but vfio_iommu_type1 allow_unsafe_interrupts=Y lets VFIO run without it: a device \
             can forge interrupts (MSI writes) to the host",
            "enable interrupt remapping (x2APIC and interrupt remapping in the firmware, no intremap=off on the \
             kernel command line), then `echo N > /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts`",
        ));
    } else if !iommu_on {
        out.push(fail(
            NAME,
            "not active: it needs the IOMMU",
            "enable the IOMMU first (see the IOMMU check)",
        ));
    } else if !cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
        out.push(warn(
            NAME,
            "could not be confirmed on this architecture (no IR- interrupt chips to look for)",
            "if VFIO_SET_IOMMU fails with EPERM, the platform lacks MSI isolation",
        ));
    } else {
        out.push(fail(
            NAME,
            format!(
                "not active (no IR- interrupt chips in /proc/interrupts{}): VFIO_SET_IOMMU fails with EPERM \
                 (\"No interrupt remapping support\")",
                ir_off
                    .map(|p| format!("; {p} on the kernel command line"))
                    .unwrap_or_default()
            ),
            "enable interrupt remapping in the firmware (and drop intremap=off), or at your own risk: \
             `echo Y > /sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts`",
        ));
    }
}

fn is_sriov_pf(host: &Host, a: PciAddress) -> bool {
    host.sysfs()
        .device(a)
        .is_ok_and(|d| d.sriov_total_vfs.is_some_and(|t| t > 0))
}

fn check_vfio(host: &Host, addrs: &[PciAddress], out: &mut Vec<Check>) {
    let missing: Vec<&str> = ["vfio", "vfio_pci", "vfio_iommu_type1"]
        .into_iter()
        .filter(|m| !host.module_present(m))
        .collect();
    if missing.is_empty() && host.pci_driver_present(VFIO_PCI_DRIVER) {
        out.push(pass(
            "vfio modules",
            "vfio, vfio_pci, vfio_iommu_type1 loaded; vfio-pci driver registered",
        ));
    } else {
        out.push(fail(
            "vfio modules",
            if missing.is_empty() {
                "the vfio-pci PCI driver is not registered".to_owned()
            } else {
                format!("not loaded: {}", missing.join(", "))
            },
            "modprobe vfio-pci  (at boot: `echo vfio-pci > /etc/modules-load.d/vfio-pci.conf`)",
        ));
    }
    let node = host.dev_path("vfio/vfio");
    if node.exists() {
        out.push(pass("/dev/vfio/vfio", "present"));
    } else {
        out.push(fail(
            "/dev/vfio/vfio",
            format!("{} does not exist", node.display()),
            "modprobe vfio-pci",
        ));
    }
    if host.module_present("vfio_pci") {
        let pfs: Vec<String> = addrs
            .iter()
            .filter(|&&a| is_sriov_pf(host, a))
            .map(ToString::to_string)
            .collect();
        const FIX: &str = "echo 1 > /sys/module/vfio_pci/parameters/enable_sriov  (at boot: `echo \"options \
                           vfio-pci enable_sriov=1\" > /etc/modprobe.d/vfio-pci.conf`)";
        match host.module_param("vfio_pci", "enable_sriov").as_deref() {
            Some("Y") | Some("1") => out.push(pass("vfio-pci enable_sriov", "Y: PFs on vfio-pci can enable VFs")),
            Some(v) if !pfs.is_empty() => out.push(fail(
                "vfio-pci enable_sriov",
                format!(
                    "{v}: vfio-pci refuses VFs on its PFs (writing sriov_numvfs fails with ENOENT); SR-IOV PFs \
                     checked: {}",
                    pfs.join(", ")
                ),
                FIX,
            )),
            Some(v) => out.push(warn(
                "vfio-pci enable_sriov",
                format!("{v}: PFs on vfio-pci cannot enable VFs (only matters for SR-IOV)"),
                FIX,
            )),
            None => out.push(warn(
                "vfio-pci enable_sriov",
                "this vfio-pci has no enable_sriov parameter (kernel older than 5.7?)",
                "use a kernel with vfio-pci SR-IOV support (5.7 or later)",
            )),
        }
    }
}

fn check_device(host: &Host, a: PciAddress, out: &mut Vec<Check>) {
    let sys = host.sysfs();
    let dev = match sys.device(a) {
        Ok(d) => d,
        Err(e) => {
            out.push(fail(
                format!("{a}"),
                format!("no such PCI device ({e})"),
                "oxpmd devices  (lists the network devices and their addresses)",
            ));
            return;
        }
    };
    let name = names::device_name(dev.vendor, dev.device).unwrap_or("unknown device");
    match drivers::lookup(dev.vendor, dev.device) {
        Some(e) if e.open.is_some() => out.push(pass(
            format!("{a}"),
            format!(
                "{:04x}:{:04x} {name}; oxpmd driver {}",
                dev.vendor, dev.device, e.name
            ),
        )),
        Some(e) => out.push(warn(
            format!("{a}"),
            format!(
                "{:04x}:{:04x} {name}: the oxpmd driver {} is not built yet",
                dev.vendor, dev.device, e.name
            ),
            "use DPDK or the kernel driver for this device meanwhile",
        )),
        None => out.push(warn(
            format!("{a}"),
            format!(
                "{:04x}:{:04x} {name}: oxpmd has no driver for this id",
                dev.vendor, dev.device
            ),
            format!("oxpmd drivers serve: {}", drivers::known_ids()),
        )),
    }
    let driver = dev.driver.as_deref();
    if driver == Some(VFIO_PCI_DRIVER) {
        out.push(pass(format!("{a} driver"), "bound to vfio-pci"));
    } else {
        out.push(fail(
            format!("{a} driver"),
            format!("bound to {}, not vfio-pci", driver.unwrap_or("no driver")),
            format!("oxpmd bind {a}"),
        ));
    }
    let Some(g) = dev.iommu_group else {
        out.push(fail(
            format!("{a} IOMMU group"),
            "none: the IOMMU is off",
            IOMMU_FIX,
        ));
        return;
    };
    let members = match sys.group_members(g) {
        Ok(m) => m,
        Err(e) => {
            out.push(fail(format!("{a} IOMMU group"), e.to_string(), "check dmesg"));
            return;
        }
    };
    let listed: Vec<String> = members.iter().map(group::describe).collect();
    let blockers = group::blockers(&members, &[]);
    if !blockers.is_empty() {
        let b: Vec<String> = blockers.iter().map(|m| group::describe(m)).collect();
        out.push(fail(
            format!("{a} IOMMU group"),
            format!(
                "group {g} is not viable: {} on a kernel driver (members: {})",
                b.join(", "),
                listed.join(", ")
            ),
            format!(
                "oxpmd bind --group {a}  (binds every member to vfio-pci; or unbind {})",
                blockers
                    .iter()
                    .map(|m| m.address.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
        return;
    }
    let node = host.dev_path(&format!("vfio/{g}"));
    if driver == Some(VFIO_PCI_DRIVER) && !node.exists() {
        out.push(fail(
            format!("{a} IOMMU group"),
            format!("group {g} is viable but {} does not exist", node.display()),
            "modprobe vfio-pci, then rebind: oxpmd unbind ADDR && oxpmd bind ADDR",
        ));
        return;
    }
    out.push(pass(
        format!("{a} IOMMU group"),
        format!("group {g} is viable: {}", listed.join(", ")),
    ));
}

/// Bytes of hugepage memory the default set-up takes: one pool of [`DEFAULT_POOL_BUFFERS`] buffers
/// (headroom + data room, carved by dma's page-aware layout; the metadata is not hugepage memory)
/// and one descriptor-ring region per port, each region rounded up to the page size. Returns
/// (pages, bytes).
pub fn default_need(page: u64, ports: usize) -> (u64, u64) {
    let page_size = if page >= 1 << 30 {
        PageSize::Huge1G
    } else {
        PageSize::Huge2M
    };
    let pool = oxpmd::dma::region_len(
        DEFAULT_POOL_BUFFERS,
        DEFAULT_HEADROOM,
        DEFAULT_DATA_ROOM,
        page_size,
    )
    .unwrap_or(usize::MAX) as u64;
    let rings = (2 * DEFAULT_RING_SIZE * 16) as u64;
    let pages = pool.div_ceil(page) + ports as u64 * rings.div_ceil(page);
    (pages, pages * page)
}

fn check_memory(host: &Host, ports: usize, out: &mut Vec<Check>) {
    let kib = host.default_hugepage_kib().unwrap_or(2048);
    let page = kib * 1024;
    let (need_pages, need_bytes) = default_need(page, ports);
    let label: &'static str = match kib {
        2048 => "2 MiB",
        1_048_576 => "1 GiB",
        _ => "default-size",
    };
    let dir = format!("kernel/mm/hugepages/hugepages-{kib}kB");
    let count = |f: &str| {
        host.read_sys(&format!("{dir}/{f}"))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let need_txt = format!(
        "{need_pages} needed for the default pool of {DEFAULT_POOL_BUFFERS} buffers and the rings of {ports} port{}",
        if ports == 1 { "" } else { "s" }
    );
    let mut hugepages_ok = false;
    match (count("nr_hugepages"), count("free_hugepages")) {
        (Some(total), Some(free)) => {
            let resv = count("resv_hugepages").unwrap_or(0);
            let have = free.saturating_sub(resv);
            let nr_path = if host.default_hugepage_kib().is_some() {
                "/proc/sys/vm/nr_hugepages".to_owned()
            } else {
                format!("/sys/{dir}/nr_hugepages")
            };
            if total == 0 {
                out.push(fail(
                    "hugepages",
                    format!("none reserved ({label}; {need_txt})"),
                    format!(
                        "echo {need_pages} > {nr_path}  (at boot: hugepages={need_pages} on the kernel command line)"
                    ),
                ));
            } else if have < need_pages {
                let suggest = total + (need_pages - have);
                out.push(fail(
                    "hugepages",
                    format!("{total} x {label} reserved, {have} free: too few ({need_txt})"),
                    format!("echo {suggest} > {nr_path}  (or stop what holds them)"),
                ));
            } else {
                out.push(pass(
                    "hugepages",
                    format!("{total} x {label} reserved, {have} free ({need_txt})"),
                ));
                hugepages_ok = true;
            }
        }
        _ => out.push(fail(
            "hugepages",
            format!("the kernel has no {label} hugepage pool (/sys/{dir} missing)"),
            "use a kernel with CONFIG_HUGETLBFS and boot with hugepagesz=2M hugepages=N",
        )),
    }
    let mounts = host.hugetlbfs_mounts();
    if mounts.is_empty() {
        out.push(warn(
            "hugetlbfs",
            "not mounted: oxpmd does not need it (its hugepage memory is an anonymous memfd), DPDK does",
            "mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages",
        ));
    } else {
        out.push(pass("hugetlbfs", format!("mounted: {}", mounts.join(", "))));
    }
    let cap = host.has_cap_ipc_lock();
    let mut memlock_ok = false;
    match host.memlock_limit() {
        Ok(None) => {
            out.push(pass("RLIMIT_MEMLOCK", "unlimited"));
            memlock_ok = true;
        }
        Ok(Some(lim)) if lim >= need_bytes => {
            out.push(pass(
                "RLIMIT_MEMLOCK",
                format!("{} KiB, {} KiB needed", lim / 1024, need_bytes / 1024),
            ));
            memlock_ok = true;
        }
        Ok(Some(lim)) if cap => {
            out.push(pass(
                "RLIMIT_MEMLOCK",
                format!(
                    "{} KiB, below the {} KiB needed, but this user has CAP_IPC_LOCK (VFIO and mlock then ignore \
                     the limit)",
                    lim / 1024,
                    need_bytes / 1024
                ),
            ));
            memlock_ok = true;
        }
        Ok(Some(lim)) => out.push(fail(
            "RLIMIT_MEMLOCK",
            format!(
                "{} KiB (of this shell; applications inherit it), {} KiB needed: VFIO pins every mapped page",
                lim / 1024,
                need_bytes / 1024
            ),
            format!(
                "ulimit -l {}  (or `ulimit -l unlimited`; LimitMEMLOCK= in a systemd unit)",
                need_bytes.div_ceil(1024)
            ),
        )),
        Err(e) => out.push(warn(
            "RLIMIT_MEMLOCK",
            format!("unknown: {e}"),
            "check `ulimit -l`",
        )),
    }
    if hugepages_ok && memlock_ok && !host.relocated() {
        out.push(try_allocation(page, need_bytes));
    }
}

/// Allocates (and frees) the default pool's hugepage memory through the dma crate, so that its own
/// checks (hugepage counts, RLIMIT_MEMLOCK) and the kernel (cgroup limits, fragmentation) have a say.
fn try_allocation(page: u64, need_bytes: u64) -> Check {
    const NAME: &str = "DMA memory";
    let page_size = if page == 1 << 30 {
        PageSize::Huge1G
    } else {
        PageSize::Huge2M
    };
    let opts = RegionOptions {
        page_size,
        allow_4k_fallback: false,
    };
    match DmaRegion::new(need_bytes as usize, &opts) {
        Ok(r) => pass(
            NAME,
            format!(
                "allocated, populated and locked {} MiB of hugepages (the default set-up's), then freed them",
                r.len() >> 20
            ),
        ),
        Err(e) => {
            let fix = match &e {
                RegionError::NoHugepagesReserved { need, nr_path, .. } => format!("echo {need} > {nr_path}"),
                RegionError::TooFewFree { suggest, nr_path, .. } => format!("echo {suggest} > {nr_path}"),
                RegionError::MemlockLimit { suggest_kib, .. } => format!("ulimit -l {suggest_kib}"),
                _ => "see the message".to_owned(),
            };
            fail(NAME, e.to_string(), fix)
        }
    }
}

fn check_cpu_isolation(cmdline: &str, out: &mut Vec<Check>) {
    let iso = cmdline_params(cmdline, &["isolcpus", "nohz_full", "rcu_nocbs"]);
    if iso.is_empty() {
        out.push(warn(
            "CPU isolation",
            "no isolcpus / nohz_full on the kernel command line: polling cores share time with other tasks \
             (a hint, not required)",
            "for dedicated polling cores, add e.g. isolcpus=2-3 nohz_full=2-3 rcu_nocbs=2-3 to the kernel \
             command line and pin the queues' threads there",
        ));
    } else {
        out.push(pass("CPU isolation", iso.join(" ")));
    }
}

/// Prints the checks and the summary; returns the number of failures.
pub fn print(checks: &[Check]) -> usize {
    for c in checks {
        let tag = match c.status {
            Status::Pass => "[ OK ]",
            Status::Warn => "[WARN]",
            Status::Fail => "[FAIL]",
        };
        println!("{tag} {}: {}", c.name, c.detail);
        if c.status != Status::Pass
            && let Some(f) = &c.fix
        {
            println!("       fix: {f}");
        }
    }
    let n = |s: Status| checks.iter().filter(|c| c.status == s).count();
    let failed = n(Status::Fail);
    let warnings = n(Status::Warn);
    println!(
        "doctor: {} passed, {warnings} warning{}, {failed} failed",
        n(Status::Pass),
        if warnings == 1 { "" } else { "s" }
    );
    failed
}

/// The checks as JSON: `{"checks": [{name, status, detail, fix}], "failed": N}`.
pub fn to_json(checks: &[Check]) -> Value {
    let list: Vec<Value> = checks
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "status": match c.status { Status::Pass => "pass", Status::Warn => "warn", Status::Fail => "fail" },
                "detail": c.detail,
                "fix": c.fix,
            })
        })
        .collect();
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    json!({ "checks": list, "failed": failed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_counts_pool_and_rings() {
        let (pages, bytes) = default_need(2 << 20, 2);
        // 963 buffers of 2176 bytes per 2 MiB page (none crosses a page).
        let pool_pages = 8192u64.div_ceil(963);
        assert_eq!(pages, pool_pages + 2);
        assert_eq!(bytes, pages * (2 << 20));
    }

    #[test]
    fn cmdline_keys() {
        let c = "BOOT_IMAGE=/vmlinuz intel_iommu=on iommu=pt isolcpus=2-3 quiet";
        assert_eq!(
            cmdline_params(c, &["intel_iommu", "iommu"]),
            ["intel_iommu=on", "iommu=pt"]
        );
        assert_eq!(cmdline_params(c, &["isolcpus", "nohz_full"]), ["isolcpus=2-3"]);
    }
}
