//! The RFC 2544 results: per size, and as the stdout table, the stderr trial lines, the
//! `--json` document and the `pktgen-rfc2544:` line (docs/rfc2544.md).

use serde_json::{Value, json};

use crate::histogram::LatencyHistogram;
use crate::options::Rfc2544Options;
use crate::rfc2544::Search;
use crate::trial::TrialCounts;

/// A trial of the throughput search: its counts and its verdict's reason.
pub struct TrialRecord {
    pub counts: TrialCounts,
    pub why: String,
}

/// The latency trial at a fraction of the throughput.
pub struct LatencyRecord {
    pub counts: TrialCounts,
    pub histogram: LatencyHistogram,
}

/// Everything measured for one frame size.
pub struct SizeResult {
    /// With FCS.
    pub frame_size: usize,
    pub line_rate_pps: f64,
    /// The search's upper bound: `--max-rate` or the line rate, whichever is lower.
    pub max_rate_pps: f64,
    pub search: Search<TrialRecord>,
    /// None when skipped (throughput 0, or no frame of the latency trial came back).
    pub latency: Option<LatencyRecord>,
}

/// Frames per second of `size`-byte frames (with FCS) that fill a link of `link_mbps`: each also
/// takes 20 bytes of preamble, start delimiter and inter-frame gap on the wire.
pub fn line_rate_pps(link_mbps: u64, size: usize) -> f64 {
    link_mbps as f64 * 1e6 / ((size + 20) * 8) as f64
}

impl SizeResult {
    pub fn throughput_mbps(&self) -> f64 {
        self.search.throughput * self.frame_size as f64 * 8.0 / 1e6
    }

    pub fn pct_of_line_rate(&self) -> f64 {
        self.search.throughput / self.line_rate_pps * 100.0
    }

    pub fn loss_pct_at_throughput(&self) -> f64 {
        self.search
            .at_throughput()
            .map_or(0.0, |t| t.outcome.counts.loss_pct())
    }
}

/// `v` rounded to `places` decimals (the JSON keeps what is meaningful).
fn round(v: f64, places: i32) -> f64 {
    let m = 10f64.powi(places);
    (v * m).round() / m
}

fn us(ns: Option<u64>) -> f64 {
    round(ns.unwrap_or(0) as f64 / 1e3, 3)
}

/// The stderr line of one trial as it ends.
pub fn trial_line(size: usize, what: &str, c: &TrialCounts, pass: bool, why: &str) -> String {
    let verdict = if pass { "pass" } else { "FAIL" };
    let mut extra = String::new();
    if c.stale > 0 {
        extra.push_str(&format!(", {} stale frames of earlier trials ignored", c.stale));
    }
    if c.drained > 0 {
        extra.push_str(&format!(", {} frames drained before it", c.drained));
    }
    if !c.quiet {
        extra.push_str(", RX was not quiet before it");
    }
    format!(
        "rfc2544: {size} B {what} at {:.1} pps: sent {} received {} lost {} ({:.3} %){extra}: {verdict}: {why}",
        c.rate,
        c.sent,
        c.received,
        c.lost,
        c.loss_pct()
    )
}

fn latency_json(l: &LatencyRecord) -> Value {
    let h = &l.histogram;
    let buckets: Vec<Value> = h
        .buckets()
        .map(|(upper, count)| json!({"upper_us": round(upper as f64 / 1e3, 3), "count": count}))
        .collect();
    json!({
        "rate_pps": round(l.counts.rate, 1),
        "samples": h.samples(),
        "min_us": us(h.min()),
        "p50_us": us(h.percentile(50.0)),
        "p90_us": us(h.percentile(90.0)),
        "p99_us": us(h.percentile(99.0)),
        "p99_9_us": us(h.percentile(99.9)),
        "max_us": us(h.max()),
        "histogram": buckets,
    })
}

