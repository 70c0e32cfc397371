//! The bench's printed lines: what each run was, the bests per memory kind and core case, the
//! scaling table, and the `scaling:` and `ratio:` lines that end the output.

use super::options::{Cores, Memory};
use super::sides::Placement;

/// The best rates (Mpps) of both sides in one memory kind and core case.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Best {
    pub(super) ours: f64,
    pub(super) dpdk: f64,
}

impl Best {
    pub(super) fn add(&mut self, ours: f64, dpdk: f64) {
        self.ours = self.ours.max(ours);
        self.dpdk = self.dpdk.max(dpdk);
    }

    /// ours / DPDK; an error when DPDK forwarded nothing.
    pub(super) fn ratio(&self) -> Result<f64, String> {
        if self.dpdk <= 0.0 {
            return Err("DPDK rate is zero: nothing to compare against".into());
        }
        Ok(self.ours / self.dpdk)
    }
}

/// What a run of each side forwarded, where: the parenthesis of its `run N:` line.
pub(super) fn describe(p: &Placement, mem: Memory) -> (String, String) {
    match p.cores {
        Cores::One => (
            format!(
                "l2fwd, null0 <-> null1, core {}, {}",
                p.forwarding[0],
                mem.label()
            ),
            format!(
                "testpmd io, net_null0 <-> net_null1, core {}, {}",
                p.forwarding[0],
                mem.label()
            ),
        ),
        Cores::Two => {
            let (a, b) = (p.forwarding[0], p.forwarding[1]);
            (
                format!(
                    "l2fwd, null0 -> null1 on core {a}, null1 -> null0 on core {b}, {}",
                    mem.label()
                ),
                format!(
                    "testpmd io, net_null0 -> net_null1 on core {a}, net_null1 -> net_null0 on core {b}, {}",
                    mem.label()
                ),
            )
        }
    }
}

/// Printed once before the two-core runs: where the main threads are.
pub(super) fn main_thread_note(p: &Placement) -> String {
    if p.main_shared() {
        format!(
            "2 cores: DPDK's main lcore (lcore 0 on CPU {m}) and our l2fwd's main thread (--main-core {m}) \
             share CPU {m} with a forwarding core on both sides alike; both only print stats (testpmd \
             wakes once a second, l2fwd every 20 ms)",
            m = p.main
        )
    } else {
        format!(
            "2 cores: DPDK's main lcore and our l2fwd's main thread on CPU {}, apart from the forwarding cores",
            p.main
        )
    }
}

/// The bests of one memory kind and core case. One core keeps the lines the bench printed before
/// it had core cases.
pub(super) fn case_lines(mem: Memory, cores: Cores, b: &Best) -> Result<Vec<String>, String> {
    let what = match cores {
        Cores::One => mem.label().to_string(),
        Cores::Two => format!("{}, 2 cores", mem.label()),
    };
    Ok(vec![
        format!("{what}: ours {:.3} Mpps, dpdk {:.3} Mpps", b.ours, b.dpdk),
        format!("{what}: ratio {:.3}", b.ratio()?),
    ])
}

/// The bests of every memory kind and core case run, in order.
#[derive(Debug, Default)]
pub(super) struct Results {
    rows: Vec<(Memory, Cores, Best)>,
}

impl Results {
    pub(super) fn push(&mut self, mem: Memory, cores: Cores, b: Best) {
        self.rows.push((mem, cores, b));
    }

    fn get(&self, mem: Memory, cores: Cores) -> Option<&Best> {
        self.rows
            .iter()
            .find(|(m, c, _)| *m == mem && *c == cores)
            .map(|(_, _, b)| b)
    }

    /// The memory kinds that ran, in order.
    fn memories(&self) -> Vec<Memory> {
        let mut v = Vec::new();
        for (m, _, _) in &self.rows {
            if !v.contains(m) {
                v.push(*m);
            }
        }
        v
    }

    /// The end of the output: with both core cases a table (Mpps on one and two cores and
    /// their factor, per side and memory kind; the ratios), then `scaling: ours F1, dpdk F2`;
    /// last `ratio: X`, ours / DPDK on one core, of the first memory kind (hugepages when they
    /// ran: what DPDK applications use). Without the one-core case the last line names the
    /// two cores instead, so that a reader of `ratio:` never gets a two-core figure.
    pub(super) fn summary(&self, runs: u32) -> Vec<String> {
        let mut out = Vec::new();
        let mems = self.memories();
        let both = |m: Memory| Some((self.get(m, Cores::One)?, self.get(m, Cores::Two)?));
        if mems.iter().any(|&m| both(m).is_some()) {
            out.push(format!(
                "scaling, best of {runs} run(s) per side (Mpps; 2 cores: one forwarding core per direction)"
            ));
            out.push(format!(
                "{:<16} {:<9} {:>9} {:>9} {:>17}",
                "memory", "side", "1 core", "2 cores", "2 cores / 1 core"
            ));
            for m in &mems {
                let Some((one, two)) = both(*m) else { continue };
                for (side, a, b) in [("ours", one.ours, two.ours), ("dpdk", one.dpdk, two.dpdk)] {
                    out.push(format!(
                        "{:<16} {side:<9} {a:>9.3} {b:>9.3} {:>17.3}",
                        m.label(),
                        factor(a, b)
                    ));
                }
                out.push(format!(
                    "{:<16} {:<9} {:>9.3} {:>9.3}",
                    m.label(),
                    "ours/dpdk",
                    quotient(one.ours, one.dpdk),
                    quotient(two.ours, two.dpdk)
                ));
            }
        }
        let Some(&first) = mems.first() else {
            return out;
        };
        if let Some((one, two)) = both(first) {
            out.push(format!(
                "scaling: ours {:.3}, dpdk {:.3} (2 cores / 1 core, both on {})",
                factor(one.ours, two.ours),
                factor(one.dpdk, two.dpdk),
                first.label()
            ));
        }
        if let Some(one) = self.get(first, Cores::One) {
            out.push(format!(
                "ratio: {:.3} (ours / DPDK, both on {})",
                quotient(one.ours, one.dpdk),
                first.label()
            ));
        } else if let Some(two) = self.get(first, Cores::Two) {
            out.push(format!(
                "ratio on 2 cores: {:.3} (ours / DPDK, both on {})",
                quotient(two.ours, two.dpdk),
                first.label()
            ));
        }
        out
    }
}

