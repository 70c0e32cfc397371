//! The 82576's statistics registers ([`COUNTERS`]) and their 64-bit totals.
//!
//! Every register is clear on read (datasheet 8.19): each is read in exactly one place,
//! [`HwTotals::accumulate`], which adds it to its total, so a count read for one purpose
//! (the port's `ierrors`, the xstats, the stats reader of a running port) is never lost to
//! another. The names are those of DPDK's e1000 driver where it names the register; the
//! registers DPDK folds into its basic stats (GPRC, GPTC, GORC, GOTC, RXERRC) and RNBC get a
//! name of their own here (RNBC's is Linux igb's ethtool name).

use std::sync::Arc;

use crate::error::Result;
use crate::xstats::XStat;

use super::IgbShared;
use super::regs::IgbReg;

/// One statistics register (or a low/high pair: the low half is read first, reading the high
/// half completes the pair).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HwCounter {
    /// The xstats name.
    pub(crate) name: &'static str,
    /// The datasheet's register name.
    pub(crate) register: &'static str,
    low: IgbReg,
    high: Option<IgbReg>,
}

impl HwCounter {
    const fn r32(name: &'static str, register: &'static str, off: usize) -> HwCounter {
        HwCounter {
            name,
            register,
            low: IgbReg::new(off),
            high: None,
        }
    }

    const fn r64(name: &'static str, register: &'static str, low: usize, high: usize) -> HwCounter {
        HwCounter {
            name,
            register,
            low: IgbReg::new(low),
            high: Some(IgbReg::new(high)),
        }
    }
}

