//! vm-topology: pair
//!
//! VFIO against the real kernel in the test VM: the igb PFs of the `pair` topology (OXPMD_PORT0/1).
//! Run with `cargo xtask vm test -p oxpmd-vfio vm_vfio`.

mod common;

use common::{capture_logs, modprobe, port};
use memmap2::MmapMut;
use oxpmd_vfio::{Container, Error, IrqKind, PciAddress, Sysfs, VfToken, device::pci_config};

const STATUS: usize = 0x0008;
const CTRL: usize = 0x0000;

fn vfio_bound(addr: PciAddress) -> Sysfs {
    let sys = Sysfs::new();
    if sys.device(addr).unwrap().sriov_num_vfs.unwrap_or(0) != 0 {
        sys.set_num_vfs(addr, 0).unwrap();
    }
    sys.bind_vfio_pci(addr).unwrap();
    sys
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn bind_unbind_and_restore_a_kernel_driver() {
    capture_logs();
    let pf = port(1);
    let sys = Sysfs::new();
    modprobe("igb").expect("the igb module");
    // Put the port on igb first (whatever it was on), so that binding to vfio-pci has to unbind it.
    sys.bind_to(pf, "igb").unwrap();
    assert_eq!(sys.driver(pf).unwrap().as_deref(), Some("igb"));
    let prev = sys.bind_vfio_pci(pf).unwrap();
    assert_eq!(prev.driver.as_deref(), Some("igb"));
    assert_eq!(sys.driver(pf).unwrap().as_deref(), Some("vfio-pci"));
    assert_eq!(sys.driver_override(pf).unwrap().as_deref(), Some("vfio-pci"));
    sys.restore(&prev).unwrap();
    assert_eq!(sys.driver(pf).unwrap().as_deref(), Some("igb"));
    assert_eq!(sys.driver_override(pf).unwrap(), prev.driver_override);
    sys.unbind(pf).unwrap();
    assert_eq!(sys.driver(pf).unwrap(), None);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn pci_listing_matches_the_topology() {
    let sys = Sysfs::new();
    let devs = sys.devices().unwrap();
    for n in [0, 1] {
        let d = devs.iter().find(|d| d.address == port(n)).expect("port listed");
        assert_eq!((d.vendor, d.device), (0x8086, 0x10c9));
        assert_eq!(d.class >> 8, 0x0200, "ethernet controller");
        assert!(d.is_sriov_pf());
        assert_eq!(d.sriov_total_vfs, Some(8));
        let g = d.iommu_group.expect("an IOMMU group");
        let members = sys.group_members(g).unwrap();
        assert!(
            members.iter().any(|m| m.address == d.address.to_string()),
            "{members:?}"
        );
    }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn pf_bar0_config_reset_irqs() {
    capture_logs();
    let pf = port(0);
    let _sys = vfio_bound(pf);
    let container = Container::open().unwrap();
    let dev = container.open_device(pf, None).unwrap();
    let info = dev.info();
    assert!(
        info.is_pci() && info.num_regions >= 8 && info.num_irqs >= 3,
        "{info:?}"
    );

    // Config space through region 7.
    assert_eq!(dev.config_read16(0).unwrap(), 0x8086);
    assert_eq!(dev.config_read16(2).unwrap(), 0x10c9);
    dev.enable_memory_and_bus_master().unwrap();
    let cmd = dev.config_read16(pci_config::COMMAND).unwrap();
    assert_eq!(cmd & 0x6, 0x6, "memory space and bus master set: {cmd:#x}");

    // BAR0: 128 KiB of registers, mapped whole.
    let r0 = dev.region_info(0).unwrap();
    assert_eq!(r0.size, 128 * 1024);
    assert!(r0.mmappable() && r0.readable() && r0.writable());
    let bar0 = dev.map_bar(0).unwrap();
    let status = bar0.read32(STATUS).unwrap();
    let ctrl = bar0.read32(CTRL).unwrap();
    eprintln!("BAR0 CTRL {ctrl:#010x} STATUS {status:#010x}");
    assert_ne!(status, 0xffff_ffff, "device not responding");
    assert_ne!(ctrl, 0xffff_ffff, "device not responding");
    // A register is read-write through the mapping: RAL0 (0x5400) takes what we write.
    let reg = bar0.register(0x5400).unwrap();
    reg.write(0x1234_5678);
    assert_eq!(bar0.read32(0x5400).unwrap(), 0x1234_5678);
    assert!(bar0.read32(128 * 1024).is_err());
    assert!(bar0.read32(2).is_err());

    // BAR3 holds the MSI-X table.
    let r3 = dev.region_info(3).unwrap();
    eprintln!("BAR3: {r3:?}");
    let bar3 = dev.map_bar(3).unwrap();
    assert!(!bar3.mapped_areas().is_empty());
    // BAR2 is an I/O BAR: not mappable, with a clear error.
    let e = dev.map_bar(2).unwrap_err().to_string();
    assert!(e.contains(&pf.to_string()) && e.contains("region 2"), "{e}");

    // Eventfds for MSI-X, disabled on drop; asking for too many is refused.
    let msix = dev.irq_info(IrqKind::Msix.index()).unwrap();
    assert!(msix.count >= 1 && msix.eventfd(), "{msix:?}");
    let irqs = dev.enable_irqs(IrqKind::Msix, msix.count).unwrap();
    assert_eq!(irqs.len(), msix.count as usize);
    assert_eq!(irqs.take_count(0).unwrap(), 0);
    drop(irqs);
    assert!(dev.enable_irqs(IrqKind::Msix, msix.count + 1).is_err());
    let again = dev.enable_irqs(IrqKind::Msix, 1).unwrap();
    drop(again);

    // Reset, and the device still answers.
    if info.supports_reset() {
        dev.reset().unwrap();
        assert_ne!(bar0.read32(STATUS).unwrap(), 0xffff_ffff);
    } else {
        eprintln!("the PF offers no VFIO reset method");
    }

    // The igb PF is an SR-IOV PF: the VF token feature is there.
    assert!(dev.supports_vf_token().unwrap());
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn dma_map_unmap_and_iova_ranges() {
    let pf = port(0);
    let _sys = vfio_bound(pf);
    let container = Container::open().unwrap();
    // Mapping before any group is attached is refused with the fix.
    let mem = MmapMut::map_anon(4 << 20).unwrap();
    // SAFETY: `mem` is owned here and outlives the mapping attempt; no device is attached.
    let e = unsafe { container.map_dma(mem.as_ptr(), 0x1000_0000, 4 << 20) }
        .unwrap_err()
        .to_string();
    assert!(e.contains("attach a group"), "{e}");

    let _dev = container.open_device(pf, None).unwrap();
    let info = container.iommu_info().unwrap();
    eprintln!("IOMMU info: {info:?}");
    assert!(
        !info.iova_ranges.is_empty(),
        "the IOVA_RANGE capability is reported"
    );
    assert!(info.dma_avail.is_some(), "the DMA_AVAIL capability is reported");
    assert!(info.iova_pgsizes & 4096 != 0);
    // The MSI window is outside the usable ranges on x86.
    assert!(!info.iova_usable(0xfee0_0000, 4096));

    let iova = info
        .iova_ranges
        .iter()
        .find(|r| r.contains(0x1000_0000, 4 << 20))
        .map(|_| 0x1000_0000u64)
        .unwrap();
    let before = info.dma_avail.unwrap();
    // SAFETY: `mem` stays alive until after the unmap below and is not read while mapped.
    unsafe { container.map_dma(mem.as_ptr(), iova, 2 << 20) }.unwrap();
    // SAFETY: as above: the second half of `mem`.
    unsafe { container.map_dma(mem.as_ptr().add(2 << 20), iova + (2 << 20), 2 << 20) }.unwrap();
    assert_eq!(container.mappings().len(), 2);
    assert_eq!(container.iommu_info().unwrap().dma_avail, Some(before - 2));
    // Overlap and out-of-range requests are refused before the kernel sees them.
    // SAFETY: refused before any mapping is made.
    let e = unsafe { container.map_dma(mem.as_ptr(), iova + 4096, 4096) }
        .unwrap_err()
        .to_string();
    assert!(e.contains("overlaps"), "{e}");
    // SAFETY: refused before any mapping is made.
    let e = unsafe { container.map_dma(mem.as_ptr(), 0xfee0_0000, 4096) }
        .unwrap_err()
        .to_string();
    assert!(e.contains("outside the IOMMU's usable IOVA ranges"), "{e}");
    // Unmapping something that was not mapped like this is refused.
    // SAFETY: no device was given any of these addresses.
    assert!(unsafe { container.unmap_dma(iova, 4 << 20) }.is_err());
    // SAFETY: as above.
    unsafe { container.unmap_dma(iova, 2 << 20) }.unwrap();
    assert_eq!(container.mappings().len(), 1);
    assert_eq!(container.iommu_info().unwrap().dma_avail, Some(before - 1));
    // The other mapping is unmapped when the container goes, without error.
    capture_logs();
    drop(_dev);
    drop(container);
    let errors = common::logged(log::Level::Error);
    assert!(!errors.iter().any(|m| m.contains("unmapping DMA")), "{errors:?}");
    drop(mem);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn two_groups_share_one_container() {
    let (a, b) = (port(0), port(1));
    let _s = vfio_bound(a);
    let _s = vfio_bound(b);
    let container = Container::open().unwrap();
    let da = container.open_device(a, None).unwrap();
    let db = container.open_device(b, None).unwrap();
    assert_ne!(da.group().number(), db.group().number());
    assert_eq!(container.groups().len(), 2);
    // The same group is returned, not opened twice (the kernel allows one open per group).
    let g = container.group_of(a).unwrap();
    assert_eq!(g.number(), da.group().number());
    assert!(g.status().unwrap().viable && g.status().unwrap().container_set);
    let mem = MmapMut::map_anon(2 << 20).unwrap();
    // SAFETY: `mem` outlives the container (dropped after it below) and is not read while mapped.
    unsafe { container.map_dma(mem.as_ptr(), 0x2000_0000, 2 << 20) }.unwrap();
    // A second container cannot take a group the first one holds.
    let other = Container::open().unwrap();
    let e = other.group_of(a).unwrap_err().to_string();
    assert!(e.contains("already open"), "{e}");
    drop((da, db, g, other));
    drop(container);
    drop(mem);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn wrong_addresses_and_tokens_are_explained() {
    let pf = port(0);
    let _s = vfio_bound(pf);
    let e = PciAddress::parse("00:02").unwrap_err().to_string();
    assert!(e.contains("ls /sys/bus/pci/devices"), "{e}");
    let container = Container::open().unwrap();
    let e = container
        .open_device(PciAddress::parse("0000:00:0b.0").unwrap(), None)
        .unwrap_err();
    assert!(matches!(e, Error::NoSuchDevice { .. }), "{e}");
    // A token for a PF with no VFs is accepted by the kernel (it sets the token). A token for a device
    // that is no PF nor VF is refused with EINVAL; the q35 SMBus function is such a device.
    let sys = Sysfs::new();
    let smbus = PciAddress::parse("0000:00:1f.3").unwrap();
    // 1f.0 may be on lpc_ich after the non-viable test: release it so that the group is viable.
    let lpc = PciAddress::parse("0000:00:1f.0").unwrap();
    sys.unbind(lpc).unwrap();
    let prev = sys.bind_vfio_pci(smbus).unwrap();
    let e = container.open_device(smbus, Some(&VfToken::generate()));
    // Its group also holds 1f.0 and 1f.2 (unbound), so it is viable.
    let msg = e.unwrap_err().to_string();
    assert!(msg.contains("neither an SR-IOV PF nor a VF"), "{msg}");
    drop(container);
    sys.restore(&prev).unwrap();
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn non_viable_group_lists_members_and_drivers() {
    // q35's ICH9 functions 1f.0 (LPC), 1f.2 (SATA), 1f.3 (SMBus) share one IOMMU group. With 1f.0 on a
    // kernel driver and 1f.3 on vfio-pci, the group is not viable. The kernel driver is lpc_ich when the
    // VM ships it; otherwise the built-in iosf_mbi_pci, whose probe takes any device it is forced onto
    // (driver_override) and which, like any DMA-API driver, claims the group.
    let sys = Sysfs::new();
    let lpc = PciAddress::parse("0000:00:1f.0").unwrap();
    let smbus = PciAddress::parse("0000:00:1f.3").unwrap();
    let kernel_driver = if modprobe("lpc_ich").is_ok() {
        "lpc_ich"
    } else {
        "iosf_mbi_pci"
    };
    sys.bind_to(lpc, kernel_driver).unwrap();
    assert_eq!(sys.driver(lpc).unwrap().as_deref(), Some(kernel_driver));
    let prev = sys.bind_vfio_pci(smbus).unwrap();
    let group = sys.iommu_group(smbus).unwrap().unwrap();
    assert_eq!(sys.iommu_group(lpc).unwrap(), Some(group));
    let container = Container::open().unwrap();
    let e = container.group(group).unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(matches!(e, Error::GroupNotViable { .. }));
    assert!(
        msg.contains(&format!("IOMMU group {group} is not viable")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("0000:00:1f.0 (driver {kernel_driver})")),
        "{msg}"
    );
    assert!(msg.contains("0000:00:1f.3 (driver vfio-pci)"), "{msg}");
    assert!(msg.contains("0000:00:1f.2 (no driver)"), "{msg}");
    assert!(msg.contains("Fix: bind 0000:00:1f.0 to vfio-pci"), "{msg}");
    let e = container.open_device(smbus, None).unwrap_err();
    assert!(matches!(e, Error::GroupNotViable { .. }));
    // Release 1f.0: the group becomes viable and opens.
    sys.unbind(lpc).unwrap();
    sys.set_driver_override(lpc, None).unwrap();
    let g = container.group(group).unwrap();
    assert!(g.status().unwrap().viable);
    drop(g);
    drop(container);
    sys.restore(&prev).unwrap();
}

/// Reads a u32 the device may write, without making a reference to it.
fn dev_read32(base: *const u8, off: usize) -> u32 {
    // SAFETY: callers pass offsets inside their live mapping; volatile, as the device writes it.
    unsafe { base.add(off).cast::<u32>().read_volatile() }
}

/// Writes a u64 the device will read.
fn dev_write64(base: *mut u8, off: usize, v: u64) {
    // SAFETY: callers pass 8-aligned offsets inside their live mapping.
    unsafe { base.add(off).cast::<u64>().write_volatile(v) }
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn device_dma_goes_through_the_iommu() {
    // The igb PF transmits one frame: it reads a TX descriptor and the frame through the IOMMU at
    // our IOVAs and writes DD back. After the unmap, the next descriptor is out of its reach.
    const TCTL: usize = 0x0400;
    const TDBAL: usize = 0xE000;
    const TDBAH: usize = 0xE004;
    const TDLEN: usize = 0xE008;
    const TDH: usize = 0xE010;
    const TDT: usize = 0xE018;
    const TXDCTL: usize = 0xE028;
    let pf = port(0);
    let _s = vfio_bound(pf);
    let container = Container::open().unwrap();
    let dev = container.open_device(pf, None).unwrap();
    dev.reset().ok();
    dev.enable_memory_and_bus_master().unwrap();
    let bar0 = dev.map_bar(0).unwrap();

    let mut mem = MmapMut::map_anon(2 << 20).unwrap();
    let base = mem.as_mut_ptr();
    let iova = 0x4000_0000u64;
    // Descriptor 0: 60-byte frame at iova + 4096. Descriptor 1 the same, for after the unmap.
    let cmd = 60 | 0x0030_0000 | 0x0100_0000 | 0x0200_0000 | 0x0800_0000 | 0x2000_0000u64;
    for d in 0..2 {
        dev_write64(base, d * 16, iova + 4096);
        dev_write64(base, d * 16 + 8, cmd | ((60u64 << 14) << 32));
    }
    // SAFETY: `mem` outlives the mapping; the CPU touches it only through volatile accesses.
    unsafe { container.map_dma(base, iova, 2 << 20) }.unwrap();

    bar0.write32(TCTL, 0).unwrap();
    bar0.write32(TDBAL, iova as u32).unwrap();
    bar0.write32(TDBAH, (iova >> 32) as u32).unwrap();
    bar0.write32(TDLEN, 8 * 16).unwrap();
    bar0.write32(TDH, 0).unwrap();
    bar0.write32(TDT, 0).unwrap();
    bar0.write32(TXDCTL, bar0.read32(TXDCTL).unwrap() | 0x0200_0000)
        .unwrap();
    bar0.write32(TCTL, 0x2 | 0x8 | (0xF << 4) | (0x3F << 12)).unwrap();
    bar0.write32(TDT, 1).unwrap();
    // QEMU transmits inside the TDT write; give a slow TCG a moment anyway.
    let mut dd = 0;
    for _ in 0..1000 {
        dd = dev_read32(base, 12) & 1;
        if dd == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert_eq!(
        dd,
        1,
        "DD written back through the IOMMU (TDH {:#x})",
        bar0.read32(TDH).unwrap()
    );

    // Unmapped: the device must not reach the memory any more.
    // SAFETY: the device still has the IOVA on purpose (the test shows the IOMMU stops it), but
    // nothing is mapped at that IOVA again and the memory stays allocated until the end: a stray
    // access faults in the IOMMU instead of reaching other memory.
    unsafe { container.unmap_dma(iova, 2 << 20) }.unwrap();
    bar0.write32(TDT, 2).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(dev_read32(base, 16 + 12) & 1, 0, "no write-back after the unmap");
    // The guest kernel reports the IOMMU fault for our device (asynchronously: poll for it).
    let who = format!(
        "Request device [{:02x}:{:02x}.{}]",
        pf.bus, pf.device, pf.function
    );
    let mut faults = Vec::new();
    for _ in 0..50 {
        faults = common::kernel_log()
            .into_iter()
            .filter(|l| l.contains("DMAR") && l.contains(&who))
            .collect();
        if !faults.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("IOMMU faults: {faults:?}");
    assert!(!faults.is_empty(), "no DMAR fault logged for {who}");
    bar0.write32(TCTL, 0).unwrap();
    dev.disable_bus_master().unwrap();
    drop(dev);
    drop(container);
    drop(mem);
}

#[test]
#[ignore = "needs the test VM: cargo xtask vm test"]
fn msix_interrupt_reaches_the_eventfd() {
    // igb in MSI-X mode: EICR bit n raises vector n. Setting EICS bit 0 with EIMS bit 0 fires vector 0.
    const GPIE: usize = 0x1514;
    const EICS: usize = 0x1520;
    const EIMS: usize = 0x1524;
    const EIMC: usize = 0x1528;
    let pf = port(0);
    let _s = vfio_bound(pf);
    let container = Container::open().unwrap();
    let dev = container.open_device(pf, None).unwrap();
    dev.enable_memory_and_bus_master().unwrap();
    let bar0 = dev.map_bar(0).unwrap();
    let irqs = dev.enable_irqs(IrqKind::Msix, 2).unwrap();
    bar0.write32(EIMC, 0xffff_ffff).unwrap();
    bar0.write32(GPIE, (1 << 4) | (1 << 31)).unwrap();
    bar0.write32(EIMS, 1).unwrap();
    bar0.write32(EICS, 1).unwrap();
    let mut seen = 0;
    for _ in 0..200 {
        seen += irqs.take_count(0).unwrap();
        if seen > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(seen >= 1, "no MSI-X interrupt on vector 0");
    assert_eq!(irqs.take_count(1).unwrap(), 0, "vector 1 stays quiet");
    assert!(irqs.take_count(2).is_err(), "only two vectors");
    bar0.write32(EIMC, 0xffff_ffff).unwrap();
    drop(irqs);
    dev.disable_bus_master().unwrap();
}
