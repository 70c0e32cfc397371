//! vm-topology: pair
//!
//! SR-IOV through vfio-pci in the test VM: VF token, VF creation, VF opens with and without the
//! token, a restarted PF owner, a VF kept on the kernel igbvf driver.
//! Run with `cargo xtask vm test -p oxpmd-vfio vm_sriov`.

mod common;

use common::{capture_logs, kernel_log, logged, modprobe, port};
use oxpmd_vfio::{Container, Error, PciAddress, Sysfs, VfToken};

const STATUS: usize = 0x0008;

/// The PF on vfio-pci with no VFs.
fn pf_on_vfio(sys: &Sysfs, pf: PciAddress) {
    sys.set_num_vfs(pf, 0).unwrap();
    sys.bind_vfio_pci(pf).unwrap();
}

fn errno(e: &Error) -> Option<i32> {
    e.raw_os_error()
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn enable_sriov_off_is_explained() {
    let pf = port(1);
    let sys = Sysfs::new();
    pf_on_vfio(&sys, pf);
    let param = "/sys/module/vfio_pci/parameters/enable_sriov";
    std::fs::write(param, "N").unwrap();
    let r = sys.set_num_vfs(pf, 1);
    std::fs::write(param, "Y").unwrap();
    let e = r.unwrap_err();
    let msg = e.to_string();
    assert_eq!(errno(&e), Some(libc::ENOENT), "{msg}");
    assert!(
        msg.contains(&pf.to_string()) && msg.contains("sriov_numvfs"),
        "{msg}"
    );
    assert!(
        msg.contains("modprobe vfio-pci enable_sriov=1") && msg.contains(param),
        "{msg}"
    );
    // With the parameter back on, the same call works, and a count change goes through 0.
    sys.set_num_vfs(pf, 1).unwrap();
    sys.set_num_vfs(pf, 2).unwrap();
    assert_eq!(sys.device(pf).unwrap().sriov_num_vfs, Some(2));
    // Writing a new non-zero count directly is what the kernel refuses (EBUSY): our ordering avoids it.
    let raw = std::fs::write(sys.device_dir(pf).join("sriov_numvfs"), "1").unwrap_err();
    assert_eq!(raw.raw_os_error(), Some(libc::EBUSY));
    sys.set_num_vfs(pf, 0).unwrap();
    assert!(sys.device(pf).unwrap().virtfns.is_empty());
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn vf_token_lifecycle_and_kernel_driver_vf() {
    capture_logs();
    let pf = port(0);
    let sys = Sysfs::new();
    pf_on_vfio(&sys, pf);

    // The PF owner: opens the PF, sets a fresh token, keeps it in a 0600 file.
    let owner = Container::open().unwrap();
    let pf_dev = owner.open_device(pf, None).unwrap();
    assert!(pf_dev.supports_vf_token().unwrap());
    let token = VfToken::generate();
    let token_file = std::env::temp_dir().join(format!("oxpmd-vm-token-{}", std::process::id()));
    let _ = std::fs::remove_file(&token_file);
    token.save(&token_file).unwrap();
    pf_dev.set_vf_token(&token).unwrap();
    // The token never shows in the logs.
    for l in [log::Level::Info, log::Level::Warn, log::Level::Debug] {
        assert!(!logged(l).iter().any(|m| m.contains(&token.expose())));
    }

    // Two VFs: present, each in its own IOMMU group, captured by vfio-pci.
    sys.set_num_vfs(pf, 2).unwrap();
    let pf_info = sys.device(pf).unwrap();
    assert_eq!(pf_info.sriov_num_vfs, Some(2));
    assert_eq!(pf_info.virtfns.len(), 2);
    let (vf0, vf1) = (pf_info.virtfns[0], pf_info.virtfns[1]);
    let mut groups = vec![pf_info.iommu_group.unwrap()];
    for vf in [vf0, vf1] {
        let d = sys.device(vf).unwrap();
        assert_eq!((d.vendor, d.device), (0x8086, 0x10ca));
        assert_eq!(d.physfn, Some(pf));
        assert_eq!(d.driver_override.as_deref(), Some("vfio-pci"), "{vf}");
        assert_eq!(d.driver.as_deref(), Some("vfio-pci"), "{vf}");
        let g = d.iommu_group.unwrap();
        assert_eq!(sys.group_members(g).unwrap().len(), 1, "{vf} alone in group {g}");
        groups.push(g);
    }
    groups.sort();
    groups.dedup();
    assert_eq!(groups.len(), 3, "PF and both VFs in distinct groups");
    let klog = kernel_log();
    for vf in [vf0, vf1] {
        let line = format!("Captured SR-IOV VF {vf} driver_override");
        assert!(klog.iter().any(|l| l.contains(&line)), "no kernel line {line:?}");
    }

    // A VF user (its own container, as another process would have).
    let user = Container::open().unwrap();
    let e = user.open_device(vf0, None).unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert_eq!(errno(&e), Some(libc::EACCES));
    assert!(
        msg.contains(&vf0.to_string()) && msg.contains("no VF token given: the PF's owner must share it"),
        "{msg}"
    );
    let e = user.open_device(vf0, Some(&VfToken::generate())).unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert_eq!(errno(&e), Some(libc::EACCES));
    assert!(
        msg.contains("the VF token given does not match the one the PF's owner set"),
        "{msg}"
    );
    let shared = VfToken::load(&token_file).unwrap();
    let vf_dev = user.open_device(vf0, Some(&shared)).unwrap();
    let vf_bar0 = vf_dev.map_bar(0).unwrap();
    assert_eq!(vf_dev.region_info(0).unwrap().size, 16 * 1024);
    let vf_status = vf_bar0.read32(STATUS).unwrap();
    eprintln!("VF {vf0} STATUS {vf_status:#010x}");
    assert_ne!(vf_status, 0xffff_ffff);
    // The VF's config space through VFIO (vfio-pci shows the VF's real ids, which the hardware
    // reads as 0xffff).
    assert_eq!(vf_dev.config_read16(0).unwrap(), 0x8086);
    assert_eq!(vf_dev.config_read16(2).unwrap(), 0x10ca);
    assert!(
        !vf_dev.supports_vf_token().unwrap(),
        "a VF has no VF token feature"
    );

    // The PF owner restarts while the VF is open: it must present the current token.
    drop(pf_dev);
    let e = owner.open_device(pf, None).unwrap_err();
    let msg = e.to_string();
    assert_eq!(errno(&e), Some(libc::EACCES), "{msg}");
    assert!(msg.contains("no VF token given"), "{msg}");
    let e = owner.open_device(pf, Some(&VfToken::generate())).unwrap_err();
    assert!(e.to_string().contains("does not match"), "{e}");
    let pf_dev = owner.open_device(pf, Some(&token)).unwrap();
    assert_ne!(pf_dev.map_bar(0).unwrap().read32(STATUS).unwrap(), 0xffff_ffff);

    // A VF kept on the kernel: igbvf takes VF 1, we log it, and so does the kernel.
    modprobe("igbvf").expect("the igbvf module ($OXPMD_VM_MODPROBE igbvf)");
    sys.keep_vf_on_kernel_driver(vf1, "igbvf").unwrap();
    assert_eq!(sys.driver(vf1).unwrap().as_deref(), Some("igbvf"));
    assert_eq!(sys.driver_override(vf1).unwrap().as_deref(), Some("igbvf"));
    let warns = logged(log::Level::Warn);
    assert!(
        warns
            .iter()
            .any(|m| m.contains(&vf1.to_string()) && m.contains("igbvf") && m.contains("driver_override")),
        "{warns:?}"
    );
    let kline = format!("VF {vf1} bound to driver igbvf while PF bound to driver vfio-pci");
    assert!(
        kernel_log().iter().any(|l| l.contains(&kline)),
        "no kernel line {kline:?}"
    );

    // Teardown order: VF users first, then the PF, then the VFs go.
    drop(vf_bar0);
    drop(vf_dev);
    drop(user);
    drop(pf_dev);
    drop(owner);
    sys.set_num_vfs(pf, 0).unwrap();
    assert!(sys.device(pf).unwrap().virtfns.is_empty());
    std::fs::remove_file(&token_file).unwrap();
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn pf_opened_with_a_token_sets_it() {
    // Opening the PF as "<bdf> vf_token=<uuid>" while none of its VFs is open sets the token (the way
    // DPDK does it), without VFIO_DEVICE_FEATURE.
    let pf = port(1);
    let sys = Sysfs::new();
    pf_on_vfio(&sys, pf);
    let token = VfToken::generate();
    let owner = Container::open().unwrap();
    let pf_dev = owner.open_device(pf, Some(&token)).unwrap();
    sys.set_num_vfs(pf, 1).unwrap();
    let vf = sys.device(pf).unwrap().virtfns[0];
    let user = Container::open().unwrap();
    let e = user.open_device(vf, Some(&VfToken::generate())).unwrap_err();
    assert_eq!(errno(&e), Some(libc::EACCES), "{e}");
    let vf_dev = user.open_device(vf, Some(&token)).unwrap();
    drop(vf_dev);
    drop(user);
    drop(pf_dev);
    drop(owner);
    sys.set_num_vfs(pf, 0).unwrap();
}
