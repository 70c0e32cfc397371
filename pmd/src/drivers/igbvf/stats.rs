//! The VF's statistics registers and their 64-bit totals.
//!
//! The 82576 VF's counters are 32-bit, roll over and are not cleared on read (datasheet
//! 8.22): the totals add the difference to the previous reading, modulo 2^32, so a counter that
//! wrapped between two reads is still counted right (as DPDK's and Linux's igbvf do). The totals
//! start at the port's open. The names are DPDK's igbvf xstats where
//! it has one (multicast, loopback); the good-frame counters DPDK folds into its basic stats get
//! the names the igb driver gives the PF's.

use super::regs::VfReg;
use crate::xstats::XStat;

/// (xstats name, register) of each VF counter.
const COUNTERS: &[(&str, VfReg)] = &[
    ("rx_mac_good_packets", VfReg::new(0x0F10)),      // VFGPRC
    ("tx_mac_good_packets", VfReg::new(0x0F14)),      // VFGPTC
    ("rx_mac_good_bytes", VfReg::new(0x0F18)),        // VFGORC
    ("tx_mac_good_bytes", VfReg::new(0x0F34)),        // VFGOTC
    ("rx_multicast_packets", VfReg::new(0x0F3C)),     // VFMPRC
    ("rx_good_loopback_packets", VfReg::new(0x0F40)), // VFGPRLBC
    ("tx_good_loopback_packets", VfReg::new(0x0F44)), // VFGPTLBC
    ("rx_good_loopback_bytes", VfReg::new(0x0F48)),   // VFGORLBC
    ("tx_good_loopback_bytes", VfReg::new(0x0F50)),   // VFGOTLBC
];

/// The counters the stats reader reports.
pub(crate) const GPRC: VfReg = COUNTERS[0].1;
pub(crate) const GPTC: VfReg = COUNTERS[1].1;
pub(crate) const GORC: VfReg = COUNTERS[2].1;
pub(crate) const GOTC: VfReg = COUNTERS[3].1;
pub(crate) const MPRC: VfReg = COUNTERS[4].1;

/// The last reading and the running total of each counter.
#[derive(Debug, Clone, Default)]
pub(crate) struct VfTotals {
    last: [u32; COUNTERS.len()],
    total: [u64; COUNTERS.len()],
}

impl VfTotals {
    /// Reads every counter through `read` and adds what it advanced since the last reading.
    pub(crate) fn accumulate(&mut self, mut read: impl FnMut(VfReg) -> u32) {
        for (i, (_, reg)) in COUNTERS.iter().enumerate() {
            let now = read(*reg);
            self.total[i] += u64::from(now.wrapping_sub(self.last[i]));
            self.last[i] = now;
        }
    }

    /// Takes the counters' current values as the starting point: totals count from here.
    pub(crate) fn start_from(&mut self, mut read: impl FnMut(VfReg) -> u32) {
        for (i, (_, reg)) in COUNTERS.iter().enumerate() {
            self.last[i] = read(*reg);
            self.total[i] = 0;
        }
    }

    /// The total of counter `reg` (0 for a register that is not one of the counters).
    pub(crate) fn total_of(&self, reg: VfReg) -> u64 {
        COUNTERS
            .iter()
            .position(|(_, r)| *r == reg)
            .map_or(0, |i| self.total[i])
    }

    /// Appends every total under its xstats name.
    pub(crate) fn append(&self, out: &mut Vec<XStat>) {
        for ((name, _), v) in COUNTERS.iter().zip(&self.total) {
            out.push(XStat::new(*name, *v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_that_wraps_between_reads_is_counted_right() {
        let mut t = VfTotals::default();
        let mut now = u32::MAX - 5;
        t.accumulate(|r| if r == GPRC { now } else { 0 });
        now = 10; // wrapped: 16 more
        t.accumulate(|r| if r == GPRC { now } else { 0 });
        let mut v = Vec::new();
        t.append(&mut v);
        assert_eq!(
            crate::xstats::get(&v, "rx_mac_good_packets"),
            Some(u64::from(u32::MAX - 5) + 16)
        );
        assert_eq!(v.len(), COUNTERS.len());
        // hw_stats reads the same totals.
        assert_eq!(t.total_of(GPRC), u64::from(u32::MAX - 5) + 16);
        assert_eq!(t.total_of(GPTC), 0);
        assert_eq!(t.total_of(VfReg::new(0x0010)), 0, "not a counter");
    }
}