/// The 82576's statistics registers, in register order.
pub(crate) const COUNTERS: &[HwCounter] = &[
    HwCounter::r32("rx_crc_errors", "CRCERRS", 0x4000),
    HwCounter::r32("rx_align_errors", "ALGNERRC", 0x4004),
    HwCounter::r32("rx_symbol_errors", "SYMERRS", 0x4008),
    HwCounter::r32("rx_mac_errors", "RXERRC", 0x400C),
    HwCounter::r32("rx_missed_packets", "MPC", 0x4010),
    HwCounter::r32("tx_single_collision_packets", "SCC", 0x4014),
    HwCounter::r32("tx_excessive_collision_packets", "ECOL", 0x4018),
    HwCounter::r32("tx_multiple_collision_packets", "MCC", 0x401C),
    HwCounter::r32("tx_late_collisions", "LATECOL", 0x4020),
    HwCounter::r32("tx_total_collisions", "COLC", 0x4028),
    HwCounter::r32("tx_deferred_packets", "DC", 0x4030),
    HwCounter::r32("tx_no_carrier_sense_packets", "TNCRS", 0x4034),
    HwCounter::r32("rx_carrier_ext_errors", "CEXTERR", 0x403C),
    HwCounter::r32("rx_length_errors", "RLEC", 0x4040),
    HwCounter::r32("rx_xon_packets", "XONRXC", 0x4048),
    HwCounter::r32("tx_xon_packets", "XONTXC", 0x404C),
    HwCounter::r32("rx_xoff_packets", "XOFFRXC", 0x4050),
    HwCounter::r32("tx_xoff_packets", "XOFFTXC", 0x4054),
    HwCounter::r32("rx_flow_control_unsupported_packets", "FCRUC", 0x4058),
    HwCounter::r32("rx_size_64_packets", "PRC64", 0x405C),
    HwCounter::r32("rx_size_65_to_127_packets", "PRC127", 0x4060),
    HwCounter::r32("rx_size_128_to_255_packets", "PRC255", 0x4064),
    HwCounter::r32("rx_size_256_to_511_packets", "PRC511", 0x4068),
    HwCounter::r32("rx_size_512_to_1023_packets", "PRC1023", 0x406C),
    HwCounter::r32("rx_size_1024_to_max_packets", "PRC1522", 0x4070),
    HwCounter::r32("rx_mac_good_packets", "GPRC", 0x4074),
    HwCounter::r32("rx_broadcast_packets", "BPRC", 0x4078),
    HwCounter::r32("rx_multicast_packets", "MPRC", 0x407C),
    HwCounter::r32("tx_mac_good_packets", "GPTC", 0x4080),
    HwCounter::r64("rx_mac_good_bytes", "GORC", 0x4088, 0x408C),
    HwCounter::r64("tx_mac_good_bytes", "GOTC", 0x4090, 0x4094),
    HwCounter::r32("rx_no_buffer_count", "RNBC", 0x40A0),
    HwCounter::r32("rx_undersize_errors", "RUC", 0x40A4),
    HwCounter::r32("rx_fragment_errors", "RFC", 0x40A8),
    HwCounter::r32("rx_oversize_errors", "ROC", 0x40AC),
    HwCounter::r32("rx_jabber_errors", "RJC", 0x40B0),
    HwCounter::r32("rx_management_packets", "MGTPRC", 0x40B4),
    HwCounter::r32("rx_management_dropped", "MGTPDC", 0x40B8),
    HwCounter::r32("tx_management_packets", "MGTPTC", 0x40BC),
    HwCounter::r64("rx_total_bytes", "TOR", 0x40C0, 0x40C4),
    HwCounter::r64("tx_total_bytes", "TOT", 0x40C8, 0x40CC),
    HwCounter::r32("rx_total_packets", "TPR", 0x40D0),
    HwCounter::r32("tx_total_packets", "TPT", 0x40D4),
    HwCounter::r32("tx_size_64_packets", "PTC64", 0x40D8),
    HwCounter::r32("tx_size_65_to_127_packets", "PTC127", 0x40DC),
    HwCounter::r32("tx_size_128_to_255_packets", "PTC255", 0x40E0),
    HwCounter::r32("tx_size_256_to_511_packets", "PTC511", 0x40E4),
    HwCounter::r32("tx_size_512_to_1023_packets", "PTC1023", 0x40E8),
    HwCounter::r32("tx_size_1023_to_max_packets", "PTC1522", 0x40EC),
    HwCounter::r32("tx_multicast_packets", "MPTC", 0x40F0),
    HwCounter::r32("tx_broadcast_packets", "BPTC", 0x40F4),
    HwCounter::r32("tx_tso_packets", "TSCTC", 0x40F8),
    HwCounter::r32("tx_tso_errors", "TSCTFC", 0x40FC),
    HwCounter::r32("interrupt_assert_count", "IAC", 0x4100),
    HwCounter::r32("rx_sent_to_host_packets", "RPTHC", 0x4104),
    HwCounter::r32("tx_sent_by_host_packets", "HGPTC", 0x4118),
    HwCounter::r32("rx_code_violation_packets", "SCVPC", 0x4228),
];

/// The running totals of [`COUNTERS`], in the same order.
#[derive(Debug, Clone)]
pub(crate) struct HwTotals([u64; COUNTERS.len()]);

impl Default for HwTotals {
    fn default() -> Self {
        HwTotals([0; COUNTERS.len()])
    }
}

impl HwTotals {
    /// Reads every register once through `read` and adds it to its total.
    pub(crate) fn accumulate(&mut self, mut read: impl FnMut(IgbReg) -> u32) {
        for (total, c) in self.0.iter_mut().zip(COUNTERS) {
            let low = u64::from(read(c.low));
            let high = c.high.map_or(0, |h| u64::from(read(h)));
            *total = total.wrapping_add((high << 32) | low);
        }
    }

    /// The total of the register named `register` (datasheet name).
    pub(crate) fn of(&self, register: &str) -> u64 {
        COUNTERS
            .iter()
            .position(|c| c.register == register)
            .map(|i| self.0[i])
            .unwrap_or_else(|| {
                debug_assert!(false, "no statistics register {register}");
                0
            })
    }

    /// Appends every total under its xstats name.
    pub(crate) fn append(&self, out: &mut Vec<XStat>) {
        for (c, v) in COUNTERS.iter().zip(&self.0) {
            out.push(XStat::new(c.name, *v));
        }
    }
}

