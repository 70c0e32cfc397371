//! The combined table of `bench rfc2544-vm`: per frame size, each DUT's throughput, the ratio
//! ours / DPDK, and each DUT's latency p50 and p99 at its latency rate; a Markdown table, so that
//! it can go into the docs as printed.

use super::chart::Side;
use super::result::{Latency, SizeResult, Sweep};
use crate::dut::Dut;

/// The sweep of `dut` among `sides`, if it has one.
fn sweep_of<'a>(sides: &[Side<'a>], dut: Dut) -> Option<&'a Sweep> {
    sides.iter().find(|s| s.dut == dut).and_then(|s| s.sweep)
}

/// Throughput ratio ours / DPDK at each frame size both measured (DPDK's above 0).
pub(crate) fn ratios(sides: &[Side]) -> Vec<(u32, f64)> {
    let (Some(ours), Some(dpdk)) = (sweep_of(sides, Dut::Ours), sweep_of(sides, Dut::Dpdk)) else {
        return Vec::new();
    };
    ours.sizes
        .iter()
        .filter_map(|o| {
            let d = dpdk.size(o.frame_size)?;
            (d.throughput_pps > 0.0).then(|| (o.frame_size, o.throughput_pps / d.throughput_pps))
        })
        .collect()
}

/// A cell: `f` of the result, or `-` without one.
fn cell(r: Option<&SizeResult>, f: impl Fn(&SizeResult) -> Option<String>) -> String {
    r.and_then(f).unwrap_or_else(|| "-".into())
}

/// The throughput, with a `*` when it is the search's bound.
fn throughput(r: &SizeResult) -> Option<String> {
    let mark = if r.at_bound() { "*" } else { "" };
    Some(format!("{:.0}{mark}", r.throughput_pps))
}

/// A latency figure of the result, if it has a latency measurement.
fn latency(r: &SizeResult, q: fn(&Latency) -> f64) -> Option<String> {
    r.latency.as_ref().map(|l| format!("{:.1}", q(l)))
}

/// The table, a header and one row per frame size measured by either DUT, smallest first.
pub(crate) fn table(sides: &[Side]) -> String {
    let (ours, dpdk) = (sweep_of(sides, Dut::Ours), sweep_of(sides, Dut::Dpdk));
    let mut sizes: Vec<u32> = [ours, dpdk]
        .into_iter()
        .flatten()
        .flat_map(|s| s.sizes.iter().map(|r| r.frame_size))
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let ratio = ratios(sides);
    let mut rows = vec![
        [
            "frame size",
            "ours pps",
            "DPDK pps",
            "ours / DPDK",
            "ours % line",
            "DPDK % line",
            "ours p50 us",
            "ours p99 us",
            "DPDK p50 us",
            "DPDK p99 us",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for &size in &sizes {
        let (o, d) = (ours.and_then(|s| s.size(size)), dpdk.and_then(|s| s.size(size)));
        rows.push(vec![
            size.to_string(),
            cell(o, throughput),
            cell(d, throughput),
            ratio
                .iter()
                .find(|(s, _)| *s == size)
                .map_or("-".into(), |(_, r)| format!("{r:.3}")),
            cell(o, |r| Some(format!("{:.2}", r.pct_of_line_rate))),
            cell(d, |r| Some(format!("{:.2}", r.pct_of_line_rate))),
            cell(o, |r| latency(r, |l| l.p50_us)),
            cell(o, |r| latency(r, |l| l.p99_us)),
            cell(d, |r| latency(r, |l| l.p50_us)),
            cell(d, |r| latency(r, |l| l.p99_us)),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let line = |r: &[String]| {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, &w)| format!("{c:>w$}")).collect();
        format!("| {} |\n", cells.join(" | "))
    };
    let mut out = line(&rows[0]);
    let rule: Vec<String> = widths
        .iter()
        .map(|&w| format!("{}:", "-".repeat(w - 1)))
        .collect();
    out.push_str(&format!("| {} |\n", rule.join(" | ")));
    for r in &rows[1..] {
        out.push_str(&line(r));
    }
    if rows[1..]
        .iter()
        .any(|r| r[1].ends_with('*') || r[2].ends_with('*'))
    {
        out.push_str("(*: passed at the search's upper bound, --max-rate: the DUT may do more)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::chart::svg_check::sides as both;
    use super::super::result::fixtures::sweep_json;
    use super::*;

    #[test]
    fn rows_per_size_with_the_ratio_where_both_measured() {
        let ours = Sweep::parse(&sweep_json(
            &[64, 128],
            |s| if s == 64 { 23_000.0 } else { 20_000.0 },
            Some(64),
        ))
        .unwrap();
        let dpdk = Sweep::parse(&sweep_json(&[64, 256], |_| 25_000.0, None)).unwrap();
        let sides = both(Some(&ours), Some(&dpdk));
        assert_eq!(ratios(&sides), vec![(64, 0.92)]);
        let t = table(&sides);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("| frame size | ours pps |"));
        let cells = |l: &str| {
            l.split('|')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cells(lines[2]),
            [
                "64", "23000", "25000", "0.920", "1.55", "1.68", "40.1", "90.2", "-", "-"
            ]
        );
        assert_eq!(cells(lines[3])[..4], ["128", "20000", "-", "-"]);
        assert_eq!(cells(lines[4])[..4], ["256", "-", "25000", "-"]);
        let alone = both(None, Some(&dpdk));
        assert!(ratios(&alone).is_empty());
        assert_eq!(table(&alone).lines().count(), 4);
        let capped = Sweep::parse(&sweep_json(&[64], |_| 1_488_095.2, None)).unwrap();
        let t = table(&both(Some(&capped), Some(&dpdk)));
        assert_eq!(
            cells(t.lines().nth(2).unwrap())[..4],
            ["64", "1488095*", "25000", "59.524"]
        );
        assert!(t.ends_with("the DUT may do more)\n"), "{t}");
        let t = table(&alone);
        assert_eq!(cells(t.lines().nth(2).unwrap())[..3], ["64", "-", "25000"]);
    }
}
