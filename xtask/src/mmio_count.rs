//! Counting a driver's register accesses from QEMU's MMIO trace (`trace-mmio on` of the QMP
//! relay: the `memory_region_ops_read` / `memory_region_ops_write` events, one line per access
//! with the vCPU, the absolute guest-physical address, the value, the size and the region's name).
//!
//! Accesses are attributed to a device by its BAR 0 range (read from the guest's sysfs) and to a
//! process by the vCPU it runs on (the benches pin the device under test's forwarding core to
//! vCPU 1 and the generator to vCPU 0), then counted per register offset.

use std::collections::BTreeMap;

/// A memory range of interest: a device's BAR 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// What to call it (its PCI address).
    pub label: String,
    pub base: u64,
    pub len: u64,
}

/// One traced access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub write: bool,
    pub cpu: u32,
    pub addr: u64,
}

/// Parses one trace line; `None` for anything else (other events, a torn last line).
pub fn parse_line(line: &str) -> Option<Access> {
    let write = if line.contains("memory_region_ops_write ") {
        true
    } else if line.contains("memory_region_ops_read ") {
        false
    } else {
        return None;
    };
    let field = |key: &str| {
        let at = line.find(key)? + key.len();
        line[at..].split_whitespace().next()
    };
    let cpu = field(" cpu ")?.parse().ok()?;
    let addr = u64::from_str_radix(field(" addr ")?.strip_prefix("0x")?, 16).ok()?;
    Some(Access { write, cpu, addr })
}

/// Reads and writes of one register offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegCount {
    pub reads: u64,
    pub writes: u64,
}

/// The accesses to each BAR from one vCPU, per register offset.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// (BAR label, offset) → counts.
    pub per_reg: BTreeMap<(String, u64), RegCount>,
    /// Accesses to the BARs from other vCPUs (not the process measured).
    pub other_cpus: u64,
}

impl Counts {
    /// Counts every access of `trace` that falls in one of `bars`, from vCPU `cpu`.
    pub fn from_trace(trace: &str, bars: &[Bar], cpu: u32) -> Counts {
        let mut c = Counts::default();
        for a in trace.lines().filter_map(parse_line) {
            let Some(bar) = bars.iter().find(|b| a.addr >= b.base && a.addr - b.base < b.len) else {
                continue;
            };
            if a.cpu != cpu {
                c.other_cpus += 1;
                continue;
            }
            let e = c
                .per_reg
                .entry((bar.label.clone(), a.addr - bar.base))
                .or_default();
            if a.write {
                e.writes += 1;
            } else {
                e.reads += 1;
            }
        }
        c
    }

    /// All reads and all writes.
    pub fn totals(&self) -> RegCount {
        self.per_reg.values().fold(RegCount::default(), |t, c| RegCount {
            reads: t.reads + c.reads,
            writes: t.writes + c.writes,
        })
    }

    /// Registers by accesses (reads + writes, over all BARs), most first: (name, counts).
    pub fn by_register(&self) -> Vec<(String, RegCount)> {
        let mut m: BTreeMap<String, RegCount> = BTreeMap::new();
        for ((_, off), c) in &self.per_reg {
            let e = m.entry(igb_register_name(*off)).or_default();
            e.reads += c.reads;
            e.writes += c.writes;
        }
        let mut v: Vec<(String, RegCount)> = m.into_iter().collect();
        v.sort_by(|a, b| {
            (b.1.reads + b.1.writes)
                .cmp(&(a.1.reads + a.1.writes))
                .then(a.0.cmp(&b.0))
        });
        v
    }
}

