//! Host tests of the `oxpmd` tool: argument errors, the `devices` table and JSON, the refusals of
//! `bind` / `unbind` and the `doctor` verdicts, against a fake sysfs / procfs / dev tree
//! (`OXPMD_SYSFS_ROOT`, `OXPMD_PROC_ROOT`, `OXPMD_DEV_ROOT`, `OXPMD_STATE_DIR`). The real kernel
//! paths are covered by tests/vm_cli.rs in the test VM.
#![forbid(unsafe_code)]

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_oxpmd");

/// A temporary directory removed on drop.
struct Tree(PathBuf);

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Tree {
    fn p(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
    fn mk(&self, rel: &str) {
        fs::create_dir_all(self.p(rel)).unwrap();
    }
    fn put(&self, rel: &str, v: &str) {
        let p = self.p(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, v).unwrap();
    }
    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.p(rel)).unwrap()
    }

    /// A PCI function in the fake sysfs.
    fn dev(&self, addr: &str, id: (&str, &str), class: &str, group: u32, driver: Option<&str>) {
        let d = format!("sys/devices/pci0000:00/{addr}");
        self.mk(&d);
        self.put(&format!("{d}/vendor"), &format!("0x{}\n", id.0));
        self.put(&format!("{d}/device"), &format!("0x{}\n", id.1));
        self.put(&format!("{d}/class"), &format!("0x{class}\n"));
        self.put(&format!("{d}/numa_node"), "0\n");
        self.put(&format!("{d}/driver_override"), "(null)\n");
        self.mk(&format!("sys/kernel/iommu_groups/{group}/devices"));
        symlink(
            self.p(&d),
            self.p(&format!("sys/kernel/iommu_groups/{group}/devices/{addr}")),
        )
        .unwrap();
        symlink(
            format!("../../../kernel/iommu_groups/{group}"),
            self.p(&format!("{d}/iommu_group")),
        )
        .unwrap();
        if let Some(drv) = driver {
            self.mk(&format!("sys/bus/pci/drivers/{drv}"));
            self.put(&format!("sys/bus/pci/drivers/{drv}/unbind"), "");
            symlink(
                format!("../../../bus/pci/drivers/{drv}"),
                self.p(&format!("{d}/driver")),
            )
            .unwrap();
        }
        self.mk("sys/bus/pci/devices");
        symlink(
            format!("../../../devices/pci0000:00/{addr}"),
            self.p(&format!("sys/bus/pci/devices/{addr}")),
        )
        .unwrap();
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .env("OXPMD_SYSFS_ROOT", self.p("sys"))
            .env("OXPMD_PROC_ROOT", self.p("proc"))
            .env("OXPMD_DEV_ROOT", self.p("dev"))
            .env("OXPMD_STATE_DIR", self.p("state"))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// A host with the IOMMU, interrupt remapping, vfio (enable_sriov=Y), 256 free 2 MiB hugepages and
/// unlimited memlock, and these devices:
/// - 0000:00:02.0 igb PF (group 1), 2 VFs: 12.0 (vfio-pci, group 7) and 12.2 (no driver, group 8);
/// - 0000:00:03.0 igb PF (group 2) with interface eth0, up, carrying the default route;
/// - 0000:00:04.0 virtio-net modern (group 3) on vfio-pci;
/// - 0000:00:1f.0 ISA bridge on lpc_ich and 0000:00:1f.3 SMBus unbound, sharing group 9.
fn host() -> Tree {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "oxpmd-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let t = Tree(dir);
    t.put("sys/bus/pci/drivers_probe", "");
    t.mk("sys/bus/pci/drivers/vfio-pci");
    t.dev("0000:00:02.0", ("8086", "10c9"), "020000", 1, Some("igb"));
    t.dev("0000:00:03.0", ("8086", "10c9"), "020000", 2, Some("igb"));
    t.dev("0000:00:04.0", ("1af4", "1041"), "020000", 3, Some("vfio-pci"));
    t.dev("0000:00:12.0", ("8086", "10ca"), "020000", 7, Some("vfio-pci"));
    t.dev("0000:00:12.2", ("8086", "10ca"), "020000", 8, None);
    t.dev("0000:00:1f.0", ("8086", "2918"), "060100", 9, Some("lpc_ich"));
    t.dev("0000:00:1f.3", ("8086", "2930"), "0c0500", 9, None);
    let pf = "sys/devices/pci0000:00/0000:00:02.0";
    t.put(&format!("{pf}/sriov_totalvfs"), "8\n");
    t.put(&format!("{pf}/sriov_numvfs"), "2\n");
    t.put(&format!("{pf}/sriov_vf_device"), "10ca\n");
    symlink("../0000:00:12.0", t.p(&format!("{pf}/virtfn0"))).unwrap();
    symlink("../0000:00:12.2", t.p(&format!("{pf}/virtfn1"))).unwrap();
    for vf in ["0000:00:12.0", "0000:00:12.2"] {
        symlink(
            "../0000:00:02.0",
            t.p(&format!("sys/devices/pci0000:00/{vf}/physfn")),
        )
        .unwrap();
    }
    t.put("sys/devices/pci0000:00/0000:00:03.0/sriov_totalvfs", "8\n");
    t.put("sys/devices/pci0000:00/0000:00:03.0/sriov_numvfs", "0\n");
    t.mk("sys/devices/pci0000:00/0000:00:03.0/net/eth0");
    t.put("sys/class/net/eth0/flags", "0x1003\n");
    t.put(
        "proc/net/route",
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
         eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n",
    );
    t.mk("sys/class/iommu/dmar0");
    for m in ["vfio", "vfio_pci", "vfio_iommu_type1"] {
        t.mk(&format!("sys/module/{m}/parameters"));
    }
    t.put("sys/module/vfio_pci/parameters/enable_sriov", "Y\n");
    t.put(
        "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
        "N\n",
    );
    t.put("dev/vfio/vfio", "");
    t.put("dev/vfio/3", "");
    t.put("proc/cmdline", "BOOT_IMAGE=/vmlinuz intel_iommu=on quiet\n");
    t.put(
        "proc/interrupts",
        "           CPU0\n  0:         10   IR-IO-APIC    2-edge      timer\n",
    );
    t.put(
        "proc/meminfo",
        "MemTotal: 2000000 kB\nHugepagesize:       2048 kB\n",
    );
    t.put(
        "proc/mounts",
        "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n",
    );
    t.put(
        "proc/self/limits",
        "Limit                     Soft Limit           Hard Limit           Units\n\
         Max locked memory         unlimited            unlimited            bytes\n",
    );
    t.put("proc/self/status", "Name:\toxpmd\nCapEff:\t0000000000000000\n");
    let hp = "sys/kernel/mm/hugepages/hugepages-2048kB";
    t.put(&format!("{hp}/nr_hugepages"), "256\n");
    t.put(&format!("{hp}/free_hugepages"), "256\n");
    t.put(&format!("{hp}/resv_hugepages"), "0\n");
    t
}

#[test]
fn argument_errors_exit_2_with_usage() {
    let t = host();
    for (args, want) in [
        (&[][..], "Usage: oxpmd"),
        (&["frobnicate"][..], "unrecognized subcommand"),
        (&["bind"][..], "required arguments were not provided"),
        (&["bind", "00:02"][..], "invalid PCI address \"00:02\""),
        (&["bind", "0000:00:20.0"][..], "device must be below 0x20"),
        (&["sriov", "0000:00:02.0"][..], "--vfs <N>"),
        (&["sriov", "0000:00:02.0", "--vfs", "x"][..], "invalid value 'x'"),
        (
            &["sriov", "0000:00:02.0", "--vfs", "70000"][..],
            "invalid value '70000'",
        ),
        (
            &["sriov", "0000:00:02.0", "--vfs", "2", "--kernel-vfs", "1-x"][..],
            "is not a VF index",
        ),
        (
            &["sriov", "0000:00:02.0", "--vfs", "2", "--vf-driver", "igbvf"][..],
            "--kernel-vfs",
        ),
        (&["devices", "--jsn"][..], "unexpected argument '--jsn'"),
    ] {
        let (code, out, err) = t.run(args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Values only the device can judge are checked before anything is written.
    let (code, _, err) = t.run(&["sriov", "0000:00:02.0", "--vfs", "9"]);
    assert_eq!(code, 2);
    assert!(err.contains("at most 8 VFs"), "{err}");
    let (code, _, err) = t.run(&["sriov", "0000:00:02.0", "--vfs", "2", "--kernel-vfs", "2"]);
    assert_eq!(code, 2);
    assert!(err.contains("VF index 2 does not exist"), "{err}");
    let (code, _, err) = t.run(&["sriov", "0000:00:1f.0", "--vfs", "2"]);
    assert_eq!(code, 1);
    assert!(err.contains("not an SR-IOV PF"), "{err}");
    let (code, _, err) = t.run(&["bind", "0000:00:05.0"]);
    assert_eq!(code, 1);
    assert!(err.contains("no PCI device 0000:00:05.0"), "{err}");
    assert_eq!(t.read("sys/devices/pci0000:00/0000:00:02.0/sriov_numvfs"), "2\n");
}

#[test]
fn devices_table_and_json() {
    let t = host();
    let (code, out, err) = t.run(&["devices"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("ADDRESS") && lines[0].contains("IOMMU GROUP"),
        "{out}"
    );
    let pf = lines.iter().find(|l| l.starts_with("0000:00:02.0")).unwrap();
    for want in [
        "8086:10c9",
        "Intel 82576 Gigabit (PF)",
        "igb",
        "2/8 VFs",
        "0000:00:12.0 vfio-pci",
        "0000:00:12.2 -",
    ] {
        assert!(pf.contains(want), "{want:?}: {pf}");
    }
    let vf = lines.iter().find(|l| l.starts_with("0000:00:12.0")).unwrap();
    assert!(vf.contains("8086:10ca") && vf.contains("igbvf"), "{vf}");
    assert!(vf.contains("VF of 0000:00:02.0"), "{vf}");
    let eth = lines.iter().find(|l| l.starts_with("0000:00:03.0")).unwrap();
    assert!(eth.contains("eth0"), "{eth}");
    assert!(!out.contains("0000:00:1f.0"), "not a network device: {out}");

    let (code, out, _) = t.run(&["devices", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let devs = v["devices"].as_array().unwrap();
    let addrs: Vec<&str> = devs.iter().map(|d| d["address"].as_str().unwrap()).collect();
    assert_eq!(
        addrs,
        [
            "0000:00:02.0",
            "0000:00:03.0",
            "0000:00:04.0",
            "0000:00:12.0",
            "0000:00:12.2"
        ]
    );
    let mut keys: Vec<&str> = devs[0].as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "address",
            "class",
            "device_id",
            "driver",
            "driver_override",
            "iommu_group",
            "iommu_group_members",
            "name",
            "netdevs",
            "numa_node",
            "oxpmd_driver",
            "physfn",
            "sriov",
            "vendor_id"
        ]
    );
    let pf = &devs[0];
    assert_eq!(pf["vendor_id"], "8086");
    assert_eq!(pf["device_id"], "10c9");
    assert_eq!(pf["class"], "020000");
    assert_eq!(pf["driver"], "igb");
    assert_eq!(pf["driver_override"], serde_json::Value::Null);
    assert_eq!(pf["iommu_group"], 1);
    assert_eq!(pf["numa_node"], 0);
    assert_eq!(
        pf["iommu_group_members"],
        serde_json::json!([{"address": "0000:00:02.0", "driver": "igb"}])
    );
    assert_eq!(pf["sriov"]["total_vfs"], 8);
    assert_eq!(pf["sriov"]["num_vfs"], 2);
    assert_eq!(
        pf["sriov"]["vfs"],
        serde_json::json!([
            {"address": "0000:00:12.0", "driver": "vfio-pci"},
            {"address": "0000:00:12.2", "driver": null}
        ])
    );
    assert_eq!(pf["oxpmd_driver"]["name"], "igb");
    assert_eq!(pf["oxpmd_driver"]["built"], true);
    assert_eq!(devs[1]["netdevs"], serde_json::json!(["eth0"]));
    assert_eq!(devs[2]["name"], "virtio-net (modern)");
    assert_eq!(devs[3]["physfn"], "0000:00:02.0");
    assert_eq!(devs[3]["sriov"], serde_json::Value::Null);

    let (_, out, _) = t.run(&["devices", "--all", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let lpc = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["address"] == "0000:00:1f.0")
        .unwrap();
    assert_eq!(lpc["oxpmd_driver"], serde_json::Value::Null);
    assert_eq!(lpc["iommu_group_members"].as_array().unwrap().len(), 2);
}

#[test]
fn bind_refuses_before_writing_anything() {
    let t = host();
    let untouched = |t: &Tree| {
        for a in ["0000:00:02.0", "0000:00:03.0", "0000:00:1f.3"] {
            assert_eq!(
                t.read(&format!("sys/devices/pci0000:00/{a}/driver_override")),
                "(null)\n",
                "{a}"
            );
        }
        assert_eq!(t.read("sys/bus/pci/drivers_probe"), "");
        assert!(!t.p("state/bindings").exists());
    };
    // The interface carrying the host's default route.
    let (code, _, err) = t.run(&["bind", "0000:00:03.0"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("0000:00:03.0 carries the host's network: interface eth0 is up"),
        "{err}"
    );
    assert!(
        err.contains("IPv4 default route via 192.168.2.1") && err.contains("--force"),
        "{err}"
    );
    // The same interface down is not the host's route.
    t.put("sys/class/net/eth0/flags", "0x1002\n");
    let (_, _, err) = t.run(&["bind", "0000:00:03.0"]);
    assert!(!err.contains("carries the host's network"), "{err}");
    t.put("sys/class/net/eth0/flags", "0x1003\n");
    t.put("sys/bus/pci/drivers_probe", "");
    t.put("sys/devices/pci0000:00/0000:00:03.0/driver_override", "(null)\n");
    // A PF with VFs enabled.
    let (code, _, err) = t.run(&["bind", "0000:00:02.0"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("has 2 VFs enabled") && err.contains("oxpmd sriov 0000:00:02.0 --vfs 0"),
        "{err}"
    );
    // A group with a member on a kernel driver.
    let (code, _, err) = t.run(&["bind", "0000:00:1f.3"]);
    assert_eq!(code, 1);
    assert!(err.contains("IOMMU group 9 would not be viable"), "{err}");
    assert!(
        err.contains("0000:00:1f.0 (driver lpc_ich)") && err.contains("oxpmd bind --group 0000:00:1f.3"),
        "{err}"
    );
    untouched(&t);
    // vfio-pci not loaded.
    fs::remove_dir(t.p("sys/bus/pci/drivers/vfio-pci"))
        .unwrap_or_else(|_| fs::remove_dir_all(t.p("sys/bus/pci/drivers/vfio-pci")).unwrap());
    let (code, _, err) = t.run(&["bind", "0000:00:12.2"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the vfio-pci driver is not loaded. Fix: `modprobe vfio-pci`"),
        "{err}"
    );
}

#[test]
fn bind_through_the_fake_kernel_reports_the_failed_probe() {
    // The fake kernel never binds: the vfio crate's check names the cause; nothing is remembered.
    let t = host();
    let (code, _, err) = t.run(&["bind", "0000:00:12.2"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("binding 0000:00:12.2 to vfio-pci: after drivers_probe it is bound to no driver"),
        "{err}"
    );
    assert_eq!(t.read("sys/bus/pci/drivers_probe"), "0000:00:12.2");
    assert!(!t.p("state/bindings").exists());
}

#[test]
fn unbind_validates_the_state_file() {
    let t = host();
    t.mk("state");
    let vf = "0000:00:12.0";
    let write = |text: &str, mode: u32| {
        t.put("state/bindings", text);
        fs::set_permissions(t.p("state/bindings"), fs::Permissions::from_mode(mode)).unwrap();
    };
    for (text, mode, want) in [
        ("garbage\n", 0o600, "line 1: expected \"oxpmd-bindings 1\""),
        (
            "oxpmd-bindings 1\n0000:00:12.0 8086:10ca driver=../../x override=-\n",
            0o600,
            "line 2: driver \"../../x\" is not a driver name",
        ),
        (
            "oxpmd-bindings 1\n0000:00:12.0 8086:10ca driver=igbvf override=-\n",
            0o666,
            "writable by group or others",
        ),
        (
            "oxpmd-bindings 1\n0000:00:12.0 8086:10c9 driver=igbvf override=-\n",
            0o600,
            "made for a 8086:10c9 device, but 0000:00:12.0 is now 8086:10ca",
        ),
    ] {
        write(text, mode);
        let (code, _, err) = t.run(&["unbind", vf]);
        assert_eq!(code, 1, "{text:?}");
        assert!(err.contains(want), "{want:?}: {err}");
        assert!(err.contains("Refused") && err.contains("rm "), "{err}");
        // Nothing was unbound.
        assert_eq!(t.read("sys/bus/pci/drivers/vfio-pci/unbind"), "", "{text:?}");
    }
    // A valid entry whose driver is not loaded: refused before unbinding, with the modprobe fix.
    write(
        "oxpmd-bindings 1\n0000:00:12.0 8086:10ca driver=igbvf override=-\n",
        0o600,
    );
    let (code, _, err) = t.run(&["unbind", vf]);
    assert_eq!(code, 1);
    assert!(
        err.contains("the igbvf driver is not loaded. Fix: `modprobe igbvf`"),
        "{err}"
    );
    assert_eq!(t.read("sys/bus/pci/drivers/vfio-pci/unbind"), "");
    // With no record and not on vfio-pci there is nothing to do.
    let (code, out, _) = t.run(&["unbind", "0000:00:03.0"]);
    assert_eq!(code, 0);
    assert!(out.contains("oxpmd did not bind it: nothing to do"), "{out}");
    // --driver must be a driver name.
    let (code, _, err) = t.run(&["unbind", "--driver", "a/b", vf]);
    assert_eq!(code, 2);
    assert!(err.contains("is not a driver name"), "{err}");
}

fn check_line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.get(7..).is_some_and(|r| r.starts_with(&format!("{name}:"))))
        .unwrap_or_else(|| panic!("no {name} check:\n{out}"))
}

/// Breaks one thing in a fake host.
type Breaker = dyn Fn(&Tree);

#[test]
fn doctor_verdicts_and_exit_status() {
    let t = host();
    let dev = "0000:00:04.0"; // virtio-net on vfio-pci, alone in group 3, /dev/vfio/3 present
    let (code, out, _) = t.run(&["doctor", dev]);
    assert_eq!(code, 0, "{out}");
    for name in [
        "IOMMU",
        "interrupt remapping",
        "vfio modules",
        "/dev/vfio/vfio",
        "vfio-pci enable_sriov",
        dev,
        &format!("{dev} driver"),
        &format!("{dev} IOMMU group"),
        "hugepages",
        "hugetlbfs",
        "RLIMIT_MEMLOCK",
    ] {
        assert!(check_line(&out, name).starts_with("[ OK ]"), "{name}: {out}");
    }
    assert!(
        check_line(&out, "hugepages").contains("256 x 2 MiB reserved, 256 free (10 needed"),
        "{out}"
    );
    assert!(check_line(&out, "CPU isolation").starts_with("[WARN]"), "{out}");
    assert!(out.trim_end().ends_with("1 warning, 0 failed"), "{out}");

    // JSON: every check with name, status, detail, fix.
    let (code, json, _) = t.run(&["doctor", "--json", dev]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["failed"], 0);
    for c in v["checks"].as_array().unwrap() {
        assert!(
            ["pass", "warn", "fail"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
        assert!(c["name"].is_string() && c["detail"].is_string(), "{c}");
    }

    // Each broken piece fails with its fix, and the exit status says so.
    let broken: &[(&str, &Breaker, &str, &str)] = &[
        (
            "IOMMU",
            &|t| fs::remove_dir(t.p("sys/class/iommu/dmar0")).unwrap(),
            "off:",
            "intel_iommu=on",
        ),
        (
            "interrupt remapping",
            &|t| t.put("proc/interrupts", "  0:  10  IO-APIC  2-edge  timer\n"),
            "not active",
            "allow_unsafe_interrupts",
        ),
        (
            "vfio-pci enable_sriov",
            &|t| {
                t.put("sys/module/vfio_pci/parameters/enable_sriov", "N\n");
                t.put("sys/devices/pci0000:00/0000:00:04.0/sriov_totalvfs", "8\n");
            },
            "N: vfio-pci refuses VFs",
            "echo 1 > /sys/module/vfio_pci/parameters/enable_sriov",
        ),
        (
            "hugepages",
            &|t| t.put("sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages", "0\n"),
            "none reserved",
            "echo 10 > /proc/sys/vm/nr_hugepages",
        ),
        (
            "hugepages",
            &|t| t.put("sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages", "3\n"),
            "256 x 2 MiB reserved, 3 free: too few",
            "echo 263 > /proc/sys/vm/nr_hugepages",
        ),
        (
            "RLIMIT_MEMLOCK",
            &|t| {
                t.put(
                    "proc/self/limits",
                    "Max locked memory         8388608              8388608              bytes\n",
                )
            },
            "8192 KiB (of this shell",
            "ulimit -l ",
        ),
        (
            "/dev/vfio/vfio",
            &|t| fs::remove_file(t.p("dev/vfio/vfio")).unwrap(),
            "does not exist",
            "modprobe vfio-pci",
        ),
    ];
    for (name, breakit, detail, fix) in broken {
        let t = host();
        breakit(&t);
        let (code, out, _) = t.run(&["doctor", dev]);
        assert_eq!(code, 1, "{name}: {out}");
        let line = check_line(&out, name);
        assert!(
            line.starts_with("[FAIL]") && line.contains(detail),
            "{name}: {line}\n{out}"
        );
        let next = out.lines().skip_while(|l| *l != line).nth(1).unwrap();
        assert!(
            next.trim_start().starts_with("fix: ") && next.contains(fix),
            "{name}: {next}"
        );
    }
    // With the remapping unsafe switch on, its absence is a warning, not a failure.
    let t = host();
    t.put("proc/interrupts", "  0:  10  IO-APIC  2-edge  timer\n");
    t.put(
        "sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts",
        "Y\n",
    );
    let (code, out, _) = t.run(&["doctor", dev]);
    assert_eq!(code, 0, "{out}");
    assert!(
        check_line(&out, "interrupt remapping").starts_with("[WARN]"),
        "{out}"
    );
    // A device on a kernel driver, a non-viable group, a missing device.
    let (code, out, _) = t.run(&["doctor", "0000:00:03.0", "0000:00:1f.3", "0000:00:09.0"]);
    assert_eq!(code, 1);
    assert!(
        check_line(&out, "0000:00:03.0 driver").contains("bound to igb, not vfio-pci"),
        "{out}"
    );
    assert!(out.contains("fix: oxpmd bind 0000:00:03.0"), "{out}");
    let g = check_line(&out, "0000:00:1f.3 IOMMU group");
    assert!(
        g.starts_with("[FAIL]") && g.contains("0000:00:1f.0 (driver lpc_ich) on a kernel driver"),
        "{g}"
    );
    assert!(out.contains("fix: oxpmd bind --group 0000:00:1f.3"), "{out}");
    assert!(check_line(&out, "0000:00:09.0").starts_with("[FAIL]"), "{out}");
}
