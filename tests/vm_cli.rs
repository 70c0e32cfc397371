//! vm-topology: pair
//!
//! The `oxpmd` command-line tool against the test VM's real kernel (run with
//! `cargo xtask vm test vm_cli`): `devices`, `bind`/`unbind` round trips (from no driver and from
//! the kernel igb driver), the host-route refusal, `sriov` with a VF kept on igbvf, and `doctor` in
//! a good set-up and in broken ones (enable_sriov off, no hugepages, a non-viable IOMMU group).
//! Each test runs the built binary and leaves the devices and knobs as it found them.
#![forbid(unsafe_code)]

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use oxpmd::vfio::{PciAddress, Sysfs};

const BIN: &str = env!("CARGO_BIN_EXE_oxpmd");

fn port(n: usize) -> String {
    let key = format!("OXPMD_PORT{n}");
    std::env::var(&key).unwrap_or_else(|_| panic!("{key} is not set: run this through `cargo xtask vm test`"))
}

fn addr(s: &str) -> PciAddress {
    PciAddress::parse(s).unwrap()
}

/// Runs `oxpmd ARGS`; returns (exit code, stdout, stderr) and echoes them for the test log.
fn oxpmd(args: &[&str]) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(BIN).args(args).output().expect("run oxpmd");
    let (out, err) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    eprintln!(
        "$ oxpmd {}\n{out}{err}(exit {})",
        args.join(" "),
        status.code().unwrap_or(-1)
    );
    (status.code().unwrap_or(-1), out, err)
}

fn driver(a: &str) -> Option<String> {
    Sysfs::new().driver(addr(a)).unwrap()
}

fn override_of(a: &str) -> Option<String> {
    Sysfs::new().driver_override(addr(a)).unwrap()
}

fn group_of(a: &str) -> u32 {
    Sysfs::new()
        .iommu_group(addr(a))
        .unwrap()
        .expect("the VM has an IOMMU")
}

