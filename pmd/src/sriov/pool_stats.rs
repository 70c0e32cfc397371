//! A VF pool's traffic counters as the PF sees them (PVFGPRC, PVFGPTC, PVFGORC, PVFGOTC,
//! PVFMPRC): 32-bit registers that roll over and are not cleared on read, summed into 64-bit
//! totals from the differences between reads.
#![forbid(unsafe_code)]

/// One pool's totals since the PF host started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCounters {
    /// Good packets received.
    pub rx_packets: u64,
    /// Good packets transmitted.
    pub tx_packets: u64,
    /// Good octets received.
    pub rx_bytes: u64,
    /// Good octets transmitted.
    pub tx_bytes: u64,
    /// Multicast packets received.
    pub rx_multicast: u64,
    last: [u32; 5],
}

impl PoolCounters {
    /// Starts counting from the registers' current values `raw` (rx packets, tx packets, rx
    /// octets, tx octets, rx multicast).
    pub fn baseline(&mut self, raw: [u32; 5]) {
        self.last = raw;
    }

    /// Adds what changed since the last read (a register that rolled over counts on).
    pub fn update(&mut self, raw: [u32; 5]) {
        let mut d = [0u64; 5];
        for (i, v) in raw.iter().enumerate() {
            d[i] = u64::from(v.wrapping_sub(self.last[i]));
        }
        self.last = raw;
        self.rx_packets += d[0];
        self.tx_packets += d[1];
        self.rx_bytes += d[2];
        self.tx_bytes += d[3];
        self.rx_multicast += d[4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_summed_across_a_roll_over() {
        let mut c = PoolCounters::default();
        c.baseline([10, 0, u32::MAX - 5, 0, 0]);
        c.update([15, 2, 4, 100, 1]);
        assert_eq!((c.rx_packets, c.tx_packets, c.rx_bytes), (5, 2, 10));
        c.update([15, 2, 4, 100, 1]);
        assert_eq!((c.rx_packets, c.tx_bytes, c.rx_multicast), (5, 100, 1));
    }
}