/// The `--json` document.
pub fn json_document(
    tx_port: &str,
    rx_port: &str,
    link_mbps: u64,
    r: &Rfc2544Options,
    sizes: &[SizeResult],
) -> Value {
    let sizes: Vec<Value> = sizes
        .iter()
        .map(|s| {
            let trials: Vec<Value> = s
                .search
                .trials
                .iter()
                .map(|t| {
                    let c = &t.outcome.counts;
                    json!({
                        "rate_pps": round(t.rate, 1),
                        "sent": c.sent,
                        "received": c.received,
                        "lost": c.lost,
                        "loss_pct": round(c.loss_pct(), 3),
                        "pass": t.pass,
                        "why": t.outcome.why,
                    })
                })
                .collect();
            json!({
                "frame_size": s.frame_size,
                "line_rate_pps": round(s.line_rate_pps, 1),
                "max_rate_pps": round(s.max_rate_pps, 1),
                "throughput_pps": round(s.search.throughput, 1),
                "throughput_mbps": round(s.throughput_mbps(), 3),
                "pct_of_line_rate": round(s.pct_of_line_rate(), 3),
                "loss_pct_at_throughput": round(s.loss_pct_at_throughput(), 3),
                "trials": trials,
                "latency": s.latency.as_ref().map_or(Value::Null, latency_json),
            })
        })
        .collect();
    json!({"rfc2544": {
        "tx_port": tx_port,
        "rx_port": rx_port,
        "link_mbps": link_mbps,
        "trial_secs": r.trial_secs,
        "loss_tolerance_pct": r.loss_tolerance_pct,
        "resolution_pct": r.resolution_pct,
        "latency_fraction": r.latency_fraction,
        "sizes": sizes,
    }})
}

/// The stdout table: one row per size.
pub fn table(sizes: &[SizeResult]) -> String {
    let mut out = format!(
        "{:>6} {:>12} {:>10} {:>7} {:>8} {:>6} {:>10} {:>10} {:>10}\n",
        "size", "tput pps", "Mbit/s", "% line", "loss %", "trials", "p50 us", "p99 us", "max us"
    );
    for s in sizes {
        let lat = |f: &dyn Fn(&LatencyHistogram) -> Option<u64>| {
            s.latency
                .as_ref()
                .and_then(|l| f(&l.histogram))
                .map_or("-".to_string(), |ns| format!("{:.1}", ns as f64 / 1e3))
        };
        out.push_str(&format!(
            "{:>6} {:>12.1} {:>10.3} {:>7.2} {:>8.3} {:>6} {:>10} {:>10} {:>10}\n",
            s.frame_size,
            s.search.throughput,
            s.throughput_mbps(),
            s.pct_of_line_rate(),
            s.loss_pct_at_throughput(),
            s.search.trials.len(),
            lat(&|h| h.percentile(50.0)),
            lat(&|h| h.percentile(99.0)),
            lat(&|h| h.max()),
        ));
    }
    out
}