/// The 82576's name of a BAR 0 offset (datasheet section 8), queue registers with their queue
/// folded (`RDT[n]`, or `RDT[0] alias` at queue 0's compatible address), the statistics block
/// as one name; other offsets in hex.
pub fn igb_register_name(off: u64) -> String {
    let queue_reg = |base: u64, names: &[(u64, &str)]| {
        let rel = off.checked_sub(base)?;
        (rel < 16 * 0x40)
            .then(|| {
                names
                    .iter()
                    .find(|(o, _)| rel % 0x40 == *o)
                    .map(|(_, n)| format!("{n}[n]"))
            })
            .flatten()
    };
    let fixed = match off {
        0x0000 => Some("CTRL"),
        0x0008 => Some("STATUS"),
        0x00C0 => Some("ICR"),
        0x00C8 => Some("ICS"),
        0x00D0 => Some("IMS"),
        0x00D8 => Some("IMC"),
        0x0100 => Some("RCTL"),
        0x0400 => Some("TCTL"),
        0x1520 => Some("EICS"),
        0x1524 => Some("EIMS"),
        0x1528 => Some("EIMC"),
        0x152C => Some("EIAC"),
        0x1530 => Some("EIAM"),
        0x1580 => Some("EICR"),
        _ => None,
    };
    if let Some(n) = fixed {
        return n.to_string();
    }
    if (0x1680..0x1680 + 25 * 4).contains(&off) {
        return "EITR[n]".into();
    }
    if (0x4000..0x5000).contains(&off) {
        return "statistics".into();
    }
    let rx = [
        (0x00, "RDBAL"),
        (0x04, "RDBAH"),
        (0x08, "RDLEN"),
        (0x0C, "SRRCTL"),
        (0x10, "RDH"),
        (0x18, "RDT"),
        (0x28, "RXDCTL"),
    ];
    let tx = [
        (0x00, "TDBAL"),
        (0x04, "TDBAH"),
        (0x08, "TDLEN"),
        (0x10, "TDH"),
        (0x18, "TDT"),
        (0x28, "TXDCTL"),
        (0x38, "TDWBAL"),
        (0x3C, "TDWBAH"),
    ];
    // Queue 0's registers are also at their 82543-compatible addresses (datasheet 8.10 and
    // 8.12: RX at 0x2800, TX at 0x3800), where DPDK's igb driver writes them.
    let alias = |base: u64, names: &[(u64, &str)]| {
        let rel = off.checked_sub(base).filter(|&r| r < 0x40)?;
        names
            .iter()
            .find(|(o, _)| rel == *o)
            .map(|(_, n)| format!("{n}[0] alias"))
    };
    queue_reg(0xC000, &rx)
        .or_else(|| queue_reg(0xE000, &tx))
        .or_else(|| alias(0x2800, &rx))
        .or_else(|| alias(0x3800, &tx))
        .unwrap_or_else(|| format!("{off:#06x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "\
memory_region_ops_write cpu 1 mr 0x55d0 addr 0xfe800018 value 0x20 size 4 name 'igb-mmio'
memory_region_ops_read cpu 1 mr 0x55d0 addr 0xfe80c010 value 0x3 size 4 name 'igb-mmio'
memory_region_ops_write cpu 1 mr 0x55d0 addr 0xfe80e018 value 0x21 size 4 name 'igb-mmio'
memory_region_ops_write cpu 1 mr 0x55d0 addr 0xfe80e058 value 0x7 size 4 name 'igb-mmio'
memory_region_ops_read cpu 0 mr 0x55d0 addr 0xfe804074 value 0x9 size 4 name 'igb-mmio'
memory_region_ops_write cpu 1 mr 0x56a0 addr 0xfee000b0 value 0x0 size 4 name 'apic-msi'
memory_region_ops_write cpu 1 mr 0x57b0 addr 0xfe900018 value 0x1 size 4 name 'igb-mmio'
some other line
memory_region_ops_write cpu 1 mr 0x55d0 addr 0xfe80";

    fn bars() -> Vec<Bar> {
        vec![Bar {
            label: "0000:00:0a.0".into(),
            base: 0xfe80_0000,
            len: 0x2_0000,
        }]
    }

    #[test]
    fn parses_the_trace_lines_and_skips_the_rest() {
        assert_eq!(
            parse_line(TRACE.lines().next().unwrap()),
            Some(Access {
                write: true,
                cpu: 1,
                addr: 0xfe80_0018
            })
        );
        assert_eq!(parse_line("some other line"), None);
        assert_eq!(
            parse_line("memory_region_ops_write cpu 1 mr 0x55d0 addr 0xfe80"),
            Some(Access {
                write: true,
                cpu: 1,
                addr: 0xfe80
            })
        );
        assert_eq!(parse_line("memory_region_ops_read cpu x addr 0x1"), None);
    }

    #[test]
    fn counts_only_the_bars_accesses_from_the_measured_vcpu() {
        let c = Counts::from_trace(TRACE, &bars(), 1);
        // RX ring's RDH read (0xC010), TDT write of queue 0 (0xE018) and of queue 1 (0xE058),
        // and offset 0x18; the statistics read came from vCPU 0, the APIC and the other device's
        // BAR are not counted, and the torn last line (address 0xfe80) is outside the BAR.
        assert_eq!(c.totals(), RegCount { reads: 1, writes: 3 });
        assert_eq!(c.other_cpus, 1);
        let regs = c.by_register();
        assert_eq!(regs[0], ("TDT[n]".to_string(), RegCount { reads: 0, writes: 2 }));
        assert!(regs.contains(&("RDH[n]".to_string(), RegCount { reads: 1, writes: 0 })));
        assert!(regs.contains(&("0x0018".to_string(), RegCount { reads: 0, writes: 1 })));
    }

    #[test]
    fn names_the_82576_registers() {
        assert_eq!(igb_register_name(0x8), "STATUS");
        assert_eq!(igb_register_name(0xC018 + 3 * 0x40), "RDT[n]");
        assert_eq!(igb_register_name(0xE010), "TDH[n]");
        assert_eq!(igb_register_name(0x1580), "EICR");
        assert_eq!(igb_register_name(0x1684), "EITR[n]");
        assert_eq!(igb_register_name(0x4074), "statistics");
        assert_eq!(igb_register_name(0x5400), "0x5400");
        assert_eq!(igb_register_name(0x3818), "TDT[0] alias");
        assert_eq!(igb_register_name(0x2818), "RDT[0] alias");
    }
}
