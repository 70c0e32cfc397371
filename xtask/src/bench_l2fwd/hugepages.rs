//! The 2 MiB hugepages the hugepage block needs, reserved for the run and given back after.

/// 2 MiB hugepages both sides need: DPDK's `-m 1024` (512) and our pool and rings, with room.
pub(super) const HUGEPAGES_NEEDED: u64 = 600;

/// Hugepages reserved for the hugepage block; the previous reservation is restored on drop.
pub(super) struct HugepageReservation {
    previous: Option<u64>,
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

fn meminfo(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .trim_start_matches(':')
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

impl HugepageReservation {
    pub(super) fn at_least(free: u64) -> Result<HugepageReservation, String> {
        let have = meminfo("HugePages_Free").unwrap_or(0);
        if have >= free {
            return Ok(HugepageReservation { previous: None });
        }
        let total = meminfo("HugePages_Total").unwrap_or(0);
        let want = total + (free - have);
        std::fs::write(NR_HUGEPAGES, want.to_string()).map_err(|e| {
            format!(
                "the hugepage block needs {free} free 2 MiB hugepages ({have} free): writing {want} to \
                 {NR_HUGEPAGES}: {e} (run as root, or reserve them first, or use --memory 4k)"
            )
        })?;
        let now = meminfo("HugePages_Free").unwrap_or(0);
        if now < free {
            let _ = std::fs::write(NR_HUGEPAGES, total.to_string());
            return Err(format!(
                "asked the kernel for {want} 2 MiB hugepages, {now} are free: memory too fragmented? \
                 (use --memory 4k)"
            ));
        }
        println!("bench l2fwd-null: reserved 2 MiB hugepages: {total} -> {want} (restored after)");
        Ok(HugepageReservation {
            previous: Some(total),
        })
    }
}

impl Drop for HugepageReservation {
    fn drop(&mut self) {
        if let Some(p) = self.previous
            && let Err(e) = std::fs::write(NR_HUGEPAGES, p.to_string())
        {
            eprintln!("bench l2fwd-null: restoring {NR_HUGEPAGES} to {p}: {e}");
        }
    }
}