fn modprobe(name: &str) -> Result<(), String> {
    if Path::new("/sys/module").join(name.replace('-', "_")).exists() {
        return Ok(());
    }
    let helper =
        std::env::var("OXPMD_VM_MODPROBE").map_err(|_| "OXPMD_VM_MODPROBE is not set".to_string())?;
    let out = Command::new(&helper)
        .arg(name)
        .output()
        .map_err(|e| format!("{helper}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{helper} {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Puts a device on no driver with no override (the state the VM starts in).
fn release(a: &str) {
    let sys = Sysfs::new();
    sys.unbind(addr(a)).unwrap();
    sys.set_driver_override(addr(a), None).unwrap();
}

/// Writes a kernel knob and puts the old value back when dropped.
struct Knob {
    path: &'static str,
    old: String,
}

impl Knob {
    fn set(path: &'static str, value: &str) -> Knob {
        let old = fs::read_to_string(path).unwrap().trim().to_owned();
        fs::write(path, value).unwrap_or_else(|e| panic!("echo {value} > {path}: {e}"));
        Knob { path, old }
    }
}

impl Drop for Knob {
    fn drop(&mut self) {
        fs::write(self.path, &self.old).unwrap_or_else(|e| panic!("restoring {}: {e}", self.path));
    }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn devices_lists_the_ports_with_ids_and_groups() {
    let (code, out, _) = oxpmd(&["devices"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ADDRESS"), "{out}");
    for n in 0..2 {
        let p = port(n);
        let line = out
            .lines()
            .find(|l| l.starts_with(&p))
            .unwrap_or_else(|| panic!("{p} missing:\n{out}"));
        assert!(
            line.contains("8086:10c9") && line.contains("Intel 82576"),
            "{line}"
        );
        let g = group_of(&p);
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(
            cols.contains(&g.to_string().as_str()),
            "group {g} missing: {line}"
        );
        assert!(line.contains("0/8 VFs") && line.contains("igb"), "{line}");
    }
    let (code, out, _) = oxpmd(&["devices", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).expect("devices --json is JSON");
    let devs = v["devices"].as_array().unwrap();
    for n in 0..2 {
        let p = port(n);
        let d = devs.iter().find(|d| d["address"] == p.as_str()).unwrap();
        assert_eq!(d["vendor_id"], "8086");
        assert_eq!(d["device_id"], "10c9");
        assert_eq!(d["iommu_group"], group_of(&p));
        assert_eq!(d["iommu_group_members"][0]["address"], p.as_str());
        assert_eq!(d["sriov"]["total_vfs"], 8);
        assert_eq!(d["oxpmd_driver"]["name"], "igb");
        assert_eq!(d["oxpmd_driver"]["built"], true);
        assert_eq!(d["driver"], serde_json::Value::from(driver(&p)));
    }
    // Every listed device is a network controller; --all adds the others (the ICH9 functions).
    assert!(
        devs.iter()
            .all(|d| d["class"].as_str().unwrap().starts_with("02"))
    );
    let (_, all, _) = oxpmd(&["devices", "--all", "--json"]);
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert!(
        all["devices"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["address"] == "0000:00:1f.0")
    );
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn bind_unbind_round_trip_from_no_driver() {
    let p = port(0);
    release(&p);
    assert_eq!(driver(&p), None, "the port starts unbound");
    let (code, out, _) = oxpmd(&["bind", &p]);
    assert_eq!(code, 0);
    assert_eq!(driver(&p).as_deref(), Some("vfio-pci"));
    assert!(
        out.contains("bound to vfio-pci") && out.contains("was on no driver"),
        "{out}"
    );
    assert!(Path::new(&format!("/dev/vfio/{}", group_of(&p))).exists());
    let state = fs::read_to_string("/run/oxpmd/bindings").unwrap();
    assert!(state.starts_with("oxpmd-bindings 1\n"), "{state}");
    assert!(
        state.contains(&format!("{p} 8086:10c9 driver=- override=-")),
        "{state}"
    );
    // Binding again changes nothing.
    let (code, out, _) = oxpmd(&["bind", &p]);
    assert_eq!(code, 0);
    assert!(out.contains("already bound to vfio-pci"), "{out}");
    let (code, out, _) = oxpmd(&["unbind", &p]);
    assert_eq!(code, 0);
    assert!(
        out.contains("unbound from vfio-pci (it had no driver before)"),
        "{out}"
    );
    assert_eq!(driver(&p), None);
    assert_eq!(override_of(&p), None);
    assert!(
        !Path::new("/run/oxpmd/bindings").exists(),
        "the last entry removes the file"
    );
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn bind_unbind_round_trip_from_igb_and_host_route_refusal() {
    let (p0, p1) = (port(0), port(1));
    modprobe("igb").unwrap();
    // Loading igb binds every unbound igb port; make sure ours is on it.
    if driver(&p0).is_none() {
        fs::write("/sys/bus/pci/drivers_probe", &p0).unwrap();
    }
    assert_eq!(
        driver(&p0).as_deref(),
        Some("igb"),
        "the port is on the kernel igb driver"
    );
    let (code, out, _) = oxpmd(&["bind", &p0]);
    assert_eq!(code, 0);
    assert!(out.contains("was igb"), "{out}");
    assert_eq!(driver(&p0).as_deref(), Some("vfio-pci"));
    let (code, out, _) = oxpmd(&["unbind", &p0]);
    assert_eq!(code, 0);
    assert!(out.contains("bound to igb again"), "{out}");
    assert_eq!(driver(&p0).as_deref(), Some("igb"));
    assert_eq!(override_of(&p0), None, "the override is restored (unset)");

    // The same port carrying a host route: up, with an address (and so a connected route).
    let ifname = fs::read_dir(format!("/sys/bus/pci/devices/{p0}/net"))
        .unwrap()
        .next()
        .expect("igb made an interface")
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned();
    let ip = |args: &[&str]| {
        let bin = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
            .into_iter()
            .find(|b| Path::new(b).exists())
            .expect("iproute2's ip on the host");
        let s = Command::new(bin).args(args).status().expect("ip");
        assert!(s.success(), "ip {args:?}");
    };
    ip(&["link", "set", &ifname, "up"]);
    ip(&["addr", "add", "10.99.0.1/24", "dev", &ifname]);
    let (code, _, err) = oxpmd(&["bind", &p0]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("interface {ifname} is up")), "{err}");
    assert!(
        err.contains("IPv4 route 10.99.0.0/24") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(driver(&p0).as_deref(), Some("igb"), "refused: nothing changed");
    let (code, _, err) = oxpmd(&["bind", "--force", &p0]);
    assert_eq!(code, 0);
    assert!(err.contains("binding anyway (--force)"), "{err}");
    assert_eq!(driver(&p0).as_deref(), Some("vfio-pci"));
    let (code, _, _) = oxpmd(&["unbind", &p0]);
    assert_eq!(code, 0);
    assert_eq!(driver(&p0).as_deref(), Some("igb"));
    // Leave both ports unbound, as the VM starts (igb took port 1 too).
    let (code, _, _) = oxpmd(&["unbind", "--driver", "none", &p0, &p1]);
    assert_eq!(code, 0);
    assert_eq!((driver(&p0), driver(&p1)), (None, None));
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn sriov_sets_vfs_and_keeps_one_on_igbvf() {
    let p = port(1);
    release(&p);
    assert_eq!(oxpmd(&["bind", &p]).0, 0);
    let (code, out, _) = oxpmd(&["sriov", &p, "--vfs", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("2 VFs enabled (was 0; PF driver vfio-pci)"), "{out}");
    let vfs = Sysfs::new().device(addr(&p)).unwrap().virtfns;
    assert_eq!(vfs.len(), 2);
    for vf in &vfs {
        assert_eq!(Sysfs::new().driver(*vf).unwrap().as_deref(), Some("vfio-pci"));
    }
    let (code, out, _) = oxpmd(&["sriov", &p, "--vfs", "0"]);
    assert_eq!(code, 0);
    assert!(out.contains("0 VFs enabled (was 2"), "{out}");
    assert_eq!(Sysfs::new().device(addr(&p)).unwrap().sriov_num_vfs, Some(0));

    // VF index out of range and a missing igbvf are refused before anything changes.
    let (code, _, err) = oxpmd(&["sriov", &p, "--vfs", "2", "--kernel-vfs", "2"]);
    assert_eq!(code, 2);
    assert!(err.contains("VF index 2 does not exist"), "{err}");
    if !Path::new("/sys/bus/pci/drivers/igbvf").exists() {
        let (code, _, err) = oxpmd(&["sriov", &p, "--vfs", "2", "--kernel-vfs", "1"]);
        assert_eq!(code, 1);
        assert!(err.contains("`modprobe igbvf`"), "{err}");
        assert_eq!(Sysfs::new().device(addr(&p)).unwrap().sriov_num_vfs, Some(0));
    }
    modprobe("igbvf").unwrap();
    let (code, out, err) = oxpmd(&["sriov", &p, "--vfs", "2", "--kernel-vfs", "1"]);
    assert_eq!(code, 0);
    let vfs = Sysfs::new().device(addr(&p)).unwrap().virtfns;
    assert_eq!(vfs.len(), 2);
    assert_eq!(Sysfs::new().driver(vfs[0]).unwrap().as_deref(), Some("vfio-pci"));
    assert_eq!(Sysfs::new().driver(vfs[1]).unwrap().as_deref(), Some("igbvf"));
    assert_eq!(override_of(&vfs[1].to_string()).as_deref(), Some("igbvf"));
    assert!(
        out.contains(&format!("VF 1 ({}) kept on the kernel driver igbvf", vfs[1])),
        "{out}"
    );
    assert!(
        err.contains("driver_override rewritten from vfio-pci to igbvf"),
        "the library logs it: {err}"
    );
    let (code, _, _) = oxpmd(&["sriov", &p, "--vfs", "0"]);
    assert_eq!(code, 0);
    assert_eq!(oxpmd(&["unbind", &p]).0, 0);
    assert_eq!(driver(&p), None);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn doctor_passes_in_a_good_setup() {
    let (p0, p1) = (port(0), port(1));
    release(&p0);
    release(&p1);
    assert_eq!(oxpmd(&["bind", &p0, &p1]).0, 0);
    let (code, out, _) = oxpmd(&["doctor", &p0, &p1]);
    assert_eq!(code, 0, "{out}");
    for ok in [
        "[ OK ] IOMMU: enabled: dmar0",
        "[ OK ] interrupt remapping: active",
        "[ OK ] vfio modules",
        "[ OK ] /dev/vfio/vfio",
        "[ OK ] vfio-pci enable_sriov",
        "[ OK ] hugepages: 256 x 2 MiB reserved, 256 free",
        "[ OK ] hugetlbfs: mounted: /dev/hugepages",
        "[ OK ] RLIMIT_MEMLOCK: unlimited",
        "[ OK ] DMA memory: allocated",
    ] {
        assert!(out.contains(ok), "{ok:?} missing:\n{out}");
    }
    for p in [&p0, &p1] {
        assert!(out.contains(&format!("[ OK ] {p}: 8086:10c9")), "{out}");
        assert!(
            out.contains(&format!("[ OK ] {p} driver: bound to vfio-pci")),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "[ OK ] {p} IOMMU group: group {} is viable",
                group_of(p)
            )),
            "{out}"
        );
    }
    assert!(!out.contains("[FAIL]"), "{out}");
    assert!(
        out.contains("[WARN] CPU isolation"),
        "a hint, not a failure: {out}"
    );
    assert!(out.trim_end().ends_with("0 failed"), "{out}");
    let (code, json, _) = oxpmd(&["doctor", "--json", &p0, &p1]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["failed"], 0);
    assert_eq!(oxpmd(&["unbind", &p0, &p1]).0, 0);
    // An unbound port fails its driver check with the command that fixes it.
    let (code, out, _) = oxpmd(&["doctor", &p0]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("[FAIL] {p0} driver: bound to no driver")),
        "{out}"
    );
    assert!(out.contains(&format!("fix: oxpmd bind {p0}")), "{out}");
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn doctor_names_the_fix_when_enable_sriov_is_off() {
    let p = port(0);
    release(&p);
    assert_eq!(oxpmd(&["bind", &p]).0, 0);
    {
        let _knob = Knob::set("/sys/module/vfio_pci/parameters/enable_sriov", "N");
        let (code, out, _) = oxpmd(&["doctor", &p]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("[FAIL] vfio-pci enable_sriov: N"), "{out}");
        assert!(
            out.contains("fix: echo 1 > /sys/module/vfio_pci/parameters/enable_sriov"),
            "{out}"
        );
        let (code, _, err) = oxpmd(&["sriov", &p, "--vfs", "1"]);
        assert_eq!(code, 1);
        assert!(
            err.contains("loaded without enable_sriov") && err.contains("echo 1 >"),
            "{err}"
        );
    }
    assert_eq!(
        fs::read_to_string("/sys/module/vfio_pci/parameters/enable_sriov")
            .unwrap()
            .trim(),
        "Y"
    );
    let (code, out, _) = oxpmd(&["doctor", &p]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(oxpmd(&["unbind", &p]).0, 0);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn doctor_names_the_fix_without_hugepages() {
    let p = port(0);
    release(&p);
    assert_eq!(oxpmd(&["bind", &p]).0, 0);
    {
        let _knob = Knob::set("/proc/sys/vm/nr_hugepages", "0");
        let (code, out, _) = oxpmd(&["doctor", &p]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("[FAIL] hugepages: none reserved (2 MiB;"), "{out}");
        assert!(out.contains("fix: echo 10 > /proc/sys/vm/nr_hugepages"), "{out}");
        assert!(
            !out.contains("DMA memory"),
            "no allocation tried without hugepages: {out}"
        );
        // Fewer free than needed.
        let _few = Knob::set("/proc/sys/vm/nr_hugepages", "4");
        let (code, out, _) = oxpmd(&["doctor", &p]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("[FAIL] hugepages: 4 x 2 MiB reserved, 4 free: too few"),
            "{out}"
        );
        assert!(out.contains("fix: echo 10 > /proc/sys/vm/nr_hugepages"), "{out}");
    }
    assert_eq!(
        fs::read_to_string("/proc/sys/vm/nr_hugepages").unwrap().trim(),
        "256"
    );
    let (code, out, _) = oxpmd(&["doctor", &p]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(oxpmd(&["unbind", &p]).0, 0);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn non_viable_group_is_refused_and_diagnosed() {
    // q35's ICH9 functions 1f.0 (LPC), 1f.2 (SATA), 1f.3 (SMBus) share one IOMMU group (as in
    // vfio/tests/vm_vfio.rs). 1f.0 is put on a kernel driver: lpc_ich when the VM ships it, else the
    // built-in iosf_mbi_pci forced on with driver_override.
    let sys = Sysfs::new();
    let (lpc, smbus) = ("0000:00:1f.0", "0000:00:1f.3");
    let kernel_driver = if modprobe("lpc_ich").is_ok() {
        "lpc_ich"
    } else {
        "iosf_mbi_pci"
    };
    release(lpc);
    release(smbus);
    let g = group_of(smbus);
    assert_eq!(group_of(lpc), g);

    // 1f.3 on vfio-pci while the group is viable, then 1f.0 onto its kernel driver: doctor explains.
    assert_eq!(oxpmd(&["bind", smbus]).0, 0);
    sys.bind_to(addr(lpc), kernel_driver).unwrap();
    let (code, out, _) = oxpmd(&["doctor", smbus]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("[FAIL] {smbus} IOMMU group: group {g} is not viable")),
        "{out}"
    );
    assert!(out.contains(&format!("{lpc} (driver {kernel_driver})")), "{out}");
    assert!(out.contains(&format!("fix: oxpmd bind --group {smbus}")), "{out}");
    assert_eq!(oxpmd(&["unbind", smbus]).0, 0);

    // Binding one member is refused, naming the other member and --group.
    let (code, _, err) = oxpmd(&["bind", smbus]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("IOMMU group {g} would not be viable")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{lpc} (driver {kernel_driver})")) && err.contains("--group"),
        "{err}"
    );
    assert_eq!(driver(smbus), None, "refused: nothing changed");

    // --group binds the whole group; doctor passes its group check; unbind --group gives 1f.0 back.
    let (code, out, _) = oxpmd(&["bind", "--group", smbus]);
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("{lpc}: bound to vfio-pci")) && out.contains(&format!("was {kernel_driver}"))
    );
    for m in ["0000:00:1f.0", "0000:00:1f.2", "0000:00:1f.3"] {
        assert_eq!(driver(m).as_deref(), Some("vfio-pci"), "{m}");
    }
    // The state remembers each member's driver (1f.0's kernel driver and override, 1f.2's none).
    let state = fs::read_to_string("/run/oxpmd/bindings").unwrap();
    assert!(
        state.contains(&format!(
            "{lpc} 8086:2918 driver={kernel_driver} override={kernel_driver}"
        )),
        "{state}"
    );
    let (_, out, _) = oxpmd(&["doctor", smbus]);
    assert!(
        out.contains(&format!("[ OK ] {smbus} IOMMU group: group {g} is viable")),
        "{out}"
    );
    let (code, _, _) = oxpmd(&["unbind", "--group", smbus]);
    assert_eq!(code, 0);
    assert_eq!(driver(lpc).as_deref(), Some(kernel_driver));
    assert_eq!(driver("0000:00:1f.2"), None);
    assert_eq!(driver(smbus), None);
    release(lpc);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn sriov_on_the_kernel_pf_and_bind_refuses_a_pf_with_vfs() {
    let p = port(1);
    modprobe("igb").unwrap();
    modprobe("igbvf").unwrap();
    release(&p);
    fs::write("/sys/bus/pci/drivers_probe", &p).unwrap();
    assert_eq!(driver(&p).as_deref(), Some("igb"));
    let (code, out, _) = oxpmd(&["sriov", &p, "--vfs", "2"]);
    assert_eq!(code, 0);
    assert!(out.contains("2 VFs enabled (was 0; PF driver igb)"), "{out}");
    assert!(!out.contains("VF token"), "no token with a kernel PF: {out}");
    // vfio-pci refuses a PF with VFs enabled: refused before anything changes, with the order to follow.
    let (code, _, err) = oxpmd(&["bind", &p]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("{p} has 2 VFs enabled")), "{err}");
    assert!(
        err.contains(&format!("`oxpmd sriov {p} --vfs 0`, `oxpmd bind {p}`")),
        "{err}"
    );
    assert_eq!(driver(&p).as_deref(), Some("igb"));
    // A count change goes through 0.
    let (code, out, _) = oxpmd(&["sriov", &p, "--vfs", "3"]);
    assert_eq!(code, 0);
    assert!(out.contains("3 VFs enabled (was 2"), "{out}");
    assert_eq!(Sysfs::new().device(addr(&p)).unwrap().virtfns.len(), 3);
    assert_eq!(oxpmd(&["sriov", &p, "--vfs", "0"]).0, 0);
    assert_eq!(oxpmd(&["bind", &p]).0, 0);
    assert_eq!(oxpmd(&["unbind", &p]).0, 0);
    assert_eq!(driver(&p).as_deref(), Some("igb"));
    release(&p);
}
