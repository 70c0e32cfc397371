//! The VF's statistics registers and their 64-bit totals.
//!
//! The 82576 VF's counters are 32-bit, roll over and are not cleared on read (datasheet
//! 8.22): the totals add the difference to the previous reading, modulo 2^32, so a counter that
//! wrapped between two reads is still counted right (as DPDK's and Linux's igbvf do). The totals
//! start at the port's open. The names are DPDK's igbvf xstats where
//! it has one (multicast, loopback); the good-frame counters DPDK folds into its basic stats get
//! the names the igb driver gives the PF's.

use crate::xstats::XStat;
use oxpmd_vfio::BarError;

/// (xstats name, register offset) of each VF counter.
const COUNTERS: &[(&str, usize)] = &[
    ("rx_mac_good_packets", 0x0F10),      // VFGPRC
    ("tx_mac_good_packets", 0x0F14),      // VFGPTC
    ("rx_mac_good_bytes", 0x0F18),        // VFGORC
    ("tx_mac_good_bytes", 0x0F34),        // VFGOTC
    ("rx_multicast_packets", 0x0F3C),     // VFMPRC
    ("rx_good_loopback_packets", 0x0F40), // VFGPRLBC
    ("tx_good_loopback_packets", 0x0F44), // VFGPTLBC
    ("rx_good_loopback_bytes", 0x0F48),   // VFGORLBC
    ("tx_good_loopback_bytes", 0x0F50),   // VFGOTLBC
];

/// Register offsets of the counters the stats reader reports.
pub(crate) const GPRC: usize = COUNTERS[0].1;
pub(crate) const GPTC: usize = COUNTERS[1].1;
pub(crate) const GORC: usize = COUNTERS[2].1;
pub(crate) const GOTC: usize = COUNTERS[3].1;
pub(crate) const MPRC: usize = COUNTERS[4].1;

/// The last reading and the running total of each counter.
#[derive(Debug, Clone, Default)]
pub(crate) struct VfTotals {
    last: [u32; COUNTERS.len()],
    total: [u64; COUNTERS.len()],
}

impl VfTotals {
    /// Reads every counter through `read` and adds what it advanced since the last reading.
    pub(crate) fn accumulate(
        &mut self,
        mut read: impl FnMut(usize) -> Result<u32, BarError>,
    ) -> Result<(), BarError> {
        for (i, (_, off)) in COUNTERS.iter().enumerate() {
            let now = read(*off)?;
            self.total[i] += u64::from(now.wrapping_sub(self.last[i]));
            self.last[i] = now;
        }
        Ok(())
    }

    /// Takes the counters' current values as the starting point: totals count from here.
    pub(crate) fn start_from(
        &mut self,
        mut read: impl FnMut(usize) -> Result<u32, BarError>,
    ) -> Result<(), BarError> {
        for (i, (_, off)) in COUNTERS.iter().enumerate() {
            self.last[i] = read(*off)?;
            self.total[i] = 0;
        }
        Ok(())
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
        t.accumulate(|off| Ok(if off == GPRC { now } else { 0 })).unwrap();
        now = 10; // wrapped: 16 more
        t.accumulate(|off| Ok(if off == GPRC { now } else { 0 })).unwrap();
        let mut v = Vec::new();
        t.append(&mut v);
        assert_eq!(
            crate::xstats::get(&v, "rx_mac_good_packets"),
            Some(u64::from(u32::MAX - 5) + 16)
        );
        assert_eq!(v.len(), COUNTERS.len());
    }
}