/// The `pktgen-rfc2544:` line's key=value pairs: size=throughput in frames/s.
pub fn key_values(sizes: &[SizeResult]) -> String {
    let kv: Vec<String> = sizes
        .iter()
        .map(|s| format!("{}={:.0}", s.frame_size, s.search.throughput))
        .collect();
    kv.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfc2544::Trial;

    fn record(rate: f64, sent: u64, lost: u64, pass: bool) -> Trial<TrialRecord> {
        Trial {
            rate,
            pass,
            outcome: TrialRecord {
                counts: TrialCounts {
                    rate,
                    expected: sent,
                    sent,
                    received: sent - lost,
                    lost,
                    quiet: true,
                    ..TrialCounts::default()
                },
                why: if pass { "ok".into() } else { "lost".into() },
            },
        }
    }

    fn sample() -> (Rfc2544Options, Vec<SizeResult>) {
        let r = Rfc2544Options {
            sizes: vec![64, 1518],
            trial_secs: 2.0,
            loss_tolerance_pct: 0.0,
            resolution_pct: 1.0,
            max_rate: None,
            latency_fraction: 0.9,
            json: None,
        };
        let mut histogram = LatencyHistogram::new();
        for ns in [12_000, 40_000, 40_100, 400_000] {
            histogram.record(ns);
        }
        let line = line_rate_pps(1000, 64);
        let sizes = vec![
            SizeResult {
                frame_size: 64,
                line_rate_pps: line,
                max_rate_pps: line,
                search: Search {
                    throughput: 23_000.0,
                    trials: vec![record(line, 123, 23, false), record(23_000.0, 46_000, 0, true)],
                },
                latency: Some(LatencyRecord {
                    counts: record(20_700.0, 4, 0, true).outcome.counts,
                    histogram,
                }),
            },
            SizeResult {
                frame_size: 1518,
                line_rate_pps: line_rate_pps(1000, 1518),
                max_rate_pps: 1000.0,
                search: Search {
                    throughput: 0.0,
                    trials: vec![record(1000.0, 2000, 2000, false)],
                },
                latency: None,
            },
        ];
        (r, sizes)
    }

    #[test]
    fn line_rate_counts_preamble_and_gap() {
        assert!((line_rate_pps(1000, 64) - 1_488_095.238).abs() < 0.001);
        assert!((line_rate_pps(10_000, 1518) - 812_743.823).abs() < 0.001);
    }

    #[test]
    fn the_json_document_has_the_documented_shape() {
        let (r, sizes) = sample();
        let d = json_document("0000:00:03.0", "0000:00:04.0", 1000, &r, &sizes);
        let top = &d["rfc2544"];
        for k in [
            "tx_port",
            "rx_port",
            "link_mbps",
            "trial_secs",
            "loss_tolerance_pct",
            "resolution_pct",
            "latency_fraction",
        ] {
            assert!(!top[k].is_null(), "{k}");
        }
        let s = &top["sizes"][0];
        assert_eq!(s["frame_size"], 64);
        assert_eq!(s["line_rate_pps"], 1_488_095.2);
        assert_eq!(s["throughput_pps"], 23_000.0);
        assert_eq!(s["throughput_mbps"], 11.776);
        assert_eq!(s["pct_of_line_rate"], 1.546);
        assert_eq!(s["loss_pct_at_throughput"], 0.0);
        let t = &s["trials"][0];
        assert_eq!(
            (t["sent"].as_u64(), t["received"].as_u64(), t["lost"].as_u64()),
            (Some(123), Some(100), Some(23))
        );
        assert_eq!(
            (t["loss_pct"].as_f64(), t["pass"].as_bool()),
            (Some(18.699), Some(false))
        );
        assert_eq!(t["why"], "lost");
        assert!(t["rate_pps"].is_f64());
        let l = &s["latency"];
        assert_eq!(
            (l["rate_pps"].as_f64(), l["samples"].as_u64()),
            (Some(20_700.0), Some(4))
        );
        assert_eq!(
            (l["min_us"].as_f64(), l["max_us"].as_f64()),
            (Some(12.0), Some(400.0))
        );
        for k in ["p50_us", "p90_us", "p99_us", "p99_9_us"] {
            assert!(l[k].is_f64(), "{k}");
        }
        let h = l["histogram"].as_array().unwrap();
        assert_eq!(h.iter().map(|b| b["count"].as_u64().unwrap()).sum::<u64>(), 4);
        assert!(h.iter().all(|b| b["upper_us"].is_f64()));
        let none = &top["sizes"][1];
        assert!(none["latency"].is_null());
        assert_eq!(none["throughput_pps"], 0.0);
    }

    #[test]
    fn table_and_key_values_have_a_row_and_a_token_per_size() {
        let (_, sizes) = sample();
        let t = table(&sizes);
        assert_eq!(t.lines().count(), 3);
        assert!(t.lines().nth(1).unwrap().trim_start().starts_with("64 "));
        assert!(t.lines().nth(2).unwrap().ends_with('-'), "no latency: dashes");
        assert_eq!(key_values(&sizes), "64=23000 1518=0");
        let c = &sizes[0].search.trials[0].outcome.counts;
        assert_eq!(
            trial_line(64, "trial", c, false, "lost"),
            "rfc2544: 64 B trial at 1488095.2 pps: sent 123 received 100 lost 23 (18.699 %): FAIL: lost"
        );
    }
}
