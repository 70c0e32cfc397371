//! What the fault tests check after a fault: the IOMMU's fault reports in the kernel log and the
//! hugepages (memfd-backed, see dma/src/region.rs: nothing in a hugetlbfs mount to clean up).
#![allow(dead_code)]

use std::process::Command;

/// HugePages_Free of /proc/meminfo.
pub fn hugepages_free() -> u64 {
    let info = std::fs::read_to_string("/proc/meminfo").expect("read /proc/meminfo");
    info.lines()
        .find_map(|l| l.strip_prefix("HugePages_Free:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no HugePages_Free in /proc/meminfo:\n{info}"))
}

/// Files left in /dev/hugepages (none when it is not mounted).
pub fn hugepage_files() -> Vec<String> {
    std::fs::read_dir("/dev/hugepages")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The kernel log, one line each.
pub fn kernel_log() -> Vec<String> {
    let out = Command::new("dmesg").output().expect("run dmesg");
    assert!(out.status.success(), "dmesg: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The IOMMU's fault reports: `DMAR: [DMA Read NO_PASID] Request device [..] fault addr ..`,
/// `DMAR: DRHD: handling fault status reg ..`.
pub fn is_dmar_fault(line: &str) -> bool {
    line.contains("DMAR") && (line.contains("[DMA") || line.contains("fault") || line.contains("Fault"))
}

/// The DMAR fault lines of the kernel log from line `start` on.
pub fn dmar_faults_since(start: usize) -> Vec<String> {
    let log = kernel_log();
    log[start.min(log.len())..]
        .iter()
        .filter(|l| is_dmar_fault(l))
        .cloned()
        .collect()
}
