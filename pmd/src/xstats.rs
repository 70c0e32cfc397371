//! Extended statistics ([`Port::xstats`](crate::Port::xstats)): every counter a port has, by
//! name, as 64-bit totals since the port was opened.
//!
//! Names follow DPDK's xstats wherever DPDK has one for the same counter, so dashboards and
//! alert rules written against DPDK applications read oxpmd's the same way:
//! - the port-level counters first, under DPDK's basic names (`rx_good_packets`,
//!   `rx_q0_packets`, ...), counted by the queues in software;
//! - then the driver's own: for igb every 82576 statistics register under the names of DPDK's
//!   e1000 driver, for igbvf the VF's counters. Clear-on-read and wrapping registers are
//!   accumulated into 64-bit totals by the driver, so no count is lost between two reads.
#![forbid(unsafe_code)]

use crate::stats::PortStats;

/// One extended statistic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XStat {
    /// Its name (DPDK's where DPDK has one).
    pub name: String,
    /// Its total since the port was opened.
    pub value: u64,
}

impl XStat {
    /// A statistic named `name`.
    pub fn new(name: impl Into<String>, value: u64) -> XStat {
        XStat {
            name: name.into(),
            value,
        }
    }
}

/// Appends the port-level counters under DPDK's basic xstats names.
pub fn basic(st: &PortStats, out: &mut Vec<XStat>) {
    for (name, value) in [
        ("rx_good_packets", st.ipackets),
        ("tx_good_packets", st.opackets),
        ("rx_good_bytes", st.ibytes),
        ("tx_good_bytes", st.obytes),
        ("rx_missed_errors", st.imissed),
        ("rx_errors", st.ierrors),
        ("tx_errors", st.oerrors),
        ("rx_mbuf_allocation_errors", st.rx_nombuf),
    ] {
        out.push(XStat::new(name, value));
    }
    // Not in DPDK (it has no such drop): frames larger than one buffer, dropped (no scatter).
    out.push(XStat::new("rx_multiseg_dropped", st.rx_multiseg_dropped));
    for (q, c) in st.rx_queues.iter().enumerate() {
        out.push(XStat::new(format!("rx_q{q}_packets"), c.packets));
        out.push(XStat::new(format!("rx_q{q}_bytes"), c.bytes));
        out.push(XStat::new(format!("rx_q{q}_errors"), c.ierrors));
    }
    for (q, c) in st.tx_queues.iter().enumerate() {
        out.push(XStat::new(format!("tx_q{q}_packets"), c.packets));
        out.push(XStat::new(format!("tx_q{q}_bytes"), c.bytes));
        // DPDK counts no per-queue TX error; ours are the packets the queue refused.
        out.push(XStat::new(format!("tx_q{q}_errors"), c.ierrors));
    }
}

/// The value of `name` in `stats`, if present.
pub fn get(stats: &[XStat], name: &str) -> Option<u64> {
    stats.iter().find(|s| s.name == name).map(|s| s.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::QueueCounters;

    #[test]
    fn basic_names_are_dpdks_and_queues_are_numbered() {
        let st = PortStats {
            ipackets: 7,
            obytes: 640,
            rx_queues: vec![
                QueueCounters::default(),
                QueueCounters {
                    packets: 7,
                    ..Default::default()
                },
            ],
            tx_queues: vec![QueueCounters {
                ierrors: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut v = Vec::new();
        basic(&st, &mut v);
        assert_eq!(get(&v, "rx_good_packets"), Some(7));
        assert_eq!(get(&v, "tx_good_bytes"), Some(640));
        assert_eq!(get(&v, "rx_q1_packets"), Some(7));
        assert_eq!(get(&v, "rx_q0_packets"), Some(0));
        assert_eq!(get(&v, "tx_q0_errors"), Some(2));
        assert_eq!(get(&v, "tx_q1_packets"), None);
        let mut names: Vec<&str> = v.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), v.len(), "every name once");
    }
}