/// Two-core rate over one-core rate.
fn factor(one: f64, two: f64) -> f64 {
    quotient(two, one)
}

fn quotient(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn best(ours: f64, dpdk: f64) -> Best {
        Best { ours, dpdk }
    }

    #[test]
    fn bests_and_case_lines() {
        let mut b = Best::default();
        b.add(100.0, 50.0);
        b.add(90.0, 80.0);
        assert_eq!(b, best(100.0, 80.0));
        assert_eq!(
            case_lines(Memory::Huge2M, Cores::One, &b).unwrap(),
            [
                "2 MiB hugepages: ours 100.000 Mpps, dpdk 80.000 Mpps",
                "2 MiB hugepages: ratio 1.250"
            ]
        );
        assert_eq!(
            case_lines(Memory::Base4K, Cores::Two, &best(150.0, 120.0)).unwrap(),
            [
                "4 KiB pages, 2 cores: ours 150.000 Mpps, dpdk 120.000 Mpps",
                "4 KiB pages, 2 cores: ratio 1.250"
            ]
        );
        assert!(case_lines(Memory::Huge2M, Cores::One, &best(1.0, 0.0)).is_err());
    }

    #[test]
    fn run_descriptions() {
        let one = Placement::new(Cores::One, 1, 2).unwrap();
        assert_eq!(
            describe(&one, Memory::Huge2M),
            (
                "l2fwd, null0 <-> null1, core 1, 2 MiB hugepages".to_string(),
                "testpmd io, net_null0 <-> net_null1, core 1, 2 MiB hugepages".to_string()
            )
        );
        let two = Placement::new(Cores::Two, 1, 2).unwrap();
        let (ours, dpdk) = describe(&two, Memory::Base4K);
        assert_eq!(
            ours,
            "l2fwd, null0 -> null1 on core 0, null1 -> null0 on core 1, 4 KiB pages"
        );
        assert_eq!(
            dpdk,
            "testpmd io, net_null0 -> net_null1 on core 0, net_null1 -> net_null0 on core 1, 4 KiB pages"
        );
        assert!(main_thread_note(&two).contains("share CPU 0 with a forwarding core"));
        assert!(main_thread_note(&Placement::new(Cores::Two, 1, 3).unwrap()).contains("apart"));
    }

    #[test]
    fn summary_of_both_cases() {
        let mut r = Results::default();
        r.push(Memory::Huge2M, Cores::One, best(100.0, 80.0));
        r.push(Memory::Huge2M, Cores::Two, best(190.0, 150.0));
        r.push(Memory::Base4K, Cores::One, best(90.0, 60.0));
        r.push(Memory::Base4K, Cores::Two, best(180.0, 90.0));
        let s = r.summary(3);
        assert_eq!(
            s,
            [
                "scaling, best of 3 run(s) per side (Mpps; 2 cores: one forwarding core per direction)",
                "memory           side         1 core   2 cores  2 cores / 1 core",
                "2 MiB hugepages  ours        100.000   190.000             1.900",
                "2 MiB hugepages  dpdk         80.000   150.000             1.875",
                "2 MiB hugepages  ours/dpdk     1.250     1.267",
                "4 KiB pages      ours         90.000   180.000             2.000",
                "4 KiB pages      dpdk         60.000    90.000             1.500",
                "4 KiB pages      ours/dpdk     1.500     2.000",
                "scaling: ours 1.900, dpdk 1.875 (2 cores / 1 core, both on 2 MiB hugepages)",
                "ratio: 1.250 (ours / DPDK, both on 2 MiB hugepages)",
            ]
        );
    }

    #[test]
    fn summary_of_one_case() {
        // One core only: the last line as before core cases existed, nothing else.
        let mut r = Results::default();
        r.push(Memory::Base4K, Cores::One, best(90.0, 60.0));
        assert_eq!(r.summary(1), ["ratio: 1.500 (ours / DPDK, both on 4 KiB pages)"]);
        // Two cores only: no `ratio:` line (that is the one-core figure), no scaling.
        let mut r = Results::default();
        r.push(Memory::Huge2M, Cores::Two, best(190.0, 150.0));
        r.push(Memory::Base4K, Cores::Two, best(180.0, 90.0));
        assert_eq!(
            r.summary(1),
            ["ratio on 2 cores: 1.267 (ours / DPDK, both on 2 MiB hugepages)"]
        );
        assert!(Results::default().summary(1).is_empty());
    }
}