/// Hardware counters of one port, accumulated from the clear-on-read registers since the open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IgbHwStats {
    /// Good packets received (GPRC).
    pub gprc: u64,
    /// Good packets transmitted (GPTC).
    pub gptc: u64,
    /// Good octets received (GORC), FCS included.
    pub gorc: u64,
    /// Good octets transmitted (GOTC), FCS included.
    pub gotc: u64,
    /// Missed packets (MPC).
    pub mpc: u64,
    /// Receive-no-buffers events (RNBC).
    pub rnbc: u64,
    /// CRC errors (CRCERRS).
    pub crcerrs: u64,
    /// Alignment errors (ALGNERRC).
    pub algnerrc: u64,
    /// Symbol errors (RXERRC).
    pub rxerrc: u64,
    /// Length errors (RLEC).
    pub rlec: u64,
}

impl From<&HwTotals> for IgbHwStats {
    fn from(t: &HwTotals) -> IgbHwStats {
        IgbHwStats {
            gprc: t.of("GPRC"),
            gptc: t.of("GPTC"),
            gorc: t.of("GORC"),
            gotc: t.of("GOTC"),
            mpc: t.of("MPC"),
            rnbc: t.of("RNBC"),
            crcerrs: t.of("CRCERRS"),
            algnerrc: t.of("ALGNERRC"),
            rxerrc: t.of("RXERRC"),
            rlec: t.of("RLEC"),
        }
    }
}

/// A handle that reads a port's hardware counters ([`IgbHwStats`]) while the port is in use.
#[derive(Clone)]
pub struct IgbStatsReader {
    pub(super) shared: Arc<IgbShared>,
}

impl std::fmt::Debug for IgbStatsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IgbStatsReader")
            .field("device", &self.shared.name)
            .finish()
    }
}

impl IgbStatsReader {
    /// Reads the clear-on-read counters and returns the totals since the device was opened.
    pub fn read(&self) -> Result<IgbHwStats> {
        Ok(IgbHwStats::from(&self.shared.read_stats()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_registers_are_unique_and_offsets_in_the_statistics_block() {
        let mut names: Vec<_> = COUNTERS.iter().map(|c| c.name).collect();
        let mut regs: Vec<_> = COUNTERS.iter().map(|c| c.register).collect();
        let mut offs: Vec<_> = COUNTERS
            .iter()
            .flat_map(|c| [Some(c.low.off()), c.high.map(IgbReg::off)])
            .flatten()
            .collect();
        for v in [&mut names, &mut regs] {
            v.sort_unstable();
            let n = v.len();
            v.dedup();
            assert_eq!(v.len(), n);
        }
        let n = offs.len();
        offs.sort_unstable();
        offs.dedup();
        assert_eq!(offs.len(), n, "no register read twice");
        assert!(offs.iter().all(|o| (0x4000..0x4300).contains(o) && o % 4 == 0));
    }

    #[test]
    fn clear_on_read_values_add_up_and_pairs_read_low_first() {
        let mut t = HwTotals::default();
        let mut order = Vec::new();
        // Every register reads 3, the high halves 1.
        let mut read = |r: IgbReg| {
            order.push(r.off());
            if COUNTERS.iter().any(|c| c.high == Some(r)) {
                1
            } else {
                3
            }
        };
        t.accumulate(&mut read);
        t.accumulate(&mut read);
        assert_eq!(t.of("GPRC"), 6);
        assert_eq!(t.of("TOR"), 2 * ((1 << 32) + 3));
        let lo = order.iter().position(|&o| o == 0x40C0).unwrap();
        assert_eq!(order[lo + 1], 0x40C4, "TORH right after TORL");
        let mut v = Vec::new();
        t.append(&mut v);
        assert_eq!(v.len(), COUNTERS.len());
        assert_eq!(crate::xstats::get(&v, "rx_crc_errors"), Some(6));
    }
}
